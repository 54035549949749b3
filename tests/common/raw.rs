//! A bare AMQP client on a plain TCP socket, for tests that must send what a real client
//! never would (bad frames, silence instead of heartbeats). Frames are built and parsed
//! with `amq-protocol`, the same crate lapin uses.

use amq_protocol::frame::{AMQPFrame, WriteContext, gen_frame, parse_frame};
use amq_protocol::protocol::{AMQPClass, connection};
use amq_protocol::types::{FieldTable, LongString, ShortString};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Longest a raw test waits for the broker to say or do something (only against hangs).
pub const RAW_WAIT: Duration = Duration::from_secs(10);

pub struct Raw {
    pub stream: TcpStream,
}

/// What came back from the socket.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Got {
    Frame(AMQPFrame),
    /// The broker closed the socket.
    Eof,
}

/// `host:port` of an amqp:// URI.
pub fn addr_of(uri: &str) -> String {
    let rest = uri.rsplit_once('@').map(|(_, r)| r).unwrap_or(uri);
    rest.split('/').next().unwrap_or("").to_owned()
}

pub fn encode(frame: &AMQPFrame) -> Vec<u8> {
    gen_frame(frame)(WriteContext::from(Vec::new()))
        .expect("frame encodes")
        .into_inner()
        .0
}

pub fn method_frame(channel: u16, method: AMQPClass) -> Vec<u8> {
    encode(&AMQPFrame::Method(channel, method))
}

/// A frame written by hand: type, channel, payload, frame-end.
pub fn raw_frame(kind: u8, channel: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![kind];
    f.extend_from_slice(&channel.to_be_bytes());
    f.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    f.extend_from_slice(payload);
    f.push(0xCE);
    f
}

/// The payload of a class 60 content header: body size, property flags, properties.
pub fn content_header(body_size: u64, flags: u16, properties: &[u8]) -> Vec<u8> {
    let mut header = 60u16.to_be_bytes().to_vec();
    header.extend_from_slice(&0u16.to_be_bytes());
    header.extend_from_slice(&body_size.to_be_bytes());
    header.extend_from_slice(&flags.to_be_bytes());
    header.extend_from_slice(properties);
    header
}

/// basic.publish to the default exchange with a content header (no properties) and
/// one body frame, ready to be written in a batch.
pub fn publish_frames(channel: u16, routing_key: &str, body: &[u8]) -> Vec<u8> {
    publish_frames_with(channel, routing_key, body, 0, &[])
}

/// Like [`publish_frames`], with the given property flags and encoded properties.
pub fn publish_frames_with(
    channel: u16,
    routing_key: &str,
    body: &[u8],
    flags: u16,
    properties: &[u8],
) -> Vec<u8> {
    use amq_protocol::protocol::basic;
    let mut bytes = method_frame(
        channel,
        AMQPClass::Basic(basic::AMQPMethod::Publish(basic::Publish {
            exchange: "".into(),
            routing_key: routing_key.into(),
            mandatory: false,
            immediate: false,
        })),
    );
    let header = content_header(body.len() as u64, flags, properties);
    bytes.extend(raw_frame(2, channel, &header));
    bytes.extend(raw_frame(3, channel, body));
    bytes
}

/// queue.declare (not passive, no arguments), waiting for declare-ok.
pub fn queue_declare(name: &str, durable: bool, exclusive: bool) -> AMQPClass {
    use amq_protocol::protocol::queue;
    AMQPClass::Queue(queue::AMQPMethod::Declare(queue::Declare {
        queue: name.into(),
        passive: false,
        durable,
        exclusive,
        auto_delete: false,
        nowait: false,
        arguments: FieldTable::default(),
    }))
}

/// channel.close as a client sends it: reply 200 "bye".
pub fn channel_close() -> AMQPClass {
    use amq_protocol::protocol::channel;
    AMQPClass::Channel(channel::AMQPMethod::Close(channel::Close {
        reply_code: 200,
        reply_text: "bye".into(),
        class_id: 0,
        method_id: 0,
    }))
}

/// connection.close as a client sends it: reply 200 "bye".
pub fn connection_close() -> AMQPClass {
    AMQPClass::Connection(connection::AMQPMethod::Close(connection::Close {
        reply_code: 200,
        reply_text: "bye".into(),
        class_id: 0,
        method_id: 0,
    }))
}

impl Raw {
    pub async fn connect(uri: &str) -> Raw {
        let stream = TcpStream::connect(addr_of(uri)).await.expect("tcp connect");
        stream.set_nodelay(true).expect("nodelay");
        Raw { stream }
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("write");
    }

    pub async fn send_method(&mut self, channel: u16, method: AMQPClass) {
        let bytes = method_frame(channel, method);
        self.send(&bytes).await;
    }

    /// The next frame, or Eof. Panics if nothing comes within [`RAW_WAIT`].
    pub async fn next(&mut self) -> Got {
        tokio::time::timeout(RAW_WAIT, self.read_frame())
            .await
            .expect("the broker answers in time")
    }

    /// The next frame, or None if nothing comes within `wait` (for a test that
    /// reports what it got so far before failing).
    pub async fn next_within(&mut self, wait: Duration) -> Option<Got> {
        tokio::time::timeout(wait, self.read_frame()).await.ok()
    }

    async fn read_frame(&mut self) -> Got {
        let mut head = [0u8; 7];
        if let Err(e) = self.stream.read_exact(&mut head).await {
            return match e.kind() {
                std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionReset => Got::Eof,
                _ => panic!("read: {e}"),
            };
        }
        let size = u32::from_be_bytes([head[3], head[4], head[5], head[6]]) as usize;
        let mut rest = vec![0u8; size + 1];
        if self.stream.read_exact(&mut rest).await.is_err() {
            return Got::Eof;
        }
        let mut whole = head.to_vec();
        whole.extend_from_slice(&rest);
        match parse_frame(&whole[..]) {
            Ok((_, frame)) => Got::Frame(frame),
            Err(e) => panic!("unparsable frame from the broker: {e:?} {whole:?}"),
        }
    }

    /// The next method frame, skipping heartbeats.
    pub async fn next_method(&mut self) -> Option<(u16, AMQPClass)> {
        loop {
            match self.next().await {
                Got::Frame(AMQPFrame::Method(ch, m)) => return Some((ch, m)),
                Got::Frame(AMQPFrame::Heartbeat) => continue,
                Got::Frame(other) => panic!("expected a method frame, got {other:?}"),
                Got::Eof => return None,
            }
        }
    }

    /// [`Raw::open`] with channel_max 2047, no heartbeats, and channel 1 opened.
    pub async fn opened(uri: &str, frame_max: u32) -> Raw {
        let mut raw = Raw::open(uri, 2047, frame_max, 0).await;
        raw.open_channel(1).await;
        raw
    }

    /// Sends the protocol header and reads connection.start.
    pub async fn start(uri: &str) -> (Raw, connection::Start) {
        let mut raw = Raw::connect(uri).await;
        raw.send(b"AMQP\x00\x00\x09\x01").await;
        match raw.next_method().await {
            Some((0, AMQPClass::Connection(connection::AMQPMethod::Start(s)))) => (raw, s),
            other => panic!("expected connection.start, got {other:?}"),
        }
    }

    /// A whole handshake as guest/guest on vhost "/", answering tune with the given
    /// values; returns once connection.open-ok arrived.
    pub async fn open(uri: &str, channel_max: u16, frame_max: u32, heartbeat: u16) -> Raw {
        let mut raw = Raw::send_until_open(uri, channel_max, frame_max, heartbeat).await;
        match raw.next_method().await {
            Some((0, AMQPClass::Connection(connection::AMQPMethod::OpenOk(_)))) => raw,
            other => panic!("expected connection.open-ok, got {other:?}"),
        }
    }

    /// A handshake whose tune-ok carries values the broker may refuse: sends
    /// everything up to connection.open and returns without reading further.
    pub async fn open_expecting_close(uri: &str, channel_max: u16, frame_max: u32) -> Raw {
        Raw::send_until_open(uri, channel_max, frame_max, 0).await
    }

    async fn send_until_open(uri: &str, channel_max: u16, frame_max: u32, heartbeat: u16) -> Raw {
        let (mut raw, _) = Raw::start(uri).await;
        let mut caps = FieldTable::default();
        caps.insert("authentication_failure_close".into(), true.into());
        caps.insert("consumer_cancel_notify".into(), true.into());
        let mut props = FieldTable::default();
        props.insert("capabilities".into(), caps.into());
        raw.send_method(
            0,
            AMQPClass::Connection(connection::AMQPMethod::StartOk(connection::StartOk {
                client_properties: props,
                mechanism: ShortString::from("PLAIN"),
                response: LongString::from(&b"\0guest\0guest"[..]),
                locale: ShortString::from("en_US"),
            })),
        )
        .await;
        match raw.next_method().await {
            Some((0, AMQPClass::Connection(connection::AMQPMethod::Tune(_)))) => {}
            other => panic!("expected connection.tune, got {other:?}"),
        }
        raw.send_method(
            0,
            AMQPClass::Connection(connection::AMQPMethod::TuneOk(connection::TuneOk {
                channel_max,
                frame_max,
                heartbeat,
            })),
        )
        .await;
        raw.send_method(
            0,
            AMQPClass::Connection(connection::AMQPMethod::Open(connection::Open {
                virtual_host: ShortString::from("/"),
            })),
        )
        .await;
        raw
    }

    /// Declares a queue on `channel` and waits for declare-ok.
    pub async fn declare_queue(
        &mut self,
        channel: u16,
        name: &str,
        durable: bool,
        exclusive: bool,
    ) {
        use amq_protocol::protocol::queue;
        self.send_method(channel, queue_declare(name, durable, exclusive))
            .await;
        match self.next_method().await {
            Some((c, AMQPClass::Queue(queue::AMQPMethod::DeclareOk(_)))) if c == channel => {}
            other => panic!("expected queue.declare-ok, got {other:?}"),
        }
    }

    /// Opens channel `id` and waits for open-ok.
    pub async fn open_channel(&mut self, id: u16) {
        use amq_protocol::protocol::channel;
        self.send_method(
            id,
            AMQPClass::Channel(channel::AMQPMethod::Open(channel::Open {})),
        )
        .await;
        match self.next_method().await {
            Some((ch, AMQPClass::Channel(channel::AMQPMethod::OpenOk(_)))) if ch == id => {}
            other => panic!("expected channel.open-ok, got {other:?}"),
        }
    }

    /// Closes channel `id` (reply 200) and waits for close-ok.
    pub async fn close_channel(&mut self, id: u16) {
        use amq_protocol::protocol::channel;
        self.send_method(id, channel_close()).await;
        match self.next_method().await {
            Some((ch, AMQPClass::Channel(channel::AMQPMethod::CloseOk(_)))) if ch == id => {}
            other => panic!("expected channel.close-ok, got {other:?}"),
        }
    }

    /// Waits for connection.close (skipping other frames), answers close-ok, and checks
    /// that the broker then closes the socket. Returns (code, text, class, method).
    pub async fn expect_connection_close(&mut self) -> (u16, String, u16, u16) {
        loop {
            match self.next().await {
                Got::Frame(AMQPFrame::Method(
                    0,
                    AMQPClass::Connection(connection::AMQPMethod::Close(c)),
                )) => {
                    // The broker may already have closed the socket (RabbitMQ does
                    // after handshake errors), so a failed write is fine here.
                    let close_ok = method_frame(
                        0,
                        AMQPClass::Connection(connection::AMQPMethod::CloseOk(
                            connection::CloseOk {},
                        )),
                    );
                    let _ = self.stream.write_all(&close_ok).await;
                    self.expect_eof().await;
                    return (
                        c.reply_code,
                        c.reply_text.to_string(),
                        c.class_id,
                        c.method_id,
                    );
                }
                Got::Frame(_) => continue,
                Got::Eof => panic!("socket closed without connection.close"),
            }
        }
    }

    /// Reads until the broker closes the socket (frames before that are ignored).
    pub async fn expect_eof(&mut self) {
        loop {
            match self.next().await {
                Got::Eof => return,
                Got::Frame(_) => continue,
            }
        }
    }
}
