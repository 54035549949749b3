//! The real `warren` binary spawned on port 0, isolated from the machine's own RabbitMQ
//! configuration, with its log read until RabbitMQ's startup line.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// A `warren` command isolated from the machine's own RabbitMQ configuration.
pub fn warren(dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_warren"));
    isolate(&mut cmd, dir);
    cmd.arg("--data-dir").arg(dir.join("data"));
    cmd
}

pub fn isolate(cmd: &mut Command, dir: &Path) {
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
pub struct Running {
    pub child: Child,
    pub lines: Vec<String>,
}

/// Spawns the broker and reads its log until the startup line, returning the lines.
pub async fn spawn_until_started(mut cmd: Command) -> Running {
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
pub fn listening(lines: &[String]) -> Vec<SocketAddr> {
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

pub async fn stop(mut running: Running) {
    let pid = running.child.id().expect("running") as i32;
    // SAFETY: signalling our own child process by its pid.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let _ = tokio::time::timeout(Duration::from_secs(10), running.child.wait()).await;
}
