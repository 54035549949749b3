//! exchange.declare, delete, bind and unbind in a virtual host, with RabbitMQ's rules
//! (reserved names, equivalence, auto-delete), and the durable form of bindings.

use super::equivalence::{EXCHANGE_ARGS, check_args};
use super::{ExchangeDeclare, VHost, flag, read, write};
use crate::broker::exchange::{Binding, Destination, Exchange, ExchangeKind};
use crate::broker::policy::Target;
use crate::model::fields::type_name;
use crate::model::{BrokerError, BrokerResult};
use crate::store::{BindingKey, Store};
use amq_protocol::types::{AMQPValue, FieldTable};
use std::sync::Arc;

impl VHost {
    pub fn exchange(&self, name: &str) -> BrokerResult<Arc<Exchange>> {
        read(&self.exchanges)
            .get(name)
            .cloned()
            .ok_or_else(|| self.no_exchange(name))
    }

    /// The names of the exchanges, the default and `amq.*` ones included.
    pub fn exchange_names(&self) -> Vec<String> {
        read(&self.exchanges).keys().cloned().collect()
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
        x.apply_policy(self.policy_for(Target::Exchange, d.name));
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
    pub(super) fn forget_exchange(&self, x: &Exchange) {
        if let (true, Some(store)) = (x.durable, &self.store) {
            store.delete_exchange(&self.name, &x.name);
        }
        self.remove_bindings_to(|d| d.is_exchange(&x.name));
    }

    /// Removes every binding leading to a destination, then deletes auto-delete
    /// exchanges left without bindings (which can cascade).
    pub(super) fn remove_bindings_to(&self, pred: impl Fn(&Destination) -> bool) {
        let emptied: Vec<String> = read(&self.exchanges)
            .values()
            .filter(|x| x.unbind_where(&pred) && x.auto_delete)
            .map(|x| x.name.clone())
            .collect();
        for name in emptied {
            self.auto_delete_exchange(&name);
        }
    }

    pub(super) fn auto_delete_exchange(&self, name: &str) {
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

    pub(super) fn unbind(&self, src: &Exchange, binding: &Binding) {
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

    pub(super) fn validate_binding(x: &Exchange, arguments: &FieldTable) -> BrokerResult<()> {
        if x.kind == ExchangeKind::Headers {
            crate::broker::exchange::validate_headers_binding(arguments)
                .map_err(BrokerError::PreconditionFailed)?;
        }
        Ok(())
    }

    /// The stored form of a binding, if both of its ends are durable.
    pub(super) fn stored_binding(
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
}
