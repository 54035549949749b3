//! Policies and operator policies, set through the broker's own functions (as the
//! HTTP API sets them) and observed through a client: what they change on queues
//! and exchanges, how they combine with arguments, and that changing or deleting
//! one applies at once. Each scenario was checked against RabbitMQ where its
//! behaviour was in doubt (see the comments).

mod common;

use common::policy::*;
use common::{TestBroker, confirm_channel, publish_confirmed as publish, ready, unique};
use lapin::options::*;
use lapin::types::FieldTable;
use lapin::{BasicProperties, Confirmation, ExchangeKind};
use std::time::Duration;
use warren::broker::policy::PolicyHolder;
use warren::model::BrokerError;

#[tokio::test]
async fn message_ttl_by_policy_expires_new_messages_only() {
    let broker = TestBroker::start().await;
    if broker.external() {
        return;
    }
    let conn = broker.connect().await;
    let ch = confirm_channel(&conn).await;
    let q = unique("ttl");
    declare(&ch, &q, FieldTable::default()).await;
    send(&ch, &q, &["before"]).await;
    set(
        &broker,
        policy("ttl", &exact(&q), "queues", 0, r#"{"message-ttl":50}"#),
    );
    send(&ch, &q, &["after"]).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    // As in RabbitMQ (checked on 3.10): a message published before the policy has
    // no expiry, and a classic queue expires from the head only, so both are still
    // counted; once the head is taken, the expired one goes.
    assert_eq!(ready(&conn, &q).await, 2);
    assert_eq!(bodies(&ch, &q).await, ["before"]);
    send(&ch, &q, &["expires"]).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(ready(&conn, &q).await, 0);
}

#[tokio::test]
async fn max_length_by_policy_drops_the_head_at_once_and_dead_letters_it() {
    let broker = TestBroker::start().await;
    if broker.external() {
        return;
    }
    let conn = broker.connect().await;
    let ch = confirm_channel(&conn).await;
    let (q, dlq) = (unique("limited"), unique("dlq"));
    declare(&ch, &q, FieldTable::default()).await;
    declare(&ch, &dlq, FieldTable::default()).await;
    send(&ch, &q, &["1", "2", "3", "4", "5"]).await;
    let def = format!(
        r#"{{"max-length":2,"dead-letter-exchange":"","dead-letter-routing-key":"{dlq}"}}"#
    );
    set(&broker, policy("limit", &exact(&q), "all", 0, &def));
    assert_eq!(bodies(&ch, &q).await, ["4", "5"]);
    wait_ready(&conn, &dlq, 3).await;
    let m = ch
        .basic_get(dlq.as_str().into(), BasicGetOptions { no_ack: true })
        .await
        .expect("get")
        .expect("a dead letter");
    assert_eq!(m.delivery.data, b"1");
    let headers = m.delivery.properties.headers().clone().expect("headers");
    assert_eq!(
        headers.inner().get("x-first-death-reason"),
        Some(&s("maxlen"))
    );
    assert_eq!(headers.inner().get("x-first-death-queue"), Some(&s(&q)));
    // A changed dead-letter target applies to what dies next.
    let dlq2 = unique("dlq2");
    declare(&ch, &dlq2, FieldTable::default()).await;
    send(&ch, &q, &["6", "7"]).await;
    let def = format!(
        r#"{{"max-length":1,"dead-letter-exchange":"","dead-letter-routing-key":"{dlq2}"}}"#
    );
    set(&broker, policy("limit", &exact(&q), "all", 0, &def));
    wait_ready(&conn, &dlq2, 1).await;
    assert_eq!(bodies(&ch, &dlq2).await, ["6"]);
}

#[tokio::test]
async fn the_lower_value_wins_between_argument_and_policy() {
    let broker = TestBroker::start().await;
    if broker.external() {
        return;
    }
    let conn = broker.connect().await;
    let ch = confirm_channel(&conn).await;
    let (a, b) = (unique("arg-lower"), unique("policy-lower"));
    set(
        &broker,
        policy("a", &exact(&a), "queues", 0, r#"{"max-length":5}"#),
    );
    set(
        &broker,
        policy("b", &exact(&b), "queues", 0, r#"{"max-length":2}"#),
    );
    declare(&ch, &a, args(&[("x-max-length", int(3))])).await;
    declare(&ch, &b, args(&[("x-max-length", int(4))])).await;
    for q in [&a, &b] {
        send(&ch, q, &["1", "2", "3", "4", "5", "6"]).await;
    }
    assert_eq!(ready(&conn, &a).await, 3);
    assert_eq!(ready(&conn, &b).await, 2);
}

#[tokio::test]
async fn the_argument_wins_for_overflow_and_dead_lettering() {
    let broker = TestBroker::start().await;
    if broker.external() {
        return;
    }
    let conn = broker.connect().await;
    let ch = confirm_channel(&conn).await;
    let (q, by_arg, by_policy) = (unique("q"), unique("dl-arg"), unique("dl-policy"));
    declare(&ch, &by_arg, FieldTable::default()).await;
    declare(&ch, &by_policy, FieldTable::default()).await;
    let def = format!(
        r#"{{"max-length":1,"overflow":"drop-head","dead-letter-exchange":"","dead-letter-routing-key":"{by_policy}"}}"#
    );
    set(&broker, policy("p", &exact(&q), "all", 0, &def));
    let arguments = args(&[
        ("x-overflow", s("reject-publish")),
        ("x-dead-letter-exchange", s("")),
        ("x-dead-letter-routing-key", s(&by_arg)),
    ]);
    declare(&ch, &q, arguments).await;
    send(&ch, &q, &["kept"]).await;
    // reject-publish from the argument: the second message is refused.
    let refused = common::publish(&ch, "", &q, b"refused", BasicProperties::default()).await;
    assert!(matches!(refused, Confirmation::Nack(_)), "{refused:?}");
    // The argument's dead-letter routing key wins too.
    let m = ch
        .basic_get(q.as_str().into(), BasicGetOptions::default())
        .await
        .expect("get")
        .expect("message");
    m.delivery
        .nack(BasicNackOptions {
            requeue: false,
            ..Default::default()
        })
        .await
        .expect("nack");
    wait_ready(&conn, &by_arg, 1).await;
    assert_eq!(ready(&conn, &by_policy).await, 0);
}

#[tokio::test]
async fn only_the_highest_priority_policy_applies() {
    let broker = TestBroker::start().await;
    if broker.external() {
        return;
    }
    let conn = broker.connect().await;
    let ch = confirm_channel(&conn).await;
    let q = unique("prio");
    set(&broker, policy("low", &q, "all", 1, r#"{"max-length":1}"#));
    set(
        &broker,
        policy("high", &exact(&q), "queues", 7, r#"{"message-ttl":60000}"#),
    );
    declare(&ch, &q, FieldTable::default()).await;
    send(&ch, &q, &["1", "2", "3"]).await;
    // The definitions are not merged: max-length of the lower policy is not used.
    assert_eq!(ready(&conn, &q).await, 3);
    assert_eq!(policy_name(&broker, &q).as_deref(), Some("high"));
    broker.broker().clear_policy("/", "high", false);
    assert_eq!(policy_name(&broker, &q).as_deref(), Some("low"));
    assert_eq!(ready(&conn, &q).await, 1);
}

#[tokio::test]
async fn apply_to_selects_exchanges_or_queues_and_alternate_exchange_by_policy() {
    let broker = TestBroker::start().await;
    if broker.external() {
        return;
    }
    let conn = broker.connect().await;
    let ch = confirm_channel(&conn).await;
    let name = unique("both");
    let (ae, ae_arg, caught, caught_arg) = (
        unique("ae"),
        unique("ae-arg"),
        unique("caught"),
        unique("caught-arg"),
    );
    fanout_to(&ch, &ae, &caught).await;
    fanout_to(&ch, &ae_arg, &caught_arg).await;
    let def = format!(r#"{{"alternate-exchange":"{ae}"}}"#);
    set(&broker, policy("to-x", &exact(&name), "exchanges", 0, &def));
    declare(&ch, &name, FieldTable::default()).await;
    ch.exchange_declare(
        name.as_str().into(),
        ExchangeKind::Direct,
        ExchangeDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("exchange.declare");
    let vhost = broker.broker().vhost("/").expect("vhost");
    let x = vhost.exchange(&name).expect("exchange");
    assert_eq!(x.policy().map(|(n, _)| n).as_deref(), Some("to-x"));
    assert_eq!(policy_name(&broker, &name), None);
    // Unroutable: goes to the policy's alternate exchange.
    publish(&ch, &name, "nowhere", b"m", BasicProperties::default()).await;
    wait_ready(&conn, &caught, 1).await;
    // apply-to queues: the exchange loses it, the queue gets it.
    set(&broker, policy("to-x", &exact(&name), "queues", 0, &def));
    assert_eq!(x.policy(), None);
    assert_eq!(policy_name(&broker, &name).as_deref(), Some("to-x"));
    publish(&ch, &name, "nowhere", b"m", BasicProperties::default()).await;
    assert_eq!(ready(&conn, &caught).await, 1);
    // The argument wins over the policy.
    let with_arg = unique("x-arg");
    let def = format!(r#"{{"alternate-exchange":"{ae}"}}"#);
    set(&broker, policy("all-x", &exact(&with_arg), "all", 0, &def));
    ch.exchange_declare(
        with_arg.as_str().into(),
        ExchangeKind::Direct,
        ExchangeDeclareOptions::default(),
        args(&[("alternate-exchange", s(&ae_arg))]),
    )
    .await
    .expect("exchange.declare");
    publish(&ch, &with_arg, "nowhere", b"m", BasicProperties::default()).await;
    wait_ready(&conn, &caught_arg, 1).await;
    assert_eq!(ready(&conn, &caught).await, 1);
}

#[tokio::test]
async fn changing_or_deleting_a_policy_applies_at_once() {
    let broker = TestBroker::start().await;
    if broker.external() {
        return;
    }
    let conn = broker.connect().await;
    let ch = confirm_channel(&conn).await;
    let q = unique("changing");
    declare(&ch, &q, FieldTable::default()).await;
    send(&ch, &q, &["1", "2", "3", "4", "5"]).await;
    set(
        &broker,
        policy("p", &exact(&q), "all", 0, r#"{"max-length":4}"#),
    );
    assert_eq!(ready(&conn, &q).await, 4);
    set(
        &broker,
        policy("p", &exact(&q), "all", 0, r#"{"max-length":2}"#),
    );
    assert_eq!(ready(&conn, &q).await, 2);
    assert!(broker.broker().clear_policy("/", "p", false));
    assert_eq!(policy_name(&broker, &q), None);
    send(&ch, &q, &["6", "7", "8"]).await;
    assert_eq!(bodies(&ch, &q).await, ["4", "5", "6", "7", "8"]);
    // expires by policy: an unused queue goes once the policy is there.
    let unused = unique("unused");
    declare(&ch, &unused, FieldTable::default()).await;
    set(
        &broker,
        policy("e", &exact(&unused), "queues", 0, r#"{"expires":100}"#),
    );
    tokio::time::timeout(WAIT, async {
        let vhost = broker.broker().vhost("/").expect("vhost");
        while vhost.queue(&unused, 0).is_ok() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the queue expires");
}

#[tokio::test]
async fn operator_policies_cap_the_user_policy() {
    let broker = TestBroker::start().await;
    if broker.external() {
        return;
    }
    let conn = broker.connect().await;
    let ch = confirm_channel(&conn).await;
    let (a, b) = (unique("capped"), unique("op-only"));
    set(
        &broker,
        policy(
            "user",
            &exact(&a),
            "all",
            0,
            r#"{"max-length":10,"message-ttl":60000}"#,
        ),
    );
    set_operator(
        &broker,
        policy(
            "cap",
            &format!("^({a}|{b})$"),
            "queues",
            0,
            r#"{"max-length":3}"#,
        ),
    );
    for q in [&a, &b] {
        declare(&ch, q, FieldTable::default()).await;
        send(&ch, q, &["1", "2", "3", "4", "5"]).await;
        assert_eq!(ready(&conn, q).await, 3);
    }
    let qa = queue(&broker, &a);
    assert_eq!(qa.operator_policy().map(|(n, _)| n).as_deref(), Some("cap"));
    let d = qa.effective_policy_definition();
    assert_eq!(d["max-length"], 3);
    assert_eq!(d["message-ttl"], 60000);
    // A lower user value stays.
    set(
        &broker,
        policy("user", &exact(&a), "all", 0, r#"{"max-length":1}"#),
    );
    assert_eq!(ready(&conn, &a).await, 1);
    // Operator policies refuse the keys they cannot cap.
    let refused = broker.broker().set_policy(
        policy("bad", ".*", "all", 0, r#"{"dead-letter-exchange":"x"}"#),
        true,
    );
    assert!(
        matches!(refused, Err(BrokerError::Invalid(t)) if t.contains("are not recognised policy settings"))
    );
}

#[tokio::test]
async fn redeclare_compares_the_declared_arguments_only() {
    let broker = TestBroker::start().await;
    if broker.external() {
        return;
    }
    let (_c, ch) = broker.channel().await;
    let q = unique("redeclare");
    set(
        &broker,
        policy("ttl", &exact(&q), "queues", 0, r#"{"message-ttl":1000}"#),
    );
    declare(&ch, &q, FieldTable::default()).await;
    declare(&ch, &q, FieldTable::default()).await;
    let (code, text) = common::expect_amqp_error(ch.queue_declare(
        q.as_str().into(),
        QueueDeclareOptions::default(),
        args(&[("x-message-ttl", int(1000))]),
    ))
    .await;
    assert_eq!(code, 406);
    assert!(text.contains("inequivalent arg 'x-message-ttl'"), "{text}");
}

#[tokio::test]
async fn invalid_policies_are_refused_with_rabbitmq_texts() {
    let broker = TestBroker::start().await;
    if broker.external() {
        return;
    }
    let b = broker.broker();
    let err = |p| match b.set_policy(p, false) {
        Err(BrokerError::Invalid(t)) => t,
        other => panic!("expected Invalid, got {other:?}"),
    };
    assert_eq!(
        err(policy("p", "q", "all", 0, r#"{"message-ttl":"x"}"#)),
        "Validation failed\n\n<<\"x\">> is not a valid message TTL\n"
    );
    assert_eq!(
        err(policy("p", "q", "all", 0, r#"{"foo":1}"#)),
        "Validation failed\n\n[{<<\"foo\">>,1}] are not recognised policy settings\n"
    );
    assert!(
        err(policy("p", "q", "nope", 0, r#"{"max-length":1}"#))
            .contains("apply-to 'nope' unrecognised")
    );
    assert!(
        err(policy("p", "(", "all", 0, r#"{"max-length":1}"#))
            .contains("pattern should be regular expression")
    );
    assert!(b.access().read(|s| s.policies.is_empty()));
}

#[tokio::test]
async fn quorum_queues_match_quorum_policies() {
    let broker = TestBroker::start().await;
    if broker.external() {
        return;
    }
    let conn = broker.connect().await;
    let ch = confirm_channel(&conn).await;
    let (qq, cq) = (unique("qq"), unique("cq"));
    set(
        &broker,
        policy(
            "qq",
            &format!("^({qq}|{cq})$"),
            "quorum_queues",
            0,
            r#"{"max-length":1}"#,
        ),
    );
    set(
        &broker,
        policy(
            "age",
            &format!("^({qq}|{cq})$"),
            "all",
            5,
            r#"{"max-age":"1D"}"#,
        ),
    );
    ch.queue_declare(
        qq.as_str().into(),
        QueueDeclareOptions {
            durable: true,
            ..Default::default()
        },
        args(&[("x-queue-type", s("quorum"))]),
    )
    .await
    .expect("quorum queue");
    declare(&ch, &cq, FieldTable::default()).await;
    for q in [&qq, &cq] {
        send(&ch, q, &["1", "2"]).await;
    }
    assert_eq!(ready(&conn, &qq).await, 1);
    assert_eq!(ready(&conn, &cq).await, 2);
    // max-age is a stream key: the policy holding it matches neither.
    assert_eq!(policy_name(&broker, &qq).as_deref(), Some("qq"));
    assert_eq!(policy_name(&broker, &cq), None);
}

#[tokio::test]
async fn policies_survive_a_restart_and_apply_to_recovered_queues() {
    let broker = TestBroker::start().await;
    if broker.external() {
        return;
    }
    let (q, expiring, x) = (unique("durable"), unique("expiring"), unique("durable-x"));
    {
        let conn = broker.connect().await;
        let ch = confirm_channel(&conn).await;
        common::declare_durable(&ch, &q).await;
        common::declare_durable(&ch, &expiring).await;
        // In use until the restart: it only expires once the broker is back.
        let _consumer = common::consume_no_ack(&ch, &expiring, "").await;
        ch.exchange_declare(
            x.as_str().into(),
            ExchangeKind::Fanout,
            ExchangeDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("exchange");
        let limit = policy("limit", &exact(&q), "queues", 0, r#"{"max-length":2}"#);
        set(&broker, limit);
        let expires = policy("exp", &exact(&expiring), "queues", 0, r#"{"expires":1000}"#);
        set(&broker, expires);
        let def = format!(r#"{{"alternate-exchange":"{q}"}}"#);
        set(&broker, policy("alt", &exact(&x), "exchanges", 0, &def));
        for b in ["1", "2", "3"] {
            publish(&ch, "", &q, b.as_bytes(), common::persistent()).await;
        }
        assert_eq!(ready(&conn, &q).await, 2);
        conn.close(200, "bye".into()).await.expect("close");
    }
    let broker = broker.restart().await;
    assert_eq!(policy_name(&broker, &q).as_deref(), Some("limit"));
    let vhost = broker.broker().vhost("/").expect("vhost");
    assert!(
        vhost.queue(&expiring, 0).is_ok(),
        "recovered before it expires"
    );
    let x = vhost.exchange(&x).expect("exchange");
    assert_eq!(x.policy().map(|(n, _)| n).as_deref(), Some("alt"));
    let conn = broker.connect().await;
    let ch = confirm_channel(&conn).await;
    assert_eq!(ready(&conn, &q).await, 2);
    publish(&ch, "", &q, b"4", common::persistent()).await;
    assert_eq!(bodies(&ch, &q).await, ["3", "4"]);
    // The recovered queue expires by its policy.
    tokio::time::timeout(WAIT, async {
        while vhost.queue(&expiring, 0).is_ok() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the recovered queue expires");
}
