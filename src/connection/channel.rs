//! Per-channel state and the handlers of the channel-level AMQP methods: content
//! assembly, publishing (with confirms and transactions), consumers, deliveries and
//! their acknowledgements.

use crate::broker::args::integer;
use crate::broker::queue::Credit;
use crate::broker::vhost::REPLY_TO;
use crate::broker::vhost::{ExchangeDeclare, QueueDeclare};
use crate::broker::{Consumer, Enqueued, Queue, QueueEntry, random_name};
use crate::connection::{Session, short};
use crate::model::fields::type_name;
use crate::model::message::{BCC, has_header_routes, header_routes, parse_expiration, without_bcc};
use crate::model::{BrokerError, Message};
use crate::protocol::Exception;
use crate::protocol::codec::{ContentHeader, write_content};
use crate::protocol::{Frame, ProtocolError};
use crate::store::Store;
use amq_protocol::protocol::{
    AMQPClass, basic, channel as chan, confirm, exchange, queue as q, tx,
};
use amq_protocol::types::ShortString;
use bytes::{Bytes, BytesMut};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

/// What the connection does with a channel after a frame.
pub enum After {
    Continue,
    /// The channel finished closing; forget it.
    Remove,
}

/// A publish whose content is still arriving.
struct Incoming {
    publish: basic::Publish,
    header: Option<Box<ContentHeader>>,
    body: Vec<Bytes>,
    received: u64,
}

/// A delivery the client has not settled yet.
struct Unacked {
    tag: u64,
    queue: Arc<Queue>,
    entry: QueueEntry,
    /// None for basic.get deliveries, which use no prefetch credit.
    consumer: Option<Arc<Consumer>>,
}

/// How settled deliveries end.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Settle {
    Ack,
    Requeue,
    Drop,
}

struct TxPublish {
    queues: Vec<Arc<Queue>>,
    msg: Arc<Message>,
    mandatory: bool,
}

#[derive(Default)]
struct Tx {
    publishes: Vec<TxPublish>,
    settles: Vec<(Vec<Unacked>, Settle)>,
}

/// The store tickets a publish's writes took: the first and the last (0: none).
#[derive(Clone, Copy, Default)]
struct Tickets {
    first: u64,
    last: u64,
}

impl Tickets {
    fn add(&mut self, ticket: u64) {
        if ticket == 0 {
            return;
        }
        if self.first == 0 {
            self.first = ticket;
        }
        self.last = self.last.max(ticket);
    }
}

#[derive(Default)]
struct Confirms {
    /// Sequence number of the last publish.
    published: u64,
    /// Highest sequence number acknowledged (or nacked) to the client.
    sent: u64,
    /// Publishes waiting for a store commit: (sequence number, first and last store
    /// ticket of its writes, whether
    /// a queue refused it and it gets basic.nack).
    waiting: VecDeque<(u64, Tickets, bool)>,
}

/// A reply held in order behind earlier ones (see [`Channel::defer`]).
enum Reply {
    Method(AMQPClass),
    /// basic.get-ok, sent with its content.
    GetOk(basic::GetOk, Arc<Message>),
    /// basic.consume-ok: deliveries to the consumer wait behind it.
    ConsumeOk(Arc<Consumer>),
    /// A delivery to a consumer whose consume-ok was still held when it came.
    Deliver(Arc<Consumer>, Arc<Queue>, QueueEntry),
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
    consumers: HashMap<ShortString, (Arc<Consumer>, Arc<Queue>)>,
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
}

fn precondition(detail: impl Into<String>) -> BrokerError {
    BrokerError::PreconditionFailed(detail.into())
}

impl Channel {
    pub fn new(id: u16) -> Channel {
        Channel {
            id,
            closing: false,
            closed_by_client: false,
            incoming: None,
            next_tag: 1,
            unacked: VecDeque::new(),
            consumers: HashMap::new(),
            rotation: 0,
            consumer_prefetch: 0,
            channel_credit: Arc::new(Credit::new(0)),
            confirms: None,
            tx: None,
            last_queue: None,
            routed: Vec::new(),
            deferred: VecDeque::new(),
            reply_queue: None,
        }
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

    pub fn handle_frame(&mut self, s: &mut Session, frame: Frame) -> Result<After, Exception> {
        if self.closed_by_client {
            // Waiting to send close-ok; the client sends nothing meanwhile.
            return Ok(After::Continue);
        }
        if self.closing {
            return Ok(match frame {
                Frame::Method(_, m) => match *m {
                    AMQPClass::Channel(chan::AMQPMethod::CloseOk(_)) => After::Remove,
                    AMQPClass::Channel(chan::AMQPMethod::Close(_)) => {
                        let close_ok =
                            AMQPClass::Channel(chan::AMQPMethod::CloseOk(chan::CloseOk {}));
                        if self.deferred.is_empty() {
                            s.send(self.id, close_ok);
                            After::Remove
                        } else {
                            // After our channel.close and the replies before it.
                            self.defer(s, Tickets::default(), close_ok);
                            self.closed_by_client = true;
                            After::Continue
                        }
                    }
                    _ => After::Continue,
                },
                _ => After::Continue,
            });
        }
        match frame {
            Frame::Method(_, m) => {
                if let Some(incoming) = &self.incoming {
                    let detail = if incoming.header.is_none() {
                        "expected content header for class 60, got non content header frame instead"
                    } else {
                        "expected content body, got non content body frame instead"
                    };
                    // RabbitMQ names the method whose content was cut short.
                    return Err(Exception::new(505, detail, 60, 40));
                }
                let (class_id, method_id) = (m.get_amqp_class_id(), m.get_amqp_method_id());
                self.handle_method(s, *m).map_err(|e| match e {
                    Failure::Broker(e) => Exception::from_broker(e, class_id, method_id),
                    Failure::Protocol(e) => Exception::from_protocol(&e, class_id, method_id),
                })
            }
            Frame::MalformedHeader(_) => {
                if self.incoming.as_ref().is_some_and(|i| i.header.is_none()) {
                    return Err(Exception::from_protocol(
                        &ProtocolError::Frame("type 2: malformed content header".into()),
                        0,
                        0,
                    ));
                }
                Err(unexpected_frame(
                    "expected method frame, got non method frame instead",
                ))
            }
            Frame::Header(_, header) => {
                let Some(incoming) = self.incoming.as_mut().filter(|i| i.header.is_none()) else {
                    return Err(unexpected_frame(
                        "expected method frame, got non method frame instead",
                    ));
                };
                if header.class_id != 60 {
                    return Err(unexpected_frame(format!(
                        "expected content header for class 60, got one for class {} instead",
                        header.class_id
                    )));
                }
                let max = s.ctx.config.max_message_size;
                if header.body_size > max {
                    self.incoming = None;
                    let detail = if max == crate::config::Config::default().max_message_size {
                        format!(
                            "message size {} is larger than max size {max}",
                            header.body_size
                        )
                    } else {
                        format!(
                            "message size {} is larger than configured max size {max}",
                            header.body_size
                        )
                    };
                    return Err(Exception::from_broker(precondition(detail), 60, 40));
                }
                let done = header.body_size == 0;
                incoming.header = Some(header);
                if done {
                    self.finish_publish(s)?;
                }
                Ok(After::Continue)
            }
            Frame::Body(_, body) => {
                let Some(incoming) = self.incoming.as_mut() else {
                    return Err(unexpected_frame(
                        "expected method frame, got non method frame instead",
                    ));
                };
                let Some(header) = &incoming.header else {
                    return Err(unexpected_frame(
                        "expected content header for class 60, got non content header frame instead",
                    ));
                };
                incoming.received += body.len() as u64;
                if incoming.received > header.body_size {
                    return Err(Exception::new(
                        501,
                        "content body frame exceeds remaining content size",
                        60,
                        40,
                    ));
                }
                let done = incoming.received == header.body_size;
                incoming.body.push(body);
                if done {
                    self.finish_publish(s)?;
                }
                Ok(After::Continue)
            }
            Frame::Heartbeat(_) => Ok(After::Continue),
        }
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

    /// A queue cancelled one of our consumers (it was deleted).
    pub fn cancelled_by_server(&mut self, s: &mut Session, tag: &ShortString) {
        if self.consumers.remove(tag).is_some() && s.consumer_cancel_notify && !self.closing {
            // After any reply still waiting for the store (the queue.delete-ok of
            // the queue that went, say), as RabbitMQ orders them.
            let cancel = AMQPClass::Basic(basic::AMQPMethod::Cancel(basic::Cancel {
                consumer_tag: tag.clone(),
                nowait: true,
            }));
            self.defer(s, Tickets::default(), cancel);
        }
    }

    /// A delivery to a consumer whose consume-ok is held (behind a reply waiting for
    /// the store) waits behind it: a client must learn of a consumer before its
    /// deliveries. Returns the delivery when it can go now.
    fn hold_before_consume_ok(
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
    fn requeue_held(&mut self) {
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

    /// Writes a delivery from a queue to the client.
    pub fn deliver(
        &mut self,
        s: &mut Session,
        consumer: &Arc<Consumer>,
        queue: Arc<Queue>,
        entry: QueueEntry,
    ) {
        let Some((queue, entry)) = self.hold_before_consume_ok(consumer, queue, entry) else {
            return;
        };
        let tag = self.next_tag;
        self.next_tag += 1;
        let msg = &entry.msg;
        s.send(
            self.id,
            AMQPClass::Basic(basic::AMQPMethod::Deliver(basic::Deliver {
                consumer_tag: consumer.tag.clone(),
                delivery_tag: tag,
                redelivered: entry.redelivered,
                exchange: msg.exchange.clone(),
                routing_key: msg.routing_key.clone(),
            })),
        );
        write_content(
            &mut s.out,
            self.id,
            &msg.raw_properties,
            &msg.body,
            s.frame_max,
        );
        if consumer.no_ack {
            // Written: the message has left the queue for good.
            queue.remove_stored(&entry);
        } else {
            self.unacked.push_back(Unacked {
                tag,
                queue,
                entry,
                consumer: Some(consumer.clone()),
            });
        }
    }

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
                return Some(Exception::new(
                    541,
                    "the message store could not write to disk",
                    0,
                    0,
                ));
            }
            if let Some((_, reply)) = self.deferred.pop_front() {
                self.send_reply(s, reply);
            }
        }
        if self.closing {
            return None;
        }
        let c = self.confirms.as_mut()?;
        while let Some(&(seq, tickets, refused)) = c.waiting.front() {
            if tickets.last > s.committed {
                break;
            }
            c.waiting.pop_front();
            // A publish's writes (body, then one index entry per queue) may span
            // several commits: it is confirmed only if none of them failed.
            let failed = |st: &Arc<Store>| st.failed(tickets.first, tickets.last);
            if refused || s.store.as_ref().is_some_and(failed) {
                send_ack(s, self.id, c, seq - 1);
                s.send(
                    self.id,
                    AMQPClass::Basic(basic::AMQPMethod::Nack(basic::Nack {
                        delivery_tag: seq,
                        multiple: false,
                        requeue: false,
                    })),
                );
                c.sent = seq;
            }
        }
        let ready = c.waiting.front().map_or(c.published, |(seq, _, _)| seq - 1);
        send_ack(s, self.id, c, ready);
        None
    }

    fn send_reply(&mut self, s: &mut Session, reply: Reply) {
        match reply {
            Reply::Method(method) => s.send(self.id, method),
            Reply::GetOk(get_ok, msg) => self.send_get_ok(s, get_ok, &msg),
            Reply::ConsumeOk(consumer) => s.send(self.id, consume_ok(&consumer)),
            Reply::Deliver(consumer, queue, entry) => self.deliver(s, &consumer, queue, entry),
        }
    }

    fn send_get_ok(&self, s: &mut Session, get_ok: basic::GetOk, msg: &Message) {
        s.send(self.id, AMQPClass::Basic(basic::AMQPMethod::GetOk(get_ok)));
        write_content(
            &mut s.out,
            self.id,
            &msg.raw_properties,
            &msg.body,
            s.frame_max,
        );
    }

    fn reply(&mut self, s: &mut Session, nowait: bool, method: AMQPClass) {
        if !nowait {
            self.defer(s, Tickets::default(), method);
        }
    }

    /// Replies once everything the store was asked so far is on disk: a durable
    /// declare, bind or delete is acknowledged only when it would survive a crash.
    fn reply_stored(&mut self, s: &mut Session, nowait: bool, method: AMQPClass) {
        if !nowait {
            let mut tickets = Tickets::default();
            tickets.add(s.store.as_ref().map_or(0, |st| st.last_ticket()));
            self.defer(s, tickets, method);
        }
    }

    /// Sends a reply now, or once store tickets `tickets` commit and the replies
    /// before it went: every reply of the channel goes this way, so they keep the
    /// order of their requests. Nothing is allocated while nothing waits.
    fn defer(&mut self, s: &mut Session, tickets: Tickets, method: AMQPClass) {
        if self.deferred.is_empty() && tickets.last == 0 {
            s.send(self.id, method);
        } else {
            self.deferred.push_back((tickets, Reply::Method(method)));
        }
    }

    /// basic.get-ok with its content, in order with the other replies.
    fn reply_get_ok(&mut self, s: &mut Session, get_ok: basic::GetOk, msg: &Arc<Message>) {
        if self.deferred.is_empty() {
            self.send_get_ok(s, get_ok, msg);
        } else {
            self.deferred
                .push_back((Tickets::default(), Reply::GetOk(get_ok, msg.clone())));
        }
    }

    /// The queue, exchange and routing key of a queue.bind or unbind: names without
    /// CR and LF, an empty queue name meaning the last declared queue, and with it an
    /// empty routing key meaning that queue's name too (RabbitMQ's shortcuts).
    fn binding(
        &self,
        queue: ShortString,
        exchange: ShortString,
        key: ShortString,
    ) -> Result<(ShortString, ShortString, ShortString), Failure> {
        let queue = strip_cr_lf(queue);
        let name = self.queue_name(&queue)?;
        let key = if queue.as_str().is_empty() && key.as_str().is_empty() {
            name.clone()
        } else {
            key
        };
        Ok((name, strip_cr_lf(exchange), key))
    }

    fn queue_name(&self, name: &ShortString) -> Result<ShortString, Failure> {
        if !name.as_str().is_empty() {
            return Ok(name.clone());
        }
        self.last_queue.clone().ok_or_else(|| {
            Failure::Broker(BrokerError::NotFound("no previously declared queue".into()))
        })
    }

    fn handle_method(&mut self, s: &mut Session, method: AMQPClass) -> Result<After, Failure> {
        let conn_id = s.id;
        match method {
            AMQPClass::Basic(m) => return self.handle_basic(s, m).map(|()| After::Continue),
            AMQPClass::Channel(m) => match m {
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
                    return Ok(After::Continue);
                }
                chan::AMQPMethod::CloseOk(_) => return Ok(After::Remove),
                chan::AMQPMethod::Open(_) => {
                    return Err(Failure::Protocol(ProtocolError::Channel(
                        "second 'channel.open' seen".into(),
                    )));
                }
                chan::AMQPMethod::Flow(f) if f.active => self.reply(
                    s,
                    false,
                    AMQPClass::Channel(chan::AMQPMethod::FlowOk(chan::FlowOk { active: true })),
                ),
                chan::AMQPMethod::Flow(_) => {
                    return Err(Failure::Protocol(ProtocolError::NotImplemented(
                        "active=false".into(),
                    )));
                }
                _ => return Err(command_invalid("channel")),
            },
            AMQPClass::Exchange(m) => match m {
                exchange::AMQPMethod::Declare(d) => {
                    let name = strip_cr_lf(d.exchange);
                    s.vhost.declare_exchange(&ExchangeDeclare {
                        name: name.as_str(),
                        kind: d.kind.as_str(),
                        passive: d.passive,
                        durable: d.durable,
                        auto_delete: d.auto_delete,
                        internal: d.internal,
                        arguments: &d.arguments,
                    })?;
                    self.reply_stored(
                        s,
                        d.nowait,
                        AMQPClass::Exchange(exchange::AMQPMethod::DeclareOk(
                            exchange::DeclareOk {},
                        )),
                    );
                }
                exchange::AMQPMethod::Delete(d) => {
                    let name = strip_cr_lf(d.exchange);
                    s.vhost.delete_exchange(name.as_str(), d.if_unused)?;
                    self.reply_stored(
                        s,
                        d.nowait,
                        AMQPClass::Exchange(exchange::AMQPMethod::DeleteOk(exchange::DeleteOk {})),
                    );
                }
                exchange::AMQPMethod::Bind(b) => {
                    s.vhost.bind_exchange(
                        strip_cr_lf(b.destination).as_str(),
                        strip_cr_lf(b.source).as_str(),
                        b.routing_key.as_str(),
                        &b.arguments,
                    )?;
                    self.reply_stored(
                        s,
                        b.nowait,
                        AMQPClass::Exchange(exchange::AMQPMethod::BindOk(exchange::BindOk {})),
                    );
                }
                exchange::AMQPMethod::Unbind(b) => {
                    s.vhost.unbind_exchange(
                        strip_cr_lf(b.destination).as_str(),
                        strip_cr_lf(b.source).as_str(),
                        b.routing_key.as_str(),
                        &b.arguments,
                    )?;
                    self.reply_stored(
                        s,
                        b.nowait,
                        AMQPClass::Exchange(exchange::AMQPMethod::UnbindOk(exchange::UnbindOk {})),
                    );
                }
                _ => return Err(command_invalid("exchange")),
            },
            AMQPClass::Queue(m) => match m {
                q::AMQPMethod::Declare(d) => {
                    let mut d = d;
                    d.queue = strip_cr_lf(d.queue);
                    if d.queue.as_str().starts_with(REPLY_TO) {
                        s.vhost.declare_reply_to(d.queue.as_str())?;
                        self.reply(
                            s,
                            d.nowait,
                            AMQPClass::Queue(q::AMQPMethod::DeclareOk(q::DeclareOk {
                                queue: d.queue,
                                message_count: 0,
                                consumer_count: 1,
                            })),
                        );
                        return Ok(After::Continue);
                    }
                    let server_named = d.queue.as_str().is_empty() && !d.passive;
                    let name = if server_named {
                        ShortString::from(format!("amq.gen-{}", random_name()))
                    } else {
                        self.queue_name(&d.queue)?
                    };
                    let (_, message_count, consumer_count) =
                        s.vhost.declare_queue(&QueueDeclare {
                            name: name.as_str(),
                            passive: d.passive,
                            durable: d.durable,
                            exclusive: d.exclusive,
                            auto_delete: d.auto_delete,
                            arguments: &d.arguments,
                            connection_id: conn_id,
                            server_named,
                        })?;
                    self.last_queue = Some(name.clone());
                    self.reply_stored(
                        s,
                        d.nowait,
                        AMQPClass::Queue(q::AMQPMethod::DeclareOk(q::DeclareOk {
                            queue: name,
                            message_count,
                            consumer_count,
                        })),
                    );
                }
                q::AMQPMethod::Bind(b) => {
                    let (name, exchange, key) = self.binding(b.queue, b.exchange, b.routing_key)?;
                    s.vhost.bind_queue(
                        name.as_str(),
                        exchange.as_str(),
                        key.as_str(),
                        &b.arguments,
                        conn_id,
                    )?;
                    self.reply_stored(
                        s,
                        b.nowait,
                        AMQPClass::Queue(q::AMQPMethod::BindOk(q::BindOk {})),
                    );
                }
                q::AMQPMethod::Unbind(b) => {
                    let (name, exchange, key) = self.binding(b.queue, b.exchange, b.routing_key)?;
                    s.vhost.unbind_queue(
                        name.as_str(),
                        exchange.as_str(),
                        key.as_str(),
                        &b.arguments,
                        conn_id,
                    )?;
                    self.reply_stored(
                        s,
                        false,
                        AMQPClass::Queue(q::AMQPMethod::UnbindOk(q::UnbindOk {})),
                    );
                }
                q::AMQPMethod::Purge(p) => {
                    let name = self.queue_name(&p.queue)?;
                    let message_count = s.vhost.queue(name.as_str(), conn_id)?.purge();
                    self.reply_stored(
                        s,
                        p.nowait,
                        AMQPClass::Queue(q::AMQPMethod::PurgeOk(q::PurgeOk { message_count })),
                    );
                }
                q::AMQPMethod::Delete(d) => {
                    let name = self.queue_name(&strip_cr_lf(d.queue))?;
                    let message_count =
                        s.vhost
                            .delete_queue(name.as_str(), d.if_unused, d.if_empty, conn_id)?;
                    self.reply_stored(
                        s,
                        d.nowait,
                        AMQPClass::Queue(q::AMQPMethod::DeleteOk(q::DeleteOk { message_count })),
                    );
                }
                _ => return Err(command_invalid("queue")),
            },
            AMQPClass::Confirm(confirm::AMQPMethod::Select(sel)) => {
                if self.tx.is_some() {
                    return Err(precondition("cannot switch from tx to confirm mode").into());
                }
                if self.confirms.is_none() {
                    self.confirms = Some(Confirms::default());
                }
                self.reply(
                    s,
                    sel.nowait,
                    AMQPClass::Confirm(confirm::AMQPMethod::SelectOk(confirm::SelectOk {})),
                );
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

    fn handle_tx(&mut self, s: &mut Session, m: tx::AMQPMethod) -> Result<(), Failure> {
        match m {
            tx::AMQPMethod::Select(_) => {
                if self.confirms.is_some() {
                    return Err(precondition("cannot switch from confirm to tx mode").into());
                }
                if self.tx.is_none() {
                    self.tx = Some(Tx::default());
                }
                self.reply(
                    s,
                    false,
                    AMQPClass::Tx(tx::AMQPMethod::SelectOk(tx::SelectOk {})),
                );
            }
            tx::AMQPMethod::Commit(_) => {
                let Some(t) = self.tx.as_mut() else {
                    return Err(precondition("channel is not transactional").into());
                };
                let publishes = std::mem::take(&mut t.publishes);
                let settles = std::mem::take(&mut t.settles);
                let mut tickets = Tickets::default();
                let mut refused = false;
                for p in publishes {
                    let (t, r) = self.deliver_to_queues(s, &p.queues, p.msg, p.mandatory);
                    tickets.add(t.first);
                    tickets.add(t.last);
                    refused |= r;
                }
                for (items, how) in settles {
                    self.settle(items, how);
                }
                if refused {
                    // A full queue refused a message: RabbitMQ applies the rest, then
                    // fails the commit.
                    return Err(precondition("partial tx completion").into());
                }
                self.defer(
                    s,
                    tickets,
                    AMQPClass::Tx(tx::AMQPMethod::CommitOk(tx::CommitOk {})),
                );
            }
            tx::AMQPMethod::Rollback(_) => {
                let Some(t) = self.tx.as_mut() else {
                    return Err(precondition("channel is not transactional").into());
                };
                t.publishes.clear();
                let settles = std::mem::take(&mut t.settles);
                for (items, _) in settles {
                    self.unacked.extend(items);
                }
                self.unacked.make_contiguous().sort_by_key(|u| u.tag);
                self.reply(
                    s,
                    false,
                    AMQPClass::Tx(tx::AMQPMethod::RollbackOk(tx::RollbackOk {})),
                );
            }
            _ => return Err(command_invalid("tx")),
        }
        Ok(())
    }

    fn handle_basic(&mut self, s: &mut Session, m: basic::AMQPMethod) -> Result<(), Failure> {
        match m {
            basic::AMQPMethod::Publish(p) => {
                if p.immediate {
                    return Err(Failure::Protocol(ProtocolError::NotImplemented(
                        "immediate=true".into(),
                    )));
                }
                s.publisher = true;
                self.incoming = Some(Incoming {
                    publish: p,
                    header: None,
                    body: Vec::new(),
                    received: 0,
                });
            }
            basic::AMQPMethod::Qos(qos) => {
                if qos.global {
                    self.channel_credit.set_limit(u32::from(qos.prefetch_count));
                    self.dispatch_consumer_queues();
                } else {
                    self.consumer_prefetch = u32::from(qos.prefetch_count);
                }
                self.reply(
                    s,
                    false,
                    AMQPClass::Basic(basic::AMQPMethod::QosOk(basic::QosOk {})),
                );
            }
            basic::AMQPMethod::Consume(c) => self.consume(s, c)?,
            basic::AMQPMethod::Cancel(c) => {
                self.remove_consumer(s, &c.consumer_tag);
                self.reply(
                    s,
                    c.nowait,
                    AMQPClass::Basic(basic::AMQPMethod::CancelOk(basic::CancelOk {
                        consumer_tag: c.consumer_tag,
                    })),
                );
            }
            basic::AMQPMethod::Get(g) => {
                let name = self.queue_name(&g.queue)?;
                let queue = s.vhost.queue(name.as_str(), s.id)?;
                // The message is taken now; only the reply waits its turn.
                match queue.get() {
                    None => self.reply(
                        s,
                        false,
                        AMQPClass::Basic(basic::AMQPMethod::GetEmpty(basic::GetEmpty {})),
                    ),
                    Some((entry, message_count)) => {
                        let tag = self.next_tag;
                        self.next_tag += 1;
                        let get_ok = basic::GetOk {
                            delivery_tag: tag,
                            redelivered: entry.redelivered,
                            exchange: entry.msg.exchange.clone(),
                            routing_key: entry.msg.routing_key.clone(),
                            message_count,
                        };
                        self.reply_get_ok(s, get_ok, &entry.msg);
                        if g.no_ack {
                            queue.remove_stored(&entry);
                        } else {
                            self.unacked.push_back(Unacked {
                                tag,
                                queue,
                                entry,
                                consumer: None,
                            });
                        }
                    }
                }
            }
            basic::AMQPMethod::Ack(a) => {
                let items = self.take_unacked(a.delivery_tag, a.multiple)?;
                self.settle_or_defer(items, Settle::Ack);
            }
            basic::AMQPMethod::Nack(n) => {
                let items = self.take_unacked(n.delivery_tag, n.multiple)?;
                let how = if n.requeue {
                    Settle::Requeue
                } else {
                    Settle::Drop
                };
                self.settle_or_defer(items, how);
            }
            basic::AMQPMethod::Reject(r) => {
                let items = self.take_unacked(r.delivery_tag, false)?;
                let how = if r.requeue {
                    Settle::Requeue
                } else {
                    Settle::Drop
                };
                self.settle_or_defer(items, how);
            }
            basic::AMQPMethod::Recover(r) => {
                self.recover(r.requeue)?;
                self.reply(
                    s,
                    false,
                    AMQPClass::Basic(basic::AMQPMethod::RecoverOk(basic::RecoverOk {})),
                );
            }
            basic::AMQPMethod::RecoverAsync(r) => self.recover(r.requeue)?,
            _ => return Err(command_invalid("basic")),
        }
        Ok(())
    }

    fn recover(&mut self, requeue: bool) -> Result<(), Failure> {
        if !requeue {
            return Err(Failure::Protocol(ProtocolError::NotImplemented(
                "requeue=false".into(),
            )));
        }
        let all: Vec<Unacked> = self.unacked.drain(..).collect();
        self.settle(all, Settle::Requeue);
        Ok(())
    }

    fn consume(&mut self, s: &mut Session, c: basic::Consume) -> Result<(), Failure> {
        let name = self.queue_name(&c.queue)?;
        let tag = if c.consumer_tag.as_str().is_empty() {
            ShortString::from(format!("amq.ctag-{}", random_name()))
        } else {
            c.consumer_tag.clone()
        };
        if self.consumers.contains_key(&tag) {
            return Err(Failure::Protocol(ProtocolError::NotAllowed(format!(
                "attempt to reuse consumer tag '{tag}'"
            ))));
        }
        let queue = if name.as_str() == REPLY_TO {
            if !c.no_ack {
                return Err(precondition("reply consumer cannot acknowledge").into());
            }
            if self.reply_queue.is_some() {
                return Err(precondition("reply consumer already set").into());
            }
            let q = s.vhost.add_reply_queue(s.id);
            self.reply_queue = Some(q.clone());
            q
        } else {
            s.vhost.queue(name.as_str(), s.id)?
        };
        let priority = match c.arguments.inner().get("x-priority") {
            None => 0,
            Some(v) => integer(v).ok_or_else(|| {
                precondition(format!(
                    "invalid arg 'x-priority' for queue '{name}' in vhost '{}': \
                     \"expected integer, got {}\"",
                    s.vhost.name,
                    type_name(v)
                ))
            })?,
        };
        let consumer = Arc::new(Consumer {
            tag: tag.clone(),
            channel: self.id,
            connection_id: s.id,
            no_ack: c.no_ack,
            exclusive: c.exclusive,
            priority: priority.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32,
            credit: Credit::new(self.consumer_prefetch),
            channel_credit: self.channel_credit.clone(),
            events: s.events.clone(),
            flow: s.flow.clone(),
        });
        // Deliveries come back through the connection's event queue and are written
        // after this frame is handled, so consume-ok always precedes them; while it
        // is held behind other replies, so are they (see `hold_before_consume_ok`).
        queue.add_consumer(consumer.clone())?;
        if !c.nowait {
            if self.deferred.is_empty() {
                s.send(self.id, consume_ok(&consumer));
            } else {
                self.deferred
                    .push_back((Tickets::default(), Reply::ConsumeOk(consumer.clone())));
            }
        }
        self.consumers.insert(tag, (consumer, queue));
        Ok(())
    }

    fn finish_publish(&mut self, s: &mut Session) -> Result<(), Exception> {
        let Some(Incoming {
            publish,
            header: Some(header),
            body,
            ..
        }) = self.incoming.take()
        else {
            return Ok(());
        };
        let body = match body.len() {
            0 => Bytes::new(),
            1 => body.into_iter().next().unwrap_or_default(),
            _ => {
                let mut all = BytesMut::with_capacity(header.body_size as usize);
                for part in body {
                    all.extend_from_slice(&part);
                }
                all.freeze()
            }
        };
        // rabbit_access_control:check_user_id: a user_id must name the connection's user.
        if let Some(claimed) = header.properties.user_id()
            && claimed.as_str() != s.user
        {
            return Err(Exception::from_broker(
                precondition(format!(
                    "user_id property set to '{claimed}' but authenticated user was '{}'",
                    s.user
                )),
                60,
                40,
            ));
        }
        let mut header = header;
        if header
            .properties
            .reply_to()
            .as_ref()
            .is_some_and(|r| r.as_str() == REPLY_TO)
        {
            let Some(reply) = &self.reply_queue else {
                return Err(Exception::from_broker(
                    precondition("fast reply consumer does not exist"),
                    60,
                    40,
                ));
            };
            header.properties = header.properties.clone().with_reply_to(reply.name.clone());
            header.raw_properties = crate::model::fields::encode_properties(&header.properties);
        }
        // Sender-selected distribution: more routing keys in the CC and BCC headers;
        // BCC is removed before the message goes anywhere.
        let mut extra_keys = Ok(Vec::new());
        if has_header_routes(header.properties.headers().as_ref()) {
            extra_keys = header_routes(header.properties.headers().as_ref());
            if let Some(headers) = header.properties.headers().as_ref()
                && headers.contains_key(BCC)
            {
                let headers = without_bcc(headers);
                header.properties = header.properties.clone().with_headers(headers);
                header.raw_properties = crate::model::fields::encode_properties(&header.properties);
            }
        }
        if let Some(exp) = header.properties.expiration()
            && let Err(detail) = parse_expiration(exp.as_str())
        {
            return Err(Exception::from_broker(
                precondition(format!("invalid expiration '{exp}': {detail}")),
                60,
                40,
            ));
        }
        let mut routed = std::mem::take(&mut self.routed);
        routed.clear();
        let result = s.vhost.route(
            publish.exchange.as_str(),
            publish.routing_key.as_str(),
            header.properties.headers().as_ref(),
            &mut routed,
        );
        if let Err(e) = result {
            self.routed = routed;
            return Err(Exception::from_broker(e, 60, 40));
        }
        // Checked after the exchange, as RabbitMQ does (404 before 406).
        let extra_keys = match extra_keys {
            Ok(keys) => keys,
            Err(detail) => {
                self.routed = routed;
                return Err(Exception::from_broker(precondition(detail), 60, 40));
            }
        };
        if !extra_keys.is_empty() {
            s.vhost.route_more(
                publish.exchange.as_str(),
                &extra_keys,
                header.properties.headers().as_ref(),
                &mut routed,
            );
        }
        let persistent = header.properties.delivery_mode() == &Some(2);
        let store_id = match &s.store {
            Some(store) if persistent && routed.iter().any(|q| q.store_id().is_some()) => {
                store.new_message_id()
            }
            _ => 0,
        };
        let charge = s
            .ctx
            .broker
            .memory
            .charge(body.len() + header.raw_properties.len());
        let mut msg = Message::new(
            publish.exchange,
            publish.routing_key,
            &header.properties,
            header.raw_properties,
            body,
            charge,
        );
        msg.store_id = store_id;
        let msg = Arc::new(msg);
        if let Some(t) = self.tx.as_mut() {
            t.publishes.push(TxPublish {
                queues: routed.clone(),
                msg,
                mandatory: publish.mandatory,
            });
        } else {
            let (tickets, refused) = self.deliver_to_queues(s, &routed, msg, publish.mandatory);
            if let Some(c) = self.confirms.as_mut() {
                c.published += 1;
                if tickets.last != 0 || refused {
                    c.waiting.push_back((c.published, tickets, refused));
                }
            }
        }
        self.routed = routed;
        Ok(())
    }

    /// Enqueues a routed message (storing it first if it is persistent and durable
    /// queues take it); returns the store tickets of its writes (0: none) and
    /// whether a full queue refused it (the confirm becomes basic.nack).
    fn deliver_to_queues(
        &mut self,
        s: &mut Session,
        queues: &[Arc<Queue>],
        msg: Arc<Message>,
        mandatory: bool,
    ) -> (Tickets, bool) {
        let mut tickets = Tickets::default();
        let store = s.store.as_ref().filter(|_| msg.store_id != 0);
        if let Some(store) = store {
            let refs = queues.iter().filter(|q| q.store_id().is_some()).count() as u32;
            tickets.add(store.put_message(msg.store_id, refs, msg.clone()));
            if store.backlogged() {
                s.store_wait = true;
            }
        }
        let mut delivered = false;
        let mut refused = false;
        for queue in queues {
            let published = queue.publish(msg.clone());
            if published.congested.is_some() {
                s.throttle = published.congested;
            }
            match published.outcome {
                Enqueued::Yes(t) => {
                    delivered = true;
                    tickets.add(t);
                }
                Enqueued::Rejected => {
                    refused = true;
                    if let (Some(store), Some(_)) = (store, queue.store_id()) {
                        store.unref(msg.store_id);
                    }
                }
                Enqueued::Gone => {}
            }
        }
        // Returned only when no queue was there to take it: a queue that refused it
        // (full, reject-publish) makes the confirm a nack instead, as in RabbitMQ.
        if mandatory && !delivered && !refused {
            s.send(
                self.id,
                AMQPClass::Basic(basic::AMQPMethod::Return(basic::Return {
                    reply_code: 312,
                    reply_text: ShortString::from("NO_ROUTE"),
                    exchange: msg.exchange.clone(),
                    routing_key: msg.routing_key.clone(),
                })),
            );
            write_content(
                &mut s.out,
                self.id,
                &msg.raw_properties,
                &msg.body,
                s.frame_max,
            );
        }
        (tickets, refused)
    }

    /// Removes deliveries from the unacked list: one tag, or with `multiple` every
    /// tag up to it (0 meaning all), as RabbitMQ's rules.
    fn take_unacked(&mut self, tag: u64, multiple: bool) -> Result<Vec<Unacked>, Failure> {
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

    fn settle_or_defer(&mut self, items: Vec<Unacked>, how: Settle) {
        match self.tx.as_mut() {
            Some(t) => t.settles.push((items, how)),
            None => self.settle(items, how),
        }
    }

    fn settle(&mut self, items: Vec<Unacked>, how: Settle) {
        let mut touched: Vec<Arc<Queue>> = Vec::new();
        let mut requeue: Vec<(Arc<Queue>, Vec<QueueEntry>)> = Vec::new();
        for u in items {
            if let Some(c) = &u.consumer {
                c.release();
            }
            match how {
                Settle::Ack | Settle::Drop => {
                    if how == Settle::Ack || u.queue.args.dead_letter_exchange.is_none() {
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

    fn channel_credit_limited(&self) -> bool {
        !self.consumers.is_empty() && self.channel_credit.limited()
    }

    /// Dispatches the queues of this channel's consumers, starting one further
    /// each time.
    fn dispatch_consumer_queues(&mut self) {
        let n = self.consumers.len();
        if n == 0 {
            return;
        }
        let start = self.rotation % n;
        self.rotation = self.rotation.wrapping_add(1);
        for (_, queue) in self.consumers.values().cycle().skip(start).take(n) {
            queue.dispatch();
        }
    }
}

/// Why a channel method failed, before it becomes an [`Exception`].
enum Failure {
    Broker(BrokerError),
    Protocol(ProtocolError),
}

impl From<BrokerError> for Failure {
    fn from(e: BrokerError) -> Self {
        Failure::Broker(e)
    }
}

fn consume_ok(consumer: &Consumer) -> AMQPClass {
    AMQPClass::Basic(basic::AMQPMethod::ConsumeOk(basic::ConsumeOk {
        consumer_tag: consumer.tag.clone(),
    }))
}

/// Acknowledges every publish up to `upto` not yet confirmed.
fn send_ack(s: &mut Session, channel: u16, c: &mut Confirms, upto: u64) {
    if upto > c.sent {
        let multiple = upto - c.sent > 1;
        c.sent = upto;
        s.send(
            channel,
            AMQPClass::Basic(basic::AMQPMethod::Ack(basic::Ack {
                delivery_tag: upto,
                multiple,
            })),
        );
    }
}

fn command_invalid(class: &str) -> Failure {
    Failure::Protocol(ProtocolError::CommandInvalid(format!(
        "method not allowed from a client on the {class} class"
    )))
}

fn unexpected_frame(detail: impl std::fmt::Display) -> Exception {
    Exception::new(505, detail, 0, 0)
}

/// An exchange or queue name with CR and LF removed, as RabbitMQ reads the names of
/// declares, deletes and bindings.
fn strip_cr_lf(name: ShortString) -> ShortString {
    if name.as_str().contains(['\r', '\n']) {
        ShortString::from(name.as_str().replace(['\r', '\n'], ""))
    } else {
        name
    }
}
