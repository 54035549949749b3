//! The binary's management listener: `--management-listen` binds it (port 0 picks a
//! free port, logged at startup), `none` turns it off.

mod common;

use common::binary::{spawn_until_started, stop, warren};
use std::net::SocketAddr;

fn management_addr(lines: &[String]) -> Option<SocketAddr> {
    let line = lines
        .iter()
        .find(|l| l.contains("listening for management API"))?;
    let at = line.find("addr")?;
    let rest = line[at + 4..].trim_start_matches(['=', '"', ':']);
    let end = rest.find(['"', ' ']).unwrap_or(rest.len());
    rest[..end].parse().ok()
}

#[tokio::test]
async fn the_binary_serves_the_api_where_told_and_not_when_off() {
    let dir = tempfile::tempdir().expect("tempdir");
    // warren() passes --management-listen 127.0.0.1:0.
    let mut cmd = warren(dir.path());
    cmd.args(["--listen", "127.0.0.1:0"]);
    let running = spawn_until_started(cmd).await;
    let addr = management_addr(&running.lines).expect("the API's address is logged");
    let api = common::http::Api::new(addr, "guest", "guest");
    let r = api.get("/api/whoami").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["name"], "guest");
    stop(running).await;

    let off = tempfile::tempdir().expect("tempdir");
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_warren"));
    common::binary::isolate(&mut cmd, off.path());
    cmd.arg("--data-dir").arg(off.path().join("data"));
    cmd.args(["--listen", "127.0.0.1:0", "--management-listen", "none"]);
    let running = spawn_until_started(cmd).await;
    assert_eq!(management_addr(&running.lines), None);
    stop(running).await;
}
