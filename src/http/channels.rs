//! `/api/channels`: the open channels, one, and a vhost's, with RabbitMQ's fields
//! read from each connection's channel table. As for connections, monitoring and
//! administrator users see every channel, the others those of their connections.

use super::connections::{may_read, not_yours, visible};
use super::listing::{self, ListParams};
use super::{Api, ApiError, ApiResult, Caller, node_name, ok_json};
use crate::broker::channels::ChannelSnapshot;
use crate::broker::registry::{ConnectionEntry, ConnectionInfo, host};
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use axum::routing::get;
use serde_json::{Map, Value, json};
use std::sync::Arc;

pub fn routes() -> Router<Api> {
    Router::new()
        .route("/api/channels", get(list))
        .route("/api/channels/", get(list))
        .route("/api/channels/{name}", get(show))
        .route("/api/vhosts/{vhost}/channels", get(vhost_list))
}

/// A channel's name: its connection's, then its number in parentheses.
pub(super) fn channel_name(connection: &str, number: u16) -> String {
    format!("{connection} ({number})")
}

/// `{name, peer_host, peer_port}` of a channel's connection.
fn connection_details(c: &ConnectionInfo) -> Value {
    json!({"name": c.name(), "peer_host": host(c.peer), "peer_port": c.peer.port()})
}

/// A channel as the management API shows it; `entry` gives the channel's rates.
fn channel_json(c: &ConnectionInfo, ch: &ChannelSnapshot, entry: &ConnectionEntry) -> Value {
    let mut v = json!({
        "name": channel_name(&c.name(), ch.number),
        "number": ch.number,
        "node": node_name(),
        "vhost": &*c.vhost,
        "user": c.user,
        "user_who_performed_action": c.user,
        "connection_details": connection_details(c),
        "state": "running",
        "consumer_count": ch.consumer_count,
        "confirm": ch.confirm,
        "transactional": ch.transactional,
        "prefetch_count": ch.prefetch_count,
        "global_prefetch_count": ch.global_prefetch_count,
        "messages_unacknowledged": ch.messages_unacknowledged,
        "messages_unconfirmed": ch.messages_unconfirmed,
        "messages_uncommitted": ch.messages_uncommitted,
        "acks_uncommitted": ch.acks_uncommitted,
        "pending_raft_commands": 0,
    });
    let stats = ch.message_stats();
    // As RabbitMQ, a channel that has not published or consumed has no message_stats.
    if stats.iter().any(|(_, n)| *n > 0)
        && let Some(live) = entry.channel_table().stats(ch.number)
    {
        let mut out = Map::new();
        for (name, n) in stats {
            live.rates.counter_into(&mut out, name, n);
        }
        v["message_stats"] = Value::Object(out);
    }
    v
}

/// The channels of one connection.
pub(super) fn of_connection(entry: &ConnectionEntry) -> Vec<Value> {
    let info = entry.info();
    entry
        .channel_table()
        .snapshots()
        .iter()
        .map(|ch| channel_json(&info, ch, entry))
        .collect()
}

fn all(api: &Api, caller: &Caller, vhost: Option<&str>) -> Vec<Value> {
    visible(api, caller, vhost)
        .iter()
        .flat_map(|e| of_connection(e))
        .collect()
}

async fn list(
    State(api): State<Api>,
    caller: Caller,
    Query(params): Query<ListParams>,
) -> ApiResult<Response> {
    Ok(ok_json(listing::apply(all(&api, &caller, None), &params)?))
}

async fn vhost_list(
    State(api): State<Api>,
    caller: Caller,
    Path(vhost): Path<String>,
    Query(params): Query<ListParams>,
) -> ApiResult<Response> {
    caller.vhost(&api, &vhost)?;
    let items = all(&api, &caller, Some(&vhost));
    Ok(ok_json(listing::apply(items, &params)?))
}

/// `conn name (N)` split into the connection's name and the number.
fn parse_name(name: &str) -> Option<(&str, u16)> {
    let (connection, rest) = name.rsplit_once(" (")?;
    let number = rest.strip_suffix(')')?.parse().ok()?;
    Some((connection, number))
}

/// The connection and the figures of channel `name`, if open.
fn find(api: &Api, name: &str) -> Option<(Arc<ConnectionEntry>, ChannelSnapshot)> {
    let (connection, number) = parse_name(name)?;
    let entry = api.ctx.broker.connections().by_name(connection)?;
    let snapshot = entry.channel_table().get(number)?;
    Some((entry, snapshot))
}

async fn show(
    State(api): State<Api>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    let Some((entry, ch)) = find(&api, &name) else {
        return Err(if caller.is_monitor() {
            ApiError::not_found()
        } else {
            not_yours()
        });
    };
    if !may_read(&caller, entry.user()) {
        return Err(not_yours());
    }
    let info = entry.info();
    let mut v = channel_json(&info, &ch, &entry);
    let consumers: Vec<Value> = super::consumers::of_vhost(&api, Some(&info.vhost))
        .into_iter()
        .filter(|(c, _)| c.connection_id == info.id && c.channel == ch.number)
        .map(|(c, queue)| super::consumers::consumer_json(&c, &queue, &info))
        .collect();
    v["consumer_details"] = Value::Array(consumers);
    v["deliveries"] = json!([]);
    v["publishes"] = json!([]);
    Ok(ok_json(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_names_split_into_connection_and_number() {
        let name = channel_name("127.0.0.1:5000 -> 127.0.0.1:5672", 3);
        assert_eq!(
            parse_name(&name),
            Some(("127.0.0.1:5000 -> 127.0.0.1:5672", 3))
        );
        assert_eq!(parse_name("127.0.0.1:5000 -> 127.0.0.1:5672"), None);
        assert_eq!(parse_name("x (y)"), None);
    }
}
