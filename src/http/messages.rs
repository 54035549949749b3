//! Messages over the API: `POST /api/exchanges/v/x/publish` and
//! `POST /api/queues/v/q/get`, with message properties as RabbitMQ writes them in
//! JSON, and payloads as strings or base64.

use super::entities::{self, channel_error, publish_error};
use super::{Api, ApiError, ApiResult, Caller, body, ok_json};
use crate::access::{Perm, Resource};
use crate::broker::admin::{self, AckMode};
use crate::definitions::fields::{from_table, to_table};
use amq_protocol::protocol::BasicProperties;
use amq_protocol::types::ShortString;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::response::Response;
use base64::Engine;
use serde_json::{Map, Value, json};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// The properties a message carries, as RabbitMQ shows them (only those set).
pub fn properties_json(p: &BasicProperties) -> Value {
    let mut m = Map::new();
    let mut text = |k: &str, v: &Option<ShortString>| {
        if let Some(v) = v {
            m.insert(k.to_owned(), Value::String(v.as_str().to_owned()));
        }
    };
    text("content_type", p.content_type());
    text("content_encoding", p.content_encoding());
    text("correlation_id", p.correlation_id());
    text("reply_to", p.reply_to());
    text("expiration", p.expiration());
    text("message_id", p.message_id());
    text("type", p.kind());
    text("user_id", p.user_id());
    text("app_id", p.app_id());
    text("cluster_id", p.cluster_id());
    if let Some(h) = p.headers() {
        m.insert("headers".into(), from_table(h));
    }
    if let Some(d) = p.delivery_mode() {
        m.insert("delivery_mode".into(), Value::from(*d));
    }
    if let Some(pr) = p.priority() {
        m.insert("priority".into(), Value::from(*pr));
    }
    if let Some(t) = p.timestamp() {
        m.insert("timestamp".into(), Value::from(*t));
    }
    Value::Object(m)
}

/// Properties from their JSON form; unknown keys are refused, as RabbitMQ does.
pub fn properties_from(v: &Value) -> ApiResult<BasicProperties> {
    let map = match v {
        Value::Object(m) => m,
        Value::Null => return Ok(BasicProperties::default()),
        // The management UI's form may send an empty string for none.
        Value::String(s) if s.is_empty() => return Ok(BasicProperties::default()),
        Value::Array(a) if a.is_empty() => return Ok(BasicProperties::default()),
        _ => return Err(ApiError::bad_request("properties must be an object")),
    };
    let mut p = BasicProperties::default();
    for (key, value) in map {
        let bad = || ApiError::bad_request(format!("invalid value for property {key}: {value}"));
        let text = || match value {
            Value::String(s) => Ok(ShortString::from(s.as_str())),
            Value::Number(n) => Ok(ShortString::from(n.to_string())),
            _ => Err(bad()),
        };
        let number = || body::integer(value).ok_or_else(bad);
        p = match key.as_str() {
            "content_type" => p.with_content_type(text()?),
            "content_encoding" => p.with_content_encoding(text()?),
            "correlation_id" => p.with_correlation_id(text()?),
            "reply_to" => p.with_reply_to(text()?),
            "expiration" => p.with_expiration(text()?),
            "message_id" => p.with_message_id(text()?),
            "type" => p.with_type(text()?),
            "user_id" => p.with_user_id(text()?),
            "app_id" => p.with_app_id(text()?),
            "cluster_id" => p.with_cluster_id(text()?),
            "headers" => match value {
                Value::Object(_) => p.with_headers(to_table(value).map_err(|_| bad())?),
                _ => return Err(bad()),
            },
            "delivery_mode" => p.with_delivery_mode(u8::try_from(number()?).map_err(|_| bad())?),
            "priority" => p.with_priority(u8::try_from(number()?).map_err(|_| bad())?),
            "timestamp" => p.with_timestamp(u64::try_from(number()?).map_err(|_| bad())?),
            _ => {
                return Err(ApiError::bad_request(format!("invalid property: {key}")));
            }
        };
    }
    Ok(p)
}

/// `POST /api/exchanges/{vhost}/{name}/publish`: `{"routed": bool}`.
pub async fn publish(
    State(api): State<Api>,
    caller: Caller,
    Path((vhost, exchange)): Path<(String, String)>,
    bytes: Bytes,
) -> ApiResult<Response> {
    let v = entities::vhost(&api, &caller, &vhost)?;
    let map = body::object(&bytes)?;
    body::present(
        &map,
        &["routing_key", "properties", "payload", "payload_encoding"],
    )?;
    let routing_key = body::string(&map, "routing_key")?.unwrap_or_default();
    let properties = properties_from(map.get("properties").unwrap_or(&Value::Null))?;
    let Some(Value::String(payload)) = map.get("payload") else {
        return Err(ApiError::bad_request("payload_not_string"));
    };
    let payload = match map.get("payload_encoding").and_then(Value::as_str) {
        Some("string") => Bytes::from(payload.clone().into_bytes()),
        Some("base64") => match B64.decode(payload.trim()) {
            Ok(b) => Bytes::from(b),
            Err(_) => {
                return Err(ApiError {
                    reason: json!(["not_base64", payload]),
                    ..ApiError::bad_request("")
                });
            }
        },
        _ => {
            let enc = map.get("payload_encoding").cloned().unwrap_or(Value::Null);
            return Err(ApiError::bad_request(format!(
                "unsupported_encoding: {enc}"
            )));
        }
    };
    let exchange = if exchange == "amq.default" {
        String::new()
    } else {
        exchange
    };
    api.ctx
        .broker
        .access()
        .permissions(&caller.user.name, &vhost)
        .check(Perm::Write, Resource::Exchange, &exchange)
        .map_err(publish_error)?;
    let routed = admin::publish(
        &api.ctx.broker,
        &v,
        admin::Publish {
            exchange: &exchange,
            routing_key: &routing_key,
            properties,
            body: payload,
            user: &caller.user.name,
        },
    )
    .await
    .map_err(publish_error)?;
    Ok(ok_json(json!({ "routed": routed })))
}

/// `POST /api/queues/{vhost}/{name}/get`: takes messages, then settles them as
/// `ackmode` says.
pub async fn get(
    State(api): State<Api>,
    caller: Caller,
    Path((vhost, queue)): Path<(String, String)>,
    bytes: Bytes,
) -> ApiResult<Response> {
    let v = entities::vhost(&api, &caller, &vhost)?;
    if v.find_queue(&queue).is_none() {
        return Err(ApiError::new(
            axum::http::StatusCode::NOT_FOUND,
            "not_found",
            format!("NOT_FOUND - no queue '{queue}' in vhost '{vhost}'"),
        ));
    }
    let map = body::object(&bytes)?;
    body::present(&map, &["ackmode", "count", "encoding"])?;
    let ackmode = body::string(&map, "ackmode")?.unwrap_or_default();
    let Some(mode) = AckMode::parse(&ackmode) else {
        return Err(ApiError::bad_request(format!(
            "Invalid ackmode value: {ackmode}. Valid values are: ack_requeue_true, \
             ack_requeue_false, reject_requeue_true, reject_requeue_false"
        )));
    };
    let count = map
        .get("count")
        .and_then(body::integer)
        .filter(|c| *c >= 0)
        .ok_or_else(|| ApiError::bad_request("count must be a non-negative integer"))?;
    let base64 = match body::string(&map, "encoding")?.as_deref() {
        Some("auto") => false,
        Some("base64") => true,
        _ => {
            return Err(ApiError::bad_request(
                "Unsupported encoding. Please use auto or base64.",
            ));
        }
    };
    let truncate = match map.get("truncate") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.is_empty() => None,
        Some(t) => Some(
            body::integer(t)
                .filter(|t| *t >= 0)
                .ok_or_else(|| ApiError::bad_request("truncate must be an integer"))?
                as usize,
        ),
    };
    api.ctx
        .broker
        .access()
        .permissions(&caller.user.name, &vhost)
        .check(Perm::Read, Resource::Queue, &queue)
        .map_err(channel_error)?;
    let q = v.queue(&queue, admin::OPERATOR).map_err(channel_error)?;
    let got = admin::get(&api.ctx.broker, &q, count as usize, mode);
    let items: Vec<Value> = got
        .iter()
        .map(|g| {
            let msg = &g.entry.msg;
            let full = msg.body.as_ref();
            let shown = &full[..truncate.map_or(full.len(), |t| t.min(full.len()))];
            let (payload, encoding) = match (base64, std::str::from_utf8(shown)) {
                (false, Ok(text)) => (text.to_owned(), "string"),
                _ => (B64.encode(shown), "base64"),
            };
            json!({
                "payload_bytes": full.len(),
                "redelivered": g.entry.redelivered,
                "exchange": msg.exchange.as_str(),
                "routing_key": msg.routing_key.as_str(),
                "message_count": g.message_count,
                "properties": properties_json(&msg.properties()),
                "payload": payload,
                "payload_encoding": encoding,
            })
        })
        .collect();
    Ok(ok_json(Value::Array(items)))
}
