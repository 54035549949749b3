//! `/api/queues`: list (also `/api/queues/`, which Celery Flower asks for), show,
//! declare (PUT), delete (with `if-empty` / `if-unused`), purge (`DELETE .../contents`),
//! get (`POST .../get`), the queue's bindings, and actions. Every change is the
//! broker's queue.declare / queue.delete / queue.purge, run with the caller's AMQP
//! permissions.

use super::bindings::rows;
use super::entities::{self, declare_error};
use super::listing::{self, ListParams};
use super::{Api, ApiError, ApiResult, Caller, body, created_or_updated, ok_json};
use crate::access::{Perm, Resource};
use crate::broker::admin::OPERATOR;
use crate::broker::vhost::QueueDeclare;
use crate::broker::{Queue, VHost};
use crate::definitions::fields::from_table;
use crate::metrics::rates::details;
use amq_protocol::types::AMQPValue;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{delete, get, post};
use serde_json::{Value, json};
use std::collections::HashMap;

pub fn routes() -> Router<Api> {
    super::listing::routes(
        &["/api/queues", "/api/queues/"],
        "/api/queues/{vhost}",
        list,
    )
    .route(
        "/api/queues/{vhost}/{name}",
        get(show).put(put).delete(remove),
    )
    .route("/api/queues/{vhost}/{name}/contents", delete(purge))
    .route("/api/queues/{vhost}/{name}/get", post(super::messages::get))
    .route("/api/queues/{vhost}/{name}/bindings", get(bindings))
    .route("/api/queues/{vhost}/{name}/actions", post(actions))
}

/// The type a queue shows: the `x-queue-type` it was declared with, else classic.
fn queue_type(q: &Queue) -> String {
    match q.arguments.inner().get("x-queue-type") {
        Some(AMQPValue::LongString(s)) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
        Some(AMQPValue::ShortString(s)) => s.as_str().to_owned(),
        _ => "classic".to_owned(),
    }
}

/// A queue as RabbitMQ shows it, with its counts, rates and message statistics.
pub fn queue_json(q: &Queue) -> Value {
    let info = q.info();
    let unacked = q.unacked_count();
    // Delivered stream messages stay in the stream: they are not added twice.
    let messages = if q.stream().is_some() {
        info.ready
    } else {
        info.ready + unacked
    };
    let [messages_details, ready_details, unacked_details] =
        q.stats.count_details(messages, info.ready, unacked);
    let (policy, operator_policy, effective) = match &info.policy {
        Some(applied) => (
            applied.policy.as_ref().map(|(n, _)| n.clone()),
            applied.operator.as_ref().map(|(n, _)| n.clone()),
            Value::Object(applied.effective_definition()),
        ),
        None => (None, None, json!({})),
    };
    let idle_since = (info.consumers == 0).then(|| entities::iso_time(info.last_used));
    let capacity = if info.consumers == 0 {
        0.0
    } else {
        f64::from(info.consumers_with_room) / f64::from(info.consumers)
    };
    // A rough figure: the bodies held plus a fixed cost per message and queue.
    let memory = info.ready_bytes + messages * 64 + 2048;
    json!({
        "name": q.name.as_str(),
        "vhost": &*q.vhost_name,
        "type": queue_type(q),
        "durable": q.durable,
        "auto_delete": q.auto_delete,
        "exclusive": q.exclusive_owner.is_some(),
        "arguments": from_table(&q.arguments),
        "node": super::node_name(),
        "state": "running",
        "consumers": info.consumers,
        "consumer_capacity": capacity,
        "consumer_utilisation": capacity,
        "exclusive_consumer_tag": info.exclusive_consumer_tag,
        "single_active_consumer_tag": Value::Null,
        "messages": messages,
        "messages_details": messages_details,
        "messages_ready": info.ready,
        "messages_ready_details": ready_details,
        "messages_unacknowledged": unacked,
        "messages_unacknowledged_details": unacked_details,
        "message_bytes": info.ready_bytes,
        "message_bytes_ready": info.ready_bytes,
        "message_bytes_unacknowledged": 0,
        "memory": memory,
        "policy": policy,
        "operator_policy": operator_policy,
        "effective_policy_definition": effective,
        "idle_since": idle_since,
        "head_message_timestamp": Value::Null,
        "recoverable_slaves": Value::Null,
        "message_stats": q.stats.message_stats(),
        "reductions": 0,
        "reductions_details": details(0.0),
    })
}

fn sorted(vhost: &VHost) -> Vec<std::sync::Arc<Queue>> {
    let mut queues = vhost.queues();
    queues.sort_by(|a, b| a.name.as_str().cmp(b.name.as_str()));
    queues
}

fn list(api: &Api, caller: &Caller, vhost: Option<&str>, p: &ListParams) -> ApiResult<Response> {
    let mut items = Vec::new();
    for v in entities::vhosts(api, caller, vhost)? {
        items.extend(sorted(&v).iter().map(|q| queue_json(q)));
    }
    Ok(ok_json(listing::apply(items, p)?))
}

/// The queue a path names: 404 if it (or its vhost) does not exist.
fn find(api: &Api, caller: &Caller, vhost: &str, name: &str) -> ApiResult<std::sync::Arc<Queue>> {
    entities::vhost(api, caller, vhost)?
        .find_queue(name)
        .ok_or_else(ApiError::not_found)
}

async fn show(
    State(api): State<Api>,
    caller: Caller,
    Path((vhost, name)): Path<(String, String)>,
) -> ApiResult<Response> {
    let q = find(&api, &caller, &vhost, &name)?;
    let mut value = queue_json(&q);
    if let Value::Object(m) = &mut value {
        let consumers = super::consumers::of_queue(&api, &caller, &q);
        m.insert("consumer_details".into(), Value::Array(consumers));
        m.insert("deliveries".into(), json!([]));
        m.insert("incoming".into(), json!([]));
    }
    Ok(ok_json(value))
}

async fn put(
    State(api): State<Api>,
    caller: Caller,
    Path((vhost, name)): Path<(String, String)>,
    bytes: Bytes,
) -> ApiResult<StatusCode> {
    let v = match api.ctx.broker.vhost(&vhost) {
        Some(v) => v,
        None => {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                "vhost_not_found",
            ));
        }
    };
    caller.vhost(&api, &vhost)?;
    let map = body::object(&bytes)?;
    if name.len() > 255 {
        return Err(ApiError::bad_request(format!(
            "queue name '{name}' is too long (max 255 bytes)"
        )));
    }
    let durable = entities::flag(&map, "durable", false)?;
    let auto_delete = entities::flag(&map, "auto_delete", false)?;
    let arguments = entities::arguments(&map)?;
    entities::allow(
        &api,
        &caller,
        &vhost,
        Perm::Configure,
        Resource::Queue,
        &name,
    )?;
    let existed = v.find_queue(&name).is_some();
    crate::metrics::inc(&api.ctx.broker.metrics.queues_declared);
    v.declare_queue(&QueueDeclare {
        name: &name,
        passive: false,
        durable,
        exclusive: false,
        auto_delete,
        arguments: &arguments,
        connection_id: OPERATOR,
        server_named: false,
    })
    .map_err(declare_error)?;
    Ok(created_or_updated(existed))
}

async fn remove(
    State(api): State<Api>,
    caller: Caller,
    Path((vhost, name)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
) -> ApiResult<StatusCode> {
    let v = entities::vhost(&api, &caller, &vhost)?;
    v.find_queue(&name).ok_or_else(ApiError::not_found)?;
    entities::allow(
        &api,
        &caller,
        &vhost,
        Perm::Configure,
        Resource::Queue,
        &name,
    )?;
    let if_unused = entities::query_true(&query, "if-unused");
    let if_empty = entities::query_true(&query, "if-empty");
    v.delete_queue(&name, if_unused, if_empty, OPERATOR)
        .map_err(declare_error)?;
    Ok(StatusCode::NO_CONTENT)
}

async fn purge(
    State(api): State<Api>,
    caller: Caller,
    Path((vhost, name)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let v = entities::vhost(&api, &caller, &vhost)?;
    v.find_queue(&name).ok_or_else(ApiError::not_found)?;
    entities::allow(&api, &caller, &vhost, Perm::Read, Resource::Queue, &name)?;
    let q = v.queue(&name, OPERATOR).map_err(declare_error)?;
    q.purge();
    Ok(StatusCode::NO_CONTENT)
}

async fn bindings(
    State(api): State<Api>,
    caller: Caller,
    Path((vhost, name)): Path<(String, String)>,
    Query(p): Query<ListParams>,
) -> ApiResult<Response> {
    let v = entities::vhost(&api, &caller, &vhost)?;
    v.find_queue(&name).ok_or_else(ApiError::not_found)?;
    let items = rows(&v)
        .iter()
        .filter(|r| r.to_queue && r.destination == name)
        .map(|r| r.json(&v.name))
        .collect();
    Ok(ok_json(listing::apply(items, &p)?))
}

/// `POST .../actions`: `sync` and `cancel_sync` (mirroring, which a single node has
/// nothing to do for); administrators only.
async fn actions(
    State(api): State<Api>,
    caller: Caller,
    Path((vhost, name)): Path<(String, String)>,
    bytes: Bytes,
) -> ApiResult<StatusCode> {
    caller.admin()?;
    find(&api, &caller, &vhost, &name)?;
    let map = body::object(&bytes)?;
    body::present(&map, &["action"])?;
    match body::string(&map, "action")?.as_deref() {
        Some("sync") | Some("cancel_sync") => Ok(StatusCode::NO_CONTENT),
        other => Err(ApiError::bad_request(format!(
            "{{unknown,{}}}",
            other.unwrap_or_default()
        ))),
    }
}
