//! The Prometheus HTTP listener (RabbitMQ's port 15692): `GET /metrics` and
//! `GET /metrics/per-object`, served by axum (the HTTP stack the management API uses).

use super::report::{Endpoint, Exporter};
use axum::Router;
use axum::extract::{Query, State};
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use std::future::Future;
use std::sync::Arc;
use tokio::net::TcpListener;

/// RabbitMQ's content type for the text format.
pub const CONTENT_TYPE_TEXT: &str = "text/plain; version=0.0.4";

/// The routes of the Prometheus listener.
pub fn router(exporter: Arc<Exporter>) -> Router {
    Router::new()
        .route("/metrics", get(aggregated))
        .route("/metrics/per-object", get(per_object))
        .route("/metrics/detailed", get(detailed))
        .with_state(exporter)
}

async fn aggregated(State(exporter): State<Arc<Exporter>>) -> impl IntoResponse {
    scrape(exporter, Endpoint::Aggregated).await
}

async fn per_object(State(exporter): State<Arc<Exporter>>) -> impl IntoResponse {
    scrape(exporter, Endpoint::PerObject).await
}

/// `/metrics/detailed?family=...&vhost=...` (each may repeat).
async fn detailed(
    State(exporter): State<Arc<Exporter>>,
    Query(params): Query<Vec<(String, String)>>,
) -> impl IntoResponse {
    let pick = |key: &str| -> Vec<String> {
        params
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .collect()
    };
    let (families, vhosts) = (pick("family"), pick("vhost"));
    let body = tokio::task::spawn_blocking(move || exporter.render_detailed(&families, &vhosts))
        .await
        .unwrap_or_default();
    ([(CONTENT_TYPE, CONTENT_TYPE_TEXT)], body)
}

/// Renders off the async workers: reading queue depths takes each queue's lock and
/// the disk figure is a system call.
async fn scrape(exporter: Arc<Exporter>, endpoint: Endpoint) -> impl IntoResponse {
    let body = tokio::task::spawn_blocking(move || exporter.render(endpoint))
        .await
        .unwrap_or_default();
    ([(CONTENT_TYPE, CONTENT_TYPE_TEXT)], body)
}

/// Serves scrapes on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    exporter: Arc<Exporter>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    if let Err(error) = axum::serve(listener, router(exporter))
        .with_graceful_shutdown(shutdown)
        .await
    {
        tracing::warn!(%error, "the Prometheus listener stopped");
    }
}
