//! Numbered persistent messages and ready counts, for the tests that fill a queue
//! with raw publishes and watch what a broker (in-process or a child process) does
//! with them.

use super::raw::publish_frames_with;
use lapin::{Connection, ConnectionProperties};
use std::time::Duration;

/// basic.publish of a persistent message whose body is its number, padded to 100 B.
pub fn persistent_publish(channel: u16, routing_key: &str, n: u32) -> Vec<u8> {
    let mut body = format!("{n:010}").into_bytes();
    body.resize(100, b'.');
    // Property flags: delivery-mode only; delivery-mode 2 (persistent).
    publish_frames_with(channel, routing_key, &body, 0x1000, &[2])
}

/// The number a [`persistent_publish`] body carries.
pub fn number(body: &[u8]) -> u32 {
    std::str::from_utf8(&body[..10])
        .expect("ascii number")
        .parse()
        .expect("a number")
}

/// How many messages are ready in `queue`, as a passive declare reports it.
pub async fn ready(uri: &str, queue: &str) -> u32 {
    let conn = Connection::connect(uri, ConnectionProperties::default())
        .await
        .expect("connect");
    let n = super::ready(&conn, queue).await;
    let _ = conn.close(200, "bye".into()).await;
    n
}

/// Waits (bounded: a minute) until `queue` holds `n` ready messages; returns the
/// last count.
pub async fn wait_ready(uri: &str, queue: &str, n: u32) -> u32 {
    let mut last = 0;
    for _ in 0..600 {
        last = ready(uri, queue).await;
        if last == n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    last
}

/// Waits until the ready count of `queue` stops moving (the broker dispatched what
/// it will to a stalled consumer); returns it.
pub async fn settled(uri: &str, queue: &str) -> u32 {
    let mut last = ready(uri, queue).await;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let now = ready(uri, queue).await;
        if now == last {
            return now;
        }
        last = now;
    }
    last
}
