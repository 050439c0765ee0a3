// Chromium's own WebSocket against a WebSocket echo server (the `ws_echo`
// example), driven by playwright-core.
//
//   node ws-browser.js ws://127.0.0.1:PORT/ [--chromium /usr/bin/chromium]
//
// The page opens a WebSocket (the browser offers permessage-deflate, as it
// always does) through a byte-counting TCP relay in this script, checks the
// extension it got, and echoes text and binary messages, large and small.
// The relay's counts show that large messages crossed compressed both ways.
// Prints `ok NAME` / `fail NAME: why`, then `N passed, N failed`; exits
// non-zero on any failure.
"use strict";

const http = require("http");
const net = require("net");
const { chromium } = require("playwright-core");

const args = process.argv.slice(2);
const TARGET = args[0];
const opt = (name, dflt) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : dflt;
};
if (!TARGET || !/^ws:\/\/127\.0\.0\.1:\d+\//.test(TARGET)) {
  console.error("usage: node ws-browser.js ws://127.0.0.1:PORT/ [--chromium PATH]");
  process.exit(2);
}
const CHROMIUM = opt("--chromium", "/usr/bin/chromium");
const target = new URL(TARGET);

let passed = 0;
let failed = 0;
async function check(name, f) {
  try {
    await f();
    passed++;
    console.log(`ok ${name}`);
  } catch (e) {
    failed++;
    console.log(`fail ${name}: ${String(e && e.message ? e.message : e).split("\n")[0]}`);
  }
}
function assert(cond, why) {
  if (!cond) throw new Error(why);
}

const watchdog = setTimeout(() => {
  console.log("fail watchdog: the run took more than 90 s");
  console.log(`${passed} passed, ${failed + 1} failed`);
  process.exit(1);
}, 90000);
watchdog.unref();

// A page and a relay on one local origin: GET / is an empty page (a page
// on 127.0.0.1 may open WebSockets to 127.0.0.1, where about:blank may not),
// and a WebSocket upgrade is relayed to the target with its bytes counted
// each way.
const counts = { up: 0, down: 0 };
function relay() {
  return new Promise((resolve) => {
    const server = http.createServer((req, res) => {
      res.writeHead(200, { "Content-Type": "text/html" });
      res.end("<!doctype html><title>ws</title>");
    });
    server.on("upgrade", (req, client, head) => {
      const upstream = net.connect(Number(target.port), target.hostname);
      const lines = [`${req.method} ${req.url} HTTP/1.1`];
      for (let i = 0; i < req.rawHeaders.length; i += 2) lines.push(`${req.rawHeaders[i]}: ${req.rawHeaders[i + 1]}`);
      const first = Buffer.concat([Buffer.from(lines.join("\r\n") + "\r\n\r\n", "latin1"), head]);
      counts.up += first.length;
      upstream.write(first);
      client.on("data", (d) => {
        counts.up += d.length;
        upstream.write(d);
      });
      upstream.on("data", (d) => {
        counts.down += d.length;
        client.write(d);
      });
      client.on("close", () => upstream.destroy());
      upstream.on("close", () => client.destroy());
      client.on("error", () => upstream.destroy());
      upstream.on("error", () => client.destroy());
    });
    server.listen(0, "127.0.0.1", () => resolve(server));
  });
}

// Runs in the page: opens the socket, echoes each message, reports.
async function inPage(url) {
  const json = (n, seed) => {
    let s = "[";
    for (let i = 0; s.length < n; i++) s += `{"id":${i + seed},"user":"u${(i * 7) % 13}","text":"hello there"},`;
    return s.slice(0, n - 1) + "]";
  };
  const ws = new WebSocket(url);
  ws.binaryType = "arraybuffer";
  const inbox = [];
  let wake = null;
  ws.onmessage = (e) => {
    inbox.push(e.data);
    if (wake) wake();
  };
  await new Promise((resolve, reject) => {
    ws.onopen = resolve;
    ws.onerror = () => reject(new Error("the WebSocket failed to open"));
  });
  const next = () =>
    inbox.length
      ? Promise.resolve(inbox.shift())
      : new Promise((resolve, reject) => {
          const t = setTimeout(() => reject(new Error("no echo within 10 s")), 10000);
          wake = () => {
            clearTimeout(t);
            wake = null;
            resolve(inbox.shift());
          };
        });
  const report = { extensions: ws.extensions, results: [] };
  const big = json(200 * 1024, 0);
  const cases = [
    ["large text", big],
    ["small text", "héllo ✓"],
    ["empty text", ""],
    ["binary", new TextEncoder().encode(json(50 * 1024, 3)).buffer],
  ];
  for (let i = 0; i < 30; i++) cases.push([`text ${i}`, json(1000 + 97 * i, i)]);
  for (const [, data] of cases) ws.send(data);
  for (const [name, data] of cases) {
    const got = await next();
    let same;
    if (typeof data === "string") same = got === data;
    else same = got instanceof ArrayBuffer && got.byteLength === data.byteLength && new Uint8Array(got).every((b, i) => b === new Uint8Array(data)[i]);
    report.results.push([name, same]);
  }
  report.sent = cases.reduce((n, [, d]) => n + (typeof d === "string" ? new TextEncoder().encode(d).length : d.byteLength), 0);
  ws.close(1000, "done");
  return report;
}

(async () => {
  const server = await relay();
  const origin = `http://127.0.0.1:${server.address().port}`;
  const url = `ws://127.0.0.1:${server.address().port}/`;
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"],
  });
  try {
    const page = await browser.newPage();
    await page.goto(`${origin}/`);
    let report = null;
    await check("echo", async () => {
      report = await page.evaluate(inPage, url);
      const bad = report.results.filter(([, same]) => !same).map(([name]) => name);
      assert(bad.length === 0, `echoes differ: ${bad.join(", ")}`);
    });
    await check("permessage-deflate negotiated", async () => {
      assert(report, "no report");
      assert(/^permessage-deflate\b/.test(report.extensions), `extensions ${JSON.stringify(report.extensions)}`);
    });
    await check("compressed on the wire", async () => {
      assert(report, "no report");
      assert(counts.up < report.sent / 4, `the browser sent ${counts.up} bytes for ${report.sent}`);
      assert(counts.down < report.sent / 4, `the server sent ${counts.down} bytes for ${report.sent}`);
      console.log(`bytes: ${report.sent} of messages, ${counts.up} up, ${counts.down} down`);
    });
  } finally {
    await browser.close();
    server.close();
  }
  console.log(`${passed} passed, ${failed} failed`);
  process.exit(failed === 0 ? 0 : 1);
})().catch((e) => {
  console.log(`fail run: ${e && e.message}`);
  console.log(`${passed} passed, ${failed + 1} failed`);
  process.exit(1);
});
