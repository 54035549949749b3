//! The one publish pipeline. A message published over AMQP, dead-lettered by a queue
//! or (next) published through the HTTP API takes the same way into the queues: it is
//! routed (with the sender-selected keys of its `CC` and `BCC` headers), gets a store
//! id when it is persistent and a durable queue takes it, its body is stored once,
//! and it is offered to each queue. The result is plain data: the store tickets the
//! writes took, whether a queue took it or refused it, and the consumer connection it
//! congested; each caller turns it into confirms, returns and flow control.

use crate::broker::{Enqueued, Flow, Queue, VHost};
use crate::model::{BrokerError, BrokerResult, Message};
use crate::store::Store;
use amq_protocol::types::{FieldTable, ShortString};
use std::sync::Arc;

/// The store tickets a publish's writes took: the first and the last (0: none).
#[derive(Clone, Copy, Default, Debug)]
pub struct Tickets {
    pub first: u64,
    pub last: u64,
}

impl Tickets {
    pub fn add(&mut self, ticket: u64) {
        if ticket == 0 {
            return;
        }
        if self.first == 0 {
            self.first = ticket;
        }
        self.last = self.last.max(ticket);
    }
}

/// What became of a message offered to the queues it was routed to.
#[derive(Default)]
pub struct Outcome {
    /// The store writes of the message: one record when one durable queue holds it,
    /// else its body once and an index entry per durable queue.
    pub tickets: Tickets,
    /// At least one queue took it.
    pub delivered: bool,
    /// A full queue refused it (`x-overflow` reject-publish): a confirm becomes a nack.
    pub refused: bool,
    /// A consumer connection that delivering it made fall behind.
    pub congested: Option<Arc<Flow>>,
    /// The store's backlog of writes is over its limit: the publisher waits for it.
    pub store_backlogged: bool,
}

/// rabbit_access_control:check_user_id: a message's `user_id` must name the user who
/// publishes it.
pub fn check_user_id(claimed: Option<&ShortString>, user: &str) -> BrokerResult<()> {
    match claimed {
        Some(claimed) if claimed.as_str() != user => Err(BrokerError::PreconditionFailed(format!(
            "user_id property set to '{claimed}' but authenticated user was '{user}'"
        ))),
        _ => Ok(()),
    }
}

/// Routes a message from `exchange` by its routing key and then by the extra keys
/// of its `CC` and `BCC` headers, adding each queue once to `out`.
pub fn route(
    vhost: &VHost,
    exchange: &str,
    routing_key: &str,
    headers: Option<&FieldTable>,
    extra_keys: &[String],
    out: &mut Vec<Arc<Queue>>,
) -> BrokerResult<()> {
    vhost.route(exchange, routing_key, headers, out)?;
    if !extra_keys.is_empty() {
        vhost.route_more(exchange, extra_keys, headers, out);
    }
    Ok(())
}

/// The store id of a message routed to `queues`: a new one when it is persistent and
/// a durable queue takes it, else 0 (it stays in memory only).
pub fn store_id(store: Option<&Arc<Store>>, persistent: bool, queues: &[Arc<Queue>]) -> u64 {
    match store {
        Some(store) if persistent && queues.iter().any(|q| q.stores_messages()) => {
            store.new_message_id()
        }
        _ => 0,
    }
}

/// Offers a routed message to each of its queues. With a store id it is stored: by
/// the queue itself, with its entry, when one durable queue takes it; else its body
/// first (once, with one reference per durable queue), and a durable queue that does
/// not take it gives its reference back.
pub fn enqueue(store: Option<&Arc<Store>>, queues: &[Arc<Queue>], msg: &Arc<Message>) -> Outcome {
    let mut outcome = Outcome::default();
    let store = store.filter(|_| msg.store_id != 0);
    // A message for one durable queue is stored by that queue, with its entry.
    let mut solo = false;
    if let Some(store) = store {
        let refs = queues.iter().filter(|q| q.stores_messages()).count() as u32;
        solo = refs == 1;
        if !solo {
            outcome
                .tickets
                .add(store.put_message(msg.store_id, refs, msg.clone()));
        }
    }
    for queue in queues {
        let stores = store.is_some() && queue.stores_messages();
        let published = queue.publish(msg.clone(), solo && stores);
        if published.congested.is_some() {
            outcome.congested = published.congested;
        }
        match published.outcome {
            Enqueued::Yes(ticket) => {
                outcome.delivered = true;
                outcome.tickets.add(ticket);
                continue;
            }
            Enqueued::Rejected => outcome.refused = true,
            Enqueued::Gone => {}
        }
        if let (Some(store), true, false) = (store, stores, solo) {
            store.unref(msg.store_id);
        }
    }
    if let Some(store) = store {
        outcome.store_backlogged = store.backlogged();
    }
    outcome
}
