#!/usr/bin/env node
// The server API of the official `socket.io` 4.8 that the official clients
// can observe, as the yardstick for tests/sio_api_interop.rs (which runs the
// same application on a wsio server): `sio-api-check.js` must pass against
// both.
//
//   node sio-api-server.js [--port P] [--parser msgpack]
//
// Prints `READY <port>` once listening (0 picks a free port). On `/`:
//
// - io.use: a connection needs a non-empty string `auth.name`, else it is
//   refused with the message "name required" and data {code: 42};
//   socket.data = {name} on connection.
// - A selection `sel` is {to?: [rooms], except?: [rooms]}: io.to(...).except(...).
// - `fetch` (sel, ack): io.…fetchSockets(), acked with
//   [{id, rooms (sorted), data, auth: handshake.auth}] sorted by data.name.
// - `join` / `leave` (sel, room, ack): io.…socketsJoin(room) / socketsLeave(room), acks true.
// - `ask` (sel, ms, ack): io.timeout(ms).….emit("question", "who?", cb),
//   acked with {timedOut, answers (sorted)}.
// - `kick` (sel, close): io.….disconnectSockets(close); no ack.
// - socket.use refuses every event named `forbidden` (whose handler would
//   ack "handled"); socket.onAnyOutgoing records the events sent to the
//   socket, which `sent` (ack) answers with.
// - Dynamic namespaces /dyn-<digits> (io.of(regex)), removed when their last
//   socket leaves (cleanupEmptyChildNamespaces); a socket there is sent
//   `hello` (its namespace). `has-namespace` (name, ack) on `/` acks whether
//   the server has that namespace now.
// - `shutdown`: io.close() (every client sees its transport close; the
//   server stops).
"use strict";

const http = require("http");
const { Server } = require("socket.io");

const argv = process.argv.slice(2);
const arg = (name, dflt) => {
  const i = argv.indexOf(name);
  return i >= 0 ? argv[i + 1] : dflt;
};
const port = Number(arg("--port", "3000"));
const parser = arg("--parser", "default");
if (!["default", "msgpack"].includes(parser)) {
  console.error("sio-api-server: --parser expects msgpack or default");
  process.exit(2);
}

const httpServer = http.createServer((req, res) => {
  res.writeHead(404);
  res.end();
});
const io = new Server(httpServer, {
  pingInterval: 300,
  pingTimeout: 200,
  cleanupEmptyChildNamespaces: true,
  ...(parser === "msgpack" ? { parser: require("socket.io-msgpack-parser") } : {}),
});

function select(sel) {
  let op = io;
  for (const room of (sel && sel.to) || []) op = op.to(room);
  for (const room of (sel && sel.except) || []) op = op.except(room);
  return op;
}

io.of(/^\/dyn-\d+$/).on("connection", (socket) => socket.emit("hello", socket.nsp.name));

io.use((socket, next) => {
  const name = socket.handshake.auth && socket.handshake.auth.name;
  if (typeof name === "string" && name !== "") return next();
  const err = new Error("name required");
  err.data = { code: 42 };
  next(err);
});

io.on("connection", (socket) => {
  socket.data = { name: socket.handshake.auth.name };
  const sent = [];
  socket.onAnyOutgoing((event) => sent.push(event));
  socket.use(([event], next) => (event === "forbidden" ? next(new Error("forbidden")) : next()));
  socket.on("error", () => {});
  socket.on("forbidden", (ack) => ack("handled"));
  socket.on("sent", (ack) => ack(sent));
  socket.on("has-namespace", (name, ack) => ack(io._nsps.has(name)));
  socket.on("shutdown", () => io.close());
  socket.on("fetch", async (sel, ack) => {
    const sockets = await select(sel).fetchSockets();
    ack(
      sockets
        .map((s) => ({ id: s.id, rooms: [...s.rooms].sort(), data: s.data, auth: s.handshake.auth }))
        .sort((a, b) => (a.data.name < b.data.name ? -1 : 1)),
    );
  });
  socket.on("join", (sel, room, ack) => {
    select(sel).socketsJoin(room);
    ack(true);
  });
  socket.on("leave", (sel, room, ack) => {
    select(sel).socketsLeave(room);
    ack(true);
  });
  socket.on("ask", (sel, ms, ack) => {
    select(sel)
      .timeout(ms)
      .emit("question", "who?", (err, answers) => ack({ timedOut: !!err, answers: answers.map(String).sort() }));
  });
  socket.on("kick", (sel, close) => {
    select(sel).disconnectSockets(close);
  });
});

httpServer.listen(port, "127.0.0.1", () => {
  console.log(`READY ${httpServer.address().port}`);
});
for (const sig of ["SIGTERM", "SIGINT"]) process.on(sig, () => process.exit(0));
