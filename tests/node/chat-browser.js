// The browser chat (examples/chat.rs) in real Chromium, driven by
// playwright-core.
//
//   node chat-browser.js URL [--chromium /usr/bin/chromium] [--screenshot PATH]
//
// Two browsers (each its own Chromium with a fresh profile) join with
// nicknames, one forced to long-polling (`?transport=polling`), and chat;
// the other must end on WebSocket. Then the server restarts: this script
// prints `KILL` and waits for a `KILLED` line on stdin, then prints `START`
// and waits for `STARTED` (the Rust test kills the chat example and starts
// it again on the same port). Both pages must reconnect by themselves and
// chat again. Before that, one page's connection blips: it comes back
// recovered (connection state recovery) and shows what was said meanwhile.
// After it, a third browser joins and Alice writes to Bob privately (Carol
// sees nothing); nicknames that render as nothing are refused. Last, the
// CDN fallback: the page loads the official client from cdn.socket.io
// (served here from the npm copy) when the server has none, and refuses a
// copy that does not match its SRI hash.
//
// No page may reach the internet: every request to another origin is
// aborted and reported. Prints `ok NAME` / `fail NAME: why`, then
// `N passed, N failed`; exits non-zero on any failure.
"use strict";

const fs = require("fs");
const os = require("os");
const path = require("path");
const readline = require("readline");
const { chromium } = require("playwright-core");

const args = process.argv.slice(2);
const URL_ = args[0];
const opt = (name, dflt) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : dflt;
};
if (!URL_ || !/^http:\/\//.test(URL_)) {
  console.error("usage: node chat-browser.js http://127.0.0.1:PORT [--chromium PATH] [--screenshot PATH]");
  process.exit(2);
}
const CHROMIUM = opt("--chromium", "/usr/bin/chromium");
const SCREENSHOT = opt("--screenshot", null);
const ORIGIN = new URL(URL_).origin;
const CDN = "https://cdn.socket.io/4.8.4/socket.io.min.js";
const CLIENT_JS = fs.readFileSync(path.join(__dirname, "node_modules/socket.io-client/dist/socket.io.min.js"));

const FLAGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-background-networking",
  "--disable-quic",
  "--no-first-run",
  "--disable-component-update",
  "--disable-sync",
];

let passed = 0;
let failed = 0;
const ok = (name) => {
  passed++;
  console.log(`ok ${name}`);
};
const fail = (name, why) => {
  failed++;
  console.log(`fail ${name}: ${String(why && why.message ? why.message : why).split("\n")[0]}`);
};
async function check(name, f) {
  try {
    await f();
    ok(name);
    return true;
  } catch (e) {
    fail(name, e);
    return false;
  }
}
function assert(cond, why) {
  if (!cond) throw new Error(why);
}

// The whole run may not hang.
const watchdog = setTimeout(() => {
  fail("watchdog", "the run took more than 150 s");
  finish();
}, 150_000);

// Lines from the Rust test on stdin.
const stdinLines = [];
let stdinWaiter = null;
readline.createInterface({ input: process.stdin }).on("line", (line) => {
  stdinLines.push(line.trim());
  if (stdinWaiter) stdinWaiter();
});
async function expectLine(want, ms) {
  const deadline = Date.now() + ms;
  for (;;) {
    const i = stdinLines.indexOf(want);
    if (i >= 0) {
      stdinLines.splice(i, 1);
      return;
    }
    const left = deadline - Date.now();
    if (left <= 0) throw new Error(`no ${want} on stdin within ${ms} ms`);
    await new Promise((r) => {
      stdinWaiter = r;
      setTimeout(r, Math.min(left, 500));
    });
  }
}

const dirs = [];
const contexts = [];
const blocked = [];

// One "browser": its own Chromium process and fresh profile.
async function browser(label) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `wsio-chat-${label}-`));
  dirs.push(dir);
  const ctx = await chromium.launchPersistentContext(dir, {
    executablePath: CHROMIUM,
    headless: true,
    args: FLAGS,
    viewport: { width: 440, height: 420 },
    deviceScaleFactor: 1,
  });
  contexts.push(ctx);
  // Nothing leaves 127.0.0.1 (registered first: later routes win).
  await ctx.route(
    (url) => url.origin !== ORIGIN && url.protocol !== "data:",
    (route) => {
      blocked.push(`${label}: ${route.request().url()}`);
      return route.abort();
    },
  );
  const page = ctx.pages()[0] || (await ctx.newPage());
  page.on("pageerror", (e) => console.error(`[${label}] page error: ${e.message}`));
  return { ctx, page };
}

const text = (page, sel) => page.locator(sel).innerText();
const waitText = (page, sel, want, ms = 10_000) =>
  page.waitForFunction(
    ([sel, want]) => {
      const el = document.querySelector(sel);
      return el && el.textContent.includes(want);
    },
    [sel, want],
    { timeout: ms },
  );
const transportOf = (page) =>
  page.evaluate(() => window.chat.socket && window.chat.socket.io.engine && window.chat.socket.io.engine.transport.name);

async function open(page, query) {
  await page.goto(URL_ + "/" + query, { waitUntil: "load" });
  await page.waitForFunction(() => window.chat && window.chat.client, null, { timeout: 10_000 });
}

async function join(page, name) {
  await page.fill("#name", name);
  await page.click("#join button");
  await page.waitForFunction(() => window.chat.statuses.includes("connected"), null, { timeout: 10_000 });
  await waitText(page, "#messages", `You joined as ${name}`);
  assert(await page.locator("#join").isHidden(), "the nickname form is still shown");
  assert(await page.locator("#text").isVisible(), "the message box is not shown");
}

async function say(page, words) {
  await page.fill("#text", words);
  await page.press("#text", "Enter");
}

// Both pages' screenshots side by side, drawn by Chromium itself.
async function compose(ctx, shots) {
  const p = await ctx.newPage();
  const url = await p.evaluate(async (srcs) => {
    const imgs = await Promise.all(
      srcs.map(
        (src) =>
          new Promise((resolve, reject) => {
            const img = new Image();
            img.onload = () => resolve(img);
            img.onerror = reject;
            img.src = src;
          }),
      ),
    );
    const gap = 12;
    const c = document.createElement("canvas");
    c.width = imgs.reduce((w, i) => w + i.width, 0) + gap * (imgs.length + 1);
    c.height = Math.max(...imgs.map((i) => i.height)) + 2 * gap;
    const g = c.getContext("2d");
    g.fillStyle = "#9ca3af";
    g.fillRect(0, 0, c.width, c.height);
    let x = gap;
    for (const img of imgs) {
      g.drawImage(img, x, gap);
      x += img.width + gap;
    }
    return c.toDataURL("image/png");
  }, shots.map((b) => "data:image/png;base64," + b.toString("base64")));
  await p.close();
  return Buffer.from(url.split(",")[1], "base64");
}

async function main() {
  const A = await browser("alice");
  const B = await browser("bob");
  const a = A.page;
  const b = B.page;

  if (
    !(await check("page-and-local-client", async () => {
      await open(a, "");
      await open(b, "?transport=polling");
      for (const p of [a, b]) {
        const source = await p.evaluate(() => window.chat.client);
        assert(source === "local", `the client came from ${source}, not the chat server`);
        assert((await text(p, "#status")) === "not connected", `status ${await text(p, "#status")}`);
      }
    }))
  ) {
    return;
  }

  if (
    !(await check("join-with-nicknames", async () => {
      await join(a, "alice");
      await join(b, "bob");
    }))
  ) {
    return;
  }

  await check("join-notice-and-online-count", async () => {
    await waitText(a, "#messages", "bob joined");
    await waitText(a, "#online", "2 online");
    await waitText(b, "#online", "2 online");
    const bLog = await text(b, "#messages");
    assert(!bLog.includes("bob joined"), "bob was told that he joined as someone else");
  });

  await check("messages-both-ways", async () => {
    await say(a, "Hi Bob! This page talks to a Rust server.");
    await waitText(b, "#messages", "alice: Hi Bob! This page talks to a Rust server.");
    await say(b, "Hello Alice, I am on long-polling.");
    await waitText(a, "#messages", "bob: Hello Alice, I am on long-polling.");
    await waitText(b, "#messages", "bob: Hello Alice, I am on long-polling.");
    const mine = await b.locator("#messages li.mine").count();
    assert(mine === 1, `bob has ${mine} lines marked as his own, expected 1`);
  });

  await check("transports", async () => {
    await a.waitForFunction(
      () => window.chat.socket.io.engine.transport.name === "websocket",
      null,
      { timeout: 10_000 },
    );
    await waitText(a, "#transport", "websocket");
    await say(a, "I upgraded to WebSocket.");
    await waitText(b, "#messages", "alice: I upgraded to WebSocket.");
    const tb = await transportOf(b);
    assert(tb === "polling", `the polling-only page is on ${tb}`);
    await waitText(b, "#transport", "polling");
  });

  await check("typing-hint", async () => {
    await b.type("#text", "Nice, and you");
    await waitText(a, "#typing", "bob is typing…");
  });

  if (SCREENSHOT) {
    await check("screenshot", async () => {
      const png = await compose(A.ctx, [await a.screenshot(), await b.screenshot()]);
      fs.mkdirSync(path.dirname(SCREENSHOT), { recursive: true });
      fs.writeFileSync(SCREENSHOT, png);
      console.error(`screenshot: ${SCREENSHOT} (${png.length} bytes)`);
    });
  }

  await check("typing-stops", async () => {
    await b.fill("#text", "");
    await b.dispatchEvent("#text", "input");
    await a.waitForFunction(() => document.querySelector("#typing").textContent === "", null, { timeout: 5_000 });
  });

  await check("no-html-injection", async () => {
    const evil = `<img src=x onerror="window.pwned=1"><b id="bold">bold</b>`;
    await say(a, evil);
    await waitText(b, "#messages", `alice: ${evil}`);
    await waitText(a, "#messages", `alice: ${evil}`);
    for (const p of [a, b]) {
      const r = await p.evaluate(() => ({
        pwned: window.pwned,
        tags: document.querySelectorAll("#messages img, #messages b, #bold").length,
      }));
      assert(r.pwned === undefined && r.tags === 0, `HTML was injected: ${JSON.stringify(r)}`);
    }
    // A nickname is text too.
    await waitText(a, "#messages", "bob joined");
  });

  await check("network-blip-shows-missed-messages", async () => {
    const id = await a.evaluate(() => window.chat.socket.id);
    // Alice's connection drops (as when a network blips) and her page
    // cannot reach the server for a while (its reconnection starts on
    // polling, which is refused here); Bob talks meanwhile.
    const away = (url) => url.pathname === "/socket.io/";
    let refused = 0;
    const refuse = (route) => {
      refused++;
      return route.abort();
    };
    await a.route(away, refuse);
    await a.evaluate(() => window.chat.socket.io.engine.close());
    await waitText(a, "#status", "reconnecting…", 5_000);
    await a.waitForFunction(() => window.chat.statuses.includes("reconnecting… (attempt 1)"), null, {
      timeout: 5_000,
    });
    await say(b, "Did you get this while you were away?");
    await waitText(b, "#messages", "bob: Did you get this while you were away?");
    await a.waitForFunction(() => window.chat.statuses.includes("reconnecting… (attempt 2)"), null, {
      timeout: 10_000,
    });
    assert(refused > 0, "alice's page never tried to reconnect");
    assert(!(await text(a, "#messages")).includes("while you were away"), "alice was not away");
    await a.unroute(away, refuse);
    await a.waitForFunction(() => window.chat.socket.connected, null, { timeout: 15_000 });
    const r = await a.evaluate(() => ({ recovered: window.chat.socket.recovered, id: window.chat.socket.id }));
    assert(r.recovered === true, "the connection was not recovered");
    assert(r.id === id, `a new id after a blip: ${r.id}, was ${id}`);
    await waitText(a, "#status", "reconnected, nothing missed");
    await waitText(a, "#messages", "bob: Did you get this while you were away?");
    const seen = await a.evaluate(
      () =>
        [...document.querySelectorAll("#messages li")].filter((li) =>
          li.textContent.includes("Did you get this while you were away?"),
        ).length,
    );
    assert(seen === 1, `the missed message is shown ${seen} times`);
    // Bob saw her go and come back; she was not told of her own departure.
    await waitText(b, "#messages", "alice left");
    await waitText(b, "#messages", "alice is back");
    assert(!(await text(a, "#messages")).includes("alice left"), "alice was told that she left");
    await waitText(a, "#online", "2 online");
    await say(a, "Yes, it came when I was back.");
    await waitText(b, "#messages", "alice: Yes, it came when I was back.");
  });

  await check("server-restart-reconnects", async () => {
    console.log("KILL");
    await expectLine("KILLED", 20_000);
    for (const p of [a, b]) {
      await waitText(p, "#status", "reconnecting…", 15_000);
      await waitText(p, "#messages", "Connection lost, reconnecting…");
    }
    console.log("START");
    await expectLine("STARTED", 30_000);
    for (const p of [a, b]) {
      await p.waitForFunction(() => window.chat.statuses.includes("reconnected"), null, { timeout: 20_000 });
      await waitText(p, "#status", "reconnected");
    }
    await waitText(a, "#messages", "Reconnected as alice");
    await waitText(b, "#messages", "Reconnected as bob");
    await waitText(a, "#online", "2 online");
    await waitText(b, "#online", "2 online");
  });

  await check("chat-after-restart", async () => {
    await say(a, "Still here after the restart?");
    await waitText(b, "#messages", "alice: Still here after the restart?");
    await say(b, "Yes, reconnected by itself.");
    await waitText(a, "#messages", "bob: Yes, reconnected by itself.");
    await a.waitForFunction(
      () => window.chat.socket.io.engine.transport.name === "websocket",
      null,
      { timeout: 10_000 },
    );
    const tb = await transportOf(b);
    assert(tb === "polling", `the polling-only page is on ${tb} after the restart`);
  });

  await check("offline", async () => {
    assert(blocked.length === 0, `requests left 127.0.0.1: ${blocked.join(", ")}`);
  });

  // A server without the npm copy: the page falls back to the CDN.
  const C = await browser("carol");
  await C.ctx.route(`${ORIGIN}/socket.io/socket.io.min.js`, (route) =>
    route.fulfill({ status: 404, contentType: "text/plain", body: "Not Found\n" }),
  );
  await check("cdn-fallback-with-sri", async () => {
    let served = 0;
    await C.ctx.route(CDN, (route) => {
      served++;
      return route.fulfill({
        status: 200,
        contentType: "text/javascript",
        headers: { "access-control-allow-origin": "*" },
        body: CLIENT_JS,
      });
    });
    await open(C.page, "?transport=websocket");
    const source = await C.page.evaluate(() => window.chat.client);
    assert(source === "cdn" && served === 1, `client from ${source}, CDN asked ${served} times`);
    await join(C.page, "carol");
    await waitText(a, "#messages", "carol joined");
    await waitText(a, "#online", "3 online");
    assert((await transportOf(C.page)) === "websocket", "the WebSocket-only page is not on websocket");
  });

  await check("private-message", async () => {
    // Alice picks Bob in the list of people and writes to him alone.
    await a.waitForFunction(
      () => [...document.querySelectorAll("#to option")].some((o) => o.textContent === "bob"),
      null,
      { timeout: 10_000 },
    );
    const bob = await b.evaluate(() => window.chat.me);
    await a.selectOption("#to", bob);
    await say(a, "Only for you, Bob.");
    await waitText(b, "#messages", "alice → bob (private): Only for you, Bob.");
    await waitText(a, "#messages", "alice → bob (private): Only for you, Bob.");
    // Everyone again, which Carol sees.
    await a.selectOption("#to", "");
    await say(a, "And this is for everyone.");
    await waitText(C.page, "#messages", "alice: And this is for everyone.");
    const carol = await text(C.page, "#messages");
    assert(!carol.includes("Only for you"), "Carol saw the private message");
    const lines = await b.locator("#messages li.private").count();
    assert(lines === 1, `bob has ${lines} private lines, expected 1`);
  });

  await check("server-refuses-without-nickname", async () => {
    // Empty, and names that render as nothing: whitespace, zero-width and
    // format characters.
    for (const name of [" \t ", "\u200b", "\u2060\u00ad", " \u200b\u3000\ufeff "]) {
      const message = await C.page.evaluate(
        (name) =>
          new Promise((resolve) => {
            const s = io({ auth: { name }, forceNew: true, transports: ["websocket"] });
            s.on("connect", () => resolve("connected"));
            s.on("connect_error", (e) => resolve(e.message));
          }),
        name,
      );
      assert(message === "Please choose a nickname", `${JSON.stringify(name)}: got ${message}`);
    }
    // Through the page: the refusal shows on the form, which stays.
    const p = await C.ctx.newPage();
    try {
      await open(p, "?transport=websocket");
      await p.fill("#name", "\u200b\u2060");
      await p.click("#join button");
      await waitText(p, "#join-error", "Please choose a nickname");
      assert(await p.locator("#join").isVisible(), "the nickname form is hidden");
      assert(await p.locator("#room").isHidden(), "the chat is shown");
      assert((await text(p, "#status")) === "not connected", `status ${await text(p, "#status")}`);
      assert(await p.locator("#join button").isEnabled(), "the join button stays disabled");
    } finally {
      await p.close();
    }
  });

  await check("leaving", async () => {
    await C.ctx.close();
    await waitText(a, "#messages", "carol left");
    await waitText(b, "#messages", "carol left");
    await waitText(a, "#online", "2 online");
    await a.waitForFunction(
      () => ![...document.querySelectorAll("#to option")].some((o) => o.textContent === "carol"),
      null,
      { timeout: 10_000 },
    );
    const names = await a.evaluate(() => [...document.querySelectorAll("#to option")].map((o) => o.textContent));
    assert(JSON.stringify(names) === JSON.stringify(["Everyone", "bob"]), `alice can write to ${names}`);
  });

  await check("cdn-copy-must-match-sri", async () => {
    const D = await browser("mallory");
    await D.ctx.route(`${ORIGIN}/socket.io/socket.io.min.js`, (route) =>
      route.fulfill({ status: 404, contentType: "text/plain", body: "Not Found\n" }),
    );
    await D.ctx.route(CDN, (route) =>
      route.fulfill({
        status: 200,
        contentType: "text/javascript",
        headers: { "access-control-allow-origin": "*" },
        body: Buffer.concat([CLIENT_JS, Buffer.from("\nwindow.tampered = 1;\n")]),
      }),
    );
    await D.page.goto(URL_ + "/", { waitUntil: "load" });
    await waitText(D.page, "#join-error", "Cannot load the Socket.IO client");
    const r = await D.page.evaluate(() => ({ tampered: window.tampered, io: typeof window.io }));
    assert(r.tampered === undefined && r.io === "undefined", `a tampered copy ran: ${JSON.stringify(r)}`);
  });
}

let finished = false;
async function finish() {
  if (finished) return;
  finished = true;
  clearTimeout(watchdog);
  await Promise.race([
    Promise.all(contexts.map((c) => c.close().catch(() => {}))),
    new Promise((r) => setTimeout(r, 5_000)),
  ]);
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
  console.log(`${passed} passed, ${failed} failed`);
  process.exit(failed === 0 && passed > 0 ? 0 : 1);
}

main()
  .catch((e) => fail("run", e))
  .finally(finish);
