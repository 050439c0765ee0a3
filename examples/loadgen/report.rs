//! Measurements: latency samples, and a process's CPU time and resident
//! memory read from /proc.

use std::time::Duration;

/// Latency samples in nanoseconds.
#[derive(Default)]
pub struct Samples(Vec<u32>);

impl Samples {
    /// Records one sample (saturating at about 4.3 s).
    pub fn push(&mut self, d: Duration) {
        self.0.push(u32::try_from(d.as_nanos()).unwrap_or(u32::MAX));
    }

    /// Sorts the samples, for [`percentile_us`](Self::percentile_us).
    pub fn sort(&mut self) {
        self.0.sort_unstable();
    }

    /// The `p`-th percentile (0 < p <= 100) in microseconds, by the
    /// nearest-rank method; 0 with no samples. Call [`sort`](Self::sort)
    /// first.
    pub fn percentile_us(&self, p: f64) -> f64 {
        if self.0.is_empty() {
            return 0.0;
        }
        let rank = ((p / 100.0) * self.0.len() as f64).ceil() as usize;
        let i = rank.clamp(1, self.0.len()) - 1;
        f64::from(self.0[i]) / 1000.0
    }
}

/// The CPU time (user, system; all threads) of the processes `pids` (one
/// pid, or several separated by commas: summed), in seconds.
pub fn cpu_seconds(pids: &str) -> Option<(f64, f64)> {
    pids.split(',').try_fold((0.0, 0.0), |(u, s), pid| {
        let (u1, s1) = cpu_seconds_of(pid)?;
        Some((u + u1, s + s1))
    })
}

/// A process's CPU time (user, system; all threads) in seconds, from the
/// 14th and 15th fields of /proc/PID/stat.
fn cpu_seconds_of(pid: &str) -> Option<(f64, f64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces: count from its ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime / clock_ticks(), stime / clock_ticks()))
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf only reads a configuration value.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as f64 } else { 100.0 }
}

/// The resident set size in KiB of the processes `pids` (one pid, or
/// several separated by commas: summed).
pub fn rss_kib(pids: &str) -> Option<u64> {
    pids.split(',')
        .try_fold(0u64, |sum, pid| Some(sum + rss_kib_of(pid)?))
}

/// A process's resident set size in KiB (VmRSS in /proc/PID/status).
fn rss_kib_of(pid: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// CPU time of the server (if pids were given: one process, or several
/// summed) and of this process over a measured window.
pub struct CpuWindow {
    pid: Option<String>,
    server0: Option<(f64, f64)>,
    self0: Option<(f64, f64)>,
    start: std::time::Instant,
}

/// What a [`CpuWindow`] measured.
pub struct CpuUsed {
    /// Wall-clock seconds.
    pub wall: f64,
    /// Server CPU seconds (user + system), if known.
    pub server: Option<f64>,
    /// The system part of `server`.
    pub server_sys: Option<f64>,
    /// Load generator CPU seconds.
    pub loadgen: Option<f64>,
}

impl CpuWindow {
    /// Starts measuring.
    pub fn start(pid: Option<&str>) -> CpuWindow {
        CpuWindow {
            pid: pid.map(str::to_owned),
            server0: pid.and_then(cpu_seconds),
            self0: cpu_seconds("self"),
            start: std::time::Instant::now(),
        }
    }

    /// Stops measuring.
    pub fn stop(&self) -> CpuUsed {
        let server = match (&self.pid, self.server0) {
            (Some(pid), Some((u0, s0))) => cpu_seconds(pid).map(|(u1, s1)| (u1 - u0, s1 - s0)),
            _ => None,
        };
        CpuUsed {
            wall: self.start.elapsed().as_secs_f64(),
            server: server.map(|(u, s)| u + s),
            server_sys: server.map(|(_, s)| s),
            loadgen: self
                .self0
                .and_then(|(u0, s0)| cpu_seconds("self").map(|(u1, s1)| u1 - u0 + s1 - s0)),
        }
    }
}
