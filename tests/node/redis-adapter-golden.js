#!/usr/bin/env node
// What the official Redis adapter (@socket.io/redis-adapter 8.3.0, with
// socket.io 4.8.4) and emitter (@socket.io/redis-emitter 5.1.0) put on
// Redis, and what they make of given messages, for tests/cluster_golden.rs.
// No Redis server: the adapter talks to a fake node-redis 4 client that
// records every command and delivers the messages it is given.
//
//   node redis-adapter-golden.js            golden mode
//   node redis-adapter-golden.js --feed     feed mode (messages on stdin)
//
// Ids are not random here: `uid2` (the adapter's source of node uids and
// request ids) hands out the ids each case queues. The node's uid is
// NODEU1 on `/` and NODEU2 on `/custom`.
//
// Golden mode runs a table of operations on a server with no clients and
// prints, tab-separated, one line per Redis command each case makes:
//
//   subscribe  NSP   psubscribe|subscribe  CHANNEL   (at start)
//   numsub     CASE  CHANNEL                          PUBSUB NUMSUB
//   publish    CASE  CHANNEL  HEX                     PUBLISH
//
// and, last, `N lines`. Cases named `answer_*` deliver a request to the
// node (as another node would publish it), printed first as
// `deliver CASE CHANNEL HEX`, and record its answer.
//
// Feed mode starts the same node on a loopback port with four official
// clients: c0 (rooms r1), c1 (rooms r1, r2), c2 (no room) on `/`, c3 on
// `/custom`. Every client answers an event that asks for an
// acknowledgement with `NAME-answer`. The node then opens three requests
// of its own: fetchSockets (FETCH1), serverSideEmitWithAck("hello",
// "from-node") (SSEAK1) and, with a 2000 ms timeout, a broadcast with
// acknowledgements `bq` (BCAST1); PUBSUB NUMSUB answers 2 (this node and
// one other). It reads lines `CHANNEL HEX` (tab-separated) from stdin and
// delivers each message to the node as Redis would, then waits until
// nothing more happens for 500 ms and prints what happened:
//
//   recv        CLIENT  EVENT  ARGS          a client got an event
//   disconnect  CLIENT  REASON
//   rooms       CLIENT  ROOMS                (at the end, its own id left out)
//   server-side NSP     ARGS  ack|noack      the node's `hello` handler ran
//   publish     -       CHANNEL  HEX          the node published (answers)
//   result      NAME    JSON                 one of its own requests ended
//
// Values print as JSON with binary as {"$bin": HEX}. The server-side
// handler answers `node`.
"use strict";

const Module = require("module");

// ----- deterministic ids ------------------------------------------------------

const queuedIds = [];
const originalLoad = Module._load;
Module._load = function (request, parent, isMain) {
  if (request === "uid2") {
    return () => {
      const id = queuedIds.shift();
      if (id === undefined) throw new Error("uid2 called with no id queued");
      return id;
    };
  }
  return originalLoad.call(this, request, parent, isMain);
};

const { Server } = require("socket.io");
const { createAdapter } = require("@socket.io/redis-adapter");
const { Emitter } = require("@socket.io/redis-emitter");

const lines = [];
const out = (...fields) => lines.push(fields.join("\t"));
const hex = (b) => Buffer.from(b).toString("hex");

const canon = (v) =>
  JSON.stringify(v, (_, x) => {
    if (x && x.type === "Buffer" && Array.isArray(x.data)) return { $bin: hex(Buffer.from(x.data)) };
    if (x instanceof ArrayBuffer) return { $bin: hex(Buffer.from(x)) };
    return x;
  });

// ----- a fake node-redis 4 client --------------------------------------------

let currentCase = "-";
let numsub = 2;

function fakeRedis() {
  const patterns = [];
  const channels = new Map();
  return {
    // The adapter checks these to pick the node-redis 4 code paths.
    pSubscribe(pattern, listener) {
      out("subscribe", currentCase, "psubscribe", pattern);
      patterns.push([pattern, listener]);
      return Promise.resolve();
    },
    subscribe(list, listener) {
      for (const c of [].concat(list)) {
        out("subscribe", currentCase, "subscribe", c);
        channels.set(c, listener);
      }
      return Promise.resolve();
    },
    sSubscribe() {},
    publish(channel, message) {
      out("publish", currentCase, channel, hex(Buffer.from(message)));
      return Promise.resolve(1);
    },
    sendCommand(args) {
      if (args[0] !== "PUBSUB" || args[1] !== "NUMSUB") throw new Error(`unexpected ${args}`);
      out("numsub", currentCase, args[2]);
      return Promise.resolve([args[2], numsub]);
    },
    on() {},
    off() {},
    listenerCount() {
      return 2;
    },
    // Redis delivering a message to this subscriber.
    deliver(channel, message) {
      if (currentCase.startsWith("answer_")) out("deliver", currentCase, channel, hex(Buffer.from(message)));
      const c = Buffer.from(channel);
      const m = Buffer.from(message);
      for (const [p, l] of patterns) {
        if (channel.startsWith(p.slice(0, -1))) l(m, c);
      }
      const l = channels.get(channel);
      if (l) l(m, c);
    },
  };
}

const tick = () => new Promise((r) => setImmediate(r));
const settle = async () => {
  for (let i = 0; i < 5; i++) await tick();
};

function makeServer(redis, httpServer) {
  // The adapter of `/` is made with the server, the one of `/custom` here.
  queuedIds.push("NODEU1", "NODEU2");
  currentCase = "/";
  const io = new Server(httpServer, { adapter: createAdapter(redis, redis) });
  currentCase = "/custom";
  io.of("/custom");
  currentCase = "-";
  return io;
}

// ----- golden mode -------------------------------------------------------------

async function golden() {
  const redis = fakeRedis();
  const io = makeServer(redis);
  io.of("/").on("hello", (...args) => {
    const cb = args[args.length - 1];
    if (typeof cb === "function") cb("node");
  });
  const emitter = new Emitter(redis);
  const swallow = (p) => p && p.catch && p.catch(() => {});

  const cases = [
    ["emit_all", () => io.emit("all", "x", Buffer.from([1, 2]))],
    ["emit_room", () => io.to("r1").emit("room", 1)],
    ["emit_rooms_except", () => io.to("r1").to("r2").except("r3").emit("rooms", { a: 1, b: [true, null] })],
    ["emit_except", () => io.except("r3").except("r4").emit("except")],
    ["emit_volatile", () => io.volatile.emit("v", 1.5)],
    ["emit_compress_false", () => io.compress(false).emit("c", -3)],
    ["emit_volatile_room_compress", () => io.volatile.to("r1").compress(false).emit("vrc")],
    ["emit_custom", () => io.of("/custom").emit("custom", [1, 2], "ñ")],
    ["emit_binary_nested", () => io.emit("bin", { file: Buffer.from([0, 255]), list: [Buffer.alloc(0)] })],
    [
      "emit_ack",
      () => {
        queuedIds.push("RQACK1");
        io.timeout(1000).emit("ask", 1, () => {});
      },
    ],
    [
      "emit_ack_room",
      () => {
        queuedIds.push("RQACK2");
        io.to("r1").except("r2").timeout(2500).emit("ask2", "a", Buffer.from([9]), () => {});
      },
    ],
    ["sockets_join", () => io.socketsJoin(["a", "b"])],
    ["sockets_join_room", () => io.in("r1").except("r2").socketsJoin("x")],
    ["sockets_leave", () => io.except("r1").socketsLeave("a")],
    ["disconnect_close", () => io.in("r1").disconnectSockets(true)],
    ["disconnect", () => io.disconnectSockets()],
    [
      "fetch",
      () => {
        queuedIds.push("RQFET1");
        swallow(io.fetchSockets());
      },
    ],
    [
      "fetch_room",
      () => {
        queuedIds.push("RQFET2");
        swallow(io.in("r1").except("r2").fetchSockets());
      },
    ],
    [
      "fetch_alone",
      () => {
        numsub = 1;
        swallow(io.fetchSockets());
      },
    ],
    ["server_side", () => io.serverSideEmit("hello", "hi", 1)],
    [
      "server_side_ack",
      () => {
        numsub = 2;
        queuedIds.push("RQSSE1");
        swallow(io.serverSideEmitWithAck("hello", "hi"));
      },
    ],
    [
      "server_side_ack_alone",
      () => {
        numsub = 1;
        swallow(io.serverSideEmitWithAck("hello"));
      },
    ],
    [
      "answer_fetch",
      () => {
        numsub = 2;
        redis.deliver(
          "socket.io-request#/#",
          JSON.stringify({ uid: "OTHER1", requestId: "RQ0001", type: 5, opts: { rooms: [], except: [] } }),
        );
      },
    ],
    [
      "answer_server_side",
      () =>
        redis.deliver(
          "socket.io-request#/#",
          JSON.stringify({ uid: "OTHER1", requestId: "RQ0002", type: 6, data: ["hello", "x"] }),
        ),
    ],
    [
      "answer_broadcast",
      () =>
        redis.deliver(
          "socket.io-request#/#",
          require("notepack.io").encode({
            uid: "OTHER1",
            requestId: "RQ0003",
            type: 7,
            packet: { type: 2, data: ["q", 1], nsp: "/" },
            opts: { rooms: [], except: [], flags: { timeout: 1000 } },
          }),
        ),
    ],
    ["emitter_emit", () => emitter.emit("from-emitter", 1, Buffer.from([3]))],
    ["emitter_room", () => emitter.to("r1").except("r2").emit("e-room")],
    ["emitter_volatile", () => emitter.volatile.compress(false).emit("e-v")],
    ["emitter_custom", () => emitter.of("/custom").emit("e-custom")],
    ["emitter_join", () => emitter.in("r1").socketsJoin(["j1", "j2"])],
    ["emitter_leave", () => emitter.socketsLeave("j1")],
    ["emitter_disconnect", () => emitter.except("r1").disconnectSockets(true)],
    ["emitter_server_side", () => emitter.serverSideEmit("hello", { k: "v" })],
  ];

  for (const [name, run] of cases) {
    currentCase = name;
    run();
    await settle();
    if (queuedIds.length) throw new Error(`${name}: ids left unused: ${queuedIds}`);
  }
  return io;
}

// ----- feed mode ---------------------------------------------------------------

async function feed() {
  const http = require("http");
  const { io: connect } = require("socket.io-client");
  const input = await new Promise((resolve) => {
    let s = "";
    process.stdin.setEncoding("utf8");
    process.stdin.on("data", (d) => (s += d));
    process.stdin.on("end", () => resolve(s));
  });
  const messages = input
    .split("\n")
    .filter((l) => l.trim())
    .map((l) => {
      const [channel, h] = l.split("\t");
      return [channel, Buffer.from(h, "hex")];
    });

  const redis = fakeRedis();
  const httpServer = http.createServer();
  const io = makeServer(redis, httpServer);
  currentCase = "-";
  const rooms = { c0: ["r1"], c1: ["r1", "r2"], c2: [], c3: [] };
  const serverSockets = {};
  for (const nsp of ["/", "/custom"]) {
    io.of(nsp).on("connection", (s) => {
      serverSockets[s.handshake.auth.name] = s;
      for (const r of rooms[s.handshake.auth.name] || []) s.join(r);
    });
    io.of(nsp).on("hello", (...args) => {
      const cb = typeof args[args.length - 1] === "function" ? args.pop() : null;
      out("server-side", nsp, canon(args), cb ? "ack" : "noack");
      if (cb) cb("node");
    });
  }
  await new Promise((r) => httpServer.listen(0, "127.0.0.1", r));
  const url = `http://127.0.0.1:${httpServer.address().port}`;
  const clients = {};
  let closing = false;
  await Promise.all(
    [
      ["c0", "/"],
      ["c1", "/"],
      ["c2", "/"],
      ["c3", "/custom"],
    ].map(
      ([name, nsp]) =>
        new Promise((resolve, reject) => {
          const c = connect(url + nsp, { transports: ["websocket"], auth: { name }, reconnection: false });
          c.onAny((event, ...args) => {
            const ack = typeof args[args.length - 1] === "function" ? args.pop() : null;
            out("recv", name, event, canon(args));
            if (ack) ack(`${event}-answer`);
          });
          c.on("disconnect", (reason) => closing || out("disconnect", name, reason));
          c.on("connect", resolve);
          c.on("connect_error", reject);
          clients[name] = c;
        }),
    ),
  );
  // Wait for the server side of each connection (rooms joined).
  for (let i = 0; i < 100 && Object.keys(serverSockets).length < 4; i++) await new Promise((r) => setTimeout(r, 10));

  const localIds = new Set(Object.values(serverSockets).map((s) => s.id));
  currentCase = "-";
  // One at a time: each takes its id from `uid2` at its own moment.
  queuedIds.push("FETCH1");
  io.fetchSockets().then(
    (sockets) =>
      out(
        "result",
        "fetch",
        canon(
          sockets
            .filter((s) => !localIds.has(s.id))
            .map((s) => ({ id: s.id, rooms: [...s.rooms], data: s.data, handshake: s.handshake })),
        ),
      ),
    (e) => out("result", "fetch", canon({ error: e.message })),
  );
  await settle();
  queuedIds.push("SSEAK1");
  io.serverSideEmitWithAck("hello", "from-node").then(
    (answers) => out("result", "server-side", canon(answers)),
    (e) => out("result", "server-side", canon({ error: e.message, answers: e.responses })),
  );
  await settle();
  queuedIds.push("BCAST1");
  io.timeout(2000).emit("bq", "from-node", (err, answers) => {
    // The local clients' answers come in an order of their own.
    out("result", "broadcast", canon({ error: err ? err.message : null, answers: [...answers].sort() }));
  });
  if (queuedIds.length) throw new Error(`ids left unused: ${queuedIds}`);
  await new Promise((r) => setTimeout(r, 200));

  for (const [channel, message] of messages) {
    redis.deliver(channel, message);
    await settle();
    await new Promise((r) => setTimeout(r, 20));
  }
  // Until nothing more happens for 500 ms (at most 10 s).
  for (let quiet = 0, seen = lines.length, i = 0; quiet < 5 && i < 100; i++) {
    await new Promise((r) => setTimeout(r, 100));
    quiet = lines.length === seen ? quiet + 1 : 0;
    seen = lines.length;
  }
  for (const [name, s] of Object.entries(serverSockets)) {
    if (s.connected) out("rooms", name, canon([...s.rooms].filter((r) => r !== s.id).sort()));
  }
  closing = true;
  for (const c of Object.values(clients)) c.close();
  io.close();
}

(async () => {
  const feedMode = process.argv.includes("--feed");
  const timer = setTimeout(() => {
    console.error("watchdog: took too long");
    process.exit(2);
  }, 20000);
  try {
    if (feedMode) await feed();
    else await golden();
  } catch (e) {
    console.error(e);
    process.exit(1);
  }
  clearTimeout(timer);
  for (const l of lines) console.log(l);
  console.log(`${lines.length} lines`);
  process.exit(0);
})();
