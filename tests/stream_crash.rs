//! A stream survives SIGKILL: the real `warren` binary is killed while a publisher
//! waits for confirms; after a restart every confirmed message is in the stream at an
//! offset, offsets run without gaps from 0, and appends continue after the last one.

mod common;

use common::binary::{listen_args, start_warren};
use futures_lite::StreamExt;
use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use std::collections::HashSet;
use std::time::Duration;

const STREAM: &str = "crash-stream";

fn stream_args(offset: Option<&str>) -> FieldTable {
    let mut t = FieldTable::default();
    match offset {
        None => t.insert(
            ShortString::from("x-queue-type"),
            AMQPValue::LongString(LongString::from("stream")),
        ),
        Some(o) => t.insert(
            ShortString::from("x-stream-offset"),
            AMQPValue::LongString(LongString::from(o)),
        ),
    };
    t
}

async fn declare(ch: &Channel) {
    let options = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    ch.queue_declare(STREAM.into(), options, stream_args(None))
        .await
        .expect("declare stream");
}

/// Every message of the stream from the first: (offset, body).
async fn read_all(uri: &str) -> Vec<(i64, String)> {
    let conn = Connection::connect(uri, ConnectionProperties::default())
        .await
        .expect("connect");
    let ch = conn.create_channel().await.expect("channel");
    declare(&ch).await;
    let count = ch
        .queue_declare(
            STREAM.into(),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("passive declare")
        .message_count();
    ch.basic_qos(500, BasicQosOptions::default())
        .await
        .expect("qos");
    let mut consumer = ch
        .basic_consume(
            STREAM.into(),
            "".into(),
            BasicConsumeOptions::default(),
            stream_args(Some("first")),
        )
        .await
        .expect("consume");
    let mut out = Vec::new();
    while out.len() < count as usize {
        let d = tokio::time::timeout(Duration::from_secs(10), consumer.next())
            .await
            .expect("deliveries in time")
            .expect("consumer open")
            .expect("delivery");
        let offset = match d
            .properties
            .headers()
            .as_ref()
            .and_then(|h| h.inner().get("x-stream-offset").cloned())
        {
            Some(AMQPValue::LongLongInt(n)) => n,
            other => panic!("no x-stream-offset: {other:?}"),
        };
        out.push((offset, String::from_utf8_lossy(&d.data).into_owned()));
        d.ack(BasicAckOptions::default()).await.expect("ack");
    }
    let _ = conn.close(200, "done".into()).await;
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_loses_no_confirmed_append() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut child, uri) = start_warren(|port| listen_args(port, dir.path())).await;
    let conn = Connection::connect(&uri, ConnectionProperties::default())
        .await
        .expect("connect");
    let ch = conn.create_channel().await.expect("channel");
    declare(&ch).await;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirm.select");
    let publisher = tokio::spawn(async move {
        let mut confirmed = HashSet::new();
        let mut i = 0u64;
        loop {
            let mut pending = Vec::new();
            for _ in 0..50 {
                let body = format!("a{i}");
                i += 1;
                let Ok(c) = ch
                    .basic_publish(
                        "".into(),
                        STREAM.into(),
                        BasicPublishOptions::default(),
                        body.as_bytes(),
                        BasicProperties::default(),
                    )
                    .await
                else {
                    return confirmed;
                };
                pending.push((body, c));
            }
            for (body, c) in pending {
                match c.await {
                    Ok(c) if c.is_ack() => {
                        confirmed.insert(body);
                    }
                    _ => return confirmed,
                }
            }
        }
    });
    tokio::time::sleep(Duration::from_millis(400 + rand::random::<u64>() % 600)).await;
    child.start_kill().expect("SIGKILL");
    let _ = child.wait().await;
    let confirmed = tokio::time::timeout(Duration::from_secs(20), publisher)
        .await
        .expect("the publisher notices the kill")
        .expect("publisher task");
    assert!(!confirmed.is_empty(), "some appends were confirmed");

    let (mut child, uri) = start_warren(|port| listen_args(port, dir.path())).await;
    let log = read_all(&uri).await;
    let offsets: Vec<i64> = log.iter().map(|(o, _)| *o).collect();
    assert_eq!(
        offsets,
        (0..log.len() as i64).collect::<Vec<_>>(),
        "offsets from 0 without gaps"
    );
    let bodies: HashSet<&str> = log.iter().map(|(_, b)| b.as_str()).collect();
    let lost: Vec<&String> = confirmed
        .iter()
        .filter(|b| !bodies.contains(b.as_str()))
        .collect();
    assert!(
        lost.is_empty(),
        "{} confirmed appends lost, e.g. {:?}",
        lost.len(),
        lost.iter().take(3).collect::<Vec<_>>()
    );
    // Appends go on after the last recovered offset.
    let conn = Connection::connect(&uri, ConnectionProperties::default())
        .await
        .expect("connect");
    let ch = conn.create_channel().await.expect("channel");
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirm.select");
    common::publish_confirmed(&ch, "", STREAM, b"after", BasicProperties::default()).await;
    let again = read_all(&uri).await;
    assert_eq!(again.len(), log.len() + 1);
    assert_eq!(
        again.last().map(|(o, b)| (*o, b.as_str())),
        Some((log.len() as i64, "after"))
    );
    let _ = child.start_kill();
    let _ = child.wait().await;
}
