//! A browser chat: the page and Socket.IO on one port.
//!
//! ```text
//! npm ci --prefix examples/chat     # once: the official browser client, for offline use
//! cargo run --example chat          # then open http://127.0.0.1:3000 in two tabs
//! ```
//!
//! Options: `--port P` (default 3000; `0` picks a free port, and the real one
//! is printed), `--client-js PATH` (where to read `socket.io.min.js`; default
//! the npm copy under `examples/chat/node_modules`).
//!
//! # A tour
//!
//! * [`main`] builds one [`socketio::Server`] and serves it with
//!   `wsio-tokio` (the whole driver: three lines). The server answers
//!   Socket.IO itself (`/socket.io/`) and hands every other request to us as
//!   [`Event::Request`]: the page's three files (`examples/chat/`, compiled
//!   in) and the official client bundle at `/socket.io/socket.io.min.js`, as
//!   a Node server would serve it.
//! * [`Chat::on_event`] is the chat itself, one `match`, run inside the
//!   server's task with the server at hand. A nickname
//!   arrives with the connection (`io({ auth: { name } })` in the page), so
//!   the official client's automatic reconnection brings it back by itself
//!   after a server restart. A nickname or a message that renders as
//!   nothing (blank, or only zero-width and format characters) is refused.
//!   Events:
//!
//!   | from the page | to the pages |
//!   |---|---|
//!   | `auth: {name}` on connect | `welcome {id, name, online}` to the newcomer, `joined {id, name, back}` to the others, `online n` and `people [{id, name}]` to all |
//!   | `message "text"` | `message {id, name, text}` to all (the sender included) |
//!   | `private {to, text}` | `private {from, to, text}` to the socket `to` (`io.to(id)`) and the sender |
//!   | `typing true/false` | `typing {id, name, typing}` to the others |
//!   | (disconnect) | `left {id, name}` to the others, `online n` and `people` to all |
//!
//! * Connection state recovery is on: a page whose connection drops comes
//!   back within two minutes with its id, and the server sends it what it
//!   missed meanwhile (`back` is then true in `joined`). The kept state
//!   lives in the server's memory, so after a restart every page
//!   reconnects as a new connection and what was said during the restart
//!   is lost.
//!
//! * The page (`examples/chat/chat.js`) shows everything with `textContent`,
//!   never as HTML, and the server sends a Content-Security-Policy that
//!   forbids inline scripts anyway.

mod common;

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use bytes::Bytes;
use wsio::{
    engineio,
    entropy::OsEntropy,
    http::{Method, RequestHead, ResponseHead},
    socketio::{self, Admission, Event, RecoveryConfig, SocketId, Value},
};

/// The page's own files, compiled into the binary.
const PAGE: &[(&str, &str, &str)] = &[
    (
        "/",
        "text/html; charset=utf-8",
        include_str!("chat/index.html"),
    ),
    (
        "/chat.js",
        "text/javascript; charset=utf-8",
        include_str!("chat/chat.js"),
    ),
    (
        "/chat.css",
        "text/css; charset=utf-8",
        include_str!("chat/chat.css"),
    ),
];

/// Where the page looks for the official client first (the page falls back
/// to cdn.socket.io, pinned by version and SRI hash, when this is a 404).
const CLIENT_PATH: &str = "/socket.io/socket.io.min.js";

/// The version `examples/chat/package-lock.json` pins, and the page's CDN
/// fallback loads.
const CLIENT_VERSION: &str = "4.8.4";

/// Scripts from this origin and the pinned CDN only; no inline code; the
/// page talks to its own origin only (`'self'` covers `ws://` there).
const CSP: &str = "default-src 'none'; script-src 'self' https://cdn.socket.io; \
    style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; \
    form-action 'none'; frame-ancestors 'none'";

/// Longest nickname, in characters.
const MAX_NAME: usize = 24;
/// Longest message, in characters.
const MAX_TEXT: usize = 1000;

struct Chat {
    /// Everyone in the chat: socket -> nickname.
    people: BTreeMap<SocketId, String>,
    /// The official client bundle, if installed.
    client_js: Option<Bytes>,
}

impl Chat {
    /// The chat.
    fn on_event(&mut self, io: &mut socketio::Server, now: Instant, event: Event) {
        match event {
            // `/` asks us about each connection: the nickname comes in the
            // client's auth payload.
            Event::ConnectRequest { socket, auth, .. } => {
                match clean(auth.get("name").and_then(Value::as_str), MAX_NAME) {
                    Some(_) => {
                        let _ = io.admit(now, socket);
                    }
                    None => {
                        let _ = io.refuse(now, socket, "Please choose a nickname", None);
                    }
                }
            }
            Event::Connection {
                socket,
                auth,
                recovered,
                ..
            } => {
                // A recovered socket skipped admission (the official
                // skipMiddlewares), so its name is checked here too.
                let name = clean(auth.get("name").and_then(Value::as_str), MAX_NAME)
                    .unwrap_or_else(|| "anonymous".to_owned());
                eprintln!(
                    "chat: {name} {}",
                    if recovered { "is back" } else { "joined" }
                );
                self.people.insert(socket, name.clone());
                let online = Value::from(self.people.len());
                let who = Value::object([
                    ("id", Value::from(socket.as_str())),
                    ("name", Value::from(name.as_str())),
                    ("back", Value::from(recovered)),
                ]);
                let welcome = Value::object([
                    ("id", Value::from(socket.as_str())),
                    ("name", Value::from(name)),
                    ("online", online.clone()),
                ]);
                let _ = io.emit(socket, "welcome", vec![welcome]);
                let _ = io.broadcast_from(socket).emit("joined", vec![who]);
                let _ = io.of("/").emit("online", vec![online]);
                self.show_people(io);
            }
            Event::Event {
                socket, name, args, ..
            } => {
                let Some(from) = self.people.get(&socket) else {
                    return;
                };
                match name.as_str() {
                    "message" => {
                        let Some(text) = clean(args.first().and_then(Value::as_str), MAX_TEXT)
                        else {
                            return;
                        };
                        let said = Value::object([
                            ("id", Value::from(socket.as_str())),
                            ("name", Value::from(from.as_str())),
                            ("text", Value::from(text)),
                        ]);
                        let _ = io.of("/").emit("message", vec![said]);
                    }
                    "private" => {
                        let Some(body) = args.first() else { return };
                        let Some(to) = body.get("to").and_then(Value::as_str) else {
                            return;
                        };
                        let Some((&to, to_name)) =
                            self.people.iter().find(|(id, _)| id.as_str() == to)
                        else {
                            return;
                        };
                        let Some(text) = clean(body.get("text").and_then(Value::as_str), MAX_TEXT)
                        else {
                            return;
                        };
                        let said = Value::object([
                            ("from", person(socket, from)),
                            ("to", person(to, to_name)),
                            ("text", Value::from(text)),
                        ]);
                        // Each socket is a room named by its id: one
                        // packet for both, once each even when they are
                        // one socket.
                        let _ = io
                            .of("/")
                            .to(to.as_str())
                            .to(socket.as_str())
                            .emit("private", vec![said]);
                    }
                    "typing" => {
                        let on = args.first().and_then(Value::as_bool).unwrap_or(false);
                        let typing = Value::object([
                            ("id", Value::from(socket.as_str())),
                            ("name", Value::from(from.as_str())),
                            ("typing", Value::from(on)),
                        ]);
                        let _ = io.broadcast_from(socket).emit("typing", vec![typing]);
                    }
                    _ => {}
                }
            }
            Event::Disconnect { socket, reason, .. } => {
                if let Some(name) = self.people.remove(&socket) {
                    eprintln!("chat: {name} left ({reason})");
                    // Not to the one who left: if it comes back recovered,
                    // it would be sent its own departure.
                    let _ = io
                        .of("/")
                        .except(socket.as_str())
                        .emit("left", vec![person(socket, &name)]);
                    let online = Value::from(self.people.len());
                    let _ = io
                        .of("/")
                        .except(socket.as_str())
                        .emit("online", vec![online]);
                    self.show_people(io);
                }
            }
            Event::Request { conn, head, .. } => {
                let (res, body) = self.serve(&head);
                let _ = io.respond(now, conn, res, body);
            }
            _ => {}
        }
    }

    /// Everyone online, to everyone (the pages' list of whom to write to
    /// privately).
    fn show_people(&self, io: &mut socketio::Server) {
        let list = self
            .people
            .iter()
            .map(|(&id, name)| person(id, name))
            .collect();
        let _ = io.of("/").emit("people", vec![Value::Array(list)]);
    }

    /// Any request that is not Socket.IO: the page, or the client bundle.
    fn serve(&self, head: &RequestHead) -> (ResponseHead, Bytes) {
        let path = head.path();
        let file = match PAGE.iter().find(|(p, ..)| *p == path) {
            Some((_, mime, text)) => Some((*mime, Bytes::from_static(text.as_bytes()))),
            None if path == CLIENT_PATH => self
                .client_js
                .clone()
                .map(|js| ("text/javascript; charset=utf-8", js)),
            None => None,
        };
        let Some((mime, body)) = file else {
            return text(404, "Not Found\n");
        };
        if !matches!(head.method, Method::Get | Method::Head) {
            let (res, body) = text(405, "Method Not Allowed\n");
            return (res.with_header("Allow", "GET, HEAD"), body);
        }
        let mut res = ResponseHead::new(200)
            .with_header("Content-Type", mime)
            .with_header("Content-Length", body.len().to_string())
            .with_header("Cache-Control", "no-cache")
            .with_header("X-Content-Type-Options", "nosniff");
        if path == "/" {
            res = res
                .with_header("Content-Security-Policy", CSP)
                .with_header("Referrer-Policy", "no-referrer");
        }
        let body = if head.method == Method::Head {
            Bytes::new()
        } else {
            body
        };
        (res, body)
    }
}

/// `{id, name}` of a person, as the pages see them.
fn person(socket: SocketId, name: &str) -> Value {
    Value::object([
        ("id", Value::from(socket.as_str())),
        ("name", Value::from(name)),
    ])
}

/// A plain-text answer.
fn text(status: u16, body: &'static str) -> (ResponseHead, Bytes) {
    let res = ResponseHead::new(status)
        .with_header("Content-Type", "text/plain; charset=utf-8")
        .with_header("X-Content-Type-Options", "nosniff");
    (res, Bytes::from_static(body.as_bytes()))
}

/// Whitespace collapsed, control and invisible characters dropped, at
/// most `max` characters; `None` when nothing is left.
fn clean(s: Option<&str>, max: usize) -> Option<String> {
    let visible: String = s?.chars().filter(|&c| !invisible(c)).collect();
    let words: Vec<&str> = visible.split_whitespace().collect();
    let out: String = words.join(" ").chars().take(max).collect();
    let out = out.trim_end().to_owned();
    (!out.is_empty()).then_some(out)
}

/// Characters that draw nothing and take no room: controls, and the
/// format characters and fillers of Unicode's Default_Ignorable_Code_Point
/// (zero-width spaces and joiners, the soft hyphen, direction marks, the
/// byte order mark, variation selectors, Hangul fillers, tags). A name made
/// only of them would show as an empty line.
fn invisible(c: char) -> bool {
    c.is_control()
        || matches!(
            u32::from(c),
            0x00AD
                | 0x034F
                | 0x061C
                | 0x115F..=0x1160
                | 0x17B4..=0x17B5
                | 0x180B..=0x180F
                | 0x200B..=0x200F
                | 0x202A..=0x202E
                | 0x2060..=0x206F
                | 0x3164
                | 0xFE00..=0xFE0F
                | 0xFEFF
                | 0xFFA0
                | 0xFFF0..=0xFFF8
                | 0x1BCA0..=0x1BCA3
                | 0x1D173..=0x1D17A
                | 0xE0000..=0xE0FFF
        )
}

/// The official client bundle from the npm package, or `None` with advice.
fn load_client(path: &Path) -> Option<Bytes> {
    match std::fs::read(path) {
        Ok(js) => {
            let banner = format!("Socket.IO v{CLIENT_VERSION}");
            if !js.windows(banner.len()).any(|w| w == banner.as_bytes()) {
                eprintln!(
                    "chat: warning: {} is not socket.io-client {CLIENT_VERSION}",
                    path.display()
                );
            }
            Some(Bytes::from(js))
        }
        Err(e) => {
            eprintln!(
                "chat: no local copy of the official client ({}: {e}).\n\
                 chat: the page will load it from https://cdn.socket.io/{CLIENT_VERSION}/ (checked by its SRI hash).\n\
                 chat: to serve it from here (and work offline), run: npm ci --prefix examples/chat",
                path.display()
            );
            None
        }
    }
}

const USAGE: &str = "usage: chat [--port PORT] [--client-js PATH]";

fn main() -> std::io::Result<()> {
    let args = common::args::Args::parse(USAGE, &[("--port", true), ("--client-js", true)]);
    let port: u16 = args.value("--port").unwrap_or(3000);
    let client_path: PathBuf = args.value("--client-js").unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("examples/chat/node_modules/socket.io-client/dist/socket.io.min.js")
    });
    common::log_to_stderr();

    // The official server's defaults: a ping every 25 s, 20 s to answer it.
    // Requests for the official client's files under `/socket.io/` come to
    // us as `Event::Request` (`socketio::Config::client_files`).
    let engine = engineio::Config::default()
        .path("/socket.io/")
        .ping_interval(Duration::from_secs(25))
        .ping_timeout(Duration::from_secs(20));
    // Connection state recovery with the official defaults (two minutes).
    let config = socketio::Config::default()
        .engine(engine)
        .recovery(Some(RecoveryConfig::default()));
    let mut io = socketio::Server::new(config, Box::new(OsEntropy::new()?), Instant::now());
    // Decide on each connection to `/` (it must bring a nickname).
    io.add_namespace("/", Admission::Decide);
    let mut chat = Chat {
        people: BTreeMap::new(),
        client_js: load_client(&client_path),
    };

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let server = wsio_tokio::bind(("127.0.0.1", port), io).await?;
        let port = server.local_addr().map_or(port, |a| a.port());
        println!("READY {port}");
        println!("chat: open http://127.0.0.1:{port} in two browser tabs");
        server
            .on_event(move |io, ev, now| chat.on_event(io, now, ev))
            .await
    })
}
