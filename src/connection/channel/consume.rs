//! basic.consume, basic.cancel, basic.get and basic.qos: consumers, the deliveries
//! queues hand them, and their prefetch credit.

use super::ack::Unacked;
use super::reply::{Reply, Tickets};
use super::{Channel, Failure, precondition};
use crate::access::{Perm, Resource};
use crate::broker::args::integer;
use crate::broker::queue::Credit;
use crate::broker::vhost::REPLY_TO;
use crate::broker::{Consumer, Queue, QueueEntry, random_name};
use crate::connection::Session;
use crate::metrics::tally::bump;
use crate::model::fields::type_name;
use crate::protocol::ProtocolError;
use crate::protocol::codec::{write_content, write_deliver};
use amq_protocol::protocol::{AMQPClass, basic};
use amq_protocol::types::ShortString;
use std::sync::Arc;

impl Channel {
    pub(super) fn consume(&mut self, s: &mut Session, c: basic::Consume) -> Result<(), Failure> {
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
        let max = s.ctx.config.consumer_max_per_channel;
        if max != 0 && self.consumers.len() >= max {
            return Err(Failure::Protocol(ProtocolError::NotAllowed(format!(
                "reached maximum ({max}) of consumers per channel"
            ))));
        }
        if name.as_str() != REPLY_TO {
            s.check(Perm::Read, Resource::Queue, name.as_str())?;
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
        s.note_consumer_timeout(queue.consumer_timeout());
        let stream = match queue.stream() {
            Some(_) => Some(queue.check_stream_consume(
                &c.arguments,
                self.consumer_prefetch,
                c.no_ack,
                self.channel_credit.limited(),
            )?),
            None => None,
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
            arguments: c.arguments.clone(),
        });
        // Deliveries come back through the connection's event queue and are written
        // after this frame is handled, so consume-ok always precedes them; while it
        // is held behind other replies, so are they (see `hold_before_consume_ok`).
        match stream {
            Some(how) => queue.add_stream_consumer(consumer.clone(), how)?,
            None => queue.add_consumer(consumer.clone())?,
        }
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

    /// basic.cancel from the client.
    pub(super) fn cancel(&mut self, s: &mut Session, c: basic::Cancel) {
        self.remove_consumer(s, &c.consumer_tag);
        self.reply(
            s,
            c.nowait,
            AMQPClass::Basic(basic::AMQPMethod::CancelOk(basic::CancelOk {
                consumer_tag: c.consumer_tag,
            })),
        );
    }

    /// basic.get: the message is taken now; only the reply waits its turn.
    pub(super) fn get(&mut self, s: &mut Session, g: basic::Get) -> Result<(), Failure> {
        let name = self.queue_name(&g.queue)?;
        s.check(Perm::Read, Resource::Queue, name.as_str())?;
        let queue = s.vhost.queue(name.as_str(), s.id)?;
        queue.refuse_on_stream("basic.get")?;
        if !g.no_ack {
            s.note_consumer_timeout(queue.consumer_timeout());
        }
        match queue.get() {
            None => {
                bump(&s.tally.get_empty, 1);
                bump(&self.stats().get_empty, 1);
                self.reply(
                    s,
                    false,
                    AMQPClass::Basic(basic::AMQPMethod::GetEmpty(basic::GetEmpty {})),
                )
            }
            Some((entry, message_count)) => {
                self.count_delivery(s, &queue, true, g.no_ack, entry.redelivered);
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
                    queue.count_unacked(1);
                    self.unacked.push_back(Unacked {
                        tag,
                        queue,
                        entry,
                        consumer: None,
                        at: crate::model::clock::coarse_ms(),
                    });
                }
            }
        }
        Ok(())
    }

    /// basic.qos: a prefetch limit for the channel's consumers (global) or for the
    /// consumers it creates from now on.
    pub(super) fn qos(&mut self, s: &mut Session, qos: &basic::Qos) {
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
        write_deliver(
            &mut s.out,
            self.id,
            consumer.tag.as_str(),
            tag,
            entry.redelivered,
            msg.exchange.as_str(),
            msg.routing_key.as_str(),
        );
        write_content(
            &mut s.out,
            self.id,
            &msg.raw_properties,
            &msg.body,
            s.frame_max,
        );
        self.count_delivery(s, &queue, false, consumer.no_ack, entry.redelivered);
        if consumer.no_ack {
            // Written: the message has left the queue for good.
            queue.remove_stored(&entry);
        } else {
            queue.count_unacked(1);
            self.unacked.push_back(Unacked {
                tag,
                queue,
                entry,
                consumer: Some(consumer.clone()),
                at: crate::model::clock::coarse_ms(),
            });
        }
    }

    /// Counts a delivery where the broker, this channel and the queue keep their
    /// figures.
    #[inline]
    fn count_delivery(
        &self,
        s: &Session,
        queue: &Queue,
        get: bool,
        no_ack: bool,
        redelivered: bool,
    ) {
        s.tally.deliveries.count_owned(get, no_ack, redelivered);
        self.stats()
            .deliveries
            .count_owned(get, no_ack, redelivered);
        queue.stats.deliveries.count(get, no_ack, redelivered);
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

    pub(super) fn channel_credit_limited(&self) -> bool {
        !self.consumers.is_empty() && self.channel_credit.limited()
    }

    /// Dispatches the queues of this channel's consumers, starting one further
    /// each time.
    pub(super) fn dispatch_consumer_queues(&mut self) {
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

pub(super) fn consume_ok(consumer: &Consumer) -> AMQPClass {
    AMQPClass::Basic(basic::AMQPMethod::ConsumeOk(basic::ConsumeOk {
        consumer_tag: consumer.tag.clone(),
    }))
}
