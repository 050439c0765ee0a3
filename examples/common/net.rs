//! The async half of a server driver on smol: accepts TCP connections,
//! reads them in their own tasks, writes them from per-connection queues,
//! and funnels everything into one loop that owns the protocol machine.
//! The machine never sees a socket; this file never sees a protocol.
#![allow(dead_code)]

use std::{collections::HashMap, net::SocketAddr, time::Instant};

use bytes::Bytes;
use smol::{
    Timer,
    channel::{Receiver, Sender, unbounded},
    future::FutureExt as _,
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

/// Something that happened on the network.
pub enum Input {
    /// A new connection, already registered under this key.
    Accepted(u64, Option<SocketAddr>),
    /// Bytes read from a connection.
    Data(u64, Vec<u8>),
    /// The peer closed a connection (or it failed).
    Eof(u64),
}

enum Output {
    Data(Bytes),
    Close,
}

/// The network side of a server: keys stand for TCP connections.
pub struct Net {
    tx: Sender<Input>,
    rx: Receiver<Input>,
    writers: HashMap<u64, Sender<Output>>,
    next: u64,
    streams: Receiver<(TcpStream, SocketAddr)>,
}

impl Net {
    /// Starts accepting on `listener`.
    pub fn listen(listener: TcpListener) -> Net {
        let (tx, rx) = unbounded();
        let (stx, srx) = unbounded();
        smol::spawn(async move {
            while let Ok((stream, peer)) = listener.accept().await {
                let _ = stream.set_nodelay(true);
                if stx.send((stream, peer)).await.is_err() {
                    break;
                }
            }
        })
        .detach();
        Net {
            tx,
            rx,
            writers: HashMap::new(),
            next: 0,
            streams: srx,
        }
    }

    fn register(&mut self, stream: TcpStream) -> u64 {
        self.next += 1;
        let key = self.next;
        let (wtx, wrx) = unbounded::<Output>();
        self.writers.insert(key, wtx);
        let tx = self.tx.clone();
        let mut reader = stream.clone();
        smol::spawn(async move {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                match reader.read(&mut buf).await {
                    Ok(0) | Err(_) => {
                        let _ = tx.send(Input::Eof(key)).await;
                        break;
                    }
                    Ok(n) => {
                        if tx.send(Input::Data(key, buf[..n].to_vec())).await.is_err() {
                            break;
                        }
                    }
                }
            }
        })
        .detach();
        let mut writer = stream;
        smol::spawn(async move {
            while let Ok(out) = wrx.recv().await {
                match out {
                    Output::Data(b) => {
                        if writer.write_all(&b).await.is_err() {
                            break;
                        }
                    }
                    Output::Close => {
                        let _ = super::close(writer).await;
                        return;
                    }
                }
            }
        })
        .detach();
        key
    }

    /// Queues bytes for a connection.
    pub fn write(&mut self, key: u64, data: Bytes) {
        if let Some(w) = self.writers.get(&key) {
            let _ = w.try_send(Output::Data(data));
        }
    }

    /// Closes a connection once its queued bytes are written.
    pub fn close(&mut self, key: u64) {
        if let Some(w) = self.writers.remove(&key) {
            let _ = w.try_send(Output::Close);
        }
    }

    /// The next input, or `None` when `deadline` passes first.
    pub async fn next(&mut self, deadline: Option<Instant>) -> Option<Input> {
        enum Got {
            In(Input),
            Stream(TcpStream, SocketAddr),
            Timeout,
        }
        let timer = async {
            match deadline {
                Some(d) => Timer::at(d).await,
                None => Timer::never().await,
            };
            Got::Timeout
        };
        let inputs = async {
            match self.rx.recv().await {
                Ok(i) => Got::In(i),
                Err(_) => smol::future::pending().await,
            }
        };
        let streams = async {
            match self.streams.recv().await {
                Ok((s, p)) => Got::Stream(s, p),
                Err(_) => smol::future::pending().await,
            }
        };
        match inputs.or(streams).or(timer).await {
            Got::In(i) => Some(i),
            Got::Stream(s, peer) => Some(Input::Accepted(self.register(s), Some(peer))),
            Got::Timeout => None,
        }
    }
}
