//! basic.publish and confirm.select: a published message's way from its assembled
//! content into the queues, and the publisher confirms that follow it.

use super::content::{BodyParts, Incoming};
use super::tx::TxPublish;
use super::{Channel, Failure, precondition};
use crate::access::Perm;
use crate::broker::Queue;
use crate::broker::channels::ChannelStats;
use crate::broker::publish::{self, Tickets};
use crate::broker::vhost::REPLY_TO;
use crate::connection::Session;
use crate::metrics::tally::bump;
use crate::model::Message;
use crate::model::message::{BCC, has_header_routes, header_routes, parse_expiration, without_bcc};
use crate::protocol::codec::write_content;
use crate::protocol::error::{BASIC_PUBLISH, NO_ROUTE};
use crate::protocol::{Exception, ProtocolError};
use crate::store::Store;
use amq_protocol::protocol::{AMQPClass, basic, confirm};
use amq_protocol::types::ShortString;
use std::collections::VecDeque;
use std::sync::Arc;

#[derive(Default)]
pub(super) struct Confirms {
    /// Sequence number of the last publish.
    pub(super) published: u64,
    /// Highest sequence number acknowledged (or nacked) to the client.
    pub(super) sent: u64,
    /// Publishes waiting for a store commit: (sequence number, first and last store
    /// ticket of its writes, whether
    /// a queue refused it and it gets basic.nack).
    pub(super) waiting: VecDeque<(u64, Tickets, bool)>,
}

impl Channel {
    /// basic.publish: the content follows in a header frame and body frames.
    pub(super) fn start_publish(
        &mut self,
        s: &mut Session,
        p: basic::Publish,
    ) -> Result<(), Failure> {
        if p.immediate {
            return Err(Failure::Protocol(ProtocolError::NotImplemented(
                "immediate=true".into(),
            )));
        }
        s.publisher = true;
        if !self.publisher {
            self.publisher = true;
            s.metrics
                .publishers
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        self.incoming = Some(Incoming {
            publish: p,
            header: None,
            body: BodyParts::default(),
            received: 0,
        });
        Ok(())
    }

    /// confirm.select: from now on every publish is confirmed.
    pub(super) fn select_confirms(&mut self, s: &mut Session, nowait: bool) -> Result<(), Failure> {
        if self.tx.is_some() {
            return Err(precondition("cannot switch from tx to confirm mode").into());
        }
        if self.confirms.is_none() {
            self.confirms = Some(Confirms::default());
        }
        self.reply(
            s,
            nowait,
            AMQPClass::Confirm(confirm::AMQPMethod::SelectOk(confirm::SelectOk {})),
        );
        Ok(())
    }

    pub(super) fn finish_publish(&mut self, s: &mut Session) -> Result<(), Exception> {
        let Some(Incoming {
            publish,
            header: Some(header),
            body,
            ..
        }) = self.incoming.take()
        else {
            return Ok(());
        };
        // Write on the exchange comes first, as in RabbitMQ (403 before 404).
        let topics = self
            .grants
            .check(s, &publish.exchange)
            .map_err(|e| Exception::from_broker(e, BASIC_PUBLISH.0, BASIC_PUBLISH.1))?;
        let body = body.join(header.body_size as usize);
        publish::check_user_id(header.properties.user_id().as_ref(), &s.user)
            .map_err(|e| Exception::from_broker(e, BASIC_PUBLISH.0, BASIC_PUBLISH.1))?;
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
                    BASIC_PUBLISH.0,
                    BASIC_PUBLISH.1,
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
                BASIC_PUBLISH.0,
                BASIC_PUBLISH.1,
            ));
        }
        let mut routed = std::mem::take(&mut self.routed);
        routed.clear();
        let result = publish::route(
            &s.vhost,
            publish.exchange.as_str(),
            publish.routing_key.as_str(),
            header.properties.headers().as_ref(),
            extra_keys.as_deref().unwrap_or_default(),
            &mut routed,
        );
        if let Err(e) = result {
            self.routed = routed;
            return Err(Exception::from_broker(e, BASIC_PUBLISH.0, BASIC_PUBLISH.1));
        }
        // Checked after the exchange, as RabbitMQ does (404 before 406).
        if let Err(detail) = extra_keys {
            self.routed = routed;
            return Err(Exception::from_broker(
                precondition(detail),
                BASIC_PUBLISH.0,
                BASIC_PUBLISH.1,
            ));
        }
        if topics {
            // Every routing key of the message, CC and BCC included.
            let keys = extra_keys.as_deref().unwrap_or_default();
            let exchange = publish.exchange.as_str();
            let refused = std::iter::once(publish.routing_key.as_str())
                .chain(keys.iter().map(String::as_str))
                .find_map(|key| s.check_topic(Perm::Write, exchange, key).err());
            if let Some(e) = refused {
                self.routed = routed;
                return Err(Exception::from_broker(e, BASIC_PUBLISH.0, BASIC_PUBLISH.1));
            }
        }
        let persistent = header.properties.delivery_mode() == &Some(2);
        let store_id = publish::store_id(s.store.as_ref(), persistent, &routed);
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
        s.tally
            .message_received(msg.body.len(), self.confirms.is_some());
        bump(&self.stats().published, 1);
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

    /// Enqueues a routed message through the broker's publish pipeline; returns the
    /// store tickets of its writes (0: none) and whether a full queue refused it (the
    /// confirm becomes basic.nack). A mandatory message no queue took is returned.
    pub(super) fn deliver_to_queues(
        &mut self,
        s: &mut Session,
        queues: &[Arc<Queue>],
        msg: Arc<Message>,
        mandatory: bool,
    ) -> (Tickets, bool) {
        let outcome = publish::enqueue(s.store.as_ref(), queues, &msg);
        if outcome.store_backlogged {
            s.store_wait = true;
        }
        if outcome.congested.is_some() {
            s.throttle = outcome.congested;
        }
        let (delivered, refused) = (outcome.delivered, outcome.refused);
        if delivered {
            bump(&s.tally.queue_published, queues.len() as u64);
        }
        let counter = if delivered || refused {
            &s.tally.routed
        } else if mandatory {
            bump(&self.stats().returned, 1);
            &s.tally.unroutable_returned
        } else {
            bump(&self.stats().dropped, 1);
            &s.tally.unroutable_dropped
        };
        bump(counter, 1);
        // Returned only when no queue was there to take it: a queue that refused it
        // (full, reject-publish) makes the confirm a nack instead, as in RabbitMQ.
        if mandatory && !delivered && !refused {
            s.send(
                self.id,
                AMQPClass::Basic(basic::AMQPMethod::Return(basic::Return {
                    reply_code: NO_ROUTE.0,
                    reply_text: ShortString::from(NO_ROUTE.1),
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
        (outcome.tickets, refused)
    }

    /// Sends the publisher confirms that became due: one basic.ack with `multiple`
    /// when several are, basic.nack for publishes a queue refused or whose store
    /// commit failed.
    pub(super) fn send_confirms(&mut self, s: &mut Session) {
        let stats = &self.slot.stats;
        let Some(c) = self.confirms.as_mut() else {
            return;
        };
        while let Some(&(seq, tickets, refused)) = c.waiting.front() {
            if tickets.last > s.committed {
                break;
            }
            c.waiting.pop_front();
            // A publish's writes (body, then one index entry per queue) may span
            // several commits: it is confirmed only if none of them failed.
            let failed = |st: &Arc<Store>| st.failed(tickets.first, tickets.last);
            if refused || s.store.as_ref().is_some_and(failed) {
                send_ack(s, stats, self.id, c, seq - 1);
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
        send_ack(s, stats, self.id, c, ready);
    }
}

/// Acknowledges every publish up to `upto` not yet confirmed.
fn send_ack(s: &mut Session, stats: &ChannelStats, channel: u16, c: &mut Confirms, upto: u64) {
    if upto > c.sent {
        bump(&s.tally.confirmed, upto - c.sent);
        bump(&stats.confirmed, upto - c.sent);
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
