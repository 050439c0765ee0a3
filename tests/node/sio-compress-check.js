#!/usr/bin/env node
// Compression seen by the official `socket.io-client`: permessage-deflate on
// the WebSocket transport and gzip/deflate-encoded long-polling answers.
//
//   node sio-compress-check.js client URL [--only a,b] [--official]
//       Runs the scenarios below against a server with the behaviour of
//       CONFORMANCE.md and permessage-deflate on (the `conformance` example
//       with --compress), printing `ok NAME` / `fail NAME: why`, then
//       `N passed, N failed`; exits 1 if any failed. `--official`: the
//       server is the yardstick below, whose engine.io (6.6) no longer
//       hands `compress(false)` to its WebSocket (its polling still obeys
//       it): those messages are expected compressed.
//
//   node sio-compress-check.js server [--port P]
//       The yardstick: the official `socket.io` server with
//       `perMessageDeflate: true` (and its default `httpCompression`), with
//       the events the scenarios use (`message`, `message-with-ack`,
//       `emit-all`, and `message-uncompressed` / `emit-all-uncompressed`,
//       answered as `message-back` / `all` with `compress(false)`) and the
//       `auth` greeting. Prints `READY <port>`.
//
// Polling goes through `fetch` (engine.io-client's `Fetch` transport), which
// asks for and decodes compressed answers as a browser does; the scenarios
// watch the answers' `Content-Encoding` and the WebSocket's bytes on the
// socket to check that compression happened, not only that data came back.
"use strict";

const { io } = require("socket.io-client");
const { Fetch, NodeWebSocket } = require("engine.io-client");

function usage(msg) {
  if (msg) console.error(`sio-compress-check: ${msg}`);
  console.error("usage: node sio-compress-check.js client URL [--only a,b]");
  console.error("       node sio-compress-check.js server [--port P]");
  process.exit(2);
}

// --- the yardstick server ---------------------------------------------------------

function runServer(args) {
  let port = 0;
  for (let i = 0; i < args.length; i++) {
    if (args[i] === "--port") port = Number(args[++i]);
    else usage(`unknown argument ${args[i]}`);
  }
  const { Server } = require("socket.io");
  const httpServer = require("http").createServer();
  const server = new Server(httpServer, {
    pingInterval: 300,
    pingTimeout: 200,
    maxHttpBufferSize: 1e6,
    cors: { origin: "*" },
    perMessageDeflate: true,
  });
  server.on("connection", (socket) => {
    socket.emit("auth", socket.handshake.auth);
    socket.on("message", (...args) => socket.emit("message-back", ...args));
    socket.on("message-with-ack", (...args) => {
      const ack = args.pop();
      if (typeof ack === "function") ack(...args);
    });
    socket.on("emit-all", (...args) => server.emit("all", ...args));
    socket.on("message-uncompressed", (...args) =>
      socket.compress(false).emit("message-back", ...args)
    );
    socket.on("emit-all-uncompressed", (...args) => server.compress(false).emit("all", ...args));
  });
  httpServer.listen(port, "127.0.0.1", () => {
    process.stdout.write(`READY ${httpServer.address().port}\n`);
  });
  const stop = () => process.exit(0);
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
}

// --- the client scenarios ---------------------------------------------------------

class Fail extends Error {}
function check(cond, why) {
  if (!cond) throw new Fail(why);
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// What the polling answers said about their encoding, and the requests'
// Accept-Encoding, recorded by wrapping `fetch`.
const seen = { encodings: [], accepts: [], answers: [] };
const realFetch = globalThis.fetch;
globalThis.fetch = async (url, init) => {
  const res = await realFetch(url, init);
  if ((init && init.method) === "GET") {
    const encoding = res.headers.get("content-encoding") || "identity";
    seen.encodings.push(encoding);
    seen.answers.push({ encoding, text: await res.clone().text() });
  }
  return res;
};

// JSON-like data: what compression is for.
function records(n, seed = 0) {
  const out = [];
  for (let i = 0; i < n; i++) {
    out.push({ id: i + seed, user: `user${(i * 7) % 13}`, text: "hello there, how are you?", online: i % 2 === 0 });
  }
  return out;
}

function same(a, b) {
  return JSON.stringify(a) === JSON.stringify(b);
}

function runClient(args) {
  let url = null;
  let only = null;
  let official = false;
  for (let i = 0; i < args.length; i++) {
    if (args[i] === "--only") only = new Set((args[++i] || "").split(","));
    else if (args[i] === "--official") official = true;
    else if (args[i].startsWith("--")) usage(`unknown option ${args[i]}`);
    else if (url === null) url = args[i];
    else usage(`unexpected argument ${args[i]}`);
  }
  if (!url) usage("missing URL");

  const sockets = [];
  function connect(opts) {
    const s = io(url, { forceNew: true, reconnection: false, timeout: 5000, ...opts });
    sockets.push(s);
    return s;
  }

  function once(s, event, ms = 8000) {
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Fail(`no ${event} within ${ms} ms`)), ms);
      s.once(event, (...args) => {
        clearTimeout(t);
        resolve(args);
      });
      s.once("connect_error", (e) => {
        clearTimeout(t);
        reject(new Fail(`connect_error: ${e.message}`));
      });
    });
  }

  // The official client's WebSocket, once the transport is one.
  function rawWs(s) {
    const t = s.io.engine && s.io.engine.transport;
    return t && t.name === "websocket" ? t.ws : null;
  }

  async function echo(s, args, what) {
    s.emit("message", ...args);
    const back = await once(s, "message-back");
    check(same(back, args), `${what}: the echo differs`);
  }

  const checks = [];
  const add = (name, fn) => checks.push({ name, fn });

  add("polling-gzip", async () => {
    seen.encodings.length = 0;
    const s = connect({ transports: [Fetch] });
    await once(s, "auth");
    const big = records(400);
    await echo(s, [big], "20 KiB of JSON");
    await echo(s, ["small"], "a small message");
    check(seen.encodings.includes("gzip"), `answers were ${JSON.stringify(seen.encodings)}`);
    check(seen.encodings.includes("identity"), "small answers are not worth compressing");
  });

  add("polling-deflate", async () => {
    seen.encodings.length = 0;
    const s = connect({ transports: [Fetch], extraHeaders: { "accept-encoding": "deflate" } });
    await once(s, "auth");
    await echo(s, [records(300, 5)], "JSON");
    check(seen.encodings.includes("deflate"), `answers were ${JSON.stringify(seen.encodings)}`);
    check(!seen.encodings.includes("gzip"), "gzip was not accepted");
  });

  add("websocket-deflate", async () => {
    const s = connect({ transports: ["websocket"] });
    await once(s, "auth");
    const ws = rawWs(s);
    check(ws, "not on a WebSocket");
    check(ws._extensions["permessage-deflate"], `extensions: ${JSON.stringify(ws.extensions)}`);
    const big = records(4000);
    const size = JSON.stringify(big).length;
    const sock = ws._socket;
    const [r0, w0] = [sock.bytesRead, sock.bytesWritten];
    await echo(s, [big], "200 KiB of JSON");
    const [read, written] = [sock.bytesRead - r0, sock.bytesWritten - w0];
    check(written < size / 4, `sent ${written} bytes for ${size}`);
    check(read < size / 4, `received ${read} bytes for ${size}`);
    // Many messages in a row share the compression context.
    for (let i = 0; i < 20; i++) s.emit("message", records(30 + i, i));
    for (let i = 0; i < 20; i++) {
      const [back] = await once(s, "message-back");
      check(same(back, records(30 + i, i)), `message ${i} differs`);
    }
  });

  add("websocket-binary-and-acks", async () => {
    const s = connect({ transports: ["websocket"] });
    await once(s, "auth");
    const bin = Buffer.from(JSON.stringify(records(200)));
    const answer = await new Promise((resolve, reject) =>
      s.timeout(8000).emit("message-with-ack", { records: records(100), bin }, bin, (err, ...args) =>
        err ? reject(new Fail(`no ack: ${err.message}`)) : resolve(args)
      )
    );
    check(Buffer.isBuffer(answer[0].bin) && answer[0].bin.equals(bin), "binary inside an object");
    check(Buffer.isBuffer(answer[1]) && answer[1].equals(bin), "binary argument");
    check(same(answer[0].records, records(100)), "records");
  });

  add("upgrade", async () => {
    seen.encodings.length = 0;
    const s = connect({ transports: [Fetch, NodeWebSocket] });
    await once(s, "auth");
    await echo(s, [records(300)], "over polling");
    for (let i = 0; i < 50 && !rawWs(s); i++) await sleep(100);
    check(rawWs(s), "never upgraded");
    check(rawWs(s)._extensions["permessage-deflate"], "no permessage-deflate after the upgrade");
    await echo(s, [records(300, 1)], "over the WebSocket");
  });

  function uncompressed(read, size) {
    if (official) check(read < size / 4, `received ${read} bytes for ${size}: not compressed`);
    else check(read >= size, `received ${read} bytes for ${size}: compressed`);
  }

  // `socket.compress(false).emit(..)`: the echo comes back as it is on a
  // compressing WebSocket, while the client's message and a plain echo
  // still cross compressed.
  add("websocket-compress-false", async () => {
    const s = connect({ transports: ["websocket"] });
    await once(s, "auth");
    const ws = rawWs(s);
    check(ws && ws._extensions["permessage-deflate"], "no permessage-deflate");
    const big = records(2000);
    const size = JSON.stringify(big).length;
    const sock = ws._socket;
    let [r0, w0] = [sock.bytesRead, sock.bytesWritten];
    s.emit("message-uncompressed", big);
    let [back] = await once(s, "message-back");
    check(same(back, big), "the uncompressed echo differs");
    let [read, written] = [sock.bytesRead - r0, sock.bytesWritten - w0];
    check(written < size / 4, `sent ${written} bytes for ${size}`);
    uncompressed(read, size);
    [r0, w0] = [sock.bytesRead, sock.bytesWritten];
    await echo(s, [big], "a compressible echo after it");
    read = sock.bytesRead - r0;
    check(read < size / 4, `received ${read} bytes for ${size}: not compressed`);
  });

  // Over polling, an answer is compressed only if some packet in it may be.
  add("polling-compress-false", async () => {
    seen.answers.length = 0;
    const s = connect({ transports: [Fetch] });
    await once(s, "auth");
    const big = records(400, 3);
    s.emit("message-uncompressed", big);
    const [back] = await once(s, "message-back");
    check(same(back, big), "the uncompressed echo differs");
    await echo(s, [big], "a compressible echo after it");
    const marker = JSON.stringify(big[0]);
    const carried = seen.answers.filter((a) => a.text.includes(marker));
    check(carried.length === 2, `${carried.length} answers carried the echoes`);
    // A ping that happens to share the answer may have it compressed.
    const [plain, packed] = carried;
    check(
      plain.encoding === "identity" || plain.text.split("\x1e").includes("2"),
      `the compress(false) answer was ${plain.encoding}`
    );
    check(packed.encoding === "gzip", `the plain echo's answer was ${packed.encoding}`);
  });

  add("broadcast-compress-false", async () => {
    const a = connect({ transports: ["websocket"] });
    await once(a, "auth");
    const sock = rawWs(a)._socket;
    const payload = records(1000);
    const size = JSON.stringify(payload).length;
    const r0 = sock.bytesRead;
    const got = once(a, "all");
    a.emit("emit-all-uncompressed", payload);
    const [x] = await got;
    check(same(x, payload), "the broadcast differs");
    uncompressed(sock.bytesRead - r0, size);
  });

  add("broadcast", async () => {
    const a = connect({ transports: ["websocket"] });
    const b = connect({ transports: ["websocket"], perMessageDeflate: false });
    await Promise.all([once(a, "auth"), once(b, "auth")]);
    check(!rawWs(b)._extensions["permessage-deflate"], "b did not offer the extension");
    const payload = records(500);
    const got = Promise.all([once(a, "all"), once(b, "all")]);
    a.emit("emit-all", payload);
    const [[x], [y]] = await got;
    check(same(x, payload) && same(y, payload), "a broadcast differs");
  });

  (async () => {
    const chosen = checks.filter((c) => !only || only.has(c.name));
    if (only && chosen.length === 0) usage("--only matched no scenario");
    let passed = 0;
    let failed = 0;
    const watchdog = setTimeout(() => {
      console.log("fail watchdog: the run exceeded its overall time limit");
      console.log(`${passed} passed, ${failed + 1} failed`);
      process.exit(1);
    }, chosen.length * 22000 + 5000);
    watchdog.unref();
    for (const c of chosen) {
      let timer;
      try {
        await Promise.race([
          c.fn(),
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
        while (sockets.length) sockets.pop().disconnect();
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
