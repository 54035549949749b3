//! The broker-wide counts of what happens per message (received, routed,
//! delivered, acknowledged, confirmed...), kept per connection.
//!
//! Each connection counts into a [`Tally`] of its own, which only its task writes: a
//! count is a relaxed load and store, not an atomic read-modify-write, and
//! connections do not write each other's counters. Readers (the metrics endpoints,
//! the management overview) sum the live tallies and what closed connections left
//! ([`Counters::totals`](super::Counters::totals)). Counting this way saves six to
//! nine locked adds per message on counters every publishing and consuming thread
//! shared.

use super::counters::{Deliveries, SIZE_BUCKETS, get};
use std::collections::HashMap;
use std::ops::Deref;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// One writer's counts. Every method that counts takes `&self` but must only be
/// called by the tally's one writer: the connection task that owns it, or a caller
/// holding the lock of [`Tallies`] for the shared one.
#[derive(Debug, Default)]
pub struct Tally {
    pub received: AtomicU64,
    pub received_confirm: AtomicU64,
    pub routed: AtomicU64,
    /// Messages enqueued, once per queue a message was routed to.
    pub queue_published: AtomicU64,
    pub unroutable_dropped: AtomicU64,
    pub unroutable_returned: AtomicU64,
    pub confirmed: AtomicU64,
    /// Received message sizes: one count per bucket of [`SIZE_BUCKETS`] and `+Inf`.
    size_buckets: [AtomicU64; 9],
    size_sum: AtomicU64,
    pub deliveries: Deliveries,
    pub get_empty: AtomicU64,
    pub acknowledged: AtomicU64,
}

/// Adds `n` to a counter that has a single writer (the caller): no locked
/// instruction, and readers on other threads still see whole values.
#[inline]
pub fn bump(counter: &AtomicU64, n: u64) {
    counter.store(
        counter.load(Ordering::Relaxed).wrapping_add(n),
        Ordering::Relaxed,
    );
}

impl Tally {
    /// A publish arrived with a body of `size` bytes.
    #[inline]
    pub fn message_received(&self, size: usize, confirm: bool) {
        bump(&self.received, 1);
        if confirm {
            bump(&self.received_confirm, 1);
        }
        let size = size as u64;
        let bucket = SIZE_BUCKETS
            .iter()
            .position(|&bound| size <= bound)
            .unwrap_or(SIZE_BUCKETS.len());
        bump(&self.size_buckets[bucket], 1);
        bump(&self.size_sum, size);
    }

    /// Every counter, in one fixed order (for summing tallies).
    fn each(&self) -> impl Iterator<Item = &AtomicU64> {
        let d = &self.deliveries;
        [
            &self.received,
            &self.received_confirm,
            &self.routed,
            &self.queue_published,
            &self.unroutable_dropped,
            &self.unroutable_returned,
            &self.confirmed,
            &self.size_sum,
            &d.consume_manual_ack,
            &d.consume_auto_ack,
            &d.get_manual_ack,
            &d.get_auto_ack,
            &d.redelivered,
            &self.get_empty,
            &self.acknowledged,
        ]
        .into_iter()
        .chain(self.size_buckets.iter())
    }

    /// Adds `other`'s counts to this tally's (its single writer calling).
    fn absorb(&self, other: &Tally) {
        for (mine, theirs) in self.each().zip(other.each()) {
            bump(mine, get(theirs));
        }
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

    /// The management API's `message_stats`, by RabbitMQ's names.
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
}

/// The live tallies and the counts of those that closed.
#[derive(Default)]
pub struct Tallies {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// What closed connections counted, and what was counted outside connections
    /// (the management API's publish and get); written under the lock only.
    settled: Tally,
    live: HashMap<u64, Arc<Tally>>,
    next_id: u64,
}

impl Tallies {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A poisoned lock only means a panic elsewhere while holding it; the counts
        // are still whole numbers.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A new tally for one writer, counted until the handle is dropped and then
    /// folded into the settled counts.
    pub fn open(self: &Arc<Self>) -> TallyHandle {
        let tally = Arc::new(Tally::default());
        let mut inner = self.lock();
        let id = inner.next_id;
        inner.next_id += 1;
        inner.live.insert(id, tally.clone());
        TallyHandle {
            tally,
            id,
            owner: self.clone(),
        }
    }

    /// Counts outside any connection, on the settled tally.
    pub fn shared<R>(&self, count: impl FnOnce(&Tally) -> R) -> R {
        count(&self.lock().settled)
    }

    /// The sum of every tally, open and closed.
    pub fn totals(&self) -> Tally {
        let inner = self.lock();
        let sum = Tally::default();
        sum.absorb(&inner.settled);
        for t in inner.live.values() {
            sum.absorb(t);
        }
        sum
    }
}

/// A writer's tally; its counts stay in the totals when it is dropped.
pub struct TallyHandle {
    tally: Arc<Tally>,
    id: u64,
    owner: Arc<Tallies>,
}

impl Deref for TallyHandle {
    type Target = Tally;
    fn deref(&self) -> &Tally {
        &self.tally
    }
}

impl Drop for TallyHandle {
    fn drop(&mut self) {
        let mut inner = self.owner.lock();
        inner.live.remove(&self.id);
        inner.settled.absorb(&self.tally);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_fall_in_rabbitmq_buckets() {
        let t = Tally::default();
        for size in [0, 100, 101, 200_000_000] {
            t.message_received(size, false);
        }
        let (buckets, sum) = t.size_histogram();
        assert_eq!(buckets, [2, 3, 3, 3, 3, 3, 3, 3, 4]);
        assert_eq!(sum, 200_000_201);
    }

    #[test]
    fn totals_keep_the_counts_of_closed_tallies() {
        let tallies = Arc::new(Tallies::default());
        let a = tallies.open();
        let b = tallies.open();
        a.message_received(10, true);
        b.message_received(2_000, false);
        bump(&b.deliveries.consume_auto_ack, 3);
        tallies.shared(|t| bump(&t.confirmed, 1));
        drop(b);
        let c = tallies.open();
        bump(&c.acknowledged, 2);
        let t = tallies.totals();
        assert_eq!(get(&t.received), 2);
        assert_eq!(get(&t.received_confirm), 1);
        assert_eq!(t.size_histogram(), ([1, 1, 2, 2, 2, 2, 2, 2, 2], 2_010));
        assert_eq!(t.delivered(), 3);
        assert_eq!(get(&t.confirmed), 1);
        assert_eq!(get(&t.acknowledged), 2);
        drop((a, c));
        assert_eq!(tallies.totals().message_stats(), t.message_stats());
    }
}
