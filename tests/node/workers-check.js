#!/usr/bin/env node
// Official `socket.io-client` 4.8.4 clients against a multi-core server
// (`conformance --workers N`): on polling only, on WebSocket only, and
// upgrading, two of each. Each must connect, talk, and (upgrading) upgrade
// as with one machine; their sessions must be spread over the workers (a
// sid's first character names its worker); broadcasts must reach every
// socket of every worker exactly once.
//
//   node workers-check.js --port P --workers N [--cluster-events 1]
//
// `--cluster-events 1` (server run with `--node-name rust`): also the
// cluster events of CONFORMANCE.md and the test events across the workers'
// in-process cluster (fetchSockets, serverSideEmit with acks, socketsJoin
// and Leave, broadcasts with acks, disconnectSockets).
//
// Ends with `N passed, M failed`; exit code 1 if anything failed.
"use strict";

const { io } = require("socket.io-client");

const opts = {};
{
  const argv = process.argv.slice(2);
  for (let i = 0; i < argv.length; i += 2) opts[argv[i].replace(/^--/, "")] = argv[i + 1];
}
const URL = `http://127.0.0.1:${opts.port}`;
const WORKERS = Number(opts.workers);

let passed = 0;
let failed = 0;
function check(name, ok, detail) {
  if (ok) {
    passed++;
    console.log(`ok   ${name}`);
  } else {
    failed++;
    console.log(`FAIL ${name}${detail === undefined ? "" : ": " + JSON.stringify(detail)}`);
  }
}
const settle = (ms) => new Promise((r) => setTimeout(r, ms));
const same = (a, b) => JSON.stringify(a) === JSON.stringify(b);

function connect(name, transports) {
  return new Promise((resolve, reject) => {
    const s = io(URL, { forceNew: true, reconnection: false, transports });
    s.label = name;
    s.log = [];
    s.disconnects = [];
    s.onAny((ev, ...args) => s.log.push([ev, args]));
    s.on("disconnect", (reason) => s.disconnects.push(reason));
    s.on("question", (...args) => {
      const cb = args.pop();
      if (typeof cb === "function") cb(name);
    });
    s.once("connect", () => resolve(s));
    s.once("connect_error", (e) => reject(new Error(`${name}: ${e.message}`)));
  });
}
const count = (s, ev) => s.log.filter(([e]) => e === ev).length;
const clear = (all) => all.forEach((s) => (s.log = []));
const ask = (s, ev, ...args) => s.timeout(5000).emitWithAck(ev, ...args).catch((e) => `error: ${e.message}`);
const worker = (s) => "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".indexOf(s.io.engine.id[0]);

async function main() {
  const kinds = [
    ["polling", ["polling"]],
    ["websocket", ["websocket"]],
    ["upgrade", ["polling", "websocket"]],
  ];
  const all = [];
  for (const [kind, transports] of kinds) {
    for (const i of [1, 2]) all.push(await connect(`${kind}-${i}`, transports));
  }
  await settle(800);

  for (const s of all) {
    const kind = s.label.split("-")[0];
    const want = kind === "polling" ? "polling" : "websocket";
    check(`${s.label}: on ${want}`, s.io.engine.transport.name === want, s.io.engine.transport.name);
    check(`${s.label}: its sid names a worker`, worker(s) >= 0 && worker(s) < WORKERS, s.io.engine.id);
    check(`${s.label}: auth`, count(s, "auth") === 1);
  }
  const used = new Set(all.map(worker));
  check(`sessions spread over the ${WORKERS} workers`, used.size === Math.min(WORKERS, all.length), [...used]);
  for (const [kind] of kinds) {
    const pair = all.filter((s) => s.label.startsWith(kind));
    check(`${kind}: the two sessions on different workers`, worker(pair[0]) !== worker(pair[1]), pair.map(worker));
  }

  // Many round trips on each: polling requests and the upgraded socket
  // reach the worker that owns the session, every time.
  for (const s of all) {
    clear([s]);
    for (let i = 0; i < 20; i++) s.emit("message", s.label, i);
    const acks = [];
    for (let i = 0; i < 5; i++) acks.push(await ask(s, "message-with-ack", i));
    await settle(300);
    check(`${s.label}: 20 messages echoed`, count(s, "message-back") === 20, count(s, "message-back"));
    check(`${s.label}: acks`, same(acks, [0, 1, 2, 3, 4]), acks);
  }

  for (const from of [all[0], all[3]]) {
    clear(all);
    from.emit("emit-all", from.label);
    await settle(500);
    check(`emit-all from ${from.label} (worker ${worker(from)}): every socket once`, all.every((s) => count(s, "all") === 1), all.map((s) => count(s, "all")));
    clear(all);
    from.emit("broadcast", from.label);
    await settle(500);
    check(`broadcast from ${from.label}: every other socket once`, all.every((s) => count(s, "broadcast") === (s === from ? 0 : 1)), all.map((s) => count(s, "broadcast")));
  }
  check("join r on two workers", (await ask(all[1], "join", "r")) === true && (await ask(all[2], "join", "r")) === true);
  clear(all);
  all[4].emit("to-room", "r", "x");
  await settle(500);
  check("to-room r: its members on every worker once", same(all.map((s) => count(s, "room-message")), [0, 1, 1, 0, 0, 0]), all.map((s) => count(s, "room-message")));
  check("nobody was disconnected", all.every((s) => s.connected && s.disconnects.length === 0), all.map((s) => s.disconnects));
  if (opts["cluster-events"]) await clusterEvents(all);
  all.forEach((s) => s.close());
}

async function clusterEvents(all) {
  const [a, b, c, d, e, f] = all;
  check("cluster-count: the sockets of every worker", (await ask(a, "cluster-count")) === 6);
  const ids = await ask(d, "fetch-ids");
  check("fetchSockets: every id", same(ids, all.map((s) => s.id).sort()), ids);
  const answers = await ask(a, "server-side-emit", "x");
  check("serverSideEmit with acks: every other worker answers", same(answers, Array(WORKERS - 1).fill("rust")), answers);
  check("sockets-join", (await ask(a, "sockets-join", "sj")) === true);
  await settle(300);
  clear(all);
  f.emit("to-room", "sj", "x");
  await settle(500);
  check("socketsJoin: every socket of every worker joined", all.every((s) => count(s, "room-message") === 1), all.map((s) => count(s, "room-message")));
  check("sockets-leave", (await ask(d, "sockets-leave", "sj")) === true);
  await settle(300);
  clear(all);
  a.emit("to-room", "sj", "x");
  await settle(500);
  check("socketsLeave: every socket of every worker left", all.every((s) => count(s, "room-message") === 0), all.map((s) => count(s, "room-message")));
  const acks = await ask(c, "broadcast-ack", "q");
  check("broadcast with acks: every client's answer", same(acks, all.map((s) => s.label).sort()), acks);
  // b and c are in r, on two workers.
  e.emit("disconnect-room", "r");
  await settle(700);
  check("disconnect-room: its members on every worker", same([b.disconnects, c.disconnects], [["io server disconnect"], ["io server disconnect"]]) && [a, d, e, f].every((s) => s.connected), [b.disconnects, c.disconnects]);
  check("cluster-count after", (await ask(a, "cluster-count")) === 4);
}

main()
  .catch((e) => {
    failed++;
    console.log(`FAIL ${e.stack || e}`);
  })
  .finally(() => {
    console.log(`${passed} passed, ${failed} failed`);
    process.exit(failed ? 1 : 0);
  });
