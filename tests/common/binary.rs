//! The real `warren` binary, for tests of what only a separate process shows (signals,
//! SIGKILL, resident memory). Each one listens on a free port; the process is killed
//! when its [`Child`] handle is dropped, so a failing test leaves none behind.

use lapin::{Connection, ConnectionProperties};
use std::ffi::OsString;
use std::time::Duration;
use tokio::process::{Child, Command};

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// Starts the binary with the arguments `args` gives for a free port, and waits until
/// it accepts AMQP connections; returns the process (killed on drop) and its URI. A
/// process that exits before (e.g. because another took the port) is started again on
/// another port, up to five times.
pub async fn start_warren(args: impl Fn(u16) -> Vec<OsString>) -> (Child, String) {
    for _attempt in 0..5 {
        let port = free_port();
        let mut child = Command::new(env!("CARGO_BIN_EXE_warren"))
            .args(args(port))
            .kill_on_drop(true)
            .spawn()
            .expect("spawn warren");
        let uri = format!("amqp://guest:guest@127.0.0.1:{port}/%2f");
        for _ in 0..200 {
            if let Ok(Some(_)) = child.try_wait() {
                break;
            }
            if let Ok(c) = Connection::connect(&uri, ConnectionProperties::default()).await {
                let _ = c.close(200, "ready".into()).await;
                return (child, uri);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = child.start_kill();
        let _ = child.wait().await;
    }
    panic!("warren did not start");
}

/// The arguments for a binary on `port` with its data in `data_dir`, logging warnings.
pub fn listen_args(port: u16, data_dir: &std::path::Path) -> Vec<OsString> {
    vec![
        "--listen".into(),
        format!("127.0.0.1:{port}").into(),
        "--data-dir".into(),
        data_dir.into(),
        "--log-level".into(),
        "warn".into(),
    ]
}
