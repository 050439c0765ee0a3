//! This thread's CPU time as a criterion measurement, shared by the
//! benches that offer `*_BENCH_CLOCK=cpu`: on a shared, busy machine the
//! time a benchmark spends descheduled is then not charged to it.

use criterion::{
    Throughput,
    measurement::{Measurement, ValueFormatter},
};

/// This thread's CPU time (`CLOCK_THREAD_CPUTIME_ID`), in nanoseconds.
pub struct CpuTime;

fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

impl Measurement for CpuTime {
    type Intermediate = u64;
    type Value = u64;
    fn start(&self) -> u64 {
        thread_cpu_ns()
    }
    fn end(&self, start: u64) -> u64 {
        thread_cpu_ns() - start
    }
    fn add(&self, a: &u64, b: &u64) -> u64 {
        a + b
    }
    fn zero(&self) -> u64 {
        0
    }
    fn to_f64(&self, v: &u64) -> f64 {
        *v as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        &NanosFormatter
    }
}

/// Formats nanoseconds like criterion's wall-time formatter.
struct NanosFormatter;

impl ValueFormatter for NanosFormatter {
    fn scale_values(&self, ns: f64, values: &mut [f64]) -> &'static str {
        let (factor, unit) = match ns {
            n if n < 1e3 => (1.0, "ns"),
            n if n < 1e6 => (1e-3, "µs"),
            n if n < 1e9 => (1e-6, "ms"),
            _ => (1e-9, "s"),
        };
        values.iter_mut().for_each(|v| *v *= factor);
        unit
    }

    fn scale_throughputs(&self, typical: f64, t: &Throughput, values: &mut [f64]) -> &'static str {
        let (per_iter, base, units): (f64, f64, _) = match *t {
            Throughput::Bytes(b) => (b as f64, 1024.0, ["  B/s", "KiB/s", "MiB/s", "GiB/s"]),
            Throughput::BytesDecimal(b) => (b as f64, 1000.0, ["  B/s", "KB/s", "MB/s", "GB/s"]),
            Throughput::Elements(e) => (
                e as f64,
                1000.0,
                [" elem/s", "Kelem/s", "Melem/s", "Gelem/s"],
            ),
        };
        let typical_rate = per_iter * 1e9 / typical;
        let mut k = 0;
        while k < 3 && typical_rate >= base.powi(k as i32 + 1) {
            k += 1;
        }
        let denom = base.powi(k as i32);
        values
            .iter_mut()
            .for_each(|v| *v = per_iter * 1e9 / *v / denom);
        units[k]
    }

    fn scale_for_machines(&self, _: &mut [f64]) -> &'static str {
        "ns"
    }
}
