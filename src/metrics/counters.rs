//! The broker's event counters: one relaxed atomic per counter, so that counting a
//! publish or a delivery costs an uncontended `fetch_add` and takes no lock.

use super::tally::{Tallies, Tally, TallyHandle};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// Upper bounds of RabbitMQ 4.x's `rabbitmq_message_size_bytes` histogram buckets
/// (rabbit_msg_size_metrics); the last bucket is `+Inf`.
pub const SIZE_BUCKETS: [u64; 8] = [
    100,
    1_000,
    10_000,
    100_000,
    1_000_000,
    10_000_000,
    50_000_000,
    100_000_000,
];

/// Deliveries, split the four ways RabbitMQ counts them (basic.consume or basic.get,
/// manual or automatic acknowledgement), and redeliveries: the broker, each channel
/// and each queue keep one set, bumped together at each delivery.
#[derive(Debug, Default)]
pub struct Deliveries {
    pub consume_manual_ack: AtomicU64,
    pub consume_auto_ack: AtomicU64,
    pub get_manual_ack: AtomicU64,
    pub get_auto_ack: AtomicU64,
    pub redelivered: AtomicU64,
}

impl Deliveries {
    /// A message was written to a client.
    #[inline]
    pub fn count(&self, get: bool, no_ack: bool, redelivered: bool) {
        inc(self.way(get, no_ack));
        if redelivered {
            inc(&self.redelivered);
        }
    }

    /// As [`Deliveries::count`], by the set's single writer (a connection's own
    /// tally or channel): see [`bump`](super::tally::bump).
    #[inline]
    pub fn count_owned(&self, get: bool, no_ack: bool, redelivered: bool) {
        super::tally::bump(self.way(get, no_ack), 1);
        if redelivered {
            super::tally::bump(&self.redelivered, 1);
        }
    }

    #[inline]
    fn way(&self, get: bool, no_ack: bool) -> &AtomicU64 {
        match (get, no_ack) {
            (false, false) => &self.consume_manual_ack,
            (false, true) => &self.consume_auto_ack,
            (true, false) => &self.get_manual_ack,
            (true, true) => &self.get_auto_ack,
        }
    }

    /// Every delivery, whichever way it went.
    pub fn total(&self) -> u64 {
        get(&self.consume_manual_ack)
            + get(&self.consume_auto_ack)
            + get(&self.get_manual_ack)
            + get(&self.get_auto_ack)
    }
}

/// Counts since the broker started, as RabbitMQ's rabbit_global_counters and
/// rabbit_core_metrics keep them for AMQP 0-9-1. Those counted per message are kept
/// per connection ([`Tallies`]); the rest are relaxed atomics bumped where they
/// happen.
#[derive(Default)]
pub struct Counters {
    pub tallies: Arc<Tallies>,
    pub channels_opened: AtomicU64,
    pub channels_closed: AtomicU64,
    pub queues_declared: AtomicU64,
    pub queues_created: AtomicU64,
    pub queues_deleted: AtomicU64,
    /// Channels that have published (RabbitMQ's `rabbitmq_global_publishers`).
    pub publishers: AtomicI64,
    /// The rates the management API's overview last sampled.
    pub rates: super::rates::RateSet,
}

/// Adds `n` to a counter.
#[inline]
pub fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

/// Adds one to a counter.
#[inline]
pub fn inc(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// Reads a counter.
#[inline]
pub fn get(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

impl Counters {
    /// The per-message counts, summed over every connection that ever counted.
    pub fn totals(&self) -> Tally {
        self.tallies.totals()
    }

    /// A connection's own tally of per-message counts.
    pub fn tally(&self) -> TallyHandle {
        self.tallies.open()
    }

    /// Publishing channels now open.
    pub fn publishers(&self) -> u64 {
        self.publishers.load(Ordering::Relaxed).max(0) as u64
    }
}
