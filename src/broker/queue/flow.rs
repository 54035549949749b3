//! Back-pressure between queues and consumer connections: prefetch credit
//! (basic.qos) and the backlog of deliveries a connection has not written yet.

use super::Queue;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

/// A prefetch window: how many unacknowledged deliveries are allowed (0: unlimited).
#[derive(Debug, Default)]
pub struct Credit {
    limit: AtomicU32,
    used: AtomicU32,
}

impl Credit {
    pub fn new(limit: u32) -> Credit {
        Credit {
            limit: AtomicU32::new(limit),
            used: AtomicU32::new(0),
        }
    }

    pub fn set_limit(&self, limit: u32) {
        self.limit.store(limit, Ordering::Relaxed);
    }

    /// The limit (0: none).
    pub fn limit(&self) -> u32 {
        self.limit.load(Ordering::Relaxed)
    }

    /// Whether a limit is set.
    pub fn limited(&self) -> bool {
        self.limit.load(Ordering::Relaxed) != 0
    }

    pub(super) fn has_room(&self) -> bool {
        let limit = self.limit.load(Ordering::Relaxed);
        limit == 0 || self.used.load(Ordering::Acquire) < limit
    }

    pub(super) fn try_acquire(&self) -> bool {
        let limit = self.limit.load(Ordering::Relaxed);
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                (limit == 0 || used < limit).then_some(used + 1)
            })
            .is_ok()
    }

    pub(super) fn release(&self) {
        let _ = self
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| u.checked_sub(1));
    }
}

/// Deliveries a consumer connection has been handed but not yet written.
///
/// Two limits apply. When a publisher fills a queue faster than its consumers'
/// connections can write, the publisher stops reading until they catch up (as
/// RabbitMQ's credit flow does): [`Flow::HIGH`] and [`Flow::LOW`]. And a connection
/// that does not drain what it was handed (its peer stopped reading) is handed
/// nothing more once [`Flow::MAX_PENDING`] deliveries or [`Flow::MAX_PENDING_BYTES`]
/// wait for it: the messages stay in their queues, which resume when it drains.
/// This bounds what a stalled consumer costs, no-ack and unlimited-prefetch
/// consumers included.
/// Bits of [`Flow::pending`] that count deliveries: far above what a connection is
/// ever handed ([`Flow::MAX_PENDING`] stops dispatch), leaving 40 bits of bytes.
const COUNT_BITS: u32 = 24;

/// One delivery of `bytes`, as added to or taken from [`Flow::pending`].
#[inline]
fn pack(bytes: usize) -> u64 {
    ((bytes as u64) << COUNT_BITS) | 1
}

#[inline]
fn count(word: u64) -> usize {
    (word & ((1 << COUNT_BITS) - 1)) as usize
}

#[inline]
fn bytes(word: u64) -> usize {
    (word >> COUNT_BITS) as usize
}

#[derive(Debug, Default)]
pub struct Flow {
    /// Deliveries handed but not written (low [`COUNT_BITS`] bits) and their body
    /// bytes (the bits above), in one word: the queue's thread adds and the
    /// connection's subtracts with one atomic operation each, not two.
    pending: AtomicU64,
    drained: tokio::sync::Notify,
    /// Queues that stopped dispatching because this connection was full.
    stalled: Mutex<Vec<Weak<Queue>>>,
    has_stalled: AtomicBool,
}

impl Flow {
    /// Pending deliveries above which publishers to the queue are held back.
    pub const HIGH: usize = 2048;
    /// Pending deliveries at which held-back publishers resume.
    pub const LOW: usize = 512;
    /// Pending deliveries at which queues stop handing this connection more.
    pub const MAX_PENDING: usize = 4096;
    /// Pending body bytes at which queues stop handing this connection more (a
    /// connection with nothing pending always takes one delivery, however large).
    pub const MAX_PENDING_BYTES: usize = 16 * 1024 * 1024;

    /// Counts a delivery handed to the connection; true when the connection is
    /// congested (publishers feeding it should wait).
    pub(super) fn added(&self, bytes: usize) -> bool {
        let was = self.pending.fetch_add(pack(bytes), Ordering::Relaxed);
        count(was) + 1 > Self::HIGH
    }

    /// One delivery of `bytes` was written (or dropped).
    pub fn done(&self, bytes: usize) {
        let was = self.pending.fetch_sub(pack(bytes), Ordering::Relaxed);
        if count(was) == Self::LOW + 1 {
            self.drained.notify_waiters();
        }
    }

    pub fn congested(&self) -> bool {
        count(self.pending.load(Ordering::Relaxed)) > Self::LOW
    }

    /// Whether queues must stop handing this connection deliveries.
    pub fn full(&self) -> bool {
        let word = self.pending.load(Ordering::Relaxed);
        let pending = count(word);
        pending >= Self::MAX_PENDING || (pending > 0 && bytes(word) >= Self::MAX_PENDING_BYTES)
    }

    /// Whether a connection that was full has drained enough for its stalled queues
    /// to resume (half the limits, so that they do not resume one message at a time).
    pub(super) fn resumable(&self) -> bool {
        let word = self.pending.load(Ordering::Relaxed);
        count(word) <= Self::MAX_PENDING / 2 && bytes(word) <= Self::MAX_PENDING_BYTES / 2
    }

    /// Remembers a queue that stopped dispatching because this connection is full.
    pub(super) fn stall(&self, queue: &Arc<Queue>) {
        let mut stalled = self.stalled.lock().unwrap_or_else(|e| e.into_inner());
        let weak = Arc::downgrade(queue);
        if !stalled.iter().any(|q| q.ptr_eq(&weak)) {
            stalled.push(weak);
        }
        self.has_stalled.store(true, Ordering::Release);
    }

    /// Called by the connection after it took deliveries: once it has drained far
    /// enough, the queues that stopped on it dispatch again.
    pub fn resume_stalled(&self) {
        if !self.has_stalled.load(Ordering::Acquire) || !self.resumable() {
            return;
        }
        let queues = {
            let mut stalled = self.stalled.lock().unwrap_or_else(|e| e.into_inner());
            self.has_stalled.store(false, Ordering::Release);
            std::mem::take(&mut *stalled)
        };
        for q in queues {
            if let Some(q) = q.upgrade() {
                q.dispatch();
            }
        }
    }

    /// Waits until the pending deliveries are down to [`Flow::LOW`], or at most
    /// `limit` (a safety net: a wake-up is never needed for correctness).
    pub async fn wait_drained(&self, limit: Duration) {
        let notified = self.drained.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if !self.congested() {
            return;
        }
        let _ = tokio::time::timeout(limit, notified).await;
    }
}

#[cfg(test)]
mod tests {
    use super::Flow;

    #[test]
    fn count_and_bytes_share_a_word_without_mixing() {
        let flow = Flow::default();
        // One delivery larger than the byte limit is still taken when nothing is
        // pending, and then the connection is full by bytes, not by count.
        assert!(!flow.full());
        flow.added(Flow::MAX_PENDING_BYTES + 5);
        assert!(flow.full());
        assert!(!flow.congested());
        flow.done(Flow::MAX_PENDING_BYTES + 5);
        assert!(!flow.full());
        // By count: many small deliveries.
        for _ in 0..Flow::MAX_PENDING {
            flow.added(100);
        }
        assert!(flow.full() && flow.congested() && !flow.resumable());
        for _ in 0..Flow::MAX_PENDING / 2 {
            flow.done(100);
        }
        assert!(flow.resumable() && !flow.full());
    }
}
