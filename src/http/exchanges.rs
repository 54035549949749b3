//! `/api/exchanges`: list, show, declare (PUT), delete (with `if-unused`), publish,
//! and an exchange's bindings as source or destination. The default exchange is
//! listed with the name `""` and named `amq.default` in paths, as in RabbitMQ.

use super::bindings::{exchange_name, rows};
use super::entities::{self, declare_error};
use super::listing::{self, ListParams};
use super::{Api, ApiError, ApiResult, Caller, body, created_or_updated, ok_json};
use crate::access::{Perm, Resource};
use crate::broker::VHost;
use crate::broker::exchange::{Exchange, ExchangeKind};
use crate::broker::vhost::ExchangeDeclare;
use crate::definitions::fields::from_table;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;

pub fn routes() -> Router<Api> {
    super::listing::routes(&["/api/exchanges"], "/api/exchanges/{vhost}", list)
        .route(
            "/api/exchanges/{vhost}/{name}",
            get(show).put(put).delete(remove),
        )
        .route(
            "/api/exchanges/{vhost}/{name}/publish",
            post(super::messages::publish),
        )
        .route(
            "/api/exchanges/{vhost}/{name}/bindings/source",
            get(bindings_source),
        )
        .route(
            "/api/exchanges/{vhost}/{name}/bindings/destination",
            get(bindings_destination),
        )
}

/// An exchange as RabbitMQ shows it.
pub fn exchange_json(vhost: &str, x: &Exchange) -> Value {
    let policy = x
        .applied_policy()
        .and_then(|a| a.policy.as_ref().map(|(n, _)| n.clone()));
    let mut value = json!({
        "name": x.name,
        "vhost": vhost,
        "type": x.kind.as_str(),
        "durable": x.durable,
        "auto_delete": x.auto_delete,
        "internal": x.internal,
        "arguments": from_table(&x.arguments),
    });
    if let Value::Object(m) = &mut value {
        if let Some(p) = policy {
            m.insert("policy".into(), Value::String(p));
        }
        if let Some(stats) = x.stats.message_stats() {
            m.insert("message_stats".into(), stats);
        }
    }
    value
}

fn sorted(v: &VHost) -> Vec<Arc<Exchange>> {
    let mut xs = v.exchanges();
    xs.sort_by(|a, b| a.name.cmp(&b.name));
    xs
}

fn list(api: &Api, caller: &Caller, vhost: Option<&str>, p: &ListParams) -> ApiResult<Response> {
    let mut items = Vec::new();
    for v in entities::vhosts(api, caller, vhost)? {
        items.extend(sorted(&v).iter().map(|x| exchange_json(&v.name, x)));
    }
    Ok(ok_json(listing::apply(items, p)?))
}

fn find(
    api: &Api,
    caller: &Caller,
    vhost: &str,
    name: &str,
) -> ApiResult<(Arc<VHost>, Arc<Exchange>)> {
    let v = entities::vhost(api, caller, vhost)?;
    let x = v
        .exchange(exchange_name(name))
        .map_err(|_| ApiError::not_found())?;
    Ok((v, x))
}

async fn show(
    State(api): State<Api>,
    caller: Caller,
    Path((vhost, name)): Path<(String, String)>,
) -> ApiResult<Response> {
    let (v, x) = find(&api, &caller, &vhost, &name)?;
    let mut value = exchange_json(&v.name, &x);
    if let Value::Object(m) = &mut value {
        m.insert("incoming".into(), json!([]));
        m.insert("outgoing".into(), json!([]));
    }
    Ok(ok_json(value))
}

async fn put(
    State(api): State<Api>,
    caller: Caller,
    Path((vhost, name)): Path<(String, String)>,
    bytes: Bytes,
) -> ApiResult<StatusCode> {
    let Some(v) = api.ctx.broker.vhost(&vhost) else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "vhost_not_found",
        ));
    };
    caller.vhost(&api, &vhost)?;
    let map = body::object(&bytes)?;
    let kind = body::string(&map, "type")?.unwrap_or_else(|| "direct".to_owned());
    if ExchangeKind::parse(&kind).is_none() {
        return Err(ApiError::bad_request(format!(
            "invalid exchange type '{kind}'"
        )));
    }
    let durable = entities::flag(&map, "durable", false)?;
    let auto_delete = entities::flag(&map, "auto_delete", false)?;
    let internal = entities::flag(&map, "internal", false)?;
    let arguments = entities::arguments(&map)?;
    entities::allow(
        &api,
        &caller,
        &vhost,
        Perm::Configure,
        Resource::Exchange,
        &name,
    )?;
    let existed = v.exchange(&name).is_ok();
    v.declare_exchange(&ExchangeDeclare {
        name: &name,
        kind: &kind,
        passive: false,
        durable,
        auto_delete,
        internal,
        arguments: &arguments,
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
    let (v, x) = find(&api, &caller, &vhost, &name)?;
    entities::allow(
        &api,
        &caller,
        &vhost,
        Perm::Configure,
        Resource::Exchange,
        &name,
    )?;
    let if_unused = entities::query_true(&query, "if-unused");
    // The default exchange goes by its path name here, so that deleting it is
    // refused like any other built-in exchange.
    let target = if x.name.is_empty() { &name } else { &x.name };
    v.delete_exchange(target, if_unused)
        .map_err(declare_error)?;
    Ok(StatusCode::NO_CONTENT)
}

fn bindings_of(
    api: &Api,
    caller: &Caller,
    vhost: &str,
    name: &str,
    p: &ListParams,
    as_source: bool,
) -> ApiResult<Response> {
    let (v, x) = find(api, caller, vhost, name)?;
    let items = rows(&v)
        .iter()
        .filter(|r| {
            if as_source {
                r.source == x.name
            } else {
                !r.to_queue && r.destination == x.name
            }
        })
        .map(|r| r.json(&v.name))
        .collect();
    Ok(ok_json(listing::apply(items, p)?))
}

async fn bindings_source(
    State(api): State<Api>,
    caller: Caller,
    Path((vhost, name)): Path<(String, String)>,
    Query(p): Query<ListParams>,
) -> ApiResult<Response> {
    bindings_of(&api, &caller, &vhost, &name, &p, true)
}

async fn bindings_destination(
    State(api): State<Api>,
    caller: Caller,
    Path((vhost, name)): Path<(String, String)>,
    Query(p): Query<ListParams>,
) -> ApiResult<Response> {
    bindings_of(&api, &caller, &vhost, &name, &p, false)
}
