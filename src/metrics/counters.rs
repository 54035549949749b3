//! The broker's event counters: one relaxed atomic per counter, so that counting a
//! publish or a delivery costs an uncontended `fetch_add` and takes no lock.

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
        inc(match (get, no_ack) {
            (false, false) => &self.consume_manual_ack,
            (false, true) => &self.consume_auto_ack,
            (true, false) => &self.get_manual_ack,
            (true, true) => &self.get_auto_ack,
        });
        if redelivered {
            inc(&self.redelivered);
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
/// rabbit_core_metrics keep them for AMQP 0-9-1.
#[derive(Default)]
pub struct Counters {
    pub channels_opened: AtomicU64,
    pub channels_closed: AtomicU64,
    pub queues_declared: AtomicU64,
    pub queues_created: AtomicU64,
    pub queues_deleted: AtomicU64,
    pub received: AtomicU64,
    pub received_confirm: AtomicU64,
    pub routed: AtomicU64,
    /// Messages enqueued, once per queue a message was routed to.
    pub queue_published: AtomicU64,
    pub unroutable_dropped: AtomicU64,
    pub unroutable_returned: AtomicU64,
    pub confirmed: AtomicU64,
    pub deliveries: Deliveries,
    pub get_empty: AtomicU64,
    pub acknowledged: AtomicU64,
    /// Channels that have published (RabbitMQ's `rabbitmq_global_publishers`).
    pub publishers: AtomicI64,
    /// Received message sizes: one count per bucket of [`SIZE_BUCKETS`] and `+Inf`.
    size_buckets: [AtomicU64; 9],
    size_sum: AtomicU64,
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
    /// A publish arrived with a body of `size` bytes.
    #[inline]
    pub fn message_received(&self, size: usize, confirm: bool) {
        inc(&self.received);
        if confirm {
            inc(&self.received_confirm);
        }
        let size = size as u64;
        let bucket = SIZE_BUCKETS
            .iter()
            .position(|&bound| size <= bound)
            .unwrap_or(SIZE_BUCKETS.len());
        inc(&self.size_buckets[bucket]);
        add(&self.size_sum, size);
    }

    /// Every delivery, whichever way it went.
    pub fn delivered(&self) -> u64 {
        self.deliveries.total()
    }

    /// The message size histogram: cumulative counts per bucket (the last one is
    /// `+Inf`, the total count), and the sum of the sizes.
    pub fn size_histogram(&self) -> ([u64; 9], u64) {
        let mut cumulative = [0u64; 9];
        let mut running = 0;
        for (slot, bucket) in cumulative.iter_mut().zip(&self.size_buckets) {
            running += get(bucket);
            *slot = running;
        }
        (cumulative, get(&self.size_sum))
    }

    /// The management API's `message_stats` for the whole broker, by RabbitMQ's
    /// names.
    pub fn message_stats(&self) -> [(&'static str, u64); 12] {
        [
            ("ack", get(&self.acknowledged)),
            ("confirm", get(&self.confirmed)),
            ("deliver", get(&self.deliveries.consume_manual_ack)),
            ("deliver_get", self.delivered()),
            ("deliver_no_ack", get(&self.deliveries.consume_auto_ack)),
            ("drop_unroutable", get(&self.unroutable_dropped)),
            ("get", get(&self.deliveries.get_manual_ack)),
            ("get_empty", get(&self.get_empty)),
            ("get_no_ack", get(&self.deliveries.get_auto_ack)),
            ("publish", get(&self.received)),
            ("redeliver", get(&self.deliveries.redelivered)),
            ("return_unroutable", get(&self.unroutable_returned)),
        ]
    }

    /// Publishing channels now open.
    pub fn publishers(&self) -> u64 {
        self.publishers.load(Ordering::Relaxed).max(0) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_fall_in_rabbitmq_buckets() {
        let c = Counters::default();
        for size in [0, 100, 101, 200_000_000] {
            c.message_received(size, false);
        }
        let (buckets, sum) = c.size_histogram();
        assert_eq!(buckets, [2, 3, 3, 3, 3, 3, 3, 3, 4]);
        assert_eq!(sum, 200_000_201);
    }
}
