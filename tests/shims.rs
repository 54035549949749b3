//! The RabbitMQ command shims (`rabbitmq-diagnostics`, `rabbitmqctl`,
//! `rabbitmq-plugins`, symlinks to `warren-shim`): their answers and RabbitMQ's exit
//! codes, against the real broker binary and after it stopped.

mod common;

use common::binary::{isolate, listening, spawn_until_started, stop, warren};
use std::path::Path;
use std::time::Duration;
use tokio::process::Command;

/// The management API's address, from the broker's log.
fn management(lines: &[String]) -> String {
    let line = lines
        .iter()
        .find(|l| l.contains("listening for management API"))
        .expect("a management listener line");
    let at = line.find("addr").expect("an addr field");
    let rest = line[at + 4..].trim_start_matches(['=', '"', ':']);
    let end = rest.find(['"', ' ']).unwrap_or(rest.len());
    format!("http://{}", &rest[..end])
}

/// Runs a shim under `name` (a symlink to warren-shim), pointed at `port` and at the
/// management API in `WARREN_API` (set by each test for its broker).
async fn shim(dir: &Path, name: &str, port: u16, args: &[&str]) -> (i32, String, String) {
    let link = dir.join(name);
    if !link.exists() {
        std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_warren-shim"), &link).expect("symlink");
    }
    let mut cmd = Command::new(&link);
    isolate(&mut cmd, dir);
    let api = std::fs::read_to_string(dir.join("api")).unwrap_or_default();
    cmd.env("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1")
        .env("RABBITMQ_NODE_PORT", port.to_string())
        .env("WARREN_API", api.trim())
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
    std::fs::write(d.join("api"), management(&running.lines)).expect("write");

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
    let (code, out, err) = shim(d, "rabbitmq-diagnostics", port, &["check_local_alarms"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("reported no local alarms"), "{out}");
    let (code, out, err) = shim(d, "rabbitmqctl", port, &["-q", "list_users"]).await;
    assert_eq!(
        (code, out.as_str()),
        (0, "user\ttags\nguest\t[administrator]\n"),
        "{err}"
    );
    // Called as warrenctl, it is rabbitmqctl.
    let (code, out, err) = shim(d, "warrenctl", port, &["list_vhosts"]).await;
    assert_eq!(
        (code, out.as_str()),
        (0, "Listing vhosts ...\nname\n/\n"),
        "{err}"
    );
    let (code, _, err) = shim(d, "rabbitmqctl", port, &["cluster_status"]).await;
    assert_eq!(code, 70, "{err}");
    assert!(err.contains("not available in Warren yet"), "{err}");
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
    let (code, _, err) = shim(d, "rabbitmqctl", port, &["list_users"]).await;
    assert_eq!(code, 69, "{err}");
    assert!(err.contains("unable to reach the management API"), "{err}");
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
