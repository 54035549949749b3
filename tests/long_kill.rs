//! The long crash test (outside the default run):
//!
//! ```text
//! WARREN_KILL_ROUNDS=100 cargo test --release --test long_kill -- --ignored --nocapture
//! ```
//!
//! Each round starts the real binary on the same data directory, checks what the
//! previous round left, then runs several confirming publishers, acking consumers and
//! TTL + dead-letter traffic, and kills the broker with SIGKILL at a random moment.
//! Checked after every restart:
//! - no confirmed message is lost: each one was acked by a consumer or is back
//!   (for the TTL queue: back in the TTL queue or in its dead-letter queue);
//! - every message recovered after the kill is marked redelivered;
//! - no acked message comes back once the store has committed past its ack: an ack
//!   the broker had processed (a later round trip on the same channel returned)
//!   before a publish that was then confirmed is durable, since the store commits in
//!   order. Acks newer than that may come back (at-least-once, as in RabbitMQ); their
//!   number is reported.

mod common;

use common::binary::{listen_args, start_warren};
use futures_lite::StreamExt;
use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::process::Child;

const WORK: &str = "kill-work";
const TTL: &str = "kill-ttl";
const DEAD: &str = "kill-dead";
const PUBLISHERS: usize = 3;
const CONSUMERS: usize = 2;

async fn start(dir: &std::path::Path) -> (Child, String) {
    start_warren(|port| listen_args(port, dir)).await
}

async fn declare_all(ch: &Channel) {
    let durable = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    ch.queue_declare(WORK.into(), durable, FieldTable::default())
        .await
        .expect("declare work");
    ch.queue_declare(DEAD.into(), durable, FieldTable::default())
        .await
        .expect("declare dead");
    let mut args = FieldTable::default();
    args.insert("x-message-ttl".into(), AMQPValue::LongInt(30));
    args.insert(
        "x-dead-letter-exchange".into(),
        AMQPValue::LongString("".into()),
    );
    args.insert(
        "x-dead-letter-routing-key".into(),
        AMQPValue::LongString(DEAD.into()),
    );
    ch.queue_declare(TTL.into(), durable, args)
        .await
        .expect("declare ttl");
}

/// What one round's clients observed.
#[derive(Default)]
struct Observed {
    /// Confirmed bodies of the work queue, with when their publish started.
    confirmed: HashMap<String, Instant>,
    /// Confirmed bodies sent to the TTL queue.
    confirmed_ttl: HashSet<String>,
    /// Acked bodies, with when a later round trip proved the broker had the ack.
    acked: HashMap<String, Instant>,
    /// Acked bodies not yet proven processed.
    acked_unsynced: HashSet<String>,
}

type Shared = Arc<Mutex<Observed>>;

fn lock(o: &Shared) -> std::sync::MutexGuard<'_, Observed> {
    o.lock().unwrap_or_else(|e| e.into_inner())
}

/// Publishes persistent messages with confirms until the connection breaks.
async fn publisher(uri: String, round: usize, p: usize, queue: &'static str, seen: Shared) {
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
        let mut pending = Vec::new();
        for _ in 0..20 {
            let body = format!("{queue}-r{round}-p{p}-{i}");
            i += 1;
            let started = Instant::now();
            let Ok(confirm) = ch
                .basic_publish(
                    "".into(),
                    queue.into(),
                    BasicPublishOptions::default(),
                    body.as_bytes(),
                    BasicProperties::default().with_delivery_mode(2),
                )
                .await
            else {
                return;
            };
            pending.push((body, started, confirm));
        }
        for (body, started, confirm) in pending {
            match confirm.await {
                Ok(c) if c.is_ack() => {
                    let mut o = lock(&seen);
                    if queue == WORK {
                        o.confirmed.insert(body, started);
                    } else {
                        o.confirmed_ttl.insert(body);
                    }
                }
                _ => return,
            }
        }
    }
}

/// Consumes the work queue, acking each message, with a round trip every ten acks
/// to learn which acks the broker has processed.
async fn consumer(uri: String, seen: Shared) {
    let Ok(conn) = Connection::connect(&uri, ConnectionProperties::default()).await else {
        return;
    };
    let Ok(ch) = conn.create_channel().await else {
        return;
    };
    if ch.basic_qos(50, BasicQosOptions::default()).await.is_err() {
        return;
    }
    let Ok(mut deliveries) = ch
        .basic_consume(
            WORK.into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
    else {
        return;
    };
    let mut unsynced = Vec::new();
    while let Some(Ok(d)) = deliveries.next().await {
        let body = String::from_utf8_lossy(&d.data).into_owned();
        if d.ack(BasicAckOptions::default()).await.is_err() {
            return;
        }
        lock(&seen).acked_unsynced.insert(body.clone());
        unsynced.push(body);
        if unsynced.len() >= 10 {
            // basic.qos-ok comes after the broker handled every earlier ack.
            if ch.basic_qos(50, BasicQosOptions::default()).await.is_err() {
                return;
            }
            let now = Instant::now();
            let mut o = lock(&seen);
            for b in unsynced.drain(..) {
                o.acked_unsynced.remove(&b);
                o.acked.insert(b, now);
            }
        }
    }
}

/// Every message left in a queue: (body, redelivered).
async fn drain(ch: &Channel, queue: &str) -> Vec<(String, bool)> {
    let mut out = Vec::new();
    while let Some(m) = ch
        .basic_get(queue.into(), BasicGetOptions { no_ack: true })
        .await
        .expect("get")
    {
        out.push((
            String::from_utf8_lossy(&m.delivery.data).into_owned(),
            m.delivery.redelivered,
        ));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "long: run with --ignored (WARREN_KILL_ROUNDS, default 100)"]
async fn repeated_sigkill_loses_no_confirmed_message() {
    let rounds: usize = std::env::var("WARREN_KILL_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let dir = tempfile::tempdir().expect("tempdir");
    let mut previous: Option<Observed> = None;
    let (mut confirmed_total, mut acked_back_total, mut redelivered_total) = (0, 0, 0);
    for round in 0..=rounds {
        let (mut child, uri) = start(dir.path()).await;
        let conn = Connection::connect(&uri, ConnectionProperties::default())
            .await
            .expect("connect");
        let ch = conn.create_channel().await.expect("channel");
        declare_all(&ch).await;
        if let Some(prev) = previous.take() {
            // Let the TTL queue's recovered messages expire into the dead-letter queue.
            tokio::time::sleep(Duration::from_millis(200)).await;
            let work = drain(&ch, WORK).await;
            let ttl = drain(&ch, TTL).await;
            let dead = drain(&ch, DEAD).await;
            let back: HashSet<&str> = work.iter().map(|(b, _)| b.as_str()).collect();
            let lost: Vec<&String> = prev
                .confirmed
                .keys()
                .filter(|b| {
                    !back.contains(b.as_str())
                        && !prev.acked.contains_key(*b)
                        && !prev.acked_unsynced.contains(*b)
                })
                .collect();
            assert!(
                lost.is_empty(),
                "round {round}: {} confirmed messages lost, e.g. {:?}",
                lost.len(),
                lost.iter().take(5).collect::<Vec<_>>()
            );
            let ttl_back: HashSet<&str> = ttl
                .iter()
                .chain(dead.iter())
                .map(|(b, _)| b.as_str())
                .collect();
            let lost_ttl: Vec<&String> = prev
                .confirmed_ttl
                .iter()
                .filter(|b| !ttl_back.contains(b.as_str()))
                .collect();
            assert!(
                lost_ttl.is_empty(),
                "round {round}: {} confirmed TTL messages neither in {TTL} nor in {DEAD}, e.g. {:?}",
                lost_ttl.len(),
                lost_ttl.iter().take(5).collect::<Vec<_>>()
            );
            assert!(
                work.iter().all(|(_, r)| *r),
                "round {round}: every recovered work message is marked redelivered"
            );
            // The newest confirmed publish: everything the store was asked before it
            // started is on disk.
            let horizon = prev.confirmed.values().max().copied();
            let resurrected: Vec<&str> = work
                .iter()
                .map(|(b, _)| b.as_str())
                .filter(|b| {
                    prev.acked
                        .get(*b)
                        .is_some_and(|t| horizon.is_some_and(|h| *t < h))
                })
                .collect();
            assert!(
                resurrected.is_empty(),
                "round {round}: {} messages acked before a later confirmed publish came back, e.g. {:?}",
                resurrected.len(),
                resurrected.iter().take(5).collect::<Vec<_>>()
            );
            let acked_back = work
                .iter()
                .filter(|(b, _)| prev.acked.contains_key(b) || prev.acked_unsynced.contains(b))
                .count();
            acked_back_total += acked_back;
            redelivered_total += work.len();
            confirmed_total += prev.confirmed.len() + prev.confirmed_ttl.len();
            eprintln!(
                "round {round}: {} + {} confirmed, {} acked; back: {} work ({} of them acked \
                 after the last durable point), {} ttl, {} dead",
                prev.confirmed.len(),
                prev.confirmed_ttl.len(),
                prev.acked.len() + prev.acked_unsynced.len(),
                work.len(),
                acked_back,
                ttl.len(),
                dead.len()
            );
        }
        let _ = conn.close(200, "checked".into()).await;
        if round == rounds {
            let _ = child.start_kill();
            let _ = child.wait().await;
            break;
        }
        let seen: Shared = Arc::new(Mutex::new(Observed::default()));
        let mut tasks = Vec::new();
        for p in 0..PUBLISHERS {
            let queue = if p == 0 { TTL } else { WORK };
            tasks.push(tokio::spawn(publisher(
                uri.clone(),
                round,
                p,
                queue,
                seen.clone(),
            )));
        }
        for _ in 0..CONSUMERS {
            tasks.push(tokio::spawn(consumer(uri.clone(), seen.clone())));
        }
        let delay = 300 + rand::random::<u64>() % 900;
        tokio::time::sleep(Duration::from_millis(delay)).await;
        child.start_kill().expect("SIGKILL");
        let _ = child.wait().await;
        for t in tasks {
            let _ = tokio::time::timeout(Duration::from_secs(20), t).await;
        }
        let observed = std::mem::take(&mut *lock(&seen));
        assert!(
            !observed.confirmed.is_empty(),
            "round {round}: some publishes were confirmed"
        );
        previous = Some(observed);
    }
    eprintln!(
        "{rounds} kills: {confirmed_total} confirmed messages checked, none lost; \
         {redelivered_total} recovered, {acked_back_total} of them acked after the last \
         durable point (allowed: at-least-once)"
    );
}
