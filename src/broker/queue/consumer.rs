//! Consumers and fair dispatch: ready messages go to the consumer with free credit and
//! the highest priority, round-robin among equals (or only to the single active
//! consumer), as events to its connection.

use super::flow::{Credit, Flow};
use super::ready::ReadyEntry;
use super::{ConsumerEvent, Queue, QueueState};
use crate::model::{BrokerError, BrokerResult, now_ms};
use amq_protocol::types::ShortString;
use std::sync::Arc;
use tokio::sync::mpsc::UnboundedSender;

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
    /// basic.consume's arguments, as the management API lists them.
    pub arguments: amq_protocol::types::FieldTable,
}

impl Consumer {
    /// A no-ack consumer takes no credit, but waits like the others while its
    /// channel's limit (basic.qos global) is used up, as in RabbitMQ.
    pub(super) fn has_room(&self) -> bool {
        self.has_credit() && !self.flow.full()
    }

    /// Room in the prefetch windows, whatever the connection's backlog.
    pub(super) fn has_credit(&self) -> bool {
        self.channel_credit.has_room() && (self.no_ack || self.credit.has_room())
    }

    /// Takes the credit of one delivery. The connection's backlog was checked by
    /// [`Consumer::has_room`] when the consumer was picked, under the queue lock; other
    /// queues may add to it meanwhile, which the bound tolerates.
    pub(super) fn try_acquire(&self) -> bool {
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

impl Queue {
    /// Runs the dispatch loop, e.g. after consumers got credit back.
    pub fn dispatch(self: &Arc<Self>) {
        if let Some(s) = &self.stream {
            s.wake();
            return;
        }
        let mut state = self.lock();
        self.dispatch_locked(&mut state);
        if !state.dead.is_empty() || state.ready.next_expiry().is_some() {
            self.finish(state);
        }
    }

    pub(super) fn dispatch_locked(self: &Arc<Self>, state: &mut QueueState) {
        let ttl = state.settings.message_ttl.is_some() || state.ready.next_expiry().is_some();
        while !state.ready.is_empty() && !state.consumers.is_empty() {
            let Some(idx) = pick_consumer(state) else {
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
                    state
                        .ready
                        .drop_expired(now, &mut dead, super::classic::EXPIRE_BATCH);
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
                    state.top_priority = top_priority(&state.consumers);
                }
            }
        }
    }

    /// When no consumer can take a message only because its connection is full,
    /// asks those connections to wake this queue once they drain. Returns true if
    /// one of them drained meanwhile (dispatch can go on).
    pub(super) fn stall_on_full_connections(self: &Arc<Self>, state: &QueueState) -> bool {
        let mut stalled = false;
        for c in &state.consumers {
            if c.has_credit() && c.flow.full() {
                c.flow.stall(self);
                stalled = true;
            }
        }
        // Registered before looking again, so a connection that drains in between
        // either finds this queue in its list or leaves room seen here.
        stalled && pick_consumer(state).is_some()
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
        state.top_priority = top_priority(&state.consumers);
        state.had_consumer = true;
        self.dispatch_locked(&mut state);
        self.finish(state);
        Ok(())
    }

    /// Removes a consumer. Returns true if it was the last one of an auto-delete
    /// queue, which must now be deleted.
    pub fn remove_consumer(self: &Arc<Self>, consumer: &Arc<Consumer>) -> bool {
        if let Some(s) = &self.stream {
            s.remove_consumer(consumer);
            return false;
        }
        let mut state = self.lock();
        let before = state.consumers.len();
        state.consumers.retain(|c| !Arc::ptr_eq(c, consumer));
        state.top_priority = top_priority(&state.consumers);
        let removed = before != state.consumers.len();
        let last = removed && state.consumers.is_empty();
        if removed && state.settings.single_active_consumer {
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
}

/// The consumer with free credit and the highest priority, scanning round-robin from
/// where the last delivery went.
pub(super) fn pick_consumer(state: &QueueState) -> Option<usize> {
    if state.settings.single_active_consumer {
        // Only the first consumer in line receives.
        return state.consumers.first().filter(|c| c.has_room()).map(|_| 0);
    }
    // Round-robin from where the last delivery went, taking the highest priority
    // with room: the first consumer of the top priority with room ends the search
    // (with many consumers, usually the first one looked at), and one that cannot
    // beat the best found is not asked about its room (atomics other threads write).
    let n = state.consumers.len();
    let mut best: Option<(usize, i32)> = None;
    for i in 0..n {
        let idx = (state.next_consumer + i) % n;
        let c = &state.consumers[idx];
        if best.is_some_and(|(_, p)| c.priority <= p) || !c.has_room() {
            continue;
        }
        if c.priority >= state.top_priority {
            return Some(idx);
        }
        best = Some((idx, c.priority));
    }
    best.map(|(idx, _)| idx)
}

/// The highest priority among `consumers` (0 when there are none).
fn top_priority(consumers: &[Arc<Consumer>]) -> i32 {
    consumers.iter().map(|c| c.priority).max().unwrap_or(0)
}
