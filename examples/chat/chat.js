// The page of examples/chat.rs. Whatever comes from the network is shown
// with textContent, never parsed as HTML.
"use strict";

// The official client: the chat server's copy of the npm package when it
// has one (`npm ci --prefix examples/chat`), else the official CDN, pinned
// to the same version and checked by its hash (Subresource Integrity).
const LOCAL_CLIENT = "/socket.io/socket.io.min.js";
const CDN_CLIENT = {
  src: "https://cdn.socket.io/4.8.4/socket.io.min.js",
  integrity: "sha384-fBrXvbDtHoeKWJ/hcA6M+YGueiDW+h45I7V6F2kD1S8bOkrF9rZYPLVkCR6BLR/1",
};

// `?transport=polling` or `?transport=websocket` forces one transport;
// by default the client starts with polling and upgrades to WebSocket.
const forced = new URLSearchParams(location.search).get("transport");
const transports = ["polling", "websocket"].includes(forced) ? [forced] : ["polling", "websocket"];

const $ = (id) => document.getElementById(id);
// State, also read by tests/node/chat-browser.js.
const chat = (window.chat = { socket: null, client: null, me: null, statuses: [] });
const typers = new Map(); // socket id -> name of who is typing

function loadScript(src, integrity) {
  return new Promise((resolve, reject) => {
    const script = document.createElement("script");
    script.src = src;
    if (integrity) {
      script.integrity = integrity;
      script.crossOrigin = "anonymous";
    }
    script.onload = resolve;
    script.onerror = () => {
      script.remove();
      reject(new Error(`cannot load ${src}`));
    };
    document.head.append(script);
  });
}

async function loadClient() {
  try {
    await loadScript(LOCAL_CLIENT);
    return "local";
  } catch {
    await loadScript(CDN_CLIENT.src, CDN_CLIENT.integrity);
    return "cdn";
  }
}

function setStatus(text) {
  $("status").textContent = text;
  chat.statuses.push(text);
}

// One line in the log: [text, class] pieces, each its own span.
function addLine(pieces, className) {
  const list = $("messages");
  const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
  const li = document.createElement("li");
  if (className) li.className = className;
  for (const [text, cls] of pieces) {
    const span = document.createElement("span");
    if (cls) span.className = cls;
    span.textContent = text;
    li.append(span);
  }
  list.append(li);
  if (atBottom) list.scrollTop = list.scrollHeight;
}

const notice = (text) => addLine([[text]], "notice");

function showTyping() {
  const names = [...typers.values()];
  $("typing").textContent =
    names.length === 0 ? "" :
    names.length === 1 ? `${names[0]} is typing…` :
    names.length === 2 ? `${names[0]} and ${names[1]} are typing…` :
    "Several people are typing…";
}

// The people one can write to privately: everyone online but us.
function showPeople(list) {
  const select = $("to");
  const chosen = select.value;
  for (const option of [...select.options].slice(1)) option.remove();
  for (const { id, name } of list) {
    if (id === chat.me) continue;
    const option = document.createElement("option");
    option.value = id;
    option.textContent = name;
    select.append(option);
  }
  // Still there? Else back to everyone.
  select.value = [...select.options].some((o) => o.value === chosen) ? chosen : "";
}

function connect(name) {
  const socket = io({ auth: { name }, transports });
  chat.socket = socket;
  setStatus("connecting…");

  // After a short cut the server restores the connection (connection state
  // recovery): same id, and the events it missed come with it. After a
  // server restart, or a long absence, it is a new connection.
  socket.on("connect", () => {
    if (!chat.me) setStatus("connected");
    else if (socket.recovered) {
      setStatus("reconnected, nothing missed");
      notice("Back online: what was said meanwhile is shown");
    } else setStatus("reconnected");
    $("transport").textContent = socket.io.engine.transport.name;
  });
  // Each (re)connection opens a new engine: it starts on polling (unless
  // forced) and upgrades to WebSocket when it can.
  socket.io.on("open", () => {
    socket.io.engine.on("upgrade", (t) => ($("transport").textContent = t.name));
  });
  socket.on("welcome", ({ id, name, online }) => {
    $("online").textContent = `${online} online`;
    if (chat.me) {
      notice(`Reconnected as ${name}`);
    } else {
      notice(`You joined as ${name}`);
      $("join").hidden = true;
      $("room").hidden = false;
      $("text").focus();
    }
    chat.me = id;
  });
  socket.on("online", (n) => ($("online").textContent = `${n} online`));
  socket.on("people", (list) => showPeople(list));
  socket.on("joined", ({ name, back }) => notice(back ? `${name} is back` : `${name} joined`));
  socket.on("left", ({ id, name }) => {
    typers.delete(id);
    showTyping();
    notice(`${name} left`);
  });
  socket.on("message", ({ id, name, text }) => {
    typers.delete(id);
    showTyping();
    addLine([[name, "name"], [": "], [text, "text"]], id === chat.me ? "mine" : "");
  });
  socket.on("private", ({ from, to, text }) => {
    const mine = from.id === chat.me;
    addLine(
      [[from.name, "name"], [` → ${to.name} (private)`, "to"], [": "], [text, "text"]],
      mine ? "private mine" : "private",
    );
  });
  socket.on("typing", ({ id, name, typing }) => {
    if (typing) typers.set(id, name);
    else typers.delete(id);
    showTyping();
  });

  // The client reconnects by itself (with growing delays) when the
  // connection is lost, for example while the server restarts.
  socket.on("disconnect", () => {
    $("online").textContent = "";
    $("transport").textContent = "";
    typers.clear();
    showTyping();
    if (socket.active) {
      setStatus("reconnecting…");
      notice("Connection lost, reconnecting…");
    } else {
      setStatus("disconnected");
    }
  });
  socket.io.on("reconnect_attempt", (n) => setStatus(`reconnecting… (attempt ${n})`));
  socket.on("connect_error", (err) => {
    if (socket.active) return; // a network error: the client retries
    // The server refused us (no nickname): back to the form.
    setStatus("not connected");
    $("join-error").textContent = err.message;
    $("join").querySelector("button").disabled = false;
    $("join").hidden = false;
    $("room").hidden = true;
  });
}

// Tell the others while we type, and stop after two quiet seconds.
let typingTimer = null;
function typing(on) {
  if (on) {
    if (!typingTimer) chat.socket.volatile.emit("typing", true);
    clearTimeout(typingTimer);
    typingTimer = setTimeout(() => typing(false), 2000);
  } else if (typingTimer) {
    clearTimeout(typingTimer);
    typingTimer = null;
    chat.socket.volatile.emit("typing", false);
  }
}

$("join").addEventListener("submit", (e) => {
  e.preventDefault();
  const name = $("name").value.trim();
  if (!name) return;
  $("join-error").textContent = "";
  $("join").querySelector("button").disabled = true;
  connect(name);
});

$("send").addEventListener("submit", (e) => {
  e.preventDefault();
  const text = $("text").value.trim();
  if (!text) return;
  typing(false);
  // Buffered while reconnecting.
  const to = $("to").value;
  if (to) chat.socket.emit("private", { to, text });
  else chat.socket.emit("message", text);
  $("text").value = "";
});

$("text").addEventListener("input", () => typing($("text").value !== ""));

loadClient().then(
  (source) => {
    chat.client = source;
    setStatus("not connected");
    $("join").querySelector("button").disabled = false;
    $("name").focus();
  },
  () => {
    setStatus("offline");
    $("join-error").textContent =
      "Cannot load the Socket.IO client: install it on the server with `npm ci --prefix examples/chat`.";
  },
);
