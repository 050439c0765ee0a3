#!/usr/bin/env node
// A Socket.IO server (official `socket.io`) that logs what it receives, for
// the wsio client's restart test (tests/socketio_client_interop.rs): the test
// kills it and starts it again on the same port while the client emits.
//
//   node sio-restart-server.js [--port P] [--key KEY.pem --cert CERT.pem]
//
// With --key and --cert it serves HTTPS/WSS (the TLS test of the blocking
// client uses a self-signed certificate made by the test).
// Listens on 127.0.0.1:P (default 0: a free port). Prints one line per fact
// on stdout (synchronous on a pipe, so nothing is lost when it is killed):
//   READY <port>
//   CONNECT <nsp> <auth as JSON>
//   COUNT <nsp> <n>             for every "count" event (its first argument)
//   DISCONNECT <nsp> <reason>
// Namespaces "/" and "/custom"; on both, "echo" (…args, ack) acks with its
// arguments. SIGTERM/SIGINT stop it.
"use strict";

const fs = require("fs");
const http = require("http");
const https = require("https");
const { Server } = require("socket.io");

let port = 0;
let key = null;
let cert = null;
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i++) {
  if (argv[i] === "--port" && /^\d+$/.test(argv[i + 1] || "")) {
    port = Number(argv[++i]);
  } else if (argv[i] === "--key" && argv[i + 1]) {
    key = fs.readFileSync(argv[++i]);
  } else if (argv[i] === "--cert" && argv[i + 1]) {
    cert = fs.readFileSync(argv[++i]);
  } else {
    console.error(`sio-restart-server: bad argument ${argv[i]}`);
    process.exit(2);
  }
}

const log = (line) => process.stdout.write(line + "\n");
const notFound = (req, res) => {
  res.writeHead(404);
  res.end();
};
const httpServer =
  key && cert ? https.createServer({ key, cert }, notFound) : http.createServer(notFound);
const io = new Server(httpServer, {
  path: "/socket.io/",
  serveClient: false,
  pingInterval: 1000,
  pingTimeout: 1000,
  cors: { origin: "*" },
});

for (const name of ["/", "/custom"]) {
  io.of(name).on("connection", (socket) => {
    log(`CONNECT ${name} ${JSON.stringify(socket.handshake.auth)}`);
    socket.on("count", (n) => log(`COUNT ${name} ${n}`));
    socket.on("echo", (...args) => {
      const ack = args.pop();
      if (typeof ack === "function") ack(...args);
    });
    socket.on("disconnect", (reason) => log(`DISCONNECT ${name} ${reason}`));
  });
}

httpServer.on("error", (err) => {
  console.error(`sio-restart-server: ${err.message}`);
  process.exit(1);
});
httpServer.listen(port, "127.0.0.1", () => log(`READY ${httpServer.address().port}`));

const shutdown = () => {
  io.close();
  process.exit(0);
};
process.on("SIGTERM", shutdown);
process.on("SIGINT", shutdown);
