//! Lean clients that speak AMQP 0-9-1 themselves: one socket, one channel, no per-message
//! allocation. The handshake and rare control frames go through amq-protocol; the hot
//! frames are written and scanned by hand:
//!
//! - a producer writes a batch of messages (each a publish method, a content header and
//!   the body frames) into one reused buffer and sends it with one write;
//! - a consumer reads into a large reused buffer and scans the frames where they lie; of a
//!   delivery it keeps only the delivery tag and the first 8 body bytes (the send time),
//!   and its acks for one read go out in one write.
//!
//! With `--client raw`, topology and confirming producers still go through amqprs. This
//! keeps the load generator's own cost low on a machine it shares with the broker.

use crate::client::{ConsumerOptions, Delivery, PublisherOptions, stream_offset_table};
use amq_protocol::frame::{AMQPFrame, WriteContext, gen_frame, parse_frame};
use amq_protocol::protocol::{AMQPClass, basic, channel, connection};
use amq_protocol::types::{AMQPValue, FieldTable, LongString, ShortString};
use amq_protocol_uri::AMQPUri;
use anyhow::{Result, anyhow, bail};
use std::str::FromStr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const FRAME_METHOD: u8 = 1;
const FRAME_HEADER: u8 = 2;
const FRAME_BODY: u8 = 3;
const FRAME_END: u8 = 0xCE;
const CLASS_BASIC: u16 = 60;
const BASIC_PUBLISH: u16 = 40;
const BASIC_DELIVER: u16 = 60;
const BASIC_ACK: u16 = 80;
/// The channel every raw client uses.
const CHANNEL: u16 = 1;
/// Read buffer size; it grows if the broker's frame_max needs more.
const READ_BUF: usize = 512 * 1024;
/// Bytes a producer puts into one write (unless a rate or count limits the batch).
pub const WRITE_BATCH_BYTES: usize = 64 * 1024;

/// One AMQP connection with channel 1 open.
struct Conn {
    stream: TcpStream,
    /// Bytes read but not yet consumed are `buf[start..end]`.
    buf: Vec<u8>,
    start: usize,
    end: usize,
    out: Vec<u8>,
    frame_max: usize,
}

fn encode(out: &mut Vec<u8>, frame: &AMQPFrame) -> Result<()> {
    let buf = std::mem::take(out);
    let (buf, _) = gen_frame(frame)(WriteContext::from(buf))
        .map_err(|e| anyhow!("frame generation: {e:?}"))?
        .into_inner();
    *out = buf;
    Ok(())
}

fn be_u16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn be_u64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_be_bytes(a)
}

/// Appends a frame header (type, channel, payload size).
fn frame_head(out: &mut Vec<u8>, kind: u8, size: usize) {
    out.push(kind);
    out.extend_from_slice(&CHANNEL.to_be_bytes());
    out.extend_from_slice(&(size as u32).to_be_bytes());
}

fn short_str(out: &mut Vec<u8>, s: &str) -> Result<()> {
    let len = u8::try_from(s.len()).map_err(|_| anyhow!("short string too long: {s}"))?;
    out.push(len);
    out.extend_from_slice(s.as_bytes());
    Ok(())
}

impl Conn {
    async fn send(&mut self, channel: u16, method: AMQPClass) -> Result<()> {
        encode(&mut self.out, &AMQPFrame::Method(channel, method))?;
        self.flush().await
    }

    async fn flush(&mut self) -> Result<()> {
        if !self.out.is_empty() {
            self.stream.write_all(&self.out).await?;
            self.out.clear();
        }
        Ok(())
    }

    /// Reads once more from the socket (after making room).
    async fn fill(&mut self) -> Result<()> {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        } else if self.buf.len() - self.end < self.buf.len() / 4 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        let want = self.frame_max + 8;
        if self.buf.len() - self.start < want {
            self.buf.resize(self.start + want, 0);
        }
        let n = self.stream.read(&mut self.buf[self.end..]).await?;
        if n == 0 {
            bail!("connection closed by the broker");
        }
        self.end += n;
        Ok(())
    }

    /// The size of the whole frame at the start of the buffer, if it is all there.
    fn whole_frame(&self) -> Option<usize> {
        let b = &self.buf[self.start..self.end];
        if b.len() < 7 {
            return None;
        }
        let size = u32::from_be_bytes([b[3], b[4], b[5], b[6]]) as usize + 8;
        (b.len() >= size).then_some(size)
    }

    /// Parses one whole buffered frame with amq-protocol (control frames only).
    fn parse_one(&mut self) -> Result<Option<AMQPFrame>> {
        let Some(size) = self.whole_frame() else {
            return Ok(None);
        };
        let (_, frame) = parse_frame(&self.buf[self.start..self.start + size])
            .map_err(|e| anyhow!("bad frame from the broker: {e:?}"))?;
        self.start += size;
        Ok(Some(frame))
    }

    async fn frame(&mut self) -> Result<AMQPFrame> {
        loop {
            if let Some(f) = self.parse_one()? {
                return Ok(f);
            }
            self.fill().await?;
        }
    }

    async fn expect(&mut self, what: &str) -> Result<AMQPClass> {
        match self.frame().await? {
            AMQPFrame::Method(_, AMQPClass::Connection(connection::AMQPMethod::Close(c))) => {
                bail!(
                    "{what}: connection closed: {} {}",
                    c.reply_code,
                    c.reply_text
                )
            }
            AMQPFrame::Method(_, AMQPClass::Channel(channel::AMQPMethod::Close(c))) => {
                bail!("{what}: channel closed: {} {}", c.reply_code, c.reply_text)
            }
            AMQPFrame::Method(_, m) => Ok(m),
            other => bail!("{what}: unexpected frame {other:?}"),
        }
    }

    /// A connection with channel 1 open.
    async fn open(uri: &str) -> Result<Self> {
        let uri = AMQPUri::from_str(uri).map_err(|e| anyhow!("bad uri: {e}"))?;
        let stream = TcpStream::connect((uri.authority.host.as_str(), uri.authority.port)).await?;
        stream.set_nodelay(true)?;
        let mut c = Conn {
            stream,
            buf: vec![0; 4096],
            start: 0,
            end: 0,
            out: Vec::with_capacity(4096),
            frame_max: 4096,
        };
        c.stream.write_all(b"AMQP\x00\x00\x09\x01").await?;
        let AMQPClass::Connection(connection::AMQPMethod::Start(_)) =
            c.expect("connection.start").await?
        else {
            bail!("expected connection.start");
        };
        let mut caps = FieldTable::default();
        caps.insert(
            "authentication_failure_close".into(),
            AMQPValue::Boolean(true),
        );
        caps.insert("consumer_cancel_notify".into(), AMQPValue::Boolean(true));
        let mut props = FieldTable::default();
        props.insert(
            "product".into(),
            AMQPValue::LongString("warren-perf".into()),
        );
        props.insert("capabilities".into(), AMQPValue::FieldTable(caps));
        let response = format!(
            "\0{}\0{}",
            uri.authority.userinfo.username, uri.authority.userinfo.password
        );
        c.send(
            0,
            AMQPClass::Connection(connection::AMQPMethod::StartOk(connection::StartOk {
                client_properties: props,
                mechanism: ShortString::from("PLAIN"),
                response: LongString::from(response.as_bytes()),
                locale: ShortString::from("en_US"),
            })),
        )
        .await?;
        let tune = match c.expect("connection.tune").await? {
            AMQPClass::Connection(connection::AMQPMethod::Tune(t)) => t,
            other => bail!("expected connection.tune, got {other:?}"),
        };
        // 0 means no limit; keep frames (and so the read buffer) bounded anyway.
        let frame_max = if tune.frame_max == 0 {
            131_072
        } else {
            tune.frame_max.min(1 << 20)
        };
        c.send(
            0,
            AMQPClass::Connection(connection::AMQPMethod::TuneOk(connection::TuneOk {
                channel_max: tune.channel_max,
                frame_max,
                heartbeat: 0,
            })),
        )
        .await?;
        c.frame_max = frame_max as usize;
        c.send(
            0,
            AMQPClass::Connection(connection::AMQPMethod::Open(connection::Open {
                virtual_host: ShortString::from(uri.vhost.as_str()),
            })),
        )
        .await?;
        c.expect("connection.open-ok").await?;
        c.send(
            CHANNEL,
            AMQPClass::Channel(channel::AMQPMethod::Open(channel::Open {})),
        )
        .await?;
        c.expect("channel.open-ok").await?;
        Ok(c)
    }

    async fn close(mut self) {
        let _ = self
            .send(
                0,
                AMQPClass::Connection(connection::AMQPMethod::Close(connection::Close {
                    reply_code: 200,
                    reply_text: ShortString::from("bye"),
                    class_id: 0,
                    method_id: 0,
                })),
            )
            .await;
        let _ = tokio::time::timeout(std::time::Duration::from_secs(2), async {
            loop {
                match self.frame().await {
                    Ok(AMQPFrame::Method(
                        0,
                        AMQPClass::Connection(connection::AMQPMethod::CloseOk(_)),
                    ))
                    | Err(_) => return,
                    Ok(_) => {}
                }
            }
        })
        .await;
    }
}

/// A bare connection with channel 1 open, for the scale rows: idle connections, and
/// pipelined declarations (methods queued, one write, replies read in order).
pub struct Control(Conn);

impl Control {
    pub async fn open(uri: &str) -> Result<Self> {
        Ok(Control(Conn::open(uri).await?))
    }

    /// Queues a method on channel 1 (sent by the next `flush`).
    pub fn push(&mut self, method: AMQPClass) -> Result<()> {
        encode(&mut self.0.out, &AMQPFrame::Method(CHANNEL, method))
    }

    pub async fn flush(&mut self) -> Result<()> {
        self.0.flush().await
    }

    /// The next method from the broker (an error for connection.close or channel.close).
    pub async fn expect(&mut self, what: &str) -> Result<AMQPClass> {
        self.0.expect(what).await
    }

    pub async fn close(self) {
        self.0.close().await;
    }
}

/// The delivery being received: its tag, body bytes still to come, and its first 8 bytes.
struct Partial {
    tag: u64,
    remaining: u64,
    head: [u8; 8],
    head_len: usize,
}

pub struct Consumer {
    conn: Conn,
    partial: Option<Partial>,
    /// Manual acks: ack every Nth delivery (`multiple` when N > 1); None with auto-ack.
    ack_every: Option<u64>,
    received: u64,
}

impl Consumer {
    pub async fn connect(uri: &str, opts: ConsumerOptions) -> Result<Self> {
        let mut c = Conn::open(uri).await?;
        if opts.prefetch > 0 {
            c.send(
                CHANNEL,
                AMQPClass::Basic(basic::AMQPMethod::Qos(basic::Qos {
                    prefetch_count: opts.prefetch,
                    global: false,
                })),
            )
            .await?;
            c.expect("basic.qos-ok").await?;
        }
        c.send(
            CHANNEL,
            AMQPClass::Basic(basic::AMQPMethod::Consume(basic::Consume {
                queue: ShortString::from(opts.queue.as_str()),
                consumer_tag: ShortString::from(""),
                no_local: false,
                no_ack: opts.auto_ack,
                exclusive: false,
                nowait: false,
                arguments: stream_offset_table(opts.stream_offset.as_deref()),
            })),
        )
        .await?;
        match c.expect("basic.consume-ok").await? {
            AMQPClass::Basic(basic::AMQPMethod::ConsumeOk(_)) => {}
            other => bail!("expected basic.consume-ok, got {other:?}"),
        }
        // Deliveries may follow at once: the buffer grows to its working size now.
        let size = READ_BUF.max(c.frame_max * 2 + 16);
        c.buf.resize(size, 0);
        Ok(Consumer {
            conn: c,
            partial: None,
            ack_every: None,
            received: 0,
        })
    }

    /// Manual acks: ack every `n`th delivery (n = 1: each one; n > 1: `multiple`).
    pub fn ack_every(&mut self, n: u64) {
        self.ack_every = Some(n.max(1));
    }

    /// Waits for at least one complete delivery unless some are buffered, then handles
    /// every whole frame in the buffer: `on(first 8 body bytes)` per completed delivery
    /// and the acks they call for, sent in one write. Returns the number of deliveries.
    pub async fn read_batch(&mut self, mut on: impl FnMut(&[u8])) -> Result<u64> {
        loop {
            let n = self.scan(u64::MAX, &mut |_, head| on(head))?;
            self.conn.flush().await?;
            if n > 0 {
                return Ok(n);
            }
            self.conn.fill().await?;
        }
    }

    /// Handles the whole frames in the buffer, in place, up to `limit` deliveries:
    /// `on(tag, first 8 body bytes)` for each.
    fn scan(&mut self, limit: u64, on: &mut impl FnMut(u64, &[u8])) -> Result<u64> {
        let mut done = 0;
        while done < limit
            && let Some(size) = self.conn.whole_frame()
        {
            let at = self.conn.start;
            let b = &self.conn.buf[at..at + size];
            let payload = &b[7..size - 1];
            if b[size - 1] != FRAME_END {
                bail!("frame without frame-end from the broker");
            }
            match b[0] {
                FRAME_METHOD
                    if payload.len() >= 4
                        && be_u16(payload, 0) == CLASS_BASIC
                        && be_u16(payload, 2) == BASIC_DELIVER =>
                {
                    // consumer-tag (short string), then the delivery tag.
                    let skip = 5 + payload[4] as usize;
                    if payload.len() < skip + 8 {
                        bail!("short basic.deliver from the broker");
                    }
                    self.partial = Some(Partial {
                        tag: be_u64(payload, skip),
                        remaining: u64::MAX,
                        head: [0; 8],
                        head_len: 0,
                    });
                }
                FRAME_METHOD => {
                    self.control()?;
                    continue;
                }
                FRAME_HEADER if payload.len() >= 12 => {
                    if let Some(p) = self.partial.as_mut() {
                        p.remaining = be_u64(payload, 4);
                    }
                }
                FRAME_BODY => {
                    if let Some(p) = self.partial.as_mut() {
                        let take = (8 - p.head_len).min(payload.len());
                        p.head[p.head_len..p.head_len + take].copy_from_slice(&payload[..take]);
                        p.head_len += take;
                        p.remaining = p.remaining.saturating_sub(payload.len() as u64);
                    }
                }
                _ => {}
            }
            self.conn.start += size;
            if let Some(p) = self.partial.as_ref().filter(|p| p.remaining == 0) {
                let tag = p.tag;
                on(tag, &p.head[..p.head_len]);
                self.partial = None;
                done += 1;
                self.received += 1;
                if let Some(every) = self.ack_every
                    && self.received.is_multiple_of(every)
                {
                    self.queue_ack(tag, every > 1);
                }
            }
        }
        Ok(done)
    }

    /// A method frame other than basic.deliver: errors for close and cancel.
    fn control(&mut self) -> Result<()> {
        match self.conn.parse_one()? {
            Some(AMQPFrame::Method(_, AMQPClass::Connection(connection::AMQPMethod::Close(c)))) => {
                bail!("connection closed: {} {}", c.reply_code, c.reply_text)
            }
            Some(AMQPFrame::Method(_, AMQPClass::Channel(channel::AMQPMethod::Close(c)))) => {
                bail!("channel closed: {} {}", c.reply_code, c.reply_text)
            }
            Some(AMQPFrame::Method(_, AMQPClass::Basic(basic::AMQPMethod::Cancel(_)))) => {
                bail!("consumer cancelled by the broker")
            }
            _ => Ok(()),
        }
    }

    fn queue_ack(&mut self, tag: u64, multiple: bool) {
        let out = &mut self.conn.out;
        frame_head(out, FRAME_METHOD, 13);
        out.extend_from_slice(&CLASS_BASIC.to_be_bytes());
        out.extend_from_slice(&BASIC_ACK.to_be_bytes());
        out.extend_from_slice(&tag.to_be_bytes());
        out.push(u8::from(multiple));
        out.push(FRAME_END);
    }

    /// One delivery at a time (the generic interface; the load loop uses `read_batch`).
    pub async fn next(&mut self) -> Option<Result<Delivery>> {
        let mut got = None;
        loop {
            let scanned = self.scan(1, &mut |tag, head: &[u8]| {
                got = Some(Delivery {
                    tag,
                    body: head.to_vec(),
                });
            });
            match scanned {
                Err(e) => return Some(Err(e)),
                Ok(0) => {}
                Ok(_) => return got.map(Ok),
            }
            if self.conn.fill().await.is_err() {
                return None;
            }
        }
    }

    pub async fn ack(&mut self, tag: u64, multiple: bool) -> Result<()> {
        self.queue_ack(tag, multiple);
        self.conn.flush().await
    }

    pub async fn close(self) {
        self.conn.close().await;
    }
}

/// A producer without publisher confirms.
pub struct Publisher {
    conn: Conn,
    /// The publish method frame and the content header frame up to the body size.
    method: Vec<u8>,
    /// The content header's property flags and properties.
    properties: Vec<u8>,
}

impl Publisher {
    pub async fn connect(uri: &str, opts: PublisherOptions) -> Result<Self> {
        if opts.confirms.is_some() {
            bail!("the raw producer does not do publisher confirms");
        }
        let conn = Conn::open(uri).await?;
        let mut args = Vec::new();
        args.extend_from_slice(&CLASS_BASIC.to_be_bytes());
        args.extend_from_slice(&BASIC_PUBLISH.to_be_bytes());
        args.extend_from_slice(&0u16.to_be_bytes()); // reserved (ticket)
        short_str(&mut args, &opts.route.exchange)?;
        short_str(&mut args, &opts.route.routing_key)?;
        args.push(0); // mandatory, immediate: off
        let mut method = Vec::new();
        frame_head(&mut method, FRAME_METHOD, args.len());
        method.extend_from_slice(&args);
        method.push(FRAME_END);
        let properties = if opts.persistent {
            // Flags: delivery-mode only; delivery-mode 2.
            vec![0x10, 0x00, 2]
        } else {
            vec![0x00, 0x00]
        };
        Ok(Publisher {
            conn,
            method,
            properties,
        })
    }

    /// Appends one message (method, header and body frames) to the write buffer. The body
    /// is `size` bytes: `stamp` (little-endian) in the first 8, zeros after.
    fn push(&mut self, size: usize, stamp: u64) {
        let out = &mut self.conn.out;
        out.extend_from_slice(&self.method);
        frame_head(out, FRAME_HEADER, 12 + self.properties.len());
        out.extend_from_slice(&CLASS_BASIC.to_be_bytes());
        out.extend_from_slice(&0u16.to_be_bytes()); // weight
        out.extend_from_slice(&(size as u64).to_be_bytes());
        out.extend_from_slice(&self.properties);
        out.push(FRAME_END);
        let stamp = stamp.to_le_bytes();
        let chunk = self.conn.frame_max - 8;
        let mut at = 0;
        while at < size {
            let n = chunk.min(size - at);
            frame_head(out, FRAME_BODY, n);
            let s = at.min(8);
            let e = (at + n).min(8);
            out.extend_from_slice(&stamp[s..e]);
            out.resize(out.len() + n - (e - s), 0);
            out.push(FRAME_END);
            at += n;
        }
    }

    /// Publishes `n` messages of `size` bytes with one write; each body starts with `stamp`.
    pub async fn publish_batch(&mut self, n: u64, size: usize, stamp: u64) -> Result<()> {
        for _ in 0..n {
            self.push(size, stamp);
        }
        self.conn.flush().await
    }

    /// Messages of `size` bytes that fit the write batch (at least one).
    pub fn batch_for(size: usize) -> u64 {
        (WRITE_BATCH_BYTES / (size + 64)).max(1) as u64
    }

    pub async fn publish(&mut self, body: Vec<u8>) -> Result<()> {
        let stamp = body
            .get(..8)
            .map_or(0, |b| u64::from_le_bytes(b.try_into().unwrap_or_default()));
        self.push(body.len(), stamp);
        self.conn.flush().await
    }

    pub async fn close(self) {
        self.conn.close().await;
    }
}
