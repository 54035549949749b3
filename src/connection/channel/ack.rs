//! basic.ack, basic.nack, basic.reject and basic.recover: how the deliveries a client
//! holds are settled, and how their queues and prefetch credit hear of it.

use super::{Channel, Failure, precondition};
use crate::broker::{Consumer, Queue, QueueEntry};
use crate::connection::Session;
use crate::metrics::tally::bump;
use crate::protocol::ProtocolError;
use std::sync::Arc;

/// A delivery the client has not settled yet.
pub(super) struct Unacked {
    pub(super) tag: u64,
    pub(super) queue: Arc<Queue>,
    pub(super) entry: QueueEntry,
    /// None for basic.get deliveries, which use no prefetch credit.
    pub(super) consumer: Option<Arc<Consumer>>,
    /// When it was delivered, on the coarse clock (for the consumer timeout).
    pub(super) at: u64,
}

/// How settled deliveries end.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Settle {
    Ack,
    Requeue,
    Drop,
}

impl Channel {
    /// basic.ack.
    pub(super) fn ack(&mut self, s: &Session, tag: u64, multiple: bool) -> Result<(), Failure> {
        let items = self.take_unacked(tag, multiple)?;
        bump(&s.tally.acknowledged, items.len() as u64);
        bump(&self.stats().acknowledged, items.len() as u64);
        self.settle_or_defer(items, Settle::Ack);
        Ok(())
    }

    /// basic.nack, and basic.reject (a nack of one delivery).
    pub(super) fn nack(&mut self, tag: u64, multiple: bool, requeue: bool) -> Result<(), Failure> {
        let items = self.take_unacked(tag, multiple)?;
        let how = if requeue {
            Settle::Requeue
        } else {
            Settle::Drop
        };
        self.settle_or_defer(items, how);
        Ok(())
    }

    pub(super) fn recover(&mut self, requeue: bool) -> Result<(), Failure> {
        if !requeue {
            return Err(Failure::Protocol(ProtocolError::NotImplemented(
                "requeue=false".into(),
            )));
        }
        let all: Vec<Unacked> = self.unacked.drain(..).collect();
        self.settle(all, Settle::Requeue);
        Ok(())
    }

    /// Removes deliveries from the unacked list: one tag, or with `multiple` every
    /// tag up to it (0 meaning all), as RabbitMQ's rules.
    pub(super) fn take_unacked(
        &mut self,
        tag: u64,
        multiple: bool,
    ) -> Result<Vec<Unacked>, Failure> {
        if multiple && tag == 0 {
            return Ok(self.unacked.drain(..).collect());
        }
        let Ok(at) = self.unacked.binary_search_by_key(&tag, |u| u.tag) else {
            return Err(precondition(format!("unknown delivery tag {tag}")).into());
        };
        if multiple {
            Ok(self.unacked.drain(..=at).collect())
        } else {
            Ok(self.unacked.remove(at).into_iter().collect())
        }
    }

    pub(super) fn settle_or_defer(&mut self, items: Vec<Unacked>, how: Settle) {
        match self.tx.as_mut() {
            Some(t) => t.settles.push((items, how)),
            None => self.settle(items, how),
        }
    }

    pub(super) fn settle(&mut self, items: Vec<Unacked>, how: Settle) {
        let mut touched: Vec<Arc<Queue>> = Vec::new();
        let mut requeue: Vec<(Arc<Queue>, Vec<QueueEntry>)> = Vec::new();
        for u in items {
            if let Some(c) = &u.consumer {
                c.release();
            }
            u.queue.count_unacked(-1);
            match how {
                Settle::Ack | Settle::Drop => {
                    if how == Settle::Ack {
                        u.queue.stats.acked(1);
                        if let Some(c) = &u.consumer {
                            u.queue.stream_acked(c, u.entry.seq);
                        }
                    }
                    if how == Settle::Ack || !u.queue.has_dead_letter_exchange() {
                        u.queue.remove_stored(&u.entry);
                    } else {
                        u.queue.discard(vec![u.entry]);
                    }
                    if !touched.iter().any(|q| Arc::ptr_eq(q, &u.queue)) {
                        touched.push(u.queue);
                    }
                }
                Settle::Requeue => match requeue.iter_mut().find(|(q, _)| Arc::ptr_eq(q, &u.queue))
                {
                    Some((_, entries)) => entries.push(u.entry),
                    None => requeue.push((u.queue, vec![u.entry])),
                },
            }
        }
        for (queue, entries) in requeue {
            queue.requeue(entries, true);
        }
        if self.channel_credit_limited() {
            // The channel's shared credit came back: its queues take turns at it,
            // rather than the acked message's queue always taking it again.
            self.dispatch_consumer_queues();
        }
        for queue in touched {
            queue.dispatch();
        }
    }
}
