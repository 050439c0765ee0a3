#!/usr/bin/env node
// End-to-end cost of compression on an echo server, measured from outside:
// bytes on the wire and server CPU per echoed 1 KiB JSON message, and the
// server's memory per idle connection that has used compression.
//
//   node compress-bench.js ws URL --pid PID [--messages N] [--idle N] [--no-deflate]
//   node compress-bench.js sio URL --pid PID [--messages N] [--idle N] [--no-deflate]
//
// `ws`: npm `ws` clients (perMessageDeflate on unless --no-deflate) against a
// WebSocket echo server (`ws_echo`, `ws-peer.js server --deflate`). `sio`:
// official socket.io-client sockets over WebSocket against a Socket.IO server
// with the conformance behaviour (`message` answered with `message-back`).
// PID is the server's process: its CPU time (utime + stime) and resident
// memory are read from /proc. One client sends N messages one at a time
// (each waits for its echo); then IDLE more connections each exchange one
// compressed message and stay open, and the growth of the server's RSS per
// connection is reported (after a pause, so a server that gives compression
// state back when idle, at its heartbeat, can do so). Prints one JSON line.
"use strict";

const fs = require("fs");

function usage(msg) {
  if (msg) console.error(`compress-bench: ${msg}`);
  console.error("usage: node compress-bench.js ws|sio URL --pid PID [--messages N] [--idle N] [--settle MS] [--no-deflate]");
  process.exit(2);
}

const [mode, url, ...rest] = process.argv.slice(2);
if (!["ws", "sio"].includes(mode) || !url) usage();
let pid = 0;
let messages = 5000;
let idle = 200;
let settle = 1500;
let deflate = true;
for (let i = 0; i < rest.length; i++) {
  const a = rest[i];
  if (a === "--pid") pid = Number(rest[++i]);
  else if (a === "--messages") messages = Number(rest[++i]);
  else if (a === "--idle") idle = Number(rest[++i]);
  else if (a === "--settle") settle = Number(rest[++i]);
  else if (a === "--no-deflate") deflate = false;
  else usage(`unknown argument ${a}`);
}
if (!pid) usage("--pid is required");

const TICK = 100; // clock ticks per second, as Linux reports them in /proc
function cpuMs() {
  const f = fs.readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1].split(" ");
  return ((Number(f[11]) + Number(f[12])) * 1000) / TICK;
}
function rssKiB() {
  const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, "utf8"));
  return Number(m[1]);
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// A chat-like JSON message of exactly 1 KiB (as long as the servers'
// compression threshold), different each time.
function message(i) {
  let s = `{"id":${i},"messages":[`;
  for (let k = 0; s.length < 1100; k++) {
    s += `{"user":"user${(i + k) % 17}","text":"hello there, message ${i}.${k}","ts":${1700000000 + i * 10 + k}},`;
  }
  return s.slice(0, 1023) + "}";
}

async function wsPeer() {
  const { WebSocket } = require("ws");
  const ws = new WebSocket(url, { perMessageDeflate: deflate });
  await new Promise((res, rej) => {
    ws.once("open", res);
    ws.once("error", rej);
  });
  const sock = ws._socket;
  let waiting = null;
  ws.on("message", (data) => waiting && waiting(data));
  return {
    bytes: () => [sock.bytesWritten, sock.bytesRead],
    async echo(text) {
      const got = new Promise((r) => (waiting = r));
      ws.send(text);
      const back = await got;
      if (back.toString() !== text) throw new Error("echo differs");
    },
    extension: () => Object.keys(ws._extensions).join(),
    close: () => ws.terminate(),
  };
}

async function sioPeer() {
  const { io } = require("socket.io-client");
  const s = io(url, { transports: ["websocket"], forceNew: true, reconnection: false, perMessageDeflate: deflate });
  await new Promise((res, rej) => {
    s.once("connect", res);
    s.once("connect_error", rej);
  });
  const ws = () => s.io.engine.transport.ws;
  let waiting = null;
  s.on("message-back", (data) => waiting && waiting(data));
  return {
    bytes: () => [ws()._socket.bytesWritten, ws()._socket.bytesRead],
    async echo(text) {
      const got = new Promise((r) => (waiting = r));
      s.emit("message", text);
      const back = await got;
      if (back !== text) throw new Error("echo differs");
    },
    extension: () => Object.keys(ws()._extensions).join(),
    close: () => s.disconnect(),
  };
}

(async () => {
  const connect = mode === "ws" ? wsPeer : sioPeer;
  const peer = await connect();
  for (let i = 0; i < 200; i++) await peer.echo(message(i)); // warm up
  const [w0, r0] = peer.bytes();
  const c0 = cpuMs();
  for (let i = 0; i < messages; i++) await peer.echo(message(1000 + i));
  const c1 = cpuMs();
  const [w1, r1] = peer.bytes();
  const result = {
    mode,
    url,
    extension: peer.extension() || "none",
    messages,
    sent_bytes_per_message: +((w1 - w0) / messages).toFixed(1),
    received_bytes_per_message: +((r1 - r0) / messages).toFixed(1),
    server_cpu_us_per_message: +(((c1 - c0) * 1000) / messages).toFixed(1),
  };
  await sleep(settle);
  const m0 = rssKiB();
  const peers = [];
  for (let i = 0; i < idle; i++) {
    const p = await connect();
    await p.echo(message(i));
    peers.push(p);
  }
  await sleep(settle);
  const m1 = rssKiB();
  result.idle_connections = idle;
  result.server_rss_kib_per_idle_connection = +((m1 - m0) / idle).toFixed(1);
  for (const p of peers) p.close();
  peer.close();
  console.log(JSON.stringify(result));
  process.exit(0);
})().catch((e) => {
  console.error(`compress-bench: ${e && e.stack}`);
  process.exit(1);
});
