//! The order of a channel's replies. Every reply goes through [`Channel::defer`]: it
//! leaves at once while nothing waits, or joins the channel's `deferred` queue behind a
//! reply waiting for a store commit (a durable declare, a tx.commit), so replies keep
//! the order of their requests. Deliveries to a consumer whose consume-ok is held wait
//! behind it too.

use super::Channel;
use super::consume::consume_ok;
pub(super) use crate::broker::publish::Tickets;
use crate::broker::{Consumer, Queue, QueueEntry};
use crate::connection::Session;
use crate::model::Message;
use crate::protocol::Exception;
use crate::protocol::codec::write_content;
use amq_protocol::protocol::{AMQPClass, basic};
use std::collections::VecDeque;
use std::sync::Arc;

/// A reply held in order behind earlier ones (see [`Channel::defer`]).
pub(super) enum Reply {
    Method(AMQPClass),
    /// basic.get-ok, sent with its content.
    GetOk(basic::GetOk, Arc<Message>),
    /// basic.consume-ok: deliveries to the consumer wait behind it.
    ConsumeOk(Arc<Consumer>),
    /// A delivery to a consumer whose consume-ok was still held when it came.
    Deliver(Arc<Consumer>, Arc<Queue>, QueueEntry),
}

impl Channel {
    /// Whether replies are held (they wait for a store commit, or behind one that does).
    pub fn owes_replies(&self) -> bool {
        !self.deferred.is_empty()
    }

    /// Whether replies wait for a store commit.
    pub fn waiting_on_store(&self) -> bool {
        self.confirms
            .as_ref()
            .is_some_and(|c| !c.waiting.is_empty())
            || !self.deferred.is_empty()
    }

    /// Sends what became due: replies whose store commit reached the disk (and those
    /// held behind them), and publisher confirms (one basic.ack with `multiple` when
    /// several are due; basic.nack for publishes whose store commit failed) unless
    /// the channel is closing. A reply whose writes failed (a tx.commit, a durable
    /// declare) is not sent: the error returned closes the connection, as a broker
    /// that cannot write its store does.
    pub fn flush_confirms(&mut self, s: &mut Session) -> Option<Exception> {
        while let Some(&(tickets, _)) = self.deferred.front() {
            if tickets.last > s.committed {
                break;
            }
            if s.store
                .as_ref()
                .is_some_and(|st| st.failed(tickets.first, tickets.last))
            {
                return Some(Exception::store_failed());
            }
            if let Some((_, reply)) = self.deferred.pop_front() {
                self.send_reply(s, reply);
            }
        }
        if !self.closing {
            self.send_confirms(s);
        }
        None
    }

    pub(super) fn send_reply(&mut self, s: &mut Session, reply: Reply) {
        match reply {
            Reply::Method(method) => s.send(self.id, method),
            Reply::GetOk(get_ok, msg) => self.send_get_ok(s, get_ok, &msg),
            Reply::ConsumeOk(consumer) => s.send(self.id, consume_ok(&consumer)),
            Reply::Deliver(consumer, queue, entry) => self.deliver(s, &consumer, queue, entry),
        }
    }

    pub(super) fn send_get_ok(&self, s: &mut Session, get_ok: basic::GetOk, msg: &Message) {
        s.send(self.id, AMQPClass::Basic(basic::AMQPMethod::GetOk(get_ok)));
        write_content(
            &mut s.out,
            self.id,
            &msg.raw_properties,
            &msg.body,
            s.frame_max,
        );
    }

    pub(super) fn reply(&mut self, s: &mut Session, nowait: bool, method: AMQPClass) {
        if !nowait {
            self.defer(s, Tickets::default(), method);
        }
    }

    /// Replies once everything the store was asked so far is on disk: a durable
    /// declare, bind or delete is acknowledged only when it would survive a crash.
    pub(super) fn reply_stored(&mut self, s: &mut Session, nowait: bool, method: AMQPClass) {
        if !nowait {
            let mut tickets = Tickets::default();
            tickets.add(s.store.as_ref().map_or(0, |st| st.last_ticket()));
            self.defer(s, tickets, method);
        }
    }

    /// Sends a reply now, or once store tickets `tickets` commit and the replies
    /// before it went: every reply of the channel goes this way, so they keep the
    /// order of their requests. Nothing is allocated while nothing waits.
    pub(super) fn defer(&mut self, s: &mut Session, tickets: Tickets, method: AMQPClass) {
        if self.deferred.is_empty() && tickets.last == 0 {
            s.send(self.id, method);
        } else {
            self.deferred.push_back((tickets, Reply::Method(method)));
        }
    }

    /// basic.get-ok with its content, in order with the other replies.
    pub(super) fn reply_get_ok(
        &mut self,
        s: &mut Session,
        get_ok: basic::GetOk,
        msg: &Arc<Message>,
    ) {
        if self.deferred.is_empty() {
            self.send_get_ok(s, get_ok, msg);
        } else {
            self.deferred
                .push_back((Tickets::default(), Reply::GetOk(get_ok, msg.clone())));
        }
    }

    /// A delivery to a consumer whose consume-ok is held (behind a reply waiting for
    /// the store) waits behind it: a client must learn of a consumer before its
    /// deliveries. Returns the delivery when it can go now.
    pub(super) fn hold_before_consume_ok(
        &mut self,
        consumer: &Arc<Consumer>,
        queue: Arc<Queue>,
        entry: QueueEntry,
    ) -> Option<(Arc<Queue>, QueueEntry)> {
        let held = self
            .deferred
            .iter()
            .any(|(_, r)| matches!(r, Reply::ConsumeOk(c) if Arc::ptr_eq(c, consumer)));
        if !held {
            return Some((queue, entry));
        }
        self.deferred.push_back((
            Tickets::default(),
            Reply::Deliver(consumer.clone(), queue, entry),
        ));
        None
    }

    /// Gives the held deliveries back to their queues (the channel is going).
    pub(super) fn requeue_held(&mut self) {
        if !self
            .deferred
            .iter()
            .any(|(_, r)| matches!(r, Reply::Deliver(..)))
        {
            return;
        }
        let mut kept = VecDeque::with_capacity(self.deferred.len());
        for (tickets, reply) in self.deferred.drain(..) {
            match reply {
                Reply::Deliver(consumer, queue, entry) => {
                    consumer.release();
                    queue.requeue([entry], false);
                }
                other => kept.push_back((tickets, other)),
            }
        }
        self.deferred = kept;
    }
}
