//! `/api/definitions[/{vhost}]`: export (GET, `?download=FILE` as an attachment) and
//! import (POST, replacing users, permissions and policies as RabbitMQ's HTTP import
//! does), through `crate::definitions`.

use super::{Api, ApiError, ApiResult, Caller, ok_json};
use crate::definitions::{self, ImportMode};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use axum::routing::get;
use serde::Deserialize;
use serde_json::Value;

pub fn routes() -> Router<Api> {
    Router::new()
        .route("/api/definitions", get(export_all).post(import_all))
        .route(
            "/api/definitions/{vhost}",
            get(export_vhost).post(import_vhost),
        )
}

#[derive(Deserialize)]
struct Download {
    download: Option<String>,
}

fn reply(doc: Value, download: Option<String>) -> Response {
    let mut response = ok_json(doc);
    if let Some(file) = download
        && let Ok(v) = HeaderValue::from_str(&format!("attachment; filename={file}"))
    {
        response
            .headers_mut()
            .insert(header::CONTENT_DISPOSITION, v);
    }
    response
}

async fn export_all(
    State(api): State<Api>,
    caller: Caller,
    Query(q): Query<Download>,
) -> ApiResult<Response> {
    caller.admin()?;
    let doc = definitions::export(&api.ctx.broker, None).ok_or_else(ApiError::not_found)?;
    Ok(reply(doc, q.download))
}

async fn export_vhost(
    State(api): State<Api>,
    caller: Caller,
    Path(vhost): Path<String>,
    Query(q): Query<Download>,
) -> ApiResult<Response> {
    caller.admin()?;
    let doc = definitions::export(&api.ctx.broker, Some(&vhost))
        .ok_or_else(|| ApiError::bad_request("vhost_not_found"))?;
    Ok(reply(doc, q.download))
}

fn parse(bytes: &[u8]) -> ApiResult<Value> {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(v @ Value::Object(_)) => Ok(v),
        _ => Err(ApiError::bad_request("failed_to_parse_json")),
    }
}

fn failed(e: definitions::DefinitionsError) -> ApiError {
    ApiError::bad_request(format!("{} {}", e.entry, e.reason))
}

async fn import_all(State(api): State<Api>, caller: Caller, bytes: Bytes) -> ApiResult<StatusCode> {
    caller.admin()?;
    let doc = parse(&bytes)?;
    let ctx = api.ctx.clone();
    tokio::task::spawn_blocking(move || {
        definitions::import(&ctx.broker, &doc, ImportMode::Overwrite)
    })
    .await
    .map_err(|e| ApiError::from(crate::model::BrokerError::Internal(e.to_string())))?
    .map_err(failed)?;
    Ok(StatusCode::NO_CONTENT)
}

async fn import_vhost(
    State(api): State<Api>,
    caller: Caller,
    Path(vhost): Path<String>,
    bytes: Bytes,
) -> ApiResult<StatusCode> {
    caller.admin()?;
    if api.ctx.broker.vhost(&vhost).is_none() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "vhost_not_found",
        ));
    }
    let doc = parse(&bytes)?;
    let ctx = api.ctx.clone();
    tokio::task::spawn_blocking(move || {
        definitions::import_vhost(&ctx.broker, &doc, &vhost, ImportMode::Overwrite)
    })
    .await
    .map_err(|e| ApiError::from(crate::model::BrokerError::Internal(e.to_string())))?
    .map_err(failed)?;
    Ok(StatusCode::NO_CONTENT)
}
