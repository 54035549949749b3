//! `/api/bindings`: list (all, per vhost, between two objects), create (queue.bind or
//! exchange.bind as the caller, answering 201 with the new binding's `Location`),
//! show and delete by `properties_key`. Listings include the default exchange's
//! implicit binding to every queue, as RabbitMQ shows them.

use super::binding_key::{args_hash, properties_key, quote_plus, unquote};
use super::entities::{self, declare_error};
use super::listing::{self, ListParams};
use super::{Api, ApiError, ApiResult, Caller, body, ok_json};
use crate::access::{Perm, Resource};
use crate::broker::VHost;
use crate::broker::admin::OPERATOR;
use crate::broker::exchange::Destination;
use crate::definitions::fields::from_table;
use amq_protocol::types::FieldTable;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};

pub fn routes() -> Router<Api> {
    super::listing::routes(&["/api/bindings"], "/api/bindings/{vhost}", list)
        .route(
            "/api/bindings/{vhost}/e/{source}/{kind}/{destination}",
            get(list_between).post(create),
        )
        .route(
            "/api/bindings/{vhost}/e/{source}/{kind}/{destination}/{props}",
            get(show).delete(delete),
        )
}

/// One binding as the API shows it.
pub struct Row {
    pub source: String,
    pub destination: String,
    pub to_queue: bool,
    pub routing_key: String,
    pub arguments: FieldTable,
}

impl Row {
    pub fn json(&self, vhost: &str) -> Value {
        json!({
            "source": self.source,
            "vhost": vhost,
            "destination": self.destination,
            "destination_type": if self.to_queue { "queue" } else { "exchange" },
            "routing_key": self.routing_key,
            "arguments": from_table(&self.arguments),
            "properties_key": properties_key(&self.routing_key, &self.arguments),
        })
    }
}

/// Every binding of a vhost: the default exchange's implicit ones first, then the
/// declared ones, each group in name order.
pub fn rows(vhost: &VHost) -> Vec<Row> {
    let mut queues: Vec<String> = vhost
        .queues()
        .iter()
        .map(|q| q.name.as_str().to_owned())
        .collect();
    queues.sort();
    let mut out: Vec<Row> = queues
        .into_iter()
        .map(|q| Row {
            source: String::new(),
            destination: q.clone(),
            to_queue: true,
            routing_key: q,
            arguments: FieldTable::default(),
        })
        .collect();
    let mut declared = Vec::new();
    for x in vhost.exchanges() {
        for b in x.bindings() {
            let (destination, to_queue) = match &b.destination {
                Destination::Queue(q) => (q.name.as_str().to_owned(), true),
                Destination::Exchange(e) => (e.clone(), false),
            };
            declared.push(Row {
                source: x.name.clone(),
                destination,
                to_queue,
                routing_key: b.routing_key,
                arguments: b.arguments,
            });
        }
    }
    declared.sort_by(|a, b| {
        (&a.source, &a.destination, !a.to_queue, &a.routing_key).cmp(&(
            &b.source,
            &b.destination,
            !b.to_queue,
            &b.routing_key,
        ))
    });
    out.extend(declared);
    out
}

/// The name an exchange has in a path: the default exchange is `amq.default`.
pub fn exchange_name(path: &str) -> &str {
    if path == "amq.default" { "" } else { path }
}

fn to_queue(kind: &str) -> ApiResult<bool> {
    match kind {
        "q" => Ok(true),
        "e" => Ok(false),
        _ => Err(ApiError::not_found()),
    }
}

fn list(api: &Api, caller: &Caller, vhost: Option<&str>, p: &ListParams) -> ApiResult<Response> {
    let mut items = Vec::new();
    for v in entities::vhosts(api, caller, vhost)? {
        items.extend(rows(&v).iter().map(|r| r.json(&v.name)));
    }
    Ok(ok_json(listing::apply(items, p)?))
}

type Between = (String, String, String, String);

fn between(vhost: &VHost, source: &str, to_q: bool, destination: &str) -> Vec<Row> {
    let source = exchange_name(source);
    rows(vhost)
        .into_iter()
        .filter(|r| r.source == source && r.to_queue == to_q && r.destination == destination)
        .collect()
}

async fn list_between(
    State(api): State<Api>,
    caller: Caller,
    Path((vhost, source, kind, destination)): Path<Between>,
    Query(p): Query<ListParams>,
) -> ApiResult<Response> {
    let to_q = to_queue(&kind)?;
    let v = entities::vhost(&api, &caller, &vhost)?;
    let items = between(&v, &source, to_q, &destination)
        .iter()
        .map(|r| r.json(&v.name))
        .collect();
    Ok(ok_json(listing::apply(items, &p)?))
}

async fn create(
    State(api): State<Api>,
    caller: Caller,
    Path((vhost, source, kind, destination)): Path<Between>,
    bytes: Bytes,
) -> ApiResult<Response> {
    let to_q = to_queue(&kind)?;
    let v = entities::vhost(&api, &caller, &vhost)?;
    let map = body::object(&bytes)?;
    let routing_key = body::string(&map, "routing_key")?.unwrap_or_default();
    let arguments = entities::arguments(&map)?;
    let src = exchange_name(&source);
    let kind_of = if to_q {
        Resource::Queue
    } else {
        Resource::Exchange
    };
    entities::allow(&api, &caller, &vhost, Perm::Write, kind_of, &destination)?;
    entities::allow(&api, &caller, &vhost, Perm::Read, Resource::Exchange, src)?;
    if to_q {
        v.bind_queue(&destination, src, &routing_key, &arguments, OPERATOR)
    } else {
        v.bind_exchange(&destination, src, &routing_key, &arguments)
    }
    .map_err(declare_error)?;
    let location = format!(
        "{}/{}",
        quote_plus(&destination, true),
        quote_plus(&properties_key(&routing_key, &arguments), true)
    );
    let mut response = StatusCode::CREATED.into_response();
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    Ok(response)
}

/// The binding a properties key names, if it exists.
fn find(vhost: &VHost, source: &str, to_q: bool, destination: &str, props: &str) -> Option<Row> {
    let (key, hash) = match props.split_once('~') {
        _ if props == "~" => (String::new(), None),
        Some((k, h)) => (unquote(k), Some(unquote(h))),
        None => (unquote(props), None),
    };
    between(vhost, source, to_q, destination)
        .into_iter()
        .find(|r| {
            r.routing_key == key
                && match &hash {
                    None => r.arguments.inner().is_empty(),
                    Some(h) => !r.arguments.inner().is_empty() && args_hash(&r.arguments) == *h,
                }
        })
}

type One = (String, String, String, String, String);

async fn show(
    State(api): State<Api>,
    caller: Caller,
    Path((vhost, source, kind, destination, props)): Path<One>,
) -> ApiResult<Response> {
    let to_q = to_queue(&kind)?;
    let v = entities::vhost(&api, &caller, &vhost)?;
    let row = find(&v, &source, to_q, &destination, &props).ok_or_else(ApiError::not_found)?;
    Ok(ok_json(row.json(&v.name)))
}

async fn delete(
    State(api): State<Api>,
    caller: Caller,
    Path((vhost, source, kind, destination, props)): Path<One>,
) -> ApiResult<StatusCode> {
    let to_q = to_queue(&kind)?;
    let v = entities::vhost(&api, &caller, &vhost)?;
    let row = find(&v, &source, to_q, &destination, &props).ok_or_else(ApiError::not_found)?;
    let kind_of = if to_q {
        Resource::Queue
    } else {
        Resource::Exchange
    };
    entities::allow(
        &api,
        &caller,
        &vhost,
        Perm::Write,
        kind_of,
        &row.destination,
    )?;
    entities::allow(
        &api,
        &caller,
        &vhost,
        Perm::Read,
        Resource::Exchange,
        &row.source,
    )?;
    if to_q {
        v.unbind_queue(
            &row.destination,
            &row.source,
            &row.routing_key,
            &row.arguments,
            OPERATOR,
        )
    } else {
        v.unbind_exchange(
            &row.destination,
            &row.source,
            &row.routing_key,
            &row.arguments,
        )
    }
    .map_err(declare_error)?;
    Ok(StatusCode::NO_CONTENT)
}
