//! Shared harness of the interop tests: real peers as child processes.
//!
//! A missing peer is a failure with the command that installs it, never a
//! silent skip.
#![allow(dead_code)]

pub mod raw;
pub mod sim;

use std::{
    io::{BufRead, BufReader, Read},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::Duration,
};

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `node`, with the npm peers of tests/node installed.
pub fn node() -> Command {
    let ok = Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "Node.js is required for this interop test: install Node 20 (https://nodejs.org), then `npm ci --prefix tests/node`"
    );
    let modules = repo().join("tests/node/node_modules/socket.io");
    assert!(
        modules.exists(),
        "the official npm peers are missing: run `npm ci --prefix tests/node` (pinned by tests/node/package-lock.json)"
    );
    let mut c = Command::new("node");
    c.current_dir(repo().join("tests/node"));
    c
}

/// A built example of this crate (cargo test builds them with the tests).
pub fn example(name: &str) -> Command {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> -> target/<profile>/examples/<name>
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let path = dir.join("examples").join(name);
    assert!(
        path.exists(),
        "example {name} is not built at {}: run `cargo build --examples` (cargo test builds it)",
        path.display()
    );
    Command::new(path)
}

/// A child process killed when dropped, even if the test panics.
pub struct Proc {
    pub child: Child,
    pub port: u16,
    pub name: String,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `cmd` (which must print `READY <port>` on stdout) and waits for it.
pub fn spawn_ready(name: &str, mut cmd: Command) -> Proc {
    cmd.stdout(Stdio::piped()).stderr(Stdio::inherit());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        for line in lines.by_ref().map_while(Result::ok) {
            if let Some(p) = line.strip_prefix("READY ") {
                let _ = tx.send(p.trim().parse::<u16>().ok());
                break;
            }
        }
        // Keep draining so the child never blocks on a full pipe.
        for _ in lines {}
    });
    let port = match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(Some(p)) => p,
        _ => {
            let _ = child.kill();
            panic!("{name} did not print READY <port> within 60 s");
        }
    };
    Proc {
        child,
        port,
        name: name.to_owned(),
    }
}

/// Runs a command to completion with a time limit; returns its stdout and
/// whether it succeeded.
pub fn run(name: &str, mut cmd: Command, limit: Duration) -> (bool, String) {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let ereader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait") {
            break Some(st);
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stdout = reader.join().unwrap_or_default();
    let stderr = ereader.join().unwrap_or_default();
    let ok = status.is_some_and(|s| s.success());
    if !ok {
        eprintln!("--- {name} stderr ---\n{stderr}");
    }
    (ok, stdout)
}

/// The conformance example on a free port.
pub fn conformance() -> Proc {
    conformance_with(&[])
}

/// The `conformance` example with extra arguments, on a free port.
pub fn conformance_with(extra: &[&str]) -> Proc {
    let mut c = example("conformance");
    c.args(["--port", "0"]).args(extra);
    spawn_ready("conformance", c)
}

/// The official Node reference server on a free port.
pub fn node_reference() -> Proc {
    let mut c = node();
    c.args(["sio-server.js", "--port", "0"]);
    spawn_ready("node sio-server.js", c)
}

/// Like [`spawn_ready`], also handing out the child's stderr line by line
/// (each line is echoed to the test's stderr too).
pub fn spawn_ready_logged(name: &str, mut cmd: Command) -> (Proc, mpsc::Receiver<String>) {
    cmd.stderr(Stdio::piped());
    let mut child = cmd
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
    let stderr = child.stderr.take().expect("piped stderr");
    let (etx, erx) = mpsc::channel();
    let label = name.to_owned();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("[{label}] {line}");
            let _ = etx.send(line);
        }
    });
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        for line in lines.by_ref().map_while(Result::ok) {
            if let Some(p) = line.strip_prefix("READY ") {
                let _ = tx.send(p.trim().parse::<u16>().ok());
                break;
            }
        }
        for _ in lines {}
    });
    let port = match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(Some(p)) => p,
        _ => {
            let _ = child.kill();
            panic!("{name} did not print READY <port> within 60 s");
        }
    };
    let proc = Proc {
        child,
        port,
        name: name.to_owned(),
    };
    (proc, erx)
}
