//! The CLI over the management API (`warren-shim rabbitmqctl ...`, `warrenctl`): each
//! command's output, exit code and effect, as rabbitmqctl shows them. The shim runs as
//! a process pointed at the broker's API with `--api`; effects are checked with lapin.
//! With `WARREN_TEST_EXTERNAL_URI` and `WARREN_TEST_EXTERNAL_API` (for example
//! `http://127.0.0.1:15672`) the same tests run against another broker, such as a
//! reference RabbitMQ (with `--test-threads=1`: check_virtual_hosts sees the vhosts
//! other tests are creating); its statistics lag, so counts are polled.

#[path = "ctl/admin.rs"]
mod admin;
mod common;
#[path = "ctl/ops.rs"]
mod ops;

use common::binary::isolate;
use common::{TestBroker, unique};
use lapin::{Connection, ConnectionProperties};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

/// The API's URL, or None when the broker is external and no API is given (skip).
pub fn api_url(b: &TestBroker) -> Option<String> {
    match b.management {
        Some(addr) => Some(format!("http://{addr}")),
        None => std::env::var("WARREN_TEST_EXTERNAL_API").ok(),
    }
}

pub struct Out {
    pub code: i32,
    pub out: String,
    pub err: String,
}

/// Runs `warren-shim TOOL --api URL ARGS`, with `stdin` as its standard input.
pub async fn run(api: &str, tool: &str, args: &[&str], stdin: Option<&str>) -> Out {
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

pub async fn ctl(api: &str, args: &[&str]) -> Out {
    run(api, "rabbitmqctl", args, None).await
}

/// Runs a listing until its output is `want` (the reference broker's statistics lag).
pub async fn ctl_until(api: &str, args: &[&str], want: &str) -> Out {
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
pub async fn vhost(b: &TestBroker, api: &str) -> (String, String) {
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

pub async fn connect(uri: &str) -> Result<Connection, lapin::Error> {
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
