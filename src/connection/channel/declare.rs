//! The exchange and queue classes: declare, delete, bind, unbind and purge. The broker
//! applies them; the channel checks the names as RabbitMQ reads them and replies once a
//! durable change is on disk.

use super::{Channel, Failure, command_invalid};
use crate::access::{Perm, Resource};
use crate::broker::random_name;
use crate::broker::vhost::{ExchangeDeclare, QueueDeclare, REPLY_TO};
use crate::connection::Session;
use crate::model::BrokerError;
use amq_protocol::protocol::{AMQPClass, exchange, queue as q};
use amq_protocol::types::{FieldTable, ShortString};

impl Channel {
    pub(super) fn exchange_method(
        &mut self,
        s: &mut Session,
        m: exchange::AMQPMethod,
    ) -> Result<(), Failure> {
        match m {
            exchange::AMQPMethod::Declare(d) => {
                let name = strip_cr_lf(d.exchange);
                s.check_exchange_declare(name.as_str(), d.kind.as_str(), d.passive, &d.arguments)?;
                s.vhost.declare_exchange(&ExchangeDeclare {
                    name: name.as_str(),
                    kind: d.kind.as_str(),
                    passive: d.passive,
                    durable: d.durable,
                    auto_delete: d.auto_delete,
                    internal: d.internal,
                    arguments: &d.arguments,
                })?;
                self.reply_stored(
                    s,
                    d.nowait,
                    AMQPClass::Exchange(exchange::AMQPMethod::DeclareOk(exchange::DeclareOk {})),
                );
            }
            exchange::AMQPMethod::Delete(d) => {
                let name = strip_cr_lf(d.exchange);
                s.check_exchange_delete(name.as_str())?;
                s.vhost.delete_exchange(name.as_str(), d.if_unused)?;
                self.reply_stored(
                    s,
                    d.nowait,
                    AMQPClass::Exchange(exchange::AMQPMethod::DeleteOk(exchange::DeleteOk {})),
                );
            }
            exchange::AMQPMethod::Bind(b) => {
                let binding = (b.destination, b.source, b.routing_key);
                self.exchange_binding(s, true, binding, &b.arguments, b.nowait)?;
            }
            exchange::AMQPMethod::Unbind(b) => {
                let binding = (b.destination, b.source, b.routing_key);
                self.exchange_binding(s, false, binding, &b.arguments, b.nowait)?;
            }
            _ => return Err(command_invalid("exchange")),
        }
        Ok(())
    }

    /// exchange.bind (`bind`) or exchange.unbind of (destination, source, key).
    fn exchange_binding(
        &mut self,
        s: &mut Session,
        bind: bool,
        (destination, source, key): (ShortString, ShortString, ShortString),
        arguments: &FieldTable,
        nowait: bool,
    ) -> Result<(), Failure> {
        let (destination, source) = (strip_cr_lf(destination), strip_cr_lf(source));
        let (d, src, key) = (destination.as_str(), source.as_str(), key.as_str());
        s.check_binding(Resource::Exchange, d, src, key)?;
        let ok = if bind {
            s.vhost.bind_exchange(d, src, key, arguments)?;
            exchange::AMQPMethod::BindOk(exchange::BindOk {})
        } else {
            s.vhost.unbind_exchange(d, src, key, arguments)?;
            exchange::AMQPMethod::UnbindOk(exchange::UnbindOk {})
        };
        self.reply_stored(s, nowait, AMQPClass::Exchange(ok));
        Ok(())
    }

    pub(super) fn queue_method(
        &mut self,
        s: &mut Session,
        m: q::AMQPMethod,
    ) -> Result<(), Failure> {
        let conn_id = s.id;
        match m {
            q::AMQPMethod::Declare(d) => {
                let mut d = d;
                d.queue = strip_cr_lf(d.queue);
                if d.queue.as_str().starts_with(REPLY_TO) {
                    s.vhost.declare_reply_to(d.queue.as_str())?;
                    self.reply(
                        s,
                        d.nowait,
                        AMQPClass::Queue(q::AMQPMethod::DeclareOk(q::DeclareOk {
                            queue: d.queue,
                            message_count: 0,
                            consumer_count: 1,
                        })),
                    );
                    return Ok(());
                }
                let server_named = d.queue.as_str().is_empty() && !d.passive;
                let name = if server_named {
                    ShortString::from(format!("amq.gen-{}", random_name()))
                } else {
                    self.queue_name(&d.queue)?
                };
                // A reserved name is refused before any permission (rabbit_channel's
                // check_name), by the broker.
                if d.passive {
                    s.check_any(Resource::Queue, name.as_str())?;
                } else if server_named || !name.as_str().starts_with("amq.") {
                    s.check_queue_declare(name.as_str(), &d.arguments)?;
                }
                let (_, message_count, consumer_count) = s.vhost.declare_queue(&QueueDeclare {
                    name: name.as_str(),
                    passive: d.passive,
                    durable: d.durable,
                    exclusive: d.exclusive,
                    auto_delete: d.auto_delete,
                    arguments: &d.arguments,
                    connection_id: conn_id,
                    server_named,
                })?;
                if !d.passive {
                    crate::metrics::inc(&s.metrics.queues_declared);
                }
                self.last_queue = Some(name.clone());
                self.reply_stored(
                    s,
                    d.nowait,
                    AMQPClass::Queue(q::AMQPMethod::DeclareOk(q::DeclareOk {
                        queue: name,
                        message_count,
                        consumer_count,
                    })),
                );
            }
            q::AMQPMethod::Bind(b) => {
                let (name, exchange, key) = self.binding(s, b.queue, b.exchange, b.routing_key)?;
                s.vhost.bind_queue(
                    name.as_str(),
                    exchange.as_str(),
                    key.as_str(),
                    &b.arguments,
                    conn_id,
                )?;
                self.reply_stored(
                    s,
                    b.nowait,
                    AMQPClass::Queue(q::AMQPMethod::BindOk(q::BindOk {})),
                );
            }
            q::AMQPMethod::Unbind(b) => {
                let (name, exchange, key) = self.binding(s, b.queue, b.exchange, b.routing_key)?;
                s.vhost.unbind_queue(
                    name.as_str(),
                    exchange.as_str(),
                    key.as_str(),
                    &b.arguments,
                    conn_id,
                )?;
                self.reply_stored(
                    s,
                    false,
                    AMQPClass::Queue(q::AMQPMethod::UnbindOk(q::UnbindOk {})),
                );
            }
            q::AMQPMethod::Purge(p) => {
                let name = self.queue_name(&p.queue)?;
                s.check(Perm::Read, Resource::Queue, name.as_str())?;
                let queue = s.vhost.queue(name.as_str(), conn_id)?;
                queue.refuse_on_stream("queue.purge")?;
                let message_count = queue.purge();
                self.reply_stored(
                    s,
                    p.nowait,
                    AMQPClass::Queue(q::AMQPMethod::PurgeOk(q::PurgeOk { message_count })),
                );
            }
            q::AMQPMethod::Delete(d) => {
                let name = self.queue_name(&strip_cr_lf(d.queue))?;
                s.check(Perm::Configure, Resource::Queue, name.as_str())?;
                let message_count =
                    s.vhost
                        .delete_queue(name.as_str(), d.if_unused, d.if_empty, conn_id)?;
                self.reply_stored(
                    s,
                    d.nowait,
                    AMQPClass::Queue(q::AMQPMethod::DeleteOk(q::DeleteOk { message_count })),
                );
            }
            _ => return Err(command_invalid("queue")),
        }
        Ok(())
    }

    /// The queue, exchange and routing key of a queue.bind or unbind: names without
    /// CR and LF, an empty queue name meaning the last declared queue, and with it an
    /// empty routing key meaning that queue's name too (RabbitMQ's shortcuts).
    /// queue.bind / unbind: the queue, exchange and key it names (the last declared
    /// queue and its name as key when left empty), once the permission check passed.
    pub(super) fn binding(
        &self,
        s: &mut Session,
        queue: ShortString,
        exchange: ShortString,
        key: ShortString,
    ) -> Result<(ShortString, ShortString, ShortString), Failure> {
        let queue = strip_cr_lf(queue);
        let name = self.queue_name(&queue)?;
        let key = if queue.as_str().is_empty() && key.as_str().is_empty() {
            name.clone()
        } else {
            key
        };
        let exchange = strip_cr_lf(exchange);
        s.check_binding(
            Resource::Queue,
            name.as_str(),
            exchange.as_str(),
            key.as_str(),
        )?;
        Ok((name, exchange, key))
    }

    pub(super) fn queue_name(&self, name: &ShortString) -> Result<ShortString, Failure> {
        if !name.as_str().is_empty() {
            return Ok(name.clone());
        }
        self.last_queue.clone().ok_or_else(|| {
            Failure::Broker(BrokerError::NotFound("no previously declared queue".into()))
        })
    }
}

/// An exchange or queue name with CR and LF removed, as RabbitMQ reads the names of
/// declares, deletes and bindings.
fn strip_cr_lf(name: ShortString) -> ShortString {
    if name.as_str().contains(['\r', '\n']) {
        ShortString::from(name.as_str().replace(['\r', '\n'], ""))
    } else {
        name
    }
}
