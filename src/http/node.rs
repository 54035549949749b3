//! The node: `/api/overview`, `/api/nodes`, the health checks and the aliveness test.

use super::{Api, ApiError, ApiResult, Caller, node_name, ok_json};
use crate::identity::{PRODUCT, RABBITMQ_VERSION, WARREN_VERSION};
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Map, Value, json};

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

/// The broker's queue and object totals.
struct Totals {
    queues: u64,
    exchanges: u64,
    consumers: u64,
    ready: u64,
    unacked: u64,
}

fn totals(api: &Api) -> Totals {
    let broker = &api.ctx.broker;
    let mut t = Totals {
        queues: 0,
        exchanges: 0,
        consumers: 0,
        ready: 0,
        unacked: 0,
    };
    for name in broker.vhost_names() {
        if let Some(v) = broker.vhost(&name) {
            for q in v.queues() {
                t.queues += 1;
                t.consumers += u64::from(q.consumer_count());
                t.ready += u64::from(q.message_count());
                t.unacked += q.unacked_count();
            }
            t.exchanges += v.exchange_names().len() as u64;
        }
    }
    t
}

/// `message_stats`, `queue_totals` and `churn_rates` of the overview, with their
/// rates sampled from the broker's counters.
fn figures(api: &Api, t: &Totals) -> (Value, Value, Value) {
    use crate::metrics::counters::get;
    let m = &api.ctx.broker.metrics;
    let rates = &m.rates;
    let mut stats = Map::new();
    for (name, n) in m.totals().message_stats() {
        rates.counter_into(&mut stats, name, n);
    }
    let mut queue_totals = Map::new();
    rates.gauge_into(&mut queue_totals, "messages", t.ready + t.unacked);
    rates.gauge_into(&mut queue_totals, "messages_ready", t.ready);
    rates.gauge_into(&mut queue_totals, "messages_unacknowledged", t.unacked);
    let (opened, closed) = api.ctx.broker.connections().totals();
    let mut churn = Map::new();
    for (name, n) in [
        ("channel_closed", get(&m.channels_closed)),
        ("channel_created", get(&m.channels_opened)),
        ("connection_closed", closed),
        ("connection_created", opened),
        ("queue_created", get(&m.queues_created)),
        ("queue_declared", get(&m.queues_declared)),
        ("queue_deleted", get(&m.queues_deleted)),
    ] {
        rates.counter_into(&mut churn, name, n);
    }
    (
        Value::Object(stats),
        Value::Object(queue_totals),
        Value::Object(churn),
    )
}

async fn overview(State(api): State<Api>, _caller: Caller) -> Response {
    let t = totals(&api);
    let connections = api.ctx.broker.connections();
    let channels = connections.count_channels();
    let connection_count = connections.list().len();
    let (message_stats, queue_totals, churn_rates) = figures(&api, &t);
    let node = node_name();
    ok_json(json!({
        "management_version": RABBITMQ_VERSION,
        "rates_mode": "basic",
        "sample_retention_policies": {
            "global": [600, 3600, 28800, 86400],
            "basic": [600, 3600],
            "detailed": [600],
        },
        "exchange_types": exchange_types(),
        "product_version": RABBITMQ_VERSION,
        "product_name": PRODUCT,
        "rabbitmq_version": RABBITMQ_VERSION,
        "warren_version": WARREN_VERSION,
        "cluster_name": node,
        "node": node,
        "disable_stats": false,
        "enable_queue_totals": false,
        "message_stats": message_stats,
        "churn_rates": churn_rates,
        "queue_totals": queue_totals,
        "object_totals": {
            "channels": channels,
            "connections": connection_count,
            "consumers": t.consumers,
            "exchanges": t.exchanges,
            "queues": t.queues,
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

/// The aliveness test's round trip, as RabbitMQ 3.x does it: declares the
/// `aliveness-test` queue, publishes a message to it through the default exchange,
/// and gets it back.
async fn aliveness(
    State(api): State<Api>,
    caller: Caller,
    Path(vhost): Path<String>,
) -> ApiResult<Response> {
    caller.vhost(&api, &vhost)?;
    let Some(v) = api.ctx.broker.vhost(&vhost) else {
        return Err(ApiError::not_found());
    };
    match round_trip(&api, &v) {
        Ok(()) => Ok(ok_json(json!({"status": "ok"}))),
        Err(reason) => Ok(failed(json!({"status": "failed", "reason": reason}))),
    }
}

const ALIVENESS_QUEUE: &str = "aliveness-test";
const ALIVENESS_BODY: &[u8] = b"test_message";

fn round_trip(api: &Api, v: &std::sync::Arc<crate::broker::VHost>) -> Result<(), String> {
    use crate::broker::vhost::QueueDeclare;
    use crate::model::Message;
    use amq_protocol::protocol::basic::AMQPProperties;
    use amq_protocol::types::{FieldTable, ShortString};
    let arguments = FieldTable::default();
    let (queue, _, _) = v
        .declare_queue(&QueueDeclare {
            name: ALIVENESS_QUEUE,
            passive: false,
            durable: false,
            exclusive: false,
            auto_delete: false,
            arguments: &arguments,
            connection_id: 0,
            server_named: false,
        })
        .map_err(|e| format!("{e:?}"))?;
    let properties = AMQPProperties::default();
    let body = bytes::Bytes::from_static(ALIVENESS_BODY);
    let msg = Message::new(
        ShortString::from(""),
        ShortString::from(ALIVENESS_QUEUE),
        &properties,
        crate::model::fields::encode_properties(&properties),
        body.clone(),
        api.ctx.broker.memory.charge(body.len()),
    );
    let queues = [queue.clone()];
    let outcome = crate::broker::publish::enqueue(None, &queues, &std::sync::Arc::new(msg));
    if !outcome.delivered {
        return Err("the aliveness-test queue refused the message".into());
    }
    // Other messages may sit in the queue (a test that failed half-way): the one
    // just published is among those taken until it comes back.
    while let Some((entry, _)) = queue.get() {
        queue.remove_stored(&entry);
        if entry.msg.body == body {
            return Ok(());
        }
    }
    Err("the aliveness-test message did not come back".into())
}
