//! Heap memory per idle Socket.IO connection on the tokio adapter: the
//! machine's session, the loop's connection entry, tokio's registration of
//! the socket, all counted by a counting allocator after 1,000 clients on
//! WebSocket have joined `/` and gone quiet. (Kernel socket buffers are not
//! counted; the clients are plain std sockets that allocate nothing.)

use std::{
    alloc::{GlobalAlloc, Layout, System},
    io::{Read, Write},
    net::TcpStream,
    sync::atomic::{AtomicIsize, Ordering},
    time::Duration,
};

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: forwards to the system allocator, only counting.
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

const N: usize = 1000;

fn read_until(s: &mut TcpStream, needle: &[u8]) {
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while !got.windows(needle.len()).any(|w| w == needle) {
        let n = s.read(&mut buf).expect("read");
        assert!(n > 0, "closed");
        got.extend_from_slice(&buf[..n]);
    }
}

fn client(port: u16) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(
        b"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\
          Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .unwrap();
    read_until(&mut s, b"\"pingInterval\"");
    // "40", masked with a zero key.
    s.write_all(&[0x81, 0x82, 0, 0, 0, 0, b'4', b'0']).unwrap();
    read_until(&mut s, b"40{\"sid\"");
    s
}

#[test]
fn idle_socket_io_connection_on_tokio() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let config = wsio::socketio::Config::default();
    let server = rt
        .block_on(wsio_tokio::bind("127.0.0.1:0", config))
        .unwrap();
    let port = server.local_addr().unwrap().port();
    let handle = server.handle();
    let thread = std::thread::spawn(move || rt.block_on(server));
    let mut clients = Vec::with_capacity(N + 10);
    // Warm up the tables, then measure.
    for _ in 0..10 {
        clients.push(client(port));
    }
    std::thread::sleep(Duration::from_millis(200));
    let before = LIVE.load(Ordering::Relaxed);
    for _ in 0..N {
        clients.push(client(port));
    }
    std::thread::sleep(Duration::from_millis(500));
    let after = LIVE.load(Ordering::Relaxed);
    let per = (after - before) / N as isize - std::mem::size_of::<TcpStream>() as isize;
    eprintln!(
        "idle Socket.IO connection on wsio-tokio (WebSocket, namespace /): {per} bytes of heap"
    );
    assert!(
        per <= 8192,
        "{per} bytes per idle Socket.IO connection on wsio-tokio; the target is 8 KiB"
    );
    let rt2 = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt2.block_on(handle.shutdown()).unwrap();
    drop(clients);
    thread.join().unwrap().unwrap();
}
