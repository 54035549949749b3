//! Users, vhost access and permissions: each row of RabbitMQ's permission table with
//! an allowed and a refused case, passive declares, topic permissions, what deleting a
//! user or a vhost does to connections and entities, and vhost limits. Texts: RabbitMQ
//! 4.x's (3.10 leaves out the permission's name). In-process only (operator setup).

mod common;

use common::access::*;
use common::{TestBroker, expect_amqp_error, unique, watch_close};
use lapin::options::*;
use lapin::{Channel, ExchangeKind};

#[tokio::test]
async fn login_needs_the_right_password_and_a_hash() {
    let broker = TestBroker::start().await;
    add_user(&broker, "a", "secret");
    grant(&broker, "a", "/", [".*", ".*", ".*"]);
    connect_as(&broker, "a", "secret", "%2f").await;
    let login = "ACCESS_REFUSED - Login was refused using authentication mechanism PLAIN. For details see the broker logfile.";
    assert_eq!(
        refused_connection(&broker, "a", "wrong", "%2f").await,
        (403, login.into())
    );
    // Changing the password takes effect at the next login.
    add_user(&broker, "a", "other");
    assert_login_refused(&broker, "a", "secret").await;
    connect_as(&broker, "a", "other", "%2f").await;
    // A user without a password hash cannot log in by password, even a blank one.
    let mut hashless = broker
        .broker()
        .access()
        .read(|s| s.user("a").cloned())
        .expect("a");
    hashless.password_hash.clear();
    broker.broker().put_user(hashless, None).expect("put");
    assert_login_refused(&broker, "a", "").await;
    assert_login_refused(&broker, "a", "other").await;
}

#[tokio::test]
async fn vhost_access_is_refused_with_530() {
    let broker = TestBroker::start().await;
    add_user(&broker, U, "p");
    broker.broker().add_vhost("v1");
    let (code, text) = refused_connection(&broker, U, "p", "v1").await;
    assert_eq!(code, 530);
    assert_eq!(
        text,
        "NOT_ALLOWED - access to vhost 'v1' refused for user 'u'"
    );
    // RabbitMQ reports a missing vhost in its own words.
    let (code, text) = refused_connection(&broker, U, "p", "nosuch").await;
    assert_eq!(
        (code, text.as_str()),
        (530, "NOT_ALLOWED - vhost nosuch not found")
    );
    grant(&broker, U, "v1", ["", "", ""]);
    connect_as(&broker, U, "p", "v1").await;
}

#[tokio::test]
async fn exchange_declare_and_delete_need_configure() {
    let f = Fixture::new(["^c", "", ""]).await;
    let (cx, wx) = (unique("cx"), unique("wx"));
    f.exchanges(&[&wx]).await;
    let ch = f.ch().await;
    declare_exchange(&ch, &cx, ExchangeKind::Direct, none())
        .await
        .expect("allowed");
    ch.exchange_delete(cx.as_str().into(), Default::default())
        .await
        .expect("allowed");
    let text = f
        .refused(declare_exchange(
            &f.ch().await,
            &wx,
            ExchangeKind::Direct,
            none(),
        ))
        .await;
    assert_eq!(text, denial("configure", "exchange", &wx, U));
    let text = f
        .refused(
            f.ch()
                .await
                .exchange_delete(wx.as_str().into(), Default::default()),
        )
        .await;
    assert_eq!(text, denial("configure", "exchange", &wx, U));
    // 403 before 404: the check comes before the lookup.
    let text = f
        .refused(
            f.ch()
                .await
                .exchange_delete("zz".into(), Default::default()),
        )
        .await;
    assert_eq!(text, denial("configure", "exchange", "zz", U));
}

#[tokio::test]
async fn alternate_exchange_needs_write_on_it_and_read_on_the_exchange() {
    let f = Fixture::new([".*", "^ae$", "^ax"]).await;
    let ae = table("alternate-exchange", "ae");
    declare_exchange(&f.ch().await, "ax1", ExchangeKind::Fanout, ae.clone())
        .await
        .expect("allowed");
    let text = f
        .refused(declare_exchange(
            &f.ch().await,
            "bx",
            ExchangeKind::Fanout,
            ae.clone(),
        ))
        .await;
    assert_eq!(text, denial("read", "exchange", "bx", U));
    let other = table("alternate-exchange", "other");
    let text = f
        .refused(declare_exchange(
            &f.ch().await,
            "ax2",
            ExchangeKind::Fanout,
            other,
        ))
        .await;
    assert_eq!(text, denial("write", "exchange", "other", U));
}

#[tokio::test]
async fn queue_declare_and_delete_need_configure() {
    let f = Fixture::new(["^c", "", ""]).await;
    let (cq, wq) = (unique("cq"), unique("wq"));
    f.queues(&[&wq]).await;
    let ch = f.ch().await;
    declare_queue(&ch, &cq, none()).await.expect("allowed");
    ch.queue_delete(cq.as_str().into(), Default::default())
        .await
        .expect("allowed");
    let text = f.refused(declare_queue(&f.ch().await, &wq, none())).await;
    assert_eq!(text, denial("configure", "queue", &wq, U));
    let text = f
        .refused(
            f.ch()
                .await
                .queue_delete(wq.as_str().into(), Default::default()),
        )
        .await;
    assert_eq!(text, denial("configure", "queue", &wq, U));
    // A server-named queue is checked under the name it would get.
    let text = f.refused(declare_queue(&f.ch().await, "", none())).await;
    let prefix = "ACCESS_REFUSED - configure access to queue 'amq.gen-";
    assert!(text.starts_with(prefix), "{text}");
    // A reserved name: the name is refused first, as RabbitMQ does.
    let text = f
        .refused(declare_queue(&f.ch().await, "amq.q", none()))
        .await;
    assert_eq!(
        text,
        "ACCESS_REFUSED - queue name 'amq.q' contains reserved prefix 'amq.*'"
    );
    f.grant(["^amq\\.gen-", "", ""]);
    declare_queue(&f.ch().await, "", none())
        .await
        .expect("allowed");
}

#[tokio::test]
async fn dead_letter_exchange_needs_write_on_it_and_read_on_the_queue() {
    let f = Fixture::new([".*", "^dlx$", "^aq"]).await;
    let dlx = table("x-dead-letter-exchange", "dlx");
    declare_queue(&f.ch().await, "aq1", dlx.clone())
        .await
        .expect("allowed");
    let text = f.refused(declare_queue(&f.ch().await, "bq", dlx)).await;
    assert_eq!(text, denial("read", "queue", "bq", U));
    let other = table("x-dead-letter-exchange", "other");
    let text = f.refused(declare_queue(&f.ch().await, "aq2", other)).await;
    assert_eq!(text, denial("write", "exchange", "other", U));
}

#[tokio::test]
async fn queue_bind_and_unbind_need_write_on_the_queue_and_read_on_the_exchange() {
    let f = Fixture::new(["", "^w", "^r"]).await;
    f.queues(&["wq", "rq"]).await;
    f.exchanges(&["wx", "rx"]).await;
    let bind = |ch: Channel, q: &'static str, x: &'static str| async move {
        ch.queue_bind(q.into(), x.into(), "k".into(), Default::default(), none())
            .await
    };
    let unbind = |ch: Channel, q: &'static str, x: &'static str| async move {
        ch.queue_unbind(q.into(), x.into(), "k".into(), none())
            .await
    };
    bind(f.ch().await, "wq", "rx").await.expect("allowed");
    unbind(f.ch().await, "wq", "rx").await.expect("allowed");
    let text = f.refused(bind(f.ch().await, "rq", "rx")).await;
    assert_eq!(text, denial("write", "queue", "rq", U));
    let text = f.refused(bind(f.ch().await, "wq", "wx")).await;
    assert_eq!(text, denial("read", "exchange", "wx", U));
    let text = f.refused(unbind(f.ch().await, "rq", "rx")).await;
    assert_eq!(text, denial("write", "queue", "rq", U));
    // Permission granted, the exchange missing: 404.
    let (code, _) = expect_amqp_error(bind(f.ch().await, "wq", "rmissing")).await;
    assert_eq!(code, 404);
}

#[tokio::test]
async fn exchange_bind_and_unbind_need_write_on_the_destination_and_read_on_the_source() {
    let f = Fixture::new(["", "^w", "^r"]).await;
    f.exchanges(&["wx", "rx"]).await;
    let bind = |ch: Channel, d: &'static str, s: &'static str| async move {
        ch.exchange_bind(d.into(), s.into(), "k".into(), Default::default(), none())
            .await
    };
    let unbind = |ch: Channel, d: &'static str, s: &'static str| async move {
        ch.exchange_unbind(d.into(), s.into(), "k".into(), Default::default(), none())
            .await
    };
    bind(f.ch().await, "wx", "rx").await.expect("allowed");
    unbind(f.ch().await, "wx", "rx").await.expect("allowed");
    let text = f.refused(bind(f.ch().await, "rx", "rx")).await;
    assert_eq!(text, denial("write", "exchange", "rx", U));
    let text = f.refused(bind(f.ch().await, "wx", "wx")).await;
    assert_eq!(text, denial("read", "exchange", "wx", U));
    let text = f.refused(unbind(f.ch().await, "wx", "wx")).await;
    assert_eq!(text, denial("read", "exchange", "wx", U));
}

#[tokio::test]
async fn publish_needs_write_on_the_exchange() {
    let f = Fixture::new(["", "^w", ""]).await;
    f.exchanges(&["wx", "rx"]).await;
    publish_confirmed(&f.ch().await, "wx", "k")
        .await
        .expect("allowed");
    let text = f.refused(publish_confirmed(&f.ch().await, "rx", "k")).await;
    assert_eq!(text, denial("write", "exchange", "rx", U));
    let text = f.refused(publish_confirmed(&f.ch().await, "", "k")).await;
    assert_eq!(text, denial("write", "exchange", "amq.default", U));
    // 403 before 404 for a missing exchange; 404 once writing is allowed.
    let text = f.refused(publish_confirmed(&f.ch().await, "zz", "k")).await;
    assert_eq!(text, denial("write", "exchange", "zz", U));
    let (code, _) = expect_amqp_error(publish_confirmed(&f.ch().await, "wmissing", "k")).await;
    assert_eq!(code, 404);
    // Revoking takes effect on a channel that published before.
    let ch = f.ch().await;
    publish_confirmed(&ch, "wx", "k").await.expect("allowed");
    f.grant(["", "^nothing$", ""]);
    let text = f
        .refused(async {
            ch.basic_publish(
                "wx".into(),
                "k".into(),
                Default::default(),
                b"m",
                Default::default(),
            )
            .await?
            .await
        })
        .await;
    assert_eq!(text, denial("write", "exchange", "wx", U));
}

#[tokio::test]
async fn get_consume_and_purge_need_read_on_the_queue() {
    let f = Fixture::new(["", "", "^r"]).await;
    f.queues(&["wq", "rq"]).await;
    let ch = f.ch().await;
    ch.basic_get("rq".into(), Default::default())
        .await
        .expect("allowed");
    ch.queue_purge("rq".into(), Default::default())
        .await
        .expect("allowed");
    ch.basic_consume("rq".into(), "".into(), Default::default(), none())
        .await
        .expect("allowed");
    let text = f
        .refused(f.ch().await.basic_get("wq".into(), Default::default()))
        .await;
    assert_eq!(text, denial("read", "queue", "wq", U));
    let text = f
        .refused(f.ch().await.queue_purge("wq".into(), Default::default()))
        .await;
    assert_eq!(text, denial("read", "queue", "wq", U));
    let consume = f.ch().await;
    let text = f
        .refused(consume.basic_consume("wq".into(), "".into(), Default::default(), none()))
        .await;
    assert_eq!(text, denial("read", "queue", "wq", U));
    let text = f
        .refused(f.ch().await.basic_get("zz".into(), Default::default()))
        .await;
    assert_eq!(text, denial("read", "queue", "zz", U));
}

#[tokio::test]
async fn passive_declares_need_any_one_permission() {
    let f = Fixture::new(["^c", "^w", "^r"]).await;
    f.queues(&["cq", "wq", "rq", "xq"]).await;
    f.exchanges(&["cx", "wx", "rx", "xx"]).await;
    let passive = QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    let xpassive = ExchangeDeclareOptions {
        passive: true,
        ..Default::default()
    };
    for name in ["cq", "wq", "rq"] {
        f.ch()
            .await
            .queue_declare(name.into(), passive, none())
            .await
            .expect("allowed");
    }
    for name in ["cx", "wx", "rx"] {
        let ch = f.ch().await;
        ch.exchange_declare(name.into(), ExchangeKind::Direct, xpassive, none())
            .await
            .expect("allowed");
    }
    let text = f
        .refused(f.ch().await.queue_declare("xq".into(), passive, none()))
        .await;
    assert_eq!(text, denial("configure", "queue", "xq", U));
    let ch = f.ch().await;
    let text = f
        .refused(ch.exchange_declare("xx".into(), ExchangeKind::Direct, xpassive, none()))
        .await;
    assert_eq!(text, denial("configure", "exchange", "xx", U));
    let (code, _) = expect_amqp_error(f.ch().await.queue_declare(
        "rmissing".into(),
        passive,
        none(),
    ))
    .await;
    assert_eq!(code, 404);
}

#[tokio::test]
async fn topic_permissions_check_routing_and_binding_keys() {
    let f = Fixture::new([".*", ".*", ".*"]).await;
    declare_exchange(&f.guest, "top", ExchangeKind::Topic, none())
        .await
        .expect("guest");
    declare_queue(&f.guest, "tq", none()).await.expect("guest");
    grant_topic(&f.broker, U, "top", "^a\\.|^{username}\\.x$", "^b\\.");
    publish_confirmed(&f.ch().await, "top", "a.x")
        .await
        .expect("allowed");
    publish_confirmed(&f.ch().await, "top", "u.x")
        .await
        .expect("{username} expands");
    let text = f
        .refused(publish_confirmed(&f.ch().await, "top", "b.x"))
        .await;
    assert_eq!(text, topic_denial("write", "b.x", "top", U));
    // No topic permission for amq.topic: any key.
    publish_confirmed(&f.ch().await, "amq.topic", "b.x")
        .await
        .expect("allowed");
    let bind = |ch: Channel, key: &'static str| async move {
        ch.queue_bind(
            "tq".into(),
            "top".into(),
            key.into(),
            Default::default(),
            none(),
        )
        .await
    };
    bind(f.ch().await, "b.y").await.expect("allowed");
    let text = f.refused(bind(f.ch().await, "a.y")).await;
    assert_eq!(text, topic_denial("read", "a.y", "top", U));
}

#[tokio::test]
async fn deleting_a_user_closes_its_connections_and_a_new_password_does_not() {
    let f = Fixture::new([".*", ".*", ".*"]).await;
    let ch = f.ch().await;
    let watch = watch_close(&ch).await;
    add_user(&f.broker, U, "new password");
    declare_queue(&ch, "still-open", none())
        .await
        .expect("the connection stays");
    assert!(f.broker.broker().delete_user(U));
    assert_eq!(
        watch.error().await,
        (320, "CONNECTION_FORCED - user 'u' is deleted".into())
    );
}

#[tokio::test]
async fn deleting_a_vhost_closes_its_connections_and_deletes_its_entities() {
    let broker = TestBroker::start().await;
    broker.broker().add_vhost("gone");
    grant(&broker, "guest", "gone", [".*", ".*", ".*"]);
    let conn = connect_as(&broker, "guest", "guest", "gone").await;
    let ch = conn.create_channel().await.expect("channel");
    let durable = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    ch.queue_declare("kept".into(), durable, none())
        .await
        .expect("declare");
    let xopts = ExchangeDeclareOptions {
        durable: true,
        ..Default::default()
    };
    ch.exchange_declare("dx".into(), ExchangeKind::Fanout, xopts, none())
        .await
        .expect("declare");
    ch.queue_bind(
        "kept".into(),
        "dx".into(),
        "".into(),
        Default::default(),
        none(),
    )
    .await
    .expect("bind");
    let props = lapin::BasicProperties::default().with_delivery_mode(2);
    ch.confirm_select(Default::default())
        .await
        .expect("confirms");
    ch.basic_publish("".into(), "kept".into(), Default::default(), b"m", props)
        .await
        .expect("publish")
        .await
        .expect("confirmed");
    let watch = watch_close(&ch).await;
    assert!(broker.broker().remove_vhost("gone"));
    assert_eq!(
        watch.error().await,
        (320, "CONNECTION_FORCED - vhost 'gone' is deleted".into())
    );
    let broker = broker.restart().await;
    assert!(
        broker.broker().vhost("gone").is_none(),
        "the vhost stays deleted"
    );
    broker.broker().add_vhost("gone");
    grant(&broker, "guest", "gone", [".*", ".*", ".*"]);
    let conn = connect_as(&broker, "guest", "guest", "gone").await;
    let passive = QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    let ch = conn.create_channel().await.expect("channel");
    let (code, _) = expect_amqp_error(ch.queue_declare("kept".into(), passive, none())).await;
    assert_eq!(code, 404, "the queue is gone");
    let ch = conn.create_channel().await.expect("channel");
    let xpassive = ExchangeDeclareOptions {
        passive: true,
        ..Default::default()
    };
    let (code, _) =
        expect_amqp_error(ch.exchange_declare("dx".into(), ExchangeKind::Fanout, xpassive, none()))
            .await;
    assert_eq!(code, 404, "the exchange is gone");
}

#[tokio::test]
async fn vhost_limits_refuse_connections_and_queues() {
    let broker = TestBroker::start().await;
    broker.broker().add_vhost("lim");
    grant(&broker, "guest", "lim", [".*", ".*", ".*"]);
    set_vhost_limits(
        &broker,
        "lim",
        serde_json::json!({"max-connections": 1, "max-queues": 1}),
    );
    let conn = connect_as(&broker, "guest", "guest", "lim").await;
    let (code, text) = refused_connection(&broker, "guest", "guest", "lim").await;
    assert_eq!(code, 530);
    assert_eq!(
        text,
        "NOT_ALLOWED - access to vhost 'lim' refused for user 'guest': connection limit (1) is reached"
    );
    let ch = conn.create_channel().await.expect("channel");
    declare_queue(&ch, "q1", none())
        .await
        .expect("under the limit");
    declare_queue(&ch, "q1", none())
        .await
        .expect("a redeclare is no new queue");
    let (code, text) = expect_amqp_error(declare_queue(&ch, "q2", none())).await;
    assert_eq!(code, 406);
    assert_eq!(
        text,
        "PRECONDITION_FAILED - cannot declare queue 'q2': queue limit in vhost 'lim' (1) is reached"
    );
    set_vhost_limits(&broker, "lim", serde_json::json!({"max-connections": -1}));
    connect_as(&broker, "guest", "guest", "lim").await;
}
