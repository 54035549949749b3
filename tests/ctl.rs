//! The CLI over the management API (`warren-shim rabbitmqctl ...`, `warrenctl`): each
//! command's output, exit code and effect, as rabbitmqctl shows them. The shim runs as
//! a process pointed at the broker's API with `--api`; effects are checked with lapin.
//! With `WARREN_TEST_EXTERNAL_URI` and `WARREN_TEST_EXTERNAL_API` (for example
//! `http://127.0.0.1:15672`) the same tests run against another broker, such as a
//! reference RabbitMQ (with `--test-threads=1`: check_virtual_hosts sees the vhosts
//! other tests are creating); its statistics lag, so counts are polled.

mod common;

use common::binary::isolate;
use common::{TestBroker, unique};
use lapin::options::{BasicConsumeOptions, BasicQosOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Connection, ConnectionProperties};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

/// The API's URL, or None when the broker is external and no API is given (skip).
fn api_url(b: &TestBroker) -> Option<String> {
    match b.management {
        Some(addr) => Some(format!("http://{addr}")),
        None => std::env::var("WARREN_TEST_EXTERNAL_API").ok(),
    }
}

struct Out {
    code: i32,
    out: String,
    err: String,
}

/// Runs `warren-shim TOOL --api URL ARGS`, with `stdin` as its standard input.
async fn run(api: &str, tool: &str, args: &[&str], stdin: Option<&str>) -> Out {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_warren-shim"));
    isolate(&mut cmd, dir.path());
    cmd.arg(tool)
        .args(["--api", api])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("runs");
    let mut input = child.stdin.take().expect("piped stdin");
    input
        .write_all(stdin.unwrap_or("").as_bytes())
        .await
        .expect("write stdin");
    drop(input);
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("the shim answers")
        .expect("runs");
    Out {
        code: out.status.code().expect("exit code"),
        out: String::from_utf8_lossy(&out.stdout).into_owned(),
        err: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

async fn ctl(api: &str, args: &[&str]) -> Out {
    run(api, "rabbitmqctl", args, None).await
}

/// Runs a listing until its output is `want` (the reference broker's statistics lag).
async fn ctl_until(api: &str, args: &[&str], want: &str) -> Out {
    for _ in 0..60 {
        let o = ctl(api, args).await;
        if o.out == want || o.code != 0 {
            return o;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    ctl(api, args).await
}

/// A fresh vhost where guest may do everything; returns it and an AMQP URI for it.
async fn vhost(b: &TestBroker, api: &str) -> (String, String) {
    let v = unique("ctlv");
    assert_eq!(ctl(api, &["add_vhost", &v]).await.code, 0);
    let o = ctl(
        api,
        &["set_permissions", "-p", &v, "guest", ".*", ".*", ".*"],
    )
    .await;
    assert_eq!(o.code, 0, "{}", o.err);
    let uri = b.uri_with("guest", "guest", &v);
    (v, uri)
}

async fn connect(uri: &str) -> Result<Connection, lapin::Error> {
    Connection::connect(uri, ConnectionProperties::default()).await
}

#[tokio::test]
async fn users_vhosts_and_permissions_as_rabbitmqctl() {
    let b = TestBroker::start().await;
    let Some(api) = api_url(&b) else { return };
    let api = api.as_str();
    let v = unique("ctlv");
    let u = unique("ctlu");

    let o = ctl(api, &["add_vhost", &v]).await;
    assert_eq!(
        (o.code, o.out.clone()),
        (0, format!("Adding vhost \"{v}\" ...\n"))
    );
    // rabbitmqctl grants nothing in a new vhost, not even to the API's user.
    let o = ctl(api, &["list_permissions", "-p", &v]).await;
    assert_eq!(
        o.out,
        format!("Listing permissions for vhost \"{v}\" ...\n\n")
    );

    let o = ctl(api, &["add_user", &u, "pw1"]).await;
    assert_eq!(o.code, 0, "{}", o.err);
    assert!(
        o.out
            .starts_with(&format!("Adding user \"{u}\" ...\nDone.")),
        "{}",
        o.out
    );
    let o = ctl(api, &["add_user", &u, "pw1"]).await;
    assert_eq!(
        (o.code, o.err.as_str()),
        (70, &*format!("Error:\nUser \"{u}\" already exists\n"))
    );
    let o = ctl(api, &["authenticate_user", &u, "pw1"]).await;
    assert_eq!(
        (o.code, o.out.clone()),
        (0, format!("Authenticating user \"{u}\" ...\nSuccess\n"))
    );
    let o = ctl(api, &["authenticate_user", &u, "bad"]).await;
    assert_eq!(o.code, 65);
    assert!(o.err.contains("invalid credentials"), "{}", o.err);

    let o = ctl(api, &["set_user_tags", &u, "monitoring", "policymaker"]).await;
    assert_eq!(
        (o.code, o.out.clone()),
        (
            0,
            format!("Setting tags for user \"{u}\" to [monitoring, policymaker] ...\n")
        )
    );
    let o = ctl(api, &["-q", "list_users"]).await;
    assert!(o.out.starts_with("user\ttags\n"), "{}", o.out);
    assert!(
        o.out
            .contains(&format!("\n{u}\t[monitoring, policymaker]\n")),
        "{}",
        o.out
    );
    let o = ctl(api, &["list_users", "--formatter", "json"]).await;
    let users: serde_json::Value = serde_json::from_str(&o.out).expect("a JSON array");
    assert!(
        users
            .as_array()
            .expect("array")
            .iter()
            .any(|x| x["user"] == u.as_str()
                && x["tags"] == serde_json::json!(["monitoring", "policymaker"])),
        "{}",
        o.out
    );
    // Tags keep the password.
    assert_eq!(ctl(api, &["authenticate_user", &u, "pw1"]).await.code, 0);

    let o = ctl(api, &["set_permissions", "-p", &v, &u, ".*", "", "^x"]).await;
    assert_eq!(
        (o.code, o.out.clone()),
        (
            0,
            format!("Setting permissions for user \"{u}\" in vhost \"{v}\" ...\n")
        )
    );
    let o = ctl(api, &["list_permissions", "-p", &v]).await;
    assert_eq!(
        o.out,
        format!(
            "Listing permissions for vhost \"{v}\" ...\nuser\tconfigure\twrite\tread\n{u}\t.*\t\t^x\n"
        )
    );
    let o = ctl(api, &["list_user_permissions", &u, "-q"]).await;
    assert_eq!(
        o.out,
        format!("vhost\tconfigure\twrite\tread\n{v}\t.*\t\t^x\n")
    );
    let o = ctl(api, &["list_permissions", "-p", &v, "--formatter", "json"]).await;
    assert_eq!(
        o.out,
        format!("[\n{{\"user\":\"{u}\",\"configure\":\".*\",\"write\":\"\",\"read\":\"^x\"}}\n]\n")
    );
    // The permissions let the user in.
    let conn = connect(&b.uri_with(&u, "pw1", &v))
        .await
        .expect("the user may connect");
    let _ = conn.close(200, "bye".into()).await;

    let o = ctl(api, &["change_password", &u, "pw2"]).await;
    assert_eq!(
        (o.code, o.out.clone()),
        (0, format!("Changing password for user \"{u}\" ...\n"))
    );
    assert_eq!(ctl(api, &["authenticate_user", &u, "pw1"]).await.code, 65);
    assert_eq!(ctl(api, &["authenticate_user", &u, "pw2"]).await.code, 0);

    let o = ctl(api, &["clear_permissions", "-p", &v, &u]).await;
    assert_eq!(o.code, 0, "{}", o.err);
    assert!(
        connect(&b.uri_with(&u, "pw2", &v)).await.is_err(),
        "no permissions left"
    );
    // Clearing again succeeds, as in rabbitmqctl.
    assert_eq!(ctl(api, &["clear_permissions", "-p", &v, &u]).await.code, 0);

    // Errors, with rabbitmqctl's texts and codes.
    let o = ctl(
        api,
        &["set_permissions", "-p", &v, "nobody-ctl", "a", "b", "c"],
    )
    .await;
    assert_eq!(
        (o.code, o.err.as_str()),
        (67, "Error:\nUser nobody-ctl does not exist\n")
    );
    let o = ctl(
        api,
        &["set_permissions", "-p", "no-such-vhost", &u, "a", "b", "c"],
    )
    .await;
    assert_eq!(
        (o.code, o.err.as_str()),
        (69, "Error:\nVirtual host no-such-vhost does not exist\n")
    );
    let o = ctl(api, &["list_permissions", "-p", "no-such-vhost"]).await;
    assert_eq!(
        (o.code, o.err.as_str()),
        (65, "Virtual host 'no-such-vhost' does not exist\n")
    );
    let o = ctl(api, &["list_user_permissions", "nobody-ctl"]).await;
    assert_eq!(o.code, 69);
    for cmd in [
        &["change_password", "nobody-ctl", "x"][..],
        &["set_user_tags", "nobody-ctl", "x"],
    ] {
        let o = ctl(api, cmd).await;
        assert_eq!(
            (o.code, o.err.as_str()),
            (67, "Error:\nUser \"nobody-ctl\" does not exist\n")
        );
    }
    let o = ctl(api, &["add_user"]).await;
    assert_eq!(o.code, 64);

    let o = ctl(api, &["delete_user", &u]).await;
    assert_eq!(
        (o.code, o.out.clone()),
        (0, format!("Deleting user \"{u}\" ...\n"))
    );
    let o = ctl(api, &["delete_user", &u]).await;
    assert_eq!(
        (o.code, o.err.clone()),
        (67, format!("Error:\nUser \"{u}\" does not exist\n"))
    );
    let o = ctl(api, &["delete_vhost", &v]).await;
    assert_eq!(
        (o.code, o.out.clone()),
        (0, format!("Deleting vhost \"{v}\" ...\n"))
    );
    let o = ctl(api, &["delete_vhost", &v]).await;
    assert_eq!(
        (o.code, o.err.clone()),
        (65, format!("Virtual host '{v}' does not exist\n"))
    );
    let o = ctl(api, &["-q", "list_vhosts"]).await;
    assert!(
        o.out.starts_with("name\n") && !o.out.contains(&v),
        "{}",
        o.out
    );
}

#[tokio::test]
async fn policies_as_rabbitmqctl() {
    let b = TestBroker::start().await;
    let Some(api) = api_url(&b) else { return };
    let api = api.as_str();
    let (v, uri) = vhost(&b, api).await;

    let o = ctl(api, &["list_policies", "-p", &v]).await;
    assert_eq!(o.out, format!("Listing policies for vhost \"{v}\" ...\n\n"));
    let o = ctl(api, &["list_policies", "-p", &v, "--formatter", "json"]).await;
    assert_eq!(o.out, "[]\n");
    let o = ctl(
        api,
        &[
            "set_policy",
            "-p",
            &v,
            "cap",
            "^capped",
            r#"{"max-length":1}"#,
            "--priority",
            "3",
            "--apply-to",
            "queues",
        ],
    )
    .await;
    assert_eq!(o.code, 0, "{}", o.err);
    assert_eq!(
        o.out,
        format!(
            "Setting policy \"cap\" for pattern \"^capped\" to \"{{\"max-length\":1}}\" with priority \"3\" for vhost \"{v}\" ...\n"
        )
    );
    let o = ctl(api, &["list_policies", "-p", &v]).await;
    assert_eq!(
        o.out,
        format!(
            "Listing policies for vhost \"{v}\" ...\nvhost\tname\tpattern\tapply-to\tdefinition\tpriority\n\
             {v}\tcap\t^capped\tqueues\t{{\"max-length\":1}}\t3\n"
        )
    );
    let o = ctl(api, &["list_policies", "-p", &v, "--formatter", "json"]).await;
    assert_eq!(
        o.out,
        format!(
            "[\n{{\"vhost\":\"{v}\",\"name\":\"cap\",\"pattern\":\"^capped\",\"apply-to\":\"queues\",\
             \"definition\":\"{{\\\"max-length\\\":1}}\",\"priority\":3}}\n]\n"
        )
    );
    // The policy applies: the queue keeps one message.
    let conn = connect(&uri).await.expect("connects");
    let ch = conn.create_channel().await.expect("channel");
    ch.queue_declare(
        "capped-q".into(),
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("declare");
    for body in [b"1", b"2", b"3"] {
        ch.basic_publish(
            "".into(),
            "capped-q".into(),
            Default::default(),
            body,
            BasicProperties::default(),
        )
        .await
        .expect("publish")
        .await
        .expect("published");
    }
    let q = ch
        .queue_declare(
            "capped-q".into(),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("passive declare");
    assert_eq!(q.message_count(), 1);

    let o = ctl(api, &["set_policy", "-p", &v, "bad", "^a", "not json"]).await;
    assert_eq!(
        (o.code, o.err.as_str()),
        (69, "Error:\nJSON decoding error. Reason: badarg\n")
    );
    let o = ctl(
        api,
        &["set_policy", "-p", &v, "bad", "^a", r#"{"no-such-key":1}"#],
    )
    .await;
    assert_eq!(o.code, 69, "{}", o.err);
    let o = ctl(
        api,
        &[
            "set_policy",
            "-p",
            "no-such-vhost",
            "p",
            "^a",
            r#"{"max-length":1}"#,
        ],
    )
    .await;
    assert_eq!(
        (o.code, o.err.as_str()),
        (65, "Virtual host 'no-such-vhost' does not exist\n")
    );
    let o = ctl(api, &["clear_policy", "-p", &v, "cap"]).await;
    assert_eq!(
        (o.code, o.out.clone()),
        (0, format!("Clearing policy \"cap\" on vhost \"{v}\" ...\n"))
    );
    let o = ctl(api, &["clear_policy", "-p", &v, "cap"]).await;
    assert_eq!(
        (o.code, o.err.as_str()),
        (69, "Error:\nParameter does not exist\n")
    );
    let _ = conn.close(200, "bye".into()).await;
    assert_eq!(ctl(api, &["delete_vhost", &v]).await.code, 0);
}

#[tokio::test]
async fn definitions_export_and_import() {
    let b = TestBroker::start().await;
    let Some(api) = api_url(&b) else { return };
    let api = api.as_str();
    let dir = tempfile::tempdir().expect("tempdir");
    let u = unique("ctlu");
    assert_eq!(ctl(api, &["add_user", &u, "pw"]).await.code, 0);

    let file = dir.path().join("defs.json");
    let path = file.to_str().expect("utf-8 path");
    let o = ctl(api, &["export_definitions", path]).await;
    assert_eq!(
        (o.code, o.out.clone()),
        (
            0,
            format!("Exporting definitions in JSON to a file at \"{path}\" ...\n")
        )
    );
    let defs: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).expect("file")).expect("JSON");
    assert!(
        defs["users"]
            .as_array()
            .expect("users")
            .iter()
            .any(|x| x["name"] == u.as_str())
    );
    let o = ctl(api, &["export_definitions", "-"]).await;
    let defs: serde_json::Value = serde_json::from_str(&o.out).expect("JSON on stdout");
    assert!(defs["vhosts"].is_array(), "{}", o.out);
    let o = ctl(api, &["export_definitions", "/no/such/dir/defs.json"]).await;
    assert_eq!(o.code, 65);

    let v1 = unique("ctlimp");
    let v2 = unique("ctlimp");
    let imported = dir.path().join("in.json");
    std::fs::write(&imported, format!(r#"{{"vhosts":[{{"name":"{v1}"}}]}}"#)).expect("write");
    let ipath = imported.to_str().expect("utf-8 path");
    let o = ctl(api, &["import_definitions", ipath]).await;
    assert_eq!(o.code, 0, "{}", o.err);
    assert!(
        o.out.starts_with(&format!(
            "Importing definitions in JSON from a file at \"{ipath}\" ...\nSuccessfully"
        )),
        "{}",
        o.out
    );
    let o = run(
        api,
        "rabbitmqctl",
        &["import_definitions"],
        Some(&format!(r#"{{"vhosts":[{{"name":"{v2}"}}]}}"#)),
    )
    .await;
    assert_eq!(o.code, 0, "{}", o.err);
    assert!(
        o.out
            .starts_with("Importing definitions in JSON from standard input ..."),
        "{}",
        o.out
    );
    let o = ctl(api, &["-q", "list_vhosts"]).await;
    assert!(
        o.out.contains(&format!("\n{v1}\n")) && o.out.contains(&format!("\n{v2}\n")),
        "{}",
        o.out
    );
    let o = run(api, "rabbitmqctl", &["import_definitions"], Some("garbage")).await;
    assert_eq!(o.code, 65);
    assert!(
        o.err.contains("Failed to deserialise input (format: JSON)"),
        "{}",
        o.err
    );
    let o = ctl(api, &["import_definitions", "/no/such/file.json"]).await;
    assert_eq!(o.code, 65);

    for v in [&v1, &v2] {
        assert_eq!(ctl(api, &["delete_vhost", v]).await.code, 0);
    }
    assert_eq!(ctl(api, &["delete_user", &u]).await.code, 0);
}

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
