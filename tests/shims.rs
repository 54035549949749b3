//! The RabbitMQ command shims (`rabbitmq-diagnostics`, `rabbitmqctl`,
//! `rabbitmq-plugins`, symlinks to `warren-shim`): their answers and RabbitMQ's exit
//! codes, against the real broker binary and after it stopped.

mod common;

use common::binary::{isolate, listening, spawn_until_started, stop, warren};
use std::path::Path;
use std::time::Duration;
use tokio::process::Command;

/// Runs a shim under `name` (a symlink to warren-shim), pointed at `port`.
async fn shim(dir: &Path, name: &str, port: u16, args: &[&str]) -> (i32, String, String) {
    let link = dir.join(name);
    if !link.exists() {
        std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_warren-shim"), &link).expect("symlink");
    }
    let mut cmd = Command::new(&link);
    isolate(&mut cmd, dir);
    cmd.env("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1")
        .env("RABBITMQ_NODE_PORT", port.to_string())
        .args(args);
    let out = tokio::time::timeout(Duration::from_secs(30), cmd.output())
        .await
        .expect("the shim answers")
        .expect("runs");
    (
        out.status.code().expect("exit code"),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn shims_answer_healthchecks_with_rabbitmq_exit_codes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cmd = warren(dir.path());
    cmd.args(["--listen", "127.0.0.1:0"]);
    let running = spawn_until_started(cmd).await;
    let port = listening(&running.lines)[0].port();
    let d = dir.path();

    let (code, out, _) = shim(d, "rabbitmq-diagnostics", port, &["-q", "ping"]).await;
    assert_eq!((code, out.trim()), (0, "Ping succeeded"));
    let (code, out, _) = shim(d, "rabbitmq-diagnostics", port, &["check_running"]).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("is fully booted and running"), "{out}");
    let (code, out, _) = shim(
        d,
        "rabbitmq-diagnostics",
        port,
        &["check_port_connectivity"],
    )
    .await;
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!("Successfully connected to ports {port}")),
        "{out}"
    );
    let (code, out, _) = shim(d, "rabbitmq-diagnostics", port, &["status"]).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("Broker product: RabbitMQ"), "{out}");
    let (code, _, err) = shim(d, "rabbitmq-diagnostics", port, &["check_local_alarms"]).await;
    assert_eq!(code, 70, "{err}");
    assert!(err.contains("not available in Warren yet"), "{err}");
    let (code, _, _) = shim(d, "rabbitmqctl", port, &["list_queues"]).await;
    assert_eq!(code, 70);
    let (code, out, _) = shim(d, "rabbitmqctl", port, &["await_startup"]).await;
    assert_eq!(code, 0, "{out}");
    let (code, _, _) = shim(d, "rabbitmqctl", port, &["no_such_command"]).await;
    assert_eq!(code, 64);
    let (code, out, _) = shim(
        d,
        "rabbitmq-plugins",
        port,
        &["enable", "--offline", "rabbitmq_management"],
    )
    .await;
    assert_eq!(code, 0);
    assert!(out.contains("changes nothing"), "{out}");

    stop(running).await;
    let (code, _, err) = shim(d, "rabbitmq-diagnostics", port, &["-q", "ping"]).await;
    assert_eq!(code, 69, "{err}");
    let (code, _, _) = shim(d, "rabbitmq-diagnostics", port, &["check_running"]).await;
    assert_eq!(code, 69);
}

#[tokio::test]
async fn shims_report_a_broken_configuration_as_78() {
    let dir = tempfile::tempdir().expect("tempdir");
    let conf = dir.path().join("rabbitmq.conf");
    std::fs::write(&conf, "listeners.tcp.default = nowhere\n").expect("write");
    let link = dir.path().join("rabbitmq-diagnostics");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_warren-shim"), &link).expect("symlink");
    let mut cmd = Command::new(&link);
    isolate(&mut cmd, dir.path());
    cmd.env("RABBITMQ_CONFIG_FILE", &conf).arg("ping");
    let out = cmd.output().await.expect("runs");
    assert_eq!(out.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&out.stderr).contains("listeners.tcp.default"));
}
