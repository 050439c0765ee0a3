#!/usr/bin/env node
// Reference server for the wsio interop tests, built on the official
// `socket.io` and `engine.io` packages. It implements the behaviour described
// in CONFORMANCE.md ("Reference behaviour"): the Rust `conformance` example
// must answer every test exactly like this script does.
//
//   node sio-server.js [--port P] [--ping-interval MS] [--ping-timeout MS] [--recovery] [--parser msgpack]
//
// `--recovery` turns on connection state recovery as CONFORMANCE.md's flag of
// that name says (maxDisconnectionDuration 2000 ms, skipMiddlewares).
// `--parser msgpack` makes `socket.io-msgpack-parser` the Socket.IO parser
// (the Engine.IO echo is unchanged).
//
// Listens on 127.0.0.1:P (default 3000; 0 picks a free port) and prints
// `READY <port>` on stdout once it accepts connections.
//   /socket.io/  Socket.IO (namespaces "/" and "/custom", event table below)
//   /engine.io/  raw Engine.IO echo (the engine.io-protocol suite's target)
//   elsewhere    404 (plain HTTP and WebSocket upgrades alike)
"use strict";

const http = require("http");
const engine = require("engine.io");
const { Server } = require("socket.io");

function parseArgs(argv) {
  const opts = { port: 3000, pingInterval: 300, pingTimeout: 200, recovery: false, parser: "default" };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const value = () => {
      const v = argv[++i];
      if (v === undefined || !/^\d+$/.test(v)) {
        console.error(`sio-server: ${arg} expects a non-negative integer`);
        process.exit(2);
      }
      return Number(v);
    };
    switch (arg) {
      case "--port":
        opts.port = value();
        break;
      case "--ping-interval":
        opts.pingInterval = value();
        break;
      case "--ping-timeout":
        opts.pingTimeout = value();
        break;
      case "--recovery":
        opts.recovery = true;
        break;
      case "--parser": {
        const v = argv[++i];
        if (v !== "msgpack" && v !== "default") {
          console.error(`sio-server: --parser expects msgpack or default`);
          process.exit(2);
        }
        opts.parser = v;
        break;
      }
      case "-h":
      case "--help":
        console.log(
          "usage: node sio-server.js [--port P] [--ping-interval MS] [--ping-timeout MS] [--recovery] [--parser msgpack]"
        );
        process.exit(0);
        break;
      default:
        console.error(`sio-server: unknown argument ${arg}`);
        process.exit(2);
    }
  }
  return opts;
}

const opts = parseArgs(process.argv.slice(2));

const SIO_PATH = "/socket.io/";
const EIO_PATH = "/engine.io/";

// Options shared by both Engine.IO servers.
const engineOpts = {
  pingInterval: opts.pingInterval,
  pingTimeout: opts.pingTimeout,
  maxHttpBufferSize: 1e6, // advertised as "maxPayload":1000000
  cors: { origin: "*" },
  // Upgrades on unknown paths are answered by our own 404 handler below.
  destroyUpgrade: false,
};

// Requests that neither Engine.IO server intercepts land here.
const httpServer = http.createServer((req, res) => {
  res.writeHead(404, { "Content-Type": "text/plain" });
  res.end("Not Found");
});

// --- /socket.io/ : Socket.IO -------------------------------------------------

const io = new Server(httpServer, {
  ...engineOpts,
  path: SIO_PATH,
  serveClient: false,
  connectTimeout: 1000,
  ...(opts.recovery
    ? { connectionStateRecovery: { maxDisconnectionDuration: 2000, skipMiddlewares: true } }
    : {}),
  ...(opts.parser === "msgpack" ? { parser: require("socket.io-msgpack-parser") } : {}),
});

const lastIsFn = (args) =>
  args.length > 0 && typeof args[args.length - 1] === "function";

io.of("/custom").on("connection", (socket) => {
  socket.emit("auth", socket.handshake.auth);
});

io.of("/").on("connection", (socket) => {
  socket.emit("auth", socket.handshake.auth);

  socket.on("message", (...args) => {
    socket.emit("message-back", ...args);
  });

  socket.on("message-with-ack", (...args) => {
    if (!lastIsFn(args)) return; // no ack requested: ignored
    const ack = args.pop();
    ack(...args);
  });

  socket.on("join", (...args) => {
    if (!lastIsFn(args)) return;
    const ack = args.pop();
    socket.join(args[0]);
    ack(true);
  });

  socket.on("to-room", (room, ...args) => {
    io.of("/").to(room).emit("room-message", ...args);
  });

  socket.on("broadcast", (...args) => {
    socket.broadcast.emit("broadcast", ...args);
  });

  socket.on("emit-all", (...args) => {
    io.of("/").emit("all", ...args);
  });

  socket.on("disconnect-me", () => {
    // sends `41` for "/" (and every other namespace of this client), then
    // closes the Engine.IO connection
    socket.disconnect(true);
  });

  socket.on("server-ack", (...args) => {
    if (!lastIsFn(args)) return;
    const ack = args.pop();
    socket.emit("ask", ...args, (...answer) => {
      ack(...answer);
    });
  });

  socket.on("binary", (...args) => {
    socket.emit("binary-back", ...args);
  });
});

// --- /engine.io/ : raw Engine.IO echo -----------------------------------------

const eio = engine.attach(httpServer, { ...engineOpts, path: EIO_PATH });

eio.on("connection", (socket) => {
  socket.on("message", (data) => {
    socket.send(data);
  });
});

// --- WebSocket upgrades on any other path: 404 ---------------------------------

httpServer.on("upgrade", (req, socket) => {
  const url = req.url || "";
  if (url.startsWith(SIO_PATH) || url.startsWith(EIO_PATH)) return;
  socket.on("error", () => {});
  if (socket.writable) {
    socket.write(
      "HTTP/1.1 404 Not Found\r\n" +
        "Connection: close\r\n" +
        "Content-Type: text/plain\r\n" +
        "Content-Length: 9\r\n" +
        "\r\n" +
        "Not Found"
    );
  }
  socket.destroy();
});

httpServer.on("error", (err) => {
  console.error(`sio-server: ${err.message}`);
  process.exit(1);
});

httpServer.listen(opts.port, "127.0.0.1", () => {
  process.stdout.write(`READY ${httpServer.address().port}\n`);
});

const shutdown = () => {
  io.close();
  eio.close();
  httpServer.close();
  process.exit(0);
};
process.on("SIGTERM", shutdown);
process.on("SIGINT", shutdown);
