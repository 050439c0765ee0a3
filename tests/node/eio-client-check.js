#!/usr/bin/env node
// Interop scenarios run by the official `engine.io-client` against a raw
// Engine.IO echo server (every message packet is sent back as is): the
// `/engine.io/` path of tests/node/sio-server.js or of the Rust `conformance`
// example.
//
//   node eio-client-check.js URL [--path /engine.io/]
//                                [--transports polling|websocket|both]
//                                [--only a,b,...]
//
// Prints `ok NAME` or `fail NAME: why` per scenario, then `N passed, N failed`.
// Exit code 0 when every scenario passed, 1 otherwise, 2 on bad usage.
"use strict";

const http = require("http");
const util = require("util");
const crypto = require("crypto");
const { Socket, NodeXHR, NodeWebSocket } = require("engine.io-client");

function usage(msg) {
  if (msg) console.error(`eio-client-check: ${msg}`);
  console.error(
    "usage: node eio-client-check.js URL [--path /engine.io/] [--transports polling|websocket|both] [--only a,b]"
  );
  process.exit(2);
}

const argv = process.argv.slice(2);
let URL_ARG = null;
let MODE = "both";
let PATH = "/engine.io/";
let ONLY = null;
for (let i = 0; i < argv.length; i++) {
  const a = argv[i];
  if (a === "--transports") MODE = argv[++i];
  else if (a === "--path") PATH = argv[++i];
  else if (a === "--only") ONLY = new Set((argv[++i] || "").split(","));
  else if (a === "-h" || a === "--help") usage();
  else if (a.startsWith("--")) usage(`unknown option ${a}`);
  else if (URL_ARG === null) URL_ARG = a;
  else usage(`unexpected argument ${a}`);
}
if (!URL_ARG) usage("missing URL");
if (!["polling", "websocket", "both"].includes(MODE)) usage(`bad --transports ${MODE}`);
if (!PATH) usage("bad --path");
const BASE = URL_ARG.replace(/\/+$/, "");

// Keep-alive connections for long-polling requests, as a browser would.
const AGENT = new http.Agent({ keepAlive: true });

// Opens 200 ms late, so that the session carries traffic over polling before
// the upgrade starts.
class SlowWebSocket extends NodeWebSocket {
  doOpen() {
    setTimeout(() => {
      if (this.readyState === "opening") super.doOpen();
    }, 200);
  }
}

const TRANSPORTS = {
  polling: [NodeXHR],
  websocket: [NodeWebSocket],
  both: [NodeXHR, NodeWebSocket],
}[MODE];

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
class Fail extends Error {}
function check(cond, why) {
  if (!cond) throw new Fail(why);
}
function toBuf(v) {
  if (Buffer.isBuffer(v)) return v;
  if (v instanceof ArrayBuffer) return Buffer.from(v);
  if (ArrayBuffer.isView(v)) return Buffer.from(v.buffer, v.byteOffset, v.byteLength);
  return null;
}
function brief(v) {
  const b = toBuf(v);
  if (b) return `<${b.length} bytes>`;
  const s = util.inspect(v, { maxStringLength: 60 });
  return s.length > 200 ? s.slice(0, 200) + "…" : s;
}
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

class Ctx {
  constructor() {
    this.sockets = [];
  }
  socket(extra = {}) {
    const s = new Socket(BASE, {
      path: PATH,
      transports: TRANSPORTS,
      agent: AGENT,
      ...extra,
    });
    this.sockets.push(s);
    return s;
  }
  async open(extra = {}, ms = 6000) {
    const s = this.socket(extra);
    await Promise.race([
      once(s, "open", ms),
      once(s, "error", ms + 100).then(([e]) => {
        throw new Fail(`error before open: ${e && e.message}`);
      }),
    ]);
    return s;
  }
  close() {
    for (const s of this.sockets) {
      try {
        s.close();
      } catch (_) {}
    }
  }
}

// With both transports, waits for the upgrade to WebSocket.
async function settled(s, ms = 5000) {
  if (MODE !== "both" || s.transport.name === "websocket") return;
  await once(s, "upgrade", ms, "upgrade to websocket");
}

// Sends `data` and resolves with the next message.
async function echo(s, data, ms = 5000) {
  const p = once(s, "message", ms);
  s.send(data);
  const [got] = await p;
  return got;
}

async function sessionGone(sid) {
  const r = await fetch(`${BASE}${PATH}?EIO=4&transport=polling&sid=${encodeURIComponent(sid)}`);
  const body = await r.text();
  return { gone: r.status === 400, status: r.status, body };
}

const scenarios = [];
function scenario(name, timeout, fn) {
  scenarios.push({ name, timeout, fn });
}

scenario("open", 8000, async (ctx) => {
  const s = ctx.socket();
  const [hs] = await once(s, "handshake", 6000);
  if (s.readyState !== "open") await once(s, "open", 6000);
  check(typeof hs.sid === "string" && hs.sid.length > 0, `sid: ${brief(hs.sid)}`);
  check(s.id === hs.sid, "socket id differs from the handshake sid");
  check(typeof hs.pingInterval === "number" && hs.pingInterval > 0, `pingInterval ${hs.pingInterval}`);
  check(typeof hs.pingTimeout === "number" && hs.pingTimeout > 0, `pingTimeout ${hs.pingTimeout}`);
  check(hs.maxPayload === 1000000, `maxPayload ${hs.maxPayload}`);
  const wantUpgrades = MODE === "websocket" ? [] : ["websocket"];
  check(util.isDeepStrictEqual(hs.upgrades, wantUpgrades), `upgrades ${brief(hs.upgrades)}`);
  check(s.transport.name === (MODE === "websocket" ? "websocket" : "polling"), `transport ${s.transport.name}`);
  await settled(s);
});

scenario("text-echo", 8000, async (ctx) => {
  const s = await ctx.open();
  await settled(s);
  for (const text of ["hello", "héllo wörld ✓ 日本語 😀", "", "4", "0{}", "b not base64", " \"quoted\" \\ \n\t "]) {
    const got = await echo(s, text);
    // an empty message is the bare packet `4` on the wire both ways, which
    // the official client hands over as `undefined`
    const ok = got === text || (text === "" && got === undefined);
    check(ok, `echo of ${brief(text)} came back as ${brief(got)}`);
  }
});

scenario("binary-echo", 8000, async (ctx) => {
  const s = await ctx.open();
  await settled(s);
  for (const bin of [Buffer.from([1, 2, 3, 4]), Buffer.alloc(0), Buffer.from([0, 255, 0x1e, 0x62]), crypto.randomBytes(64 * 1024)]) {
    const got = await echo(s, bin);
    const b = toBuf(got);
    check(b !== null, `echo of ${bin.length} bytes came back as text ${brief(got)}`);
    check(b.equals(bin), `echo of ${bin.length} bytes differs (${b.length} bytes back)`);
  }
});

scenario("burst-in-order", 10000, async (ctx) => {
  const s = await ctx.open();
  const got = [];
  s.on("message", (m) => got.push(m));
  for (let i = 0; i < 100; i++) s.send(i % 10 === 9 ? Buffer.from([i]) : `m${i}`);
  const deadline = Date.now() + 8000;
  while (got.length < 100 && Date.now() < deadline) await sleep(10);
  check(got.length === 100, `received ${got.length} of 100`);
  for (let i = 0; i < 100; i++) {
    if (i % 10 === 9) {
      const b = toBuf(got[i]);
      check(b && b.length === 1 && b[0] === i, `message #${i} came as ${brief(got[i])}`);
    } else {
      check(got[i] === `m${i}`, `message #${i} came as ${brief(got[i])}`);
    }
  }
});

scenario("near-max-payload", 15000, async (ctx) => {
  const s = await ctx.open();
  await settled(s);
  const text = "é" + "x".repeat(990 * 1000 - 2); // 990,000 bytes of UTF-8
  const got = await echo(s, text, 12000);
  check(got === text, `echo of 990 kB differs (length ${got && got.length})`);
  const bin = crypto.randomBytes(700 * 1000); // base64 over polling: 933,335 bytes
  const gotBin = toBuf(await echo(s, bin, 12000));
  check(gotBin && gotBin.equals(bin), "echo of 700 kB binary differs");
});

scenario("over-max-payload", 12000, async (ctx) => {
  const s = await ctx.open();
  await settled(s);
  const closed = once(s, "close", 8000, "after a message above maxPayload");
  s.send("x".repeat(1000 * 1000 + 1));
  const [reason] = await closed;
  check(reason === "transport close" || reason === "transport error", `close reason: ${reason}`);
  const other = await ctx.open();
  const got = await echo(other, "after");
  check(got === "after", "echo on a fresh session failed");
});

scenario(MODE === "both" ? "upgrade-no-loss" : "stream-in-order", 20000, async (ctx) => {
  const extra = MODE === "both" ? { transports: [NodeXHR, SlowWebSocket] } : {};
  const s = ctx.socket(extra);
  const got = [];
  s.on("message", (m) => got.push(m));
  let upgradedAt = -1;
  let sent = 0;
  s.once("upgrade", () => (upgradedAt = sent));
  await once(s, "open", 6000);
  const firstTransport = s.transport.name;
  const limit = Date.now() + 8000;
  for (;;) {
    for (let i = 0; i < 4; i++) {
      s.send(String(sent));
      sent++;
    }
    await sleep(2);
    if (MODE !== "both" ? sent >= 200 : upgradedAt >= 0 && sent >= upgradedAt + 100) break;
    if (Date.now() > limit) break;
  }
  const deadline = Date.now() + 10000;
  while (got.length < sent && Date.now() < deadline) await sleep(20);
  check(got.length === sent, `received ${got.length} of ${sent}`);
  for (let i = 0; i < sent; i++) check(got[i] === String(i), `message #${i} came as ${brief(got[i])}`);
  if (MODE === "both") {
    check(firstTransport === "polling", `opened over ${firstTransport}`);
    check(upgradedAt > 0, "the upgrade did not happen during the stream");
    check(s.transport.name === "websocket", "not upgraded in the end");
  }
});

scenario("heartbeat-silence", 90000, async (ctx) => {
  const s = ctx.socket();
  const [hs] = await once(s, "handshake", 6000);
  if (s.readyState !== "open") await once(s, "open", 6000);
  await settled(s);
  let pings = 0;
  let closes = 0;
  s.on("ping", () => pings++);
  s.on("close", () => closes++);
  const interval = hs.pingInterval;
  await sleep(3 * interval + Math.min(interval, 500));
  check(closes === 0 && s.readyState === "open", "session closed during silence");
  check(s.id === hs.sid, "session id changed");
  check(pings >= 2, `only ${pings} ping(s) in three intervals`);
  const got = await echo(s, "alive");
  check(got === "alive", "echo after silence failed");
});

scenario("close", 8000, async (ctx) => {
  const s = await ctx.open();
  await settled(s);
  const sid = s.id;
  const closed = once(s, "close", 3000);
  s.close();
  const [reason] = await closed;
  check(reason === "forced close", `close reason: ${reason}`);
  // the server forgets the session
  let last;
  for (let i = 0; i < 20; i++) {
    last = await sessionGone(sid);
    if (last.gone) break;
    await sleep(50);
  }
  check(last.gone, `session still known after close: HTTP ${last.status} ${last.body}`);
  check(/"code":1/.test(last.body), `unexpected body for a closed sid: ${last.body}`);
});

async function main() {
  const chosen = scenarios.filter((s) => !ONLY || ONLY.has(s.name));
  if (ONLY && chosen.length === 0) usage("--only matched no scenario");
  let passed = 0;
  let failed = 0;
  const total = chosen.reduce((t, s) => t + s.timeout + 2000, 0);
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

process.on("unhandledRejection", () => {});

main();
