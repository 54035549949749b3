//! What the queue, exchange and binding endpoints share: which vhosts a caller may
//! list or act in, the AMQP permission each action needs (the API acts as the caller,
//! as RabbitMQ's does through an internal channel), and how the broker's refusals
//! read when they come back over that channel.

use super::{Api, ApiError, ApiResult, Caller};
use crate::access::{Perm, Resource};
use crate::broker::VHost;
use crate::model::BrokerError;
use crate::protocol::error::Exception;
use axum::http::StatusCode;
use serde_json::Value;
use std::sync::Arc;

/// The vhosts whose objects a listing of everything shows the caller: all of them
/// to administrators, else those the caller holds permissions in (monitoring users
/// included, as in RabbitMQ).
pub fn listed_vhosts(api: &Api, caller: &Caller) -> Vec<Arc<VHost>> {
    api.ctx
        .broker
        .vhost_names()
        .iter()
        .filter(|v| caller.sees_vhost(api, v))
        .filter_map(|v| api.ctx.broker.vhost(v))
        .collect()
}

/// One vhost named in a path: 404 if it does not exist, 401 if the caller may not
/// use it (administrators may use every vhost).
pub fn vhost(api: &Api, caller: &Caller, name: &str) -> ApiResult<Arc<VHost>> {
    caller.vhost(api, name)?;
    api.ctx.broker.vhost(name).ok_or_else(ApiError::not_found)
}

/// The vhosts a request names: one, or (None) all the caller may list.
pub fn vhosts(api: &Api, caller: &Caller, name: Option<&str>) -> ApiResult<Vec<Arc<VHost>>> {
    match name {
        Some(name) => Ok(vec![vhost(api, caller, name)?]),
        None => Ok(listed_vhosts(api, caller)),
    }
}

/// The caller's AMQP permission `perm` on a resource of `vhost`; refused as an
/// operation RabbitMQ's API runs through an internal channel is (401 "Access refused.").
pub fn allow(
    api: &Api,
    caller: &Caller,
    vhost: &str,
    perm: Perm,
    kind: Resource,
    name: &str,
) -> ApiResult<()> {
    api.ctx
        .broker
        .access()
        .permissions(&caller.user.name, vhost)
        .check(perm, kind, name)
        .map_err(declare_error)
}

/// A refusal of a declare, delete, bind or unbind: 404 with the detail, 401
/// "Access refused.", else 400 with the detail.
pub fn declare_error(e: BrokerError) -> ApiError {
    match e {
        BrokerError::NotFound(d) => ApiError::new(StatusCode::NOT_FOUND, "not_found", d),
        BrokerError::AccessRefused(_) | BrokerError::NotAllowed(_) => {
            ApiError::not_authorised("Access refused.")
        }
        BrokerError::Internal(_) | BrokerError::NotImplemented(_) => ApiError::from(e),
        BrokerError::PreconditionFailed(d)
        | BrokerError::ResourceLocked(d)
        | BrokerError::CommandInvalid(d)
        | BrokerError::Invalid(d) => ApiError::bad_request(d),
    }
}

/// A refusal of a publish: the channel's close as a 400 with its code and text.
pub fn publish_error(e: BrokerError) -> ApiError {
    match e {
        BrokerError::Internal(_) => ApiError::from(e),
        other => {
            let x = Exception::from_broker(other, 0, 0);
            ApiError::bad_request(format!("{} {}", x.code, x.text))
        }
    }
}

/// A refusal of a get, as the channel's close reads: 404 and 401 with the reply
/// text, else 400 with the code and the text.
pub fn channel_error(e: BrokerError) -> ApiError {
    match e {
        BrokerError::Internal(_) => ApiError::from(e),
        BrokerError::NotFound(_) => {
            let x = Exception::from_broker(e, 0, 0);
            ApiError::new(StatusCode::NOT_FOUND, "not_found", x.text)
        }
        BrokerError::AccessRefused(_) => {
            ApiError::not_authorised(Exception::from_broker(e, 0, 0).text)
        }
        other => {
            let x = Exception::from_broker(other, 0, 0);
            ApiError::bad_request(format!("{} {}", x.code, x.text))
        }
    }
}

/// A boolean body field given as JSON or as a string; `default` when absent.
pub fn flag(map: &serde_json::Map<String, Value>, key: &str, default: bool) -> ApiResult<bool> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(Value::Bool(b)) => Ok(*b),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => Ok(true),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => Ok(false),
        Some(other) => Err(ApiError::bad_request(format!(
            "{key} must be a boolean, not {other}"
        ))),
    }
}

/// The `arguments` of a body as an AMQP table (RabbitMQ's conversion of JSON).
pub fn arguments(
    map: &serde_json::Map<String, Value>,
) -> ApiResult<amq_protocol::types::FieldTable> {
    match map.get("arguments") {
        None | Some(Value::Null) => Ok(Default::default()),
        // The management UI sends an empty string for no arguments.
        Some(Value::String(s)) if s.is_empty() => Ok(Default::default()),
        Some(Value::Array(a)) if a.is_empty() => Ok(Default::default()),
        Some(v) => crate::definitions::fields::to_table(v).map_err(ApiError::bad_request),
    }
}

/// A query flag such as `?if-empty=true`.
pub fn query_true(query: &std::collections::HashMap<String, String>, key: &str) -> bool {
    query.get(key).is_some_and(|v| v == "true")
}

/// A time in ms since the epoch as RabbitMQ's API writes dates:
/// `2024-01-31T12:34:56.789+00:00`.
pub fn iso_time(ms: u64) -> String {
    let secs = ms / 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}+00:00",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms % 1000
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn iso_time_is_utc_with_milliseconds() {
        assert_eq!(super::iso_time(0), "1970-01-01T00:00:00.000+00:00");
        assert_eq!(
            super::iso_time(1_709_210_096_789),
            "2024-02-29T12:34:56.789+00:00"
        );
    }
}
