//! Applying checked definitions through the broker's operator functions, in
//! RabbitMQ's order: users, vhosts, permissions, exchanges, topic permissions,
//! global parameters, policies, parameters (operator policies among them), queues,
//! bindings.

use super::parse::Definitions;
use super::{Failure, ImportMode, Outcome, Summary, names, reason};
use crate::broker::Broker;
use crate::broker::vhost::{ExchangeDeclare, QueueDeclare};
use crate::model::BrokerError;

/// Whether to write an entry, given whether one exists: the outcome, or None to
/// leave the existing one alone.
fn decide(exists: bool, mode: ImportMode) -> Option<Outcome> {
    match (exists, mode) {
        (false, _) => Some(Outcome::Created),
        (true, ImportMode::Overwrite) => Some(Outcome::Updated),
        (true, ImportMode::KeepExisting) => None,
    }
}

fn failed(what: &str, e: &BrokerError) -> Failure {
    Failure::new(what, format!("could not be applied: {}", reason(e)))
}

pub fn apply(broker: &Broker, defs: &Definitions, mode: ImportMode) -> Result<Summary, Failure> {
    let mut summary = Summary::default();
    let access = broker.access();
    for u in &defs.users {
        let exists = access.read(|s| s.user(&u.user.name).is_some());
        let Some(outcome) = decide(exists, mode) else {
            summary.add("users", Outcome::Kept);
            continue;
        };
        broker
            .put_user(u.user.clone(), u.password.as_deref())
            .map_err(|e| failed(&format!("user '{}'", u.user.name), &e))?;
        summary.add("users", outcome);
    }
    for v in &defs.vhosts {
        let exists = broker.vhost(&v.name).is_some();
        let Some(outcome) = decide(exists, mode) else {
            summary.add("vhosts", Outcome::Kept);
            continue;
        };
        broker.add_vhost(&v.name);
        access.update(|s| {
            if let Some(record) = s.vhosts.iter_mut().find(|r| r.name == v.name) {
                *record = v.clone();
            }
        });
        summary.add("vhosts", outcome);
    }
    for p in &defs.permissions {
        let exists = access.read(|s| s.permission(&p.user, &p.vhost).is_some());
        let Some(outcome) = decide(exists, mode) else {
            summary.add("permissions", Outcome::Kept);
            continue;
        };
        broker.set_permissions(p.clone()).map_err(|e| {
            failed(
                &format!("permission of user '{}' in vhost '{}'", p.user, p.vhost),
                &e,
            )
        })?;
        summary.add("permissions", outcome);
    }
    for x in &defs.exchanges {
        let what = names::exchange(&x.vhost, &x.name);
        let vhost = broker
            .vhost(&x.vhost)
            .ok_or_else(|| Failure::new(&what, "lost its vhost during the import"))?;
        if vhost.exchange(&x.name).is_ok() {
            summary.add("exchanges", Outcome::Kept);
            continue;
        }
        vhost
            .declare_exchange(&ExchangeDeclare {
                name: &x.name,
                kind: &x.kind,
                passive: false,
                durable: x.durable,
                auto_delete: x.auto_delete,
                internal: x.internal,
                arguments: &x.arguments,
            })
            .map_err(|e| failed(&what, &e))?;
        summary.add("exchanges", Outcome::Created);
    }
    for p in &defs.topic_permissions {
        let exists = access.read(|s| {
            s.topic_permissions
                .iter()
                .any(|q| q.user == p.user && q.vhost == p.vhost && q.exchange == p.exchange)
        });
        let Some(outcome) = decide(exists, mode) else {
            summary.add("topic_permissions", Outcome::Kept);
            continue;
        };
        broker.set_topic_permissions(p.clone()).map_err(|e| {
            failed(
                &format!(
                    "topic permission of user '{}' in vhost '{}'",
                    p.user, p.vhost
                ),
                &e,
            )
        })?;
        summary.add("topic_permissions", outcome);
    }
    for g in &defs.global_parameters {
        let exists = access.read(|s| s.global_parameters.iter().any(|q| q.name == g.name));
        let Some(outcome) = decide(exists, mode) else {
            summary.add("global_parameters", Outcome::Kept);
            continue;
        };
        access.update(|s| {
            s.global_parameters.retain(|q| q.name != g.name);
            s.global_parameters.push(g.clone());
        });
        summary.add("global_parameters", outcome);
    }
    for (kind, operator, list) in [
        ("policies", false, &defs.policies),
        ("operator_policies", true, &defs.operator_policies),
    ] {
        for p in list {
            let exists = access.read(|s| {
                let list = if operator {
                    &s.operator_policies
                } else {
                    &s.policies
                };
                list.iter().any(|q| q.vhost == p.vhost && q.name == p.name)
            });
            let Some(outcome) = decide(exists, mode) else {
                summary.add(kind, Outcome::Kept);
                continue;
            };
            broker
                .set_policy(p.clone(), operator)
                .map_err(|e| failed(&format!("policy '{}' in vhost '{}'", p.name, p.vhost), &e))?;
            summary.add(kind, outcome);
        }
    }
    for p in &defs.parameters {
        let exists = access.read(|s| {
            s.parameters
                .iter()
                .any(|q| q.vhost == p.vhost && q.component == p.component && q.name == p.name)
        });
        let Some(outcome) = decide(exists, mode) else {
            summary.add("parameters", Outcome::Kept);
            continue;
        };
        if !matches!(p.component.as_str(), "vhost-limits") {
            tracing::warn!(
                component = %p.component,
                name = %p.name,
                vhost = %p.vhost,
                "definitions: parameter recorded; Warren does not act on this component"
            );
        }
        broker.set_parameter(p.clone()).map_err(|e| {
            failed(
                &format!("parameter '{}' in vhost '{}'", p.name, p.vhost),
                &e,
            )
        })?;
        summary.add("parameters", outcome);
    }
    queues_and_bindings(broker, defs, &mut summary)?;
    Ok(summary)
}

fn queues_and_bindings(
    broker: &Broker,
    defs: &Definitions,
    summary: &mut Summary,
) -> Result<(), Failure> {
    for q in &defs.queues {
        let what = names::queue(&q.vhost, &q.name);
        let vhost = broker
            .vhost(&q.vhost)
            .ok_or_else(|| Failure::new(&what, "lost its vhost during the import"))?;
        if vhost.queues().iter().any(|e| e.name.as_str() == q.name) {
            summary.add("queues", Outcome::Kept);
            continue;
        }
        vhost
            .declare_queue(&QueueDeclare {
                name: &q.name,
                passive: false,
                durable: q.durable,
                exclusive: false,
                auto_delete: q.auto_delete,
                arguments: &q.arguments,
                connection_id: 0,
                server_named: false,
            })
            .map_err(|e| failed(&what, &e))?;
        summary.add("queues", Outcome::Created);
    }
    for b in &defs.bindings {
        let dest_kind = if b.to_queue { "queue" } else { "exchange" };
        let what = format!(
            "binding of exchange '{}' to {dest_kind} '{}' in vhost '{}'",
            b.source, b.destination, b.vhost
        );
        let vhost = broker
            .vhost(&b.vhost)
            .ok_or_else(|| Failure::new(&what, "lost its vhost during the import"))?;
        let result = if b.to_queue {
            vhost.bind_queue(&b.destination, &b.source, &b.routing_key, &b.arguments, 0)
        } else {
            vhost.bind_exchange(&b.destination, &b.source, &b.routing_key, &b.arguments)
        };
        result.map_err(|e| failed(&what, &e))?;
        summary.add("bindings", Outcome::Created);
    }
    Ok(())
}
