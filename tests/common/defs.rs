//! Definitions files for tests/definitions.rs.

use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use warren::access::{model, password};

/// A definitions file with a non-default user of each kind (plaintext password,
/// SHA-512 hash, MD5 hash named only by an old rabbit_version), a vhost with
/// permissions, a topic exchange bound to a durable queue, a policy, an operator
/// policy and vhost limits. One permission uses a PCRE look-ahead, as RabbitMQ
/// allows.
pub fn shop_definitions() -> Value {
    json!({
        "rabbit_version": "3.5.7",
        "users": [
            {"name": "plain", "password": "plain-pw", "tags": "management,policymaker"},
            {"name": "sha512", "password_hash": password::hash(model::SHA512, "sha512-pw"),
             "hashing_algorithm": model::SHA512, "tags": ["monitoring"]},
            {"name": "old-md5", "password_hash": password::hash(model::MD5, "md5-pw"),
             "tags": ""}
        ],
        "vhosts": [{"name": "shop", "description": "the shop", "tags": ["eu"]}],
        "permissions": [
            {"user": "plain", "vhost": "shop", "configure": ".*", "write": ".*", "read": ".*"},
            {"user": "sha512", "vhost": "shop", "configure": ".*", "write": ".*", "read": ".*"},
            {"user": "old-md5", "vhost": "shop", "configure": "^(?!amq\\.).*", "write": ".*",
             "read": ".*"}
        ],
        "topic_permissions": [
            {"user": "plain", "vhost": "shop", "exchange": "orders-x", "write": ".*", "read": ".*"}
        ],
        "exchanges": [
            {"name": "orders-x", "vhost": "shop", "type": "topic", "durable": true,
             "auto_delete": false, "internal": false, "arguments": {}},
            {"name": "amq.sneaky", "vhost": "shop", "type": "direct"}
        ],
        "queues": [
            {"name": "orders", "vhost": "shop", "arguments": {"x-max-length": 1000}},
            {"name": "orders-quorum", "vhost": "shop", "type": "quorum", "arguments": {}}
        ],
        "bindings": [
            {"source": "orders-x", "vhost": "shop", "destination": "orders",
             "destination_type": "queue", "routing_key": "order.*", "arguments": {}},
            {"source": "amq.direct", "vhost": "shop", "destination": "orders",
             "destination_type": "queue", "routing_key": "direct", "arguments": {}}
        ],
        "policies": [
            {"vhost": "shop", "name": "ttl", "pattern": "^orders$", "apply-to": "queues",
             "definition": {"message-ttl": 60000}, "priority": 1}
        ],
        "parameters": [
            {"vhost": "shop", "component": "operator_policy", "name": "cap",
             "value": {"pattern": ".*", "apply-to": "queues", "priority": 0,
                       "definition": [["max-length", 5000]]}},
            {"vhost": "shop", "component": "vhost-limits", "name": "limits",
             "value": {"max-queues": 100}}
        ],
        "global_parameters": [{"name": "cluster_name", "value": "shop-cluster"}]
    })
}

pub fn write_json(dir: &Path, name: &str, v: &Value) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, serde_json::to_vec_pretty(v).expect("json")).expect("write");
    path
}

/// Runs `warren --definitions FILE` on `data`; returns its exit status and stderr
/// (it must stop by itself).
pub async fn boot_binary(dir: &Path, definitions: &Path) -> (std::process::ExitStatus, String) {
    let mut cmd = super::binary::warren(dir);
    cmd.arg("--listen")
        .arg(format!("127.0.0.1:{}", super::binary::free_port()))
        .arg("--definitions")
        .arg(definitions);
    let out = tokio::time::timeout(std::time::Duration::from_secs(30), cmd.output())
        .await
        .expect("warren stops by itself")
        .expect("warren runs");
    (
        out.status,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
