//! Warren as a drop-in for RabbitMQ in development setups: listeners on both loopbacks,
//! the startup line testcontainers waits for, logs without escape codes off a terminal,
//! RabbitMQ's rabbitmq.conf and environment variables (the shims are in tests/shims.rs).
//! The real binary is spawned on port 0, or the broker runs in-process.

mod common;

use common::TestBroker;
use common::binary::{listening, spawn_until_started, stop, warren};
use lapin::{Connection, ConnectionProperties};
use std::path::{Path, PathBuf};
use std::time::Duration;
use warren::Config;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/rabbitmq")
}

fn ipv6_loopback_available() -> bool {
    std::net::TcpListener::bind("[::1]:0").is_ok()
}

#[tokio::test]
async fn both_loopbacks_share_the_port_picked_for_port_0() {
    if !ipv6_loopback_available() {
        eprintln!("no IPv6 loopback on this machine: only 127.0.0.1 is checked");
    }
    let broker = TestBroker::start_with(|c| {
        c.listen = vec![
            "127.0.0.1:0".parse().expect("address"),
            "[::1]:0".parse().expect("address"),
        ];
    })
    .await;
    let port = broker.addr.expect("in-process broker").port();
    let mut uris = vec![format!("amqp://guest:guest@127.0.0.1:{port}/%2f")];
    if ipv6_loopback_available() {
        // amqplib's `ipv6` test, and `localhost` for resolvers that try ::1 first.
        uris.push(format!("amqp://guest:guest@[::1]:{port}/%2f"));
    }
    for uri in uris {
        let conn = Connection::connect(&uri, ConnectionProperties::default())
            .await
            .unwrap_or_else(|e| panic!("{uri}: {e}"));
        conn.close(200, "bye".into()).await.expect("close");
    }
    broker.stop().await;
}

#[test]
fn default_listeners_are_both_loopbacks_on_5672() {
    let addrs: Vec<String> = Config::default()
        .listen
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(addrs, ["127.0.0.1:5672", "[::1]:5672"]);
}

#[tokio::test]
async fn startup_line_follows_every_listener_and_plain_logs_have_no_escape_codes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cmd = warren(dir.path());
    cmd.args(["--listen", "127.0.0.1:0"]);
    if ipv6_loopback_available() {
        cmd.args(["--listen", "[::1]:0"]);
    }
    let running = spawn_until_started(cmd).await;
    let last = running.lines.last().expect("a line");
    assert!(
        last.contains("Server startup complete; 0 plugins started."),
        "{last}"
    );
    let addrs = listening(&running.lines);
    assert_eq!(addrs.len(), if ipv6_loopback_available() { 2 } else { 1 });
    // Every listener accepts by the time the line is printed.
    for addr in &addrs {
        let uri = format!("amqp://guest:guest@{addr}/%2f");
        let conn = Connection::connect(&uri, ConnectionProperties::default())
            .await
            .unwrap_or_else(|e| panic!("{uri}: {e}"));
        conn.close(200, "bye".into()).await.expect("close");
    }
    for line in &running.lines {
        assert!(
            !line.contains('\u{1b}'),
            "escape code in a piped log: {line:?}"
        );
    }
    stop(running).await;
}

#[tokio::test]
async fn json_logs_are_one_object_per_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cmd = warren(dir.path());
    cmd.args(["--listen", "127.0.0.1:0", "--log-format", "json"]);
    let running = spawn_until_started(cmd).await;
    for line in &running.lines {
        let v: serde_json::Value = serde_json::from_str(line).expect("a JSON log line");
        assert!(
            v["level"].is_string() && v["fields"]["message"].is_string(),
            "{line}"
        );
    }
    let last: serde_json::Value =
        serde_json::from_str(running.lines.last().expect("a line")).expect("JSON");
    assert_eq!(
        last["fields"]["message"],
        "Server startup complete; 0 plugins started."
    );
    stop(running).await;
}

/// The fixture's environment: its rabbitmq.conf and conf.d.
fn fixture_env(name: &str) -> Option<String> {
    match name {
        "RABBITMQ_CONFIG_FILE" => Some(fixtures().join("rabbitmq.conf").display().to_string()),
        "RABBITMQ_CONFIG_FILES" => Some(fixtures().join("conf.d/*.conf").display().to_string()),
        _ => None,
    }
}

#[test]
fn rabbitmq_conf_fixture_sets_every_key_dev_setups_use() {
    let (config, notices) = Config::load(None, fixture_env).expect("the fixture loads");
    let listen: Vec<String> = config.listen.iter().map(ToString::to_string).collect();
    assert_eq!(listen, ["127.0.0.1:5672", "[::1]:5672"]);
    assert_eq!(config.default_user, "dev-user");
    // conf.d/20-password.conf comes after rabbitmq.conf; README.txt is not read.
    assert_eq!(config.default_pass, "s3cret");
    assert_eq!(config.default_vhost, "dev");
    assert!(!config.guest_loopback_only);
    assert_eq!(
        (config.heartbeat, config.frame_max, config.channel_max),
        (30, 65536, 100)
    );
    assert_eq!(config.consumer_timeout_ms, Some(3_600_000));
    assert_eq!(config.memory_high_watermark, 0);
    assert_eq!(config.memory_high_watermark_relative, 0.6);
    assert_eq!(config.disk_free_limit_bytes, 2_000_000_000);
    assert_eq!(
        config.load_definitions.as_deref(),
        Some(Path::new("/etc/rabbitmq/definitions.json"))
    );
    assert_eq!(
        (
            config.management_listen.map(|a| a.port()),
            config.prometheus_listen.map(|a| a.port())
        ),
        (Some(15673), Some(15693))
    );
    assert_eq!(config.log_level, "warn");
    assert_eq!(config.log_format, warren::config::LogFormat::Json);
    let ignored: Vec<&String> = notices
        .lines
        .iter()
        .filter(|(warn, _)| *warn)
        .map(|(_, t)| t)
        .collect();
    assert_eq!(ignored.len(), 2, "{ignored:?}");
    assert!(
        ignored[0].contains("rabbitmq.conf:26: cluster_formation.peer_discovery_backend"),
        "{ignored:?}"
    );
    assert!(
        ignored[1].contains("collect_statistics_interval"),
        "{ignored:?}"
    );
}

#[test]
fn precedence_is_rabbitmq_conf_then_warren_toml_then_environment() {
    let dir = tempfile::tempdir().expect("tempdir");
    let toml = dir.path().join("warren.toml");
    std::fs::write(&toml, "default_user = \"toml-user\"\nheartbeat = 5\n").expect("write");
    let env = |name: &str| match name {
        "RABBITMQ_DEFAULT_USER" => Some("env-user".to_string()),
        "RABBITMQ_NODE_PORT" => Some("5999".to_string()),
        _ => fixture_env(name),
    };
    let (config, _) = Config::load(Some(&toml), env).expect("loads");
    assert_eq!(config.default_user, "env-user");
    assert_eq!(config.heartbeat, 5);
    // Not set by the TOML file: rabbitmq.conf's values stay.
    assert_eq!(
        (config.default_vhost.as_str(), config.channel_max),
        ("dev", 100)
    );
    let listen: Vec<String> = config.listen.iter().map(ToString::to_string).collect();
    assert_eq!(listen, ["127.0.0.1:5999", "[::1]:5999"]);
}

#[tokio::test]
async fn a_broker_started_from_the_fixture_serves_its_user_vhost_and_limits() {
    let dir = tempfile::tempdir().expect("tempdir");
    // The fixture names a definitions file at /etc/rabbitmq, which a missing file
    // would make refuse to boot (as RabbitMQ does): start from a copy without it.
    let conf = std::fs::read_to_string(fixtures().join("rabbitmq.conf")).expect("fixture");
    let conf: String = conf
        .lines()
        .filter(|l| !l.starts_with("load_definitions"))
        .map(|l| format!("{l}\n"))
        .collect();
    let conf_path = dir.path().join("rabbitmq.conf");
    std::fs::write(&conf_path, conf).expect("write the copy");
    let mut cmd = warren(dir.path());
    cmd.env("RABBITMQ_CONFIG_FILE", &conf_path)
        .env("RABBITMQ_CONFIG_FILES", fixtures().join("conf.d/*.conf"))
        .env("RABBITMQ_NODE_PORT", "0")
        // The fixture logs warnings only; the flag wins.
        .args(["--log-level", "info"]);
    let running = spawn_until_started(cmd).await;
    let ignored = running
        .lines
        .iter()
        .filter(|l| l.contains("is not supported by Warren; ignored"))
        .count();
    assert_eq!(ignored, 2, "{:#?}", running.lines);
    let addr = listening(&running.lines)[0];
    let uri = format!("amqp://dev-user:s3cret@{addr}/dev");
    let conn = Connection::connect(&uri, ConnectionProperties::default())
        .await
        .unwrap_or_else(|e| panic!("{uri}: {e}"));
    let tuned = conn.configuration();
    assert_eq!(
        (tuned.channel_max(), tuned.frame_max(), tuned.heartbeat()),
        (100, 65536, 30)
    );
    conn.close(200, "bye".into()).await.expect("close");
    stop(running).await;
}

#[tokio::test]
async fn a_bad_value_in_rabbitmq_conf_stops_the_boot_naming_the_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let conf = dir.path().join("rabbitmq.conf");
    std::fs::write(&conf, "default_user = dev\nheartbeat = soon\n").expect("write");
    let mut cmd = warren(dir.path());
    cmd.env("RABBITMQ_CONFIG_FILE", &conf)
        .args(["--listen", "127.0.0.1:0"]);
    let out = tokio::time::timeout(Duration::from_secs(20), cmd.output())
        .await
        .expect("exits at once")
        .expect("runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("rabbitmq.conf:2: heartbeat = soon"),
        "{stderr}"
    );
}

#[test]
fn the_documented_warren_toml_holds_the_defaults() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/warren.toml");
    let documented = Config::from_file(&path).expect("config/warren.toml loads");
    assert_eq!(
        format!("{documented:?}"),
        format!("{:?}", Config::default())
    );
}

/// The container image's environment, with `main` as its RABBITMQ_CONFIG_FILE.
fn image_env(main: PathBuf) -> impl Fn(&str) -> Option<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("docker/rootfs");
    move |name: &str| match name {
        "WARREN_DEFAULTS" => Some(root.join("etc/warren/container.toml").display().to_string()),
        "RABBITMQ_CONFIG_FILE" => Some(main.display().to_string()),
        "RABBITMQ_CONFIG_FILES" => Some(
            root.join("etc/rabbitmq/conf.d/*.conf")
                .display()
                .to_string(),
        ),
        _ => None,
    }
}

#[test]
fn the_image_defaults_with_testcontainers_config_listen_everywhere_for_guest() {
    // testcontainers-go mounts its own file as RABBITMQ_CONFIG_FILE; the image's conf.d
    // still applies, as in RabbitMQ's image.
    let env = image_env(fixtures().join("testcontainers-go.conf"));
    let (config, notices) = Config::load(None, env).expect("loads");
    let listen: Vec<String> = config.listen.iter().map(ToString::to_string).collect();
    assert_eq!(listen, ["[::]:5672", "0.0.0.0:5672"]);
    assert!(!config.guest_loopback_only);
    assert_eq!(
        (config.default_user.as_str(), config.default_pass.as_str()),
        ("guest", "guest")
    );
    assert!(
        notices.lines.iter().all(|(warn, _)| !warn),
        "{:?}",
        notices.lines
    );
}

#[test]
fn a_mounted_rabbitmq_conf_replaces_the_image_listeners() {
    let dir = tempfile::tempdir().expect("tempdir");
    let main = dir.path().join("rabbitmq.conf");
    std::fs::write(&main, "listeners.tcp.default = 5673\n").expect("write");
    let (config, _) = Config::load(None, image_env(main)).expect("loads");
    let listen: Vec<String> = config.listen.iter().map(ToString::to_string).collect();
    assert_eq!(listen, ["[::]:5673", "0.0.0.0:5673"]);
}
