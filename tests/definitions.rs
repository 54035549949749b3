//! Definitions (RabbitMQ's JSON): imported at boot from `load_definitions` /
//! `--definitions`, exported and imported again, and files written by RabbitMQ.

mod common;

use common::defs::{boot_binary, shop_definitions, write_json};

use common::{TestBroker, drain_bodies, passive_declare, publish_confirmed};
use lapin::{Connection, ConnectionProperties};
use serde_json::{Value, json};
use std::path::Path;
use warren::access::model;
use warren::definitions::{self, ImportMode};

async fn login(broker: &TestBroker, user: &str, pass: &str, vhost: &str) -> Option<Connection> {
    Connection::connect(
        &broker.uri_with(user, pass, vhost),
        ConnectionProperties::default(),
    )
    .await
    .map_err(|e| eprintln!("{user} cannot log in to {vhost}: {e}"))
    .ok()
}

#[tokio::test]
async fn boot_with_definitions_creates_them_and_no_default_user() {
    let dir = tempfile::tempdir().expect("dir");
    let file = write_json(dir.path(), "defs.json", &shop_definitions());
    let broker = TestBroker::start_with(|c| c.load_definitions = Some(file)).await;

    assert!(
        login(&broker, "guest", "guest", "%2f").await.is_none(),
        "a first boot with definitions creates no default user"
    );
    assert!(
        broker.broker().vhost("/").is_none(),
        "nor the default vhost"
    );
    for (user, pass) in [("sha512", "sha512-pw"), ("old-md5", "md5-pw")] {
        let conn = login(&broker, user, pass, "shop").await;
        assert!(conn.is_some(), "{user} logs in");
    }
    assert!(login(&broker, "plain", "wrong", "shop").await.is_none());
    let conn = login(&broker, "plain", "plain-pw", "shop")
        .await
        .expect("the plaintext-password user logs in");
    let ch = conn.create_channel().await.expect("channel");
    passive_declare(&ch, "orders").await.expect("queue exists");
    passive_declare(&ch, "orders-quorum")
        .await
        .expect("quorum queue exists");
    let ch = common::confirm_channel(&conn).await;
    let props = lapin::BasicProperties::default();
    publish_confirmed(&ch, "orders-x", "order.1", b"via topic", props.clone()).await;
    publish_confirmed(&ch, "amq.direct", "direct", b"via amq.direct", props).await;
    assert_eq!(
        drain_bodies(&ch, "orders").await,
        vec!["via topic", "via amq.direct"]
    );

    let state = broker.broker().access().snapshot();
    let plain = state.user("plain").expect("user recorded");
    assert_eq!(plain.tags, vec!["management", "policymaker"]);
    assert_eq!(
        plain.hashing_algorithm,
        model::SHA256,
        "plaintext is hashed"
    );
    assert!(!plain.password_hash.contains("plain-pw"));
    assert_eq!(
        state.user("old-md5").expect("user").hashing_algorithm,
        model::MD5
    );
    assert_eq!(state.vhost("shop").expect("vhost").description, "the shop");
    assert_eq!(state.policies.len(), 1);
    assert_eq!(state.policies[0].name, "ttl");
    assert_eq!(state.operator_policies.len(), 1);
    assert_eq!(state.operator_policies[0].definition["max-length"], 5000);
    assert_eq!(state.vhost_limit("shop", "max-queues"), Some(100));
    assert_eq!(state.topic_permissions.len(), 1);
    assert_eq!(state.global_parameters[0].value, "shop-cluster");
    let shop = broker.broker().vhost("shop").expect("vhost");
    assert!(
        shop.exchange("amq.sneaky").is_err(),
        "amq.* names are skipped"
    );
}

#[tokio::test]
async fn a_second_boot_keeps_what_exists() {
    let dir = tempfile::tempdir().expect("dir");
    let file = write_json(dir.path(), "defs.json", &shop_definitions());
    let broker = TestBroker::start_with(|c| c.load_definitions = Some(file)).await;
    let b = broker.broker();
    let mut plain = b.access().read(|s| s.user("plain").cloned()).expect("user");
    plain.tags = vec!["administrator".into()];
    b.put_user(plain, Some("changed-pw"))
        .expect("change password");
    let mut policy = b.access().read(|s| s.policies[0].clone());
    policy.pattern = "^changed$".into();
    b.set_policy(policy, false).expect("change policy");
    {
        let conn = login(&broker, "plain", "changed-pw", "shop")
            .await
            .expect("login");
        let ch = common::confirm_channel(&conn).await;
        let props = common::persistent();
        publish_confirmed(&ch, "orders-x", "order.2", b"kept", props).await;
    }

    let broker = broker.restart().await;
    assert!(login(&broker, "plain", "plain-pw", "shop").await.is_none());
    let conn = login(&broker, "plain", "changed-pw", "shop")
        .await
        .expect("the changed password still works");
    let state = broker.broker().access().snapshot();
    assert_eq!(
        state.user("plain").expect("user").tags,
        vec!["administrator"]
    );
    assert_eq!(state.policies.len(), 1);
    assert_eq!(state.policies[0].pattern, "^changed$");
    assert_eq!(
        state.users.len(),
        3,
        "no default user on the second boot either"
    );
    let ch = conn.create_channel().await.expect("channel");
    assert_eq!(drain_bodies(&ch, "orders").await, vec!["kept"]);
}

#[tokio::test]
async fn a_fresh_store_without_definitions_gets_the_defaults() {
    let broker = TestBroker::start().await;
    assert!(login(&broker, "guest", "guest", "%2f").await.is_some());
    let state = broker.broker().access().snapshot();
    assert_eq!(state.users.len(), 1);
    assert!(state.permission("guest", "/").is_some());
}

#[tokio::test]
async fn the_reference_rabbitmq_export_imports() {
    // Exported by RabbitMQ 3.10.8 (`rabbitmqctl export_definitions`): vhost limits
    // and the operator policy definition as lists of pairs, vhost fields under
    // metadata, queue types, an exchange with an alternate exchange, a headers
    // binding, a binding from amq.direct.
    let file = common::fixtures::path("definitions/rabbitmq-3.10.8-export.json");
    let broker = TestBroker::start_with(|c| c.load_definitions = Some(file)).await;
    for (user, pass) in [("alice", "alicepw"), ("bob", "bobpw")] {
        assert!(login(&broker, user, pass, "app").await.is_some(), "{user}");
    }
    let conn = login(&broker, "guest", "guest", "app")
        .await
        .expect("guest");
    let ch = common::confirm_channel(&conn).await;
    for q in ["orders", "ae-q", "q-quorum", "transient"] {
        passive_declare(&ch, q).await.expect(q);
    }
    let props = lapin::BasicProperties::default();
    publish_confirmed(&ch, "events", "order.7", b"topic", props.clone()).await;
    publish_confirmed(&ch, "amq.direct", "direct-key", b"direct", props.clone()).await;
    publish_confirmed(&ch, "with-ae", "unroutable", b"alternate", props).await;
    assert_eq!(drain_bodies(&ch, "orders").await, vec!["topic", "direct"]);
    assert_eq!(drain_bodies(&ch, "ae-q").await, vec!["alternate"]);

    let state = broker.broker().access().snapshot();
    let app = state.vhost("app").expect("vhost");
    assert_eq!(app.description, "application vhost");
    assert_eq!(app.tags, vec!["prod", "eu"]);
    assert_eq!(app.default_queue_type.as_deref(), Some("classic"));
    assert_eq!(state.vhost_limit("app", "max-connections"), Some(100));
    assert_eq!(state.operator_policies[0].definition["max-length"], 1000);
    assert_eq!(state.policies[0].name, "ttl-policy");
    let bob = state.user("bob").expect("bob");
    assert_eq!(bob.limits["max-channels"], 10);
}

/// Sorted copies of the sections an export and a re-export must agree on.
fn comparable(doc: &Value) -> Vec<(String, Vec<String>)> {
    [
        "users",
        "vhosts",
        "permissions",
        "topic_permissions",
        "policies",
        "parameters",
        "global_parameters",
        "queues",
        "exchanges",
        "bindings",
    ]
    .iter()
    .map(|k| {
        let mut items: Vec<String> = doc[*k]
            .as_array()
            .unwrap_or_else(|| panic!("{k} is a list"))
            .iter()
            .map(|v| v.to_string())
            .collect();
        items.sort();
        (k.to_string(), items)
    })
    .collect()
}

#[tokio::test]
async fn export_then_import_round_trips() {
    let dir = tempfile::tempdir().expect("dir");
    let file = write_json(dir.path(), "defs.json", &shop_definitions());
    let a = TestBroker::start_with(|c| c.load_definitions = Some(file)).await;
    {
        // Entities declared by a client, an exclusive queue among them.
        let conn = login(&a, "plain", "plain-pw", "shop").await.expect("login");
        let ch = conn.create_channel().await.expect("channel");
        let exclusive = common::temp_queue(&ch).await;
        ch.queue_bind(
            exclusive.as_str().into(),
            "orders-x".into(),
            "#".into(),
            Default::default(),
            Default::default(),
        )
        .await
        .expect("bind");
        ch.exchange_declare(
            "fan".into(),
            lapin::ExchangeKind::Fanout,
            Default::default(),
            Default::default(),
        )
        .await
        .expect("exchange");
        ch.exchange_bind(
            "fan".into(),
            "orders-x".into(),
            "fan.#".into(),
            Default::default(),
            Default::default(),
        )
        .await
        .expect("exchange binding");
        let exported = definitions::export(a.broker(), None).expect("export");
        assert!(
            !exported.to_string().contains(&exclusive),
            "no exclusive queue"
        );
        assert_eq!(
            exported["rabbitmq_version"],
            warren::identity::RABBITMQ_VERSION
        );
        assert_eq!(exported["product_name"], warren::identity::PRODUCT);
        let names: Vec<&str> = exported["exchanges"]
            .as_array()
            .expect("list")
            .iter()
            .filter_map(|x| x["name"].as_str())
            .collect();
        assert_eq!(
            names,
            vec!["fan", "orders-x"],
            "no default or amq.* exchange"
        );

        // A first boot with (empty) definitions: no default user and vhost either.
        let empty = write_json(dir.path(), "empty.json", &json!({}));
        let b = TestBroker::start_with(|c| c.load_definitions = Some(empty)).await;
        let summary = definitions::import(b.broker(), &exported, ImportMode::Overwrite)
            .expect("Warren's export imports");
        assert_eq!(summary.counts("queues").created, 2);
        let again = definitions::export(b.broker(), None).expect("export");
        assert_eq!(comparable(&again), comparable(&exported));
        // For checking by hand that RabbitMQ imports Warren's export
        // (`rabbitmqctl import_definitions`; see interop/definitions.sh).
        let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("warren-export.json");
        std::fs::write(&out, serde_json::to_vec_pretty(&exported).expect("json")).expect("write");

        let scoped = definitions::export(a.broker(), Some("shop")).expect("vhost export");
        assert!(scoped.get("users").is_none());
        assert!(scoped["queues"][0].get("vhost").is_none());
        assert!(definitions::export(a.broker(), Some("nope")).is_none());
        b.broker().add_vhost("copy");
        definitions::import_vhost(b.broker(), &scoped, "copy", ImportMode::KeepExisting)
            .expect("vhost-scoped import");
        let copy = b.broker().vhost("copy").expect("vhost");
        assert_eq!(copy.queues().len(), 2);
        assert!(copy.exchange("fan").is_ok());
    }
}

#[tokio::test]
async fn an_invalid_document_changes_nothing() {
    let broker = TestBroker::start().await;
    let b = broker.broker();
    let before = definitions::export(b, None).expect("export");
    let mut doc = shop_definitions();
    doc["bindings"].as_array_mut().expect("list").push(
        json!({"source": "orders-x", "vhost": "shop", "destination": "missing",
                     "destination_type": "queue", "routing_key": "", "arguments": {}}),
    );
    let err = definitions::import(b, &doc, ImportMode::Overwrite).expect_err("refused");
    assert!(
        err.to_string().contains("queue 'missing' in vhost 'shop'"),
        "{err}"
    );
    let mut doc = shop_definitions();
    doc["queues"][0]["vhost"] = json!("elsewhere");
    let err = definitions::import(b, &doc, ImportMode::Overwrite).expect_err("refused");
    assert!(err.to_string().contains("vhost 'elsewhere'"), "{err}");
    assert!(err.entry.contains("queue 'orders'"), "{err}");
    let err =
        definitions::import_bytes(b, b"{\"users\": [", ImportMode::Overwrite).expect_err("refused");
    assert!(err.to_string().contains("not valid JSON"), "{err}");
    let mut doc = shop_definitions();
    doc["permissions"][0]["configure"] = json!("^(unclosed");
    let err = definitions::import(b, &doc, ImportMode::Overwrite).expect_err("refused");
    assert!(err.to_string().contains("configure regex"), "{err}");
    let mut doc = shop_definitions();
    doc["users"][0]["password_hash"] = json!("x");
    assert!(definitions::import(b, &doc, ImportMode::Overwrite).is_err());
    // A policy set_policy would refuse is refused before anything is created.
    let mut doc = shop_definitions();
    doc["policies"] = json!([{"vhost": "shop", "name": "p", "pattern": ".*",
        "apply-to": "queues", "priority": 0, "definition": {"no-such-key": 1}}]);
    let err = definitions::import(b, &doc, ImportMode::Overwrite).expect_err("refused");
    assert!(err.entry.contains("policy 'p'"), "{err}");
    assert!(err.to_string().contains("no-such-key"), "{err}");
    assert_eq!(definitions::export(b, None).expect("export"), before);
}

#[tokio::test]
async fn a_bad_definitions_file_stops_the_boot_and_changes_nothing() {
    let dir = tempfile::tempdir().expect("dir");
    let data = dir.path().join("data");
    // A data directory with the defaults and one durable queue.
    {
        let args = |port| common::binary::listen_args(port, &data);
        let (mut child, uri) = common::binary::start_warren(args).await;
        let conn = Connection::connect(&uri, ConnectionProperties::default())
            .await
            .expect("connect");
        let ch = conn.create_channel().await.expect("channel");
        common::declare_durable(&ch, "keep-me").await;
        conn.close(200, "bye".into()).await.expect("close");
        let pid = child.id().expect("running") as i32;
        // SAFETY: signalling our own child process by its pid.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        child.wait().await.expect("stops");
    }
    let store = data.join("warren.redb");
    let bytes = std::fs::read(&store).expect("store");

    let unparsable = dir.path().join("broken.json");
    std::fs::write(&unparsable, b"{\"users\": [{\"name\": \"x\"},").expect("write");
    let (status, stderr) = boot_binary(dir.path(), &unparsable).await;
    assert!(!status.success());
    assert!(
        stderr.contains(&unparsable.display().to_string()),
        "{stderr}"
    );
    assert!(stderr.contains("not valid JSON"), "{stderr}");
    assert_eq!(
        std::fs::read(&store).expect("store"),
        bytes,
        "store untouched"
    );

    let mut doc = shop_definitions();
    doc["vhosts"] = json!([]);
    let dangling = write_json(dir.path(), "dangling.json", &doc);
    let (status, stderr) = boot_binary(dir.path(), &dangling).await;
    assert!(!status.success());
    assert!(stderr.contains(&dangling.display().to_string()), "{stderr}");
    assert!(
        stderr.contains("permission of user 'plain' in vhost 'shop'")
            && stderr.contains("vhost 'shop', which neither exists nor is defined"),
        "{stderr}"
    );

    // Nothing of the refused files was applied: the old state boots as it was.
    let args = |port| common::binary::listen_args(port, &data);
    let (_child, uri) = common::binary::start_warren(args).await;
    let conn = Connection::connect(&uri, ConnectionProperties::default())
        .await
        .expect("guest still logs in");
    let ch = conn.create_channel().await.expect("channel");
    passive_declare(&ch, "keep-me").await.expect("queue kept");
    let plain = uri.replace("guest:guest", "plain:plain-pw");
    assert!(
        Connection::connect(&plain, ConnectionProperties::default())
            .await
            .is_err(),
        "no user of the refused file"
    );
}

#[tokio::test]
async fn a_store_written_by_format_1_opens_with_its_messages() {
    // Written by the build before users were stored (commit bfeccc4, store format
    // 1): durable exchange legacy-x bound with legacy-key to durable queue legacy-q
    // (x-max-length 100) holding three persistent messages.
    let dir = tempfile::tempdir().expect("dir");
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).expect("dir");
    common::fixtures::decode_zero_runs(
        &common::fixtures::path("store-format-1/warren.redb.zr"),
        &data.join("warren.redb"),
    );
    let config_dir = data.clone();
    let broker = TestBroker::start_with(|c| c.data_dir = config_dir).await;
    assert!(broker.broker().fresh(), "format 1 had no users");
    let conn = broker.connect().await; // guest/guest: the defaults were created
    let ch = common::confirm_channel(&conn).await;
    let q = passive_declare(&ch, "legacy-q")
        .await
        .expect("queue recovered");
    assert_eq!(q.message_count(), 3);
    let props = common::persistent();
    publish_confirmed(&ch, "legacy-x", "legacy-key", b"new", props).await;
    assert_eq!(
        drain_bodies(&ch, "legacy-q").await,
        vec!["message 0", "message 1", "message 2", "new"],
        "the binding was recovered"
    );
    drop(conn);

    let broker = broker.restart().await;
    assert!(!broker.broker().fresh(), "users are stored now (format 2)");
    let state = broker.broker().access().snapshot();
    assert!(state.user("guest").is_some() && state.permission("guest", "/").is_some());
    let conn = broker.connect().await;
    let ch = conn.create_channel().await.expect("channel");
    passive_declare(&ch, "legacy-q")
        .await
        .expect("queue still there");
}

#[tokio::test]
async fn the_example_definitions_file_boots() {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/definitions.example.json");
    let broker = TestBroker::start_with(|c| c.load_definitions = Some(file)).await;
    for (user, pass) in [("app", "change-me"), ("ops", "ops-change-me")] {
        assert!(login(&broker, user, pass, "shop").await.is_some(), "{user}");
    }
    let state = broker.broker().access().snapshot();
    assert_eq!(state.policies[0].name, "app-limits");
    let shop = broker.broker().vhost("shop").expect("vhost");
    assert!(shop.exchange("app.events").is_ok());
}
