//! Queues: declare (server-named, passive, exclusive, auto-delete, arguments), the
//! counts of declare-ok / purge-ok / delete-ok, bind/unbind, conditional deletes, and
//! the basic.cancel consumers of a deleted queue receive. Texts are RabbitMQ's.

mod common;

use common::{TestBroker, confirm_channel, expect_amqp_error, unique};
use futures_lite::StreamExt;
use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(10);

async fn publish_n(ch: &Channel, exchange: &str, key: &str, n: usize) {
    for i in 0..n {
        ch.basic_publish(
            exchange.into(),
            key.into(),
            BasicPublishOptions::default(),
            format!("m{i}").as_bytes(),
            BasicProperties::default(),
        )
        .await
        .expect("publish")
        .await
        .expect("confirm");
    }
}

async fn declare(ch: &Channel, name: &str, options: QueueDeclareOptions) -> lapin::Queue {
    common::declare_with(ch, name, options)
        .await
        .expect("queue.declare")
}

fn passive() -> QueueDeclareOptions {
    QueueDeclareOptions {
        passive: true,
        ..Default::default()
    }
}

/// Passive declare on a throw-away channel: Some((messages, consumers)) or None on 404.
async fn queue_counts(conn: &Connection, name: &str) -> Option<(u32, u32)> {
    let ch = conn.create_channel().await.expect("channel");
    match ch
        .queue_declare(name.into(), passive(), FieldTable::default())
        .await
    {
        Ok(q) => {
            ch.close(200, "done".into()).await.expect("close");
            Some((q.message_count(), q.consumer_count()))
        }
        Err(e) => {
            let (code, text) = common::amqp_error(&e);
            assert_eq!(code, 404, "{text}");
            assert_eq!(text, format!("NOT_FOUND - no queue '{name}' in vhost '/'"));
            None
        }
    }
}

async fn consume(ch: &Channel, queue: &str, tag: &str) -> lapin::Consumer {
    ch.basic_consume(
        queue.into(),
        tag.into(),
        BasicConsumeOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("basic.consume")
}

#[tokio::test]
async fn server_named_queues_look_like_rabbitmqs() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    let mut names = Vec::new();
    for _ in 0..20 {
        let q = declare(&ch, "", QueueDeclareOptions::default()).await;
        assert_eq!(q.message_count(), 0);
        assert_eq!(q.consumer_count(), 0);
        let name = q.name().to_string();
        let suffix = name.strip_prefix("amq.gen-").expect("amq.gen- prefix");
        assert_eq!(suffix.len(), 22, "{name}");
        assert!(
            suffix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
            "url-safe base64: {name}"
        );
        names.push(name);
    }
    names.sort();
    names.dedup();
    assert_eq!(names.len(), 20, "names are unique");
}

#[tokio::test]
async fn passive_declare_of_missing_queue_is_404() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let name = unique("missing");
    assert_eq!(queue_counts(&conn, &name).await, None);
    // Other operations name the queue the same way.
    let ch = conn.create_channel().await.expect("channel");
    let (code, text) = expect_amqp_error(ch.basic_consume(
        name.as_str().into(),
        "".into(),
        BasicConsumeOptions::default(),
        FieldTable::default(),
    ))
    .await;
    assert_eq!(
        (code, text),
        (404, format!("NOT_FOUND - no queue '{name}' in vhost '/'"))
    );
    let ch = conn.create_channel().await.expect("channel");
    let (code, text) =
        expect_amqp_error(ch.queue_purge(name.as_str().into(), QueuePurgeOptions::default())).await;
    assert_eq!(
        (code, text),
        (404, format!("NOT_FOUND - no queue '{name}' in vhost '/'"))
    );
    // Deleting a missing queue is fine and reports 0 messages.
    let ch = conn.create_channel().await.expect("channel");
    let deleted = ch
        .queue_delete(name.as_str().into(), QueueDeleteOptions::default())
        .await
        .expect("delete of a missing queue");
    assert_eq!(deleted, 0);
}

#[tokio::test]
async fn declare_ok_reports_ready_messages_and_consumers() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let ch = confirm_channel(&conn).await;
    let q = unique("counts");
    declare(&ch, &q, QueueDeclareOptions::default()).await;
    publish_n(&ch, "", &q, 3).await;
    let again = declare(&ch, &q, QueueDeclareOptions::default()).await;
    assert_eq!((again.message_count(), again.consumer_count()), (3, 0));

    let consumer_ch = conn.create_channel().await.expect("channel");
    consumer_ch
        .basic_qos(1, BasicQosOptions::default())
        .await
        .expect("qos");
    let mut consumer = consume(&consumer_ch, &q, "c1").await;
    let first = common::next(&mut consumer).await;
    assert_eq!(first.data, b"m0");
    // One message is unacked: it is not counted as ready.
    assert_eq!(queue_counts(&conn, &q).await, Some((2, 1)));
}

#[tokio::test]
async fn exclusive_queue_is_locked_to_its_connection_and_goes_with_it() {
    let broker = TestBroker::start().await;
    let owner = broker.connect().await;
    let ch = owner.create_channel().await.expect("channel");
    let q = unique("excl");
    declare(
        &ch,
        &q,
        QueueDeclareOptions {
            exclusive: true,
            ..Default::default()
        },
    )
    .await;
    // The owner may use it from any of its channels.
    let ch2 = owner.create_channel().await.expect("channel");
    let _own = consume(&ch2, &q, "own").await;

    let other = broker.connect().await;
    let locked = format!(
        "RESOURCE_LOCKED - cannot obtain exclusive access to locked queue '{q}' in vhost '/'. It could be originally declared on another connection or the exclusive property value does not match that of the original declaration."
    );
    let och = other.create_channel().await.expect("channel");
    let (code, text) =
        expect_amqp_error(och.queue_declare(q.as_str().into(), passive(), FieldTable::default()))
            .await;
    assert_eq!((code, text.as_str()), (405, locked.as_str()));
    let och = other.create_channel().await.expect("channel");
    let (code, text) = expect_amqp_error(och.queue_declare(
        q.as_str().into(),
        QueueDeclareOptions::default(),
        FieldTable::default(),
    ))
    .await;
    assert_eq!((code, text.as_str()), (405, locked.as_str()));
    let och = other.create_channel().await.expect("channel");
    let (code, text) = expect_amqp_error(och.basic_consume(
        q.as_str().into(),
        "".into(),
        BasicConsumeOptions::default(),
        FieldTable::default(),
    ))
    .await;
    assert_eq!((code, text.as_str()), (405, locked.as_str()));
    let och = other.create_channel().await.expect("channel");
    let (code, text) =
        expect_amqp_error(och.queue_delete(q.as_str().into(), QueueDeleteOptions::default())).await;
    assert_eq!((code, text.as_str()), (405, locked.as_str()));
    assert!(other.status().connected(), "405 is a channel error");

    owner.close(200, "bye".into()).await.expect("close");
    assert_eq!(queue_counts(&other, &q).await, None, "gone with its owner");
}

#[tokio::test]
async fn auto_delete_queue_goes_after_its_last_consumer() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let ch = conn.create_channel().await.expect("channel");
    let q = unique("auto");
    let auto = QueueDeclareOptions {
        auto_delete: true,
        ..Default::default()
    };
    declare(&ch, &q, auto).await;
    // Never consumed from: it stays.
    assert_eq!(queue_counts(&conn, &q).await, Some((0, 0)));
    // lapin cancels a consumer when its stream is dropped: keep them.
    let _c1 = consume(&ch, &q, "c1").await;
    let _c2 = consume(&ch, &q, "c2").await;
    assert_eq!(queue_counts(&conn, &q).await, Some((0, 2)));
    ch.basic_cancel("c1".into(), BasicCancelOptions::default())
        .await
        .expect("cancel");
    assert_eq!(queue_counts(&conn, &q).await, Some((0, 1)));
    ch.basic_cancel("c2".into(), BasicCancelOptions::default())
        .await
        .expect("cancel");
    assert_eq!(queue_counts(&conn, &q).await, None);

    // Closing the consumer's channel counts as cancelling.
    let q2 = unique("auto2");
    let ch = conn.create_channel().await.expect("channel");
    declare(&ch, &q2, auto).await;
    let _c = consume(&ch, &q2, "c").await;
    ch.close(200, "bye".into()).await.expect("close");
    assert_eq!(queue_counts(&conn, &q2).await, None);
}

#[tokio::test]
async fn redeclare_compares_flags_and_arguments() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let ch = conn.create_channel().await.expect("channel");
    let q = unique("args");
    let mut args = FieldTable::default();
    args.insert("x-max-length".into(), AMQPValue::LongInt(10));
    ch.queue_declare(q.as_str().into(), QueueDeclareOptions::default(), args)
        .await
        .expect("declare");
    // The same value in another integer width is equivalent.
    let mut wide = FieldTable::default();
    wide.insert("x-max-length".into(), AMQPValue::LongLongInt(10));
    ch.queue_declare(q.as_str().into(), QueueDeclareOptions::default(), wide)
        .await
        .expect("equivalent redeclare");
    // A passive declare ignores arguments.
    ch.queue_declare(q.as_str().into(), passive(), FieldTable::default())
        .await
        .expect("passive");

    let mut other = FieldTable::default();
    other.insert("x-max-length".into(), AMQPValue::LongInt(20));
    let (code, text) = expect_amqp_error(ch.queue_declare(
        q.as_str().into(),
        QueueDeclareOptions::default(),
        other,
    ))
    .await;
    assert_eq!(code, 406);
    assert_eq!(
        text,
        format!(
            "PRECONDITION_FAILED - inequivalent arg 'x-max-length' for queue '{q}' in vhost '/': received '20' but current is '10'"
        )
    );
    let ch = conn.create_channel().await.expect("channel");
    let (code, text) = expect_amqp_error(ch.queue_declare(
        q.as_str().into(),
        QueueDeclareOptions::default(),
        FieldTable::default(),
    ))
    .await;
    assert_eq!(code, 406);
    assert_eq!(
        text,
        format!(
            "PRECONDITION_FAILED - inequivalent arg 'x-max-length' for queue '{q}' in vhost '/': received none but current is the value '10' of type 'signedint'"
        )
    );
    let ch = conn.create_channel().await.expect("channel");
    let (code, text) = expect_amqp_error(ch.queue_declare(
        q.as_str().into(),
        QueueDeclareOptions {
            durable: true,
            ..Default::default()
        },
        FieldTable::default(),
    ))
    .await;
    assert_eq!(code, 406);
    assert_eq!(
        text,
        format!(
            "PRECONDITION_FAILED - inequivalent arg 'durable' for queue '{q}' in vhost '/': received 'true' but current is 'false'"
        )
    );
}

#[tokio::test]
async fn bind_and_unbind_change_routing() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let ch = confirm_channel(&conn).await;
    let q = unique("bound");
    declare(&ch, &q, QueueDeclareOptions::default()).await;
    ch.queue_bind(
        q.as_str().into(),
        "amq.direct".into(),
        q.as_str().into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("bind");
    publish_n(&ch, "amq.direct", &q, 2).await;
    assert_eq!(queue_counts(&conn, &q).await, Some((2, 0)));
    ch.queue_unbind(
        q.as_str().into(),
        "amq.direct".into(),
        q.as_str().into(),
        FieldTable::default(),
    )
    .await
    .expect("unbind");
    publish_n(&ch, "amq.direct", &q, 2).await;
    assert_eq!(queue_counts(&conn, &q).await, Some((2, 0)));
    // Unbinding what is not bound succeeds.
    ch.queue_unbind(
        q.as_str().into(),
        "amq.direct".into(),
        "never-bound".into(),
        FieldTable::default(),
    )
    .await
    .expect("unbind of a missing binding");
}

#[tokio::test]
async fn purge_and_delete_report_counts() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let ch = confirm_channel(&conn).await;
    let q = unique("purge");
    declare(&ch, &q, QueueDeclareOptions::default()).await;
    publish_n(&ch, "", &q, 5).await;
    // One message is held unacked: purge leaves it alone.
    let held = ch
        .basic_get(q.as_str().into(), BasicGetOptions::default())
        .await
        .expect("get")
        .expect("a message");
    assert_eq!(held.delivery.data, b"m0");
    assert_eq!(held.message_count, 4);
    let purged = ch
        .queue_purge(q.as_str().into(), QueuePurgeOptions::default())
        .await
        .expect("purge");
    assert_eq!(purged, 4);
    assert_eq!(queue_counts(&conn, &q).await, Some((0, 0)));
    // Rejected with requeue, the held message is ready again.
    held.delivery
        .reject(BasicRejectOptions { requeue: true })
        .await
        .expect("reject");
    publish_n(&ch, "", &q, 2).await;
    assert_eq!(queue_counts(&conn, &q).await, Some((3, 0)));
    let deleted = ch
        .queue_delete(q.as_str().into(), QueueDeleteOptions::default())
        .await
        .expect("delete");
    assert_eq!(deleted, 3);
    assert_eq!(queue_counts(&conn, &q).await, None);
}

#[tokio::test]
async fn conditional_deletes_are_406() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let ch = confirm_channel(&conn).await;
    let q = unique("cond");
    declare(&ch, &q, QueueDeclareOptions::default()).await;
    publish_n(&ch, "", &q, 1).await;
    let (code, text) = expect_amqp_error(ch.queue_delete(
        q.as_str().into(),
        QueueDeleteOptions {
            if_empty: true,
            ..Default::default()
        },
    ))
    .await;
    assert_eq!(code, 406);
    assert_eq!(
        text,
        format!("PRECONDITION_FAILED - queue '{q}' in vhost '/' not empty")
    );

    let ch = conn.create_channel().await.expect("channel");
    let _busy = consume(&ch, &q, "busy").await;
    let ch2 = conn.create_channel().await.expect("channel");
    let (code, text) = expect_amqp_error(ch2.queue_delete(
        q.as_str().into(),
        QueueDeleteOptions {
            if_unused: true,
            ..Default::default()
        },
    ))
    .await;
    assert_eq!(code, 406);
    assert_eq!(
        text,
        format!("PRECONDITION_FAILED - queue '{q}' in vhost '/' in use")
    );
    assert!(queue_counts(&conn, &q).await.is_some());
}

#[tokio::test]
async fn consumers_of_a_deleted_queue_get_basic_cancel() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let ch = conn.create_channel().await.expect("channel");
    let q = unique("doomed");
    declare(&ch, &q, QueueDeclareOptions::default()).await;
    let mut consumer = consume(&ch, &q, "victim").await;

    let other = broker.connect().await;
    let och = other.create_channel().await.expect("channel");
    och.queue_delete(q.as_str().into(), QueueDeleteOptions::default())
        .await
        .expect("delete");
    let end = tokio::time::timeout(WAIT, consumer.next())
        .await
        .expect("the consumer is cancelled in time");
    assert!(end.is_none(), "consumer stream ended: {end:?}");
    // basic.cancel closes neither the channel nor the connection.
    assert!(ch.status().connected());
    declare(&ch, "", QueueDeclareOptions::default()).await;
}

/// RabbitMQ compares only the arguments it interprets: rabbit_classic_queue's
/// queue_arguments for queues, alternate-exchange for exchanges.
#[tokio::test]
async fn unknown_arguments_are_not_compared_on_redeclare() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    let q = unique("custom");
    let arg = |v: &str| {
        let mut t = FieldTable::default();
        t.insert("x-custom".into(), AMQPValue::LongString(v.into()));
        t
    };
    ch.queue_declare(q.as_str().into(), QueueDeclareOptions::default(), arg("a"))
        .await
        .expect("declare");
    ch.queue_declare(q.as_str().into(), QueueDeclareOptions::default(), arg("b"))
        .await
        .expect("RabbitMQ ignores x-custom when comparing");
    let x = unique("customx");
    for v in ["a", "b"] {
        ch.exchange_declare(
            x.as_str().into(),
            lapin::ExchangeKind::Direct,
            ExchangeDeclareOptions::default(),
            arg(v),
        )
        .await
        .expect("RabbitMQ compares only alternate-exchange for exchanges");
    }
}

/// Replies keep the order of the methods they answer even when one waits for the
/// store: queue.delete-ok of a durable queue comes before the basic.cancel its
/// consumer on the same channel gets, and a channel.close sent right behind a
/// durable queue.declare gets declare-ok first, then close-ok.
#[tokio::test]
async fn replies_waiting_for_the_store_keep_their_order() {
    use amq_protocol::protocol::{AMQPClass, basic, channel, queue};
    use common::raw::{Raw, method_frame, queue_declare};
    let broker = TestBroker::start().await;
    let mut raw = Raw::opened(&broker.uri, 131_072).await;
    let name = unique("ordered");
    raw.declare_queue(1, &name, true, false).await;
    raw.send_method(
        1,
        AMQPClass::Basic(basic::AMQPMethod::Consume(basic::Consume {
            queue: name.as_str().into(),
            consumer_tag: "c".into(),
            no_local: false,
            no_ack: false,
            exclusive: false,
            nowait: false,
            arguments: FieldTable::default(),
        })),
    )
    .await;
    assert!(matches!(
        raw.next_method().await,
        Some((1, AMQPClass::Basic(basic::AMQPMethod::ConsumeOk(_))))
    ));
    raw.send_method(
        1,
        AMQPClass::Queue(queue::AMQPMethod::Delete(queue::Delete {
            queue: name.as_str().into(),
            if_unused: false,
            if_empty: false,
            nowait: false,
        })),
    )
    .await;
    let first = raw.next_method().await;
    assert!(
        matches!(
            first,
            Some((1, AMQPClass::Queue(queue::AMQPMethod::DeleteOk(_))))
        ),
        "delete-ok first, got {first:?}"
    );
    assert!(matches!(
        raw.next_method().await,
        Some((1, AMQPClass::Basic(basic::AMQPMethod::Cancel(_))))
    ));
    let mut bytes = method_frame(1, queue_declare(&unique("ordered"), true, false));
    bytes.extend(method_frame(1, common::raw::channel_close()));
    raw.send(&bytes).await;
    let replies = [raw.next_method().await, raw.next_method().await];
    assert!(
        matches!(
            replies,
            [
                Some((1, AMQPClass::Queue(queue::AMQPMethod::DeclareOk(_)))),
                Some((1, AMQPClass::Channel(channel::AMQPMethod::CloseOk(_))))
            ]
        ),
        "declare-ok then close-ok, got {replies:?}"
    );
    drop(raw);
}

/// CR and LF are removed from the names of declared, bound and deleted queues and
/// exchanges, as RabbitMQ does.
#[tokio::test]
async fn line_feeds_are_stripped_from_names() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let ch = conn.create_channel().await.expect("channel");
    let q = unique("lf");
    let x = unique("lfx");
    ch.queue_declare(
        format!("{q}\n").as_str().into(),
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("declare");
    ch.exchange_declare(
        format!("\r{x}\n").as_str().into(),
        lapin::ExchangeKind::Fanout,
        ExchangeDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("exchange.declare");
    ch.queue_bind(
        format!("{q}\r\n").as_str().into(),
        format!("{x}\n").as_str().into(),
        "".into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("bind");
    common::publish_confirmed(&ch, &x, "", b"m", BasicProperties::default()).await;
    let ok = ch
        .queue_declare(
            q.as_str().into(),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("the queue exists without the line feed");
    assert_eq!(ok.message_count(), 1);
    ch.exchange_delete(
        format!("{x}\n").as_str().into(),
        ExchangeDeleteOptions::default(),
    )
    .await
    .expect("exchange.delete");
    let count = ch
        .queue_delete(
            format!("{q}\n").as_str().into(),
            QueueDeleteOptions::default(),
        )
        .await
        .expect("delete");
    assert_eq!(count, 1);
}

/// queue.bind with neither a queue nor a routing key binds the channel's last declared
/// queue with its own name as the key.
#[tokio::test]
async fn bind_shortcut_uses_the_last_declared_queue_as_key() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let ch = conn.create_channel().await.expect("channel");
    let q = unique("short");
    ch.queue_declare(
        q.as_str().into(),
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("declare");
    ch.queue_bind(
        "".into(),
        "amq.direct".into(),
        "".into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("bind");
    common::publish_confirmed(&ch, "amq.direct", &q, b"m", BasicProperties::default()).await;
    let m = ch
        .basic_get(q.as_str().into(), BasicGetOptions { no_ack: true })
        .await
        .expect("get")
        .expect("routed by the queue's name");
    assert_eq!(m.delivery.data, b"m");
}

/// A queue.declare of a direct reply-to name is passive: the bare name and the name
/// of a live reply consumer exist, with one consumer; another name is 404.
#[tokio::test]
async fn direct_reply_to_names_declare_passively() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let ch = conn.create_channel().await.expect("channel");
    let reply = "amq.rabbitmq.reply-to";
    for passive in [false, true] {
        let ok = ch
            .queue_declare(
                reply.into(),
                QueueDeclareOptions {
                    passive,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .expect("the bare name exists");
        assert_eq!((ok.message_count(), ok.consumer_count()), (0, 1));
    }
    let _replies = common::consume_no_ack(&ch, reply, "").await;
    // The name the broker gives this channel's replies, seen by a responder.
    let requests = unique("requests");
    ch.queue_declare(
        requests.as_str().into(),
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("declare");
    common::publish_confirmed(
        &ch,
        "",
        &requests,
        b"q",
        BasicProperties::default().with_reply_to(reply.into()),
    )
    .await;
    let request = ch
        .basic_get(requests.as_str().into(), BasicGetOptions { no_ack: true })
        .await
        .expect("get")
        .expect("request");
    let name = request
        .delivery
        .properties
        .reply_to()
        .clone()
        .expect("reply_to")
        .to_string();
    assert!(name.starts_with("amq.rabbitmq.reply-to."), "{name}");
    let other = conn.create_channel().await.expect("channel");
    let ok = other
        .queue_declare(
            name.as_str().into(),
            QueueDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("a live reply queue exists");
    assert_eq!((ok.message_count(), ok.consumer_count()), (0, 1));
    let (code, _) = expect_amqp_error(other.queue_declare(
        "amq.rabbitmq.reply-to.nobody".into(),
        QueueDeclareOptions::default(),
        FieldTable::default(),
    ))
    .await;
    assert_eq!(code, 404);
}
