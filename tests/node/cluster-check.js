#!/usr/bin/env node
// The client side of the wsio cluster tests: official `socket.io-client`
// 4.8.4 clients on a wsio node and on a Node node (cluster-node.js) of one
// Redis cluster, checking every cluster operation in both directions, and
// `@socket.io/redis-emitter` reaching the sockets of both.
//
//   node cluster-check.js --rust PORT --node PORT --redis URL [--mode full|restart] [--rust-nodes K]
//
// `--rust-nodes K`: the wsio server is K nodes (`--workers K`), named `rust`.
//
// `restart`: after a first check it prints `RESTART-ME` and waits for `down`
// on stdin (Redis stopped: the wsio node must still serve its own clients),
// prints `DOWN-CHECKED`, waits for `up` (Redis restarted empty on the same
// address) and checks that cross-node delivery works again within 5 s.
//
// Ends with `N passed, M failed`; exit code 1 if anything failed.
"use strict";

const readline = require("readline");
const { io } = require("socket.io-client");
const { createClient } = require("redis");
const { Emitter } = require("@socket.io/redis-emitter");

const opts = { mode: "full", "rust-nodes": "1" };
{
  const argv = process.argv.slice(2);
  for (let i = 0; i < argv.length; i += 2) opts[argv[i].replace(/^--/, "")] = argv[i + 1];
}
const RUST = `http://127.0.0.1:${opts.rust}`;
const NODE = `http://127.0.0.1:${opts.node}`;
const RUST_NODES = Number(opts["rust-nodes"]);
const rusts = (k) => Array(k).fill("rust");

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

/// A client that records every event it receives and answers `question`
/// with its name.
function connect(url, name) {
  return new Promise((resolve, reject) => {
    const s = io(url, { forceNew: true, reconnection: false });
    s.label = name;
    s.log = [];
    s.disconnects = [];
    s.onAny((ev, ...args) => {
      if (ev !== "question") s.log.push([ev, args]);
    });
    s.on("question", (...args) => {
      const cb = args.pop();
      if (typeof cb === "function") cb(name);
    });
    s.on("disconnect", (reason) => s.disconnects.push(reason));
    s.once("connect", () => resolve(s));
    s.once("connect_error", (e) => reject(new Error(`${name}: ${e.message}`)));
  });
}
const count = (s, ev) => s.log.filter(([e]) => e === ev).length;
const clear = (all) => all.forEach((s) => (s.log = []));
const ask = (s, ev, ...args) => s.timeout(7000).emitWithAck(ev, ...args).catch((e) => `error: ${e.message}`);

async function full() {
  const R1 = await connect(RUST, "R1");
  const R2 = await connect(RUST, "R2");
  const N1 = await connect(NODE, "N1");
  const N2 = await connect(NODE, "N2");
  const all = [R1, R2, N1, N2];
  const sides = [
    [R1, "from wsio"],
    [N1, "from node"],
  ];
  await settle(300);

  for (const [from, side] of sides) {
    clear(all);
    from.emit("emit-all", side, 1);
    await settle(500);
    check(`emit-all ${side}: every socket once`, all.every((s) => count(s, "all") === 1), all.map((s) => count(s, "all")));
    check(`emit-all ${side}: arguments`, same(N2.log.concat(R2.log).filter(([e]) => e === "all").map(([, a]) => a), [[side, 1], [side, 1]]), R2.log);

    clear(all);
    from.emit("broadcast", side);
    await settle(500);
    const want = all.map((s) => (s === from ? 0 : 1));
    check(`broadcast (except the sender) ${side}`, same(all.map((s) => count(s, "broadcast")), want), all.map((s) => count(s, "broadcast")));
  }

  check("join r1 on wsio", (await ask(R2, "join", "r1")) === true);
  check("join r1 on node", (await ask(N2, "join", "r1")) === true);
  for (const [from, side] of sides) {
    clear(all);
    from.emit("to-room", "r1", side);
    await settle(500);
    check(`to-room r1 ${side}: its members once, no one else`, same(all.map((s) => count(s, "room-message")), [0, 1, 0, 1]), all.map((s) => count(s, "room-message")));
  }

  for (const [from, side] of sides) {
    check(`cluster-count ${side}`, (await ask(from, "cluster-count")) === 4);
    const ids = all.map((s) => s.id).sort();
    const got = await ask(from, "fetch-ids");
    check(`fetchSockets ${side}: every id`, same(got, ids), got);
  }
  {
    const got = await ask(R1, "server-side-emit", "x");
    check("serverSideEmit with acks from wsio: every other node answers", same(got, ["node", ...rusts(RUST_NODES - 1)]), got);
    const back = await ask(N1, "server-side-emit", "x");
    check("serverSideEmit with acks from node: the wsio nodes answer", same(back, rusts(RUST_NODES)), back);
  }
  check("serverCount on node counts the wsio nodes", (await ask(N1, "server-count")) === RUST_NODES + 1);

  for (const [[from, side], [other]] of [
    [sides[0], sides[1]],
    [sides[1], sides[0]],
  ]) {
    const room = `joined-${side.slice(5)}`;
    check(`sockets-join ${side}`, (await ask(from, "sockets-join", room)) === true);
    await settle(300);
    clear(all);
    other.emit("to-room", room, "x");
    await settle(500);
    check(`socketsJoin ${side}: every socket joined`, all.every((s) => count(s, "room-message") === 1), all.map((s) => count(s, "room-message")));
    check(`sockets-leave ${side}`, (await ask(from, "sockets-leave", room)) === true);
    await settle(300);
    clear(all);
    other.emit("to-room", room, "x");
    await settle(500);
    check(`socketsLeave ${side}: every socket left`, all.every((s) => count(s, "room-message") === 0), all.map((s) => count(s, "room-message")));
  }

  for (const [from, side] of sides) {
    const got = await ask(from, "broadcast-ack", side);
    check(`broadcast with acks ${side}: every client's answer`, same(got, ["N1", "N2", "R1", "R2"]), got);
  }

  {
    const client = createClient({ url: opts.redis });
    client.on("error", () => {});
    await client.connect();
    const emitter = new Emitter(client);
    clear(all);
    emitter.emit("emitted", "hi", 2);
    await settle(500);
    check("redis-emitter emit reaches every socket once", all.every((s) => count(s, "emitted") === 1), all.map((s) => count(s, "emitted")));
    check("redis-emitter arguments", same(R1.log.find(([e]) => e === "emitted")?.[1], ["hi", 2]), R1.log);
    clear(all);
    emitter.to("r1").emit("room-emitted", 3);
    await settle(500);
    check("redis-emitter to(r1) reaches its members only", same(all.map((s) => count(s, "room-emitted")), [0, 1, 0, 1]), all.map((s) => count(s, "room-emitted")));
    clear(all);
    emitter.except("r1").emit("except-emitted");
    await settle(500);
    check("redis-emitter except(r1)", same(all.map((s) => count(s, "except-emitted")), [1, 0, 1, 0]), all.map((s) => count(s, "except-emitted")));
    await client.quit();
  }

  // Disconnections, each way: R2 and N2 are in r1.
  R1.emit("disconnect-room", "r1");
  await settle(700);
  check("disconnect-room from wsio", same([R2.disconnects, N2.disconnects, R1.connected, N1.connected], [["io server disconnect"], ["io server disconnect"], true, true]), [R2.disconnects, N2.disconnects]);
  const R3 = await connect(RUST, "R3");
  const N3 = await connect(NODE, "N3");
  await ask(R3, "join", "r4");
  await ask(N3, "join", "r4");
  N1.emit("disconnect-room", "r4");
  await settle(700);
  check("disconnect-room from node", same([R3.disconnects, N3.disconnects, R1.connected, N1.connected], [["io server disconnect"], ["io server disconnect"], true, true]), [R3.disconnects, N3.disconnects]);
  check("cluster-count after the disconnections", (await ask(R1, "cluster-count")) === 2);

  [R1, N1].forEach((s) => s.close());
}

function lines() {
  const rl = readline.createInterface({ input: process.stdin });
  const queue = [];
  const waiters = [];
  rl.on("line", (l) => (waiters.length ? waiters.shift()(l.trim()) : queue.push(l.trim())));
  return () => (queue.length ? Promise.resolve(queue.shift()) : new Promise((r) => waiters.push(r)));
}

async function restart() {
  const next = lines();
  const R1 = await connect(RUST, "R1");
  const R2 = await connect(RUST, "R2");
  const N1 = await connect(NODE, "N1");
  const N2 = await connect(NODE, "N2");
  const all = [R1, R2, N1, N2];
  await settle(300);
  R1.emit("emit-all", "before");
  await settle(500);
  check("before the restart: emit-all crosses", all.every((s) => count(s, "all") === 1), all.map((s) => count(s, "all")));

  console.log("RESTART-ME");
  if ((await next()) !== "down") throw new Error("expected `down`");
  clear(all);
  R1.emit("emit-all", "while-down");
  R1.emit("message", "still here");
  await settle(700);
  check("Redis down: the wsio node still delivers locally", count(R1, "all") === 1 && count(R2, "all") === 1, [count(R1, "all"), count(R2, "all")]);
  check("Redis down: the wsio node still answers its clients", count(R1, "message-back") === 1 && R1.connected && R2.connected);
  console.log("DOWN-CHECKED");
  if ((await next()) !== "up") throw new Error("expected `up`");
  const t0 = Date.now();
  let there = false;
  let back = false;
  for (let i = 0; Date.now() - t0 < 5000 && !(there && back); i++) {
    clear(all);
    R1.emit("emit-all", `there-${i}`);
    N1.emit("emit-all", `back-${i}`);
    await settle(200);
    there = there || N2.log.some(([e, a]) => e === "all" && String(a[0]).startsWith("there-"));
    back = back || R2.log.some(([e, a]) => e === "all" && String(a[0]).startsWith("back-"));
  }
  const took = Date.now() - t0;
  check(`after the restart: wsio -> node again within 5 s (${took} ms)`, there);
  check(`after the restart: node -> wsio again within 5 s (${took} ms)`, back);
  check("after the restart: cluster-count", (await ask(R1, "cluster-count")) === 4);
  check("after the restart: serverSideEmit", same(await ask(R1, "server-side-emit", "x"), ["node", ...rusts(RUST_NODES - 1)]));
  all.forEach((s) => s.close());
}

(opts.mode === "restart" ? restart() : full())
  .catch((e) => {
    failed++;
    console.log(`FAIL ${e.stack || e}`);
  })
  .finally(() => {
    console.log(`${passed} passed, ${failed} failed`);
    process.exit(failed ? 1 : 0);
  });
