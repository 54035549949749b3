//! A virtual host: its exchanges, queues and the bindings between them, with the
//! declare/delete/bind rules of RabbitMQ (reserved names, equivalence checks,
//! exclusivity, auto-delete).

mod equivalence;
mod exchanges;
mod queues;
mod routing;

use crate::broker::Queue;
use crate::broker::args::QueueArgs;
use crate::broker::exchange::{Binding, Destination, Exchange, ExchangeKind};
use crate::broker::policy::{Applied, PolicySet, Target};
use crate::broker::queue::QueueOptions;
use crate::model::BrokerError;
use crate::model::memory::MemoryGauge;
use crate::store::{RecoveredBinding, RecoveredExchange, RecoveredQueue, Store};
use amq_protocol::types::{FieldTable, ShortString};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// The pseudo-queue of direct reply-to (RabbitMQ's `amq.rabbitmq.reply-to`).
pub const REPLY_TO: &str = "amq.rabbitmq.reply-to";

pub struct VHost {
    pub name: Arc<str>,
    store: Option<Arc<Store>>,
    memory: Arc<MemoryGauge>,
    /// The broker's event counters (queues created and deleted).
    pub metrics: Arc<crate::metrics::Counters>,
    /// Direct reply-to consumers, by the name publishers reply to.
    replies: RwLock<HashMap<String, Arc<Queue>>>,
    exchanges: RwLock<HashMap<String, Arc<Exchange>>>,
    queues: RwLock<HashMap<String, Arc<Queue>>>,
    /// The vhost's policies, compiled: read when a queue or exchange is declared,
    /// replaced (and applied to all) when they change.
    policies: RwLock<Arc<PolicySet>>,
    /// Held while policies are rebuilt and applied, so that two changes made at
    /// once are applied in order and the last one applied is the latest.
    policy_update: Mutex<()>,
}

/// What exchange.declare asks for.
pub struct ExchangeDeclare<'a> {
    pub name: &'a str,
    pub kind: &'a str,
    pub passive: bool,
    pub durable: bool,
    pub auto_delete: bool,
    pub internal: bool,
    pub arguments: &'a FieldTable,
}

/// What queue.declare asks for (the name already generated if it was empty).
pub struct QueueDeclare<'a> {
    pub name: &'a str,
    pub passive: bool,
    pub durable: bool,
    pub exclusive: bool,
    pub auto_delete: bool,
    pub arguments: &'a FieldTable,
    pub connection_id: u64,
    /// The broker generated the name (the client sent an empty one).
    pub server_named: bool,
}

fn read<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    // Maps are only mutated by single insert/remove calls, so a poisoned lock still
    // guards consistent data.
    lock.read().unwrap_or_else(|e| e.into_inner())
}

fn write<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(|e| e.into_inner())
}

fn flag(b: bool) -> &'static str {
    if b { "true" } else { "false" }
}

impl VHost {
    pub fn new(
        name: &str,
        store: Option<Arc<Store>>,
        memory: Arc<MemoryGauge>,
        metrics: Arc<crate::metrics::Counters>,
    ) -> VHost {
        let vhost = VHost {
            name: Arc::from(name),
            metrics,
            store,
            memory,
            replies: RwLock::new(HashMap::new()),
            exchanges: RwLock::new(HashMap::new()),
            queues: RwLock::new(HashMap::new()),
            policies: RwLock::new(Arc::new(PolicySet::default())),
            policy_update: Mutex::new(()),
        };
        {
            let mut exchanges = write(&vhost.exchanges);
            let empty = FieldTable::default();
            for (n, kind) in [
                ("", ExchangeKind::Direct),
                ("amq.direct", ExchangeKind::Direct),
                ("amq.fanout", ExchangeKind::Fanout),
                ("amq.topic", ExchangeKind::Topic),
                ("amq.headers", ExchangeKind::Headers),
                ("amq.match", ExchangeKind::Headers),
            ] {
                let x = Exchange::new(n, kind, true, false, false, empty.clone());
                exchanges.insert(n.to_owned(), Arc::new(x));
            }
            // RabbitMQ's firehose exchange, internal: every vhost lists it, though
            // Warren publishes nothing to it (no tracing).
            let trace = "amq.rabbitmq.trace";
            let x = Exchange::new(trace, ExchangeKind::Topic, true, false, true, empty);
            exchanges.insert(trace.to_owned(), Arc::new(x));
        }
        vhost
    }

    fn no_exchange(&self, name: &str) -> BrokerError {
        BrokerError::NotFound(format!("no exchange '{name}' in vhost '{}'", self.name))
    }

    fn no_queue(&self, name: &str) -> BrokerError {
        BrokerError::NotFound(format!("no queue '{name}' in vhost '{}'", self.name))
    }

    fn default_exchange_refused() -> BrokerError {
        BrokerError::AccessRefused("operation not permitted on the default exchange".into())
    }

    /// Rebuilds the durable exchanges, queues and bindings found in the store.
    pub fn restore(
        self: &Arc<Self>,
        exchanges: Vec<RecoveredExchange>,
        queues: Vec<RecoveredQueue>,
        bindings: Vec<RecoveredBinding>,
    ) {
        for x in exchanges {
            let Some(kind) = ExchangeKind::parse(&x.kind) else {
                tracing::warn!(
                    exchange = x.name,
                    kind = x.kind,
                    "unknown stored exchange type"
                );
                continue;
            };
            let e = Exchange::new(&x.name, kind, true, x.auto_delete, x.internal, x.arguments);
            e.apply_policy(self.policy_for(Target::Exchange, &x.name));
            write(&self.exchanges).insert(x.name, Arc::new(e));
        }
        let mut restored = Vec::new();
        for rq in queues {
            let what = format!("queue '{}' in vhost '{}'", rq.name, self.name);
            let args = QueueArgs::parse(&what, &rq.arguments).unwrap_or_else(|e| {
                tracing::warn!(queue = rq.name, error = ?e, "stored queue arguments ignored");
                QueueArgs::default()
            });
            let policy = self.policy_for(Target::Queue(args.policy_type()), &rq.name);
            let q = Arc::new(Queue::new(QueueOptions {
                name: ShortString::from(rq.name.as_str()),
                vhost_name: self.name.clone(),
                durable: true,
                exclusive_owner: None,
                auto_delete: rq.auto_delete,
                arguments: rq.arguments,
                args,
                policy,
                stored: self.store.clone().map(|s| (s, rq.id)),
                vhost: Arc::downgrade(self),
            }));
            q.restore(rq.messages);
            if let Some(log) = rq.stream {
                q.restore_stream(log);
            }
            write(&self.queues).insert(rq.name, q.clone());
            restored.push(q);
        }
        for b in bindings {
            let Ok(source) = self.exchange(&b.source) else {
                continue;
            };
            let destination = if b.to_queue {
                match read(&self.queues).get(&b.destination) {
                    Some(q) => Destination::Queue(q.clone()),
                    None => continue,
                }
            } else {
                Destination::Exchange(b.destination)
            };
            source.bind(Binding {
                destination,
                routing_key: b.routing_key,
                arguments: b.arguments,
            });
        }
        // With every binding back, messages that expired while the broker was down
        // can be dead-lettered.
        for q in restored {
            q.start_timers();
        }
    }

    /// The policies that apply to a queue or an exchange of this name now.
    pub(super) fn policy_for(&self, target: Target, name: &str) -> Option<Arc<Applied>> {
        let set = read(&self.policies).clone();
        if set.is_empty() {
            return None;
        }
        set.lookup(target, name)
    }

    /// Replaces the vhost's policies with those `make` builds (from the records as
    /// they are now) and applies them to every queue and exchange: each one whose
    /// matching policies changed gets its new settings at once.
    pub fn set_policies(&self, make: impl FnOnce() -> Arc<PolicySet>) {
        // Guards no data: poisoning changes nothing.
        let _serial = self.policy_update.lock().unwrap_or_else(|e| e.into_inner());
        let set = make();
        *write(&self.policies) = set.clone();
        let exchanges: Vec<Arc<Exchange>> = read(&self.exchanges).values().cloned().collect();
        for x in exchanges {
            x.apply_policy(set.lookup(Target::Exchange, &x.name));
        }
        for q in self.queues() {
            q.apply_policy(set.lookup(Target::Queue(q.queue_type()), q.name.as_str()));
        }
    }

    /// All queues (for statistics and clean shutdown).
    pub fn queues(&self) -> Vec<Arc<Queue>> {
        read(&self.queues).values().cloned().collect()
    }

    /// All exchanges, the default and `amq.*` ones included (for listings and
    /// definitions export).
    pub fn exchanges(&self) -> Vec<Arc<Exchange>> {
        read(&self.exchanges).values().cloned().collect()
    }
}
