//! One AMQP channel: its state, and the dispatch of its methods to one file per
//! concern of the spec's classes. `content` assembles published messages, `publish`
//! routes them (and confirms them), `consume` and `ack` handle deliveries and their
//! settlement, `tx` transactions, `declare` the exchange and queue classes, and `reply`
//! keeps every reply in the order of its request.

mod access;
mod ack;
mod consume;
mod content;
mod declare;
mod publish;
mod reply;
mod timeout;
mod tx;

use crate::broker::channels::{ChannelSlot, ChannelState, ChannelStats};
use crate::broker::queue::Credit;
use crate::broker::{Consumer, Queue};
use crate::connection::{Session, short};
use crate::model::BrokerError;
use crate::model::FastMap;
use crate::protocol::{Exception, ProtocolError};
use access::PublishGrants;
use ack::{Settle, Unacked};
use amq_protocol::protocol::{AMQPClass, basic, channel as chan, confirm};
use amq_protocol::types::ShortString;
use content::Incoming;
use publish::Confirms;
use reply::{Reply, Tickets};
use std::collections::VecDeque;
use std::sync::Arc;
use tx::Tx;

/// What the connection does with a channel after a frame.
pub enum After {
    Continue,
    /// The channel finished closing; forget it.
    Remove,
}

pub struct Channel {
    id: u16,
    /// channel.close was sent; everything but close-ok is discarded.
    closing: bool,
    /// The client closed the channel while replies still waited for the store:
    /// close-ok follows them, then the channel goes.
    closed_by_client: bool,
    incoming: Option<Incoming>,
    next_tag: u64,
    unacked: VecDeque<Unacked>,
    consumers: FastMap<ShortString, (Arc<Consumer>, Arc<Queue>)>,
    /// Where the next round of [`Channel::dispatch_consumer_queues`] starts.
    rotation: usize,
    /// basic.qos global=false: the limit given to consumers created from now on.
    consumer_prefetch: u32,
    /// basic.qos global=true: the limit shared by all the channel's consumers.
    channel_credit: Arc<Credit>,
    confirms: Option<Confirms>,
    tx: Option<Tx>,
    /// The last queue declared, used when a method names the queue "".
    last_queue: Option<ShortString>,
    routed: Vec<Arc<Queue>>,
    /// Replies held behind one waiting for a store commit (the store tickets each
    /// waits for, the reply), in the order of their requests.
    deferred: VecDeque<(Tickets, Reply)>,
    /// The private queue of this channel's direct reply-to consumer.
    reply_queue: Option<Arc<Queue>>,
    /// Exchanges this channel may publish to, as last checked.
    grants: PublishGrants,
    /// The channel has published: it counts as a publisher in the metrics.
    publisher: bool,
    /// The channel's entry in its connection's channel table (see
    /// [`Channel::sync_stats`]), removed when the channel is dropped.
    slot: ChannelSlot,
}

pub(super) fn precondition(detail: impl Into<String>) -> BrokerError {
    BrokerError::PreconditionFailed(detail.into())
}

impl Channel {
    pub fn new(id: u16, slot: ChannelSlot) -> Channel {
        Channel {
            id,
            closing: false,
            closed_by_client: false,
            incoming: None,
            next_tag: 1,
            unacked: VecDeque::new(),
            consumers: FastMap::default(),
            rotation: 0,
            consumer_prefetch: 0,
            channel_credit: Arc::new(Credit::new(0)),
            confirms: None,
            tx: None,
            last_queue: None,
            routed: Vec::new(),
            publisher: false,
            deferred: VecDeque::new(),
            reply_queue: None,
            grants: PublishGrants::default(),
            slot,
        }
    }

    /// This channel's event counters.
    pub(super) fn stats(&self) -> &ChannelStats {
        &self.slot.stats
    }

    /// Stores the channel's state where the management API reads it: a few relaxed
    /// stores, after each method or delivery the channel handled.
    pub fn sync_stats(&self) {
        let (unconfirmed, confirm) = match &self.confirms {
            Some(c) => (c.published.saturating_sub(c.sent), true),
            None => (0, false),
        };
        let (uncommitted, acks_uncommitted) = match &self.tx {
            Some(t) => (
                t.publishes.len() as u64,
                t.settles.iter().map(|(items, _)| items.len() as u64).sum(),
            ),
            None => (0, 0),
        };
        self.slot.stats.store(&ChannelState {
            prefetch_count: self.consumer_prefetch,
            global_prefetch_count: self.channel_credit.limit(),
            confirm,
            transactional: self.tx.is_some(),
            messages_unacknowledged: self.unacked.len() as u64,
            messages_unconfirmed: unconfirmed,
            messages_uncommitted: uncommitted,
            acks_uncommitted,
            consumer_count: self.consumers.len() as u32,
        });
    }

    /// Whether `consumer` is (still) one of this channel's consumers.
    pub fn owns(&self, consumer: &Arc<Consumer>) -> bool {
        !self.closing
            && self
                .consumers
                .get(&consumer.tag)
                .is_some_and(|(c, _)| Arc::ptr_eq(c, consumer))
    }

    /// Closed by the client, with close-ok sent after the replies before it.
    pub fn finished(&self) -> bool {
        self.closed_by_client && self.deferred.is_empty()
    }

    /// Sends channel.close for a channel error (after the replies to the methods
    /// before it) and releases what the channel held.
    pub fn fail(&mut self, s: &mut Session, e: &Exception) {
        let close = AMQPClass::Channel(chan::AMQPMethod::Close(chan::Close {
            reply_code: e.code,
            reply_text: short(&e.text),
            class_id: e.class_id,
            method_id: e.method_id,
        }));
        self.defer(s, Tickets::default(), close);
        self.release(s);
        self.closing = true;
    }

    /// Requeues unacked messages and removes the consumers (channel closing).
    pub fn release(&mut self, s: &mut Session) {
        if self.publisher {
            self.publisher = false;
            s.metrics
                .publishers
                .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        }
        self.requeue_held();
        self.incoming = None;
        if let Some(tx) = self.tx.as_mut() {
            tx.publishes.clear();
            let settles = std::mem::take(&mut tx.settles);
            for (items, _) in settles {
                self.unacked.extend(items);
            }
            self.unacked.make_contiguous().sort_by_key(|u| u.tag);
        }
        let tags: Vec<ShortString> = self.consumers.keys().cloned().collect();
        for tag in tags {
            self.remove_consumer(s, &tag);
        }
        let all: Vec<Unacked> = self.unacked.drain(..).collect();
        self.settle(all, Settle::Requeue);
    }

    fn remove_consumer(&mut self, s: &mut Session, tag: &ShortString) {
        let Some((consumer, queue)) = self.consumers.remove(tag) else {
            return;
        };
        if self
            .reply_queue
            .as_ref()
            .is_some_and(|r| Arc::ptr_eq(r, &queue))
        {
            self.reply_queue = None;
            s.vhost.remove_reply_queue(&queue);
        } else if queue.remove_consumer(&consumer) {
            s.vhost.remove_queue(&queue);
        }
    }

    fn handle_method(&mut self, s: &mut Session, method: AMQPClass) -> Result<After, Failure> {
        match method {
            AMQPClass::Basic(m) => self.handle_basic(s, m)?,
            AMQPClass::Channel(m) => return self.channel_method(s, m),
            AMQPClass::Exchange(m) => self.exchange_method(s, m)?,
            AMQPClass::Queue(m) => self.queue_method(s, m)?,
            AMQPClass::Confirm(confirm::AMQPMethod::Select(sel)) => {
                self.select_confirms(s, sel.nowait)?;
            }
            AMQPClass::Tx(m) => self.handle_tx(s, m)?,
            AMQPClass::Access(_) => {
                return Err(Failure::Protocol(ProtocolError::NotImplemented(
                    "access.request".into(),
                )));
            }
            _ => return Err(command_invalid("this")),
        }
        Ok(After::Continue)
    }

    /// The basic class: publishing, consuming and settling each have their file.
    fn handle_basic(&mut self, s: &mut Session, m: basic::AMQPMethod) -> Result<(), Failure> {
        match m {
            basic::AMQPMethod::Publish(p) => self.start_publish(s, p),
            basic::AMQPMethod::Qos(qos) => {
                self.qos(s, &qos);
                Ok(())
            }
            basic::AMQPMethod::Consume(c) => self.consume(s, c),
            basic::AMQPMethod::Cancel(c) => {
                self.cancel(s, c);
                Ok(())
            }
            basic::AMQPMethod::Get(g) => self.get(s, g),
            basic::AMQPMethod::Ack(a) => self.ack(s, a.delivery_tag, a.multiple),
            basic::AMQPMethod::Nack(n) => self.nack(n.delivery_tag, n.multiple, n.requeue),
            basic::AMQPMethod::Reject(r) => self.nack(r.delivery_tag, false, r.requeue),
            basic::AMQPMethod::Recover(r) => {
                self.recover(r.requeue)?;
                self.reply(
                    s,
                    false,
                    AMQPClass::Basic(basic::AMQPMethod::RecoverOk(basic::RecoverOk {})),
                );
                Ok(())
            }
            basic::AMQPMethod::RecoverAsync(r) => self.recover(r.requeue),
            _ => Err(command_invalid("basic")),
        }
    }

    /// The channel class: close, flow; open only once.
    fn channel_method(&mut self, s: &mut Session, m: chan::AMQPMethod) -> Result<After, Failure> {
        match m {
            chan::AMQPMethod::Close(_) => {
                self.release(s);
                let close_ok = AMQPClass::Channel(chan::AMQPMethod::CloseOk(chan::CloseOk {}));
                if self.deferred.is_empty() {
                    s.send(self.id, close_ok);
                    return Ok(After::Remove);
                }
                // Replies to earlier methods go first, as in RabbitMQ.
                self.defer(s, Tickets::default(), close_ok);
                self.closed_by_client = true;
                Ok(After::Continue)
            }
            chan::AMQPMethod::CloseOk(_) => Ok(After::Remove),
            chan::AMQPMethod::Open(_) => Err(Failure::Protocol(ProtocolError::Channel(
                "second 'channel.open' seen".into(),
            ))),
            chan::AMQPMethod::Flow(f) if f.active => {
                self.reply(
                    s,
                    false,
                    AMQPClass::Channel(chan::AMQPMethod::FlowOk(chan::FlowOk { active: true })),
                );
                Ok(After::Continue)
            }
            chan::AMQPMethod::Flow(_) => Err(Failure::Protocol(ProtocolError::NotImplemented(
                "active=false".into(),
            ))),
            _ => Err(command_invalid("channel")),
        }
    }
}

/// Why a channel method failed, before it becomes an [`Exception`].
pub(super) enum Failure {
    Broker(BrokerError),
    Protocol(ProtocolError),
}

impl From<BrokerError> for Failure {
    fn from(e: BrokerError) -> Self {
        Failure::Broker(e)
    }
}

pub(super) fn command_invalid(class: &str) -> Failure {
    Failure::Protocol(ProtocolError::CommandInvalid(format!(
        "method not allowed from a client on the {class} class"
    )))
}
