//! Whole connections replayed into a broker running in this process.
//!
//! One broker is started on first use (its own runtime on a background thread, a
//! loopback port, a fresh data directory under `target/fuzz-broker`). Each input becomes one connection:
//! the bytes are written, the client's side is shut down, and everything the broker
//! sends is read until it closes the socket. The broker must close it promptly, and
//! every [`HEALTH_EVERY`] inputs a fresh connection must still complete a handshake.
//! A panic on any of the broker's threads aborts the process (the fuzzer's panic hook
//! does that; the regression test installs its own).
//!
//! Input layout: the first byte picks the mode (`% 4`):
//! - 0, 1: after the protocol header and a valid handshake (PLAIN guest/guest,
//!   tune-ok, open "/"), frames built from records `[kind, length (u16), payload]`:
//!   `kind & 7` is 0-2 a method, 3 a content header, 4 a body, 5 a heartbeat, 6 the
//!   payload as raw bytes, 7 a method with a wrong frame-end; `(kind >> 3) & 3` is
//!   the channel. The framing is always valid (but for 6 and 7), the payloads are not.
//! - 2: the handshake, then the rest as raw bytes.
//! - 3: the rest as raw bytes from the very first byte (protocol header included);
//!   the broker is read for 50 ms, not waited for (a login refused closes after 3 s).

use amq_protocol::protocol::{AMQPClass, connection};
use amq_protocol::types::{FieldTable, LongString, ShortString};
use bytes::BytesMut;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio_util::codec::Decoder;
use warren::protocol::Frame;
use warren::protocol::codec::{FrameDecoder, PROTOCOL_HEADER, write_method};
use warren::{Config, Server};

/// How long the broker may take to close a connection whose client has shut down its
/// side (its close timeout is 3 s; a login refused is closed after 3 s too).
pub const CLOSE_WITHIN: Duration = Duration::from_secs(10);
/// A fresh handshake is checked every this many inputs.
pub const HEALTH_EVERY: u64 = 32;

static BROKER: OnceLock<SocketAddr> = OnceLock::new();
static INPUTS: AtomicU64 = AtomicU64::new(0);

/// The broker of this process, started on first use.
pub fn broker() -> SocketAddr {
    *BROKER.get_or_init(|| {
        // Under the package's target/ (the fuzz package's, or the broker's when the
        // regression test runs this): emptied at each start, kept while the process
        // runs, never left behind in the system's temporary directory.
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("target")
            .join("fuzz-broker");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("broker data directory");
        let config = Config {
            listen: vec!["127.0.0.1:0".parse().expect("valid address")],
            data_dir: dir,
            ..Config::default()
        };
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("broker".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .expect("runtime");
                runtime.block_on(async move {
                    let server = Server::bind(config).await.expect("broker binds");
                    tx.send(server.local_addr()).expect("address sent");
                    server
                        .run(std::future::pending())
                        .await
                        .expect("broker runs");
                });
            })
            .expect("broker thread");
        let addr = rx.recv().expect("broker started");
        handshake_completes(addr);
        addr
    })
}

pub fn session(data: &[u8]) {
    let addr = broker();
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut out = Vec::with_capacity(data.len() + 256);
    match mode % 4 {
        0 | 1 => {
            out.extend_from_slice(PROTOCOL_HEADER);
            out.extend_from_slice(&handshake());
            frames(rest, &mut out);
        }
        2 => {
            out.extend_from_slice(PROTOCOL_HEADER);
            out.extend_from_slice(&handshake());
            out.extend_from_slice(rest);
        }
        _ => {
            // A login refused is closed only after 3 s, as RabbitMQ does: without a
            // valid handshake the broker is not waited for (the health check still is).
            out.extend_from_slice(rest);
            replay(addr, &out, Some(UNWAITED));
            return checked_health(addr);
        }
    }
    replay(addr, &out, None);
    checked_health(addr);
}

/// How long a connection without the harness's handshake is read before it is dropped.
const UNWAITED: Duration = Duration::from_millis(50);

fn checked_health(addr: SocketAddr) {
    if INPUTS.fetch_add(1, Ordering::Relaxed) % HEALTH_EVERY == HEALTH_EVERY - 1 {
        handshake_completes(addr);
    }
}

/// Writes `bytes` on a new connection, shuts down the client's side, and reads until
/// the broker closes, or for at most `patience` (then the socket is dropped).
pub fn replay(addr: SocketAddr, bytes: &[u8], patience: Option<Duration>) {
    let mut socket = connect(addr);
    // The broker may close first (a protocol error): later writes then fail.
    let _ = socket.write_all(bytes);
    let _ = socket.shutdown(Shutdown::Write);
    let deadline = Instant::now() + patience.unwrap_or(CLOSE_WITHIN);
    let mut buf = [0u8; 64 * 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() && patience.is_some() {
            return;
        }
        assert!(
            !left.is_zero(),
            "the broker kept a connection open {CLOSE_WITHIN:?} after the client closed"
        );
        socket.set_read_timeout(Some(left)).expect("read timeout");
        match socket.read(&mut buf) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) if matches!(e.kind(), std::io::ErrorKind::Interrupted) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            // Reset: the broker closed without reading everything, as it may.
            Err(_) => return,
        }
    }
}

fn connect(addr: SocketAddr) -> TcpStream {
    let socket = TcpStream::connect_timeout(&addr, CLOSE_WITHIN)
        .unwrap_or_else(|e| panic!("the broker no longer accepts connections: {e}"));
    socket.set_nodelay(true).expect("nodelay");
    socket
        .set_write_timeout(Some(CLOSE_WITHIN))
        .expect("write timeout");
    socket
}

/// start-ok (PLAIN guest/guest), tune-ok (the broker's limits, no heartbeats), open "/".
pub fn handshake() -> Vec<u8> {
    let mut out = Vec::new();
    write_method(
        &mut out,
        0,
        AMQPClass::Connection(connection::AMQPMethod::StartOk(connection::StartOk {
            client_properties: FieldTable::default(),
            mechanism: ShortString::from("PLAIN"),
            response: LongString::from(&b"\0guest\0guest"[..]),
            locale: ShortString::from("en_US"),
        })),
    );
    write_method(
        &mut out,
        0,
        AMQPClass::Connection(connection::AMQPMethod::TuneOk(connection::TuneOk {
            channel_max: 2047,
            frame_max: 131_072,
            heartbeat: 0,
        })),
    );
    write_method(
        &mut out,
        0,
        AMQPClass::Connection(connection::AMQPMethod::Open(connection::Open {
            virtual_host: ShortString::from("/"),
        })),
    );
    out
}

/// Frames from records `[kind, length (u16), payload]` (see the module's docs).
pub fn frames(mut rest: &[u8], out: &mut Vec<u8>) {
    while let Some((&kind, tail)) = rest.split_first() {
        let (len, tail) = match tail.split_first_chunk::<2>() {
            Some((len, tail)) => (u16::from_be_bytes(*len) as usize, tail),
            None => (tail.len(), &[][..]),
        };
        let (payload, tail) = tail.split_at(len.min(tail.len()));
        rest = tail;
        let channel = u16::from((kind >> 3) & 3);
        let (frame_type, end) = match kind & 7 {
            0..=2 => (1, 0xCE),
            3 => (2, 0xCE),
            4 => (3, 0xCE),
            5 => (8, 0xCE),
            6 => {
                out.extend_from_slice(payload);
                continue;
            }
            _ => (1, 0),
        };
        let payload = if frame_type == 8 { &[][..] } else { payload };
        out.push(frame_type);
        out.extend_from_slice(&channel.to_be_bytes());
        out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        out.extend_from_slice(payload);
        out.push(end);
    }
}

/// The record [`frames`] turns into one frame of `kind` (0 method, 3 header, 4 body,
/// 5 heartbeat, 6 raw bytes) on `channel` with `payload`.
pub fn record(kind: u8, channel: u16, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![kind | ((channel as u8 & 3) << 3)];
    out.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// A new connection completes the handshake: connection.start, tune and open-ok come
/// back, and connection.close is answered with close-ok.
pub fn handshake_completes(addr: SocketAddr) {
    let mut socket = connect(addr);
    socket
        .set_read_timeout(Some(CLOSE_WITHIN))
        .expect("read timeout");
    let mut buf = BytesMut::new();
    let mut decoder = FrameDecoder { frame_max: 0 };
    let mut next = |socket: &mut TcpStream, what: &str| -> AMQPClass {
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(Frame::Method(0, method))) => return method,
                Ok(Some(Frame::Heartbeat(_))) => continue,
                Ok(None) => {}
                other => panic!("healthy broker, waiting for {what}: {other:?}"),
            }
            let mut chunk = [0u8; 4096];
            match socket.read(&mut chunk) {
                Ok(n) if n > 0 => buf.extend_from_slice(&chunk[..n]),
                other => panic!("healthy broker, waiting for {what}: {other:?}"),
            }
        }
    };
    socket.write_all(PROTOCOL_HEADER).expect("header sent");
    let start = next(&mut socket, "connection.start");
    assert!(
        matches!(
            start,
            AMQPClass::Connection(connection::AMQPMethod::Start(_))
        ),
        "{start:?}"
    );
    let all = handshake();
    socket.write_all(&all).expect("handshake sent");
    let tune = next(&mut socket, "connection.tune");
    assert!(
        matches!(tune, AMQPClass::Connection(connection::AMQPMethod::Tune(_))),
        "{tune:?}"
    );
    let open_ok = next(&mut socket, "connection.open-ok");
    assert!(
        matches!(
            open_ok,
            AMQPClass::Connection(connection::AMQPMethod::OpenOk(_))
        ),
        "{open_ok:?}"
    );
    let mut close = Vec::new();
    write_method(
        &mut close,
        0,
        AMQPClass::Connection(connection::AMQPMethod::Close(connection::Close {
            reply_code: 200,
            reply_text: ShortString::from("bye"),
            class_id: 0,
            method_id: 0,
        })),
    );
    socket.write_all(&close).expect("close sent");
    let close_ok = next(&mut socket, "connection.close-ok");
    assert!(
        matches!(
            close_ok,
            AMQPClass::Connection(connection::AMQPMethod::CloseOk(_))
        ),
        "{close_ok:?}"
    );
}
