//! rabbitmqctl's list_* commands over the management API: the columns each knows (its
//! info keys, mapped to the API's fields), its default columns and its info line.

use crate::api::{Failure, seg};
use crate::ctl::Ctl;
use crate::table::{Column, Kind::*, choose, col, print};
use crate::{EX_DATAERR, EX_SOFTWARE, EX_UNAVAILABLE, EX_USAGE};
use serde_json::Value;

const QUEUE: &[Column] = &[
    col("name", "name", Plain),
    col("durable", "durable", Plain),
    col("auto_delete", "auto_delete", Plain),
    col("arguments", "arguments", Args),
    col("policy", "policy", Plain),
    col("pid", "name", Plain),
    col("owner_pid", "owner_pid_details.name", Plain),
    col("exclusive", "exclusive", Plain),
    col("exclusive_consumer_pid", "exclusive_consumer_pid", Plain),
    col("exclusive_consumer_tag", "exclusive_consumer_tag", Plain),
    col("messages_ready", "messages_ready", Plain),
    col("messages_unacknowledged", "messages_unacknowledged", Plain),
    col("messages", "messages", Plain),
    col("messages_ready_ram", "messages_ready_ram", Plain),
    col(
        "messages_unacknowledged_ram",
        "messages_unacknowledged_ram",
        Plain,
    ),
    col("messages_ram", "messages_ram", Plain),
    col("messages_persistent", "messages_persistent", Plain),
    col("message_bytes", "message_bytes", Plain),
    col("message_bytes_ready", "message_bytes_ready", Plain),
    col(
        "message_bytes_unacknowledged",
        "message_bytes_unacknowledged",
        Plain,
    ),
    col("message_bytes_ram", "message_bytes_ram", Plain),
    col(
        "message_bytes_persistent",
        "message_bytes_persistent",
        Plain,
    ),
    col("head_message_timestamp", "head_message_timestamp", Plain),
    col("disk_reads", "disk_reads", Plain),
    col("disk_writes", "disk_writes", Plain),
    col("consumers", "consumers", Plain),
    col("consumer_utilisation", "consumer_utilisation", Plain),
    col("consumer_capacity", "consumer_capacity", Plain),
    col("memory", "memory", Plain),
    col("slave_pids", "slave_nodes", Plain),
    col("synchronised_slave_pids", "synchronised_slave_nodes", Plain),
    col("state", "state", Plain),
    col("type", "type", Plain),
    col("leader", "leader", Plain),
    col("members", "members", Plain),
    col("online", "online", Plain),
];

const EXCHANGE: &[Column] = &[
    col("name", "name", Plain),
    col("type", "type", Plain),
    col("durable", "durable", Plain),
    col("auto_delete", "auto_delete", Plain),
    col("internal", "internal", Plain),
    col("arguments", "arguments", Args),
    col("policy", "policy", Plain),
];

const BINDING: &[Column] = &[
    col("source_name", "source", Plain),
    col("source_kind", "source_kind", Plain),
    col("destination_name", "destination", Plain),
    col("destination_kind", "destination_type", Plain),
    col("routing_key", "routing_key", Plain),
    col("arguments", "arguments", Args),
];

const CONNECTION: &[Column] = &[
    // rabbitmqctl's connection identifier is its Erlang pid; the API's is the name,
    // which is what close_connection takes.
    col("pid", "name", Plain),
    col("name", "name", Plain),
    col("port", "port", Plain),
    col("host", "host", Plain),
    col("peer_port", "peer_port", Plain),
    col("peer_host", "peer_host", Plain),
    col("ssl", "ssl", Plain),
    col("ssl_protocol", "ssl_protocol", Plain),
    col("ssl_key_exchange", "ssl_key_exchange", Plain),
    col("ssl_cipher", "ssl_cipher", Plain),
    col("ssl_hash", "ssl_hash", Plain),
    col("peer_cert_subject", "peer_cert_subject", Plain),
    col("peer_cert_issuer", "peer_cert_issuer", Plain),
    col("peer_cert_validity", "peer_cert_validity", Plain),
    col("state", "state", Plain),
    col("channels", "channels", Plain),
    col("protocol", "protocol", Plain),
    col("auth_mechanism", "auth_mechanism", Plain),
    col("user", "user", Plain),
    col("vhost", "vhost", Plain),
    col("timeout", "timeout", Plain),
    col("frame_max", "frame_max", Plain),
    col("channel_max", "channel_max", Plain),
    col("client_properties", "client_properties", Args),
    col("recv_oct", "recv_oct", Plain),
    col("recv_cnt", "recv_cnt", Plain),
    col("send_oct", "send_oct", Plain),
    col("send_cnt", "send_cnt", Plain),
    col("send_pend", "send_pend", Plain),
    col("connected_at", "connected_at", Plain),
];

const CHANNEL: &[Column] = &[
    col("pid", "name", Plain),
    col("connection", "connection_details.name", Plain),
    col("name", "name", Plain),
    col("number", "number", Plain),
    col("user", "user", Plain),
    col("vhost", "vhost", Plain),
    col("transactional", "transactional", Plain),
    col("confirm", "confirm", Plain),
    col("consumer_count", "consumer_count", Plain),
    col("messages_unacknowledged", "messages_unacknowledged", Plain),
    col("messages_uncommitted", "messages_uncommitted", Plain),
    col("acks_uncommitted", "acks_uncommitted", Plain),
    col("messages_unconfirmed", "messages_unconfirmed", Plain),
    col("prefetch_count", "prefetch_count", Plain),
    col("global_prefetch_count", "global_prefetch_count", Plain),
];

const CONSUMER: &[Column] = &[
    col("queue_name", "queue.name", Plain),
    col("channel_pid", "channel_details.name", Plain),
    col("consumer_tag", "consumer_tag", Plain),
    col("ack_required", "ack_required", Plain),
    col("prefetch_count", "prefetch_count", Plain),
    col("active", "active", Plain),
    col("activity_status", "activity_status", Plain),
    col("arguments", "arguments", Args),
];

const USER: &[Column] = &[col("user", "name", Plain), col("tags", "tags", Plain)];

const VHOST: &[Column] = &[
    col("name", "name", Plain),
    col("description", "description", Plain),
    col("tags", "tags", Plain),
    col("default_queue_type", "default_queue_type", Plain),
    col("tracing", "tracing", Plain),
    col("cluster_state", "cluster_state", Plain),
];

const PERMISSION: &[Column] = &[
    col("user", "user", Plain),
    col("vhost", "vhost", Plain),
    col("configure", "configure", Plain),
    col("write", "write", Plain),
    col("read", "read", Plain),
];

const POLICY: &[Column] = &[
    col("vhost", "vhost", Plain),
    col("name", "name", Plain),
    col("pattern", "pattern", Plain),
    col("apply-to", "apply-to", Plain),
    col("definition", "definition", JsonText),
    col("priority", "priority", Plain),
];

/// Runs a list_* command; None when `command` is not one.
pub fn run(ctl: &Ctl, command: &str, args: &[String]) -> Option<u8> {
    let vhost = ctl.o.vhost();
    let v = seg(vhost);
    let (known, default, info, path, streaming): (&[Column], &[&str], String, String, bool) =
        match command {
            "list_queues" => (
                QUEUE,
                &["name", "messages"],
                format!("Listing queues for vhost {vhost} ..."),
                format!("/api/queues/{v}"),
                true,
            ),
            "list_exchanges" => (
                EXCHANGE,
                &["name", "type"],
                format!("Listing exchanges for vhost {vhost} ..."),
                format!("/api/exchanges/{v}"),
                true,
            ),
            "list_bindings" => (
                BINDING,
                &[
                    "source_name",
                    "source_kind",
                    "destination_name",
                    "destination_kind",
                    "routing_key",
                    "arguments",
                ],
                format!("Listing bindings for vhost {vhost}..."),
                format!("/api/bindings/{v}"),
                true,
            ),
            "list_connections" => (
                CONNECTION,
                &["user", "peer_host", "peer_port", "state"],
                "Listing connections ...".into(),
                "/api/connections".into(),
                true,
            ),
            "list_channels" => (
                CHANNEL,
                &["pid", "user", "consumer_count", "messages_unacknowledged"],
                "Listing channels ...".into(),
                "/api/channels".into(),
                true,
            ),
            "list_consumers" => (
                CONSUMER,
                &[
                    "queue_name",
                    "channel_pid",
                    "consumer_tag",
                    "ack_required",
                    "prefetch_count",
                    "active",
                    "arguments",
                ],
                format!("Listing consumers in vhost {vhost} ..."),
                format!("/api/consumers/{v}"),
                true,
            ),
            "list_users" => (
                USER,
                &["user", "tags"],
                "Listing users ...".into(),
                "/api/users".into(),
                false,
            ),
            "list_vhosts" => (
                VHOST,
                &["name"],
                "Listing vhosts ...".into(),
                "/api/vhosts".into(),
                false,
            ),
            "list_permissions" => (
                PERMISSION,
                &["user", "configure", "write", "read"],
                format!("Listing permissions for vhost \"{vhost}\" ..."),
                format!("/api/vhosts/{v}/permissions"),
                false,
            ),
            "list_user_permissions" => {
                let Some(user) = args.first() else {
                    return Some(ctl.usage("list_user_permissions <username>"));
                };
                (
                    PERMISSION,
                    &["vhost", "configure", "write", "read"],
                    format!("Listing permissions for user \"{user}\" ..."),
                    format!("/api/users/{}/permissions", seg(user)),
                    false,
                )
            }
            "list_policies" => (
                POLICY,
                &[
                    "vhost",
                    "name",
                    "pattern",
                    "apply-to",
                    "definition",
                    "priority",
                ],
                format!("Listing policies for vhost \"{vhost}\" ..."),
                format!("/api/policies/{v}"),
                false,
            ),
            _ => return None,
        };
    // list_user_permissions and list_policies take no columns.
    let asked: &[String] = match command {
        "list_user_permissions" | "list_policies" => &[],
        _ => args,
    };
    let columns = match choose(known, asked, default) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("Error (argument validation): {e}");
            return Some(EX_USAGE);
        }
    };
    if command == "list_queues" && !ctl.o.quiet && !ctl.o.json() {
        let secs = ctl.o.timeout.map_or(60, |t| t.as_secs());
        println!("Timeout: {secs}.0 seconds ...");
    }
    let rows = match ctl.api.get(&path) {
        Ok(Value::Array(rows)) => rows,
        Ok(other) => {
            return Some(ctl.fail(&Failure::Unreachable(format!(
                "{path} did not answer with a list: {other}"
            ))));
        }
        Err(f) if f.status() == Some(404) => {
            return Some(not_found(ctl, command, &info, &path, args));
        }
        Err(f) => return Some(ctl.fail(&f)),
    };
    let rows: Vec<Value> = rows
        .into_iter()
        .map(|mut r| {
            if command == "list_bindings"
                && let Some(map) = r.as_object_mut()
            {
                map.insert("source_kind".into(), "exchange".into());
            }
            r
        })
        .collect();
    print(ctl.o, &info, &columns, &rows, streaming);
    Some(0)
}

/// A 404 from a listing: an unknown vhost or user (answered as rabbitmqctl does), or
/// an API that does not serve the listing.
fn not_found(ctl: &Ctl, command: &str, info: &str, path: &str, args: &[String]) -> u8 {
    let vhost = ctl.o.vhost();
    let vhost_exists = match ctl.api.get(&format!("/api/vhosts/{}", seg(vhost))) {
        Ok(_) => true,
        Err(f) if f.status() == Some(404) => false,
        Err(f) => return ctl.fail(&f),
    };
    if !ctl.o.quiet && !ctl.o.json() {
        println!("{info}");
    }
    match command {
        "list_user_permissions" => {
            let user = args.first().map_or("", String::as_str);
            eprintln!("Error:\n{{:no_such_user, \"{user}\"}}");
            EX_UNAVAILABLE
        }
        "list_permissions" | "list_policies" if !vhost_exists => {
            eprintln!("Virtual host '{vhost}' does not exist");
            EX_DATAERR
        }
        // rabbitmqctl lists nothing for a vhost that does not exist.
        "list_queues" | "list_exchanges" | "list_bindings" | "list_consumers" if !vhost_exists => {
            if ctl.o.json() {
                println!("[\n]");
            }
            0
        }
        _ => {
            eprintln!(
                "Error: the management API at {} does not serve {path} (404): this \
                 broker's API has no such listing yet.",
                ctl.api.base()
            );
            EX_SOFTWARE
        }
    }
}
