//! Counters, latency histograms, CPU accounting and the per-second report.

use hdrhistogram::Histogram;
use serde_json::{Value, json};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Latencies are recorded in microseconds, up to an hour.
const LATENCY_MAX_US: u64 = 3_600_000_000;

fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_MAX_US, 3).expect("valid histogram bounds")
}

/// Nanoseconds since the Unix epoch (what producers write into message bodies).
pub fn unix_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// Counters shared by all producers and consumers.
#[derive(Default)]
pub struct Stats {
    published: AtomicU64,
    confirmed: AtomicU64,
    nacked: AtomicU64,
    delivered: AtomicU64,
    recorders: Mutex<Vec<Arc<Mutex<Histogram<u64>>>>>,
    errors: Mutex<Vec<String>>,
}

impl Stats {
    pub fn add_published(&self, n: u64) {
        self.published.fetch_add(n, Ordering::Relaxed);
    }
    pub fn add_confirmed(&self, n: u64) {
        self.confirmed.fetch_add(n, Ordering::Relaxed);
    }
    pub fn add_nacked(&self, n: u64) {
        self.nacked.fetch_add(n, Ordering::Relaxed);
    }
    pub fn add_delivered(&self, n: u64) {
        self.delivered.fetch_add(n, Ordering::Relaxed);
    }
    pub fn published(&self) -> u64 {
        self.published.load(Ordering::Relaxed)
    }
    pub fn delivered(&self) -> u64 {
        self.delivered.load(Ordering::Relaxed)
    }

    /// A latency recorder for one consumer (its own lock, so consumers do not contend).
    pub fn latency_recorder(&self) -> LatencyRecorder {
        let h = Arc::new(Mutex::new(new_histogram()));
        self.recorders.lock().unwrap().push(h.clone());
        LatencyRecorder(h)
    }

    pub fn error(&self, msg: String) {
        eprintln!("warren-perf: {msg}");
        self.errors.lock().unwrap().push(msg);
    }

    pub fn errors(&self) -> Vec<String> {
        self.errors.lock().unwrap().clone()
    }

    fn snapshot(&self) -> Counts {
        Counts {
            published: self.published.load(Ordering::Relaxed),
            confirmed: self.confirmed.load(Ordering::Relaxed),
            nacked: self.nacked.load(Ordering::Relaxed),
            delivered: self.delivered.load(Ordering::Relaxed),
        }
    }

    /// Moves what the consumers recorded since the last call into `into`.
    fn drain_latencies(&self, into: &mut Histogram<u64>) {
        for r in self.recorders.lock().unwrap().iter() {
            let mut h = r.lock().unwrap();
            if !h.is_empty() {
                let _ = into.add(&*h);
                h.reset();
            }
        }
    }
}

pub struct LatencyRecorder(Arc<Mutex<Histogram<u64>>>);

impl LatencyRecorder {
    /// Records the latency of a message whose body starts with its send time.
    pub fn record_body(&self, body: &[u8], now_ns: u64) {
        if let Some(ts) = body.get(..8) {
            let sent = u64::from_le_bytes(ts.try_into().expect("8 bytes"));
            if sent > 0 && now_ns >= sent {
                let us = ((now_ns - sent) / 1000).clamp(1, LATENCY_MAX_US);
                let _ = self.0.lock().unwrap().record(us);
            }
        }
    }
}

#[derive(Clone, Copy, Default)]
struct Counts {
    published: u64,
    confirmed: u64,
    nacked: u64,
    delivered: u64,
}

/// This process's CPU time (user + system).
pub fn cpu_time() -> Duration {
    // SAFETY: getrusage only writes into the struct we pass.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } != 0 {
        return Duration::ZERO;
    }
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

fn latency_json(h: &Histogram<u64>) -> Value {
    if h.is_empty() {
        return Value::Null;
    }
    json!({
        "count": h.len(),
        "min_us": h.min(),
        "p50_us": h.value_at_quantile(0.50),
        "p95_us": h.value_at_quantile(0.95),
        "p99_us": h.value_at_quantile(0.99),
        "p999_us": h.value_at_quantile(0.999),
        "max_us": h.max(),
    })
}

fn fmt_us(us: u64) -> String {
    if us >= 10_000_000 {
        format!("{:.1}s", us as f64 / 1e6)
    } else if us >= 10_000 {
        format!("{:.0}ms", us as f64 / 1e3)
    } else if us >= 1_000 {
        format!("{:.2}ms", us as f64 / 1e3)
    } else {
        format!("{us}us")
    }
}

fn latency_text(h: &Histogram<u64>) -> String {
    if h.is_empty() {
        return "latency -".to_string();
    }
    format!(
        "latency p50 {} p95 {} p99 {} max {}",
        fmt_us(h.value_at_quantile(0.50)),
        fmt_us(h.value_at_quantile(0.95)),
        fmt_us(h.value_at_quantile(0.99)),
        fmt_us(h.max()),
    )
}

/// Per-second and final reporting.
pub struct Reporter {
    stats: Arc<Stats>,
    json: bool,
    quiet: bool,
    start: Instant,
    cpu_start: Duration,
    last: Counts,
    last_at: Instant,
    last_cpu: Duration,
    tick: u64,
    total: Histogram<u64>,
    broker_pids: Vec<u32>,
    last_broker_cpu: Duration,
}

impl Reporter {
    pub fn new(stats: Arc<Stats>, json: bool, quiet: bool, broker_pids: Vec<u32>) -> Self {
        let now = Instant::now();
        let cpu = cpu_time();
        let last_broker_cpu = crate::roles::processes_cpu(&broker_pids);
        Reporter {
            stats,
            json,
            quiet,
            start: now,
            cpu_start: cpu,
            last: Counts::default(),
            last_at: now,
            last_cpu: cpu,
            tick: 0,
            total: new_histogram(),
            broker_pids,
            last_broker_cpu,
        }
    }

    pub fn start(&self) -> Instant {
        self.start
    }

    /// This process's CPU time when the run started.
    pub fn cpu_start(&self) -> Duration {
        self.cpu_start
    }

    /// Prints one interval line (rates since the previous one).
    pub fn tick(&mut self) {
        let now = Instant::now();
        let cpu = cpu_time();
        let counts = self.stats.snapshot();
        let mut interval = new_histogram();
        self.stats.drain_latencies(&mut interval);
        let _ = self.total.add(&interval);
        let dt = now.duration_since(self.last_at).as_secs_f64().max(1e-9);
        let rate = |a: u64, b: u64| (a - b) as f64 / dt;
        let cpu_pct = (cpu - self.last_cpu).as_secs_f64() / dt * 100.0;
        let broker_cpu = crate::roles::processes_cpu(&self.broker_pids);
        let broker_pct = (!self.broker_pids.is_empty()).then(|| {
            broker_cpu
                .saturating_sub(self.last_broker_cpu)
                .as_secs_f64()
                / dt
                * 100.0
        });
        self.last_broker_cpu = broker_cpu;
        self.tick += 1;
        if !self.quiet {
            let elapsed = now.duration_since(self.start).as_secs_f64();
            if self.json {
                let v = json!({
                    "type": "tick",
                    "elapsed_s": elapsed,
                    "published_rate": rate(counts.published, self.last.published),
                    "confirmed_rate": rate(counts.confirmed, self.last.confirmed),
                    "nacked_rate": rate(counts.nacked, self.last.nacked),
                    "delivered_rate": rate(counts.delivered, self.last.delivered),
                    "latency": latency_json(&interval),
                    "cpu_pct": cpu_pct,
                    "broker_cpu_pct": broker_pct,
                });
                println!("{v}");
            } else {
                let broker = broker_pct.map_or(String::new(), |b| format!("  broker cpu {b:.0}%"));
                println!(
                    "[{elapsed:6.1}s] published {:>9.0}/s  confirmed {:>9.0}/s  delivered {:>9.0}/s  {}  cpu {cpu_pct:.0}%{broker}",
                    rate(counts.published, self.last.published),
                    rate(counts.confirmed, self.last.confirmed),
                    rate(counts.delivered, self.last.delivered),
                    latency_text(&interval),
                );
            }
        }
        self.last = counts;
        self.last_at = now;
        self.last_cpu = cpu;
    }

    /// The final summary. `publish_secs` and `deliver_secs` are the spans over which
    /// publishing and delivering happened (they differ for fixed-count runs).
    /// `end` and `cpu_at_end` mark the end of the measured run (before cleanup).
    pub fn summary(
        &mut self,
        end: Instant,
        cpu_at_end: Duration,
        publish_secs: f64,
        deliver_secs: f64,
        extra: Value,
    ) -> Value {
        let mut rest = new_histogram();
        self.stats.drain_latencies(&mut rest);
        let _ = self.total.add(&rest);
        let c = self.stats.snapshot();
        let wall = end.duration_since(self.start).as_secs_f64();
        let cpu = (cpu_at_end - self.cpu_start).as_secs_f64();
        let per = |n: u64, s: f64| if s > 0.0 { n as f64 / s } else { 0.0 };
        let mut v = json!({
            "type": "summary",
            "elapsed_s": wall,
            "publish_s": publish_secs,
            "deliver_s": deliver_secs,
            "published": c.published,
            "confirmed": c.confirmed,
            "nacked": c.nacked,
            "delivered": c.delivered,
            "published_rate": per(c.published, publish_secs),
            "confirmed_rate": per(c.confirmed, publish_secs),
            "delivered_rate": per(c.delivered, deliver_secs),
            "latency": latency_json(&self.total),
            "cpu_s": cpu,
            "cpu_pct": if wall > 0.0 { cpu / wall * 100.0 } else { 0.0 },
            "errors": self.stats.errors(),
        });
        if let (Value::Object(m), Value::Object(e)) = (&mut v, extra) {
            m.extend(e);
        }
        if self.json {
            println!("{v}");
        } else {
            println!(
                "summary: {:.1}s  published {} ({:.0}/s)  confirmed {} ({:.0}/s)  nacked {}  delivered {} ({:.0}/s)\n         {}  cpu {:.2}s ({:.0}% of one core)",
                wall,
                c.published,
                per(c.published, publish_secs),
                c.confirmed,
                per(c.confirmed, publish_secs),
                c.nacked,
                c.delivered,
                per(c.delivered, deliver_secs),
                latency_text(&self.total),
                cpu,
                if wall > 0.0 { cpu / wall * 100.0 } else { 0.0 },
            );
            for e in self.stats.errors() {
                println!("         error: {e}");
            }
        }
        v
    }
}
