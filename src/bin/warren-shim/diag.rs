//! rabbitmq-diagnostics' health checks over the management API (check_local_alarms,
//! check_alarms, alarms, check_virtual_hosts) and `status`, which joins what the AMQP
//! listeners say about themselves with the API's node figures.

use crate::api::Api;
use crate::ctl::Ctl;
use crate::options::Options;
use crate::{EX_UNAVAILABLE, probe};
use serde_json::{Value, json};
use std::net::SocketAddr;
use warren::{Config, identity};

pub fn run(ctl: &Ctl, command: &str) -> Option<u8> {
    Some(match command {
        "check_local_alarms" => check_alarms(ctl, true),
        "check_alarms" => check_alarms(ctl, false),
        "alarms" => alarms(ctl),
        "check_virtual_hosts" => check_virtual_hosts(ctl),
        _ => return None,
    })
}

/// The alarms the API reports: None when there are none, else the lines rabbitmqctl
/// prints for them (Err: the exit code of a failure already reported).
fn alarm_lines(ctl: &Ctl, path: &str) -> Result<Option<Vec<String>>, u8> {
    match ctl.api.get(path) {
        Ok(_) => Ok(None),
        Err(f) if f.status() == Some(503) => {
            let body = match &f {
                crate::api::Failure::Status { body, .. } => body.clone(),
                crate::api::Failure::Unreachable(_) => Value::Null,
            };
            let lines = body["alarms"]
                .as_array()
                .map(|list| {
                    list.iter()
                        .map(|a| {
                            let node = a["node"].as_str().unwrap_or("");
                            match a["resource"].as_str().unwrap_or("") {
                                "memory" => format!("Memory alarm on node {node}"),
                                "disk" => format!("Free disk space alarm on node {node}"),
                                other => format!("{other} alarm on node {node}"),
                            }
                        })
                        .collect()
                })
                .unwrap_or_else(|| vec![f.reason()]);
            Ok(Some(lines))
        }
        Err(f) => Err(ctl.fail(&f)),
    }
}

fn check_alarms(ctl: &Ctl, local: bool) -> u8 {
    let node = ctl.node().to_string();
    ctl.banner(&format!(
        "Asking node {node} to report any local resource alarms ..."
    ));
    let path = if local {
        "/api/health/checks/local-alarms"
    } else {
        "/api/health/checks/alarms"
    };
    match alarm_lines(ctl, path) {
        Err(code) => code,
        Ok(None) => {
            if ctl.o.json() {
                println!("{}", json!({"result": "ok"}));
            } else if local {
                println!("Node {node} reported no local alarms");
            } else {
                println!("Node {node} reported no alarms, local or clusterwide");
            }
            0
        }
        Ok(Some(lines)) => {
            if ctl.o.json() {
                let mut report = json!({"result": "error", "local": lines});
                if local {
                    report["message"] = format!("Node {node} reported local alarms").into();
                } else {
                    report["global"] = json!([]);
                    report["message"] = format!("Node {node} reported alarms").into();
                }
                println!("{report}");
            } else if !ctl.o.quiet {
                eprintln!("{}", lines.join("\n"));
            }
            EX_UNAVAILABLE
        }
    }
}

fn alarms(ctl: &Ctl) -> u8 {
    let node = ctl.node().to_string();
    ctl.banner(&format!(
        "Asking node {node} to report any known resource alarms ..."
    ));
    match alarm_lines(ctl, "/api/health/checks/alarms") {
        Err(code) => code,
        Ok(lines) => {
            let lines = lines.unwrap_or_default();
            if ctl.o.json() {
                println!("{}", json!({"alarms": lines, "node": node, "result": "ok"}));
            } else if lines.is_empty() {
                println!("Node {node} reported no alarms, local or clusterwide");
            } else {
                println!("{}", lines.join("\n"));
            }
            0
        }
    }
}

fn check_virtual_hosts(ctl: &Ctl) -> u8 {
    let node = ctl.node().to_string();
    ctl.banner(&format!(
        "Checking if all vhosts are running on node {node} ..."
    ));
    let vhosts = match ctl.api.get("/api/vhosts") {
        Ok(Value::Array(v)) => v,
        Ok(_) => Vec::new(),
        Err(f) => return ctl.fail(&f),
    };
    // A vhost is down when some node reports it in another state than running.
    let down: Vec<String> = vhosts
        .iter()
        .filter(|v| {
            v["cluster_state"]
                .as_object()
                .is_some_and(|s| s.values().any(|state| state != "running"))
        })
        .filter_map(|v| v["name"].as_str().map(str::to_string))
        .collect();
    if down.is_empty() {
        if ctl.o.json() {
            println!("{}", json!({"result": "ok"}));
        } else {
            println!("Node {node} reported all vhosts as running");
        }
        return 0;
    }
    if ctl.o.json() {
        println!("{}", json!({"result": "error", "down_vhosts": down}));
    } else if !ctl.o.quiet {
        eprintln!(
            "Some virtual hosts on node {node} are down:\n{}",
            down.join("\n")
        );
    }
    EX_UNAVAILABLE
}

fn gb(bytes: &Value) -> String {
    bytes
        .as_f64()
        .map_or_else(|| "unknown".into(), |b| format!("{:.4} gb", b / 1e9))
}

/// `status`: the AMQP listeners' own answer, then what the management API reports.
pub fn status(
    config: &Config,
    configured: &[SocketAddr],
    listeners: &[SocketAddr],
    options: &Options,
    api: Option<Api>,
) -> u8 {
    let answer = crate::first_answer(listeners, options.timeout());
    let overview = api.as_ref().map(|a| a.get("/api/overview"));
    let api_node = overview
        .as_ref()
        .and_then(|o| o.as_ref().ok())
        .and_then(|o| o["node"].as_str().map(str::to_string));
    let node = api_node.unwrap_or_else(identity::node_name);
    if !options.quiet {
        println!("Status of node {node} ...");
    }
    let node_info = api
        .as_ref()
        .and_then(|a| a.get("/api/nodes").ok())
        .and_then(|n| n.get(0).cloned())
        .unwrap_or(Value::Null);
    println!("Runtime\n");
    if let Some(pid) = node_info["os_pid"].as_str() {
        println!("OS PID: {pid}");
    }
    if let Some(ms) = node_info["uptime"].as_u64() {
        println!("Uptime (seconds): {}", ms / 1000);
    }
    println!(
        "Product: {} ({})",
        identity::PRODUCT,
        identity::warren_release()
    );
    let version = overview
        .as_ref()
        .and_then(|o| o.as_ref().ok())
        .and_then(|o| o["rabbitmq_version"].as_str().map(str::to_string))
        .unwrap_or_else(|| identity::RABBITMQ_VERSION.to_string());
    println!("RabbitMQ version: {version}");
    println!("Node name: {node}");
    println!("Warren version of this tool: {}", identity::WARREN_VERSION);
    if let Ok(a) = &answer {
        for key in [
            "product",
            "version",
            "warren_version",
            "platform",
            "cluster_name",
        ] {
            if let Some(v) = a.get(key) {
                println!("Broker {key}: {v}");
            }
        }
    }
    println!("\nData directory\n\n{}", config.data_dir.display());
    let overview = match (overview, &api) {
        (Some(Ok(o)), _) => Some(o),
        (Some(Err(f)), Some(api)) => {
            println!(
                "\nManagement API\n\nNot available at {}: {}",
                api.base(),
                f.reason()
            );
            None
        }
        _ => None,
    };
    if !node_info.is_null() {
        println!("\nAlarms\n");
        let mut alarms = Vec::new();
        if node_info["mem_alarm"] == true {
            alarms.push(format!("Memory alarm on node {node}"));
        }
        if node_info["disk_free_alarm"] == true {
            alarms.push(format!("Free disk space alarm on node {node}"));
        }
        println!(
            "{}",
            if alarms.is_empty() {
                "(none)".into()
            } else {
                alarms.join("\n")
            }
        );
        println!("\nMemory\n");
        println!("Total memory used: {}", gb(&node_info["mem_used"]));
        println!(
            "Calculation strategy: {}",
            node_info["mem_calculation_strategy"]
                .as_str()
                .unwrap_or("rss")
        );
        println!(
            "Memory high watermark: computed to: {}",
            gb(&node_info["mem_limit"])
        );
        println!("\nFree Disk Space\n");
        println!(
            "Low free disk space watermark: {}",
            gb(&node_info["disk_free_limit"])
        );
        if !node_info["disk_free"].is_null() {
            println!("Free disk space: {}", gb(&node_info["disk_free"]));
        }
    }
    if let Some(o) = &overview {
        let vhosts = api
            .as_ref()
            .and_then(|a| a.get("/api/vhosts").ok())
            .and_then(|v| v.as_array().map(Vec::len));
        println!("\nTotals\n");
        println!("Connection count: {}", o["object_totals"]["connections"]);
        println!("Queue count: {}", o["object_totals"]["queues"]);
        if let Some(n) = vhosts {
            println!("Virtual host count: {n}");
        }
    }
    println!("\nListeners\n");
    for (configured, addr) in configured.iter().zip(listeners) {
        let state = match probe::probe(*addr, options.timeout()) {
            Ok(_) => "answering".to_string(),
            Err(e) => format!("not answering: {e}"),
        };
        println!(
            "Interface: {}, port: {}, protocol: amqp, purpose: AMQP 0-9-1 ({state})",
            configured.ip(),
            configured.port()
        );
    }
    let others = overview
        .as_ref()
        .and_then(|o| o["listeners"].as_array().cloned())
        .unwrap_or_default();
    for l in others.iter().filter(|l| l["protocol"] != "amqp") {
        let protocol = l["protocol"].as_str().unwrap_or("");
        let purpose = match protocol {
            "http" => "HTTP API",
            "http/prometheus" => "Prometheus exporter API over HTTP",
            _ => protocol,
        };
        println!(
            "Interface: {}, port: {}, protocol: {protocol}, purpose: {purpose}",
            l["ip_address"].as_str().unwrap_or(""),
            l["port"]
        );
    }
    match answer {
        Ok(_) => 0,
        Err(e) => crate::unavailable(&node, &e),
    }
}
