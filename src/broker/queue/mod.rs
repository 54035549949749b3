//! Queues and their consumers.
//!
//! A queue's state sits behind its own mutex, held only for short, non-async critical
//! sections; there is no lock shared between queues. Whoever changes the state (a
//! publisher, an ack, a new consumer) runs the dispatch loop inline, which hands ready
//! messages to consumers with free credit, round-robin within the highest consumer
//! priority. A delivery is sent to the consumer's connection as a [`ConsumerEvent`];
//! the connection assigns the delivery tag and writes the frames, so tag order always
//! matches wire order.

mod classic;
mod consumer;
mod flow;
pub mod listing;
mod paging;
mod policy;
mod ready;
mod stats;
pub mod stream;
mod timers;

use crate::broker::VHost;
use crate::broker::args::QueueArgs;
use crate::broker::deadletter::Reason;
use crate::broker::policy::Applied;
use crate::model::{BrokerError, BrokerResult, Message};
use crate::store::{RecoveredMessage as Recovered, RecoveredMessages, Store};
use amq_protocol::types::{FieldTable, ShortString};
use ready::{Ready, ReadyEntry};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

pub use consumer::Consumer;
pub use flow::{Credit, Flow};
pub use stats::{ExchangeStats, QueueInfo, QueueStats};

/// The position of a message the queue refused and dead-letters at once
/// (`reject-publish-dlx`): it never had an entry, so there is nothing to remove from
/// the store for it. Real positions count up from 0 and never reach this.
pub(super) const NOT_ENQUEUED: u64 = u64::MAX;

/// A message sitting in a queue (ready, or delivered and awaiting its ack).
#[derive(Debug, Clone)]
pub struct QueueEntry {
    /// Position in the queue; requeued messages go back to their original position.
    pub seq: u64,
    pub msg: Arc<Message>,
    pub redelivered: bool,
    /// When the message expires, in milliseconds since the Unix epoch; 0: never.
    pub expires: u64,
}

/// A ready message as the queue keeps it: possibly paged out to the store.
/// A message offered to a queue: what became of it, and the consumer connection
/// that is falling behind, if delivering it made one congested.
pub struct Published {
    pub outcome: Enqueued,
    pub congested: Option<Arc<Flow>>,
}

/// What became of a message offered to a queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enqueued {
    /// Taken; the confirm waits for this store ticket (0: nothing stored).
    Yes(u64),
    /// The queue is full and refuses new messages (`x-overflow` reject-publish*).
    Rejected,
    /// The queue was deleted meanwhile.
    Gone,
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

/// What kind of queue a queue is: how it keeps and hands out its messages. Streams
/// come next, as a variant rather than a trait object, so the publish and delivery
/// paths stay static calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueKind {
    /// Messages held in memory (paged to the store past a budget), each consumed once.
    Classic,
    /// An append-only log on disk that every consumer reads from its own offset.
    Stream,
}

/// What a queue is made of at declare time.
pub struct QueueOptions {
    pub name: ShortString,
    pub vhost_name: Arc<str>,
    pub durable: bool,
    /// The connection owning an exclusive queue.
    pub exclusive_owner: Option<u64>,
    pub auto_delete: bool,
    /// The arguments as declared.
    pub arguments: FieldTable,
    /// The settings the arguments give.
    pub args: QueueArgs,
    /// The policies that apply at declare: the settings in effect combine both.
    pub policy: Option<Arc<Applied>>,
    /// The store and this queue's id in it, for durable queues.
    pub stored: Option<(Arc<Store>, u64)>,
    /// The virtual host, for dead-lettering and `x-expires`.
    pub vhost: Weak<VHost>,
}

pub struct Queue {
    pub name: ShortString,
    pub vhost_name: Arc<str>,
    pub durable: bool,
    /// The connection owning an exclusive queue.
    pub exclusive_owner: Option<u64>,
    pub auto_delete: bool,
    /// The arguments as declared, which a redeclare must match. What the queue does
    /// follows its effective settings (see [`QueueState::settings`]) instead.
    pub arguments: FieldTable,
    /// The settings the declared arguments give, which policies combine with.
    base: QueueArgs,
    kind: QueueKind,
    stored: Option<(Arc<Store>, u64)>,
    vhost: Weak<VHost>,
    state: Mutex<QueueState>,
    /// Deliveries awaiting acknowledgement on channels (for the metrics); kept by
    /// the channels, outside the queue's lock.
    unacked: std::sync::atomic::AtomicI64,
    /// The log of a stream (kind [`QueueKind::Stream`]).
    stream: Option<Arc<stream::Stream>>,
    /// Message counters for the management API (relaxed atomics).
    pub stats: QueueStats,
    /// Dead letters waiting for their paged-out messages to be read back.
    dead_letters: Mutex<paging::DeadLetters>,
}

struct QueueState {
    /// The effective settings (TTL, expiry, length limits, overflow, dead-lettering,
    /// single active consumer): given by the declared arguments, kept here so that
    /// whoever changes them (a policy) does it under the lock the queue's every
    /// operation already takes, and nothing is locked twice on the publish path.
    settings: QueueArgs,
    /// The policy and operator policy the settings come from, in part.
    policy: Option<Arc<Applied>>,
    ready: Ready,
    next_seq: u64,
    consumers: Vec<Arc<Consumer>>,
    /// Where the next round-robin scan starts.
    next_consumer: usize,
    /// The highest priority among the consumers (see [`consumer::pick_consumer`]).
    top_priority: i32,
    had_consumer: bool,
    deleted: bool,
    /// Messages to dead-letter (or drop) once the lock is released.
    dead: Vec<(ReadyEntry, Reason)>,
    /// A consumer connection that the last dispatch found congested.
    congested: Option<Arc<Flow>>,
    /// A batch of paged-out messages is being read back in the background.
    paging: bool,
    /// When the pending expiry timer fires (ms since the epoch); 0: none pending.
    ttl_timer: u64,
    /// Last time the queue was used, for `x-expires`.
    last_used: u64,
    expires_timer: bool,
    /// Changes when the expiry timer is restarted: an older timer task then ends.
    expires_gen: u64,
}
impl Queue {
    pub fn new(o: QueueOptions) -> Queue {
        let definition = o
            .policy
            .as_ref()
            .map(|a| a.effective_definition())
            .unwrap_or_default();
        let state = QueueState {
            ready: Ready::new(o.args.max_priority),
            settings: o.args.with_policy(&o.arguments, &definition),
            policy: o.policy,
            next_seq: 0,
            consumers: Vec::new(),
            next_consumer: 0,
            top_priority: 0,
            had_consumer: false,
            deleted: false,
            dead: Vec::new(),
            congested: None,
            paging: false,
            ttl_timer: 0,
            last_used: 0,
            expires_timer: false,
            expires_gen: 0,
        };
        let stream = match (&o.args.stream, &o.stored) {
            (Some(settings), Some((store, id))) => Some(Arc::new(stream::Stream::new(
                store.clone(),
                *id,
                Default::default(),
                settings.with_policy(&definition),
            ))),
            _ => None,
        };
        Queue {
            name: o.name,
            vhost_name: o.vhost_name,
            durable: o.durable,
            exclusive_owner: o.exclusive_owner,
            auto_delete: o.auto_delete,
            arguments: o.arguments,
            base: o.args,
            kind: if stream.is_some() {
                QueueKind::Stream
            } else {
                QueueKind::Classic
            },
            stream,
            stored: o.stored,
            vhost: o.vhost,
            state: Mutex::new(state),
            unacked: std::sync::atomic::AtomicI64::new(0),
            stats: QueueStats::new(),
            dead_letters: Mutex::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, QueueState> {
        // The state is only mutated by short non-panicking sections; if a panic ever
        // poisoned the lock, the data is still consistent enough to keep serving.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn kind(&self) -> QueueKind {
        self.kind
    }

    /// Where the queue's dead letters go: its dead-letter exchange and routing key.
    pub fn dead_letter_target(&self) -> Option<(String, Option<String>)> {
        let state = self.lock();
        let exchange = state.settings.dead_letter_exchange.clone()?;
        Some((exchange, state.settings.dead_letter_routing_key.clone()))
    }

    /// Whether the queue dead-letters what it drops.
    pub fn has_dead_letter_exchange(&self) -> bool {
        self.lock().settings.dead_letter_exchange.is_some()
    }

    /// The store id of a durable queue.
    pub fn store_id(&self) -> Option<u64> {
        self.stored.as_ref().map(|(_, id)| *id)
    }

    /// Whether persistent messages this queue takes are stored with a queue entry: a
    /// durable classic queue (a stream appends them to its own log).
    pub fn stores_messages(&self) -> bool {
        self.stored.is_some() && self.stream.is_none()
    }

    /// Puts recovered messages back, in position order, before any client connects.
    pub fn restore(&self, messages: RecoveredMessages) {
        let mut state = self.lock();
        for item in messages.items {
            match item {
                Recovered::One {
                    seq,
                    slot,
                    redelivered,
                    expires,
                } => {
                    state.next_seq = state.next_seq.max(seq + 1);
                    let e = ReadyEntry {
                        seq,
                        slot,
                        redelivered,
                        expires,
                    };
                    state.ready.push_back(e, 0);
                }
                Recovered::Run { priority, run } => {
                    if let Some(t) = run.tail() {
                        state.next_seq = state.next_seq.max(t.seq + 1);
                    }
                    state.ready.push_run(priority, run);
                }
            }
        }
    }

    /// Forgets the stored copy of a message that was acknowledged or dropped (nothing
    /// for one the queue refused: it has no entry here).
    pub fn remove_stored(&self, entry: &QueueEntry) {
        self.remove_stored_id(entry.seq, entry.msg.store_id);
    }

    fn remove_stored_id(&self, seq: u64, store_id: u64) {
        if let Some((store, id)) = &self.stored
            && store_id != 0
            && seq != NOT_ENQUEUED
        {
            store.remove(*id, seq, store_id);
        }
    }

    /// Records, before a clean stop, which stored messages were already delivered.
    pub fn persist_redelivered(&self) {
        let Some((store, id)) = &self.stored else {
            return;
        };
        let state = self.lock();
        state.ready.for_each(|seq, store_id, redelivered| {
            if redelivered && store_id != 0 {
                store.set_redelivered(*id, seq, store_id);
            }
        });
    }

    pub fn message_count(&self) -> u32 {
        if let Some(s) = &self.stream {
            return s.message_count().min(u64::from(u32::MAX)) as u32;
        }
        self.lock().ready.len as u32
    }

    /// Deliveries from this queue awaiting acknowledgement.
    pub fn unacked_count(&self) -> u64 {
        self.unacked
            .load(std::sync::atomic::Ordering::Relaxed)
            .max(0) as u64
    }

    /// Counts deliveries that start (positive) or stop (negative) awaiting
    /// acknowledgement.
    #[inline]
    pub fn count_unacked(&self, delta: i64) {
        self.unacked
            .fetch_add(delta, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn consumer_count(&self) -> u32 {
        if let Some(s) = &self.stream {
            return s.consumer_count() as u32;
        }
        self.lock().consumers.len() as u32
    }

    /// Drops every ready message; returns how many.
    pub fn purge(&self) -> u32 {
        if self.stream.is_some() {
            // The channel refuses queue.purge on a stream.
            return 0;
        }
        let mut state = self.lock();
        let n = state.ready.len;
        let all = state.ready.take_all();
        drop(state);
        for item in all {
            match item {
                ready::Item::One(e) => self.remove_stored_id(e.seq, e.store_id()),
                ready::Item::Run(run) => {
                    if let Some((store, id)) = &self.stored {
                        store.remove_run(*id, *run);
                    }
                }
            }
        }
        n as u32
    }

    /// Checks queue.delete's if-unused / if-empty conditions.
    pub fn check_delete(&self, if_unused: bool, if_empty: bool) -> BrokerResult<()> {
        let state = self.lock();
        let (used, empty) = match &self.stream {
            Some(s) => (s.consumer_count() > 0, s.message_count() == 0),
            None => (!state.consumers.is_empty(), state.ready.is_empty()),
        };
        if if_unused && used {
            return Err(BrokerError::PreconditionFailed(format!(
                "queue '{}' in vhost '{}' in use",
                self.name, self.vhost_name
            )));
        }
        if if_empty && !empty {
            return Err(BrokerError::PreconditionFailed(format!(
                "queue '{}' in vhost '{}' not empty",
                self.name, self.vhost_name
            )));
        }
        Ok(())
    }

    /// Marks the queue deleted, tells its consumers, and returns how many messages
    /// it held.
    pub fn mark_deleted(&self) -> u32 {
        let mut state = self.lock();
        state.deleted = true;
        let stream_consumers = self.stream.as_ref().map(|s| s.remove_all());
        let mut n = self.stream.as_ref().map_or(0, |s| s.message_count() as u32);
        for c in state
            .consumers
            .drain(..)
            .chain(stream_consumers.into_iter().flatten())
        {
            let _ = c.events.send(ConsumerEvent::Cancelled {
                channel: c.channel,
                consumer_tag: c.tag.clone(),
            });
        }
        n += state.ready.len as u32;
        state.ready.take_all();
        if let Some((store, id)) = &self.stored {
            store.delete_queue(&self.vhost_name, self.name.as_str(), *id);
        }
        n
    }
}
