//! The permission checks of a channel's methods, in RabbitMQ's order (see
//! rabbit_channel): which permission each method needs lives here, the regexes in
//! [`crate::access::permissions`].

use crate::access::{Perm, Resource};
use crate::broker::exchange::ExchangeKind;
use crate::connection::Session;
use crate::model::BrokerError;
use amq_protocol::types::{AMQPValue, FieldTable, ShortString};

type Checked = Result<(), BrokerError>;

/// The string value of argument `key`; `None` when absent or not a string (the
/// broker refuses a wrong type itself, before any permission is asked).
pub(super) fn string_arg(args: &FieldTable, key: &str) -> Option<String> {
    match args.inner().get(key)? {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_owned()),
        _ => None,
    }
}

impl Session {
    /// Any one permission on the resource (passive declares).
    pub(super) fn check_any(&mut self, kind: Resource, name: &str) -> Checked {
        self.permissions().check_any(kind, name)
    }

    /// A topic permission on routing key `key`, if `exchange` is a topic exchange and
    /// the user has topic permissions at all.
    pub(super) fn check_topic(&mut self, perm: Perm, exchange: &str, key: &str) -> Checked {
        if !self.permissions().has_topic_permissions() {
            return Ok(());
        }
        match self.vhost.exchange(exchange) {
            Ok(x) if x.kind == ExchangeKind::Topic => {
                self.permissions().check_topic(perm, exchange, key)
            }
            _ => Ok(()),
        }
    }

    /// exchange.declare: configure on the exchange; for a new one with an alternate
    /// exchange, read on it and write on the alternate. A declare the broker refuses
    /// for its name or type is left to the broker (RabbitMQ checks those first).
    pub(super) fn check_exchange_declare(
        &mut self,
        name: &str,
        kind: &str,
        passive: bool,
        args: &FieldTable,
    ) -> Checked {
        if name.is_empty() {
            return Ok(());
        }
        if passive {
            return self.check_any(Resource::Exchange, name);
        }
        if ExchangeKind::parse(kind).is_none() {
            return Ok(());
        }
        self.check(Perm::Configure, Resource::Exchange, name)?;
        if name.starts_with("amq.") || self.vhost.exchange(name).is_ok() {
            return Ok(());
        }
        if let Some(ae) = string_arg(args, "alternate-exchange") {
            self.check(Perm::Read, Resource::Exchange, name)?;
            self.check(Perm::Write, Resource::Exchange, &ae)?;
        }
        Ok(())
    }

    /// exchange.delete: configure, unless the broker refuses the name anyway.
    pub(super) fn check_exchange_delete(&mut self, name: &str) -> Checked {
        if name.is_empty() || name.starts_with("amq.") {
            return Ok(());
        }
        self.check(Perm::Configure, Resource::Exchange, name)
    }

    /// queue.bind / unbind and exchange.bind / unbind: write on the destination, read
    /// on the source, and the binding key against the topic read permission.
    pub(super) fn check_binding(
        &mut self,
        destination: Resource,
        dest: &str,
        source: &str,
        key: &str,
    ) -> Checked {
        self.check(Perm::Write, destination, dest)?;
        if source.is_empty() || (destination == Resource::Exchange && dest.is_empty()) {
            // The broker refuses bindings of the default exchange.
            return Ok(());
        }
        self.check(Perm::Read, Resource::Exchange, source)?;
        self.check_topic(Perm::Read, source, key)
    }

    /// A new queue.declare: configure on the queue; when it does not exist yet, with
    /// a dead-letter exchange, read on it and write on the exchange, and then the
    /// vhost's `max-queues` limit and the broker's `cluster_queue_limit`.
    pub(super) fn check_queue_declare(&mut self, name: &str, args: &FieldTable) -> Checked {
        self.check(Perm::Configure, Resource::Queue, name)?;
        if !matches!(
            self.vhost.queue(name, self.id),
            Err(BrokerError::NotFound(_))
        ) {
            return Ok(());
        }
        if let Some(dlx) = string_arg(args, "x-dead-letter-exchange") {
            self.check(Perm::Read, Resource::Queue, name)?;
            self.check(Perm::Write, Resource::Exchange, &dlx)?;
        }
        let vhost = self.vhost.name.clone();
        let limit = self
            .ctx
            .broker
            .access()
            .read(|s| s.vhost_limit(&vhost, "max-queues"));
        if let Some(limit) = limit
            && self.vhost.queues().len() as u64 >= limit
        {
            return Err(BrokerError::PreconditionFailed(format!(
                "cannot declare queue '{name}': queue limit in vhost '{vhost}' ({limit}) is reached"
            )));
        }
        let cluster_limit = self.ctx.config.cluster_queue_limit;
        if cluster_limit > 0 && self.ctx.broker.queue_count() >= cluster_limit {
            return Err(BrokerError::PreconditionFailed(format!(
                "cannot declare queue '{name}': queue limit in cluster ({cluster_limit}) is reached"
            )));
        }
        Ok(())
    }
}

/// The exchanges a channel last published to with write permission, valid for one
/// [`crate::access::Access::generation`]: a publish to one of them skips the regex.
#[derive(Default)]
pub(super) struct PublishGrants {
    generation: u64,
    exchanges: Vec<ShortString>,
    /// The user has topic permissions in the vhost.
    topics: bool,
}

/// How many exchange names a channel remembers.
const GRANTS: usize = 4;

impl PublishGrants {
    /// Write on `exchange` for basic.publish; whether the topic permissions must be
    /// checked too.
    pub(super) fn check(
        &mut self,
        s: &mut Session,
        exchange: &ShortString,
    ) -> Result<bool, BrokerError> {
        let generation = s.ctx.broker.access().generation();
        if generation == self.generation && self.remembers(exchange.as_str()) {
            return Ok(self.topics);
        }
        s.check(Perm::Write, Resource::Exchange, exchange.as_str())?;
        let perms = s.permissions();
        if perms.generation() != self.generation {
            self.generation = perms.generation();
            self.topics = perms.has_topic_permissions();
            self.exchanges.clear();
        }
        if self.exchanges.len() == GRANTS {
            self.exchanges.remove(0);
        }
        self.exchanges.push(exchange.clone());
        Ok(self.topics)
    }

    /// Whether write on `exchange` was granted. Names are compared by length first
    /// and the default exchange's empty name by length alone: comparing the bytes of
    /// two empty strings still calls `memcmp` with the dangling pointer of an empty
    /// `String`. On this project's AVX-512 benchmark machine nearly all of that
    /// memcmp's samples sat on its masked vector load (most likely a fault-suppression
    /// assist on the unmapped address), 7% of the broker's CPU on the 16 B row.
    fn remembers(&self, exchange: &str) -> bool {
        self.exchanges.iter().any(|known| {
            let known = known.as_str();
            known.len() == exchange.len() && (exchange.is_empty() || known == exchange)
        })
    }
}
