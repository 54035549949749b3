//! Operator actions on messages that do not come over an AMQP channel (the management
//! API's publish and get): they take the same ways through the broker as basic.publish
//! and basic.get do (routing, the store, the queues' counters and the global metrics),
//! so that a message published over HTTP is one like any other.

use crate::broker::publish;
use crate::broker::{Broker, Queue, QueueEntry, VHost};
use crate::metrics::tally::bump;
use crate::model::message::{BCC, has_header_routes, header_routes, parse_expiration, without_bcc};
use crate::model::{BrokerError, BrokerResult, Message};
use amq_protocol::protocol::BasicProperties;
use amq_protocol::types::ShortString;
use bytes::Bytes;
use std::sync::Arc;

/// The connection id the operator's actions use: no client connection has it, so
/// exclusive queues stay their owners' (connection ids start at 1).
pub const OPERATOR: u64 = 0;

/// A message to publish, as an operator gives it.
pub struct Publish<'a> {
    pub exchange: &'a str,
    pub routing_key: &'a str,
    pub properties: BasicProperties,
    pub body: Bytes,
    /// Who publishes (a `user_id` property must name them).
    pub user: &'a str,
}

/// Publishes a message as basic.publish with mandatory set would: returns whether a
/// queue took it. A persistent message taken by a durable queue is stored, and this
/// returns once the store has committed it (as a publisher confirm would).
/// A message every queue refused (full, `x-overflow` reject-publish) is an error.
pub async fn publish(broker: &Broker, vhost: &Arc<VHost>, p: Publish<'_>) -> BrokerResult<bool> {
    let mut properties = p.properties;
    publish::check_user_id(properties.user_id().as_ref(), p.user)?;
    if let Some(exp) = properties.expiration()
        && let Err(detail) = parse_expiration(exp.as_str())
    {
        return Err(BrokerError::PreconditionFailed(format!(
            "invalid expiration '{exp}': {detail}"
        )));
    }
    let mut extra_keys = Vec::new();
    if has_header_routes(properties.headers().as_ref()) {
        extra_keys = header_routes(properties.headers().as_ref())
            .map_err(BrokerError::PreconditionFailed)?;
        if let Some(headers) = properties.headers().as_ref()
            && headers.contains_key(BCC)
        {
            let headers = without_bcc(headers);
            properties = properties.with_headers(headers);
        }
    }
    let mut routed = Vec::new();
    publish::route(
        vhost,
        p.exchange,
        p.routing_key,
        properties.headers().as_ref(),
        &extra_keys,
        &mut routed,
    )?;
    let raw = crate::model::fields::encode_properties(&properties);
    let store = broker.store();
    let persistent = properties.delivery_mode() == &Some(2);
    let charge = broker.memory.charge(p.body.len() + raw.len());
    let mut msg = Message::new(
        ShortString::from(p.exchange),
        ShortString::from(p.routing_key),
        &properties,
        raw,
        p.body,
        charge,
    );
    msg.store_id = publish::store_id(store, persistent, &routed);
    let tallies = &broker.metrics.tallies;
    let size = msg.body.len();
    let outcome = publish::enqueue(store, &routed, &Arc::new(msg));
    tallies.shared(|t| {
        t.message_received(size, true);
        if outcome.delivered {
            bump(&t.queue_published, routed.len() as u64);
        }
        bump(
            if outcome.delivered || outcome.refused {
                &t.routed
            } else {
                &t.unroutable_returned
            },
            1,
        );
    });
    if let (Some(store), last) = (store, outcome.tickets.last)
        && last != 0
        && !store.wait_committed(last).await
    {
        return Err(BrokerError::Internal(
            "the message could not be stored".into(),
        ));
    }
    if outcome.refused && !outcome.delivered {
        return Err(BrokerError::PreconditionFailed(
            "Unable to publish message. Check queue limits.".into(),
        ));
    }
    tallies.shared(|t| bump(&t.confirmed, 1));
    Ok(outcome.delivered)
}

/// What to do with the messages a get took (RabbitMQ's `ackmode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckMode {
    /// Taken with acknowledgement, then put back.
    AckRequeueTrue,
    /// Taken for good (no ack).
    AckRequeueFalse,
    /// Taken, then rejected with requeue.
    RejectRequeueTrue,
    /// Taken, then rejected without requeue (dead-lettered if the queue does that).
    RejectRequeueFalse,
}

impl AckMode {
    pub fn parse(s: &str) -> Option<AckMode> {
        Some(match s {
            "ack_requeue_true" => AckMode::AckRequeueTrue,
            "ack_requeue_false" => AckMode::AckRequeueFalse,
            "reject_requeue_true" => AckMode::RejectRequeueTrue,
            "reject_requeue_false" => AckMode::RejectRequeueFalse,
            _ => return None,
        })
    }

    fn no_ack(self) -> bool {
        self == AckMode::AckRequeueFalse
    }
}

/// A message a get took, with how many stayed ready after it.
pub struct Got {
    pub entry: QueueEntry,
    pub message_count: u32,
}

/// Takes up to `count` messages from the head of `queue` as that many basic.get
/// calls would, then settles them all as `mode` says: put back (they come back
/// marked redelivered), dropped or dead-lettered.
pub fn get(broker: &Broker, queue: &Arc<Queue>, count: usize, mode: AckMode) -> Vec<Got> {
    let mut got = Vec::new();
    let no_ack = mode.no_ack();
    while got.len() < count {
        let Some((entry, message_count)) = queue.get() else {
            if got.is_empty() {
                broker.metrics.tallies.shared(|t| bump(&t.get_empty, 1));
            }
            break;
        };
        broker
            .metrics
            .tallies
            .shared(|t| t.deliveries.count_owned(true, no_ack, entry.redelivered));
        queue
            .stats
            .deliveries
            .count(true, no_ack, entry.redelivered);
        got.push(Got {
            entry,
            message_count,
        });
    }
    let entries = || got.iter().map(|g| g.entry.clone());
    match mode {
        AckMode::AckRequeueFalse => {
            for e in entries() {
                queue.remove_stored(&e);
            }
        }
        AckMode::AckRequeueTrue | AckMode::RejectRequeueTrue => {
            queue.requeue(entries().collect::<Vec<_>>(), true);
        }
        AckMode::RejectRequeueFalse => queue.discard(entries().collect()),
    }
    got
}
