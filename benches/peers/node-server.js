#!/usr/bin/env node
// The Node peer of scripts/bench-e2e.sh: the official `socket.io` (the
// version pinned by tests/node/package-lock.json; `npm ci --prefix
// tests/node` installs it) with the behaviour of wsio's `conformance`
// example that the load generator uses: on connection, `auth` with the
// client's auth; `message` -> `message-back` to the sender; `emit-all` ->
// `all` to every socket of `/`. Heartbeat 25 s / 20 s.
//
//   node benches/peers/node-server.js [--port P]
//
// Listens on 127.0.0.1:P (default 3000; 0 picks a free port) and prints
// `READY <port>` once listening; SIGTERM/SIGINT stop it.
"use strict";

const path = require("path");
const http = require("http");

const modules = path.join(__dirname, "..", "..", "tests", "node", "node_modules");
let Server;
try {
  ({ Server } = require(path.join(modules, "socket.io")));
} catch (e) {
  console.error(`node-server: socket.io is missing; run: npm ci --prefix tests/node (${e.message})`);
  process.exit(2);
}

let port = 3000;
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i++) {
  if (argv[i] === "--port" && /^\d+$/.test(argv[i + 1] || "")) {
    port = Number(argv[++i]);
  } else {
    console.error(`node-server: unknown argument ${argv[i]}`);
    process.exit(2);
  }
}

const httpServer = http.createServer({ noDelay: true }, (req, res) => {
  res.writeHead(404, { "Content-Type": "text/plain" });
  res.end("Not Found");
});
const io = new Server(httpServer, {
  pingInterval: 25000,
  pingTimeout: 20000,
  maxHttpBufferSize: 1e6,
  cors: { origin: "*" },
});

io.on("connection", (socket) => {
  socket.emit("auth", socket.handshake.auth || {});
  socket.on("message", (...args) => socket.emit("message-back", ...args));
  socket.on("emit-all", (...args) => io.emit("all", ...args));
});

httpServer.listen(port, "127.0.0.1", () => {
  console.log(`READY ${httpServer.address().port}`);
});

for (const sig of ["SIGTERM", "SIGINT"]) {
  process.on(sig, () => process.exit(0));
}
