//! Rates for the management API (`publish_details: {rate}`), computed from the event
//! counters when someone asks, never on the message path: a [`Rate`] keeps the two
//! most recent samples of a counter, taken at reads at least [`INTERVAL`] apart (the
//! management plugin's collection interval), and reports the change per second
//! between them.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How far apart two samples must be (RabbitMQ's `collect_statistics_interval`).
pub const INTERVAL: Duration = Duration::from_secs(5);

#[derive(Clone, Copy)]
struct Sample {
    at: Instant,
    value: u64,
}

/// The rate of one counter.
#[derive(Default)]
pub struct Rate {
    samples: Mutex<Option<(Sample, Option<Sample>)>>,
}

impl Rate {
    /// The counter's change per second over the last sampling interval, given its
    /// current value; the first read reports 0.
    pub fn per_second(&self, value: u64) -> f64 {
        self.per_second_at(value, Instant::now())
    }

    /// Like [`Rate::per_second`] for a gauge (a queue depth), which may also fall:
    /// the change per second is then negative.
    pub fn gauge_per_second(&self, value: u64) -> f64 {
        self.sampled(value, Instant::now())
            .map_or(0.0, |(last, p, secs)| (last as f64 - p as f64) / secs)
    }

    fn per_second_at(&self, value: u64, at: Instant) -> f64 {
        // A counter only grows; a reset (it never happens) reads as 0.
        self.sampled(value, at)
            .map_or(0.0, |(last, p, secs)| last.saturating_sub(p) as f64 / secs)
    }

    /// Records `value` read at `at`; the two samples to compare (latest value,
    /// previous value, seconds between them), once there are two.
    fn sampled(&self, value: u64, at: Instant) -> Option<(u64, u64, f64)> {
        // Only this function touches the samples and it cannot panic while holding
        // the lock: a poisoned lock still guards consistent data.
        let mut samples = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        let now = Sample { at, value };
        let (last, previous) = match *samples {
            None => {
                *samples = Some((now, None));
                return None;
            }
            Some((last, _)) if at.duration_since(last.at) >= INTERVAL => {
                *samples = Some((now, Some(last)));
                (now, Some(last))
            }
            Some(pair) => pair,
        };
        let p = previous?;
        let secs = last.at.duration_since(p.at).as_secs_f64();
        (secs > 0.0).then_some((last.value, p.value, secs))
    }
}

/// Rates of several counters of one object, by name, created at their first read.
#[derive(Default)]
pub struct RateSet {
    rates: Mutex<HashMap<&'static str, Rate>>,
}

impl RateSet {
    /// The rate of counter `name` now at `value` (see [`Rate::per_second`]).
    pub fn per_second(&self, name: &'static str, value: u64) -> f64 {
        self.with(name, |r| r.per_second(value))
    }

    /// The rate of gauge `name` now at `value` (see [`Rate::gauge_per_second`]).
    pub fn gauge_per_second(&self, name: &'static str, value: u64) -> f64 {
        self.with(name, |r| r.gauge_per_second(value))
    }

    fn with(&self, name: &'static str, f: impl FnOnce(&Rate) -> f64) -> f64 {
        // Nothing panics while the map is locked: a poisoned lock still guards
        // consistent data.
        let mut map = self.rates.lock().unwrap_or_else(|e| e.into_inner());
        f(map.entry(name).or_default())
    }

    /// `name` and `name_details` for counter `name` at `value`, into `out`.
    pub fn counter_into(
        &self,
        out: &mut serde_json::Map<String, serde_json::Value>,
        name: &'static str,
        value: u64,
    ) {
        out.insert(name.to_owned(), value.into());
        out.insert(
            format!("{name}_details"),
            details(self.per_second(name, value)),
        );
    }

    /// `name` and `name_details` for gauge `name` at `value`, into `out`.
    pub fn gauge_into(
        &self,
        out: &mut serde_json::Map<String, serde_json::Value>,
        name: &'static str,
        value: u64,
    ) {
        out.insert(name.to_owned(), value.into());
        out.insert(
            format!("{name}_details"),
            details(self.gauge_per_second(name, value)),
        );
    }
}

impl std::fmt::Debug for RateSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RateSet")
    }
}

/// `{"rate": r}`, the shape of every `*_details` field.
pub fn details(rate: f64) -> serde_json::Value {
    // Two decimals, as the management UI shows them.
    serde_json::json!({ "rate": (rate * 100.0).round() / 100.0 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_is_the_change_per_second_between_samples_an_interval_apart() {
        let r = Rate::default();
        let t0 = Instant::now();
        assert_eq!(r.per_second_at(100, t0), 0.0);
        // Within the interval the samples stay: still no rate.
        assert_eq!(r.per_second_at(150, t0 + Duration::from_secs(1)), 0.0);
        assert_eq!(r.per_second_at(600, t0 + Duration::from_secs(5)), 100.0);
        // Until the next interval, reads report the same rate.
        assert_eq!(r.per_second_at(700, t0 + Duration::from_secs(7)), 100.0);
        assert_eq!(r.per_second_at(600, t0 + Duration::from_secs(10)), 0.0);
    }

    #[test]
    fn a_gauge_rate_can_fall() {
        let r = Rate::default();
        let t0 = Instant::now();
        assert_eq!(r.sampled(100, t0), None);
        let (last, previous, secs) = r
            .sampled(50, t0 + Duration::from_secs(5))
            .expect("two samples");
        assert_eq!((last as f64 - previous as f64) / secs, -10.0);
    }
}
