//! Policies and definitions through the CLI.

use crate::common::{TestBroker, unique};
use crate::{api_url, connect, ctl, run, vhost};
use lapin::BasicProperties;
use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;

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
