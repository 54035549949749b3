//! queue.declare, bind, unbind and delete in a virtual host, exclusive and auto-delete
//! queues, and the private queues of direct reply-to.

use super::equivalence::{QUEUE_ARGS, check_args};
use super::{QueueDeclare, REPLY_TO, VHost, flag, read, write};
use crate::broker::Queue;
use crate::broker::args::QueueArgs;
use crate::broker::exchange::{Binding, Destination};
use crate::broker::policy::Target;
use crate::broker::queue::QueueOptions;
use crate::model::{BrokerError, BrokerResult};
use amq_protocol::types::{FieldTable, ShortString};
use std::sync::{Arc, Weak};

impl VHost {
    /// Looks a queue up, enforcing exclusivity for `connection_id`.
    pub fn queue(&self, name: &str, connection_id: u64) -> BrokerResult<Arc<Queue>> {
        let q = read(&self.queues)
            .get(name)
            .cloned()
            .ok_or_else(|| self.no_queue(name))?;
        self.check_owner(&q, connection_id)?;
        Ok(q)
    }

    /// A queue by name, whoever owns it (for reading its state).
    pub fn find_queue(&self, name: &str) -> Option<Arc<Queue>> {
        read(&self.queues).get(name).cloned()
    }

    pub(super) fn check_owner(&self, q: &Queue, connection_id: u64) -> BrokerResult<()> {
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
        if args.stream.is_some() && self.store.is_none() {
            return Err(BrokerError::NotImplemented(format!(
                "cannot declare stream {what}: streams need the broker's data directory"
            )));
        }
        if args.quorum || args.stream.is_some() {
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
            if args.quorum {
                tracing::info!(
                    queue = d.name,
                    "quorum queue declared: served as a durable classic queue"
                );
            }
        }
        let policy = self.policy_for(Target::Queue(args.policy_type()), d.name);
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
            policy,
            stored,
            vhost: Arc::downgrade(self),
        }));
        queues.insert(d.name.to_owned(), q.clone());
        drop(queues);
        crate::metrics::inc(&self.metrics.queues_created);
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
        crate::metrics::inc(&self.metrics.queues_deleted);
        self.remove_bindings_to(|d| matches!(d, Destination::Queue(b) if Arc::ptr_eq(b, q)));
        tracing::debug!(queue = %q.name, vhost = %self.name, "queue deleted");
        count
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
            policy: None,
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
}
