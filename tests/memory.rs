//! Heap memory held per idle connection, measured with a counting
//! allocator: an Engine.IO session on WebSocket, and a Socket.IO client
//! connected to `/`, each after its handshake has been fully written out.
//! (Kernel socket buffers are not counted: they are not the library's.)
//! One test measures both, in turn: the counter is process-wide, so the two
//! must not run at the same time.

use std::{
    alloc::{GlobalAlloc, Layout, System},
    ops::ControlFlow,
    sync::atomic::{AtomicIsize, Ordering},
    time::{Duration, Instant},
};

use wsio::{
    engineio::{self, ConnId},
    entropy::SeededEntropy,
    machine, socketio,
    ws::{self, ClientRequest},
};

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        LIVE.fetch_add(new as isize - l.size() as isize, Ordering::Relaxed);
        unsafe { System.realloc(p, l, new) }
    }
}

#[global_allocator]
static A: Counting = Counting;

const N: usize = 2000;

/// The upgrade request a browser would send (with its usual headers).
fn upgrade(path: &str) -> Vec<u8> {
    let mut c = ws::Connection::client(
        ws::Config::default(),
        ClientRequest::new("localhost:3000", path)
            .header("Origin", "http://localhost:3000")
            .header("User-Agent", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36")
            .header("Accept-Language", "en-US,en;q=0.9"),
        Box::new(SeededEntropy::new(1)),
    );
    match c.poll_transmit(Instant::now()) {
        Some(ws::Transmit::Data(b)) => b.to_vec(),
        _ => unreachable!(),
    }
}

fn masked_text(t: &str) -> Vec<u8> {
    let mut f = vec![0x81, 0x80 | t.len() as u8, 0, 0, 0, 0];
    f.extend_from_slice(t.as_bytes());
    f
}

fn per_connection(before: isize, after: isize) -> isize {
    (after - before) / N as isize
}

#[test]
fn idle_connections_stay_small() {
    idle_engine_io_session_on_websocket();
    idle_socket_io_connection();
}

fn idle_engine_io_session_on_websocket() {
    let now = Instant::now();
    let config = engineio::Config::default()
        .ping_interval(Duration::from_secs(25))
        .ping_timeout(Duration::from_secs(20));
    let mut server = engineio::Server::new(config, Box::new(SeededEntropy::new(1)), now);
    let req = upgrade("/engine.io/?EIO=4&transport=websocket");
    let mut conns: Vec<ConnId> = Vec::with_capacity(N);
    let drain = |server: &mut engineio::Server| {
        machine::drain(server, now, |_, _| ControlFlow::Continue(()), |_, _| {});
    };
    // Warm up (first allocations of the tables), then measure.
    for _ in 0..10 {
        let c = server.accept(now, None);
        server.handle_input(now, c, &req);
        drain(&mut server);
    }
    let before = LIVE.load(Ordering::Relaxed);
    for _ in 0..N {
        let c = server.accept(now, None);
        server.handle_input(now, c, &req);
        drain(&mut server);
        conns.push(c);
    }
    let after = LIVE.load(Ordering::Relaxed);
    let per = per_connection(before, after) - (std::mem::size_of::<ConnId>() as isize);
    eprintln!("idle Engine.IO session (WebSocket): {per} bytes of heap");
    assert_eq!(server.session_count(), N + 10);
    assert!(
        per <= 2048,
        "{per} bytes per idle Engine.IO session; the target is 2 KiB"
    );
}

fn idle_socket_io_connection() {
    let now = Instant::now();
    let engine = engineio::Config::default()
        .path("/socket.io/")
        .ping_interval(Duration::from_secs(25))
        .ping_timeout(Duration::from_secs(20));
    let mut io = socketio::Server::new(
        socketio::Config::default().engine(engine),
        Box::new(SeededEntropy::new(1)),
        now,
    );
    let req = upgrade("/socket.io/?EIO=4&transport=websocket");
    let connect = masked_text("40");
    let drain = |io: &mut socketio::Server| {
        machine::drain(io, now, |_, _| ControlFlow::Continue(()), |_, _| {});
    };
    let open = |io: &mut socketio::Server| {
        let c = io.accept(now, None);
        io.handle_input(now, c, &req);
        drain(io);
        io.handle_input(now, c, &connect);
        drain(io);
        c
    };
    for _ in 0..10 {
        open(&mut io);
    }
    let before = LIVE.load(Ordering::Relaxed);
    let mut conns = Vec::with_capacity(N);
    for _ in 0..N {
        conns.push(open(&mut io));
    }
    let after = LIVE.load(Ordering::Relaxed);
    let per = per_connection(before, after) - (std::mem::size_of::<ConnId>() as isize);
    eprintln!("idle Socket.IO connection (WebSocket, namespace /): {per} bytes of heap");
    assert_eq!(io.sockets("/").len(), N + 10);
    assert!(
        per <= 8192,
        "{per} bytes per idle Socket.IO connection; the target is 8 KiB"
    );
}
