//! Crash safety: the real `warren` binary is killed with SIGKILL while publishers
//! wait for confirms; after a restart on the same directory every confirmed message
//! must be there. Duplicates are allowed only for messages never confirmed.

mod common;

use common::binary::{listen_args, start_warren};
use futures_lite::future::FutureExt;
use lapin::options::*;
use lapin::{Connection, ConnectionProperties};
use std::collections::HashSet;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::process::Child;

const QUEUE: &str = "crash-q";
const PUBLISHERS: usize = 3;
const ROUNDS: usize = 4;

async fn start(dir: &Path) -> (Child, String) {
    start_warren(|port| listen_args(port, dir)).await
}

/// Publishes until the connection breaks, recording each confirmed body.
async fn publisher(uri: String, round: usize, p: usize, confirmed: Arc<Mutex<HashSet<String>>>) {
    let Ok(conn) = Connection::connect(&uri, ConnectionProperties::default()).await else {
        return;
    };
    let Ok(ch) = conn.create_channel().await else {
        return;
    };
    if ch
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .is_err()
    {
        return;
    }
    let mut i = 0u64;
    loop {
        // A window of 20 outstanding confirms.
        let mut pending = Vec::new();
        for _ in 0..20 {
            let body = format!("r{round}-p{p}-{i}");
            i += 1;
            let Ok(confirm) = ch
                .basic_publish(
                    "".into(),
                    QUEUE.into(),
                    BasicPublishOptions::default(),
                    body.as_bytes(),
                    common::persistent(),
                )
                .await
            else {
                return;
            };
            pending.push((body, confirm));
        }
        for (body, confirm) in pending {
            match confirm.await {
                Ok(c) if c.is_ack() => {
                    confirmed.lock().expect("lock").insert(body);
                }
                _ => return,
            }
        }
    }
}

/// Reads every message of the queue: (body, redelivered).
async fn drain(uri: &str) -> Vec<(String, bool)> {
    let conn = Connection::connect(uri, ConnectionProperties::default())
        .await
        .expect("connect");
    let ch = conn.create_channel().await.expect("channel");
    common::declare_durable(&ch, QUEUE).await;
    let out = common::drain(&ch, QUEUE).await;
    let _ = conn.close(200, "done".into()).await;
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_loses_no_confirmed_message() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut previous: HashSet<String> = HashSet::new();
    let mut total_checked = 0;
    for round in 0..=ROUNDS {
        let (mut child, uri) = start(dir.path()).await;
        let recovered = drain(&uri).await;
        let bodies: HashSet<&str> = recovered.iter().map(|(b, _)| b.as_str()).collect();
        let lost: Vec<&String> = previous
            .iter()
            .filter(|b| !bodies.contains(b.as_str()))
            .collect();
        assert!(
            lost.is_empty(),
            "round {round}: {} confirmed messages lost, e.g. {:?}",
            lost.len(),
            lost.iter().take(5).collect::<Vec<_>>()
        );
        assert!(
            recovered.iter().all(|(b, _)| b.starts_with('r')),
            "only published messages come back"
        );
        if round > 0 {
            assert!(
                recovered.iter().all(|(_, redelivered)| *redelivered),
                "after a crash every recovered message is marked redelivered"
            );
        }
        eprintln!(
            "round {round}: {} confirmed before the kill, {} recovered",
            previous.len(),
            recovered.len()
        );
        total_checked += previous.len();
        if round == ROUNDS {
            let _ = child.start_kill();
            let _ = child.wait().await;
            break;
        }
        let confirmed = Arc::new(Mutex::new(HashSet::new()));
        let tasks: Vec<_> = (0..PUBLISHERS)
            .map(|p| tokio::spawn(publisher(uri.clone(), round, p, confirmed.clone())))
            .collect();
        let delay = 300 + rand::random::<u64>() % 900;
        tokio::time::sleep(Duration::from_millis(delay)).await;
        child.start_kill().expect("SIGKILL");
        let _ = child.wait().await;
        for t in tasks {
            let _ = t
                .or(async {
                    tokio::time::sleep(Duration::from_secs(20)).await;
                    Ok(())
                })
                .await;
        }
        previous = std::mem::take(&mut *confirmed.lock().expect("lock"));
        assert!(
            !previous.is_empty(),
            "round {round}: some publishes were confirmed"
        );
    }
    assert!(total_checked > 0);
}
