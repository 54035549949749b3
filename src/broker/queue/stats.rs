//! A queue's message statistics for the management API (`message_stats`): plain
//! counters bumped with relaxed atomic adds where messages enter and leave the queue,
//! never a lock or an allocation on the message path. Rates come from sampling the
//! counters when someone reads them ([`crate::metrics::rates::Rate`]).

use crate::metrics::counters::Deliveries;
use crate::metrics::rates::{Rate, RateSet, details};
use serde_json::{Map, Value};
use std::sync::atomic::{AtomicU64, Ordering};

/// The counters of one queue. (Not padded apart by writer: with 100,000 queues the
/// padding cost 10% more memory, for no measured gain with one runtime worker.)
#[derive(Default)]
pub struct QueueStats {
    /// Messages the queue took.
    pub publish: AtomicU64,
    /// When the queue was made (ms since the epoch).
    pub created: u64,
    /// Deliveries by basic.consume and basic.get, and redeliveries.
    pub deliveries: Deliveries,
    /// Acknowledged deliveries.
    pub ack: AtomicU64,
    /// The rates, sampled at reads.
    rates: RateSet,
}

#[inline]
fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

fn load(c: &AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}

impl QueueStats {
    pub fn new() -> QueueStats {
        QueueStats {
            created: crate::model::now_ms(),
            ..QueueStats::default()
        }
    }

    /// A message entered the queue; the caller holds the queue's lock (the
    /// counter's writers take turns under it, so no locked add is needed).
    #[inline]
    pub fn published_locked(&self) {
        crate::metrics::tally::bump(&self.publish, 1);
    }

    #[inline]
    pub fn acked(&self, n: u64) {
        self.ack.fetch_add(n, Ordering::Relaxed);
    }

    /// `message_stats` as RabbitMQ shows it: each counter with its `_details{rate}`,
    /// and `deliver_get`, the sum of the four ways out.
    pub fn message_stats(&self) -> Value {
        let d = &self.deliveries;
        let mut out = Map::new();
        for (name, value) in [
            ("publish", load(&self.publish)),
            ("deliver", load(&d.consume_manual_ack)),
            ("deliver_no_ack", load(&d.consume_auto_ack)),
            ("get", load(&d.get_manual_ack)),
            ("get_no_ack", load(&d.get_auto_ack)),
            ("deliver_get", d.total()),
            ("redeliver", load(&d.redelivered)),
            ("ack", load(&self.ack)),
        ] {
            self.rates.counter_into(&mut out, name, value);
        }
        Value::Object(out)
    }

    /// The `*_details` of the message counts: the change per second of each gauge,
    /// negative while the queue drains, as RabbitMQ reports them.
    pub fn count_details(&self, messages: u64, ready: u64, unacked: u64) -> [Value; 3] {
        let r = &self.rates;
        [
            details(r.gauge_per_second("messages", messages)),
            details(r.gauge_per_second("messages_ready", ready)),
            details(r.gauge_per_second("messages_unacknowledged", unacked)),
        ]
    }
}

/// An exchange's counters: messages published to it, and those it routed to at
/// least one queue.
#[derive(Default)]
pub struct ExchangeStats {
    pub publish_in: AtomicU64,
    pub publish_out: AtomicU64,
    rates: [Rate; 2],
}

impl ExchangeStats {
    /// A message reached the exchange; `routed`: a queue took it from there.
    #[inline]
    pub fn routed(&self, routed: bool) {
        bump(&self.publish_in);
        if routed {
            bump(&self.publish_out);
        }
    }

    /// `message_stats` as RabbitMQ shows it for an exchange; None before any message.
    pub fn message_stats(&self) -> Option<Value> {
        let (i, o) = (load(&self.publish_in), load(&self.publish_out));
        if i == 0 {
            return None;
        }
        Some(serde_json::json!({
            "publish_in": i,
            "publish_in_details": details(self.rates[0].per_second(i)),
            "publish_out": o,
            "publish_out_details": details(self.rates[1].per_second(o)),
        }))
    }
}

/// What the management API shows of a queue's state, read under its lock once.
pub struct QueueInfo {
    pub ready: u64,
    pub ready_bytes: u64,
    pub consumers: u32,
    /// Consumers with room for a delivery now.
    pub consumers_with_room: u32,
    /// The tag of the exclusive consumer, if there is one.
    pub exclusive_consumer_tag: Option<String>,
    /// When the queue was last used, or made (ms since the epoch).
    pub last_used: u64,
    pub policy: Option<std::sync::Arc<crate::broker::policy::Applied>>,
}

impl super::Queue {
    /// The queue's state for the management API.
    pub fn info(&self) -> QueueInfo {
        let state = self.lock();
        if let Some(s) = self.stream() {
            // A stream's messages stay in it when delivered: all count as ready.
            let consumers = s.consumer_count() as u32;
            return QueueInfo {
                ready: s.message_count(),
                ready_bytes: 0,
                consumers,
                consumers_with_room: consumers,
                exclusive_consumer_tag: None,
                last_used: state.last_used.max(self.stats.created),
                policy: state.policy.clone(),
            };
        }
        QueueInfo {
            ready: state.ready.len as u64,
            ready_bytes: state.ready.bytes,
            consumers: state.consumers.len() as u32,
            consumers_with_room: state.consumers.iter().filter(|c| c.has_room()).count() as u32,
            exclusive_consumer_tag: state
                .consumers
                .iter()
                .find(|c| c.exclusive)
                .map(|c| c.tag.as_str().to_owned()),
            last_used: state.last_used.max(self.stats.created),
            policy: state.policy.clone(),
        }
    }
}
