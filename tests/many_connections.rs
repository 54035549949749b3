//! Thousands of connections opened and closed, three times over, leave the broker's
//! memory back near idle: nothing per connection outlives it, and what the allocator
//! kept of it is given back (measured on the real binary's resident memory).

mod common;

use common::binary::{listen_args, resident, start_warren};
use common::raw::Raw;
use lapin::{Connection, ConnectionProperties};
use std::time::Duration;
use tokio::process::Child;

const CONNECTIONS: usize = 2_000;

async fn start(dir: &std::path::Path) -> (Child, String) {
    start_warren(|port| listen_args(port, dir)).await
}

/// Opens `n` connections (each with a channel), then drops them all.
async fn open_and_close(uri: &str, n: usize) {
    let mut open = Vec::with_capacity(n);
    for _ in 0..n / 100 {
        let batch: Vec<_> = (0..100)
            .map(|_| {
                let uri = uri.to_owned();
                tokio::spawn(async move {
                    let mut raw = Raw::open(&uri, 2047, 131_072, 0).await;
                    raw.open_channel(1).await;
                    raw
                })
            })
            .collect();
        for t in batch {
            open.push(t.await.expect("handshake"));
        }
    }
    drop(open);
}

/// Both ends of every connection need a descriptor (the broker inherits this
/// process's limits): raises the soft limit to the hard one, as servers do, and
/// returns how many connections fit (`CONNECTIONS` where the limit allows).
fn raise_open_files_limit() -> usize {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max
        {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
    }
    let fit = (limit.rlim_cur as usize).saturating_sub(256) / 2 / 100 * 100;
    CONNECTIONS.min(fit).max(100)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_connections_opened_and_closed_leave_memory_near_idle() {
    const CYCLES: usize = 3;
    let n = raise_open_files_limit();
    let dir = tempfile::tempdir().expect("tempdir");
    let (child, uri) = start(dir.path()).await;
    let pid = child.id().expect("pid");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle = resident(pid);
    let near_idle = idle + 16 * 1024 * 1024;

    // Each wave of connections lands on other pages of the allocator's arenas: what
    // the previous ones freed must have been given back, or memory grows with each.
    let mut after = Vec::with_capacity(CYCLES);
    for _ in 0..CYCLES {
        open_and_close(&uri, n).await;
        // The broker notices the closed sockets and frees each connection.
        let mut now = resident(pid);
        for _ in 0..50 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            now = resident(pid);
            if now < near_idle {
                break;
            }
        }
        after.push(now);
    }
    let last = *after.last().expect("a cycle ran");
    let after_kb: Vec<usize> = after.iter().map(|a| a >> 10).collect();
    eprintln!(
        "resident memory: idle {} KB, after each {n} connections closed {after_kb:?} KB",
        idle >> 10
    );
    assert!(
        last < near_idle,
        "after {CYCLES} x {n} connections closed: {} MB resident, {} MB when idle",
        last >> 20,
        idle >> 20
    );
    // The broker still serves.
    let c = Connection::connect(&uri, ConnectionProperties::default())
        .await
        .expect("connects after the storm");
    let _ = c.close(200, "bye".into()).await;
    drop(child);
}
