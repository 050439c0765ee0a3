#!/usr/bin/env node
// Connection state recovery seen from the official `socket.io-client`,
// against a server started with CONFORMANCE.md's `--recovery` flag
// (tests/node/sio-server.js --recovery, or the Rust `conformance` example
// with --recovery): sessions kept 2000 ms.
//
//   node sio-recovery-check.js URL [--transports polling|websocket|both]
//                                  [--path /socket.io/] [--only a,b,...]
//                                  [--parser msgpack]
//
// `--parser msgpack` makes `socket.io-msgpack-parser` the client's parser
// (for a server started with `--parser msgpack` too).
//
// Prints `ok NAME` or `fail NAME: why` per scenario, then `N passed, N failed`.
// Exit code 0 when every scenario passed, 1 otherwise, 2 on bad usage. Every
// scenario has its own timeout and the run a watchdog, so it cannot hang.
"use strict";

const util = require("util");
const { io } = require("socket.io-client");

function usage(msg) {
  if (msg) console.error(`sio-recovery-check: ${msg}`);
  console.error(
    "usage: node sio-recovery-check.js URL [--transports polling|websocket|both] [--path /socket.io/] [--only a,b] [--parser msgpack]"
  );
  process.exit(2);
}

const argv = process.argv.slice(2);
let URL_ARG = null;
let MODE = "websocket";
let PATH = "/socket.io/";
let ONLY = null;
let PARSER = "default";
for (let i = 0; i < argv.length; i++) {
  const a = argv[i];
  if (a === "--transports") MODE = argv[++i];
  else if (a === "--path") PATH = argv[++i];
  else if (a === "--only") ONLY = new Set((argv[++i] || "").split(","));
  else if (a === "--parser") PARSER = argv[++i];
  else if (a === "-h" || a === "--help") usage();
  else if (a.startsWith("--")) usage(`unknown option ${a}`);
  else if (URL_ARG === null) URL_ARG = a;
  else usage(`unexpected argument ${a}`);
}
if (!URL_ARG) usage("missing URL");
const TRANSPORTS = { polling: ["polling"], websocket: ["websocket"], both: ["polling", "websocket"] }[MODE];
if (!TRANSPORTS) usage(`bad --transports ${MODE}`);
const BASE = URL_ARG.replace(/\/+$/, "");
if (!["default", "msgpack"].includes(PARSER)) usage(`bad --parser ${PARSER}`);
const PARSER_OPT = PARSER === "msgpack" ? { parser: require("socket.io-msgpack-parser") } : {};

// The server keeps a session this long (CONFORMANCE.md, `--recovery`).
const WINDOW = 2000;

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

class Fail extends Error {}
function check(cond, why) {
  if (!cond) throw new Fail(why);
}
function show(v) {
  return util.inspect(v, { depth: 6, breakLength: Infinity, maxStringLength: 60 });
}
function expectSame(got, want, what) {
  check(util.isDeepStrictEqual(got, want), `${what}: got ${show(got)}, want ${show(want)}`);
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

function emitAck(socket, event, ms, ...args) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Fail(`no ack for "${event}" within ${ms} ms`)), ms);
    socket.emit(event, ...args, (...res) => {
      clearTimeout(timer);
      resolve(res);
    });
  });
}

// Waits until `cond()` holds, polling every 10 ms.
async function until(cond, ms, what) {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Fail(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

// The last argument the server appended to an event: its offset.
function isOffset(v) {
  return typeof v === "string" && v.length > 0;
}

// A client that records, in order, every event it gets (offsets stripped and
// checked) and each `connect`, as `["connect", recovered]`.
class Recorder {
  constructor(ctx, opts) {
    this.log = [];
    this.offsets = [];
    this.socket = ctx.track(
      io(BASE, {
        path: PATH,
        transports: TRANSPORTS,
        forceNew: true,
        timeout: 5000,
        ...PARSER_OPT,
        ...opts,
      })
    );
    this.socket.onAny((event, ...args) => {
      const offset = args[args.length - 1];
      if (isOffset(offset)) {
        this.offsets.push(offset);
        args = args.slice(0, -1);
      } else {
        this.log.push(["no offset", event, ...args]);
      }
      this.log.push([event, ...args]);
    });
    this.socket.on("connect", () => this.log.push(["connect", this.socket.recovered]));
  }
  // The recorded events of these names.
  events(...names) {
    return this.log.filter((e) => names.includes(e[0]));
  }
  async connected(ms = 6000) {
    if (!this.socket.connected) await once(this.socket, "connect", ms);
  }
}

class Ctx {
  constructor() {
    this.sockets = [];
  }
  track(s) {
    this.sockets.push(s);
    return s;
  }
  // A second client that drives the server's events.
  async peer() {
    const s = this.track(
      io(BASE, { path: PATH, transports: TRANSPORTS, forceNew: true, reconnection: false, ...PARSER_OPT })
    );
    await once(s, "connect", 6000, "peer");
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
  }
}

// Reconnection after a fixed delay, so that a cut is short or long for sure.
function retryAfter(ms) {
  return { reconnection: true, reconnectionDelay: ms, reconnectionDelayMax: ms, randomizationFactor: 0 };
}

// Cuts the connection the way the official tests do (the server sees a
// transport close); resolves once the client knows.
async function cut(rec) {
  const down = once(rec.socket, "disconnect", 5000, "the cut");
  rec.socket.io.engine.close();
  await down;
}

const scenarios = [];
function scenario(name, timeout, fn) {
  scenarios.push({ name, timeout, fn });
}

scenario("first-connection", 10000, async (ctx) => {
  const a = new Recorder(ctx, { reconnection: false, auth: { name: "a" } });
  await a.connected();
  check(a.socket.recovered === false, `recovered is ${a.socket.recovered} on a first connection`);
  await until(() => a.events("auth").length === 1, 3000, "auth");
  expectSame(a.events("auth")[0], ["auth", { name: "a" }], "auth");
  expectSame(a.log.filter((e) => e[0] === "no offset"), [], "events without an offset");
  // Every event sent without an ack id has its own offset.
  a.socket.emit("message", 1);
  a.socket.emit("emit-all", 2);
  await until(() => a.events("message-back", "all").length === 2, 3000, "echoes");
  check(new Set(a.offsets).size === a.offsets.length, `offsets repeat: ${show(a.offsets)}`);
  // An event with an ack id gets none: `ask`'s last argument is the ack.
  const asked = once(a.socket, "ask", 3000);
  a.socket.emit("server-ack", "q", () => {});
  const args = await asked;
  check(typeof args[args.length - 1] === "function", `ask got ${show(args)}`);
});

scenario("short-absence", 15000, async (ctx) => {
  const a = new Recorder(ctx, { ...retryAfter(500), auth: { name: "a" } });
  await a.connected();
  const b = await ctx.peer();
  expectSame(await emitAck(a.socket, "join", 3000, "r"), [true], "join");
  a.socket.emit("emit-all", 1);
  await until(() => a.events("all").length === 1, 3000, "all 1");
  const id = a.socket.id;
  await cut(a);
  // While it is away: to everyone, to its room, from the other client,
  // and to a room it is not in. The other client sees its own `all`s, so
  // when it has the last one the server has sent everything.
  let copies = 0;
  b.on("all", () => copies++);
  b.emit("emit-all", 2);
  b.emit("to-room", "r", "x");
  b.emit("to-room", "other", "not for a");
  b.emit("broadcast", 3);
  b.emit("emit-all", 4);
  await until(() => copies === 2, 3000, "b's copies of all 2 and 4");
  const cutAt = a.log.length;
  await until(() => a.events("connect").length === 2, 5000, "the reconnection");
  check(a.socket.recovered === true, "recovered is false after a short absence");
  check(a.socket.id === id, `new id ${a.socket.id} (was ${id})`);
  await until(() => a.events("auth").length === 2, 3000, "auth again");
  // Each missed event once, in order, before `connect`; then the
  // connection handler's `auth`, whose payload the client filled in.
  const after = a.log.slice(cutAt).filter((e) => e[0] !== "auth");
  expectSame(
    after,
    [["all", 2], ["room-message", "x"], ["broadcast", 3], ["all", 4], ["connect", true]],
    "after the cut"
  );
  const auth = a.events("auth")[1][1];
  check(auth.name === "a" && typeof auth.pid === "string" && typeof auth.offset === "string", `auth ${show(auth)}`);
  // Still in its room; new events come once.
  b.emit("to-room", "r", "y");
  b.emit("emit-all", 5);
  await until(() => a.events("all").length === 4, 3000, "all 5");
  expectSame(a.events("room-message"), [["room-message", "x"], ["room-message", "y"]], "room messages");
  expectSame(a.events("all"), [["all", 1], ["all", 2], ["all", 4], ["all", 5]], "all");
  expectSame(a.log.filter((e) => e[0] === "no offset"), [], "events without an offset");
});

scenario("long-absence", 15000, async (ctx) => {
  const a = new Recorder(ctx, { ...retryAfter(WINDOW + 600), auth: { name: "a" } });
  await a.connected();
  const b = await ctx.peer();
  expectSame(await emitAck(a.socket, "join", 3000, "r"), [true], "join");
  const id = a.socket.id;
  await cut(a);
  b.emit("emit-all", 1);
  b.emit("to-room", "r", "x");
  await once(b, "all", 3000, "b's copy");
  await until(() => a.events("connect").length === 2, WINDOW + 5000, "the reconnection");
  check(a.socket.recovered === false, "recovered is true after a long absence");
  check(a.socket.id !== id, "the same id after a long absence");
  await until(() => a.events("auth").length === 2, 3000, "auth again");
  b.emit("to-room", "r", "y");
  b.emit("emit-all", 2);
  await until(() => a.events("all").length === 1, 3000, "all 2");
  expectSame(a.events("all", "room-message"), [["all", 2]], "nothing replayed, no room");
});

scenario("server-disconnect-keeps-nothing", 10000, async (ctx) => {
  const a = new Recorder(ctx, { ...retryAfter(100), auth: { name: "a" } });
  await a.connected();
  const id = a.socket.id;
  const gone = once(a.socket, "disconnect", 3000);
  a.socket.emit("disconnect-me");
  expectSame(await gone, ["io server disconnect", undefined], "disconnect reason");
  a.socket.connect();
  await until(() => a.events("connect").length === 2, 5000, "the new connection");
  check(a.socket.recovered === false && a.socket.id !== id, "recovered after a server disconnect");
});

scenario("client-disconnect-keeps-nothing", 10000, async (ctx) => {
  const a = new Recorder(ctx, { ...retryAfter(100), auth: { name: "a" } });
  await a.connected();
  const id = a.socket.id;
  a.socket.disconnect();
  await sleep(100);
  a.socket.connect();
  await until(() => a.events("connect").length === 2, 5000, "the new connection");
  check(a.socket.recovered === false && a.socket.id !== id, "recovered after a client disconnect");
});

async function main() {
  const chosen = scenarios.filter((s) => !ONLY || ONLY.has(s.name));
  if (ONLY && chosen.length === 0) usage("--only matched no scenario");
  const total = chosen.reduce((t, s) => t + s.timeout + 2000, 0);
  let passed = 0;
  let failed = 0;
  const watchdog = setTimeout(() => {
    console.log("fail watchdog: the run exceeded its overall time limit");
    console.log(`${passed} passed, ${failed + 1} failed`);
    process.exit(1);
  }, total + 10000);
  watchdog.unref();
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
