#!/usr/bin/env node
// The Node peer of scripts/bench-e2e.sh: the official `socket.io` (the
// version pinned by tests/node/package-lock.json; `npm ci --prefix
// tests/node` installs it) with the behaviour of wsio's `conformance`
// example that the load generator uses: on connection, `auth` with the
// client's auth; `message` -> `message-back` to the sender; `emit-all` ->
// `all` to every socket of `/`. Heartbeat 25 s / 20 s.
//
//   node benches/peers/node-server.js [--port P] [--redis URL]
//
// Listens on 127.0.0.1:P (default 3000; 0 picks a free port) and prints
// `READY <port>` once listening; SIGTERM/SIGINT stop it. With `--redis URL`
// (scripts/bench-cluster.sh) it is a node of a Redis cluster: the pinned
// `@socket.io/redis-adapter` (default options) over two `redis` clients,
// ready once Redis has its subscriptions, so `emit-all` reaches the
// sockets of every node.
"use strict";

const path = require("path");
const http = require("http");

const modules = path.join(__dirname, "..", "..", "tests", "node", "node_modules");
let Server;
try {
  ({ Server } = require(path.join(modules, "socket.io")));
} catch (e) {
  console.error(`node-server: socket.io is missing; run: npm ci --prefix tests/node (${e.message})`);
  process.exit(2);
}

let port = 3000;
let redisUrl = null;
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i++) {
  if (argv[i] === "--port" && /^\d+$/.test(argv[i + 1] || "")) {
    port = Number(argv[++i]);
  } else if (argv[i] === "--redis" && argv[i + 1]) {
    redisUrl = argv[++i];
  } else {
    console.error(`node-server: unknown argument ${argv[i]}`);
    process.exit(2);
  }
}

const httpServer = http.createServer({ noDelay: true }, (req, res) => {
  res.writeHead(404, { "Content-Type": "text/plain" });
  res.end("Not Found");
});
const io = new Server(httpServer, {
  pingInterval: 25000,
  pingTimeout: 20000,
  maxHttpBufferSize: 1e6,
  cors: { origin: "*" },
});

io.on("connection", (socket) => {
  socket.emit("auth", socket.handshake.auth || {});
  socket.on("message", (...args) => socket.emit("message-back", ...args));
  socket.on("emit-all", (...args) => io.emit("all", ...args));
});

async function joinCluster() {
  const { createClient } = require(path.join(modules, "redis"));
  const { createAdapter } = require(path.join(modules, "@socket.io", "redis-adapter"));
  const pub = createClient({ url: redisUrl });
  const sub = pub.duplicate();
  pub.on("error", () => {});
  sub.on("error", () => {});
  await Promise.all([pub.connect(), sub.connect()]);
  io.adapter(createAdapter(pub, sub));
  // The adapter subscribes without waiting: serve once Redis has them.
  const channel = `socket.io-response#/#${io.of("/").adapter.uid}#`;
  for (;;) {
    const [, count] = await pub.sendCommand(["PUBSUB", "NUMSUB", channel]);
    if (Number(count) >= 1) break;
    await new Promise((r) => setTimeout(r, 10));
  }
}

(redisUrl ? joinCluster() : Promise.resolve())
  .then(() => {
    httpServer.listen(port, "127.0.0.1", () => {
      console.log(`READY ${httpServer.address().port}`);
    });
  })
  .catch((e) => {
    console.error(`node-server: ${e.stack || e}`);
    process.exit(1);
  });

for (const sig of ["SIGTERM", "SIGINT"]) {
  process.on(sig, () => process.exit(0));
}
