#!/usr/bin/env node
// The `ws` package as a WebSocket peer for the wsio interop tests.
//
//   node ws-peer.js server [--port P] [--deflate] [--deflate-opts JSON]
//       Echo server on 127.0.0.1:P (default 0 = any free port); prints
//       `READY <port>` once listening. Every text or binary message is sent
//       back as is, except a text message `close:CODE:REASON`, which makes the
//       server close the connection with that code and reason (REASON may
//       contain further colons, or be empty). --deflate accepts the
//       permessage-deflate extension (off by default); --deflate-opts accepts
//       it with these `ws` perMessageDeflate options, e.g.
//       '{"serverNoContextTakeover":true,"clientMaxWindowBits":9}'.
//
//   node ws-peer.js client URL [--no-deflate] [--deflate-opts JSON]
//                              [--expect-deflate] [--only a,b]
//       Runs a fixed list of checks against an echo server with the behaviour
//       above, printing `ok NAME` / `fail NAME: why`, then `N passed, N failed`;
//       exits 1 if any failed. The client offers permessage-deflate unless
//       --no-deflate is given (ws's default, like a browser); --deflate-opts
//       offers it with these options. --expect-deflate adds checks that the
//       server accepted the extension (printing `extensions: VALUE`) and that
//       large messages cross the socket compressed both ways.
"use strict";

const crypto = require("crypto");
const { WebSocket, WebSocketServer } = require("ws");

function usage(msg) {
  if (msg) console.error(`ws-peer: ${msg}`);
  console.error("usage: node ws-peer.js server [--port P] [--deflate]");
  console.error("       node ws-peer.js client URL [--no-deflate] [--only a,b]");
  process.exit(2);
}

// perMessageDeflate options given as JSON on the command line.
function parseOpts(text) {
  try {
    const opts = JSON.parse(text);
    if (opts === null || typeof opts !== "object" || Array.isArray(opts)) throw new Error("not an object");
    return opts;
  } catch (e) {
    usage(`bad --deflate-opts: ${e.message}`);
  }
}

// --- server ----------------------------------------------------------------------------

function runServer(args) {
  let port = 0;
  let deflate = false;
  for (let i = 0; i < args.length; i++) {
    if (args[i] === "--port") {
      port = Number(args[++i]);
      if (!Number.isInteger(port) || port < 0 || port > 65535) usage("bad --port");
    } else if (args[i] === "--deflate") deflate = deflate || true;
    else if (args[i] === "--deflate-opts") deflate = parseOpts(args[++i]);
    else usage(`unknown argument ${args[i]}`);
  }
  const wss = new WebSocketServer({
    host: "127.0.0.1",
    port,
    perMessageDeflate: deflate,
    maxPayload: 64 * 1024 * 1024,
  });
  wss.on("connection", (ws) => {
    ws.on("error", () => {});
    ws.on("message", (data, isBinary) => {
      if (!isBinary) {
        const text = data.toString("utf8");
        const m = /^close:(\d+):([\s\S]*)$/.exec(text);
        if (m) {
          ws.close(Number(m[1]), m[2]);
          return;
        }
        ws.send(text);
      } else {
        ws.send(data, { binary: true });
      }
    });
  });
  wss.on("error", (err) => {
    console.error(`ws-peer: ${err.message}`);
    process.exit(1);
  });
  wss.on("listening", () => {
    process.stdout.write(`READY ${wss.address().port}\n`);
  });
  const stop = () => {
    wss.close();
    process.exit(0);
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
}

// --- client ----------------------------------------------------------------------------

class Fail extends Error {}
function check(cond, why) {
  if (!cond) throw new Fail(why);
}

function runClient(args) {
  let url = null;
  let deflate = true;
  let expectDeflate = false;
  let only = null;
  for (let i = 0; i < args.length; i++) {
    if (args[i] === "--no-deflate") deflate = false;
    else if (args[i] === "--deflate-opts") deflate = parseOpts(args[++i]);
    else if (args[i] === "--expect-deflate") expectDeflate = true;
    else if (args[i] === "--only") only = new Set((args[++i] || "").split(","));
    else if (args[i].startsWith("--")) usage(`unknown option ${args[i]}`);
    else if (url === null) url = args[i];
    else usage(`unexpected argument ${args[i]}`);
  }
  if (!url) usage("missing URL");

  // A connection whose events are queued, so a check can await them in order.
  function connect(ms = 5000) {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(url, { perMessageDeflate: deflate, maxPayload: 64 * 1024 * 1024 });
      const queue = [];
      const waiters = [];
      const push = (ev) => {
        const w = waiters.shift();
        if (w) w(ev);
        else queue.push(ev);
      };
      ws.next = (timeout = 5000) =>
        queue.length
          ? Promise.resolve(queue.shift())
          : new Promise((res, rej) => {
              const t = setTimeout(() => {
                const idx = waiters.indexOf(waiter);
                if (idx >= 0) waiters.splice(idx, 1);
                rej(new Fail(`nothing received within ${timeout} ms`));
              }, timeout);
              const waiter = (ev) => {
                clearTimeout(t);
                res(ev);
              };
              waiters.push(waiter);
            });
      ws.on("message", (data, isBinary) => push({ type: "message", data, isBinary }));
      ws.on("pong", (data) => push({ type: "pong", data }));
      ws.on("close", (code, reason) => push({ type: "close", code, reason: reason.toString("utf8") }));
      ws.on("error", (err) => push({ type: "error", err }));
      const timer = setTimeout(() => reject(new Fail(`no open within ${ms} ms`)), ms);
      ws.once("open", () => {
        clearTimeout(timer);
        resolve(ws);
      });
      ws.once("error", (err) => {
        clearTimeout(timer);
        reject(new Fail(`connect: ${err.message}`));
      });
    });
  }

  async function expectMessage(ws, want, isBinary, what, ms = 8000) {
    const ev = await ws.next(ms);
    check(ev.type === "message", `${what}: got ${ev.type}${ev.code ? ` ${ev.code}` : ""} instead of a message`);
    check(ev.isBinary === isBinary, `${what}: came back as ${ev.isBinary ? "binary" : "text"}`);
    const got = Buffer.from(ev.data);
    const exp = Buffer.isBuffer(want) ? want : Buffer.from(want, "utf8");
    check(got.equals(exp), `${what}: ${got.length} bytes back, ${exp.length} sent, contents differ`);
  }

  async function expectClose(ws, code, reason, what, ms = 5000) {
    let ev = await ws.next(ms);
    while (ev.type === "error") ev = await ws.next(ms);
    check(ev.type === "close", `${what}: got ${ev.type} instead of close`);
    check(ev.code === code, `${what}: close code ${ev.code}, want ${code}`);
    check(ev.reason === reason, `${what}: close reason ${JSON.stringify(ev.reason)}, want ${JSON.stringify(reason)}`);
  }

  const checks = [];
  const add = (name, fn) => checks.push({ name, fn });

  add("text", async (ws) => {
    for (const t of ["hello", "héllo wörld ✓ 日本語 😀", ""]) {
      ws.send(t);
      await expectMessage(ws, t, false, `text ${JSON.stringify(t)}`);
    }
  });

  add("binary", async (ws) => {
    for (const b of [Buffer.from([0, 1, 2, 253, 254, 255]), Buffer.alloc(0)]) {
      ws.send(b);
      await expectMessage(ws, b, true, `binary of ${b.length} bytes`);
    }
  });

  add("length-encodings", async (ws) => {
    // 7-bit, 16-bit and 64-bit payload lengths, both edges
    for (const n of [125, 126, 127, 65535, 65536, 70000]) {
      const t = "a".repeat(n);
      ws.send(t);
      await expectMessage(ws, t, false, `text of ${n} bytes`);
      const b = crypto.randomBytes(n);
      ws.send(b);
      await expectMessage(ws, b, true, `binary of ${n} bytes`);
    }
  });

  add("binary-1MiB", async (ws) => {
    const b = crypto.randomBytes(1024 * 1024);
    ws.send(b);
    await expectMessage(ws, b, true, "1 MiB binary", 15000);
  });

  add("fragmented-binary", async (ws) => {
    const parts = [Buffer.from([1, 2, 3]), crypto.randomBytes(1000), Buffer.alloc(0), Buffer.from([9])];
    parts.forEach((p, i) => ws.send(p, { binary: true, fin: i === parts.length - 1 }));
    await expectMessage(ws, Buffer.concat(parts), true, "reassembled binary");
  });

  add("fragmented-text", async (ws) => {
    // the split falls inside a multi-byte UTF-8 sequence on purpose
    const whole = Buffer.from("frag-é-日本-end", "utf8");
    const cuts = [0, 6, 9, 13, whole.length];
    for (let i = 0; i + 1 < cuts.length; i++) {
      ws.send(whole.subarray(cuts[i], cuts[i + 1]), { binary: false, fin: i + 2 === cuts.length });
    }
    await expectMessage(ws, whole, false, "reassembled text");
  });

  add("ping", async (ws) => {
    ws.ping(Buffer.from("ping-payload"));
    const ev = await ws.next();
    check(ev.type === "pong", `got ${ev.type} instead of pong`);
    check(Buffer.from(ev.data).toString() === "ping-payload", `pong payload ${JSON.stringify(Buffer.from(ev.data).toString())}`);
    ws.ping();
    const ev2 = await ws.next();
    check(ev2.type === "pong" && ev2.data.length === 0, "empty ping not answered by an empty pong");
    ws.send("after-ping");
    await expectMessage(ws, "after-ping", false, "echo after ping");
  });

  add("close-4000", async (ws) => {
    ws.close(4000, "client bye ✓");
    await expectClose(ws, 4000, "client bye ✓", "close echo");
  });

  add("close-no-code", async (ws) => {
    ws.close();
    await expectClose(ws, 1005, "", "close echo");
  });

  add("server-close", async (ws) => {
    ws.send("close:4001:server: bye");
    await expectClose(ws, 4001, "server: bye", "server close");
  });

  add("server-close-1000", async (ws) => {
    ws.send("close:1000:");
    await expectClose(ws, 1000, "", "server close");
  });

  // JSON-like text: what compression is for.
  const json = (n, seed = 0) => {
    let s = "[";
    for (let i = 0; s.length < n; i++) s += `{"id":${i + seed},"user":"u${(i * 7) % 13}","text":"hello there","ok":true},`;
    return s.slice(0, n - 1) + "]";
  };

  if (expectDeflate) {
    add("deflate-negotiated", async (ws) => {
      // The parameters the server answered with, as `ws` parsed them.
      const pmd = ws._extensions["permessage-deflate"];
      console.log(`extensions: ${ws.extensions} ${JSON.stringify(pmd ? pmd.params : null)}`);
      check(pmd, `extensions ${JSON.stringify(ws.extensions)}`);
    });

    add("deflate-on-the-wire", async (ws) => {
      const t = json(200 * 1024);
      const sock = ws._socket;
      const [r0, w0] = [sock.bytesRead, sock.bytesWritten];
      ws.send(t);
      await expectMessage(ws, t, false, "200 KiB of JSON");
      const [read, written] = [sock.bytesRead - r0, sock.bytesWritten - w0];
      check(written < t.length / 4, `sent ${written} bytes for ${t.length}`);
      check(read < t.length / 4, `received ${read} bytes for ${t.length}`);
    });

    add("deflate-many", async (ws) => {
      // Context carries from message to message (or not, as agreed).
      const sent = [];
      for (let i = 0; i < 50; i++) {
        sent.push(json(1500 + i * 37, i));
        ws.send(sent[i]);
      }
      ws.send(Buffer.from(json(3000)), { binary: true });
      for (let i = 0; i < sent.length; i++) await expectMessage(ws, sent[i], false, `message ${i}`);
      await expectMessage(ws, Buffer.from(json(3000)), true, "binary");
    });

    add("deflate-fragmented", async (ws) => {
      const t = Buffer.from(json(9000));
      const cuts = [0, 3000, 3001, 7000, t.length];
      for (let i = 0; i + 1 < cuts.length; i++) {
        ws.send(t.subarray(cuts[i], cuts[i + 1]), { binary: false, fin: i + 2 === cuts.length, compress: true });
      }
      await expectMessage(ws, t, false, "fragmented compressed text");
      ws.ping(Buffer.from("between"));
      const ev = await ws.next();
      check(ev.type === "pong", `got ${ev.type} instead of pong`);
    });
  }

  (async () => {
    const chosen = checks.filter((c) => !only || only.has(c.name));
    if (only && chosen.length === 0) usage("--only matched no check");
    let passed = 0;
    let failed = 0;
    const watchdog = setTimeout(() => {
      console.log("fail watchdog: the run exceeded its overall time limit");
      console.log(`${passed} passed, ${failed + 1} failed`);
      process.exit(1);
    }, chosen.length * 22000 + 5000);
    watchdog.unref();
    for (const c of chosen) {
      let ws = null;
      let timer;
      try {
        await Promise.race([
          (async () => {
            ws = await connect();
            await c.fn(ws);
          })(),
          new Promise((_, reject) => {
            timer = setTimeout(() => reject(new Fail("timed out after 20000 ms")), 20000);
          }),
        ]);
        console.log(`ok ${c.name}`);
        passed++;
      } catch (e) {
        const why = e instanceof Fail ? e.message : (e && e.stack) || String(e);
        console.log(`fail ${c.name}: ${why.split("\n")[0]}`);
        failed++;
      } finally {
        clearTimeout(timer);
        if (ws) ws.terminate();
      }
    }
    console.log(`${passed} passed, ${failed} failed`);
    process.exit(failed === 0 ? 0 : 1);
  })();
}

const [cmd, ...rest] = process.argv.slice(2);
if (cmd === "server") runServer(rest);
else if (cmd === "client") runClient(rest);
else usage(cmd ? `unknown command ${cmd}` : undefined);
