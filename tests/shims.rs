//! The RabbitMQ command shims (`rabbitmq-diagnostics`, `rabbitmqctl`,
//! `rabbitmq-plugins`, symlinks to `warren-shim`): their answers and RabbitMQ's exit
//! codes, against the real broker binary and after it stopped.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// A `warren` command isolated from the machine's own RabbitMQ configuration.
fn warren(dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_warren"));
    isolate(&mut cmd, dir);
    cmd.arg("--data-dir").arg(dir.join("data"));
    cmd
}

fn isolate(cmd: &mut Command, dir: &Path) {
    for (key, _) in std::env::vars() {
        if key.starts_with("RABBITMQ_") || key == "WARREN_CONFIG" {
            cmd.env_remove(key);
        }
    }
    cmd.env("RABBITMQ_CONFIG_FILE", dir.join("absent.conf"))
        .env("RABBITMQ_CONFIG_FILES", dir.join("absent.d"))
        .stdin(Stdio::null())
        .kill_on_drop(true);
}

/// A running binary and its log lines so far.
struct Running {
    child: Child,
    lines: Vec<String>,
}

/// Spawns the broker and reads its log until the startup line, returning the lines.
async fn spawn_until_started(mut cmd: Command) -> Running {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn warren");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut reader = BufReader::new(stdout).lines();
    let mut lines = Vec::new();
    let started = tokio::time::timeout(Duration::from_secs(30), async {
        while let Ok(Some(line)) = reader.next_line().await {
            let done = line.contains("Server startup complete");
            lines.push(line);
            if done {
                return true;
            }
        }
        false
    })
    .await;
    if started != Ok(true) {
        let _ = child.start_kill();
        let out = child.wait_with_output().await.expect("output");
        panic!(
            "no startup line; log: {lines:#?}\nstderr: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // Keep draining the log so the broker never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = reader.next_line().await {} });
    Running { child, lines }
}

/// The addresses the log says the broker listens on (text or JSON lines).
fn listening(lines: &[String]) -> Vec<SocketAddr> {
    lines
        .iter()
        .filter(|l| l.contains("listening for AMQP"))
        .map(|l| {
            let at = l.find("addr").expect("an addr field");
            let rest = &l[at + 4..];
            let rest = rest.trim_start_matches(['=', '"', ':']);
            let end = rest.find(['"', ' ']).unwrap_or(rest.len());
            rest[..end].parse().expect("a socket address")
        })
        .collect()
}

async fn stop(mut running: Running) {
    let pid = running.child.id().expect("running") as i32;
    // SAFETY: signalling our own child process by its pid.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let _ = tokio::time::timeout(Duration::from_secs(10), running.child.wait()).await;
}

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
