//! Rates for the management API (`publish_details: {rate}`), computed from the event
//! counters when someone asks, never on the message path: a [`Rate`] keeps the two
//! most recent samples of a counter, taken at reads at least [`INTERVAL`] apart (the
//! management plugin's collection interval), and reports the change per second
//! between them.

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

    fn per_second_at(&self, value: u64, at: Instant) -> f64 {
        // Only this function touches the samples and it cannot panic while holding
        // the lock: a poisoned lock still guards consistent data.
        let mut samples = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        let now = Sample { at, value };
        let (last, previous) = match *samples {
            None => {
                *samples = Some((now, None));
                return 0.0;
            }
            Some((last, _)) if at.duration_since(last.at) >= INTERVAL => {
                *samples = Some((now, Some(last)));
                (now, Some(last))
            }
            Some(pair) => pair,
        };
        match previous {
            Some(p) => {
                let secs = last.at.duration_since(p.at).as_secs_f64();
                if secs > 0.0 {
                    // A counter only grows; a reset (it never happens) reads as 0.
                    last.value.saturating_sub(p.value) as f64 / secs
                } else {
                    0.0
                }
            }
            None => 0.0,
        }
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
}
