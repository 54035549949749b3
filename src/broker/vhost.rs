//! A virtual host: its exchanges, queues and the bindings between them, with the
//! declare/delete/bind rules of RabbitMQ (reserved names, equivalence checks,
//! exclusivity, auto-delete).

use crate::broker::args::QueueArgs;
use crate::broker::deadletter::{self, Reason};
use crate::broker::exchange::{Binding, Destination, Exchange, ExchangeKind};
use crate::broker::queue::QueueOptions;
use crate::broker::{Enqueued, Queue, QueueEntry};
use crate::model::fields::type_name;
use crate::model::memory::MemoryGauge;
use crate::model::message::header_routes;
use crate::model::{BrokerError, BrokerResult, Message};
use crate::store::{BindingKey, RecoveredBinding, RecoveredExchange, RecoveredQueue, Store};
use amq_protocol::types::{AMQPValue, FieldTable, ShortString};
use std::collections::HashMap;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard, Weak};

/// The pseudo-queue of direct reply-to (RabbitMQ's `amq.rabbitmq.reply-to`).
pub const REPLY_TO: &str = "amq.rabbitmq.reply-to";

pub struct VHost {
    pub name: Arc<str>,
    store: Option<Arc<Store>>,
    memory: Arc<MemoryGauge>,
    /// Direct reply-to consumers, by the name publishers reply to.
    replies: RwLock<HashMap<String, Arc<Queue>>>,
    exchanges: RwLock<HashMap<String, Arc<Exchange>>>,
    queues: RwLock<HashMap<String, Arc<Queue>>>,
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

/// An argument's AMQP type name and its value as RabbitMQ prints it (`~ts` for
/// strings, `~tp` for the rest).
fn arg_parts(v: &AMQPValue) -> (&'static str, String) {
    match v {
        AMQPValue::LongString(s) => ("longstr", s.to_string()),
        AMQPValue::ShortString(s) => ("shortstr", s.to_string()),
        AMQPValue::Boolean(b) => ("bool", b.to_string()),
        AMQPValue::ShortShortInt(i) => ("byte", i.to_string()),
        AMQPValue::ShortShortUInt(i) => ("unsignedbyte", i.to_string()),
        AMQPValue::ShortInt(i) => ("short", i.to_string()),
        AMQPValue::ShortUInt(i) => ("unsignedshort", i.to_string()),
        AMQPValue::LongInt(i) => ("signedint", i.to_string()),
        AMQPValue::LongUInt(i) => ("unsignedint", i.to_string()),
        AMQPValue::LongLongInt(i) => ("long", i.to_string()),
        AMQPValue::Timestamp(i) => ("timestamp", i.to_string()),
        other => ("table", format!("{other:?}")),
    }
}

/// The integer value of an integer-class argument (RabbitMQ's `type_class` int).
fn int_value(v: &AMQPValue) -> Option<i128> {
    Some(match v {
        AMQPValue::ShortShortInt(i) => i128::from(*i),
        AMQPValue::ShortShortUInt(i) => i128::from(*i),
        AMQPValue::ShortInt(i) => i128::from(*i),
        AMQPValue::ShortUInt(i) => i128::from(*i),
        AMQPValue::LongInt(i) => i128::from(*i),
        AMQPValue::LongUInt(i) => i128::from(*i),
        AMQPValue::LongLongInt(i) => i128::from(*i),
        _ => return None,
    })
}

/// How RabbitMQ shows an argument value in an "inequivalent arg" error
/// (`rabbit_misc:val/1` on a `{Type, Value}` pair or `undefined`).
fn show_arg(v: Option<&AMQPValue>) -> String {
    match v {
        None => "none".into(),
        Some(v) => {
            let (kind, value) = arg_parts(v);
            format!("the value '{value}' of type '{kind}'")
        }
    }
}

/// The only exchange argument RabbitMQ compares on redeclare (rabbit_exchange).
const EXCHANGE_ARGS: &[&str] = &["alternate-exchange"];

/// The queue arguments RabbitMQ compares on redeclare, in its order
/// (rabbit_classic_queue `queue_arguments`); any other argument is not compared.
const QUEUE_ARGS: &[&str] = &[
    "x-expires",
    "x-message-ttl",
    "x-dead-letter-exchange",
    "x-dead-letter-routing-key",
    "x-max-length",
    "x-max-length-bytes",
    "x-max-priority",
    "x-overflow",
    "x-queue-mode",
    "x-queue-version",
    "x-single-active-consumer",
    "x-queue-type",
    "x-queue-master-locator",
    "x-queue-leader-locator",
];

/// RabbitMQ compares the arguments of a redeclare key by key, over a fixed list of
/// keys (`rabbit_misc:assert_args_equivalence`), reporting the first that differs.
/// Integers of different widths are equivalent when their values are equal; two values
/// of the same type class are shown without their type.
fn check_args(
    what: &str,
    keys: &[&str],
    current: &FieldTable,
    received: &FieldTable,
) -> BrokerResult<()> {
    for &key in keys {
        let (c, r) = (current.inner().get(key), received.inner().get(key));
        if c == r {
            continue;
        }
        // A classic queue declared without x-queue-type equals one declared "classic".
        let classic = |v: Option<&AMQPValue>| matches!(v, Some(AMQPValue::LongString(s)) if s.as_bytes() == b"classic");
        if key == "x-queue-type" && (c.is_none() || classic(c)) && (r.is_none() || classic(r)) {
            continue;
        }
        let (shown_r, shown_c) = match (c, r) {
            (Some(cv), Some(rv)) => match (int_value(cv), int_value(rv)) {
                (Some(a), Some(b)) if a == b => continue,
                (Some(a), Some(b)) => (format!("'{b}'"), format!("'{a}'")),
                _ if arg_parts(cv).0 == arg_parts(rv).0 => (
                    format!("'{}'", arg_parts(rv).1),
                    format!("'{}'", arg_parts(cv).1),
                ),
                _ => (show_arg(r), show_arg(c)),
            },
            _ => (show_arg(r), show_arg(c)),
        };
        return Err(BrokerError::PreconditionFailed(format!(
            "inequivalent arg '{key}' for {what}: received {shown_r} but current is {shown_c}"
        )));
    }
    Ok(())
}

impl VHost {
    pub fn new(name: &str, store: Option<Arc<Store>>, memory: Arc<MemoryGauge>) -> VHost {
        let vhost = VHost {
            name: Arc::from(name),
            store,
            memory,
            replies: RwLock::new(HashMap::new()),
            exchanges: RwLock::new(HashMap::new()),
            queues: RwLock::new(HashMap::new()),
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
        }
        vhost
    }

    fn no_exchange(&self, name: &str) -> BrokerError {
        BrokerError::NotFound(format!("no exchange '{name}' in vhost '{}'", self.name))
    }

    /// A queue.declare of a direct reply-to name, which RabbitMQ treats as passive:
    /// the bare name always exists, a reply queue's name while its consumer does;
    /// either has one consumer.
    pub fn declare_reply_to(&self, name: &str) -> BrokerResult<()> {
        if name == REPLY_TO || read(&self.replies).contains_key(name) {
            Ok(())
        } else {
            Err(self.no_queue(name))
        }
    }

    fn no_queue(&self, name: &str) -> BrokerError {
        BrokerError::NotFound(format!("no queue '{name}' in vhost '{}'", self.name))
    }

    fn default_exchange_refused() -> BrokerError {
        BrokerError::AccessRefused("operation not permitted on the default exchange".into())
    }

    pub fn exchange(&self, name: &str) -> BrokerResult<Arc<Exchange>> {
        read(&self.exchanges)
            .get(name)
            .cloned()
            .ok_or_else(|| self.no_exchange(name))
    }

    pub fn declare_exchange(&self, d: &ExchangeDeclare) -> BrokerResult<()> {
        if d.name.is_empty() {
            return Err(Self::default_exchange_refused());
        }
        if d.passive {
            self.exchange(d.name)?;
            return Ok(());
        }
        if d.name.starts_with("amq.") {
            return Err(BrokerError::AccessRefused(format!(
                "exchange name '{}' contains reserved prefix 'amq.*'",
                d.name
            )));
        }
        if let Some(v) = d.arguments.inner().get("alternate-exchange")
            && !matches!(v, AMQPValue::LongString(_) | AMQPValue::ShortString(_))
        {
            return Err(BrokerError::PreconditionFailed(format!(
                "invalid type '{}' for arg 'alternate-exchange' in exchange '{}' in vhost '{}'",
                type_name(v),
                d.name,
                self.name
            )));
        }
        let Some(kind) = ExchangeKind::parse(d.kind) else {
            return Err(BrokerError::PreconditionFailed(format!(
                "unknown exchange type '{}'",
                d.kind
            )));
        };
        let mut exchanges = write(&self.exchanges);
        if let Some(x) = exchanges.get(d.name) {
            let what = format!("exchange '{}' in vhost '{}'", d.name, self.name);
            let mismatch = |arg: &str, received: &str, current: &str| {
                BrokerError::PreconditionFailed(format!(
                    "inequivalent arg '{arg}' for {what}: received '{received}' but current is '{current}'"
                ))
            };
            if x.kind != kind {
                return Err(mismatch("type", kind.as_str(), x.kind.as_str()));
            }
            if x.durable != d.durable {
                return Err(mismatch("durable", flag(d.durable), flag(x.durable)));
            }
            if x.auto_delete != d.auto_delete {
                return Err(mismatch(
                    "auto_delete",
                    flag(d.auto_delete),
                    flag(x.auto_delete),
                ));
            }
            if x.internal != d.internal {
                return Err(mismatch("internal", flag(d.internal), flag(x.internal)));
            }
            return check_args(&what, EXCHANGE_ARGS, &x.arguments, d.arguments);
        }
        let x = Exchange::new(
            d.name,
            kind,
            d.durable,
            d.auto_delete,
            d.internal,
            d.arguments.clone(),
        );
        if let (true, Some(store)) = (d.durable, &self.store) {
            store.put_exchange(
                &self.name,
                d.name,
                kind.as_str(),
                d.auto_delete,
                d.internal,
                d.arguments,
            );
        }
        exchanges.insert(d.name.to_owned(), Arc::new(x));
        Ok(())
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
            write(&self.exchanges).insert(x.name, Arc::new(e));
        }
        let mut restored = Vec::new();
        for rq in queues {
            let what = format!("queue '{}' in vhost '{}'", rq.name, self.name);
            let args = QueueArgs::parse(&what, &rq.arguments).unwrap_or_else(|e| {
                tracing::warn!(queue = rq.name, error = ?e, "stored queue arguments ignored");
                QueueArgs::default()
            });
            let q = Arc::new(Queue::new(QueueOptions {
                name: ShortString::from(rq.name.as_str()),
                vhost_name: self.name.clone(),
                durable: true,
                exclusive_owner: None,
                auto_delete: rq.auto_delete,
                arguments: rq.arguments,
                args,
                stored: self.store.clone().map(|s| (s, rq.id)),
                vhost: Arc::downgrade(self),
            }));
            q.restore(rq.messages);
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

    /// All queues (for statistics and clean shutdown).
    pub fn queues(&self) -> Vec<Arc<Queue>> {
        read(&self.queues).values().cloned().collect()
    }

    /// The stored form of a binding, if both of its ends are durable.
    fn stored_binding(
        &self,
        source: &Exchange,
        destination: &Destination,
        routing_key: &str,
        arguments: &FieldTable,
    ) -> Option<(&Arc<Store>, BindingKey)> {
        let store = self.store.as_ref()?;
        if !source.durable {
            return None;
        }
        let (to_queue, name) = match destination {
            Destination::Queue(q) => {
                q.store_id()?;
                (true, q.name.as_str().to_owned())
            }
            Destination::Exchange(name) => {
                if !self.exchange(name).is_ok_and(|x| x.durable) {
                    return None;
                }
                (false, name.clone())
            }
        };
        Some((
            store,
            BindingKey {
                vhost: self.name.to_string(),
                source: source.name.clone(),
                to_queue,
                destination: name,
                routing_key: routing_key.to_owned(),
                arguments: arguments.clone(),
            },
        ))
    }

    pub fn delete_exchange(&self, name: &str, if_unused: bool) -> BrokerResult<()> {
        if name.is_empty() {
            return Err(Self::default_exchange_refused());
        }
        if name.starts_with("amq.") {
            return Err(BrokerError::AccessRefused(format!(
                "deletion of system exchange '{name}' in vhost '{}' not allowed",
                self.name
            )));
        }
        let removed = {
            let mut exchanges = write(&self.exchanges);
            match exchanges.get(name) {
                None => return Ok(()),
                Some(x) if if_unused && x.has_bindings() => {
                    return Err(BrokerError::PreconditionFailed(format!(
                        "exchange '{name}' in vhost '{}' in use",
                        self.name
                    )));
                }
                Some(_) => exchanges.remove(name),
            }
        };
        if let Some(x) = removed {
            self.forget_exchange(&x);
        }
        Ok(())
    }

    /// After an exchange left the map: drop bindings to it, and its stored copy.
    fn forget_exchange(&self, x: &Exchange) {
        if let (true, Some(store)) = (x.durable, &self.store) {
            store.delete_exchange(&self.name, &x.name);
        }
        self.remove_bindings_to(|d| d.is_exchange(&x.name));
    }

    /// Removes every binding leading to a destination, then deletes auto-delete
    /// exchanges left without bindings (which can cascade).
    fn remove_bindings_to(&self, pred: impl Fn(&Destination) -> bool) {
        let emptied: Vec<String> = read(&self.exchanges)
            .values()
            .filter(|x| x.unbind_where(&pred) && x.auto_delete)
            .map(|x| x.name.clone())
            .collect();
        for name in emptied {
            self.auto_delete_exchange(&name);
        }
    }

    fn auto_delete_exchange(&self, name: &str) {
        let removed = {
            let mut exchanges = write(&self.exchanges);
            match exchanges.get(name) {
                Some(x) if x.auto_delete && !x.has_bindings() => exchanges.remove(name),
                _ => None,
            }
        };
        if let Some(x) = removed {
            tracing::debug!(exchange = name, "auto-delete exchange deleted");
            self.forget_exchange(&x);
        }
    }

    /// exchange.bind: routes from `source` to `destination`.
    pub fn bind_exchange(
        &self,
        destination: &str,
        source: &str,
        routing_key: &str,
        arguments: &FieldTable,
    ) -> BrokerResult<()> {
        if destination.is_empty() || source.is_empty() {
            return Err(Self::default_exchange_refused());
        }
        self.exchange(destination)?;
        let src = self.exchange(source)?;
        Self::validate_binding(&src, arguments)?;
        let binding = Binding {
            destination: Destination::Exchange(destination.to_owned()),
            routing_key: routing_key.to_owned(),
            arguments: arguments.clone(),
        };
        if let Some((store, key)) =
            self.stored_binding(&src, &binding.destination, routing_key, arguments)
        {
            store.put_binding(&key);
        }
        src.bind(binding);
        Ok(())
    }

    pub fn unbind_exchange(
        &self,
        destination: &str,
        source: &str,
        routing_key: &str,
        arguments: &FieldTable,
    ) -> BrokerResult<()> {
        if destination.is_empty() || source.is_empty() {
            return Err(Self::default_exchange_refused());
        }
        let (Ok(src), Ok(_)) = (self.exchange(source), self.exchange(destination)) else {
            // Unbinding something missing succeeds, as in RabbitMQ.
            return Ok(());
        };
        let binding = Binding {
            destination: Destination::Exchange(destination.to_owned()),
            routing_key: routing_key.to_owned(),
            arguments: arguments.clone(),
        };
        self.unbind(&src, &binding);
        Ok(())
    }

    fn unbind(&self, src: &Exchange, binding: &Binding) {
        if let Some((store, key)) = self.stored_binding(
            src,
            &binding.destination,
            &binding.routing_key,
            &binding.arguments,
        ) {
            store.delete_binding(&key);
        }
        if src.unbind(binding) && src.auto_delete {
            self.auto_delete_exchange(&src.name);
        }
    }

    fn validate_binding(x: &Exchange, arguments: &FieldTable) -> BrokerResult<()> {
        if x.kind == ExchangeKind::Headers {
            crate::broker::exchange::validate_headers_binding(arguments)
                .map_err(BrokerError::PreconditionFailed)?;
        }
        Ok(())
    }

    /// Looks a queue up, enforcing exclusivity for `connection_id`.
    pub fn queue(&self, name: &str, connection_id: u64) -> BrokerResult<Arc<Queue>> {
        let q = read(&self.queues)
            .get(name)
            .cloned()
            .ok_or_else(|| self.no_queue(name))?;
        self.check_owner(&q, connection_id)?;
        Ok(q)
    }

    fn check_owner(&self, q: &Queue, connection_id: u64) -> BrokerResult<()> {
        match q.exclusive_owner {
            Some(owner) if owner != connection_id => Err(BrokerError::ResourceLocked(format!(
                "cannot obtain exclusive access to locked queue '{}' in vhost '{}'. It could be \
                 originally declared on another connection or the exclusive property value does \
                 not match that of the original declaration.",
                q.name, self.name
            ))),
            _ => Ok(()),
        }
    }

    /// queue.declare; returns the queue with its message and consumer counts.
    pub fn declare_queue(
        self: &Arc<Self>,
        d: &QueueDeclare,
    ) -> BrokerResult<(Arc<Queue>, u32, u32)> {
        if d.passive {
            let q = self.queue(d.name, d.connection_id)?;
            q.touch();
            return Ok((q.clone(), q.message_count(), q.consumer_count()));
        }
        if d.name.starts_with("amq.") && !d.server_named {
            return Err(BrokerError::AccessRefused(format!(
                "queue name '{}' contains reserved prefix 'amq.*'",
                d.name
            )));
        }
        let mut queues = write(&self.queues);
        if let Some(q) = queues.get(d.name) {
            let q = q.clone();
            drop(queues);
            self.check_owner(&q, d.connection_id)?;
            if q.exclusive_owner.is_some() != d.exclusive {
                return Err(BrokerError::ResourceLocked(format!(
                    "cannot obtain exclusive access to locked queue '{}' in vhost '{}'. It could \
                     be originally declared on another connection or the exclusive property \
                     value does not match that of the original declaration.",
                    q.name, self.name
                )));
            }
            let what = format!("queue '{}' in vhost '{}'", d.name, self.name);
            if q.durable != d.durable {
                return Err(BrokerError::PreconditionFailed(format!(
                    "inequivalent arg 'durable' for {what}: received '{}' but current is '{}'",
                    flag(d.durable),
                    flag(q.durable)
                )));
            }
            if q.auto_delete != d.auto_delete {
                return Err(BrokerError::PreconditionFailed(format!(
                    "inequivalent arg 'auto_delete' for {what}: received '{}' but current is '{}'",
                    flag(d.auto_delete),
                    flag(q.auto_delete)
                )));
            }
            check_args(&what, QUEUE_ARGS, &q.arguments, d.arguments)?;
            q.touch();
            let (m, c) = (q.message_count(), q.consumer_count());
            return Ok((q, m, c));
        }
        let what = format!("queue '{}' in vhost '{}'", d.name, self.name);
        let args = QueueArgs::parse(&what, d.arguments)?;
        if args.quorum {
            let invalid = |property: &str| {
                BrokerError::PreconditionFailed(format!("invalid property '{property}' for {what}"))
            };
            if d.auto_delete {
                return Err(invalid("auto-delete"));
            }
            if d.exclusive {
                return Err(invalid("exclusive-owner"));
            }
            if !d.durable {
                return Err(invalid("non-durable"));
            }
            tracing::info!(
                queue = d.name,
                "quorum queue declared: served as a durable classic queue"
            );
        }
        let stored = match &self.store {
            Some(store) if d.durable && !d.exclusive => {
                let id = store.new_queue_id();
                store.put_queue(&self.name, d.name, id, d.auto_delete, d.arguments);
                Some((store.clone(), id))
            }
            _ => None,
        };
        let q = Arc::new(Queue::new(QueueOptions {
            name: ShortString::from(d.name),
            vhost_name: self.name.clone(),
            durable: d.durable,
            exclusive_owner: d.exclusive.then_some(d.connection_id),
            auto_delete: d.auto_delete,
            arguments: d.arguments.clone(),
            args,
            stored,
            vhost: Arc::downgrade(self),
        }));
        queues.insert(d.name.to_owned(), q.clone());
        drop(queues);
        q.touch();
        Ok((q, 0, 0))
    }

    pub fn bind_queue(
        &self,
        queue: &str,
        exchange: &str,
        routing_key: &str,
        arguments: &FieldTable,
        connection_id: u64,
    ) -> BrokerResult<()> {
        if exchange.is_empty() {
            return Err(Self::default_exchange_refused());
        }
        let q = self.queue(queue, connection_id)?;
        let x = self.exchange(exchange)?;
        Self::validate_binding(&x, arguments)?;
        let binding = Binding {
            destination: Destination::Queue(q),
            routing_key: routing_key.to_owned(),
            arguments: arguments.clone(),
        };
        if let Some((store, key)) =
            self.stored_binding(&x, &binding.destination, routing_key, arguments)
        {
            store.put_binding(&key);
        }
        x.bind(binding);
        Ok(())
    }

    pub fn unbind_queue(
        &self,
        queue: &str,
        exchange: &str,
        routing_key: &str,
        arguments: &FieldTable,
        connection_id: u64,
    ) -> BrokerResult<()> {
        if exchange.is_empty() {
            return Err(Self::default_exchange_refused());
        }
        let q = match self.queue(queue, connection_id) {
            Ok(q) => q,
            Err(BrokerError::NotFound(_)) => return Ok(()),
            Err(e) => return Err(e),
        };
        let Ok(x) = self.exchange(exchange) else {
            return Ok(());
        };
        let binding = Binding {
            destination: Destination::Queue(q),
            routing_key: routing_key.to_owned(),
            arguments: arguments.clone(),
        };
        self.unbind(&x, &binding);
        Ok(())
    }

    /// queue.delete; returns how many messages the queue held. Deleting a missing
    /// queue succeeds with 0, as in RabbitMQ.
    pub fn delete_queue(
        &self,
        name: &str,
        if_unused: bool,
        if_empty: bool,
        connection_id: u64,
    ) -> BrokerResult<u32> {
        let q = match self.queue(name, connection_id) {
            Ok(q) => q,
            Err(BrokerError::NotFound(_)) => return Ok(0),
            Err(e) => return Err(e),
        };
        q.check_delete(if_unused, if_empty)?;
        Ok(self.remove_queue(&q))
    }

    /// Removes a queue and its bindings, cancelling its consumers.
    pub fn remove_queue(&self, q: &Arc<Queue>) -> u32 {
        let removed = {
            let mut queues = write(&self.queues);
            match queues.get(q.name.as_str()) {
                Some(current) if Arc::ptr_eq(current, q) => queues.remove(q.name.as_str()),
                _ => None,
            }
        };
        if removed.is_none() {
            return 0;
        }
        let count = q.mark_deleted();
        self.remove_bindings_to(|d| matches!(d, Destination::Queue(b) if Arc::ptr_eq(b, q)));
        tracing::debug!(queue = %q.name, vhost = %self.name, "queue deleted");
        count
    }

    /// Creates the private queue behind a direct reply-to consumer.
    pub fn add_reply_queue(&self, connection_id: u64) -> Arc<Queue> {
        let name = format!("{REPLY_TO}.{}", crate::broker::random_name());
        let q = Arc::new(Queue::new(QueueOptions {
            name: ShortString::from(name.as_str()),
            vhost_name: self.name.clone(),
            durable: false,
            exclusive_owner: Some(connection_id),
            auto_delete: false,
            arguments: FieldTable::default(),
            args: QueueArgs::default(),
            stored: None,
            vhost: Weak::new(),
        }));
        write(&self.replies).insert(name, q.clone());
        q
    }

    pub fn remove_reply_queue(&self, q: &Arc<Queue>) {
        write(&self.replies).remove(q.name.as_str());
        q.mark_deleted();
    }

    /// Deletes the exclusive queues of a closing connection.
    pub fn remove_exclusive_queues(&self, connection_id: u64) {
        let owned: Vec<Arc<Queue>> = read(&self.queues)
            .values()
            .filter(|q| q.exclusive_owner == Some(connection_id))
            .cloned()
            .collect();
        for q in owned {
            self.remove_queue(&q);
        }
    }

    /// Republishes messages that `from` dead-lettered to its dead-letter exchange.
    /// Like RabbitMQ's classic queues this is at most once: no confirms, a missing
    /// exchange or no matching binding drops the message, and so does a cycle that
    /// no client rejection interrupted.
    pub fn dead_letter(&self, from: &Queue, dead: &[(QueueEntry, Reason)]) {
        let Some(dlx) = from.args.dead_letter_exchange.as_deref() else {
            return;
        };
        let mut targets = Vec::new();
        for (entry, reason) in dead {
            let (msg, headers) = deadletter::dead_letter(
                &entry.msg,
                *reason,
                from.name.as_str(),
                dlx,
                from.args.dead_letter_routing_key.as_deref(),
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
            if from.args.dead_letter_routing_key.is_none()
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

    /// Enqueues a message the broker itself publishes, storing it if it is
    /// persistent and durable queues take it.
    fn publish_internal(&self, mut msg: Message, targets: &[Arc<Queue>]) {
        if targets.is_empty() {
            return;
        }
        let durable = targets.iter().filter(|q| q.store_id().is_some()).count() as u32;
        let store = self
            .store
            .as_ref()
            .filter(|_| msg.is_persistent() && durable > 0);
        if let Some(store) = store {
            msg.store_id = store.new_message_id();
        }
        let msg = Arc::new(msg);
        if let Some(store) = store {
            store.put_message(msg.store_id, durable, msg.clone());
        }
        for q in targets {
            let taken = q.publish(msg.clone()).outcome;
            if let (Some(store), false, true) = (
                store,
                matches!(taken, Enqueued::Yes(_)),
                q.store_id().is_some(),
            ) {
                store.unref(msg.store_id);
            }
        }
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
        Self::route_from(&exchanges, x, routing_key, headers, out, &mut visited);
        Ok(())
    }

    fn route_from<'a>(
        exchanges: &'a HashMap<String, Arc<Exchange>>,
        x: &'a Exchange,
        routing_key: &str,
        headers: Option<&FieldTable>,
        out: &mut Vec<Arc<Queue>>,
        visited: &mut Vec<&'a str>,
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
                Destination::Queue(q) => {
                    if !out.iter().any(|o| Arc::ptr_eq(o, q)) {
                        out.push(q.clone());
                    }
                }
                Destination::Exchange(name) => {
                    if let Some(e) = exchanges.get(name) {
                        next.push(e);
                    }
                }
            }
        });
        for e in next {
            Self::route_from(exchanges, e, routing_key, headers, out, visited);
        }
        if !matched && let Some(alt) = x.alternate.as_deref().and_then(|a| exchanges.get(a)) {
            Self::route_from(exchanges, alt, routing_key, headers, out, visited);
        }
    }
}
