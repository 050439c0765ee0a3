//! The client scenarios of CONFORMANCE.md, run with a wsio Socket.IO
//! client (`wsio::blocking::Client` by default; `--client tokio` or
//! `--client smol` for the async one of `wsio-tokio` or `wsio-smol`,
//! driven from here through a small blocking face) against a server with
//! the reference behaviour (the official Node one in the tests, or the
//! `conformance` example).
//!
//! `cargo run --example conformance_client -- URL [--transports polling|websocket|both] [--client blocking|tokio|smol] [--only a,b] [--restart-cmd CMD]`
//!
//! Prints `ok NAME` or `fail NAME: why` per scenario, then
//! `N passed, N failed`; exits 1 if any failed, 2 on bad usage. Every
//! scenario has its own time limit. `reconnection-after-restart` needs
//! `--restart-cmd CMD`: a shell command that stops the server and starts
//! it again on the same address, and returns once it listens. Without it
//! the scenario is reported as `skip` (tests/socketio_client_interop.rs
//! restarts the official server itself for that).

use std::{
    io::{Read, Write},
    net::{Shutdown, TcpListener, TcpStream},
    process::Command,
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

use wsio::{
    blocking::{self, ClientOptions},
    engineio::{TransportKind, TransportMode},
    http::Url,
    socketio::{self, ClientDisconnectReason, ClientEvent, ClientState, NspId, Value},
};

#[derive(Clone)]
struct Ctx {
    url: String,
    mode: TransportMode,
    both: bool,
    restart_cmd: Option<String>,
    client: Kind,
}

/// Which client runs the scenarios.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Blocking,
    Tokio,
    Smol,
}

/// The client under test, with the blocking client's calls.
enum Client {
    Blocking(blocking::Client),
    Async {
        io: wsio_adapter::Client,
        events: wsio_adapter::Events<ClientEvent>,
        kind: Kind,
    },
}

/// The one tokio runtime of the async clients' drivers.
fn tokio_rt() -> &'static tokio::runtime::Runtime {
    static RT: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("tokio runtime: {e}"))
    })
}

/// Runs `f` to completion on the client's runtime; `None` once `limit`
/// has passed.
fn block<F: std::future::Future>(kind: Kind, limit: Option<Duration>, f: F) -> Option<F::Output> {
    let limit = limit.unwrap_or(Duration::from_secs(86_400));
    match kind {
        Kind::Tokio => tokio_rt().block_on(async { tokio::time::timeout(limit, f).await.ok() }),
        _ => smol::block_on(smol::future::or(async { Some(f.await) }, async {
            smol::Timer::after(limit).await;
            None
        })),
    }
}

impl Client {
    fn connect(kind: Kind, url: &str, o: ClientOptions) -> Result<Client, String> {
        if kind == Kind::Blocking {
            return blocking::Client::connect(url, o)
                .map(Client::Blocking)
                .map_err(|e| e.to_string());
        }
        let mut options = wsio_adapter::ClientOptions::new()
            .config(o.config)
            .connect_timeout(o.connect_timeout);
        options.auth = o.auth;
        let connected = match kind {
            Kind::Tokio => block(kind, None, wsio_tokio::connect(url, options)),
            _ => block(kind, None, wsio_smol::connect(url, options)),
        };
        match connected {
            Some(Ok((io, events))) => Ok(Client::Async { io, events, kind }),
            Some(Err(e)) => Err(e.to_string()),
            None => Err("timed out".into()),
        }
    }

    fn nsp(&self) -> NspId {
        match self {
            Client::Blocking(c) => c.nsp(),
            Client::Async { io, .. } => io.nsp(),
        }
    }

    /// Runs an async client's call.
    fn run<T, E: std::fmt::Display>(
        kind: Kind,
        f: impl std::future::Future<Output = Result<T, E>>,
    ) -> Result<T, String> {
        match block(kind, None, f) {
            Some(r) => r.map_err(|e| e.to_string()),
            None => Err("timed out".into()),
        }
    }

    fn with<R: Send + 'static>(
        &mut self,
        f: impl FnOnce(&mut socketio::Client, std::time::Instant) -> R + Send + 'static,
    ) -> Result<R, String> {
        match self {
            Client::Blocking(c) => c.with(f).map_err(|e| e.to_string()),
            Client::Async { io, kind, .. } => Self::run(*kind, io.call(f)),
        }
    }

    fn emit(&mut self, name: &str, args: Vec<Value>) -> Result<(), String> {
        match self {
            Client::Blocking(c) => c.emit(name, args).map_err(|e| e.to_string()),
            Client::Async { io, kind, .. } => Self::run(*kind, io.emit(name, args)),
        }
    }

    fn emit_with_ack(
        &mut self,
        name: &str,
        args: Vec<Value>,
        timeout: Duration,
    ) -> Result<Vec<Value>, String> {
        match self {
            Client::Blocking(c) => c
                .emit_with_ack(name, args, timeout)
                .map_err(|e| e.to_string()),
            Client::Async { io, kind, .. } => {
                Self::run(*kind, io.emit_with_ack(name, args, timeout))
            }
        }
    }

    fn ack(&mut self, nsp: NspId, id: u64, args: Vec<Value>) -> Result<(), String> {
        match self {
            Client::Blocking(c) => c.ack(nsp, id, args).map_err(|e| e.to_string()),
            Client::Async { io, kind, .. } => Self::run(*kind, io.ack(nsp, id, args)),
        }
    }

    /// Joins a namespace; its `Connect` event comes with the others.
    fn socket(&mut self, nsp: &str, auth: Option<Value>) -> Result<NspId, String> {
        match self {
            Client::Blocking(c) => c.socket(nsp, auth).map_err(|e| e.to_string()),
            Client::Async { io, kind, .. } => {
                Self::run(*kind, io.socket(nsp, auth)).map(|s| s.nsp())
            }
        }
    }

    fn next_event(&mut self, timeout: Option<Duration>) -> Result<Option<ClientEvent>, String> {
        match self {
            Client::Blocking(c) => c.next_event(timeout).map_err(|e| e.to_string()),
            Client::Async { events, kind, .. } => match block(*kind, timeout, events.next()) {
                Some(Some(ev)) => Ok(Some(ev)),
                Some(None) => Err("the client is closed".into()),
                None => Ok(None),
            },
        }
    }

    fn transport(&mut self) -> Option<TransportKind> {
        match self {
            Client::Blocking(c) => c.transport(),
            Client::Async { io, kind, .. } => block(*kind, None, io.transport()).flatten(),
        }
    }

    fn state(&mut self) -> ClientState {
        match self {
            Client::Blocking(c) => c.state(),
            Client::Async { io, kind, .. } => {
                block(*kind, None, io.state()).unwrap_or(ClientState::Closed)
            }
        }
    }
}

type Outcome = Result<(), String>;

macro_rules! check {
    ($cond:expr, $($why:tt)*) => {
        if !$cond {
            return Err(format!($($why)*));
        }
    };
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn obj(pairs: &[(&str, Value)]) -> Value {
    Value::object(pairs.iter().map(|(k, v)| (*k, v.clone())))
}

fn bin(b: &[u8]) -> Value {
    Value::Binary(b.to_vec().into())
}

fn brief(v: &[Value]) -> String {
    let s = format!("{:?}", v);
    if s.len() > 300 {
        format!(
            "{}…",
            &s[..s.char_indices().nth(300).map_or(s.len(), |(i, _)| i)]
        )
    } else {
        s
    }
}

impl Ctx {
    fn options(&self) -> ClientOptions {
        ClientOptions::new()
            .mode(self.mode)
            .reconnection(false)
            .connect_timeout(ms(6000))
    }

    fn connect(&self, nsp: &str, auth: Option<Value>) -> Result<Client, String> {
        self.connect_with(nsp, auth, self.options())
    }

    fn connect_with(
        &self,
        nsp: &str,
        auth: Option<Value>,
        mut options: ClientOptions,
    ) -> Result<Client, String> {
        options.auth = auth;
        let url = format!("{}{}", self.url, if nsp == "/" { "" } else { nsp });
        Client::connect(self.client, &url, options).map_err(|e| format!("connect {nsp}: {e}"))
    }

    /// Waits until the transport is the one the mode ends on.
    fn settled(&self, c: &mut Client) -> Outcome {
        if !self.both {
            return Ok(());
        }
        let end = Instant::now() + ms(5000);
        while c.transport() != Some(TransportKind::WebSocket) {
            check!(Instant::now() < end, "no upgrade to websocket within 5 s");
            thread::sleep(ms(10));
        }
        Ok(())
    }
}

/// A slow network for WebSockets: a proxy in front of `url` that holds a
/// WebSocket's upgrade request back for `delay` (and passes everything else
/// at once). Returns the URL to reach the server through it.
fn slow_websockets(url: &str, delay: Duration) -> std::io::Result<String> {
    let u = Url::parse(url).ok_or_else(|| std::io::Error::other(format!("bad URL {url}")))?;
    if u.secure {
        // A proxy would break the certificate's name: no delay then.
        return Ok(url.to_owned());
    }
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let upstream = (u.host.clone(), u.port);
    thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let upstream = upstream.clone();
            thread::spawn(move || {
                let Ok(server) = TcpStream::connect((upstream.0.as_str(), upstream.1)) else {
                    return;
                };
                let mut first = vec![0u8; 64 * 1024];
                let n = (&client).read(&mut first).unwrap_or(0);
                let head = String::from_utf8_lossy(&first[..n]);
                if head.contains("transport=websocket") {
                    thread::sleep(delay);
                }
                if n == 0 || (&server).write_all(&first[..n]).is_err() {
                    return;
                }
                let pipe = |mut from: &TcpStream, mut to: &TcpStream| {
                    let _ = std::io::copy(&mut from, &mut to);
                    let _ = to.shutdown(Shutdown::Write);
                };
                let (c2, s2) = (client.try_clone(), server.try_clone());
                if let (Ok(c2), Ok(s2)) = (c2, s2) {
                    thread::spawn(move || pipe(&s2, &c2));
                    pipe(&client, &server);
                }
            });
        }
    });
    Ok(format!("http://{addr}{}", u.target.trim_end_matches('/')))
}

/// The next event matching `pred` within `limit`; others are dropped.
fn wait_for(
    c: &mut Client,
    limit: Duration,
    what: &str,
    mut pred: impl FnMut(&ClientEvent) -> bool,
) -> Result<ClientEvent, String> {
    let end = Instant::now() + limit;
    loop {
        let left = end.saturating_duration_since(Instant::now());
        check!(!left.is_zero(), "no {what} within {limit:?}");
        match c.next_event(Some(left)) {
            Ok(Some(ev)) if pred(&ev) => return Ok(ev),
            Ok(_) => {}
            Err(e) => return Err(format!("waiting for {what}: {e}")),
        }
    }
}

/// The arguments of the next `name` event on `nsp`.
fn event_on(c: &mut Client, nsp: NspId, name: &str, limit: Duration) -> Result<Vec<Value>, String> {
    match wait_for(
        c,
        limit,
        &format!("{name:?} event"),
        |e| matches!(e, ClientEvent::Event { nsp: n, name: m, .. } if *n == nsp && m == name),
    )? {
        ClientEvent::Event { args, .. } => Ok(args),
        _ => Err("unreachable".into()),
    }
}

fn event(c: &mut Client, name: &str, limit: Duration) -> Result<Vec<Value>, String> {
    let nsp = c.nsp();
    event_on(c, nsp, name, limit)
}

/// Every event that comes within `d`.
fn collect(c: &mut Client, d: Duration) -> Vec<ClientEvent> {
    let end = Instant::now() + d;
    let mut out = Vec::new();
    loop {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return out;
        }
        match c.next_event(Some(left)) {
            Ok(Some(ev)) => out.push(ev),
            _ => return out,
        }
    }
}

fn named(events: &[ClientEvent], want: &str) -> Vec<Vec<Value>> {
    events
        .iter()
        .filter_map(|e| match e {
            ClientEvent::Event { name, args, .. } if name == want => Some(args.clone()),
            _ => None,
        })
        .collect()
}

fn expect_same(got: &[Value], want: &[Value], what: &str) -> Outcome {
    check!(
        got == want,
        "{what}: got {}, want {}",
        brief(got),
        brief(want)
    );
    Ok(())
}

fn emit(c: &mut Client, name: &str, args: Vec<Value>) -> Outcome {
    c.emit(name, args).map_err(|e| format!("emit {name}: {e}"))
}

fn emit_ack(c: &mut Client, name: &str, args: Vec<Value>) -> Result<Vec<Value>, String> {
    c.emit_with_ack(name, args, ms(5000))
        .map_err(|e| format!("ack of {name}: {e}"))
}

fn mixed() -> Vec<Value> {
    vec![
        "héllo wörld ✓ 日本語 😀".into(),
        "record\u{1e}separator".into(),
        "\u{1e}".into(),
        "quotes \" and \\ backslash / slash \n newline \t tab \0 nul".into(),
        "".into(),
        Value::from(42),
        Value::from(-1.5),
        Value::from(0),
        Value::from(std::f64::consts::PI),
        Value::from(9_007_199_254_740_991u64),
        Value::from(1e21),
        Value::Null,
        Value::from(true),
        Value::from(false),
        obj(&[
            (
                "nested",
                obj(&[
                    (
                        "arr",
                        vec![
                            Value::from(1),
                            "x".into(),
                            Value::Null,
                            obj(&[("deep", Value::Array(vec![]))]),
                        ]
                        .into(),
                    ),
                    ("empty", obj(&[])),
                ]),
            ),
            ("ключ", "значение".into()),
        ]),
        vec![
            Value::from(1),
            vec![
                Value::from(2),
                vec![Value::from(3), vec![Value::from("4")].into()].into(),
            ]
            .into(),
            Value::Array(vec![]),
        ]
        .into(),
    ]
}

// ----- scenarios --------------------------------------------------------------

fn connect_auth(ctx: &Ctx) -> Outcome {
    let auth = obj(&[
        ("token", "abc".into()),
        ("n", Value::from(1)),
        ("clé", "välue".into()),
    ]);
    let mut c = ctx.connect("/", Some(auth.clone()))?;
    expect_same(&event(&mut c, "auth", ms(5000))?, &[auth], "auth payload")?;
    let nsp = c.nsp();
    let sid = c
        .with(move |io, _| io.sid(nsp).map(str::to_owned))
        .ok()
        .flatten();
    check!(sid.is_some_and(|s| !s.is_empty()), "socket has no id");
    Ok(())
}

fn connect_no_auth(ctx: &Ctx) -> Outcome {
    let mut c = ctx.connect("/", None)?;
    expect_same(
        &event(&mut c, "auth", ms(5000))?,
        &[obj(&[])],
        "auth payload",
    )
}

fn custom_namespace_auth(ctx: &Ctx) -> Outcome {
    let auth = obj(&[("token", "custom-123".into())]);
    let mut c = ctx.connect("/custom", Some(auth.clone()))?;
    expect_same(
        &event(&mut c, "auth", ms(5000))?,
        &[auth],
        "auth payload on /custom",
    )
}

fn multiplex(ctx: &Ctx) -> Outcome {
    let mut c = ctx.connect("/", Some(obj(&[("who", "root".into())])))?;
    let root = c.nsp();
    let custom = c
        .socket("/custom", Some(obj(&[("who", "custom".into())])))
        .map_err(|e| e.to_string())?;
    wait_for(
        &mut c,
        ms(5000),
        "connect on /custom",
        |e| matches!(e, ClientEvent::Connect { nsp, .. } if *nsp == custom),
    )?;
    let got = event_on(&mut c, custom, "auth", ms(5000))?;
    expect_same(&got, &[obj(&[("who", "custom".into())])], "auth on /custom")?;
    let sids = c
        .with(move |io, _| {
            (
                io.sid(root).map(str::to_owned),
                io.sid(custom).map(str::to_owned),
            )
        })
        .map_err(|e| e.to_string())?;
    check!(
        sids.0.is_some() && sids.1.is_some(),
        "a namespace has no id"
    );
    check!(sids.0 != sids.1, "both namespaces got the same socket id");
    emit(&mut c, "message", vec!["still-here".into()])?;
    expect_same(
        &event_on(&mut c, root, "message-back", ms(4000))?,
        &["still-here".into()],
        "echo on / while /custom is connected",
    )
}

fn unknown_namespace(ctx: &Ctx) -> Outcome {
    match ctx.connect("/does-not-exist", None) {
        Ok(_) => Err("connected to an unknown namespace".into()),
        Err(e) if e.contains("Invalid namespace") => Ok(()),
        Err(e) => Err(format!("expected connect_error Invalid namespace, got {e}")),
    }
}

fn echo_mixed(ctx: &Ctx) -> Outcome {
    let mut c = ctx.connect("/", None)?;
    ctx.settled(&mut c)?;
    emit(&mut c, "message", mixed())?;
    expect_same(
        &event(&mut c, "message-back", ms(5000))?,
        &mixed(),
        "message-back args",
    )?;
    emit(&mut c, "message", vec![])?;
    expect_same(
        &event(&mut c, "message-back", ms(5000))?,
        &[],
        "message-back with no args",
    )
}

fn ack_args(ctx: &Ctx) -> Outcome {
    let mut c = ctx.connect("/", None)?;
    expect_same(
        &emit_ack(&mut c, "message-with-ack", mixed())?,
        &mixed(),
        "ack args",
    )
}

fn ack_no_args(ctx: &Ctx) -> Outcome {
    let mut c = ctx.connect("/", None)?;
    expect_same(
        &emit_ack(&mut c, "message-with-ack", vec![])?,
        &[],
        "ack args",
    )
}

fn ack_twenty_in_flight(ctx: &Ctx) -> Outcome {
    let mut c = ctx.connect("/", None)?;
    let nsp = c.nsp();
    let mut ids = Vec::new();
    for i in 0..20u64 {
        let args = vec![Value::from(i), Value::from(format!("n{i}"))];
        let id = c
            .with(move |io, now| {
                io.emit_with_ack(now, nsp, "message-with-ack", args, Some(ms(8000)))
            })
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        ids.push(id);
    }
    let mut answers = std::collections::HashMap::new();
    while answers.len() < 20 {
        match wait_for(&mut c, ms(8000), "20 acks", |e| {
            matches!(e, ClientEvent::Ack { .. } | ClientEvent::AckTimeout { .. })
        })? {
            ClientEvent::Ack { id, args, .. } => {
                answers.insert(id, args);
            }
            other => return Err(format!("{other:?}")),
        }
    }
    for (i, id) in ids.iter().enumerate() {
        let want = vec![Value::from(i as u64), Value::from(format!("n{i}"))];
        expect_same(
            answers.get(id).map_or(&[][..], |v| v),
            &want,
            &format!("ack #{i}"),
        )?;
    }
    Ok(())
}

/// `server-ack` with `args`; the client answers `ask` with `answer(args)`.
fn server_ack_with(
    ctx: &Ctx,
    args: Vec<Value>,
    answer: impl Fn(&[Value]) -> Vec<Value>,
) -> Result<(Vec<Vec<Value>>, Vec<Value>), String> {
    let mut c = ctx.connect("/", None)?;
    let nsp = c.nsp();
    let sent = args.clone();
    let id = c
        .with(move |io, now| io.emit_with_ack(now, nsp, "server-ack", sent, Some(ms(5000))))
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    let mut asked = Vec::new();
    let end = Instant::now() + ms(5000);
    loop {
        let left = end.saturating_duration_since(Instant::now());
        check!(!left.is_zero(), "no ack for server-ack within 5 s");
        match c.next_event(Some(left)).map_err(|e| e.to_string())? {
            Some(ClientEvent::Event {
                name, args, ack, ..
            }) if name == "ask" => {
                let Some(ack) = ack else {
                    return Err("ask carried no ack".into());
                };
                c.ack(nsp, ack, answer(&args)).map_err(|e| e.to_string())?;
                asked.push(args);
            }
            Some(ClientEvent::Ack { id: i, args, .. }) if i == id => return Ok((asked, args)),
            Some(ClientEvent::AckTimeout { .. }) => return Err("server-ack timed out".into()),
            _ => {}
        }
    }
}

fn server_ack(ctx: &Ctx) -> Outcome {
    let args = vec![
        Value::from(1),
        "two".into(),
        obj(&[("three", Value::from(3))]),
    ];
    let (asked, res) = server_ack_with(ctx, args.clone(), |a| {
        let mut v = vec![Value::from("answer")];
        v.extend_from_slice(a);
        v.push(obj(&[("from", "client".into())]));
        v
    })?;
    check!(asked == vec![args.clone()], "ask args: {asked:?}");
    let mut want = vec![Value::from("answer")];
    want.extend(args);
    want.push(obj(&[("from", "client".into())]));
    expect_same(&res, &want, "server-ack result")
}

fn server_ack_binary(ctx: &Ctx) -> Outcome {
    let (_, res) = server_ack_with(ctx, vec![bin(&[1, 2])], |a| {
        let mut v = vec![bin(&[0xde, 0xad])];
        v.extend_from_slice(a);
        v
    })?;
    expect_same(
        &res,
        &[bin(&[0xde, 0xad]), bin(&[1, 2])],
        "server-ack result",
    )
}

fn binary_roundtrip(ctx: &Ctx) -> Outcome {
    let mut c = ctx.connect("/", None)?;
    ctx.settled(&mut c)?;
    let big: Vec<u8> = (0..100 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let args = vec![bin(&[]), bin(&[1, 2, 3]), bin(&big)];
    emit(&mut c, "binary", args.clone())?;
    let got = event(&mut c, "binary-back", ms(8000))?;
    check!(got.len() == 3, "binary-back carried {} args", got.len());
    for g in &got {
        check!(
            g.as_binary().is_some(),
            "not binary: {}",
            brief(std::slice::from_ref(g))
        );
    }
    expect_same(&got, &args, "binary-back args")
}

fn binary_in_object(ctx: &Ctx) -> Outcome {
    let mut c = ctx.connect("/", None)?;
    let payload = obj(&[
        ("a", bin(&[0, 255])),
        (
            "list",
            vec![
                bin("héllo".as_bytes()),
                "text".into(),
                obj(&[("deep", bin(&[7, 7, 7]))]),
            ]
            .into(),
        ),
        ("n", Value::from(1)),
    ]);
    emit(&mut c, "binary", vec![payload.clone(), "tail".into()])?;
    expect_same(
        &event(&mut c, "binary-back", ms(5000))?,
        &[payload, "tail".into()],
        "binary-back args",
    )
}

fn binary_in_ack(ctx: &Ctx) -> Outcome {
    let mut c = ctx.connect("/", None)?;
    let args = vec![bin(&[9, 8, 7]), obj(&[("b", bin(&[1]))]), "x".into()];
    expect_same(
        &emit_ack(&mut c, "message-with-ack", args.clone())?,
        &args,
        "ack args",
    )
}

fn large_900k(ctx: &Ctx) -> Outcome {
    let mut c = ctx.connect("/", None)?;
    ctx.settled(&mut c)?;
    let big = format!("é{}", "x".repeat(900 * 1000 - 3));
    emit(&mut c, "message", vec![big.clone().into()])?;
    let got = event(&mut c, "message-back", ms(12_000))?;
    check!(
        got.len() == 1 && got[0].as_str() == Some(big.as_str()),
        "echo of 900 kB differs (length {:?})",
        got.first().and_then(Value::as_str).map(str::len)
    );
    Ok(())
}

fn over_max_payload(ctx: &Ctx) -> Outcome {
    let mut c = ctx.connect("/", None)?;
    ctx.settled(&mut c)?;
    emit(&mut c, "message", vec!["x".repeat(1100 * 1000).into()])?;
    let ev = wait_for(
        &mut c,
        ms(8000),
        "disconnect after a message above maxPayload",
        |e| matches!(e, ClientEvent::Disconnect { .. }),
    )?;
    let ClientEvent::Disconnect { reason, .. } = ev else {
        return Err("unreachable".into());
    };
    check!(
        matches!(
            reason,
            ClientDisconnectReason::TransportClose | ClientDisconnectReason::TransportError
        ),
        "disconnect reason: {reason}"
    );
    let mut other = ctx.connect("/", None)?;
    emit(&mut other, "message", vec!["after".into()])?;
    expect_same(
        &event(&mut other, "message-back", ms(4000))?,
        &["after".into()],
        "echo on a fresh connection",
    )
}

fn heartbeat_silence(ctx: &Ctx) -> Outcome {
    let mut c = ctx.connect("/", None)?;
    ctx.settled(&mut c)?;
    let nsp = c.nsp();
    let sid = c
        .with(move |io, _| io.sid(nsp).map(str::to_owned))
        .ok()
        .flatten();
    // Three ping intervals of the reference server (300 ms), and a bit.
    let events = collect(&mut c, ms(3 * 300 + 300));
    check!(
        !events
            .iter()
            .any(|e| matches!(e, ClientEvent::Disconnect { .. })),
        "connection dropped during silence: {events:?}"
    );
    let now_sid = c
        .with(move |io, _| io.sid(nsp).map(str::to_owned))
        .ok()
        .flatten();
    check!(
        now_sid.is_some() && now_sid == sid,
        "socket id changed: {sid:?} -> {now_sid:?}"
    );
    emit(&mut c, "message", vec!["alive".into()])?;
    expect_same(
        &event(&mut c, "message-back", ms(4000))?,
        &["alive".into()],
        "echo after silence",
    )
}

fn join(ctx: &Ctx) -> Outcome {
    let mut c = ctx.connect("/", None)?;
    expect_same(
        &emit_ack(&mut c, "join", vec!["room-join-test".into()])?,
        &[Value::from(true)],
        "join ack",
    )
}

fn three(ctx: &Ctx) -> Result<[Client; 3], String> {
    let mut a = ctx.connect("/", None)?;
    let mut b = ctx.connect("/", None)?;
    let mut c = ctx.connect("/", None)?;
    for x in [&mut a, &mut b, &mut c] {
        ctx.settled(x)?;
        event(x, "auth", ms(5000))?;
    }
    Ok([a, b, c])
}

fn broadcast(ctx: &Ctx) -> Outcome {
    let [mut a, mut b, mut c] = three(ctx)?;
    let args = vec!["hi".into(), Value::from(1), obj(&[("x", Value::Null)])];
    emit(&mut a, "broadcast", args.clone())?;
    expect_same(
        &event(&mut b, "broadcast", ms(5000))?,
        &args,
        "client B got",
    )?;
    expect_same(
        &event(&mut c, "broadcast", ms(5000))?,
        &args,
        "client C got",
    )?;
    let rest: Vec<_> = [&mut a, &mut b, &mut c]
        .into_iter()
        .map(|x| named(&collect(x, ms(300)), "broadcast").len())
        .collect();
    check!(rest == [0, 0, 0], "extra broadcasts (A, B, C): {rest:?}");
    Ok(())
}

fn to_room(ctx: &Ctx) -> Outcome {
    let [mut a, mut b, mut c] = three(ctx)?;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let room = format!("room-{}-{nanos}", std::process::id());
    expect_same(
        &emit_ack(&mut a, "join", vec![room.clone().into()])?,
        &[true.into()],
        "join ack A",
    )?;
    expect_same(
        &emit_ack(&mut b, "join", vec![room.clone().into()])?,
        &[true.into()],
        "join ack B",
    )?;
    emit(
        &mut c,
        "to-room",
        vec![room.clone().into(), "from-c".into(), Value::from(1)],
    )?;
    let from_c = vec![Value::from("from-c"), Value::from(1)];
    expect_same(
        &event(&mut a, "room-message", ms(5000))?,
        &from_c,
        "member A got",
    )?;
    expect_same(
        &event(&mut b, "room-message", ms(5000))?,
        &from_c,
        "member B got",
    )?;
    emit(&mut a, "to-room", vec![room.into(), "from-a".into()])?;
    let got: Vec<_> = [&mut a, &mut b, &mut c]
        .into_iter()
        .map(|x| named(&collect(x, ms(400)), "room-message"))
        .collect();
    let from_a = vec![vec![Value::from("from-a")]];
    check!(got[0] == from_a, "member A got {:?}", got[0]);
    check!(got[1] == from_a, "member B got {:?}", got[1]);
    check!(got[2].is_empty(), "non-member C got {:?}", got[2]);
    Ok(())
}

fn emit_all(ctx: &Ctx) -> Outcome {
    let [mut a, mut b, mut c] = three(ctx)?;
    let args = vec![
        "everyone".into(),
        vec![Value::from(1), Value::from(2)].into(),
    ];
    emit(&mut b, "emit-all", args.clone())?;
    for (i, x) in [&mut a, &mut b, &mut c].into_iter().enumerate() {
        let got = named(&collect(x, ms(500)), "all");
        check!(
            got == vec![args.clone()],
            "client {} got {got:?}",
            ["A", "B", "C"][i]
        );
    }
    Ok(())
}

fn disconnect_me(ctx: &Ctx) -> Outcome {
    // Reconnection on, on purpose: a server disconnect must not reconnect.
    let options = ctx.options().reconnection(true).configure(|c| {
        c.reconnection_delay(ms(100))
            .reconnection_delay_max(ms(200))
    });
    let mut c = ctx.connect_with("/", None, options)?;
    ctx.settled(&mut c)?;
    emit(&mut c, "disconnect-me", vec![])?;
    let ev = wait_for(&mut c, ms(5000), "disconnect", |e| {
        matches!(e, ClientEvent::Disconnect { .. })
    })?;
    check!(
        matches!(
            ev,
            ClientEvent::Disconnect {
                reason: ClientDisconnectReason::IoServerDisconnect,
                ..
            }
        ),
        "disconnect: {ev:?}"
    );
    let after = collect(&mut c, ms(1200));
    check!(
        !after.iter().any(|e| matches!(
            e,
            ClientEvent::Reconnecting { .. }
                | ClientEvent::Connect { .. }
                | ClientEvent::Reconnected { .. }
        )),
        "reconnected: {after:?}"
    );
    check!(c.state() == ClientState::Closed, "state {:?}", c.state());
    Ok(())
}

fn transport_mode(ctx: &Ctx) -> Outcome {
    let mut c = ctx.connect("/", None)?;
    let first = c.transport();
    match ctx.mode {
        TransportMode::WebSocketOnly => {
            check!(
                first == Some(TransportKind::WebSocket),
                "transport is {first:?}"
            )
        }
        _ => check!(first.is_some(), "no transport"),
    }
    if ctx.both {
        ctx.settled(&mut c)?;
    } else {
        thread::sleep(ms(700));
        let now = c.transport();
        check!(now == first, "transport changed to {now:?}");
        if ctx.mode == TransportMode::PollingOnly {
            check!(now == Some(TransportKind::Polling), "transport is {now:?}");
        }
    }
    emit(&mut c, "message", vec!["mode".into()])?;
    expect_same(
        &event(&mut c, "message-back", ms(4000))?,
        &["mode".into()],
        "echo",
    )
}

/// A numbered stream from the moment of connection: with `both` it starts
/// over polling and spans the upgrade (the WebSocket opens 200 ms late, so
/// that it always happens mid-stream); nothing may be lost, duplicated or
/// reordered.
fn stream(ctx: &Ctx) -> Outcome {
    let mut c = if ctx.both {
        let slow = slow_websockets(&ctx.url, ms(200)).map_err(|e| format!("proxy: {e}"))?;
        Client::connect(ctx.client, &slow, ctx.options()).map_err(|e| format!("connect /: {e}"))?
    } else {
        ctx.connect("/", None)?
    };
    let first = c.transport();
    let mut received: Vec<u64> = Vec::new();
    let take = |events: Vec<ClientEvent>, received: &mut Vec<u64>| {
        for args in named(&events, "message-back") {
            received.push(args.first().and_then(Value::as_u64).unwrap_or(u64::MAX));
        }
    };
    let mut sent = 0u64;
    let mut upgraded_at = None;
    let end = Instant::now() + ms(8000);
    loop {
        for _ in 0..4 {
            emit(&mut c, "message", vec![Value::from(sent)])?;
            sent += 1;
        }
        take(collect(&mut c, ms(2)), &mut received);
        if upgraded_at.is_none() && c.transport() == Some(TransportKind::WebSocket) {
            upgraded_at = Some(sent);
        }
        let done = if ctx.both {
            upgraded_at.is_some_and(|u| sent >= u + 100)
        } else {
            sent >= 200
        };
        if done || Instant::now() > end {
            break;
        }
    }
    let deadline = Instant::now() + ms(10_000);
    while (received.len() as u64) < sent && Instant::now() < deadline {
        take(collect(&mut c, ms(20)), &mut received);
    }
    check!(
        received.len() as u64 == sent,
        "received {} of {sent}",
        received.len()
    );
    for (i, k) in received.iter().enumerate() {
        check!(*k == i as u64, "message #{i} came as {k}");
    }
    if ctx.both {
        check!(
            first == Some(TransportKind::Polling),
            "connected over {first:?}, not polling"
        );
        check!(
            upgraded_at.is_some_and(|u| u > 0),
            "the upgrade did not happen during the stream"
        );
        check!(
            c.transport() == Some(TransportKind::WebSocket),
            "not upgraded in the end"
        );
    }
    Ok(())
}

/// The server restarts (through `--restart-cmd`) while the client emits a
/// numbered stream on `/`, also joined to `/custom`: both namespaces
/// reconnect, and everything emitted once the client knew it was
/// disconnected arrives, in order, once.
fn reconnection_after_restart(ctx: &Ctx) -> Outcome {
    let Some(cmd) = ctx.restart_cmd.clone() else {
        return Err("skip".into());
    };
    let options = ctx.options().reconnection(true).configure(|c| {
        c.reconnection_delay(ms(200))
            .reconnection_delay_max(ms(1000))
    });
    let mut c = ctx.connect_with("/", Some(obj(&[("who", "root".into())])), options)?;
    let root = c.nsp();
    let custom = c
        .socket("/custom", Some(obj(&[("who", "custom".into())])))
        .map_err(|e| e.to_string())?;
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let ok = Command::new("sh")
            .args(["-c", &cmd])
            .status()
            .is_ok_and(|s| s.success());
        let _ = tx.send(ok);
    });
    let mut sent = 0u64;
    let mut echoed: Vec<u64> = Vec::new();
    let mut first_buffered: Option<u64> = None;
    let mut connects = (0, 0);
    let mut restarted = None;
    let end = Instant::now() + ms(25_000);
    loop {
        check!(
            Instant::now() < end,
            "no reconnection within 25 s (restart ok: {restarted:?})"
        );
        emit(&mut c, "message", vec![Value::from(sent)])?;
        sent += 1;
        for ev in collect(&mut c, ms(10)) {
            match ev {
                ClientEvent::Disconnect { nsp, .. } if nsp == root && first_buffered.is_none() => {
                    first_buffered = Some(sent)
                }
                ClientEvent::Connect { nsp, .. } if first_buffered.is_some() => {
                    if nsp == root {
                        connects.0 += 1;
                    } else if nsp == custom {
                        connects.1 += 1;
                    }
                }
                ClientEvent::Event { name, args, .. } if name == "message-back" => {
                    echoed.push(args.first().and_then(Value::as_u64).unwrap_or(u64::MAX))
                }
                _ => {}
            }
        }
        if let Ok(ok) = rx.try_recv() {
            restarted = Some(ok);
            check!(ok, "the restart command failed");
        }
        if restarted == Some(true) && connects.0 > 0 && connects.1 > 0 {
            break;
        }
    }
    let last = sent + 20;
    while sent < last {
        emit(&mut c, "message", vec![Value::from(sent)])?;
        sent += 1;
    }
    let deadline = Instant::now() + ms(5000);
    while echoed.last() != Some(&(sent - 1)) && Instant::now() < deadline {
        for args in named(&collect(&mut c, ms(20)), "message-back") {
            echoed.push(args.first().and_then(Value::as_u64).unwrap_or(u64::MAX));
        }
    }
    let first_buffered = first_buffered.ok_or("never disconnected")?;
    check!(
        echoed.windows(2).all(|w| w[0] < w[1]),
        "echoes out of order or repeated"
    );
    let missing: Vec<u64> = (0..sent).filter(|k| !echoed.contains(k)).collect();
    check!(
        missing.iter().all(|k| *k < first_buffered),
        "lost after the disconnect was known: {missing:?} (buffering from {first_buffered})"
    );
    Ok(())
}

// ----- runner -------------------------------------------------------------------

type Scenario = (String, u64, fn(&Ctx) -> Outcome);

fn scenarios(ctx: &Ctx) -> Vec<Scenario> {
    let mode = match ctx.mode {
        TransportMode::PollingOnly => "polling",
        TransportMode::WebSocketOnly => "websocket",
        TransportMode::PollingThenUpgrade => "both",
    };
    let s = |name: &str, secs: u64, f: fn(&Ctx) -> Outcome| (name.to_owned(), secs, f);
    vec![
        s("connect-auth", 8, connect_auth),
        s("connect-no-auth", 8, connect_no_auth),
        s("custom-namespace-auth", 8, custom_namespace_auth),
        s("multiplex", 8, multiplex),
        s("unknown-namespace", 8, unknown_namespace),
        s("echo-mixed", 8, echo_mixed),
        s("ack-args", 8, ack_args),
        s("ack-no-args", 8, ack_no_args),
        s("ack-twenty-in-flight", 10, ack_twenty_in_flight),
        s("server-ack", 8, server_ack),
        s("server-ack-binary", 8, server_ack_binary),
        s("binary-roundtrip", 10, binary_roundtrip),
        s("binary-in-object", 8, binary_in_object),
        s("binary-in-ack", 8, binary_in_ack),
        s("large-900kB", 15, large_900k),
        s("over-max-payload", 12, over_max_payload),
        s("heartbeat-silence", 10, heartbeat_silence),
        s("join", 8, join),
        s("broadcast", 10, broadcast),
        s("to-room", 10, to_room),
        s("emit-all", 10, emit_all),
        s("disconnect-me", 10, disconnect_me),
        (format!("transport-{mode}"), 10, transport_mode),
        (
            if ctx.both {
                "upgrade-no-loss"
            } else {
                "stream-in-order"
            }
            .to_owned(),
            20,
            stream,
        ),
        s("reconnection-after-restart", 40, reconnection_after_restart),
    ]
}

fn usage(msg: &str) -> ! {
    eprintln!("conformance_client: {msg}");
    eprintln!(
        "usage: conformance_client URL [--transports polling|websocket|both] [--client blocking|tokio|smol] [--only a,b] [--restart-cmd CMD]"
    );
    std::process::exit(2);
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut url = None;
    let mut mode = "both".to_owned();
    let mut only: Option<Vec<String>> = None;
    let mut restart_cmd = None;
    let mut client = "blocking".to_owned();
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        let mut value = || {
            i += 1;
            args.get(i)
                .cloned()
                .unwrap_or_else(|| usage(&format!("{a} needs a value")))
        };
        match a.as_str() {
            "--transports" => mode = value(),
            "--only" => only = Some(value().split(',').map(str::to_owned).collect()),
            "--restart-cmd" => restart_cmd = Some(value()),
            "--client" => client = value(),
            "-h" | "--help" => usage("help"),
            s if s.starts_with("--") => usage(&format!("unknown option {s}")),
            s if url.is_none() => url = Some(s.trim_end_matches('/').to_owned()),
            s => usage(&format!("unexpected argument {s}")),
        }
        i += 1;
    }
    let Some(url) = url else { usage("missing URL") };
    let mode = match mode.as_str() {
        "polling" => TransportMode::PollingOnly,
        "websocket" => TransportMode::WebSocketOnly,
        "both" => TransportMode::PollingThenUpgrade,
        m => usage(&format!("bad --transports {m}")),
    };
    let client = match client.as_str() {
        "blocking" => Kind::Blocking,
        "tokio" => Kind::Tokio,
        "smol" => Kind::Smol,
        c => usage(&format!("bad --client {c}")),
    };
    let ctx = Ctx {
        url,
        mode,
        both: mode == TransportMode::PollingThenUpgrade,
        restart_cmd,
        client,
    };
    let chosen: Vec<Scenario> = scenarios(&ctx)
        .into_iter()
        .filter(|(n, _, _)| only.as_ref().is_none_or(|o| o.contains(n)))
        .collect();
    if chosen.is_empty() {
        usage("--only matched no scenario");
    }
    let (mut passed, mut failed) = (0, 0);
    for (name, secs, f) in chosen {
        let (tx, rx) = mpsc::channel();
        let c = ctx.clone();
        thread::spawn(move || {
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&c)))
                .unwrap_or_else(|_| Err("panicked".into()));
            let _ = tx.send(r);
        });
        let r = rx
            .recv_timeout(Duration::from_secs(secs))
            .unwrap_or_else(|_| Err(format!("timed out after {secs} s")));
        match r {
            Ok(()) => {
                println!("ok {name}");
                passed += 1;
            }
            Err(why) if why == "skip" => println!(
                "skip {name}: needs --restart-cmd CMD (tests/socketio_client_interop.rs restarts the official server itself)"
            ),
            Err(why) => {
                println!("fail {name}: {why}");
                failed += 1;
            }
        }
        // Scenario clients are closed when dropped; let them go first.
        thread::sleep(ms(50));
    }
    println!("{passed} passed, {failed} failed");
    std::process::exit(if failed == 0 { 0 } else { 1 });
}
