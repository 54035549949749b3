//! The real `warren` binary, for tests of what only a separate process shows (signals,
//! SIGKILL, resident memory, its log, its listeners). The process is killed when its
//! [`Child`] handle is dropped, so a failing test leaves none behind.

use lapin::{Connection, ConnectionProperties};
use std::ffi::OsString;
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
    // Tests run side by side: the Prometheus listener takes a free port too.
    cmd.arg("--prometheus-listen").arg("127.0.0.1:0");
    // Tests run side by side: never the fixed management port.
    cmd.args(["--management-listen", "127.0.0.1:0"]);
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

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// Starts the binary with the arguments `args` gives for a free port, and waits until
/// it accepts AMQP connections; returns the process (killed on drop) and its URI. A
/// process that exits before (e.g. because another took the port) is started again on
/// another port, up to five times.
pub async fn start_warren(args: impl Fn(u16) -> Vec<OsString>) -> (Child, String) {
    for _attempt in 0..5 {
        let port = free_port();
        let mut child = Command::new(env!("CARGO_BIN_EXE_warren"))
            .args(args(port))
            .args(["--prometheus-listen", "127.0.0.1:0"])
            // Tests run side by side: never the fixed management port.
            .args(["--management-listen", "127.0.0.1:0"])
            .kill_on_drop(true)
            .spawn()
            .expect("spawn warren");
        let uri = format!("amqp://guest:guest@127.0.0.1:{port}/%2f");
        for _ in 0..200 {
            if let Ok(Some(_)) = child.try_wait() {
                break;
            }
            if let Ok(c) = Connection::connect(&uri, ConnectionProperties::default()).await {
                let _ = c.close(200, "ready".into()).await;
                return (child, uri);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = child.start_kill();
        let _ = child.wait().await;
    }
    panic!("warren did not start");
}

/// The arguments for a binary on `port` with its data in `data_dir`, logging warnings.
pub fn listen_args(port: u16, data_dir: &std::path::Path) -> Vec<OsString> {
    vec![
        "--listen".into(),
        format!("127.0.0.1:{port}").into(),
        "--data-dir".into(),
        data_dir.into(),
        "--log-level".into(),
        "warn".into(),
    ]
}

/// Resident memory of a process, in bytes (Linux: VmRSS in /proc/PID/status).
pub fn resident(pid: u32) -> usize {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let kb: usize = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .expect("VmRSS");
    kb * 1024
}
