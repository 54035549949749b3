//! `startup` and `wait-queue`: timing helpers for `bench/compare`.

use crate::cli::{ClientKind, StartupArgs, WaitQueueArgs};
use crate::client::{Admin, parse_uri};
use crate::stats::unix_nanos;
use anyhow::{Context, Result, anyhow, bail};
use serde_json::json;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// One full AMQP handshake (connection and channel open), then close.
async fn handshake(kind: ClientKind, uri: &str, addr: &str) -> Result<()> {
    // A plain TCP connect first: cheap to retry while the port is not yet open.
    tokio::net::TcpStream::connect(addr).await?;
    let admin = tokio::time::timeout(Duration::from_secs(5), Admin::connect(kind, uri))
        .await
        .map_err(|_| anyhow!("handshake timed out"))??;
    admin.close().await;
    Ok(())
}

fn signal_group(pgid: u32, sig: i32) -> bool {
    // SAFETY: plain kill(2) on a process group we created.
    unsafe { libc::kill(-(pgid as i32), sig) == 0 }
}

/// SIGTERM the child's process group, wait up to 30 s, then SIGKILL it.
fn stop_group(child: &mut Child) {
    let pgid = child.id();
    signal_group(pgid, libc::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let _ = child.try_wait();
        if !signal_group(pgid, 0) {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    signal_group(pgid, libc::SIGKILL);
    let _ = child.wait();
}

/// Retries the handshake until it succeeds, `alive` says the broker is gone, or `deadline`.
async fn wait_handshake(
    kind: ClientKind,
    uri: &str,
    addr: &str,
    deadline: Instant,
    timeout: f64,
    mut alive: impl FnMut() -> Result<()>,
) -> Result<u64> {
    let mut attempts = 0u64;
    loop {
        attempts += 1;
        match handshake(kind, uri, addr).await {
            Ok(()) => return Ok(attempts),
            Err(e) => {
                alive()?;
                if Instant::now() >= deadline {
                    bail!("no AMQP handshake within {timeout}s (last error: {e})");
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    }
}

pub async fn startup(kind: ClientKind, args: StartupArgs) -> Result<()> {
    let p = parse_uri(&args.uri)?;
    let addr = format!("{}:{}", p.host, p.port);
    if let Some(origin_ns) = args.since_ns {
        let deadline = Instant::now() + Duration::from_secs_f64(args.timeout);
        let attempts =
            wait_handshake(kind, &args.uri, &addr, deadline, args.timeout, || Ok(())).await?;
        let ms = u128::from(unix_nanos()).saturating_sub(origin_ns) as f64 / 1e6;
        if args.json {
            println!(
                "{}",
                json!({"type": "startup", "startup_ms": ms, "attempts": attempts})
            );
        } else {
            println!("startup: {ms:.1} ms to a completed AMQP handshake ({attempts} attempts)");
        }
        return Ok(());
    }
    if tokio::net::TcpStream::connect(&addr).await.is_ok() {
        bail!("{addr} already accepts connections before the broker was started");
    }
    let (program, rest) = args.command.split_first().context("no command")?;
    let (out, err) = match &args.log {
        Some(path) => {
            let f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)?;
            (Stdio::from(f.try_clone()?), Stdio::from(f))
        }
        None => (Stdio::null(), Stdio::null()),
    };
    let spawned_at = Instant::now();
    let mut child = Command::new(program)
        .args(rest)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0)
        .spawn()
        .with_context(|| format!("spawn {program}"))?;
    let deadline = spawned_at + Duration::from_secs_f64(args.timeout);
    let result = wait_handshake(
        kind,
        &args.uri,
        &addr,
        deadline,
        args.timeout,
        || match child.try_wait()? {
            Some(status) => Err(anyhow!(
                "broker exited with {status} before accepting connections"
            )),
            None => Ok(()),
        },
    )
    .await
    .map(|attempts| (spawned_at.elapsed(), attempts));
    let pid = child.id();
    if !args.keep_running || result.is_err() {
        stop_group(&mut child);
    }
    let (elapsed, attempts) = result?;
    let ms = elapsed.as_secs_f64() * 1e3;
    if args.json {
        println!(
            "{}",
            json!({"type": "startup", "startup_ms": ms, "attempts": attempts, "pid": pid, "running": args.keep_running})
        );
    } else {
        println!("startup: {ms:.1} ms to a completed AMQP handshake ({attempts} attempts)");
        if args.keep_running {
            println!("pid: {pid}");
        }
    }
    Ok(())
}

pub async fn wait_queue(kind: ClientKind, args: WaitQueueArgs) -> Result<()> {
    let began = Instant::now();
    // Time origin: the caller's instant (e.g. when it restarted the broker), or now.
    let origin_ns = args.since_ns.unwrap_or_else(|| u128::from(unix_nanos()));
    let deadline = began + Duration::from_secs_f64(args.timeout);
    let since = |at_ns: u64| (u128::from(at_ns).saturating_sub(origin_ns)) as f64 / 1e6;
    let mut admin: Option<Admin> = None;
    let mut connected_ms = None;
    let mut count_ms = None;
    let mut last_count = 0;
    let mut last_err = String::new();
    loop {
        if Instant::now() >= deadline {
            bail!(
                "queue {} did not reach {} messages within {}s (last count {last_count}, last error: {last_err})",
                args.queue,
                args.count,
                args.timeout
            );
        }
        let a = match &mut admin {
            Some(a) => a,
            None => match Admin::connect(kind, &args.uri).await {
                Ok(a) => {
                    connected_ms.get_or_insert(since(unix_nanos()));
                    admin.insert(a)
                }
                Err(e) => {
                    last_err = format!("{e:#}");
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    continue;
                }
            },
        };
        let step = async {
            let n = a.queue_message_count(&args.queue).await?;
            last_count = n;
            if n < args.count {
                return Ok::<_, anyhow::Error>(false);
            }
            count_ms.get_or_insert(since(unix_nanos()));
            a.get_one(&args.queue).await
        };
        let failure = match tokio::time::timeout(Duration::from_secs(30), step).await {
            Ok(Ok(true)) => break,
            Ok(Ok(false)) => None,
            Ok(Err(e)) => Some(format!("{e:#}")),
            Err(_) => Some("request timed out".to_string()),
        };
        if let Some(e) = failure {
            // The broker may have closed the channel or connection: start over.
            last_err = e;
            if let Some(a) = admin.take() {
                a.close().await;
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let ready_ms = since(unix_nanos());
    if let Some(a) = admin {
        a.close().await;
    }
    if args.json {
        println!(
            "{}",
            json!({
                "type": "wait_queue",
                "queue": args.queue,
                "count": last_count,
                "connected_ms": connected_ms,
                "count_reached_ms": count_ms,
                "ready_ms": ready_ms,
            })
        );
    } else {
        println!(
            "wait-queue: {} holds {last_count} messages; connected after {:.0} ms, count reached after {:.0} ms, first message gettable after {ready_ms:.0} ms",
            args.queue,
            connected_ms.unwrap_or(0.0),
            count_ms.unwrap_or(0.0),
        );
    }
    Ok(())
}
