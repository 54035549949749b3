//! `/api/connections`: list, show and close (320 CONNECTION_FORCED with the
//! `X-Reason` header's text), a connection's channels, a user's connections, and a
//! vhost's. Monitoring and administrator users see every connection, the others
//! their own; closing takes an administrator or the connection's own user.

use super::listing::{self, ListParams};
use super::{Api, ApiError, ApiResult, Caller, node_name, ok_json};
use crate::broker::registry::{ConnectionEntry, ConnectionInfo, host};
use amq_protocol::types::AMQPValue;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::get;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::UNIX_EPOCH;

pub fn routes() -> Router<Api> {
    Router::new()
        .route("/api/connections", get(list))
        .route("/api/connections/", get(list))
        .route("/api/connections/{name}", get(show).delete(close))
        .route("/api/connections/{name}/channels", get(channels))
        .route(
            "/api/connections/username/{user}",
            get(user_list).delete(user_close),
        )
        .route("/api/vhosts/{vhost}/connections", get(vhost_list))
}

/// RabbitMQ's text when an operator closes a connection without a reason.
const DEFAULT_REASON: &str = "Closed via management plugin";

/// 401 for an object of another user.
pub(super) fn not_yours() -> ApiError {
    ApiError::not_authorised("User not authorised to access object")
}

/// Whether the caller may read objects of `user` (monitoring users may read all).
pub(super) fn may_read(caller: &Caller, user: &str) -> bool {
    caller.is_monitor() || caller.user.name == user
}

/// A connection as the management API shows it, with its traffic.
pub(super) fn entry_json(e: &ConnectionEntry) -> Value {
    let mut v = connection_json(&e.info());
    let (recv, send) = e.traffic();
    if let Value::Object(map) = &mut v {
        e.rates.counter_into(map, "recv_oct", recv);
        e.rates.counter_into(map, "send_oct", send);
    }
    v
}

/// A connection as the management API shows it.
pub(super) fn connection_json(c: &ConnectionInfo) -> Value {
    let connected_at = c
        .connected_at
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let properties = crate::definitions::fields::from_table(&c.client_properties);
    let provided = match c.client_properties.inner().get("connection_name") {
        Some(AMQPValue::LongString(s)) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        Some(AMQPValue::ShortString(s)) => Some(s.to_string()),
        _ => None,
    };
    let mut v = json!({
        "name": c.name(),
        "node": node_name(),
        "protocol": "AMQP 0-9-1",
        "type": "network",
        "state": "running",
        "user": c.user,
        "user_who_performed_action": c.user,
        "vhost": &*c.vhost,
        "host": host(c.local),
        "port": c.local.port(),
        "peer_host": host(c.peer),
        "peer_port": c.peer.port(),
        "connected_at": connected_at,
        "client_properties": properties,
        "channels": c.channels,
        "channel_max": c.channel_max,
        "frame_max": c.frame_max,
        "timeout": c.heartbeat,
        "auth_mechanism": c.auth_mechanism,
        "ssl": c.tls.is_some(),
        "ssl_protocol": c.tls.as_ref().map(|t| &t.protocol),
        "ssl_key_exchange": null,
        "ssl_cipher": c.tls.as_ref().map(|t| &t.cipher),
        "ssl_hash": null,
        "peer_cert_subject": c.tls.as_ref().and_then(|t| t.peer_subject.as_ref()),
        "peer_cert_issuer": null,
        "peer_cert_validity": null,
        "send_pend": 0,
    });
    if let Some(name) = provided {
        v["user_provided_name"] = Value::String(name);
    }
    v
}

/// The open connections the caller may see, optionally of one vhost only.
pub(super) fn visible(
    api: &Api,
    caller: &Caller,
    vhost: Option<&str>,
) -> Vec<Arc<ConnectionEntry>> {
    api.ctx
        .broker
        .connections()
        .entries()
        .into_iter()
        .filter(|e| may_read(caller, e.user()))
        .filter(|e| vhost.is_none_or(|v| *e.info().vhost == *v))
        .collect()
}

async fn list(
    State(api): State<Api>,
    caller: Caller,
    Query(params): Query<ListParams>,
) -> ApiResult<Response> {
    let items = visible(&api, &caller, None)
        .iter()
        .map(|e| entry_json(e))
        .collect();
    Ok(ok_json(listing::apply(items, &params)?))
}

async fn vhost_list(
    State(api): State<Api>,
    caller: Caller,
    Path(vhost): Path<String>,
    Query(params): Query<ListParams>,
) -> ApiResult<Response> {
    caller.vhost(&api, &vhost)?;
    let items = visible(&api, &caller, Some(&vhost))
        .iter()
        .map(|e| entry_json(e))
        .collect();
    Ok(ok_json(listing::apply(items, &params)?))
}

/// The connection named `name`, if the caller may read it: 401 for another user's
/// (or, to a user who may not read all, an unknown one), 404 for an unknown one.
fn readable(api: &Api, caller: &Caller, name: &str) -> ApiResult<Arc<ConnectionEntry>> {
    let entry = api.ctx.broker.connections().by_name(name);
    match entry {
        Some(e) if may_read(caller, e.user()) => Ok(e),
        None if caller.is_monitor() => Err(ApiError::not_found()),
        _ => Err(not_yours()),
    }
}

async fn show(
    State(api): State<Api>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    let entry = readable(&api, &caller, &name)?;
    Ok(ok_json(entry_json(&entry)))
}

/// The `X-Reason` header's text, or RabbitMQ's default.
fn reason(headers: &HeaderMap) -> String {
    headers
        .get("x-reason")
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .unwrap_or_else(|| DEFAULT_REASON.to_owned())
}

async fn close(
    State(api): State<Api>,
    caller: Caller,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> ApiResult<StatusCode> {
    let entry = api.ctx.broker.connections().by_name(&name);
    match entry {
        Some(e) if caller.is_admin() || caller.user.name == e.user() => {
            e.close(&reason(&headers));
            Ok(StatusCode::NO_CONTENT)
        }
        None if caller.is_admin() => Err(ApiError::not_found()),
        _ => Err(not_yours()),
    }
}

async fn channels(
    State(api): State<Api>,
    caller: Caller,
    Path(name): Path<String>,
    Query(params): Query<ListParams>,
) -> ApiResult<Response> {
    let entry = readable(&api, &caller, &name)?;
    let items = super::channels::of_connection(&entry);
    Ok(ok_json(listing::apply(items, &params)?))
}

/// RabbitMQ's tracked-connection view of a user's connections.
fn tracked(c: &ConnectionInfo) -> Value {
    json!({"name": c.name(), "vhost": &*c.vhost, "user": c.user, "node": node_name()})
}

async fn user_list(
    State(api): State<Api>,
    caller: Caller,
    Path(user): Path<String>,
    Query(params): Query<ListParams>,
) -> ApiResult<Response> {
    if !may_read(&caller, &user) {
        return Err(not_yours());
    }
    let items = api
        .ctx
        .broker
        .connections()
        .list()
        .iter()
        .filter(|c| c.user == user)
        .map(tracked)
        .collect();
    Ok(ok_json(listing::apply(items, &params)?))
}

async fn user_close(
    State(api): State<Api>,
    caller: Caller,
    Path(user): Path<String>,
    headers: HeaderMap,
) -> ApiResult<StatusCode> {
    if !(caller.is_admin() || caller.user.name == user) {
        return Err(not_yours());
    }
    api.ctx
        .broker
        .connections()
        .close_user(&user, &reason(&headers));
    Ok(StatusCode::NO_CONTENT)
}
