//! `/api/vhosts`: list, show, create or update (description, tags, default queue
//! type), delete (which closes the vhost's connections with 320, as RabbitMQ does).

use super::listing::{self, ListParams};
use super::{Api, ApiResult, Caller, body, created_or_updated, ok_json};
use crate::access::VHostInfo;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use serde_json::{Value, json};

pub fn routes() -> Router<Api> {
    Router::new()
        .route("/api/vhosts", get(list))
        .route("/api/vhosts/{vhost}", get(show).put(put).delete(delete))
}

/// A vhost as RabbitMQ shows it, with its message totals.
pub fn vhost_json(api: &Api, info: &VHostInfo) -> Value {
    // Unacknowledged counts are not tracked per queue yet.
    let unacked = 0u64;
    let ready: u64 = api.ctx.broker.vhost(&info.name).map_or(0, |v| {
        v.queues()
            .iter()
            .map(|q| u64::from(q.message_count()))
            .sum()
    });
    let node = super::node_name();
    json!({
        "cluster_state": {node: "running"},
        "default_queue_type": info.default_queue_type.as_deref().unwrap_or("undefined"),
        "description": info.description,
        "metadata": {"description": info.description, "tags": info.tags},
        "name": info.name,
        "tags": info.tags,
        "tracing": false,
        "messages": ready + unacked,
        "messages_details": {"rate": 0.0},
        "messages_ready": ready,
        "messages_ready_details": {"rate": 0.0},
        "messages_unacknowledged": unacked,
        "messages_unacknowledged_details": {"rate": 0.0},
    })
}

async fn list(
    State(api): State<Api>,
    caller: Caller,
    Query(params): Query<ListParams>,
) -> ApiResult<Response> {
    let mut infos = api.ctx.broker.access().read(|s| s.vhosts.clone());
    infos.sort_by(|a, b| a.name.cmp(&b.name));
    let items = infos
        .iter()
        .filter(|v| caller.is_monitor() || caller.sees_vhost(&api, &v.name))
        .map(|v| vhost_json(&api, v))
        .collect();
    Ok(ok_json(listing::apply(items, &params)?))
}

async fn show(
    State(api): State<Api>,
    caller: Caller,
    Path(vhost): Path<String>,
) -> ApiResult<Response> {
    caller.admin()?;
    let info = api.ctx.broker.access().read(|s| s.vhost(&vhost).cloned());
    match info {
        Some(info) => Ok(ok_json(vhost_json(&api, &info))),
        None => Err(super::ApiError::not_found()),
    }
}

async fn put(
    State(api): State<Api>,
    caller: Caller,
    Path(vhost): Path<String>,
    bytes: Bytes,
) -> ApiResult<StatusCode> {
    caller.admin()?;
    let map = body::object(&bytes)?;
    let description = body::string(&map, "description")?;
    let tags = match map.get("tags") {
        Some(v) => Some(body::tags(Some(v))?),
        None => None,
    };
    let default_queue_type = body::string(&map, "default_queue_type")?;
    let broker = &api.ctx.broker;
    let existed = broker.vhost(&vhost).is_some();
    broker.add_vhost(&vhost);
    if !existed {
        // RabbitMQ gives whoever creates a vhost through the API full permissions
        // on it (rabbit_vhost:put_vhost).
        broker.set_permissions(crate::access::Permission {
            user: caller.user.name.clone(),
            vhost: vhost.clone(),
            configure: ".*".into(),
            write: ".*".into(),
            read: ".*".into(),
        })?;
    }
    if description.is_some() || tags.is_some() || default_queue_type.is_some() {
        broker.access().update(|s| {
            if let Some(v) = s.vhosts.iter_mut().find(|v| v.name == vhost) {
                if let Some(d) = description {
                    v.description = d;
                }
                if let Some(t) = tags {
                    v.tags = t;
                }
                if let Some(q) = default_queue_type {
                    v.default_queue_type = Some(q);
                }
            }
        });
    }
    Ok(created_or_updated(existed))
}

async fn delete(
    State(api): State<Api>,
    caller: Caller,
    Path(vhost): Path<String>,
) -> ApiResult<StatusCode> {
    caller.admin()?;
    if api.ctx.broker.remove_vhost(&vhost) {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(super::ApiError::not_found())
    }
}
