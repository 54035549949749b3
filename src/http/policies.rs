//! `/api/policies` and `/api/operator-policies`: listed for the vhosts the caller may
//! see, written by policymakers (operator policies by administrators), validated by
//! the broker with RabbitMQ's texts.

use super::listing::{self, ListParams};
use super::{Api, ApiError, ApiResult, Caller, body, created_or_updated, ok_json};
use crate::access::Policy;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use serde_json::{Value, json};

pub fn routes() -> Router<Api> {
    Router::new()
        .route("/api/policies", get(list_all))
        .route("/api/policies/{vhost}", get(list_vhost))
        .route(
            "/api/policies/{vhost}/{name}",
            get(show).put(put).delete(delete),
        )
        .route("/api/operator-policies", get(op_list_all))
        .route("/api/operator-policies/{vhost}", get(op_list_vhost))
        .route(
            "/api/operator-policies/{vhost}/{name}",
            get(op_show).put(op_put).delete(op_delete),
        )
}

fn policy_json(p: &Policy) -> Value {
    json!({
        "vhost": p.vhost,
        "name": p.name,
        "pattern": p.pattern,
        "apply-to": p.apply_to,
        "definition": p.definition,
        "priority": p.priority,
    })
}

fn policies(api: &Api, operator: bool, keep: impl Fn(&Policy) -> bool) -> Vec<Value> {
    let mut list: Vec<Policy> = api.ctx.broker.access().read(|s| {
        let all = if operator {
            &s.operator_policies
        } else {
            &s.policies
        };
        all.iter().filter(|p| keep(p)).cloned().collect()
    });
    list.sort_by(|a, b| (&a.vhost, &a.name).cmp(&(&b.vhost, &b.name)));
    list.iter().map(policy_json).collect()
}

/// Reading policies: policymakers (and monitors) may list; who may write.
fn may_write(caller: &Caller, operator: bool) -> ApiResult<()> {
    if operator {
        caller.admin()
    } else {
        caller.policymaker()
    }
}

fn list_all_of(api: &Api, caller: &Caller, operator: bool, p: &ListParams) -> ApiResult<Response> {
    let items = policies(api, operator, |pol| caller.sees_vhost(api, &pol.vhost));
    Ok(ok_json(listing::apply(items, p)?))
}

fn list_vhost_of(
    api: &Api,
    caller: &Caller,
    operator: bool,
    vhost: &str,
    p: &ListParams,
) -> ApiResult<Response> {
    caller.vhost(api, vhost)?;
    let items = policies(api, operator, |pol| pol.vhost == vhost);
    Ok(ok_json(listing::apply(items, p)?))
}

fn show_of(
    api: &Api,
    caller: &Caller,
    operator: bool,
    vhost: &str,
    name: &str,
) -> ApiResult<Response> {
    caller.vhost(api, vhost)?;
    policies(api, operator, |p| p.vhost == vhost && p.name == name)
        .pop()
        .map(ok_json)
        .ok_or_else(ApiError::not_found)
}

fn put_of(
    api: &Api,
    caller: &Caller,
    operator: bool,
    vhost: String,
    name: String,
    bytes: &[u8],
) -> ApiResult<StatusCode> {
    may_write(caller, operator)?;
    let mut map = body::object(bytes)?;
    if api.ctx.broker.vhost(&vhost).is_none() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "vhost_not_found",
        ));
    }
    caller.vhost(api, &vhost)?;
    body::present(&map, &["pattern", "definition"])?;
    let pattern = body::string(&map, "pattern")?.unwrap_or_default();
    let mut definition = match map.remove("definition") {
        Some(Value::Object(d)) => d,
        // rabbitmqadmin v1 may send the definition as JSON text.
        Some(Value::String(text)) => match serde_json::from_str(&text) {
            Ok(Value::Object(d)) => d,
            _ => return Err(ApiError::bad_request("definition must be a JSON object")),
        },
        _ => return Err(ApiError::bad_request("definition must be a JSON object")),
    };
    body::numeric_definition(&mut definition);
    let priority = match map.get("priority") {
        None | Some(Value::Null) => 0,
        Some(v) => body::integer(v).ok_or_else(|| {
            ApiError::bad_request(format!(
                "Validation failed\n\npriority should be a number, actually was {v}\n"
            ))
        })?,
    };
    let apply_to = body::string(&map, "apply-to")?.unwrap_or_else(|| "all".into());
    let existed = !policies(api, operator, |p| p.vhost == vhost && p.name == name).is_empty();
    api.ctx.broker.set_policy(
        Policy {
            vhost,
            name,
            pattern,
            apply_to,
            priority,
            definition,
        },
        operator,
    )?;
    Ok(created_or_updated(existed))
}

fn delete_of(
    api: &Api,
    caller: &Caller,
    operator: bool,
    vhost: &str,
    name: &str,
) -> ApiResult<StatusCode> {
    may_write(caller, operator)?;
    caller.vhost(api, vhost)?;
    if api.ctx.broker.clear_policy(vhost, name, operator) {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found())
    }
}

async fn list_all(
    State(api): State<Api>,
    caller: Caller,
    Query(p): Query<ListParams>,
) -> ApiResult<Response> {
    list_all_of(&api, &caller, false, &p)
}

async fn list_vhost(
    State(api): State<Api>,
    caller: Caller,
    Path(vhost): Path<String>,
    Query(p): Query<ListParams>,
) -> ApiResult<Response> {
    list_vhost_of(&api, &caller, false, &vhost, &p)
}

async fn show(
    State(api): State<Api>,
    caller: Caller,
    Path((vhost, name)): Path<(String, String)>,
) -> ApiResult<Response> {
    show_of(&api, &caller, false, &vhost, &name)
}

async fn put(
    State(api): State<Api>,
    caller: Caller,
    Path((vhost, name)): Path<(String, String)>,
    bytes: Bytes,
) -> ApiResult<StatusCode> {
    put_of(&api, &caller, false, vhost, name, &bytes)
}

async fn delete(
    State(api): State<Api>,
    caller: Caller,
    Path((vhost, name)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    delete_of(&api, &caller, false, &vhost, &name)
}

async fn op_list_all(
    State(api): State<Api>,
    caller: Caller,
    Query(p): Query<ListParams>,
) -> ApiResult<Response> {
    list_all_of(&api, &caller, true, &p)
}

async fn op_list_vhost(
    State(api): State<Api>,
    caller: Caller,
    Path(vhost): Path<String>,
    Query(p): Query<ListParams>,
) -> ApiResult<Response> {
    list_vhost_of(&api, &caller, true, &vhost, &p)
}

async fn op_show(
    State(api): State<Api>,
    caller: Caller,
    Path((vhost, name)): Path<(String, String)>,
) -> ApiResult<Response> {
    show_of(&api, &caller, true, &vhost, &name)
}

async fn op_put(
    State(api): State<Api>,
    caller: Caller,
    Path((vhost, name)): Path<(String, String)>,
    bytes: Bytes,
) -> ApiResult<StatusCode> {
    put_of(&api, &caller, true, vhost, name, &bytes)
}

async fn op_delete(
    State(api): State<Api>,
    caller: Caller,
    Path((vhost, name)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    delete_of(&api, &caller, true, &vhost, &name)
}
