// The official socket.io-client across a restart of the server it talks to.
//
//   node sio-reconnect-check.js URL [--transports polling|websocket|both]
//
// Connects to / and /custom, echoes a numbered stream through `message`,
// then prints KILL and waits for STARTED on stdin (the test restarts the
// server on the same port), and checks that the client reconnects by
// itself, that both namespaces are back, and that echoes flow again in
// order. Prints `ok NAME` / `fail NAME: why`, then `N passed, N failed`.
"use strict";
const { io } = require("socket.io-client");
const readline = require("readline");

const url = process.argv[2];
const ti = process.argv.indexOf("--transports");
const mode = ti > 0 ? process.argv[ti + 1] : "both";
const transports = mode === "polling" ? ["polling"] : mode === "websocket" ? ["websocket"] : ["polling", "websocket"];
const stdin = readline.createInterface({ input: process.stdin });
const lines = [];
let waiter = null;
stdin.on("line", (l) => (waiter ? (waiter(l), (waiter = null)) : lines.push(l)));
const nextLine = () => new Promise((r) => (lines.length ? r(lines.shift()) : (waiter = r)));
const watchdog = setTimeout(() => {
  console.log("fail watchdog: over 60 s");
  console.log("0 passed, 1 failed");
  process.exit(1);
}, 60000);

function once(emitter, ev, ms, what) {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`${what}: no ${ev} within ${ms} ms`)), ms);
    emitter.once(ev, (...a) => (clearTimeout(t), resolve(a)));
  });
}

async function echoes(s, from, count) {
  const got = [];
  const done = new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`echoes ${from}..: got ${JSON.stringify(got)}`)), 5000);
    const on = (n) => {
      got.push(n);
      if (got.length === count) {
        clearTimeout(t);
        s.off("message-back", on);
        resolve();
      }
    };
    s.on("message-back", on);
  });
  for (let i = 0; i < count; i++) s.emit("message", from + i);
  await done;
  const want = Array.from({ length: count }, (_, i) => from + i);
  if (JSON.stringify(got) !== JSON.stringify(want)) throw new Error(`echoes ${JSON.stringify(got)}`);
}

(async () => {
  const opts = { transports, reconnectionDelay: 100, reconnectionDelayMax: 500, forceNew: true };
  const root = io(url, opts);
  const custom = root.io.socket("/custom", {});
  custom.connect();
  try {
    await Promise.all([once(root, "connect", 5000, "/"), once(custom, "connect", 5000, "/custom")]);
    await echoes(root, 0, 20);
    const down = once(root, "disconnect", 5000, "/");
    console.log("KILL");
    if ((await nextLine()) !== "KILLED") throw new Error("the test did not kill the server");
    const [reason] = await down;
    if (reason !== "transport close" && reason !== "transport error" && reason !== "ping timeout") {
      throw new Error(`disconnect reason ${reason}`);
    }
    console.log("START");
    if ((await nextLine()) !== "STARTED") throw new Error("the test did not restart the server");
    await Promise.all([once(root, "connect", 10000, "/ again"), once(custom, "connect", 10000, "/custom again")]);
    await echoes(root, 1000, 20);
    if (mode === "both") {
      await new Promise((r) => setTimeout(r, 300));
      const t = root.io.engine.transport.name;
      if (t !== "websocket") throw new Error(`transport after reconnecting is ${t}`);
    }
    console.log(`ok reconnect-after-restart-${mode}`);
    console.log("1 passed, 0 failed");
    clearTimeout(watchdog);
    root.close();
    process.exit(0);
  } catch (e) {
    console.log(`fail reconnect-after-restart-${mode}: ${e.message}`);
    console.log("0 passed, 1 failed");
    process.exit(1);
  }
})();
