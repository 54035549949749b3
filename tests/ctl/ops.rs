//! Health checks, status, the warrenctl name, and the commands on queues, exchanges,
//! bindings, consumers and connections through the CLI.

use crate::common::TestBroker;
use crate::common::binary::isolate;
use crate::{api_url, connect, ctl, ctl_until, run, vhost};
use lapin::BasicProperties;
use lapin::options::{BasicConsumeOptions, BasicQosOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use std::time::Duration;
use tokio::process::Command;

#[tokio::test]
async fn diagnostics_and_the_warrenctl_name() {
    let b = TestBroker::start().await;
    let Some(api) = api_url(&b) else { return };
    let api = api.as_str();
    for (cmd, ends) in [
        ("check_local_alarms", "reported no local alarms\n"),
        ("check_alarms", "reported no alarms, local or clusterwide\n"),
        ("alarms", "reported no alarms, local or clusterwide\n"),
        ("check_virtual_hosts", "reported all vhosts as running\n"),
    ] {
        let o = run(api, "rabbitmq-diagnostics", &[cmd], None).await;
        assert_eq!(o.code, 0, "{cmd}: {}", o.err);
        assert!(
            o.out.starts_with("Asking node ") || o.out.starts_with("Checking if all vhosts"),
            "{}",
            o.out
        );
        assert!(o.out.ends_with(ends), "{cmd}: {}", o.out);
        let o = run(
            api,
            "rabbitmq-diagnostics",
            &[cmd, "--formatter", "json"],
            None,
        )
        .await;
        let json: serde_json::Value = serde_json::from_str(&o.out).expect("JSON");
        assert_eq!(json["result"], "ok", "{}", o.out);
    }
    // `warren-shim warrenctl ...` is rabbitmqctl.
    let o = run(api, "warrenctl", &["-q", "list_users"], None).await;
    assert_eq!(o.code, 0, "{}", o.err);
    assert!(o.out.starts_with("user\ttags\n"), "{}", o.out);

    // Wrong credentials: 77 (no permission); no API there: 69.
    let o = run(
        api,
        "rabbitmqctl",
        &["list_users", "--username", "guest", "--password", "wrong"],
        None,
    )
    .await;
    assert_eq!(o.code, 77, "{}", o.err);
    let o = ctl(api, &["list_queues", "name", "no_such_column"]).await;
    assert_eq!(
        (o.code, o.err.as_str()),
        (
            64,
            "Error (argument validation): Info key(s) no_such_column are not supported\n"
        )
    );
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let nowhere = format!("http://{}", closed.local_addr().expect("addr"));
    drop(closed);
    let o = ctl(&nowhere, &["list_users"]).await;
    assert_eq!(o.code, 69, "{}", o.err);
    assert!(
        o.err.contains("unable to reach the management API"),
        "{}",
        o.err
    );
}

#[tokio::test]
async fn status_reports_the_apis_figures() {
    let b = TestBroker::start().await;
    let Some(api) = api_url(&b) else { return };
    let Some(addr) = b.addr else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_warren-shim"));
    isolate(&mut cmd, dir.path());
    cmd.env("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1")
        .env("RABBITMQ_NODE_PORT", addr.port().to_string())
        .args(["rabbitmq-diagnostics", "status", "--api", &api]);
    let out = cmd.output().await.expect("runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    for part in [
        "Status of node ",
        "Broker product: RabbitMQ",
        "\nAlarms\n\n(none)\n",
        "\nTotals\n\n",
        "Virtual host count: 1\n",
    ] {
        assert!(text.contains(part), "{part:?} in {text}");
    }
}

/// Queues, exchanges, bindings, consumers and connections: these need the API's
/// /api/queues, /api/exchanges, /api/bindings, /api/consumers and /api/connections.
#[tokio::test]
async fn queue_listings_and_actions_as_rabbitmqctl() {
    let b = TestBroker::start().await;
    let Some(api) = api_url(&b) else { return };
    let api = api.as_str();
    let (v, uri) = vhost(&b, api).await;
    let conn = connect(&uri).await.expect("connects");
    let ch = conn.create_channel().await.expect("channel");
    let mut args = FieldTable::default();
    args.insert("x-message-ttl".into(), AMQPValue::LongInt(600_000));
    ch.queue_declare(
        "q1".into(),
        QueueDeclareOptions {
            durable: true,
            ..Default::default()
        },
        args,
    )
    .await
    .expect("declare q1");
    ch.queue_declare(
        "q2".into(),
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("declare q2");
    let mut bargs = FieldTable::default();
    bargs.insert("x-a".into(), AMQPValue::LongString("b".into()));
    ch.queue_bind(
        "q1".into(),
        "amq.direct".into(),
        "k".into(),
        QueueBindOptions::default(),
        bargs,
    )
    .await
    .expect("bind");
    for _ in 0..2 {
        ch.basic_publish(
            "".into(),
            "q1".into(),
            Default::default(),
            b"m",
            BasicProperties::default(),
        )
        .await
        .expect("publish")
        .await
        .expect("published");
    }
    let consumer_ch = conn.create_channel().await.expect("channel");
    consumer_ch
        .basic_qos(7, BasicQosOptions::default())
        .await
        .expect("qos");
    let _consumer = consumer_ch
        .basic_consume(
            "q2".into(),
            "ctl-tag".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("consume");

    let want = format!(
        "Timeout: 60.0 seconds ...\nListing queues for vhost {v} ...\nname\tmessages\tdurable\targuments\nq1\t2\ttrue\t[{{\"x-message-ttl\",600000}}]\nq2\t0\tfalse\t[]\n"
    );
    let o = ctl_until(
        api,
        &[
            "list_queues",
            "-p",
            &v,
            "name",
            "messages",
            "durable",
            "arguments",
        ],
        &want,
    )
    .await;
    assert_eq!((o.code, o.out.as_str()), (0, want.as_str()), "{}", o.err);
    let want = "[\n{\"name\":\"q1\",\"messages\":2}\n,{\"name\":\"q2\",\"messages\":0}\n]\n";
    let o = ctl_until(api, &["list_queues", "-p", &v, "--formatter", "json"], want).await;
    assert_eq!(o.out, want);
    let o = ctl(api, &["list_queues", "-p", "no-such-vhost"]).await;
    assert_eq!(
        (o.code, o.out.as_str()),
        (
            0,
            "Timeout: 60.0 seconds ...\nListing queues for vhost no-such-vhost ...\n"
        )
    );

    let o = ctl(
        api,
        &["list_exchanges", "-p", &v, "-q", "name", "type", "internal"],
    )
    .await;
    assert_eq!(o.code, 0, "{}", o.err);
    for row in [
        "name\ttype\tinternal\n",
        "\n\tdirect\tfalse\n",
        "\namq.direct\tdirect\tfalse\n",
        "\namq.topic\ttopic\tfalse\n",
    ] {
        assert!(
            o.out.contains(row) || o.out.starts_with(row),
            "{row:?} in {}",
            o.out
        );
    }

    let o = ctl(api, &["list_bindings", "-p", &v]).await;
    assert_eq!(o.code, 0, "{}", o.err);
    assert_eq!(
        o.out,
        format!(
            "Listing bindings for vhost {v}...\nsource_name\tsource_kind\tdestination_name\tdestination_kind\trouting_key\targuments\n\
             \texchange\tq1\tqueue\tq1\t[]\n\texchange\tq2\tqueue\tq2\t[]\namq.direct\texchange\tq1\tqueue\tk\t[{{\"x-a\",\"b\"}}]\n"
        )
    );

    let want = format!(
        "Listing consumers in vhost {v} ...\nqueue_name\tconsumer_tag\tack_required\tprefetch_count\tactive\targuments\n\
         q2\tctl-tag\ttrue\t7\ttrue\t[]\n"
    );
    let o = ctl_until(
        api,
        &[
            "list_consumers",
            "-p",
            &v,
            "queue_name",
            "consumer_tag",
            "ack_required",
            "prefetch_count",
            "active",
            "arguments",
        ],
        &want,
    )
    .await;
    assert_eq!(o.out, want, "{}", o.err);

    let o = ctl(api, &["-q", "list_connections", "name", "user", "vhost"]).await;
    assert_eq!(o.code, 0, "{}", o.err);
    let row = o
        .out
        .lines()
        .find(|l| l.ends_with(&format!("\tguest\t{v}")))
        .unwrap_or_else(|| panic!("our connection in {}", o.out))
        .to_string();
    let name = row.split('\t').next().expect("a name");

    let o = ctl(api, &["purge_queue", "-p", &v, "q1"]).await;
    assert_eq!(
        (o.code, o.out.clone()),
        (0, format!("Purging queue 'q1' in vhost '{v}' ...\n"))
    );
    let q = ch
        .queue_declare(
            "q1".into(),
            QueueDeclareOptions {
                passive: true,
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("passive declare");
    assert_eq!(q.message_count(), 0);
    // (The reference broker's figures lag: wait for them to show the purge.)
    ctl_until(
        api,
        &["-q", "list_queues", "-p", &v, "name", "messages_ready"],
        "name\tmessages_ready\nq1\t0\nq2\t0\n",
    )
    .await;
    let o = ctl(api, &["delete_queue", "-p", &v, "--if-unused", "q2"]).await;
    assert_eq!((o.code, o.err.as_str()), (64, "Error:\nQueue is in use\n"));
    let o = ctl(api, &["delete_queue", "-p", &v, "q1"]).await;
    assert_eq!(
        (o.code, o.out.clone()),
        (
            0,
            format!(
                "Deleting queue 'q1' on vhost '{v}' ...\nQueue was successfully deleted with 0 ready messages\n"
            )
        )
    );
    let o = ctl(api, &["delete_queue", "-p", &v, "q1"]).await;
    assert_eq!((o.code, o.err.as_str()), (64, "Error:\nQueue not found\n"));
    let o = ctl(api, &["purge_queue", "-p", &v, "q1"]).await;
    assert_eq!((o.code, o.err.as_str()), (69, "Error:\nnot_found\n"));

    let o = ctl(api, &["close_connection", name, "go away"]).await;
    assert_eq!(
        (o.code, o.out.clone()),
        (
            0,
            format!("Closing connection {name}, reason: go away...\n")
        )
    );
    for _ in 0..100 {
        if !conn.status().connected() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!conn.status().connected(), "the connection was closed");
    assert_eq!(ctl(api, &["delete_vhost", &v]).await.code, 0);
}
