//! `/api/consumers` and `/api/consumers/{vhost}`: every queue's consumers, with their
//! channel's details. Monitoring and administrator users see all, the others the
//! consumers of their own connections.

use super::listing::{self, ListParams};
use super::{Api, ApiResult, Caller, node_name, ok_json};
use crate::broker::queue::Queue;
use crate::broker::queue::listing::ConsumerInfo;
use crate::broker::registry::{ConnectionInfo, host};
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use axum::routing::get;
use serde_json::{Value, json};
use std::collections::HashMap;

pub fn routes() -> Router<Api> {
    Router::new()
        .route("/api/consumers", get(list))
        .route("/api/consumers/", get(list))
        .route("/api/consumers/{vhost}", get(vhost_list))
}

/// A consumer's queue: its name and vhost.
pub(super) struct QueueRef {
    pub name: String,
    pub vhost: String,
}

/// The consumers of every queue, or of one vhost's.
pub(super) fn of_vhost(api: &Api, vhost: Option<&str>) -> Vec<(ConsumerInfo, QueueRef)> {
    let broker = &api.ctx.broker;
    let mut names = match vhost {
        Some(v) => vec![v.to_owned()],
        None => broker.vhost_names(),
    };
    names.sort();
    let mut out = Vec::new();
    for name in names {
        let Some(v) = broker.vhost(&name) else {
            continue;
        };
        let mut queues = v.queues();
        queues.sort_by(|a, b| a.name.cmp(&b.name));
        for q in queues {
            for c in q.consumer_infos() {
                let queue = QueueRef {
                    name: q.name.to_string(),
                    vhost: q.vhost_name.to_string(),
                };
                out.push((c, queue));
            }
        }
    }
    out
}

/// A consumer as the management API shows it.
pub(super) fn consumer_json(c: &ConsumerInfo, queue: &QueueRef, conn: &ConnectionInfo) -> Value {
    let connection = conn.name();
    let mut value = json!({
        "consumer_tag": c.tag.as_str(),
        "active": c.active,
        "activity_status": c.activity_status,
        "ack_required": c.ack_required,
        "exclusive": c.exclusive,
        "prefetch_count": c.prefetch_count,
        "arguments": crate::definitions::fields::from_table(&c.arguments),
        "channel_details": {
            "name": super::channels::channel_name(&connection, c.channel),
            "number": c.channel,
            "connection_name": connection,
            "peer_host": host(conn.peer),
            "peer_port": conn.peer.port(),
            "user": conn.user,
            "node": node_name(),
        },
        "queue": {"name": queue.name, "vhost": queue.vhost},
    });
    // A stream consumer's place, with the names of RabbitMQ's stream consumer listing.
    if let (Some(p), Value::Object(m)) = (c.stream, &mut value) {
        m.insert("offset".into(), json!(p.offset));
        m.insert("offset_lag".into(), json!(p.offset_lag));
        m.insert("consumed".into(), json!(p.consumed));
    }
    value
}

fn visible(api: &Api, caller: &Caller, vhost: Option<&str>) -> Vec<Value> {
    shown(api, caller, &of_vhost(api, vhost))
}

/// A queue's consumers as its `consumer_details` lists them: the entries of
/// `/api/consumers` for that queue.
pub(super) fn of_queue(api: &Api, caller: &Caller, q: &Queue) -> Vec<Value> {
    let consumers: Vec<_> = q
        .consumer_infos()
        .into_iter()
        .map(|c| {
            let queue = QueueRef {
                name: q.name.to_string(),
                vhost: q.vhost_name.to_string(),
            };
            (c, queue)
        })
        .collect();
    shown(api, caller, &consumers)
}

/// The consumers the caller may see, as JSON.
fn shown(api: &Api, caller: &Caller, consumers: &[(ConsumerInfo, QueueRef)]) -> Vec<Value> {
    let connections: HashMap<u64, ConnectionInfo> = api
        .ctx
        .broker
        .connections()
        .list()
        .into_iter()
        .map(|c| (c.id, c))
        .collect();
    consumers
        .iter()
        .filter_map(|(c, q)| {
            // A consumer whose connection is closing is no longer listed.
            let conn = connections.get(&c.connection_id)?;
            super::connections::may_read(caller, &conn.user).then(|| consumer_json(c, q, conn))
        })
        .collect()
}

async fn list(
    State(api): State<Api>,
    caller: Caller,
    Query(params): Query<ListParams>,
) -> ApiResult<Response> {
    let items = visible(&api, &caller, None);
    Ok(ok_json(listing::apply(items, &params)?))
}

async fn vhost_list(
    State(api): State<Api>,
    caller: Caller,
    Path(vhost): Path<String>,
    Query(params): Query<ListParams>,
) -> ApiResult<Response> {
    if api.ctx.broker.vhost(&vhost).is_none() {
        return Err(super::ApiError::not_found());
    }
    let items = visible(&api, &caller, Some(&vhost));
    Ok(ok_json(listing::apply(items, &params)?))
}
