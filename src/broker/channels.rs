//! The open channels of each connection, as the management API and the metrics list
//! them. A channel's own task keeps its figures in a [`ChannelStats`] of relaxed
//! atomics, stored where they change, so readers take no lock on the message path;
//! the list of a connection's channels changes only when a channel opens or closes.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// One channel's live figures.
#[derive(Debug, Default)]
pub struct ChannelStats {
    pub number: u16,
    prefetch_count: AtomicU32,
    global_prefetch_count: AtomicU32,
    confirm: AtomicBool,
    transactional: AtomicBool,
    unacknowledged: AtomicU64,
    unconfirmed: AtomicU64,
    uncommitted: AtomicU64,
    acks_uncommitted: AtomicU64,
    consumers: AtomicU32,
    /// Messages published on the channel.
    pub published: AtomicU64,
    /// Publishes confirmed to the client.
    pub confirmed: AtomicU64,
    /// Deliveries by basic.consume and basic.get, and redeliveries.
    pub deliveries: crate::metrics::counters::Deliveries,
    pub get_empty: AtomicU64,
    pub acknowledged: AtomicU64,
    pub returned: AtomicU64,
    pub dropped: AtomicU64,
    /// The rates of the counts, as the management API last sampled them.
    pub rates: crate::metrics::rates::RateSet,
}

/// A channel's figures at one read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChannelSnapshot {
    pub number: u16,
    pub prefetch_count: u32,
    pub global_prefetch_count: u32,
    pub confirm: bool,
    pub transactional: bool,
    pub messages_unacknowledged: u64,
    pub messages_unconfirmed: u64,
    pub messages_uncommitted: u64,
    pub acks_uncommitted: u64,
    pub consumer_count: u32,
    pub published: u64,
    pub confirmed: u64,
    pub delivered: u64,
    pub delivered_no_ack: u64,
    pub got: u64,
    pub got_no_ack: u64,
    pub get_empty: u64,
    pub redelivered: u64,
    pub acknowledged: u64,
    pub returned: u64,
    pub dropped: u64,
}

impl ChannelSnapshot {
    /// The management API's `message_stats` of a channel, by RabbitMQ's names.
    pub fn message_stats(&self) -> [(&'static str, u64); 12] {
        [
            ("ack", self.acknowledged),
            ("confirm", self.confirmed),
            ("deliver", self.delivered),
            (
                "deliver_get",
                self.delivered + self.delivered_no_ack + self.got + self.got_no_ack,
            ),
            ("deliver_no_ack", self.delivered_no_ack),
            ("drop_unroutable", self.dropped),
            ("get", self.got),
            ("get_empty", self.get_empty),
            ("get_no_ack", self.got_no_ack),
            ("publish", self.published),
            ("redeliver", self.redelivered),
            ("return_unroutable", self.returned),
        ]
    }
}

/// What a channel's task reports about its state (everything but the event counts).
#[derive(Debug, Clone, Copy, Default)]
pub struct ChannelState {
    pub prefetch_count: u32,
    pub global_prefetch_count: u32,
    pub confirm: bool,
    pub transactional: bool,
    pub messages_unacknowledged: u64,
    pub messages_unconfirmed: u64,
    pub messages_uncommitted: u64,
    pub acks_uncommitted: u64,
    pub consumer_count: u32,
}

#[inline]
fn load(a: &AtomicU64) -> u64 {
    a.load(Ordering::Relaxed)
}

impl ChannelStats {
    pub fn new(number: u16) -> ChannelStats {
        ChannelStats {
            number,
            ..ChannelStats::default()
        }
    }

    /// Stores the channel's state; called by its own task after it changed.
    #[inline]
    pub fn store(&self, s: &ChannelState) {
        let r = Ordering::Relaxed;
        self.prefetch_count.store(s.prefetch_count, r);
        self.global_prefetch_count.store(s.global_prefetch_count, r);
        self.confirm.store(s.confirm, r);
        self.transactional.store(s.transactional, r);
        self.unacknowledged.store(s.messages_unacknowledged, r);
        self.unconfirmed.store(s.messages_unconfirmed, r);
        self.uncommitted.store(s.messages_uncommitted, r);
        self.acks_uncommitted.store(s.acks_uncommitted, r);
        self.consumers.store(s.consumer_count, r);
    }

    /// Adds one to a counter of this channel.
    #[inline]
    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> ChannelSnapshot {
        let r = Ordering::Relaxed;
        ChannelSnapshot {
            number: self.number,
            prefetch_count: self.prefetch_count.load(r),
            global_prefetch_count: self.global_prefetch_count.load(r),
            confirm: self.confirm.load(r),
            transactional: self.transactional.load(r),
            messages_unacknowledged: load(&self.unacknowledged),
            messages_unconfirmed: load(&self.unconfirmed),
            messages_uncommitted: load(&self.uncommitted),
            acks_uncommitted: load(&self.acks_uncommitted),
            consumer_count: self.consumers.load(r),
            published: load(&self.published),
            confirmed: load(&self.confirmed),
            delivered: load(&self.deliveries.consume_manual_ack),
            delivered_no_ack: load(&self.deliveries.consume_auto_ack),
            got: load(&self.deliveries.get_manual_ack),
            got_no_ack: load(&self.deliveries.get_auto_ack),
            get_empty: load(&self.get_empty),
            redelivered: load(&self.deliveries.redelivered),
            acknowledged: load(&self.acknowledged),
            returned: load(&self.returned),
            dropped: load(&self.dropped),
        }
    }
}

/// The open channels of one connection, by number.
#[derive(Debug, Default)]
pub struct ChannelTable {
    map: Mutex<BTreeMap<u16, Arc<ChannelStats>>>,
}

impl ChannelTable {
    /// Registers channel `number` as open; it stays listed until the returned
    /// [`ChannelSlot`] is dropped.
    pub fn open(self: &Arc<Self>, number: u16) -> ChannelSlot {
        let stats = Arc::new(ChannelStats::new(number));
        self.lock().insert(number, stats.clone());
        ChannelSlot {
            stats,
            table: self.clone(),
        }
    }

    /// The open channels' figures, by number.
    pub fn snapshots(&self) -> Vec<ChannelSnapshot> {
        self.lock().values().map(|s| s.snapshot()).collect()
    }

    pub fn get(&self, number: u16) -> Option<ChannelSnapshot> {
        self.lock().get(&number).map(|s| s.snapshot())
    }

    /// Channel `number`'s live figures, if open.
    pub fn stats(&self, number: u16) -> Option<Arc<ChannelStats>> {
        self.lock().get(&number).cloned()
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<u16, Arc<ChannelStats>>> {
        // Single inserts and removes only: a poisoned lock still guards consistent data.
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A channel's place in its connection's table: removed when dropped, as the channel
/// closes.
#[derive(Debug)]
pub struct ChannelSlot {
    pub stats: Arc<ChannelStats>,
    table: Arc<ChannelTable>,
}

impl Drop for ChannelSlot {
    fn drop(&mut self) {
        let mut map = self.table.lock();
        // A channel number reused at once has replaced this entry: keep that one.
        if map
            .get(&self.stats.number)
            .is_some_and(|s| Arc::ptr_eq(s, &self.stats))
        {
            map.remove(&self.stats.number);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_are_listed_while_their_slot_lives() {
        let table = Arc::new(ChannelTable::default());
        let one = table.open(1);
        let two = table.open(2);
        one.stats.store(&ChannelState {
            prefetch_count: 10,
            confirm: true,
            messages_unacknowledged: 3,
            consumer_count: 1,
            ..ChannelState::default()
        });
        ChannelStats::inc(&one.stats.published);
        let listed = table.snapshots();
        assert_eq!(listed.len(), 2);
        assert_eq!(listed[0].prefetch_count, 10);
        assert!(listed[0].confirm);
        assert_eq!(listed[0].messages_unacknowledged, 3);
        assert_eq!(listed[0].published, 1);
        drop(two);
        assert_eq!(table.len(), 1);
        // A number reopened before the old slot dropped keeps the new entry.
        let again = table.open(1);
        drop(one);
        assert_eq!(table.get(1).map(|s| s.number), Some(1));
        drop(again);
        assert!(table.is_empty());
    }
}
