//! Export in RabbitMQ's shape: every top-level key RabbitMQ writes, users with
//! their hashes, vhosts with metadata and limits, operator policies as
//! `operator_policy` parameters. Exclusive queues, the default exchange and the
//! `amq.*` exchanges are left out (and bindings from the default exchange). A
//! vhost-scoped export (`GET /api/definitions/VHOST`) holds that vhost's
//! parameters, policies, exchanges, queues and bindings without their `vhost` field.

use super::fields::from_table;
use crate::access::{AccessState, Policy};
use crate::broker::Broker;
use crate::broker::exchange::Destination;
use crate::identity::{PRODUCT, RABBITMQ_VERSION};
use serde_json::{Map, Value, json};

fn policy_value(p: &Policy) -> Value {
    json!({
        "pattern": p.pattern,
        "apply-to": p.apply_to,
        "priority": p.priority,
        "definition": p.definition,
    })
}

fn vhost_limits(s: &AccessState, vhost: &str) -> Value {
    s.parameters
        .iter()
        .find(|p| p.vhost == vhost && p.component == "vhost-limits")
        .map(|p| p.value.clone())
        .filter(Value::is_object)
        .unwrap_or_else(|| json!({}))
}

fn parameters(s: &AccessState, keep: &impl Fn(&str) -> bool) -> Vec<Value> {
    let mut out: Vec<Value> = s
        .parameters
        .iter()
        .filter(|p| keep(&p.vhost))
        .map(|p| json!({"vhost": p.vhost, "component": p.component, "name": p.name, "value": p.value}))
        .collect();
    out.extend(
        s.operator_policies
            .iter()
            .filter(|p| keep(&p.vhost))
            .map(|p| {
                json!({"vhost": p.vhost, "component": "operator_policy", "name": p.name,
               "value": policy_value(p)})
            }),
    );
    out
}

fn policies(s: &AccessState, keep: &impl Fn(&str) -> bool) -> Vec<Value> {
    s.policies
        .iter()
        .filter(|p| keep(&p.vhost))
        .map(|p| {
            json!({"vhost": p.vhost, "name": p.name, "pattern": p.pattern,
                   "apply-to": p.apply_to, "priority": p.priority, "definition": p.definition})
        })
        .collect()
}

/// Exchanges, queues and bindings of the live vhosts `keep` selects.
fn entities(broker: &Broker, keep: &impl Fn(&str) -> bool) -> (Vec<Value>, Vec<Value>, Vec<Value>) {
    let (mut exchanges, mut queues, mut bindings) = (Vec::new(), Vec::new(), Vec::new());
    for name in broker.vhost_names() {
        if !keep(&name) {
            continue;
        }
        let Some(vhost) = broker.vhost(&name) else {
            continue;
        };
        let mut qs = vhost.queues();
        qs.sort_by(|a, b| a.name.as_str().cmp(b.name.as_str()));
        for q in qs.iter().filter(|q| q.exclusive_owner.is_none()) {
            let kind = match q.arguments.inner().get("x-queue-type") {
                Some(amq_protocol::types::AMQPValue::LongString(s)) => {
                    String::from_utf8_lossy(s.as_bytes()).into_owned()
                }
                Some(amq_protocol::types::AMQPValue::ShortString(s)) => s.as_str().to_owned(),
                _ => "classic".to_owned(),
            };
            queues.push(json!({
                "name": q.name.as_str(), "vhost": name, "durable": q.durable,
                "auto_delete": q.auto_delete, "arguments": from_table(&q.arguments),
                "type": kind,
            }));
        }
        let mut xs = vhost.exchanges();
        xs.sort_by(|a, b| a.name.cmp(&b.name));
        for x in &xs {
            if x.name.is_empty() {
                continue;
            }
            if !x.name.starts_with("amq.") {
                exchanges.push(json!({
                    "name": x.name, "vhost": name, "type": x.kind.as_str(),
                    "durable": x.durable, "auto_delete": x.auto_delete,
                    "internal": x.internal, "arguments": from_table(&x.arguments),
                }));
            }
            for b in x.bindings() {
                let (destination, kind) = match &b.destination {
                    Destination::Queue(q) if q.exclusive_owner.is_none() => {
                        (q.name.as_str().to_owned(), "queue")
                    }
                    Destination::Queue(_) => continue,
                    Destination::Exchange(e) => (e.clone(), "exchange"),
                };
                bindings.push(json!({
                    "source": x.name, "vhost": name, "destination": destination,
                    "destination_type": kind, "routing_key": b.routing_key,
                    "arguments": from_table(&b.arguments),
                }));
            }
        }
    }
    (exchanges, queues, bindings)
}

fn strip_vhost(items: Vec<Value>) -> Value {
    Value::Array(
        items
            .into_iter()
            .map(|mut v| {
                if let Value::Object(m) = &mut v {
                    m.remove("vhost");
                }
                v
            })
            .collect(),
    )
}

/// The broker's definitions: all of them, or one vhost's (None if it does not exist).
pub fn export(broker: &Broker, vhost: Option<&str>) -> Option<Value> {
    let s = broker.access().snapshot();
    let mut doc = Map::new();
    doc.insert("rabbit_version".into(), json!(RABBITMQ_VERSION));
    doc.insert("rabbitmq_version".into(), json!(RABBITMQ_VERSION));
    doc.insert("product_name".into(), json!(PRODUCT));
    doc.insert("product_version".into(), json!(RABBITMQ_VERSION));
    if let Some(only) = vhost {
        broker.vhost(only)?;
        let keep = |v: &str| v == only;
        let (exchanges, queues, bindings) = entities(broker, &keep);
        let info = s.vhost(only);
        doc.insert(
            "rabbitmq_definition_format".into(),
            json!("single_virtual_host"),
        );
        doc.insert("original_vhost_name".into(), json!(only));
        doc.insert(
            "description".into(),
            json!(info.map(|v| v.description.clone()).unwrap_or_default()),
        );
        doc.insert("metadata".into(), vhost_metadata(info));
        doc.insert("limits".into(), vhost_limits(&s, only));
        doc.insert("parameters".into(), strip_vhost(parameters(&s, &keep)));
        doc.insert("policies".into(), strip_vhost(policies(&s, &keep)));
        doc.insert("queues".into(), strip_vhost(queues));
        doc.insert("exchanges".into(), strip_vhost(exchanges));
        doc.insert("bindings".into(), strip_vhost(bindings));
        return Some(Value::Object(doc));
    }
    let all = |_: &str| true;
    let users: Vec<Value> = s
        .users
        .iter()
        .map(|u| {
            json!({"name": u.name, "password_hash": u.password_hash,
                   "hashing_algorithm": u.hashing_algorithm, "tags": u.tags, "limits": u.limits})
        })
        .collect();
    let vhosts: Vec<Value> = s
        .vhosts
        .iter()
        .map(|v| {
            let mut o = json!({"name": v.name, "description": v.description, "tags": v.tags,
                               "metadata": vhost_metadata(Some(v)),
                               "limits": vhost_limits(&s, &v.name)});
            if let (Some(t), Value::Object(m)) = (&v.default_queue_type, &mut o) {
                m.insert("default_queue_type".into(), json!(t));
            }
            o
        })
        .collect();
    let global: Vec<Value> = s
        .global_parameters
        .iter()
        .filter(|g| !g.name.starts_with("internal"))
        .map(|g| json!({"name": g.name, "value": g.value}))
        .collect();
    let (exchanges, queues, bindings) = entities(broker, &all);
    doc.insert("users".into(), Value::Array(users));
    doc.insert("vhosts".into(), Value::Array(vhosts));
    doc.insert("permissions".into(), json!(s.permissions));
    doc.insert("topic_permissions".into(), json!(s.topic_permissions));
    doc.insert("parameters".into(), Value::Array(parameters(&s, &all)));
    doc.insert("global_parameters".into(), Value::Array(global));
    doc.insert("policies".into(), Value::Array(policies(&s, &all)));
    doc.insert("queues".into(), Value::Array(queues));
    doc.insert("exchanges".into(), Value::Array(exchanges));
    doc.insert("bindings".into(), Value::Array(bindings));
    Some(Value::Object(doc))
}

/// A vhost's metadata as 3.10+ exports it: description, tags, default queue type.
fn vhost_metadata(v: Option<&crate::access::VHostInfo>) -> Value {
    let Some(v) = v else {
        return json!({"description": "", "tags": []});
    };
    let mut m = match &v.metadata {
        Some(Value::Object(m)) => m.clone(),
        _ => Map::new(),
    };
    m.insert("description".into(), json!(v.description));
    m.insert("tags".into(), json!(v.tags));
    if let Some(t) = &v.default_queue_type {
        m.insert("default_queue_type".into(), json!(t));
    }
    Value::Object(m)
}
