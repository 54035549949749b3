//! Queues and their consumers.
//!
//! A queue's state sits behind its own mutex, held only for short, non-async critical
//! sections; there is no lock shared between queues. Whoever changes the state (a
//! publisher, an ack, a new consumer) runs the dispatch loop inline, which hands ready
//! messages to consumers with free credit, round-robin within the highest consumer
//! priority. A delivery is sent to the consumer's connection as a [`ConsumerEvent`];
//! the connection assigns the delivery tag and writes the frames, so tag order always
//! matches wire order.

use crate::broker::{BrokerError, BrokerResult, Message};
use crate::store::Store;
use amq_protocol::types::{FieldTable, ShortString};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::mpsc::UnboundedSender;

/// A message sitting in a queue (ready, or delivered and awaiting its ack).
#[derive(Debug, Clone)]
pub struct QueueEntry {
    /// Position in the queue; requeued messages go back to their original position.
    pub seq: u64,
    pub msg: Arc<Message>,
    pub redelivered: bool,
}

/// What a queue tells a consumer's connection.
pub enum ConsumerEvent {
    Deliver {
        consumer: Arc<Consumer>,
        queue: Arc<Queue>,
        entry: QueueEntry,
    },
    /// The queue went away; the connection sends basic.cancel to the client.
    Cancelled {
        channel: u16,
        consumer_tag: ShortString,
    },
}

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

    /// Whether a limit is set.
    pub fn limited(&self) -> bool {
        self.limit.load(Ordering::Relaxed) != 0
    }

    fn has_room(&self) -> bool {
        let limit = self.limit.load(Ordering::Relaxed);
        limit == 0 || self.used.load(Ordering::Acquire) < limit
    }

    fn try_acquire(&self) -> bool {
        let limit = self.limit.load(Ordering::Relaxed);
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                (limit == 0 || used < limit).then_some(used + 1)
            })
            .is_ok()
    }

    fn release(&self) {
        let _ = self
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| u.checked_sub(1));
    }
}

/// A subscription of one channel to one queue.
pub struct Consumer {
    pub tag: ShortString,
    pub channel: u16,
    pub connection_id: u64,
    pub no_ack: bool,
    pub exclusive: bool,
    /// `x-priority`: higher-priority consumers are served first while they have credit.
    pub priority: i32,
    /// Per-consumer prefetch (basic.qos with global=false).
    pub credit: Credit,
    /// Per-channel prefetch (basic.qos with global=true), shared by the channel's consumers.
    pub channel_credit: Arc<Credit>,
    pub events: UnboundedSender<ConsumerEvent>,
}

impl Consumer {
    fn has_room(&self) -> bool {
        self.no_ack || (self.credit.has_room() && self.channel_credit.has_room())
    }

    fn try_acquire(&self) -> bool {
        if self.no_ack {
            return true;
        }
        if !self.channel_credit.try_acquire() {
            return false;
        }
        if !self.credit.try_acquire() {
            self.channel_credit.release();
            return false;
        }
        true
    }

    /// Returns the credit of one delivery (on ack, reject, or requeue).
    pub fn release(&self) {
        if !self.no_ack {
            self.credit.release();
            self.channel_credit.release();
        }
    }
}

pub struct Queue {
    pub name: ShortString,
    pub vhost: Arc<str>,
    pub durable: bool,
    /// The connection owning an exclusive queue.
    pub exclusive_owner: Option<u64>,
    pub auto_delete: bool,
    pub arguments: FieldTable,
    /// The store and this queue's id in it, for durable queues.
    stored: Option<(Arc<Store>, u64)>,
    state: Mutex<QueueState>,
}

#[derive(Default)]
struct QueueState {
    ready: VecDeque<QueueEntry>,
    next_seq: u64,
    consumers: Vec<Arc<Consumer>>,
    /// Where the next round-robin scan starts.
    next_consumer: usize,
    had_consumer: bool,
    deleted: bool,
}

impl Queue {
    pub fn new(
        name: ShortString,
        vhost: Arc<str>,
        durable: bool,
        exclusive_owner: Option<u64>,
        auto_delete: bool,
        arguments: FieldTable,
        stored: Option<(Arc<Store>, u64)>,
    ) -> Queue {
        Queue {
            name,
            vhost,
            durable,
            exclusive_owner,
            auto_delete,
            arguments,
            stored,
            state: Mutex::new(QueueState::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, QueueState> {
        // The state is only mutated by short non-panicking sections; if a panic ever
        // poisoned the lock, the data is still consistent enough to keep serving.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The store id of a durable queue.
    pub fn store_id(&self) -> Option<u64> {
        self.stored.as_ref().map(|(_, id)| *id)
    }

    /// Appends a message and dispatches. Returns None if the queue was deleted, else
    /// the store ticket to wait for before confirming (0: nothing stored).
    pub fn publish(self: &Arc<Self>, msg: Arc<Message>) -> Option<u64> {
        let mut state = self.lock();
        if state.deleted {
            return None;
        }
        let seq = state.next_seq;
        state.next_seq += 1;
        // Sent under the lock, so the store sees the enqueue before any ack of it.
        let ticket = match &self.stored {
            Some((store, id)) if msg.store_id != 0 => store.enqueue(*id, seq, msg.store_id),
            _ => 0,
        };
        state.ready.push_back(QueueEntry {
            seq,
            msg,
            redelivered: false,
        });
        self.dispatch_locked(&mut state);
        Some(ticket)
    }

    /// Puts recovered messages back, in position order, before any client connects.
    pub fn restore(&self, messages: Vec<(u64, Arc<Message>, bool)>) {
        let mut state = self.lock();
        for (seq, msg, redelivered) in messages {
            state.next_seq = state.next_seq.max(seq + 1);
            state.ready.push_back(QueueEntry {
                seq,
                msg,
                redelivered,
            });
        }
    }

    /// Forgets the stored copy of a message that was acknowledged or dropped.
    pub fn remove_stored(&self, entry: &QueueEntry) {
        if let Some((store, id)) = &self.stored
            && entry.msg.store_id != 0
        {
            store.remove(*id, entry.seq, entry.msg.store_id);
        }
    }

    /// Records, before a clean stop, which stored messages were already delivered.
    pub fn persist_redelivered(&self) {
        let Some((store, id)) = &self.stored else {
            return;
        };
        let state = self.lock();
        for e in state
            .ready
            .iter()
            .filter(|e| e.redelivered && e.msg.store_id != 0)
        {
            store.set_redelivered(*id, e.seq);
        }
    }

    /// Takes the head message for basic.get; also returns how many remain ready.
    pub fn get(&self) -> Option<(QueueEntry, u32)> {
        let mut state = self.lock();
        let entry = state.ready.pop_front()?;
        Some((entry, state.ready.len() as u32))
    }

    /// Puts messages back at their original positions. `redelivered` is false only
    /// for messages that never reached the client.
    pub fn requeue(
        self: &Arc<Self>,
        entries: impl IntoIterator<Item = QueueEntry>,
        redelivered: bool,
    ) {
        let mut state = self.lock();
        if state.deleted {
            return;
        }
        for mut entry in entries {
            entry.redelivered |= redelivered;
            let at = state.ready.partition_point(|e| e.seq < entry.seq);
            state.ready.insert(at, entry);
        }
        self.dispatch_locked(&mut state);
    }

    /// Runs the dispatch loop, e.g. after consumers got credit back.
    pub fn dispatch(self: &Arc<Self>) {
        let mut state = self.lock();
        self.dispatch_locked(&mut state);
    }

    fn dispatch_locked(self: &Arc<Self>, state: &mut QueueState) {
        while !state.ready.is_empty() && !state.consumers.is_empty() {
            let Some(idx) = pick_consumer(state) else {
                return;
            };
            let consumer = &state.consumers[idx];
            if !consumer.try_acquire() {
                // Lost a race for the shared channel credit; look again.
                if !state.consumers.iter().any(|c| c.has_room()) {
                    return;
                }
                continue;
            }
            let Some(entry) = state.ready.pop_front() else {
                consumer.release();
                return;
            };
            if consumer.no_ack {
                self.remove_stored(&entry);
            }
            let event = ConsumerEvent::Deliver {
                consumer: consumer.clone(),
                queue: self.clone(),
                entry,
            };
            match consumer.events.send(event) {
                Ok(()) => state.next_consumer = idx + 1,
                Err(failed) => {
                    // The consumer's connection is gone; its cleanup will remove it.
                    if let ConsumerEvent::Deliver {
                        entry, consumer, ..
                    } = failed.0
                    {
                        consumer.release();
                        state.ready.push_front(entry);
                    }
                    state.consumers.remove(idx);
                }
            }
        }
    }

    /// Adds a consumer, enforcing consumer exclusivity, then dispatches.
    pub fn add_consumer(self: &Arc<Self>, consumer: Arc<Consumer>) -> BrokerResult<()> {
        let mut state = self.lock();
        if state.deleted {
            return Err(BrokerError::NotFound(format!(
                "no queue '{}' in vhost '{}'",
                self.name, self.vhost
            )));
        }
        if state.consumers.iter().any(|c| c.exclusive) {
            return Err(BrokerError::AccessRefused(format!(
                "queue '{}' in vhost '{}' in exclusive use",
                self.name, self.vhost
            )));
        }
        if consumer.exclusive && !state.consumers.is_empty() {
            return Err(BrokerError::AccessRefused(format!(
                "queue '{}' in vhost '{}' in exclusive use",
                self.name, self.vhost
            )));
        }
        state.consumers.push(consumer);
        state.had_consumer = true;
        self.dispatch_locked(&mut state);
        Ok(())
    }

    /// Removes a consumer. Returns true if it was the last one of an auto-delete
    /// queue, which must now be deleted.
    pub fn remove_consumer(&self, consumer: &Arc<Consumer>) -> bool {
        let mut state = self.lock();
        let before = state.consumers.len();
        state.consumers.retain(|c| !Arc::ptr_eq(c, consumer));
        before != state.consumers.len()
            && state.consumers.is_empty()
            && self.auto_delete
            && state.had_consumer
            && !state.deleted
    }

    pub fn message_count(&self) -> u32 {
        self.lock().ready.len() as u32
    }

    pub fn consumer_count(&self) -> u32 {
        self.lock().consumers.len() as u32
    }

    /// Drops every ready message; returns how many.
    pub fn purge(&self) -> u32 {
        let mut state = self.lock();
        let n = state.ready.len() as u32;
        for entry in std::mem::take(&mut state.ready) {
            self.remove_stored(&entry);
        }
        n
    }

    /// Checks queue.delete's if-unused / if-empty conditions.
    pub fn check_delete(&self, if_unused: bool, if_empty: bool) -> BrokerResult<()> {
        let state = self.lock();
        if if_unused && !state.consumers.is_empty() {
            return Err(BrokerError::PreconditionFailed(format!(
                "queue '{}' in vhost '{}' in use",
                self.name, self.vhost
            )));
        }
        if if_empty && !state.ready.is_empty() {
            return Err(BrokerError::PreconditionFailed(format!(
                "queue '{}' in vhost '{}' not empty",
                self.name, self.vhost
            )));
        }
        Ok(())
    }

    /// Marks the queue deleted, tells its consumers, and returns how many messages
    /// it held.
    pub fn mark_deleted(&self) -> u32 {
        let mut state = self.lock();
        state.deleted = true;
        for c in state.consumers.drain(..) {
            let _ = c.events.send(ConsumerEvent::Cancelled {
                channel: c.channel,
                consumer_tag: c.tag.clone(),
            });
        }
        let n = state.ready.len() as u32;
        state.ready.clear();
        if let Some((store, id)) = &self.stored {
            store.delete_queue(&self.vhost, self.name.as_str(), *id);
        }
        n
    }
}

/// The consumer with free credit and the highest priority, scanning round-robin from
/// where the last delivery went.
fn pick_consumer(state: &QueueState) -> Option<usize> {
    let n = state.consumers.len();
    let mut best: Option<usize> = None;
    for i in 0..n {
        let idx = (state.next_consumer + i) % n;
        let c = &state.consumers[idx];
        if c.has_room() && best.is_none_or(|b| c.priority > state.consumers[b].priority) {
            best = Some(idx);
        }
    }
    best
}
