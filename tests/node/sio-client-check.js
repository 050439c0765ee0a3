#!/usr/bin/env node
// Interop scenarios run by the official `socket.io-client` against a server
// with the reference behaviour of CONFORMANCE.md (tests/node/sio-server.js or
// the Rust `conformance` example).
//
//   node sio-client-check.js URL [--transports polling|websocket|both]
//                                [--path /socket.io/] [--only a,b,...]
//                                [--clients 200] [--parser msgpack]
//
// `--parser msgpack` makes `socket.io-msgpack-parser` the client's parser
// (the server must use it too: CONFORMANCE.md, flag `--parser msgpack`).
//
// Prints `ok NAME` or `fail NAME: why` per scenario, then `N passed, N failed`.
// Exit code 0 when every scenario passed, 1 otherwise, 2 on bad usage.
// Every scenario has its own timeout and the whole run has a watchdog, so the
// script cannot hang.
"use strict";

const http = require("http");
const util = require("util");
const crypto = require("crypto");
const { io, Manager } = require("socket.io-client");
const { NodeXHR, NodeWebSocket } = require("engine.io-client");

// --- command line ---------------------------------------------------------------

function usage(msg) {
  if (msg) console.error(`sio-client-check: ${msg}`);
  console.error(
    "usage: node sio-client-check.js URL [--transports polling|websocket|both] [--path /socket.io/] [--only a,b] [--clients N] [--parser msgpack]"
  );
  process.exit(2);
}

const argv = process.argv.slice(2);
let URL_ARG = null;
let MODE = "both";
let PATH = "/socket.io/";
let ONLY = null;
let CLIENTS = 200;
let PARSER = "default";
for (let i = 0; i < argv.length; i++) {
  const a = argv[i];
  if (a === "--transports") MODE = argv[++i];
  else if (a === "--path") PATH = argv[++i];
  else if (a === "--only") ONLY = new Set((argv[++i] || "").split(","));
  else if (a === "--clients") CLIENTS = Number(argv[++i]);
  else if (a === "--parser") PARSER = argv[++i];
  else if (a === "-h" || a === "--help") usage();
  else if (a.startsWith("--")) usage(`unknown option ${a}`);
  else if (URL_ARG === null) URL_ARG = a;
  else usage(`unexpected argument ${a}`);
}
if (!URL_ARG) usage("missing URL");
if (!["polling", "websocket", "both"].includes(MODE)) usage(`bad --transports ${MODE}`);
if (!PATH || !Number.isInteger(CLIENTS) || CLIENTS < 1) usage("bad option value");
if (!["default", "msgpack"].includes(PARSER)) usage(`bad --parser ${PARSER}`);
const PARSER_OPT = PARSER === "msgpack" ? { parser: require("socket.io-msgpack-parser") } : {};
const BASE = URL_ARG.replace(/\/+$/, "");
const TRANSPORTS = {
  polling: ["polling"],
  websocket: ["websocket"],
  both: ["polling", "websocket"],
}[MODE];

// HTTP long-polling requests share keep-alive connections, as a browser's do;
// without it every poll opens a new TCP connection and a few hundred polling
// clients in one process swamp a 2-core machine.
const AGENT = new http.Agent({ keepAlive: true });

// A WebSocket transport that opens 200 ms late, so that the Socket.IO session
// is established over polling and carries traffic before the upgrade starts.
class SlowWebSocket extends NodeWebSocket {
  doOpen() {
    setTimeout(() => {
      if (this.readyState === "opening") super.doOpen();
    }, 200);
  }
}

// --- helpers ---------------------------------------------------------------------

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

class Fail extends Error {}
function check(cond, why) {
  if (!cond) throw new Fail(why);
}

// Binary payloads arrive as Buffer (Node) or ArrayBuffer; compare as Buffers.
function norm(v) {
  if (Buffer.isBuffer(v)) return v;
  if (v instanceof ArrayBuffer) return Buffer.from(v);
  if (ArrayBuffer.isView(v)) return Buffer.from(v.buffer, v.byteOffset, v.byteLength);
  if (Array.isArray(v)) return v.map(norm);
  if (v && typeof v === "object") {
    const o = {};
    for (const k of Object.keys(v)) o[k] = norm(v[k]);
    return o;
  }
  return v;
}
function same(a, b) {
  return util.isDeepStrictEqual(norm(a), norm(b));
}
function brief(v) {
  const s = util.inspect(norm(v), { depth: 6, breakLength: Infinity, maxStringLength: 60, maxArrayLength: 8 });
  return s.length > 300 ? s.slice(0, 300) + "…" : s;
}
function expectSame(got, want, what) {
  check(same(got, want), `${what}: got ${brief(got)}, want ${brief(want)}`);
}

// Resolves with the event's arguments, rejects after `ms`.
function once(emitter, event, ms, what) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      emitter.off(event, handler);
      reject(new Fail(`no "${event}" within ${ms} ms${what ? ` (${what})` : ""}`));
    }, ms);
    function handler(...args) {
      clearTimeout(timer);
      resolve(args);
    }
    emitter.once(event, handler);
  });
}

// Resolves true if `event` fires within `ms`, false otherwise.
function firesWithin(emitter, event, ms) {
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      emitter.off(event, handler);
      resolve(false);
    }, ms);
    function handler() {
      clearTimeout(timer);
      resolve(true);
    }
    emitter.once(event, handler);
  });
}

function emitAck(socket, event, ms, ...args) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Fail(`no ack for "${event}" within ${ms} ms`)), ms);
    socket.emit(event, ...args, (...res) => {
      clearTimeout(timer);
      resolve(res);
    });
  });
}

// Per-scenario context: every socket made through it is closed afterwards.
class Ctx {
  constructor() {
    this.sockets = [];
    this.managers = [];
  }
  opts(extra = {}) {
    return {
      path: PATH,
      transports: TRANSPORTS,
      forceNew: true,
      reconnection: false,
      timeout: 5000,
      agent: AGENT,
      ...PARSER_OPT,
      ...extra,
    };
  }
  socket(nsp = "/", extra = {}) {
    const s = io(BASE + (nsp === "/" ? "" : nsp), this.opts(extra));
    this.sockets.push(s);
    return s;
  }
  manager(extra = {}) {
    const m = new Manager(BASE, this.opts(extra));
    this.managers.push(m);
    return m;
  }
  track(s) {
    this.sockets.push(s);
    return s;
  }
  // Connects and waits for `connect` (rejects on connect_error / timeout).
  async connect(nsp = "/", extra = {}, ms = 6000) {
    const s = this.socket(nsp, extra);
    await connected(s, ms);
    return s;
  }
  close() {
    for (const s of this.sockets) {
      try {
        s.disconnect();
      } catch (_) {}
      try {
        if (s.io && s.io.engine) s.io.engine.close();
      } catch (_) {}
    }
    for (const m of this.managers) {
      try {
        if (m.engine) m.engine.close();
      } catch (_) {}
    }
  }
}

function connected(s, ms = 6000) {
  if (s.connected) return Promise.resolve(s);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      cleanup();
      reject(new Fail(`no connect within ${ms} ms`));
    }, ms);
    const onConnect = () => {
      cleanup();
      resolve(s);
    };
    const onError = (err) => {
      cleanup();
      reject(new Fail(`connect_error: ${err && err.message}`));
    };
    function cleanup() {
      clearTimeout(timer);
      s.off("connect", onConnect);
      s.off("connect_error", onError);
    }
    s.on("connect", onConnect);
    s.on("connect_error", onError);
  });
}

// Waits until the engine uses the transport the mode implies (upgrade done).
async function settled(s, ms = 5000) {
  if (MODE !== "both") return;
  const engine = s.io.engine;
  if (engine.transport.name === "websocket") return;
  await once(engine, "upgrade", ms, "upgrade to websocket");
}

// Connects `n` sockets on "/" and waits for their `auth` event to have come.
async function connectMany(ctx, n) {
  const list = [];
  for (let i = 0; i < n; i++) list.push(ctx.connect("/"));
  const sockets = await Promise.all(list);
  await Promise.all(sockets.map((s) => settled(s)));
  return sockets;
}

// Collects every occurrence of `event` on each socket.
function recorder(sockets, event) {
  const seen = sockets.map(() => []);
  sockets.forEach((s, i) => s.on(event, (...args) => seen[i].push(args)));
  return seen;
}

// --- scenarios ---------------------------------------------------------------------

const scenarios = [];
function scenario(name, timeout, fn) {
  scenarios.push({ name, timeout, fn });
}

const MIXED = [
  "héllo wörld ✓ 日本語 😀",
  "record\u001eseparator",
  "\u001e",
  "quotes \" and \\ backslash / slash \n newline \t tab \u0000 nul",
  "",
  42,
  -1.5,
  0,
  3.141592653589793,
  9007199254740991,
  1e21,
  null,
  true,
  false,
  { nested: { arr: [1, "x", null, { deep: [] }], empty: {} }, "ключ": "значение" },
  [1, [2, [3, ["4"]]], []],
];

// notepack.io writes whole numbers from 2^64 up as wrapped 64-bit integers
// (the official msgpack parser's own loss, against its own server too).
const MIXED_ARGS = PARSER === "msgpack" ? MIXED.filter((v) => v !== 1e21) : MIXED;

// A polling body carries a msgpack packet in base64 (4/3 of its size): the
// largest echo that stays under the max payload is smaller.
const LARGE_KB = PARSER === "msgpack" ? 700 : 900;

scenario("connect-auth", 8000, async (ctx) => {
  const auth = { token: "abc", n: 1, "clé": "välue" };
  const s = ctx.socket("/", { auth });
  const authP = once(s, "auth", 6000);
  await connected(s);
  const [got] = await authP;
  expectSame(got, auth, "auth payload");
  check(typeof s.id === "string" && s.id.length > 0, "socket has no id");
});

scenario("connect-no-auth", 8000, async (ctx) => {
  const s = ctx.socket("/");
  const authP = once(s, "auth", 6000);
  await connected(s);
  const [got] = await authP;
  expectSame(got, {}, "auth payload");
});

scenario("custom-namespace-auth", 8000, async (ctx) => {
  const auth = { token: "custom-123" };
  const s = ctx.socket("/custom", { auth });
  const authP = once(s, "auth", 6000);
  await connected(s);
  const [got] = await authP;
  expectSame(got, auth, "auth payload on /custom");
});

scenario("multiplex", 8000, async (ctx) => {
  const m = ctx.manager();
  const root = ctx.track(m.socket("/", { auth: { who: "root" } }));
  const custom = ctx.track(m.socket("/custom", { auth: { who: "custom" } }));
  const a1 = once(root, "auth", 6000, "/");
  const a2 = once(custom, "auth", 6000, "/custom");
  await Promise.all([connected(root), connected(custom)]);
  expectSame((await a1)[0], { who: "root" }, "auth on /");
  expectSame((await a2)[0], { who: "custom" }, "auth on /custom");
  check(root.io === custom.io && root.io.engine, "namespaces do not share a manager");
  check(root.id !== custom.id, "both namespaces got the same socket id");
  const back = once(root, "message-back", 4000);
  root.emit("message", "still-here");
  expectSame(await back, ["still-here"], "echo on / while /custom is connected");
});

scenario("unknown-namespace", 8000, async (ctx) => {
  const s = ctx.socket("/does-not-exist");
  const [err] = await once(s, "connect_error", 6000);
  check(err && err.message === "Invalid namespace", `connect_error message: ${err && err.message}`);
  check(!s.connected, "socket connected anyway");
});

scenario("echo-mixed", 8000, async (ctx) => {
  const s = await ctx.connect();
  await settled(s);
  const back = once(s, "message-back", 5000);
  s.emit("message", ...MIXED_ARGS);
  expectSame(await back, MIXED_ARGS, "message-back args");
  const back2 = once(s, "message-back", 5000);
  s.emit("message");
  expectSame(await back2, [], "message-back with no args");
});

scenario("ack-args", 8000, async (ctx) => {
  const s = await ctx.connect();
  const res = await emitAck(s, "message-with-ack", 5000, ...MIXED_ARGS);
  expectSame(res, MIXED_ARGS, "ack args");
});

scenario("ack-no-args", 8000, async (ctx) => {
  const s = await ctx.connect();
  const res = await emitAck(s, "message-with-ack", 5000);
  expectSame(res, [], "ack args");
});

scenario("ack-twenty-in-flight", 10000, async (ctx) => {
  const s = await ctx.connect();
  const all = [];
  for (let i = 0; i < 20; i++) all.push(emitAck(s, "message-with-ack", 8000, i, `n${i}`));
  const res = await Promise.all(all);
  res.forEach((r, i) => expectSame(r, [i, `n${i}`], `ack #${i}`));
});

scenario("server-ack", 8000, async (ctx) => {
  const s = await ctx.connect();
  const asked = [];
  s.on("ask", (...args) => {
    const cb = args.pop();
    if (typeof cb !== "function") {
      asked.push(["ask carried no ack", cb]);
      return;
    }
    asked.push(args);
    cb("answer", ...args, { from: "client" });
  });
  const res = await emitAck(s, "server-ack", 5000, 1, "two", { three: 3 });
  expectSame(asked, [[1, "two", { three: 3 }]], "ask args");
  expectSame(res, ["answer", 1, "two", { three: 3 }, { from: "client" }], "server-ack result");
});

scenario("server-ack-binary", 8000, async (ctx) => {
  const s = await ctx.connect();
  s.on("ask", (...args) => {
    const cb = args.pop();
    cb(Buffer.from([0xde, 0xad]), ...args);
  });
  const res = await emitAck(s, "server-ack", 5000, Buffer.from([1, 2]));
  expectSame(res, [Buffer.from([0xde, 0xad]), Buffer.from([1, 2])], "server-ack result");
});

scenario("binary-roundtrip", 10000, async (ctx) => {
  const s = await ctx.connect();
  await settled(s);
  const big = crypto.randomBytes(100 * 1024);
  const args = [Buffer.alloc(0), Buffer.from([1, 2, 3]), big];
  const back = once(s, "binary-back", 8000);
  s.emit("binary", ...args);
  const got = await back;
  check(got.length === 3, `binary-back carried ${got.length} args`);
  for (const g of got) {
    check(Buffer.isBuffer(g) || g instanceof ArrayBuffer || ArrayBuffer.isView(g), `not binary: ${brief(g)}`);
  }
  expectSame(got, args, "binary-back args");
});

scenario("binary-in-object", 8000, async (ctx) => {
  const s = await ctx.connect();
  const payload = {
    a: Buffer.from([0, 255]),
    list: [Buffer.from("héllo"), "text", { deep: Buffer.alloc(3, 7) }],
    n: 1,
  };
  const back = once(s, "binary-back", 5000);
  s.emit("binary", payload, "tail");
  expectSame(await back, [payload, "tail"], "binary-back args");
});

scenario("binary-in-ack", 8000, async (ctx) => {
  const s = await ctx.connect();
  const args = [Buffer.from([9, 8, 7]), { b: Buffer.from([1]) }, "x"];
  const res = await emitAck(s, "message-with-ack", 5000, ...args);
  expectSame(res, args, "ack args");
});

scenario(`large-${LARGE_KB}kB`, 15000, async (ctx) => {
  const s = await ctx.connect();
  await settled(s);
  const big = "é" + "x".repeat(LARGE_KB * 1000 - 3); // LARGE_KB kB of UTF-8
  const back = once(s, "message-back", 12000);
  s.emit("message", big);
  const [got] = await back;
  check(got === big, `echo of 900 kB differs (length ${got && got.length})`);
});

scenario("over-max-payload", 12000, async (ctx) => {
  const s = await ctx.connect();
  await settled(s);
  const disc = once(s, "disconnect", 8000, "after a message above maxPayload");
  s.emit("message", "x".repeat(1100 * 1000));
  const [reason] = await disc;
  check(
    reason === "transport close" || reason === "transport error",
    `disconnect reason: ${reason}`
  );
  // the server is still fine for everyone else
  const other = await ctx.connect();
  const back = once(other, "message-back", 4000);
  other.emit("message", "after");
  expectSame(await back, ["after"], "echo on a fresh connection");
});

scenario("heartbeat-silence", 90000, async (ctx) => {
  const s = await ctx.connect();
  await settled(s);
  const engine = s.io.engine;
  const interval = engine._pingInterval > 0 ? engine._pingInterval : 300;
  let pings = 0;
  let drops = 0;
  engine.on("ping", () => pings++);
  s.on("disconnect", () => drops++);
  const id = s.id;
  await sleep(3 * interval + Math.min(interval, 500));
  check(drops === 0 && s.connected, "connection dropped during silence");
  check(s.id === id, "socket id changed");
  check(pings >= 2, `only ${pings} ping(s) seen in three intervals`);
  const back = once(s, "message-back", 4000);
  s.emit("message", "alive");
  expectSame(await back, ["alive"], "echo after silence");
});

scenario("join", 8000, async (ctx) => {
  const s = await ctx.connect();
  const res = await emitAck(s, "join", 5000, "room-join-test");
  expectSame(res, [true], "join ack");
});

scenario("broadcast", 10000, async (ctx) => {
  const [a, b, c] = await connectMany(ctx, 3);
  const seen = recorder([a, b, c], "broadcast");
  const pb = once(b, "broadcast", 5000, "client B");
  const pc = once(c, "broadcast", 5000, "client C");
  a.emit("broadcast", "hi", 1, { x: null });
  await Promise.all([pb, pc]);
  await sleep(300);
  expectSame(seen[1], [["hi", 1, { x: null }]], "client B got");
  expectSame(seen[2], [["hi", 1, { x: null }]], "client C got");
  check(seen[0].length === 0, `the sender got its own broadcast ${seen[0].length} time(s)`);
});

scenario("to-room", 10000, async (ctx) => {
  const [a, b, c] = await connectMany(ctx, 3);
  const room = `room-${crypto.randomBytes(4).toString("hex")}`;
  expectSame(await emitAck(a, "join", 5000, room), [true], "join ack A");
  expectSame(await emitAck(b, "join", 5000, room), [true], "join ack B");
  const seen = recorder([a, b, c], "room-message");
  // from a non-member
  c.emit("to-room", room, "from-c", 1);
  await Promise.all([once(a, "room-message", 5000, "A"), once(b, "room-message", 5000, "B")]);
  // from a member: the sender is included
  a.emit("to-room", room, "from-a");
  await sleep(400);
  expectSame(seen[0], [["from-c", 1], ["from-a"]], "member A got");
  expectSame(seen[1], [["from-c", 1], ["from-a"]], "member B got");
  check(seen[2].length === 0, `non-member C got ${brief(seen[2])}`);
});

scenario("emit-all", 10000, async (ctx) => {
  const [a, b, c] = await connectMany(ctx, 3);
  const seen = recorder([a, b, c], "all");
  b.emit("emit-all", "everyone", [1, 2]);
  await sleep(50);
  await Promise.all(
    [a, b, c].map((s, i) => (seen[i].length ? null : once(s, "all", 5000, `client ${"ABC"[i]}`)))
  );
  await sleep(200);
  for (let i = 0; i < 3; i++) expectSame(seen[i], [["everyone", [1, 2]]], `client ${"ABC"[i]} got`);
});

scenario("disconnect-me", 10000, async (ctx) => {
  // reconnection enabled on purpose: a server disconnect must not reconnect
  const s = await ctx.connect("/", { reconnection: true, reconnectionDelay: 100, reconnectionDelayMax: 200 });
  await settled(s);
  let attempts = 0;
  let connects = 0;
  s.io.on("reconnect_attempt", () => attempts++);
  s.on("connect", () => connects++);
  const disc = once(s, "disconnect", 5000);
  s.emit("disconnect-me");
  const [reason] = await disc;
  check(reason === "io server disconnect", `disconnect reason: ${reason}`);
  await sleep(1200);
  check(!s.connected, "socket is connected again");
  check(attempts === 0 && connects === 0, `reconnected (${attempts} attempt(s), ${connects} connect(s))`);
});

scenario(`transport-${MODE}`, 10000, async (ctx) => {
  const s = ctx.socket("/");
  let upgrades = 0;
  s.io.on("open", () => s.io.engine.on("upgrade", () => upgrades++));
  await connected(s);
  const engine = s.io.engine;
  if (MODE === "websocket") {
    check(engine.transport.name === "websocket", `transport is ${engine.transport.name}`);
  } else {
    check(["polling", "websocket"].includes(engine.transport.name), `transport is ${engine.transport.name}`);
  }
  if (MODE === "both") {
    if (engine.transport.name !== "websocket") await once(engine, "upgrade", 5000, "upgrade");
    check(engine.transport.name === "websocket", `not upgraded: ${engine.transport.name}`);
  } else {
    await sleep(700);
    check(upgrades === 0, "transport was upgraded");
    check(engine.transport.name === TRANSPORTS[0], `transport changed to ${engine.transport.name}`);
  }
  const back = once(s, "message-back", 4000);
  s.emit("message", MODE);
  expectSame(await back, [MODE], "echo");
});

// A numbered stream of events: with --transports both it starts over polling
// and spans the upgrade (the WebSocket opens 200 ms late so that the upgrade
// always happens mid-stream); nothing may be lost, duplicated or reordered.
scenario(MODE === "both" ? "upgrade-no-loss" : "stream-in-order", 20000, async (ctx) => {
  const extra = MODE === "both" ? { transports: [NodeXHR, SlowWebSocket] } : {};
  const s = ctx.socket("/", extra);
  const received = [];
  s.on("message-back", (k) => received.push(k));
  let upgradedAt = -1;
  let sent = 0;
  s.io.on("open", () => s.io.engine.once("upgrade", () => (upgradedAt = sent)));
  await connected(s);
  const firstTransport = s.io.engine.transport.name;
  const limit = Date.now() + 8000;
  for (;;) {
    for (let i = 0; i < 4; i++) s.emit("message", sent++);
    await sleep(2);
    if (MODE !== "both" ? sent >= 200 : upgradedAt >= 0 && sent >= upgradedAt + 100) break;
    if (Date.now() > limit) break;
  }
  const total = sent;
  const deadline = Date.now() + 10000;
  while (received.length < total && Date.now() < deadline) await sleep(20);
  check(received.length === total, `received ${received.length} of ${total}`);
  for (let i = 0; i < total; i++) check(received[i] === i, `message #${i} came as ${received[i]}`);
  if (MODE === "both") {
    check(firstTransport === "polling", `connected over ${firstTransport}, not polling`);
    check(upgradedAt > 0, "the upgrade did not happen during the stream");
    check(s.io.engine.transport.name === "websocket", "not upgraded in the end");
  }
});

scenario(`many-clients-${CLIENTS}`, 60000, async (ctx) => {
  const sockets = [];
  const reasons = []; // why clients went down, for the failure message
  const started = [];
  for (let i = 0; i < CLIENTS; i++) {
    started.push(
      (async () => {
        const s = await ctx.connect("/", {}, 30000);
        sockets.push(s);
        s.on("disconnect", (reason) => reasons.push(`client ${i}: ${reason}`));
        const back = once(s, "message-back", 30000, `client ${i}`);
        s.emit("message", i, `client-${i}`);
        expectSame(await back, [i, `client-${i}`], `echo of client ${i}`);
      })()
    );
    await sleep(5); // connections are opened at a steady pace, not all in one tick
  }
  const results = await Promise.allSettled(started);
  const bad = results.filter((r) => r.status === "rejected");
  check(bad.length === 0, `${bad.length} of ${CLIENTS} failed, first: ${bad[0] && bad[0].reason && bad[0].reason.message}`);
  const down = sockets.filter((s) => !s.connected).length;
  check(
    down === 0,
    `${down} of ${CLIENTS} clients were no longer connected at the end (${reasons.slice(0, 3).join("; ")})`
  );
});

// --- runner -------------------------------------------------------------------------

async function main() {
  const chosen = scenarios.filter((s) => !ONLY || ONLY.has(s.name));
  if (ONLY && chosen.length === 0) usage("--only matched no scenario");
  const total = chosen.reduce((t, s) => t + s.timeout + 2000, 0);
  const watchdog = setTimeout(() => {
    console.log("fail watchdog: the run exceeded its overall time limit");
    console.log(`${passed} passed, ${failed + 1} failed`);
    process.exit(1);
  }, total + 10000);
  watchdog.unref();
  let passed = 0;
  let failed = 0;
  for (const sc of chosen) {
    const ctx = new Ctx();
    let timer;
    try {
      await Promise.race([
        sc.fn(ctx),
        new Promise((_, reject) => {
          timer = setTimeout(() => reject(new Fail(`timed out after ${sc.timeout} ms`)), sc.timeout);
        }),
      ]);
      console.log(`ok ${sc.name}`);
      passed++;
    } catch (e) {
      const why = e instanceof Fail ? e.message : (e && e.stack) || String(e);
      console.log(`fail ${sc.name}: ${why.split("\n")[0]}`);
      failed++;
    } finally {
      clearTimeout(timer);
      ctx.close();
      await sleep(50);
    }
  }
  console.log(`${passed} passed, ${failed} failed`);
  process.exit(failed === 0 ? 0 : 1);
}

process.on("unhandledRejection", () => {}); // late rejections of abandoned scenarios

main();
