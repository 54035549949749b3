//! The management HTTP API (RabbitMQ's `rabbitmq_management` plugin, port 15672): basic
//! auth with the broker's users, JSON in RabbitMQ's shapes, and its status codes. Every
//! change goes through the broker's operator functions (`broker::users`,
//! `broker::policies`, `definitions`), which AMQP, definitions import and this API share.
//!
//! Failures map to statuses in one place, [`ApiError`]; listings share one
//! implementation of RabbitMQ's listing parameters ([`listing`]).

mod auth;
mod binding_key;
mod bindings;
mod body;
mod channels;
mod connections;
mod consumers;
mod definitions;
mod entities;
mod exchanges;
mod listing;
mod messages;
mod node;
mod policies;
mod queues;
mod ui;
mod users;
mod vhosts;

use crate::connection::ServerContext;
use crate::model::BrokerError;
use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::watch;

pub use auth::Caller;

/// What every handler reads: the running broker, and the listeners to report.
#[derive(Clone)]
pub struct Api {
    pub ctx: Arc<ServerContext>,
    /// The AMQP listeners' addresses.
    pub amqp: Arc<Vec<SocketAddr>>,
    /// The management listener's own address.
    pub management: SocketAddr,
}

/// Every route of the API.
pub fn router(api: Api) -> Router {
    Router::new()
        .merge(node::routes())
        .merge(vhosts::routes())
        .merge(users::routes())
        .merge(policies::routes())
        .merge(definitions::routes())
        .merge(connections::routes())
        .merge(channels::routes())
        .merge(consumers::routes())
        .merge(ui::routes())
        .merge(queues::routes())
        .merge(exchanges::routes())
        .merge(bindings::routes())
        .fallback(|| async { ApiError::not_found() })
        .with_state(api)
}

/// Serves the API on `listener` (plain TCP, or TLS for HTTPS) until `stop` turns true.
pub async fn serve<L>(listener: L, api: Api, mut stop: watch::Receiver<bool>)
where
    L: axum::serve::Listener<Addr = SocketAddr>,
{
    use axum::serve::ListenerExt;
    let app = router(api);
    let shutdown = async move {
        while !*stop.borrow() {
            if stop.changed().await.is_err() {
                return;
            }
        }
    };
    // tap_io: the peer address reaches handlers for either kind of listener.
    if let Err(error) = axum::serve(
        listener.tap_io(|_| {}),
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
    {
        tracing::warn!(%error, "management listener failed");
    }
}

/// A failed request, answered as RabbitMQ answers it: `{"error": ..., "reason": ...}`.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub error: String,
    pub reason: Value,
}

impl ApiError {
    pub fn new(status: StatusCode, error: &str, reason: impl Into<String>) -> ApiError {
        ApiError {
            status,
            error: error.to_owned(),
            reason: Value::String(reason.into()),
        }
    }

    /// 404 with RabbitMQ's body.
    pub fn not_found() -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "Object Not Found", "Not Found")
    }

    /// 400 `bad_request`.
    pub fn bad_request(reason: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", reason)
    }

    /// 401 `not_authorised` (a known user without the rights), with RabbitMQ's text.
    pub fn not_authorised(reason: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "not_authorised", reason)
    }
}

/// The one mapping from the broker's failures to HTTP statuses.
impl From<BrokerError> for ApiError {
    fn from(e: BrokerError) -> ApiError {
        match e {
            BrokerError::NotFound(_) => ApiError::not_found(),
            BrokerError::Invalid(text) => ApiError::bad_request(text),
            BrokerError::AccessRefused(text) => ApiError::not_authorised(text),
            BrokerError::PreconditionFailed(text)
            | BrokerError::ResourceLocked(text)
            | BrokerError::NotAllowed(text)
            | BrokerError::CommandInvalid(text) => ApiError::bad_request(text),
            BrokerError::NotImplemented(text) => {
                ApiError::new(StatusCode::NOT_IMPLEMENTED, "not_implemented", text)
            }
            BrokerError::Internal(text) => {
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal_error", text)
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = if self.error.is_empty() {
            self.status.into_response()
        } else {
            let body = json!({"error": self.error, "reason": self.reason});
            (self.status, axum::Json(body)).into_response()
        };
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"RabbitMQ Management\""),
            );
        }
        response
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

/// 201 when the object was created, 204 when it was replaced (RabbitMQ's PUT codes).
pub fn created_or_updated(existed: bool) -> StatusCode {
    if existed {
        StatusCode::NO_CONTENT
    } else {
        StatusCode::CREATED
    }
}

/// 200 with a JSON body.
pub fn ok_json(value: Value) -> Response {
    axum::Json(value).into_response()
}

pub use crate::identity::node_name;
