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

/// Opens `CONNECTIONS` connections (each with a channel), then drops them all.
async fn open_and_close(uri: &str) {
    let mut open = Vec::with_capacity(CONNECTIONS);
    for _ in 0..CONNECTIONS / 100 {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_connections_opened_and_closed_leave_memory_near_idle() {
    const CYCLES: usize = 3;
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
        open_and_close(&uri).await;
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
        "resident memory: idle {} KB, after each {CONNECTIONS} connections closed {after_kb:?} KB",
        idle >> 10
    );
    assert!(
        last < near_idle,
        "after {CYCLES} x {CONNECTIONS} connections closed: {} MB resident, {} MB when idle",
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
