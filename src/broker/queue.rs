//! Queues and their consumers.
//!
//! A queue's state sits behind its own mutex, held only for short, non-async critical
//! sections; there is no lock shared between queues. Whoever changes the state (a
//! publisher, an ack, a new consumer) runs the dispatch loop inline, which hands ready
//! messages to consumers with free credit, round-robin within the highest consumer
//! priority. A delivery is sent to the consumer's connection as a [`ConsumerEvent`];
//! the connection assigns the delivery tag and writes the frames, so tag order always
//! matches wire order.

use crate::broker::VHost;
use crate::broker::args::{Overflow, QueueArgs};
use crate::broker::deadletter::Reason;
use crate::model::{BrokerError, BrokerResult, Message, Slot, now_ms};
use crate::store::Store;
use amq_protocol::types::{FieldTable, ShortString};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;
use tokio::sync::mpsc::UnboundedSender;

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
#[derive(Debug, Clone)]
struct ReadyEntry {
    seq: u64,
    slot: Slot,
    redelivered: bool,
    expires: u64,
}

impl ReadyEntry {
    fn store_id(&self) -> u64 {
        match &self.slot {
            Slot::Loaded(m) => m.store_id,
            Slot::Paged { store_id, .. } => *store_id,
        }
    }

    fn body_len(&self) -> u64 {
        match &self.slot {
            Slot::Loaded(m) => m.body.len() as u64,
            Slot::Paged { body_len, .. } => u64::from(*body_len),
        }
    }

    fn priority(&self) -> u8 {
        match &self.slot {
            Slot::Loaded(m) => m.priority(),
            Slot::Paged { priority, .. } => *priority,
        }
    }
}

impl From<QueueEntry> for ReadyEntry {
    fn from(e: QueueEntry) -> Self {
        ReadyEntry {
            seq: e.seq,
            slot: Slot::Loaded(e.msg),
            redelivered: e.redelivered,
            expires: e.expires,
        }
    }
}

/// How many paged-out messages one read of the store brings back.
const PAGE_IN_BATCH: usize = 256;

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
#[derive(Debug, Default)]
pub struct Flow {
    pending: AtomicUsize,
    pending_bytes: AtomicUsize,
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
    fn added(&self, bytes: usize) -> bool {
        self.pending_bytes.fetch_add(bytes, Ordering::Relaxed);
        self.pending.fetch_add(1, Ordering::Relaxed) + 1 > Self::HIGH
    }

    /// One delivery of `bytes` was written (or dropped).
    pub fn done(&self, bytes: usize) {
        self.pending_bytes.fetch_sub(bytes, Ordering::Relaxed);
        if self.pending.fetch_sub(1, Ordering::Relaxed) == Self::LOW + 1 {
            self.drained.notify_waiters();
        }
    }

    pub fn congested(&self) -> bool {
        self.pending.load(Ordering::Relaxed) > Self::LOW
    }

    /// Whether queues must stop handing this connection deliveries.
    pub fn full(&self) -> bool {
        let pending = self.pending.load(Ordering::Relaxed);
        pending >= Self::MAX_PENDING
            || (pending > 0
                && self.pending_bytes.load(Ordering::Relaxed) >= Self::MAX_PENDING_BYTES)
    }

    /// Whether a connection that was full has drained enough for its stalled queues
    /// to resume (half the limits, so that they do not resume one message at a time).
    fn resumable(&self) -> bool {
        self.pending.load(Ordering::Relaxed) <= Self::MAX_PENDING / 2
            && self.pending_bytes.load(Ordering::Relaxed) <= Self::MAX_PENDING_BYTES / 2
    }

    /// Remembers a queue that stopped dispatching because this connection is full.
    fn stall(&self, queue: &Arc<Queue>) {
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
    /// The consumer connection's backlog of deliveries.
    pub flow: Arc<Flow>,
}

impl Consumer {
    /// A no-ack consumer takes no credit, but waits like the others while its
    /// channel's limit (basic.qos global) is used up, as in RabbitMQ.
    fn has_room(&self) -> bool {
        self.has_credit() && !self.flow.full()
    }

    /// Room in the prefetch windows, whatever the connection's backlog.
    fn has_credit(&self) -> bool {
        self.channel_credit.has_room() && (self.no_ack || self.credit.has_room())
    }

    fn try_acquire(&self) -> bool {
        if self.flow.full() {
            return false;
        }
        if self.no_ack {
            return self.channel_credit.has_room();
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

/// What a queue is made of, fixed at declare time.
pub struct QueueOptions {
    pub name: ShortString,
    pub vhost_name: Arc<str>,
    pub durable: bool,
    /// The connection owning an exclusive queue.
    pub exclusive_owner: Option<u64>,
    pub auto_delete: bool,
    pub arguments: FieldTable,
    pub args: QueueArgs,
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
    pub arguments: FieldTable,
    pub args: QueueArgs,
    stored: Option<(Arc<Store>, u64)>,
    vhost: Weak<VHost>,
    state: Mutex<QueueState>,
}

/// Ready messages in delivery order: one FIFO, or one per priority level.
struct Ready {
    levels: Vec<VecDeque<ReadyEntry>>,
    len: usize,
    /// Body bytes of the ready messages (`x-max-length-bytes`).
    bytes: u64,
}

impl Ready {
    fn new(max_priority: Option<u8>) -> Ready {
        let n = max_priority.map_or(1, |m| usize::from(m) + 1);
        Ready {
            levels: (0..n).map(|_| VecDeque::new()).collect(),
            len: 0,
            bytes: 0,
        }
    }

    fn level(&self, e: &ReadyEntry) -> usize {
        if self.levels.len() == 1 {
            return 0;
        }
        usize::from(e.priority()).min(self.levels.len() - 1)
    }

    fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn added(&mut self, e: &ReadyEntry) {
        self.len += 1;
        self.bytes += e.body_len();
    }

    fn removed(&mut self, e: &ReadyEntry) {
        self.len -= 1;
        self.bytes -= e.body_len();
    }

    fn push_back(&mut self, e: ReadyEntry) {
        self.added(&e);
        let l = self.level(&e);
        self.levels[l].push_back(e);
    }

    fn push_front(&mut self, e: ReadyEntry) {
        self.added(&e);
        let l = self.level(&e);
        self.levels[l].push_front(e);
    }

    /// Puts a message back at its original position.
    fn insert(&mut self, e: ReadyEntry) {
        self.added(&e);
        let l = self.level(&e);
        let level = &mut self.levels[l];
        let at = level.partition_point(|x| x.seq < e.seq);
        level.insert(at, e);
    }

    /// Puts many messages back at their original positions: one merge per level
    /// rather than one shifting insert per message, so that requeueing a large
    /// unacked window (a consumer that disconnects) costs linear time.
    fn insert_many(&mut self, mut entries: Vec<ReadyEntry>) {
        if entries.len() < 8 {
            for e in entries {
                self.insert(e);
            }
            return;
        }
        entries.sort_by_key(|e| e.seq);
        let mut per_level: Vec<Vec<ReadyEntry>> =
            (0..self.levels.len()).map(|_| Vec::new()).collect();
        for e in entries {
            self.added(&e);
            let l = self.level(&e);
            per_level[l].push(e);
        }
        for (l, back) in per_level.into_iter().enumerate() {
            if back.is_empty() {
                continue;
            }
            let level = &mut self.levels[l];
            if level
                .front()
                .is_none_or(|f| back[back.len() - 1].seq < f.seq)
            {
                // The usual case: everything requeued was ahead of what is ready.
                for e in back.into_iter().rev() {
                    level.push_front(e);
                }
                continue;
            }
            let old = std::mem::take(level);
            let mut merged = VecDeque::with_capacity(old.len() + back.len());
            let mut a = old.into_iter().peekable();
            let mut b = back.into_iter().peekable();
            loop {
                let take_a = match (a.peek(), b.peek()) {
                    (Some(x), Some(y)) => x.seq < y.seq,
                    (Some(_), None) => true,
                    (None, Some(_)) => false,
                    (None, None) => break,
                };
                let next = if take_a { a.next() } else { b.next() };
                if let Some(e) = next {
                    merged.push_back(e);
                }
            }
            *level = merged;
        }
    }

    /// The next message in delivery order.
    fn front_mut(&mut self) -> Option<&mut ReadyEntry> {
        self.levels.iter_mut().rev().find_map(|l| l.front_mut())
    }

    fn pop_front(&mut self) -> Option<ReadyEntry> {
        let e = self.levels.iter_mut().rev().find_map(|l| l.pop_front())?;
        self.removed(&e);
        Some(e)
    }

    /// Removes the messages at the heads whose time ran out.
    fn drop_expired(&mut self, now: u64, out: &mut Vec<(ReadyEntry, Reason)>) {
        for l in 0..self.levels.len() {
            while self.levels[l]
                .front()
                .is_some_and(|e| e.expires != 0 && e.expires <= now)
            {
                if let Some(e) = self.levels[l].pop_front() {
                    self.removed(&e);
                    out.push((e, Reason::Expired));
                }
            }
        }
    }

    /// The earliest expiry among the heads.
    fn next_expiry(&self) -> Option<u64> {
        self.levels
            .iter()
            .filter_map(|l| l.front().map(|e| e.expires).filter(|&t| t != 0))
            .min()
    }

    fn take_all(&mut self) -> Vec<ReadyEntry> {
        self.len = 0;
        self.bytes = 0;
        self.levels.iter_mut().flat_map(std::mem::take).collect()
    }

    fn iter(&self) -> impl Iterator<Item = &ReadyEntry> {
        self.levels.iter().flatten()
    }

    /// The paged-out messages at the head, in delivery order: (level, index, id).
    fn paged_ahead(&self, n: usize) -> Vec<(usize, usize, u64)> {
        let mut out = Vec::new();
        for l in (0..self.levels.len()).rev() {
            for (i, e) in self.levels[l].iter().enumerate().take(n - out.len()) {
                if let Slot::Paged { store_id, .. } = e.slot {
                    out.push((l, i, store_id));
                }
            }
            if out.len() >= n {
                break;
            }
        }
        out
    }
}

struct QueueState {
    ready: Ready,
    next_seq: u64,
    consumers: Vec<Arc<Consumer>>,
    /// Where the next round-robin scan starts.
    next_consumer: usize,
    had_consumer: bool,
    deleted: bool,
    /// Messages to dead-letter (or drop) once the lock is released.
    dead: Vec<(ReadyEntry, Reason)>,
    /// A consumer connection that the last dispatch found congested.
    congested: Option<Arc<Flow>>,
    /// Paged-out messages whose store write may not be committed yet, so they
    /// cannot be read back from the store: (store ticket, message).
    recent: VecDeque<(u64, Arc<Message>)>,
    /// A batch of paged-out messages is being read back in the background.
    paging: bool,
    /// When the pending expiry timer fires (ms since the epoch); 0: none pending.
    ttl_timer: u64,
    /// Last time the queue was used, for `x-expires`.
    last_used: u64,
    expires_timer: bool,
}
impl Queue {
    pub fn new(o: QueueOptions) -> Queue {
        let state = QueueState {
            ready: Ready::new(o.args.max_priority),
            next_seq: 0,
            consumers: Vec::new(),
            next_consumer: 0,
            had_consumer: false,
            deleted: false,
            dead: Vec::new(),
            congested: None,
            recent: VecDeque::new(),
            paging: false,
            ttl_timer: 0,
            last_used: 0,
            expires_timer: false,
        };
        Queue {
            name: o.name,
            vhost_name: o.vhost_name,
            durable: o.durable,
            exclusive_owner: o.exclusive_owner,
            auto_delete: o.auto_delete,
            arguments: o.arguments,
            args: o.args,
            stored: o.stored,
            vhost: o.vhost,
            state: Mutex::new(state),
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

    /// When a message offered now expires: the queue's TTL or the message's own
    /// `expiration`, whichever is sooner (0: never).
    fn expiry_of(&self, msg: &Message) -> u64 {
        let own = msg.ttl();
        let ttl = match (self.args.message_ttl, own) {
            (Some(a), Some(b)) => a.min(b),
            (a, b) => match a.or(b) {
                Some(t) => t,
                None => return 0,
            },
        };
        // 0 stands for "never", so an immediate expiry is the current millisecond
        // rounded up to at least 1.
        (now_ms() + ttl).max(1)
    }

    /// Offers a message: enforces the length limits, appends it and dispatches.
    pub fn publish(self: &Arc<Self>, msg: Arc<Message>) -> Published {
        let mut state = self.lock();
        if state.deleted {
            return Published {
                outcome: Enqueued::Gone,
                congested: None,
            };
        }
        let size = msg.body.len() as u64;
        let over = self
            .args
            .max_length
            .is_some_and(|m| state.ready.len as u64 >= m)
            || self
                .args
                .max_length_bytes
                .is_some_and(|m| state.ready.bytes + size > m);
        if over && self.args.overflow != Overflow::DropHead {
            if self.args.overflow == Overflow::RejectPublishDlx {
                let entry = ReadyEntry {
                    seq: 0,
                    slot: Slot::Loaded(msg),
                    redelivered: false,
                    expires: 0,
                };
                state.dead.push((entry, Reason::Maxlen));
                self.finish(state);
            }
            return Published {
                outcome: Enqueued::Rejected,
                congested: None,
            };
        }
        let seq = state.next_seq;
        state.next_seq += 1;
        let expires = self.expiry_of(&msg);
        // Sent under the lock, so the store sees the enqueue before any ack of it.
        let mut slot = Slot::Loaded(msg);
        let mut ticket = 0;
        if let (Some((store, id)), Slot::Loaded(msg)) = (&self.stored, &slot)
            && msg.store_id != 0
        {
            ticket = store.enqueue(*id, seq, msg.store_id, expires);
            if state.ready.len >= store.page_after() {
                // Past the in-memory budget: only the index entry stays in memory.
                let committed = store.committed_now();
                while state.recent.front().is_some_and(|(t, _)| *t <= committed) {
                    state.recent.pop_front();
                }
                state.recent.push_back((ticket, msg.clone()));
                slot = Slot::Paged {
                    store_id: msg.store_id,
                    body_len: msg.body.len() as u32,
                    priority: msg.priority(),
                };
            }
        }
        state.ready.push_back(ReadyEntry {
            seq,
            slot,
            redelivered: false,
            expires,
        });
        self.dispatch_locked(&mut state);
        if self.args.max_length.is_some() || self.args.max_length_bytes.is_some() {
            self.drop_head_over_limit(&mut state);
        }
        let congested = state.congested.take();
        self.finish(state);
        Published {
            outcome: Enqueued::Yes(ticket),
            congested,
        }
    }

    /// Drops (dead-letters) messages from the head until the queue is within its limits.
    fn drop_head_over_limit(&self, state: &mut QueueState) {
        let max_len = self.args.max_length.unwrap_or(u64::MAX);
        let max_bytes = self.args.max_length_bytes.unwrap_or(u64::MAX);
        while state.ready.len as u64 > max_len || state.ready.bytes > max_bytes {
            let Some(e) = state.ready.pop_front() else {
                break;
            };
            state.dead.push((e, Reason::Maxlen));
        }
    }

    /// Ends a change of state: drops expired heads, arms the timers, releases the
    /// lock, then dead-letters what died meanwhile.
    fn finish(self: &Arc<Self>, mut state: MutexGuard<'_, QueueState>) {
        if let Some(next) = state.ready.next_expiry() {
            let now = now_ms();
            if next <= now {
                let mut dead = std::mem::take(&mut state.dead);
                state.ready.drop_expired(now, &mut dead);
                state.dead = dead;
            }
            self.arm_ttl_timer(&mut state);
        }
        if state.dead.is_empty() {
            return;
        }
        let dead = std::mem::take(&mut state.dead);
        drop(state);
        self.dead_letter(dead);
    }

    /// Dead-letters messages through the queue's dead-letter exchange, or drops them.
    fn dead_letter(&self, dead: Vec<(ReadyEntry, Reason)>) {
        if self.args.dead_letter_exchange.is_some()
            && let Some(vhost) = self.vhost.upgrade()
        {
            let mut loaded = Vec::with_capacity(dead.len());
            for (e, reason) in &dead {
                let msg = match &e.slot {
                    Slot::Loaded(m) => Some(m.clone()),
                    Slot::Paged { store_id, .. } => {
                        let mut state = self.lock();
                        self.page_in(&mut state, *store_id)
                    }
                };
                if let Some(msg) = msg {
                    let entry = QueueEntry {
                        seq: e.seq,
                        msg,
                        redelivered: e.redelivered,
                        expires: e.expires,
                    };
                    loaded.push((entry, *reason));
                }
            }
            vhost.dead_letter(self, &loaded);
        }
        for (entry, _) in &dead {
            self.remove_stored_id(entry.seq, entry.store_id());
        }
    }

    /// Takes the head message, reading it back from the store if it was paged out.
    fn pop_loaded(&self, state: &mut QueueState) -> Option<QueueEntry> {
        loop {
            let e = state.ready.pop_front()?;
            let msg = match &e.slot {
                Slot::Loaded(m) => Some(m.clone()),
                Slot::Paged { store_id, .. } => self.page_in(state, *store_id),
            };
            match msg {
                Some(msg) => {
                    return Some(QueueEntry {
                        seq: e.seq,
                        msg,
                        redelivered: e.redelivered,
                        expires: e.expires,
                    });
                }
                None => {
                    tracing::error!(queue = %self.name, seq = e.seq, "paged message unreadable, dropped");
                    self.remove_stored_id(e.seq, e.store_id());
                }
            }
        }
    }

    /// The head message for a consumer, never reading the store under the lock: a
    /// paged-out head starts a background read of the batch at the head and gives
    /// None; the read dispatches again when it is done.
    fn pop_for_dispatch(self: &Arc<Self>, state: &mut QueueState) -> Option<QueueEntry> {
        let head = state.ready.front_mut()?;
        if let Slot::Paged { store_id, .. } = head.slot {
            let recent = state.recent.iter().find(|(_, m)| m.store_id == store_id);
            match (recent, tokio::runtime::Handle::try_current()) {
                (Some((_, m)), _) => {
                    let m = m.clone();
                    if let Some(head) = state.ready.front_mut() {
                        head.slot = Slot::Loaded(m);
                    }
                }
                (None, Ok(runtime)) => {
                    self.start_page_in(state, &runtime);
                    return None;
                }
                (None, Err(_)) => {}
            }
        }
        self.pop_loaded(state)
    }

    /// Reads the paged-out messages at the head back on a blocking thread, off the
    /// queue lock, then fills them in and dispatches.
    fn start_page_in(self: &Arc<Self>, state: &mut QueueState, runtime: &tokio::runtime::Handle) {
        if state.paging {
            return;
        }
        let Some((store, _)) = &self.stored else {
            return;
        };
        let ids: Vec<u64> = state
            .ready
            .paged_ahead(PAGE_IN_BATCH)
            .into_iter()
            .map(|(_, _, id)| id)
            .collect();
        let Some(&head) = ids.first() else {
            return;
        };
        state.paging = true;
        let store = store.clone();
        let weak = Arc::downgrade(self);
        runtime.spawn_blocking(move || {
            let loaded = store.load(&ids);
            let Some(q) = weak.upgrade() else {
                return;
            };
            let mut found: std::collections::HashMap<u64, Arc<Message>> = ids
                .iter()
                .zip(loaded)
                .filter_map(|(id, m)| m.map(|m| (*id, m)))
                .collect();
            let mut state = q.lock();
            state.paging = false;
            q.fill_paged(&mut state, &mut found, head);
            if !state.deleted {
                q.dispatch_locked(&mut state);
            }
            q.finish(state);
        });
    }

    /// Puts messages read back from the store into their entries (those still
    /// there). A head that the store could not give back, and that is not waiting
    /// for its commit, is dropped as unreadable rather than retried forever.
    fn fill_paged(
        &self,
        state: &mut QueueState,
        found: &mut std::collections::HashMap<u64, Arc<Message>>,
        head: u64,
    ) {
        let head_missing = !found.contains_key(&head);
        for level in state.ready.levels.iter_mut().rev() {
            for e in level.iter_mut().take(2 * PAGE_IN_BATCH) {
                if found.is_empty() {
                    break;
                }
                if let Slot::Paged { store_id, .. } = e.slot
                    && let Some(m) = found.remove(&store_id)
                {
                    e.slot = Slot::Loaded(m);
                }
            }
        }
        if head_missing
            && !state.recent.iter().any(|(_, m)| m.store_id == head)
            && state
                .ready
                .front_mut()
                .is_some_and(|e| matches!(e.slot, Slot::Paged { store_id, .. } if store_id == head))
            && let Some(e) = state.ready.pop_front()
        {
            tracing::error!(queue = %self.name, seq = e.seq, "paged message unreadable, dropped");
            self.remove_stored_id(e.seq, e.store_id());
        }
    }

    /// Reads a paged-out message back, with the paged messages right behind it at
    /// the head of the queue in the same store read.
    fn page_in(&self, state: &mut QueueState, first: u64) -> Option<Arc<Message>> {
        if let Some((_, m)) = state.recent.iter().find(|(_, m)| m.store_id == first) {
            return Some(m.clone());
        }
        let (store, _) = self.stored.as_ref()?;
        let ahead = state.ready.paged_ahead(PAGE_IN_BATCH);
        let mut ids: Vec<u64> = Vec::with_capacity(ahead.len() + 1);
        ids.push(first);
        ids.extend(ahead.iter().map(|&(_, _, id)| id));
        let mut loaded = store.load(&ids).into_iter();
        let first_msg = loaded.next().flatten();
        for ((l, i, _), m) in ahead.into_iter().zip(loaded) {
            if let Some(m) = m
                && let Some(e) = state.ready.levels[l].get_mut(i)
            {
                e.slot = Slot::Loaded(m);
            }
        }
        first_msg
    }

    /// Makes sure a timer will drop the head when it expires.
    fn arm_ttl_timer(self: &Arc<Self>, state: &mut QueueState) {
        let Some(next) = state.ready.next_expiry() else {
            return;
        };
        if state.ttl_timer != 0 && state.ttl_timer <= next {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        state.ttl_timer = next;
        let weak = Arc::downgrade(self);
        runtime.spawn(async move {
            let wait = next.saturating_sub(now_ms());
            tokio::time::sleep(Duration::from_millis(wait)).await;
            let Some(q) = weak.upgrade() else {
                return;
            };
            let mut state = q.lock();
            if state.ttl_timer == next {
                state.ttl_timer = 0;
            }
            if state.deleted {
                return;
            }
            q.dispatch_locked(&mut state);
            q.finish(state);
        });
    }

    /// Notes that the queue was used (declared, read, consumed from) and, if it has
    /// `x-expires`, makes sure a timer will delete it once unused for that long.
    pub fn touch(self: &Arc<Self>) {
        let Some(expires) = self.args.expires else {
            return;
        };
        let mut state = self.lock();
        state.last_used = now_ms();
        if state.expires_timer || !state.consumers.is_empty() || state.deleted {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        state.expires_timer = true;
        let weak = Arc::downgrade(self);
        let mut due = state.last_used + expires;
        runtime.spawn(async move {
            loop {
                let wait = due.saturating_sub(now_ms());
                tokio::time::sleep(Duration::from_millis(wait)).await;
                let Some(q) = weak.upgrade() else {
                    return;
                };
                let mut state = q.lock();
                if state.deleted || !state.consumers.is_empty() {
                    state.expires_timer = false;
                    return;
                }
                due = state.last_used + expires;
                if now_ms() >= due {
                    state.expires_timer = false;
                    drop(state);
                    if let Some(vhost) = q.vhost.upgrade() {
                        tracing::debug!(queue = %q.name, "queue expired (x-expires)");
                        vhost.remove_queue(&q);
                    }
                    return;
                }
            }
        });
    }

    /// Puts recovered messages back, in position order, before any client connects.
    pub fn restore(&self, messages: Vec<(u64, Slot, bool, u64)>) {
        let mut state = self.lock();
        for (seq, slot, redelivered, expires) in messages {
            state.next_seq = state.next_seq.max(seq + 1);
            state.ready.push_back(ReadyEntry {
                seq,
                slot,
                redelivered,
                expires,
            });
        }
    }

    /// After recovery: dead-letters what expired while the broker was down, and arms
    /// the timers.
    pub fn start_timers(self: &Arc<Self>) {
        let state = self.lock();
        self.finish(state);
        self.touch();
    }

    /// Forgets the stored copy of a message that was acknowledged or dropped.
    pub fn remove_stored(&self, entry: &QueueEntry) {
        self.remove_stored_id(entry.seq, entry.msg.store_id);
    }

    fn remove_stored_id(&self, seq: u64, store_id: u64) {
        if let Some((store, id)) = &self.stored
            && store_id != 0
        {
            store.remove(*id, seq, store_id);
        }
    }

    /// Rejected without requeue: dead-letters the messages, or drops them.
    pub fn discard(&self, entries: Vec<QueueEntry>) {
        if self.args.dead_letter_exchange.is_none() {
            for e in &entries {
                self.remove_stored(e);
            }
            return;
        }
        let dead = entries
            .into_iter()
            .map(|e| (ReadyEntry::from(e), Reason::Rejected))
            .collect();
        self.dead_letter(dead);
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
            .filter(|e| e.redelivered && e.store_id() != 0)
        {
            store.set_redelivered(*id, e.seq);
        }
    }

    /// Takes the head message for basic.get; also returns how many remain ready.
    pub fn get(self: &Arc<Self>) -> Option<(QueueEntry, u32)> {
        let mut state = self.lock();
        let now = now_ms();
        state.last_used = now;
        if state.ready.next_expiry().is_some_and(|t| t <= now) {
            let mut dead = std::mem::take(&mut state.dead);
            state.ready.drop_expired(now, &mut dead);
            state.dead = dead;
        }
        let got = self.pop_loaded(&mut state).map(|e| {
            let left = state.ready.len as u32;
            (e, left)
        });
        self.finish(state);
        got
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
        let entries = entries
            .into_iter()
            .map(|mut entry| {
                entry.redelivered |= redelivered;
                ReadyEntry::from(entry)
            })
            .collect();
        state.ready.insert_many(entries);
        // Requeued messages count against the limits again: a drop-head queue drops
        // (dead-letters) from its head, as RabbitMQ does after a requeue.
        if self.args.overflow == Overflow::DropHead
            && (self.args.max_length.is_some() || self.args.max_length_bytes.is_some())
        {
            self.drop_head_over_limit(&mut state);
        }
        self.dispatch_locked(&mut state);
        self.finish(state);
    }

    /// Runs the dispatch loop, e.g. after consumers got credit back.
    pub fn dispatch(self: &Arc<Self>) {
        let mut state = self.lock();
        self.dispatch_locked(&mut state);
        if !state.dead.is_empty() || state.ready.next_expiry().is_some() {
            self.finish(state);
        }
    }

    fn dispatch_locked(self: &Arc<Self>, state: &mut QueueState) {
        let ttl = self.args.message_ttl.is_some() || state.ready.next_expiry().is_some();
        while !state.ready.is_empty() && !state.consumers.is_empty() {
            let Some(idx) = pick_consumer(state, self.args.single_active_consumer) else {
                if self.stall_on_full_connections(state) {
                    continue;
                }
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
            if ttl {
                // Expired messages are never delivered. A message published with a
                // TTL of 0 expires in the millisecond it arrived: it may still go to
                // a consumer that is ready now, so only earlier expiries count here.
                let now = now_ms().saturating_sub(1);
                if state.ready.next_expiry().is_some_and(|t| t <= now) {
                    let mut dead = std::mem::take(&mut state.dead);
                    state.ready.drop_expired(now, &mut dead);
                    state.dead = dead;
                }
            }
            let Some(entry) = self.pop_for_dispatch(state) else {
                state.consumers[idx].release();
                return;
            };
            let consumer = &state.consumers[idx];
            // Counted before sending: the consumer's connection may take the
            // delivery (and count it down) before this thread goes on. A no-ack
            // delivery leaves the store only once the connection writes it: until
            // then it can still come back to the queue.
            let congested = consumer.flow.added(entry.msg.body.len());
            let event = ConsumerEvent::Deliver {
                consumer: consumer.clone(),
                queue: self.clone(),
                entry,
            };
            match consumer.events.send(event) {
                Ok(()) => {
                    state.next_consumer = idx + 1;
                    if congested {
                        state.congested = Some(state.consumers[idx].flow.clone());
                    }
                }
                Err(failed) => {
                    // The consumer's connection is gone (its backlog count with it);
                    // its cleanup will remove the consumer.
                    if let ConsumerEvent::Deliver {
                        entry, consumer, ..
                    } = failed.0
                    {
                        consumer.flow.done(entry.msg.body.len());
                        consumer.release();
                        state.ready.push_front(ReadyEntry::from(entry));
                    }
                    state.consumers.remove(idx);
                }
            }
        }
    }

    /// When no consumer can take a message only because its connection is full,
    /// asks those connections to wake this queue once they drain. Returns true if
    /// one of them drained meanwhile (dispatch can go on).
    fn stall_on_full_connections(self: &Arc<Self>, state: &QueueState) -> bool {
        let mut stalled = false;
        for c in &state.consumers {
            if c.has_credit() && c.flow.full() {
                c.flow.stall(self);
                stalled = true;
            }
        }
        // Registered before looking again, so a connection that drains in between
        // either finds this queue in its list or leaves room seen here.
        stalled && pick_consumer(state, self.args.single_active_consumer).is_some()
    }

    /// Adds a consumer, enforcing consumer exclusivity, then dispatches.
    pub fn add_consumer(self: &Arc<Self>, consumer: Arc<Consumer>) -> BrokerResult<()> {
        let mut state = self.lock();
        if state.deleted {
            return Err(BrokerError::NotFound(format!(
                "no queue '{}' in vhost '{}'",
                self.name, self.vhost_name
            )));
        }
        if state.consumers.iter().any(|c| c.exclusive) {
            return Err(BrokerError::AccessRefused(format!(
                "queue '{}' in vhost '{}' in exclusive use",
                self.name, self.vhost_name
            )));
        }
        if consumer.exclusive && !state.consumers.is_empty() {
            return Err(BrokerError::AccessRefused(format!(
                "queue '{}' in vhost '{}' in exclusive use",
                self.name, self.vhost_name
            )));
        }
        state.consumers.push(consumer);
        state.had_consumer = true;
        self.dispatch_locked(&mut state);
        self.finish(state);
        Ok(())
    }

    /// Removes a consumer. Returns true if it was the last one of an auto-delete
    /// queue, which must now be deleted.
    pub fn remove_consumer(self: &Arc<Self>, consumer: &Arc<Consumer>) -> bool {
        let mut state = self.lock();
        let before = state.consumers.len();
        state.consumers.retain(|c| !Arc::ptr_eq(c, consumer));
        let removed = before != state.consumers.len();
        let last = removed && state.consumers.is_empty();
        if removed && self.args.single_active_consumer {
            // The next consumer in line takes over.
            self.dispatch_locked(&mut state);
        }
        let delete = last && self.auto_delete && state.had_consumer && !state.deleted;
        drop(state);
        if last && !delete {
            self.touch();
        }
        delete
    }

    pub fn message_count(&self) -> u32 {
        self.lock().ready.len as u32
    }

    pub fn consumer_count(&self) -> u32 {
        self.lock().consumers.len() as u32
    }

    /// Drops every ready message; returns how many.
    pub fn purge(&self) -> u32 {
        let mut state = self.lock();
        let all = state.ready.take_all();
        state.recent.clear();
        drop(state);
        for entry in &all {
            self.remove_stored_id(entry.seq, entry.store_id());
        }
        all.len() as u32
    }

    /// Checks queue.delete's if-unused / if-empty conditions.
    pub fn check_delete(&self, if_unused: bool, if_empty: bool) -> BrokerResult<()> {
        let state = self.lock();
        if if_unused && !state.consumers.is_empty() {
            return Err(BrokerError::PreconditionFailed(format!(
                "queue '{}' in vhost '{}' in use",
                self.name, self.vhost_name
            )));
        }
        if if_empty && !state.ready.is_empty() {
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
        for c in state.consumers.drain(..) {
            let _ = c.events.send(ConsumerEvent::Cancelled {
                channel: c.channel,
                consumer_tag: c.tag.clone(),
            });
        }
        let n = state.ready.len as u32;
        state.ready.take_all();
        state.recent.clear();
        if let Some((store, id)) = &self.stored {
            store.delete_queue(&self.vhost_name, self.name.as_str(), *id);
        }
        n
    }
}

/// The consumer with free credit and the highest priority, scanning round-robin from
/// where the last delivery went.
fn pick_consumer(state: &QueueState, single_active: bool) -> Option<usize> {
    if single_active {
        // Only the first consumer in line receives.
        return state.consumers.first().filter(|c| c.has_room()).map(|_| 0);
    }
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
