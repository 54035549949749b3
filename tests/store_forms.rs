//! A durable queue holds messages stored in two forms: those only it holds (one
//! record with their queue entry) and those shared with other durable queues (one
//! body, an entry per queue). Both come back after a restart, interleaved in
//! publication order, with their redelivered flags.

mod common;

use common::publish_confirmed as publish;
use common::{TestBroker, drain, persistent};
use lapin::options::*;
use lapin::types::FieldTable;
use lapin::{Channel, ExchangeKind};

/// Takes the next message with basic.get (manual ack, not acked yet).
async fn get(ch: &Channel, queue: &str) -> lapin::message::BasicGetMessage {
    ch.basic_get(queue.into(), BasicGetOptions::default())
        .await
        .expect("get")
        .expect("a message")
}

fn expect(items: &[(&str, bool)]) -> Vec<(String, bool)> {
    items.iter().map(|(b, r)| (b.to_string(), *r)).collect()
}

/// Declares a durable queue.
async fn durable_queue(ch: &Channel, name: &str, args: FieldTable) {
    let durable = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    ch.queue_declare(name.into(), durable, args)
        .await
        .expect("declare");
}

/// Declares a durable fanout exchange bound to `queues` (declared before).
async fn fanout_to(ch: &Channel, exchange: &str, queues: &[&str]) {
    let durable = ExchangeDeclareOptions {
        durable: true,
        ..Default::default()
    };
    ch.exchange_declare(
        exchange.into(),
        ExchangeKind::Fanout,
        durable,
        FieldTable::default(),
    )
    .await
    .expect("exchange");
    for q in queues {
        ch.queue_bind(
            (*q).into(),
            exchange.into(),
            "".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("bind");
    }
}

#[tokio::test]
async fn own_and_shared_messages_come_back_interleaved_with_their_flags() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let ch = common::confirm_channel(&conn).await;
    for q in ["a", "b"] {
        durable_queue(&ch, q, FieldTable::default()).await;
    }
    fanout_to(&ch, "both", &["a", "b"]).await;
    // a: own-0, shared-1, own-2, shared-3, own-4; b: shared-1, shared-3.
    for i in 0..5 {
        if i % 2 == 0 {
            publish(&ch, "", "a", format!("own-{i}").as_bytes(), persistent()).await;
        } else {
            publish(
                &ch,
                "both",
                "",
                format!("shared-{i}").as_bytes(),
                persistent(),
            )
            .await;
        }
    }
    // Take a's first two (one of each form) without acking; they go back
    // redelivered when the connection closes.
    for _ in 0..2 {
        get(&ch, "a").await;
    }
    conn.close(200, "bye".into()).await.expect("close");

    let broker = broker.restart().await;
    let conn = broker.connect().await;
    let ch = conn.create_channel().await.expect("channel");
    // Take own-2 from a, ack it, and leave the rest for the next restart.
    let m = get(&ch, "a").await;
    assert_eq!(
        (m.delivery.data.as_slice(), m.delivery.redelivered),
        (&b"own-0"[..], true)
    );
    let m2 = get(&ch, "a").await;
    assert_eq!(
        (m2.delivery.data.as_slice(), m2.delivery.redelivered),
        (&b"shared-1"[..], true)
    );
    let m3 = get(&ch, "a").await;
    assert_eq!(
        (m3.delivery.data.as_slice(), m3.delivery.redelivered),
        (&b"own-2"[..], false)
    );
    m3.delivery
        .ack(BasicAckOptions::default())
        .await
        .expect("ack");
    conn.close(200, "bye".into()).await.expect("close");

    let broker = broker.restart().await;
    let conn = broker.connect().await;
    let ch = conn.create_channel().await.expect("channel");
    assert_eq!(
        drain(&ch, "a").await,
        expect(&[
            ("own-0", true),
            ("shared-1", true),
            ("shared-3", false),
            ("own-4", false)
        ])
    );
    assert_eq!(
        drain(&ch, "b").await,
        expect(&[("shared-1", false), ("shared-3", false)])
    );
    conn.close(200, "bye".into()).await.expect("close");

    // Everything was acked: nothing comes back, in either form.
    let broker = broker.restart().await;
    let conn = broker.connect().await;
    let ch = conn.create_channel().await.expect("channel");
    assert_eq!(drain(&ch, "a").await, vec![]);
    assert_eq!(drain(&ch, "b").await, vec![]);
    broker.stop().await;
}

#[tokio::test]
async fn a_deleted_queue_takes_its_own_messages_with_it() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let ch = common::confirm_channel(&conn).await;
    durable_queue(&ch, "gone", FieldTable::default()).await;
    for i in 0..3 {
        publish(&ch, "", "gone", format!("m{i}").as_bytes(), persistent()).await;
    }
    ch.queue_delete("gone".into(), QueueDeleteOptions::default())
        .await
        .expect("delete");
    // The same name again, with new messages: none of the old ones may come back.
    durable_queue(&ch, "gone", FieldTable::default()).await;
    publish(&ch, "", "gone", b"new", persistent()).await;
    conn.close(200, "bye".into()).await.expect("close");

    let broker = broker.restart().await;
    let conn = broker.connect().await;
    let ch = conn.create_channel().await.expect("channel");
    assert_eq!(drain(&ch, "gone").await, expect(&[("new", false)]));
    broker.stop().await;
}

#[tokio::test]
async fn a_refused_publish_leaves_the_queues_stored_messages_alone() {
    // `capped` holds one message, shared with `other`; two more are refused by it
    // and dead-lettered (reject-publish-dlx): one for `capped` alone, one that
    // `other` takes too. The refusals must not touch the stored entry of the message
    // `capped` does hold, nor the body `other` still needs.
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let ch = common::confirm_channel(&conn).await;
    let mut args = FieldTable::default();
    args.insert("x-max-length".into(), lapin::types::AMQPValue::LongInt(1));
    args.insert(
        "x-overflow".into(),
        lapin::types::AMQPValue::LongString("reject-publish-dlx".into()),
    );
    args.insert(
        "x-dead-letter-exchange".into(),
        lapin::types::AMQPValue::LongString("".into()),
    );
    args.insert(
        "x-dead-letter-routing-key".into(),
        lapin::types::AMQPValue::LongString("refused".into()),
    );
    durable_queue(&ch, "capped", args).await;
    for q in ["other", "refused"] {
        durable_queue(&ch, q, FieldTable::default()).await;
    }
    fanout_to(&ch, "to-both", &["capped", "other"]).await;
    publish(&ch, "to-both", "", b"shared", persistent()).await;
    let refused = common::publish(&ch, "", "capped", b"one too many", persistent()).await;
    assert!(refused.is_nack(), "{refused:?}");
    // Refused by `capped`, taken by `other`: its body must stay for `other`.
    let refused = common::publish(&ch, "to-both", "", b"two too many", persistent()).await;
    assert!(refused.is_nack(), "{refused:?}");
    conn.close(200, "bye".into()).await.expect("close");

    let broker = broker.restart().await;
    let conn = broker.connect().await;
    let ch = conn.create_channel().await.expect("channel");
    assert_eq!(drain(&ch, "capped").await, expect(&[("shared", false)]));
    assert_eq!(
        drain(&ch, "other").await,
        expect(&[("shared", false), ("two too many", false)])
    );
    assert_eq!(
        drain(&ch, "refused").await,
        expect(&[("one too many", false), ("two too many", false)])
    );
    broker.stop().await;
}
