//! A classic queue's messages: offered (with the length limits and `x-overflow`),
//! taken by basic.get, requeued, expired and dead-lettered.

use super::paging::{PAGE_IN_BATCH, handed_out};
use super::ready::ReadyEntry;
use super::{Enqueued, Published, Queue, QueueEntry, QueueState};
use crate::broker::args::Overflow;
use crate::broker::deadletter::Reason;
use crate::model::paged::PagedRun;
use crate::model::{Message, Slot, now_ms};
use std::collections::HashMap;
use std::sync::{Arc, MutexGuard};

/// Most expired messages dropped in one go: the timer comes back at once for more,
/// so that millions expiring together never sit in one list.
pub(super) const EXPIRE_BATCH: usize = 16_384;

impl Queue {
    /// When a message offered now expires: the queue's TTL or the message's own
    /// `expiration`, whichever is sooner (0: never).
    pub(super) fn expiry_of(message_ttl: Option<u64>, msg: &Message) -> u64 {
        let own = msg.ttl();
        let ttl = match (message_ttl, own) {
            (Some(a), Some(b)) => a.min(b),
            (a, b) => match a.or(b) {
                Some(t) => t,
                None => return 0,
            },
        };
        // 0 stands for "never", so an immediate expiry is the current millisecond
        // rounded up to at least 1.
        // A policy's TTL has no upper bound: saturate rather than wrap.
        now_ms().saturating_add(ttl).max(1)
    }

    /// Offers a message: enforces the length limits, appends it and dispatches.
    /// `solo`: this queue is the only durable one the message went to, and stores
    /// it with its entry (else its body is stored already).
    pub fn publish(self: &Arc<Self>, msg: Arc<Message>, solo: bool) -> Published {
        if let Some(s) = &self.stream {
            return Published {
                outcome: s.append(msg).map_or(Enqueued::Gone, Enqueued::Yes),
                congested: None,
            };
        }
        let mut state = self.lock();
        if state.deleted {
            return Published {
                outcome: Enqueued::Gone,
                congested: None,
            };
        }
        let size = msg.body.len() as u64;
        let settings = &state.settings;
        let over = settings
            .max_length
            .is_some_and(|m| state.ready.len as u64 >= m)
            || settings
                .max_length_bytes
                .is_some_and(|m| state.ready.bytes + size > m);
        let overflow = settings.overflow;
        if over && overflow != Overflow::DropHead {
            if overflow == Overflow::RejectPublishDlx {
                let entry = ReadyEntry {
                    seq: super::NOT_ENQUEUED,
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
        let expires = Queue::expiry_of(state.settings.message_ttl, &msg);
        // Sent under the lock, so the store sees the enqueue before any ack of it.
        let mut ticket = 0;
        let mut slot = None;
        if let Some((store, id)) = &self.stored
            && msg.store_id != 0
        {
            ticket = if solo {
                store.put_solo(*id, seq, msg.clone(), expires)
            } else {
                store.enqueue(*id, seq, msg.store_id, expires)
            };
            if state.ready.len >= store.page_after() {
                // Past the in-memory budget: only the index entry stays in memory; it
                // is read back once this ticket is committed.
                slot = Some(Slot::Paged {
                    store_id: msg.store_id,
                    body_len: msg.body.len() as u32,
                    priority: msg.priority(),
                });
            }
        }
        let entry = ReadyEntry {
            seq,
            slot: slot.unwrap_or(Slot::Loaded(msg)),
            redelivered: false,
            expires,
        };
        state.ready.push_back(entry, ticket);
        self.dispatch_locked(&mut state);
        if state.settings.max_length.is_some() || state.settings.max_length_bytes.is_some() {
            self.drop_head_over_limit(&mut state);
        }
        let congested = state.congested.take();
        // Counted under the queue's lock, which makes this its only writer.
        self.stats.published_locked();
        self.finish(state);
        Published {
            outcome: Enqueued::Yes(ticket),
            congested,
        }
    }

    /// Drops (dead-letters) messages from the head until the queue is within its limits.
    pub(super) fn drop_head_over_limit(&self, state: &mut QueueState) {
        let max_len = state.settings.max_length.unwrap_or(u64::MAX);
        let max_bytes = state.settings.max_length_bytes.unwrap_or(u64::MAX);
        while state.ready.len as u64 > max_len || state.ready.bytes > max_bytes {
            let Some(e) = state.ready.pop_front() else {
                break;
            };
            state.dead.push((e, Reason::Maxlen));
        }
    }

    /// Ends a change of state: drops expired heads, arms the timers, releases the
    /// lock, then dead-letters what died meanwhile.
    pub(super) fn finish(self: &Arc<Self>, mut state: MutexGuard<'_, QueueState>) {
        // While earlier dead letters still wait to be read back, expiry waits too:
        // their task comes back here after each batch.
        if let Some(next) = state.ready.next_expiry()
            && self.dead_letter_backlog() < 2
        {
            let now = now_ms();
            if next <= now {
                let mut dead = std::mem::take(&mut state.dead);
                state.ready.drop_expired(now, &mut dead, EXPIRE_BATCH);
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
    pub(super) fn dead_letter(self: &Arc<Self>, dead: Vec<(ReadyEntry, Reason)>) {
        if !self.has_dead_letter_exchange() {
            self.forget_dropped(dead);
            return;
        }
        if dead.iter().any(|(e, _)| e.is_paged()) || self.dead_letters_waiting() {
            self.dead_letter_later(dead);
            return;
        }
        self.publish_dead_letters(dead, &mut HashMap::new());
    }

    /// Forgets the stored copies of dropped messages; those paged out go to the
    /// store as runs, so that millions expiring cost little while they wait for it.
    fn forget_dropped(&self, dead: Vec<(ReadyEntry, Reason)>) {
        let Some((store, id)) = &self.stored else {
            return;
        };
        let mut run = PagedRun::new();
        for (e, _) in dead {
            let paged = match e.slot {
                Slot::Paged {
                    store_id, body_len, ..
                } => crate::model::paged::PagedEntry {
                    seq: e.seq,
                    store_id,
                    expires: e.expires,
                    body_len,
                    redelivered: e.redelivered,
                },
                Slot::Loaded(m) => {
                    self.remove_stored_id(e.seq, m.store_id);
                    continue;
                }
            };
            if !run.push(paged, 0) {
                store.remove_run(*id, std::mem::replace(&mut run, PagedRun::new()));
                run.push(paged, 0);
            }
        }
        if !run.is_empty() {
            store.remove_run(*id, run);
        }
    }

    /// Publishes dead letters to the dead-letter exchange (paged-out ones with their
    /// messages in `found`; those missing are dropped), then forgets their stored
    /// copies.
    pub(super) fn publish_dead_letters(
        &self,
        dead: Vec<(ReadyEntry, Reason)>,
        found: &mut HashMap<u64, Arc<Message>>,
    ) {
        if let Some((exchange, routing_key)) = self.dead_letter_target()
            && let Some(vhost) = self.vhost.upgrade()
        {
            let mut loaded = Vec::with_capacity(dead.len());
            for (e, reason) in &dead {
                let msg = match &e.slot {
                    Slot::Loaded(m) => Some(m.clone()),
                    Slot::Paged { store_id, .. } => found.remove(store_id),
                };
                match msg {
                    Some(msg) => {
                        let entry = QueueEntry {
                            seq: e.seq,
                            msg,
                            redelivered: e.redelivered,
                            expires: e.expires,
                        };
                        loaded.push((entry, *reason));
                    }
                    None => {
                        tracing::error!(queue = %self.name, seq = e.seq, "paged message unreadable, not dead-lettered");
                    }
                }
            }
            vhost.dead_letter(self, &exchange, routing_key.as_deref(), &loaded);
        }
        for (entry, _) in &dead {
            self.remove_stored_id(entry.seq, entry.store_id());
        }
    }

    /// Takes the head message for basic.get; also returns how many remain ready.
    /// A paged-out head is read back outside the queue lock (see
    /// [`Queue::read_paged`]): only this caller waits for the store.
    pub fn get(self: &Arc<Self>) -> Option<(QueueEntry, u32)> {
        if self.stream.is_some() {
            // Streams are read by consumers only (the channel refuses basic.get).
            return None;
        }
        loop {
            let mut state = self.lock();
            let now = now_ms();
            state.last_used = now;
            if state.ready.next_expiry().is_some_and(|t| t <= now) {
                let mut dead = std::mem::take(&mut state.dead);
                state.ready.drop_expired(now, &mut dead, EXPIRE_BATCH);
                state.dead = dead;
            }
            let Some(head) = state.ready.head() else {
                self.finish(state);
                return None;
            };
            if head.paged == 0 {
                let got = state.ready.pop_front().and_then(handed_out);
                let left = state.ready.len as u32;
                if state.ready.paged_soon(PAGE_IN_BATCH / 2)
                    && let Ok(runtime) = tokio::runtime::Handle::try_current()
                {
                    self.start_page_in(&mut state, &runtime);
                }
                self.finish(state);
                return got.map(|e| (e, left));
            }
            let (ids, ticket) = state.ready.paged_ahead(PAGE_IN_BATCH);
            self.finish(state);
            let mut found = self.read_paged(&ids, ticket);
            let mut state = self.lock();
            self.fill_paged(&mut state, &mut found, head.paged);
            self.finish(state);
        }
    }

    /// Puts messages back at their original positions. `redelivered` is false only
    /// for messages that never reached the client.
    pub fn requeue(
        self: &Arc<Self>,
        entries: impl IntoIterator<Item = QueueEntry>,
        redelivered: bool,
    ) {
        if let Some(s) = &self.stream {
            // Nothing leaves a stream: a requeue only gave the credit back.
            s.wake();
            return;
        }
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
        if state.settings.overflow == Overflow::DropHead
            && (state.settings.max_length.is_some() || state.settings.max_length_bytes.is_some())
        {
            self.drop_head_over_limit(&mut state);
        }
        self.dispatch_locked(&mut state);
        self.finish(state);
    }

    /// Rejected without requeue: dead-letters the messages, or drops them.
    pub fn discard(self: &Arc<Self>, entries: Vec<QueueEntry>) {
        if self.stream.is_some() {
            return;
        }
        if !self.has_dead_letter_exchange() {
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
}
