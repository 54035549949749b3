//! Routing: from an exchange, through exchange-to-exchange bindings and alternate
//! exchanges, to the queues a message goes to; and the re-publishing of dead letters.

use super::{REPLY_TO, VHost, read};
use crate::broker::deadletter::{self, Reason};
use crate::broker::exchange::{Destination, Exchange};
use crate::broker::publish;
use crate::broker::{Queue, QueueEntry};
use crate::model::message::header_routes;
use crate::model::{BrokerError, BrokerResult, Message};
use amq_protocol::types::FieldTable;
use std::collections::HashMap;
use std::sync::Arc;

impl VHost {
    pub fn route(
        &self,
        exchange: &str,
        routing_key: &str,
        headers: Option<&FieldTable>,
        out: &mut Vec<Arc<Queue>>,
    ) -> BrokerResult<()> {
        if exchange.is_empty() {
            let found = if routing_key.starts_with(REPLY_TO) {
                read(&self.replies).get(routing_key).cloned()
            } else {
                read(&self.queues).get(routing_key).cloned()
            };
            out.extend(found);
            return Ok(());
        }
        let exchanges = read(&self.exchanges);
        let x = exchanges
            .get(exchange)
            .ok_or_else(|| self.no_exchange(exchange))?;
        if x.internal {
            return Err(BrokerError::AccessRefused(format!(
                "cannot publish to internal exchange '{exchange}' in vhost '{}'",
                self.name
            )));
        }
        let mut visited: Vec<&str> = Vec::new();
        let before = out.len();
        let mut seen = Seen::default();
        Self::route_from(
            &exchanges,
            x,
            routing_key,
            headers,
            out,
            &mut visited,
            &mut seen,
        );
        x.stats.routed(out.len() > before);
        Ok(())
    }

    /// Finds the queues a message published to `exchange` goes to, following
    /// exchange-to-exchange bindings and alternate exchanges.
    /// Adds the queues that `keys` (a message's CC and BCC routing keys) reach
    /// through `exchange` to `out`, each queue once.
    pub fn route_more(
        &self,
        exchange: &str,
        keys: &[String],
        headers: Option<&FieldTable>,
        out: &mut Vec<Arc<Queue>>,
    ) {
        let mut more = Vec::new();
        for key in keys {
            more.clear();
            if self.route(exchange, key, headers, &mut more).is_err() {
                return;
            }
            for q in more.drain(..) {
                if !out.iter().any(|o| Arc::ptr_eq(o, &q)) {
                    out.push(q);
                }
            }
        }
    }

    pub(super) fn route_from<'a>(
        exchanges: &'a HashMap<String, Arc<Exchange>>,
        x: &'a Exchange,
        routing_key: &str,
        headers: Option<&FieldTable>,
        out: &mut Vec<Arc<Queue>>,
        visited: &mut Vec<&'a str>,
        seen: &mut Seen,
    ) {
        if visited.contains(&x.name.as_str()) {
            return;
        }
        visited.push(&x.name);
        let mut next: Vec<&'a Exchange> = Vec::new();
        let mut matched = false;
        x.route(routing_key, headers, |d| {
            matched = true;
            match d {
                Destination::Queue(q) => seen.push(out, q),
                Destination::Exchange(name) => {
                    if let Some(e) = exchanges.get(name) {
                        next.push(e);
                    }
                }
            }
        });
        for e in next {
            Self::route_from(exchanges, e, routing_key, headers, out, visited, seen);
        }
        if !matched && let Some(alt) = x.alternate().and_then(|a| exchanges.get(&a)) {
            Self::route_from(exchanges, alt, routing_key, headers, out, visited, seen);
        }
    }

    /// Republishes messages that `from` dead-lettered to its dead-letter exchange
    /// `dlx` (with routing key `dlrk`, or their own keys).
    /// Like RabbitMQ's classic queues this is at most once: no confirms, a missing
    /// exchange or no matching binding drops the message, and so does a cycle that
    /// no client rejection interrupted.
    pub fn dead_letter(
        &self,
        from: &Queue,
        dlx: &str,
        dlrk: Option<&str>,
        dead: &[(QueueEntry, Reason)],
    ) {
        let mut targets = Vec::new();
        for (entry, reason) in dead {
            let (msg, headers) = deadletter::dead_letter(
                &entry.msg,
                *reason,
                from.name.as_str(),
                dlx,
                dlrk,
                &self.memory,
            );
            targets.clear();
            if self
                .route(dlx, msg.routing_key.as_str(), Some(&headers), &mut targets)
                .is_err()
            {
                continue;
            }
            // Without a dead-letter routing key, the message's CC keys route it too.
            if dlrk.is_none()
                && let Ok(keys) = header_routes(Some(&headers))
                && !keys.is_empty()
            {
                self.route_more(dlx, &keys, Some(&headers), &mut targets);
            }
            if *reason != Reason::Rejected {
                targets.retain(|q| {
                    let cycle = deadletter::is_cycle(&headers, q.name.as_str());
                    if cycle {
                        tracing::debug!(queue = %q.name, "dead-letter cycle: message dropped");
                    }
                    !cycle
                });
            }
            self.publish_internal(msg, &targets);
        }
    }

    /// Enqueues a message the broker itself publishes (a dead letter) through the
    /// publish pipeline; nobody waits for its confirm.
    pub(super) fn publish_internal(&self, mut msg: Message, targets: &[Arc<Queue>]) {
        if targets.is_empty() {
            return;
        }
        msg.store_id = publish::store_id(self.store.as_ref(), msg.is_persistent(), targets);
        publish::enqueue(self.store.as_ref(), targets, &Arc::new(msg));
    }
}

/// The queues a message was routed to so far, for keeping each once: a scan of the
/// few found, or a set once they are many (a fanout to thousands of queues).
#[derive(Default)]
pub(super) struct Seen(Option<std::collections::HashSet<usize>>);

impl Seen {
    /// Beyond this many queues, a scan costs more than the set.
    const SCAN: usize = 16;

    fn push(&mut self, out: &mut Vec<Arc<Queue>>, q: &Arc<Queue>) {
        let key = Arc::as_ptr(q) as usize;
        match &mut self.0 {
            Some(set) => {
                if set.insert(key) {
                    out.push(q.clone());
                }
            }
            None => {
                if out.iter().any(|o| Arc::ptr_eq(o, q)) {
                    return;
                }
                out.push(q.clone());
                if out.len() > Self::SCAN {
                    self.0 = Some(out.iter().map(|o| Arc::as_ptr(o) as usize).collect());
                }
            }
        }
    }
}
