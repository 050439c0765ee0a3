#!/usr/bin/env node
// A Node node of a Redis cluster for the wsio cluster tests: the official
// `socket.io` 4.8.4 with `@socket.io/redis-adapter` 8.3.0 (default options)
// over two `redis` 4.7.1 connections, answering the events of
// CONFORMANCE.md's flags `--redis URL --node-name NAME` as the `conformance`
// example does (its docs list the three test events added here too).
//
//   node cluster-node.js --port P --redis redis://127.0.0.1:R --node-name NAME
//
// Prints `READY <port>` once connected to Redis, subscribed and listening.
"use strict";

const http = require("http");
const { Server } = require("socket.io");
const { createClient } = require("redis");
const { createAdapter } = require("@socket.io/redis-adapter");

function parseArgs(argv) {
  const opts = { port: 3000, redis: null, nodeName: null };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const next = () => {
      const v = argv[++i];
      if (v === undefined) {
        console.error(`cluster-node: ${arg} expects a value`);
        process.exit(2);
      }
      return v;
    };
    switch (arg) {
      case "--port":
        opts.port = Number(next());
        break;
      case "--redis":
        opts.redis = next();
        break;
      case "--node-name":
        opts.nodeName = next();
        break;
      default:
        console.error(`cluster-node: unknown argument ${arg}`);
        process.exit(2);
    }
  }
  if (!opts.redis || !opts.nodeName) {
    console.error("usage: node cluster-node.js --port P --redis URL --node-name NAME");
    process.exit(2);
  }
  return opts;
}

const opts = parseArgs(process.argv.slice(2));
const lastIsFn = (args) => args.length > 0 && typeof args[args.length - 1] === "function";
const sorted = (values) =>
  values.slice().sort((a, b) => {
    const ka = typeof a === "string" ? a : JSON.stringify(a);
    const kb = typeof b === "string" ? b : JSON.stringify(b);
    return ka < kb ? -1 : ka > kb ? 1 : 0;
  });

async function main() {
  const pub = createClient({ url: opts.redis });
  const sub = pub.duplicate();
  // Without a listener an unreachable Redis would end the process.
  pub.on("error", () => {});
  sub.on("error", () => {});
  await Promise.all([pub.connect(), sub.connect()]);

  const httpServer = http.createServer((req, res) => {
    res.writeHead(404);
    res.end();
  });
  const io = new Server(httpServer, {
    pingInterval: 300,
    pingTimeout: 200,
    connectTimeout: 1000,
    cors: { origin: "*" },
    serveClient: false,
    adapter: createAdapter(pub, sub),
  });

  io.of("/custom").on("connection", (socket) => socket.emit("auth", socket.handshake.auth));

  io.on("hello", (arg, callback) => callback(opts.nodeName));

  io.of("/").on("connection", (socket) => {
    socket.emit("auth", socket.handshake.auth);

    socket.on("join", (...args) => {
      if (!lastIsFn(args)) return;
      const ack = args.pop();
      socket.join(args[0]);
      ack(true);
    });
    socket.on("to-room", (room, ...args) => io.of("/").to(room).emit("room-message", ...args));
    socket.on("broadcast", (...args) => socket.broadcast.emit("broadcast", ...args));
    socket.on("emit-all", (...args) => io.of("/").emit("all", ...args));

    // The cluster events of CONFORMANCE.md.
    socket.on("cluster-count", async (ack) => {
      if (typeof ack !== "function") return;
      try {
        const sockets = await io.fetchSockets();
        ack(sockets.length);
      } catch (e) {
        // A node did not answer: no ack.
      }
    });
    socket.on("server-side-emit", (...args) => {
      if (!lastIsFn(args)) return;
      const ack = args.pop();
      io.serverSideEmit("hello", ...args, (err, answers) => ack(sorted(answers || [])));
    });
    socket.on("sockets-join", (room, ack) => {
      io.socketsJoin(room);
      if (typeof ack === "function") ack(true);
    });
    socket.on("disconnect-room", (room) => io.in(room).disconnectSockets(true));

    // The test events.
    socket.on("sockets-leave", (room, ack) => {
      io.socketsLeave(room);
      if (typeof ack === "function") ack(true);
    });
    socket.on("broadcast-ack", (...args) => {
      if (!lastIsFn(args)) return;
      const ack = args.pop();
      io.timeout(2000).emit("question", ...args, (err, answers) => {
        ack(err ? "timeout" : sorted(answers));
      });
    });
    socket.on("fetch-ids", async (ack) => {
      if (typeof ack !== "function") return;
      try {
        const sockets = await io.fetchSockets();
        ack(sorted(sockets.map((s) => s.id)));
      } catch (e) {}
    });
    socket.on("server-count", async (ack) => {
      if (typeof ack !== "function") return;
      ack(await io.of("/").adapter.serverCount());
    });
  });

  // The adapter subscribes without waiting: serve only once Redis has its
  // subscriptions (each node's own response channel names it).
  for (const nsp of ["/", "/custom"]) {
    const channel = `socket.io-response#${nsp}#${io.of(nsp).adapter.uid}#`;
    for (;;) {
      const [, count] = await pub.sendCommand(["PUBSUB", "NUMSUB", channel]);
      if (Number(count) >= 1) break;
      await new Promise((r) => setTimeout(r, 10));
    }
  }

  httpServer.listen(opts.port, "127.0.0.1", () => {
    console.log(`READY ${httpServer.address().port}`);
  });
}

main().catch((e) => {
  console.error(`cluster-node: ${e.stack || e}`);
  process.exit(1);
});
