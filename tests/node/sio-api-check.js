#!/usr/bin/env node
// The server API that official clients can observe (the application of
// sio-api-server.js), checked with the official `socket.io-client`:
// connection middleware refusals with data, socket.data and the handshake
// in fetchSockets, socketsJoin / socketsLeave / disconnectSockets on
// selections, broadcasts with acknowledgements (all answers, rooms, the
// timeout with the answers so far), an event middleware that refuses
// (socket.use), a look at outgoing events (socket.onAnyOutgoing), and
// dynamic namespaces that go when empty (cleanupEmptyChildNamespaces).
//
//   node sio-api-check.js URL [--transports polling|websocket|both] [--parser msgpack]
//
// Prints `ok NAME` / `fail NAME: why` per check, then `N passed, N failed`;
// exits non-zero on any failure.
"use strict";

const { io } = require("socket.io-client");

const argv = process.argv.slice(2);
const URL_ = argv[0];
const arg = (name, dflt) => {
  const i = argv.indexOf(name);
  return i >= 0 ? argv[i + 1] : dflt;
};
if (!URL_ || !/^http:\/\//.test(URL_)) {
  console.error("usage: node sio-api-check.js URL [--transports polling|websocket|both] [--parser msgpack]");
  process.exit(2);
}
const TRANSPORTS = { polling: ["polling"], websocket: ["websocket"], both: ["polling", "websocket"] }[
  arg("--transports", "both")
];
const PARSER = arg("--parser", "default");
if (!TRANSPORTS || !["default", "msgpack"].includes(PARSER)) {
  console.error("sio-api-check: bad --transports or --parser");
  process.exit(2);
}
const PARSER_OPT = PARSER === "msgpack" ? { parser: require("socket.io-msgpack-parser") } : {};

let passed = 0;
let failed = 0;
const sockets = [];

function assert(cond, why) {
  if (!cond) throw new Error(why);
}
const same = (got, want, what) =>
  assert(JSON.stringify(got) === JSON.stringify(want), `${what}: got ${JSON.stringify(got)}, want ${JSON.stringify(want)}`);

async function check(name, f) {
  const timer = new Promise((_, reject) => setTimeout(() => reject(new Error("timed out after 10 s")), 10_000));
  try {
    await Promise.race([f(), timer]);
    passed++;
    console.log(`ok ${name}`);
    return true;
  } catch (e) {
    failed++;
    console.log(`fail ${name}: ${String((e && e.message) || e).split("\n")[0]}`);
    return false;
  }
}

function open(auth) {
  const s = io(URL_, { auth, transports: TRANSPORTS, forceNew: true, reconnection: false, ...PARSER_OPT });
  sockets.push(s);
  return s;
}

function connected(s) {
  return new Promise((resolve, reject) => {
    s.once("connect", () => resolve(s));
    s.once("connect_error", (e) => reject(new Error(`connect_error: ${e.message}`)));
  });
}

const ask = (s, ...args) => s.timeout(5000).emitWithAck(...args);

// One client's view of fetchSockets.
const view = (s, rooms) => ({ id: s.id, rooms: [s.id, ...rooms].sort(), data: { name: s.name }, auth: { name: s.name } });

async function main() {
  await check("middleware-refuses-with-data", async () => {
    for (const auth of [{}, { name: "" }, { name: 7 }]) {
      const s = open(auth);
      const err = await new Promise((resolve, reject) => {
        s.once("connect", () => reject(new Error(`connected with ${JSON.stringify(auth)}`)));
        s.once("connect_error", resolve);
      });
      same([err.message, err.data], ["name required", { code: 42 }], `refusal of ${JSON.stringify(auth)}`);
      s.close();
    }
  });

  const [a, b, c] = ["a", "b", "c"].map((name) => {
    const s = open({ name });
    s.name = name;
    return s;
  });
  const ready = await check("three-clients-connect", async () => {
    await Promise.all([a, b, c].map(connected));
  });
  if (!ready) return;
  // b answers questions only when told to.
  let bAnswers = true;
  a.on("question", (q, cb) => cb(`a:${q}`));
  b.on("question", (q, cb) => bAnswers && cb(`b:${q}`));
  c.on("question", (q, cb) => cb(`c:${q}`));

  await check("fetch-sockets-with-data-and-handshake", async () => {
    same(await ask(a, "fetch", {}), [view(a, []), view(b, []), view(c, [])], "io.fetchSockets()");
    same(await ask(b, "fetch", { to: [c.id] }), [view(c, [])], "io.to(c.id).fetchSockets()");
    same(await ask(b, "fetch", { except: [c.id] }), [view(a, []), view(b, [])], "io.except(c.id).fetchSockets()");
  });

  await check("sockets-join-on-selections", async () => {
    same(await ask(a, "join", {}, "r1"), true, "join ack");
    same(await ask(a, "join", { except: [c.id] }, "r2"), true, "join ack");
    same(await ask(a, "join", { to: [c.id] }, "r3"), true, "join ack");
    same(await ask(c, "fetch", { to: ["r1"] }), [view(a, ["r1", "r2"]), view(b, ["r1", "r2"]), view(c, ["r1", "r3"])], "r1");
    same(await ask(c, "fetch", { to: ["r2"] }), [view(a, ["r1", "r2"]), view(b, ["r1", "r2"])], "r2");
    same(await ask(c, "fetch", { to: ["r2", "r3"] }), [view(a, ["r1", "r2"]), view(b, ["r1", "r2"]), view(c, ["r1", "r3"])], "r2 or r3");
    same(await ask(c, "fetch", { to: ["r1"], except: ["r2"] }), [view(c, ["r1", "r3"])], "r1 but not r2");
  });

  await check("sockets-leave-on-selections", async () => {
    same(await ask(a, "leave", { to: ["r2"] }, "r1"), true, "leave ack");
    same(await ask(c, "fetch", { to: ["r1"] }), [view(c, ["r1", "r3"])], "r1 after the r2 members left it");
    same(await ask(c, "leave", {}, "r3"), true, "leave ack");
    same(await ask(c, "fetch", { to: ["r3"] }), [], "r3 after everyone left it");
  });

  await check("broadcast-with-acks", async () => {
    same(await ask(a, "ask", {}, 2000), { timedOut: false, answers: ["a:who?", "b:who?", "c:who?"] }, "everyone");
    same(await ask(a, "ask", { to: ["r2"] }, 2000), { timedOut: false, answers: ["a:who?", "b:who?"] }, "r2");
    same(await ask(a, "ask", { except: ["r2"] }, 2000), { timedOut: false, answers: ["c:who?"] }, "all but r2");
    same(await ask(a, "ask", { to: ["nobody-here"] }, 2000), { timedOut: false, answers: [] }, "an empty room");
  });

  await check("broadcast-with-acks-times-out-with-the-answers-so-far", async () => {
    bAnswers = false;
    const started = Date.now();
    same(await ask(a, "ask", {}, 400), { timedOut: true, answers: ["a:who?", "c:who?"] }, "b silent");
    assert(Date.now() - started >= 350, `answered after ${Date.now() - started} ms, before the timeout`);
    bAnswers = true;
  });

  await check("event-middleware-refuses-and-keeps-order", async () => {
    const refused = c.timeout(500).emitWithAck("forbidden");
    const after = ask(c, "fetch", { to: [c.id] });
    same(await after, [view(c, ["r1"])], "the event after a refused one");
    const why = await refused.then(
      (v) => `answered ${JSON.stringify(v)}`,
      (e) => e.message,
    );
    same(why, "operation has timed out", "the refused event");
  });

  await check("outgoing-events-are-seen", async () => {
    // Three broadcasts reached each: everyone, r2 (a) or all but r2 (c),
    // and the one that timed out. Acknowledgements are not events.
    same(await ask(a, "sent"), ["question", "question", "question"], "a");
    same(await ask(c, "sent"), ["question", "question", "question"], "c");
  });

  await check("dynamic-namespaces-go-when-empty", async () => {
    const has = (name) => ask(a, "has-namespace", name);
    same(await has("/dyn-7"), false, "before anyone joined it");
    const d = io(`${URL_}/dyn-7`, { transports: TRANSPORTS, forceNew: true, reconnection: false, ...PARSER_OPT });
    sockets.push(d);
    const hello = new Promise((resolve) => d.once("hello", resolve));
    await connected(d);
    same(await hello, "/dyn-7", "hello");
    same(await has("/dyn-7"), true, "with a socket in it");
    d.disconnect();
    const deadline = Date.now() + 3000;
    while ((await has("/dyn-7")) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    same(await has("/dyn-7"), false, "after its last socket left");
    const x = io(`${URL_}/dyn-x`, { transports: TRANSPORTS, forceNew: true, reconnection: false, ...PARSER_OPT });
    sockets.push(x);
    const err = await connected(x).then(
      () => "connected",
      (e) => e.message,
    );
    same(err, "connect_error: Invalid namespace", "a name that matches no rule");
  });

  await check("disconnect-sockets-on-a-selection", async () => {
    const gone = (s) => new Promise((resolve) => s.once("disconnect", resolve));
    const aGone = gone(a);
    const bGone = gone(b);
    a.emit("kick", { to: ["r2"] }, false);
    same(await Promise.all([aGone, bGone]), ["io server disconnect", "io server disconnect"], "reasons");
    same(await ask(c, "fetch", {}), [view(c, ["r1"])], "left after the kick");
    const cGone = gone(c);
    c.emit("kick", {}, true);
    same(await cGone, "io server disconnect", "reason with close");
  });

  await check("server-shutdown-closes-every-transport", async () => {
    const [e, f] = ["e", "f"].map((name) => open({ name }));
    await Promise.all([e, f].map(connected));
    const gone = [e, f].map((s) => new Promise((resolve) => s.once("disconnect", resolve)));
    f.emit("shutdown");
    same(await Promise.all(gone), ["transport close", "transport close"], "reasons");
  });
}

main()
  .catch((e) => {
    failed++;
    console.log(`fail run: ${e && e.message}`);
  })
  .finally(() => {
    for (const s of sockets) s.close();
    console.log(`${passed} passed, ${failed} failed`);
    process.exit(failed === 0 && passed > 0 ? 0 : 1);
  });
