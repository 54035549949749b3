//! The node: `/api/overview`, `/api/nodes`, the health checks and the aliveness test.

use super::{Api, ApiError, ApiResult, Caller, node_name, ok_json};
use crate::identity::{PRODUCT, RABBITMQ_VERSION, WARREN_VERSION};
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};

pub fn routes() -> Router<Api> {
    Router::new()
        .route("/api/overview", get(overview))
        .route("/api/nodes", get(nodes))
        .route("/api/nodes/{node}", get(node))
        .route("/api/health/checks/alarms", get(alarms))
        .route("/api/health/checks/local-alarms", get(alarms))
        .route(
            "/api/health/checks/port-listener/{port}",
            get(port_listener),
        )
        .route("/api/aliveness-test/{vhost}", get(aliveness))
}

const EXCHANGE_TYPES: &[&str] = &["direct", "fanout", "headers", "topic"];

fn exchange_types() -> Value {
    EXCHANGE_TYPES
        .iter()
        .map(|t| {
            json!({
                "name": t,
                "description": format!("AMQP {t} exchange, as per the AMQP specification"),
                "enabled": true,
            })
        })
        .collect()
}

fn listeners(api: &Api) -> Value {
    let node = node_name();
    let mut list: Vec<Value> = api
        .amqp
        .iter()
        .map(|a| json!({"node": node, "protocol": "amqp", "ip_address": a.ip().to_string(), "port": a.port()}))
        .collect();
    let m = api.management;
    list.push(json!({"node": node, "protocol": "http", "ip_address": m.ip().to_string(), "port": m.port()}));
    Value::Array(list)
}

fn rate(n: u64) -> Value {
    json!({"count": n, "rate": 0.0})
}

async fn overview(State(api): State<Api>, _caller: Caller) -> Response {
    let broker = &api.ctx.broker;
    let (mut queues, mut exchanges, mut consumers, mut ready) = (0u64, 0u64, 0u64, 0u64);
    for name in broker.vhost_names() {
        if let Some(v) = broker.vhost(&name) {
            for q in v.queues() {
                queues += 1;
                consumers += u64::from(q.consumer_count());
                ready += u64::from(q.message_count());
            }
            exchanges += v.exchange_names().len() as u64;
        }
    }
    let connections = broker.connections().list();
    let channels: usize = connections.iter().map(|c| c.channels).sum();
    let node = node_name();
    ok_json(json!({
        "management_version": RABBITMQ_VERSION,
        "rates_mode": "basic",
        "exchange_types": exchange_types(),
        "product_version": RABBITMQ_VERSION,
        "product_name": PRODUCT,
        "rabbitmq_version": RABBITMQ_VERSION,
        "warren_version": WARREN_VERSION,
        "cluster_name": node,
        "node": node,
        "disable_stats": false,
        "enable_queue_totals": false,
        "message_stats": {},
        "queue_totals": {
            "messages": ready,
            "messages_details": {"rate": 0.0},
            "messages_ready": ready,
            "messages_ready_details": {"rate": 0.0},
            "messages_unacknowledged": 0,
            "messages_unacknowledged_details": {"rate": 0.0},
        },
        "object_totals": {
            "channels": channels,
            "connections": connections.len(),
            "consumers": consumers,
            "exchanges": exchanges,
            "queues": queues,
        },
        "statistics_db_event_queue": 0,
        "listeners": listeners(&api),
        "contexts": [{
            "node": node,
            "description": "RabbitMQ Management",
            "path": "/",
            "ip": api.management.ip().to_string(),
            "port": api.management.port().to_string(),
        }],
    }))
}

fn node_json(api: &Api) -> Value {
    let gauge = &api.ctx.broker.memory;
    let alarms = *gauge.subscribe().borrow();
    let processors = std::thread::available_parallelism().map_or(1, |n| n.get());
    json!({
        "name": node_name(),
        "type": "disc",
        "running": true,
        "os_pid": std::process::id().to_string(),
        "mem_used": gauge.used(),
        "mem_used_details": rate(0),
        "mem_limit": gauge.high_watermark(),
        "mem_alarm": alarms.memory,
        "mem_calculation_strategy": "rss",
        "disk_free_limit": api.ctx.config.disk_free_limit(),
        "disk_free_alarm": alarms.disk,
        "processors": processors,
        "partitions": [],
        "exchange_types": exchange_types(),
        "applications": [],
        "enabled_plugins": ["rabbitmq_management"],
        "auth_mechanisms": [
            {"name": "PLAIN", "description": "SASL PLAIN authentication mechanism", "enabled": true},
            {"name": "AMQPLAIN", "description": "QPid AMQPLAIN mechanism", "enabled": true},
        ],
        "contexts": [],
        "cluster_links": [],
        "net_ticktime": 60,
        "rates_mode": "basic",
    })
}

async fn nodes(State(api): State<Api>, caller: Caller) -> ApiResult<Response> {
    caller.monitor()?;
    Ok(ok_json(json!([node_json(&api)])))
}

async fn node(
    State(api): State<Api>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    caller.monitor()?;
    if name != node_name() {
        return Err(ApiError::not_found());
    }
    Ok(ok_json(node_json(&api)))
}

fn failed(body: Value) -> Response {
    (StatusCode::SERVICE_UNAVAILABLE, axum::Json(body)).into_response()
}

async fn alarms(State(api): State<Api>, _caller: Caller) -> Response {
    let alarms = *api.ctx.broker.memory.subscribe().borrow();
    if !alarms.any() {
        return ok_json(json!({"status": "ok"}));
    }
    let node = node_name();
    let mut list = Vec::new();
    if alarms.memory {
        list.push(json!({"node": node, "resource": "memory"}));
    }
    if alarms.disk {
        list.push(json!({"node": node, "resource": "disk"}));
    }
    failed(json!({
        "status": "failed",
        "reason": "resource alarm(s) in effect",
        "alarms": list,
    }))
}

async fn port_listener(
    State(api): State<Api>,
    _caller: Caller,
    Path(port): Path<String>,
) -> ApiResult<Response> {
    let Ok(port) = port.parse::<u16>() else {
        return Err(ApiError::bad_request("Invalid port"));
    };
    let mut ports: Vec<u16> = api.amqp.iter().map(|a| a.port()).collect();
    ports.push(api.management.port());
    ports.sort_unstable();
    ports.dedup();
    if ports.contains(&port) {
        Ok(ok_json(json!({"status": "ok", "port": port})))
    } else {
        Ok(failed(json!({
            "status": "failed",
            "reason": "No active listener",
            "missing": port,
            "ports": ports,
        })))
    }
}

async fn aliveness(
    State(api): State<Api>,
    caller: Caller,
    Path(vhost): Path<String>,
) -> ApiResult<Response> {
    caller.vhost(&api, &vhost)?;
    Ok(ok_json(json!({"status": "ok"})))
}
