//! What the examples share: strict flags ([`args`]), a stderr logger for
//! the adapters' warnings, and the raw `epoll` server loop of the load
//! benchmarks.
#![allow(dead_code)]

pub mod args;
#[cfg(target_os = "linux")]
pub mod epoll;

/// Prints the adapters' warnings (a peer dropped for not reading, accept
/// errors) on stderr.
pub fn log_to_stderr() {
    struct Stderr;
    impl log::Log for Stderr {
        fn enabled(&self, m: &log::Metadata<'_>) -> bool {
            m.level() <= log::Level::Info
        }
        fn log(&self, r: &log::Record<'_>) {
            if self.enabled(r.metadata()) {
                eprintln!("{}: {}", r.level(), r.args());
            }
        }
        fn flush(&self) {}
    }
    static LOGGER: Stderr = Stderr;
    if log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(log::LevelFilter::Info);
    }
}
