//! Frame decoding and encoding.
//!
//! Method and content-header frames are parsed by `amq-protocol`. This module adds what
//! a server needs around it: the negotiated frame-size limit, zero-copy body frames
//! (`Bytes` sliced out of the read buffer), and the raw property bytes of each content
//! header, which are sent back verbatim on delivery so that every property and header
//! table reaches consumers bit for bit as the publisher wrote it.

use crate::protocol::error::ProtocolError;
use crate::protocol::nesting::{method_tables_within_limit, properties_within_limit};
// The pre-check is part of decoding: its limit and walk are reached through here too.
pub use crate::protocol::nesting::{MAX_TABLE_DEPTH, TooDeep, table_within_limit};
use amq_protocol::frame::parsing::parse_content_header;
use amq_protocol::frame::{AMQPFrame, WriteContext, gen_frame};
use amq_protocol::protocol::{AMQPClass, BasicProperties, basic, parse_class};
use amq_protocol::types::ShortString;
use amq_protocol::types::generation::{
    gen_id, gen_long_long_uint, gen_short_short_uint, gen_short_string,
};
use amq_protocol::types::parsing::{parse_short_short_uint, parse_short_uint};
use bytes::{Buf, Bytes, BytesMut};
use tokio_util::codec::Decoder;

pub const FRAME_METHOD: u8 = 1;
pub const FRAME_HEADER: u8 = 2;
pub const FRAME_BODY: u8 = 3;
pub const FRAME_HEARTBEAT: u8 = 8;
pub const FRAME_END: u8 = 0xCE;
/// Bytes a frame adds around its payload: type, channel, size, frame-end.
pub const FRAME_OVERHEAD: usize = 8;
/// The protocol header of AMQP 0-9-1, sent back to clients that open with another one.
pub const PROTOCOL_HEADER: &[u8; 8] = b"AMQP\x00\x00\x09\x01";
/// Class id of `basic`, the only class with content.
const BASIC_CLASS_ID: u16 = 60;
/// Method id of basic.deliver.
const BASIC_DELIVER: u16 = 60;

/// A decoded frame.
#[derive(Debug)]
pub enum Frame {
    Method(u16, AMQPClass),
    Header(u16, Box<ContentHeader>),
    Body(u16, Bytes),
    Heartbeat(u16),
    /// A content header whose payload does not parse: a frame error only where a
    /// content header is expected (RabbitMQ checks the frame's place first).
    MalformedHeader(u16),
}

impl Frame {
    pub fn channel(&self) -> u16 {
        match self {
            Frame::Method(c, _)
            | Frame::Header(c, _)
            | Frame::Body(c, _)
            | Frame::Heartbeat(c)
            | Frame::MalformedHeader(c) => *c,
        }
    }
}

/// A content header: the parsed properties, plus their encoded form as received.
#[derive(Debug)]
pub struct ContentHeader {
    pub class_id: u16,
    pub body_size: u64,
    pub properties: BasicProperties,
    /// Property flags and property list exactly as the publisher encoded them.
    pub raw_properties: Bytes,
}

/// Most bytes [`FrameDecoder`] reserves ahead of those received for a frame whose size
/// it has read.
pub const MAX_RESERVE: usize = 64 * 1024;

/// Splits the byte stream into frames, enforcing the negotiated `frame_max`.
pub struct FrameDecoder {
    /// Largest whole frame accepted, overhead included. 0 means no limit.
    pub frame_max: u32,
}

impl Decoder for FrameDecoder {
    type Item = Frame;
    type Error = ProtocolError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, ProtocolError> {
        if src.len() < 7 {
            return Ok(None);
        }
        let kind = src[0];
        let channel = u16::from_be_bytes([src[1], src[2]]);
        let size = u32::from_be_bytes([src[3], src[4], src[5], src[6]]) as usize;
        // Like RabbitMQ, accept payloads up to frame_max itself: clients often get the
        // limit wrong by the 8 bytes of frame overhead (rabbit_reader FRAME_SIZE_FUDGE).
        if self.frame_max != 0 && size > self.frame_max as usize {
            return Err(ProtocolError::Frame(format!(
                "type {kind}, all octets = <<>>: {{frame_too_large,{size},{}}}",
                (self.frame_max as usize).saturating_sub(FRAME_OVERHEAD)
            )));
        }
        let total = size + FRAME_OVERHEAD;
        if src.len() < total {
            // Room for the bytes still to come, but never more than MAX_RESERVE ahead of
            // what arrived: the size is only a claim (up to 4 GiB when frame_max is 0 or
            // large), and the buffer grows further as the bytes do arrive.
            src.reserve((total - src.len()).min(MAX_RESERVE));
            return Ok(None);
        }
        if !matches!(
            kind,
            FRAME_METHOD | FRAME_HEADER | FRAME_BODY | FRAME_HEARTBEAT
        ) {
            return Err(ProtocolError::Frame(format!(
                "type {kind}, {}: unknown_frame",
                payload_snippet(&src[7..total - 1])
            )));
        }
        if src[total - 1] != FRAME_END {
            return Err(ProtocolError::Frame(format!(
                "type {kind}, all octets = <<>>: {{invalid_frame_end_marker,{}}}",
                src[total - 1]
            )));
        }
        match kind {
            FRAME_BODY => {
                src.advance(7);
                let body = src.split_to(size).freeze();
                src.advance(1);
                Ok(Some(Frame::Body(channel, body)))
            }
            FRAME_HEARTBEAT => {
                src.advance(total);
                Ok(Some(Frame::Heartbeat(channel)))
            }
            FRAME_METHOD => {
                // Parsed in place; the frame's bytes leave the buffer whatever the
                // outcome, so that reading goes on after a refused method (the close
                // handshake that follows reads the client's close-ok).
                let result = decode_method(channel, &src[..total]);
                src.advance(total);
                result
            }
            _ => {
                let frame = src.split_to(total).freeze();
                // Payload: class (2), weight (2), body size (8), then properties.
                if size >= 14 && !properties_within_limit(&frame[7 + 12..total - 1]) {
                    // Refused like any content header whose properties do not decode.
                    tracing::debug!("headers table nested too deeply");
                    return Ok(Some(Frame::MalformedHeader(channel)));
                }
                match parse_content_header(&frame[7..total - 1]) {
                    Ok(([], header)) => {
                        let raw_properties = frame.slice(7 + 12..total - 1);
                        Ok(Some(Frame::Header(
                            channel,
                            Box::new(ContentHeader {
                                class_id: header.class_id,
                                body_size: header.body_size,
                                properties: header.properties,
                                raw_properties,
                            }),
                        )))
                    }
                    // Shorter than its fixed fields: RabbitMQ cannot read it as a frame.
                    _ if size < 14 => Err(ProtocolError::Frame(format!(
                        "type 2, {}: unknown_frame",
                        payload_snippet(&frame[7..total - 1])
                    ))),
                    _ => Ok(Some(Frame::MalformedHeader(channel))),
                }
            }
        }
    }
}

/// A method frame (whole, envelope checked) read into its method.
fn decode_method(channel: u16, frame: &[u8]) -> Result<Option<Frame>, ProtocolError> {
    if frame.len() < FRAME_OVERHEAD + 4 {
        return Err(ProtocolError::Frame("method frame too short".into()));
    }
    // The envelope is checked: the payload goes straight to amq-protocol's method
    // parser, without becoming a `Bytes` of its own.
    let payload = &frame[7..frame.len() - 1];
    let class_id = u16::from_be_bytes([payload[0], payload[1]]);
    let method_id = u16::from_be_bytes([payload[2], payload[3]]);
    let fields = &payload[4..];
    // basic.qos: amq-protocol drops prefetch-size (the first field), which
    // RabbitMQ refuses when it is not zero.
    if (class_id, method_id) == (60, 10) && fields.len() >= 4 {
        let prefetch_size = u32::from_be_bytes([fields[0], fields[1], fields[2], fields[3]]);
        if prefetch_size != 0 {
            return Err(ProtocolError::MethodNotImplemented(
                60,
                10,
                format!("prefetch_size!=0 ({prefetch_size})"),
            ));
        }
    }
    if !method_tables_within_limit(class_id, method_id, fields) {
        // Refused like any method frame whose fields do not decode.
        tracing::debug!(class_id, method_id, "field table nested too deeply");
        return Err(ProtocolError::Undecodable(
            class_id,
            method_id,
            fields_prefix(fields),
        ));
    }
    let method = if (class_id, method_id) == (60, 40) {
        parse_publish(fields)
    } else {
        None
    };
    let method = method.or_else(|| match parse_class(payload) {
        Ok(([], method)) => Some(method),
        _ => None,
    });
    match method {
        Some(method) => Ok(Some(Frame::Method(channel, method))),
        None if !is_known_method(class_id, method_id) => {
            Err(ProtocolError::UnknownMethod(class_id, method_id))
        }
        None => Err(ProtocolError::Undecodable(
            class_id,
            method_id,
            fields_prefix(fields),
        )),
    }
}

/// basic.publish's fields (after class and method ids), the method every published
/// message starts with. amq-protocol's generated parser reads its two flags into a
/// list of named flags (a `Vec` and two `String`s per publish, then a search by
/// name) and collects each short string byte by byte; this reads the ticket and
/// the flags octet with amq-protocol's field parsers, the flags as bits, and the two
/// names as one length octet and UTF-8 bytes copied at once. `None` when anything
/// does not parse: the caller then asks the full parser, which names the error.
fn parse_publish(fields: &[u8]) -> Option<AMQPClass> {
    let (fields, _ticket) = parse_short_uint(fields).ok()?;
    let (fields, exchange) = short_string(fields)?;
    let (fields, routing_key) = short_string(fields)?;
    let (fields, flags) = parse_short_short_uint(fields).ok()?;
    if !fields.is_empty() {
        return None;
    }
    Some(AMQPClass::Basic(basic::AMQPMethod::Publish(
        basic::Publish {
            exchange,
            routing_key,
            mandatory: flags & 1 != 0,
            immediate: flags & 2 != 0,
        },
    )))
}

/// A short string at the start of `fields` (a length octet, then that many bytes of
/// UTF-8, as amq-protocol's `parse_short_string` reads it), and the bytes after it.
fn short_string(fields: &[u8]) -> Option<(&[u8], ShortString)> {
    let (&len, rest) = fields.split_first()?;
    let (text, rest) = rest.split_at_checked(usize::from(len))?;
    let text = std::str::from_utf8(text).ok()?;
    Some((rest, ShortString::from(text)))
}

/// A frame payload the way RabbitMQ quotes it in frame errors: `all octets = <<...>>`
/// up to 16 bytes, else `first 16 octets = <<...>>`, printed as Erlang's `~tp` prints
/// a binary (`<<"text">>` when printable, `<<1,2,3>>` otherwise).
pub fn payload_snippet(payload: &[u8]) -> String {
    let (which, bytes) = if payload.len() <= 16 {
        ("all", payload)
    } else {
        ("first 16", &payload[..16])
    };
    let printable = !bytes.is_empty() && bytes.iter().all(|b| (0x20..0x7f).contains(b));
    let shown = if printable {
        let text: String = bytes
            .iter()
            .map(|&b| match b {
                b'"' => "\\\"".to_string(),
                b'\\' => "\\\\".to_string(),
                b => (b as char).to_string(),
            })
            .collect();
        format!("<<\"{text}\">>")
    } else {
        let list: Vec<String> = bytes.iter().map(|b| b.to_string()).collect();
        format!("<<{}>>", list.join(","))
    };
    format!("{which} octets = {shown}")
}

/// The start of a method's fields, as much as a reply text can quote.
fn fields_prefix(fields: &[u8]) -> Vec<u8> {
    fields[..fields.len().min(96)].to_vec()
}

/// Whether (class, method) exists in AMQP 0-9-1 with RabbitMQ's extensions.
fn is_known_method(class_id: u16, method_id: u16) -> bool {
    let methods: &[u16] = match class_id {
        10 => &[10, 11, 20, 21, 30, 31, 40, 41, 50, 51, 60, 61, 70, 71],
        20 => &[10, 11, 20, 21, 40, 41],
        30 => &[10, 11],
        40 => &[10, 11, 20, 21, 30, 31, 40, 51],
        50 => &[10, 11, 20, 21, 30, 31, 40, 41, 50, 51],
        60 => &[
            10, 11, 20, 21, 30, 31, 40, 50, 60, 70, 71, 72, 80, 90, 100, 110, 111, 120,
        ],
        85 => &[10, 11],
        90 => &[10, 11, 20, 21, 30, 31],
        _ => &[],
    };
    methods.contains(&method_id)
}

/// Appends one method frame to `out`.
pub fn write_method(out: &mut Vec<u8>, channel: u16, method: AMQPClass) {
    let frame = AMQPFrame::Method(channel, method);
    let buf = std::mem::take(out);
    let start = buf.len();
    match gen_frame(&frame)(WriteContext::from(buf)) {
        Ok(ctx) => *out = ctx.into_inner().0,
        Err(error) => {
            // Generation into a Vec only fails on a value the protocol cannot carry
            // (e.g. a short string over 255 bytes); the frame is skipped and logged.
            tracing::error!(%error, "cannot encode method frame");
            out.truncate(start);
        }
    }
}

/// Appends a basic.deliver method frame to `out`: the frame every delivery starts
/// with, written from borrowed names (the consumer's tag, the message's exchange
/// and routing key) instead of an owned amq-protocol value built per delivery. Each
/// field is encoded by amq-protocol's field generators; `redelivered`, the method's
/// only flag, is the low bit of its flags octet. Tests compare the bytes with
/// amq-protocol's own frame generator.
pub fn write_deliver(
    out: &mut Vec<u8>,
    channel: u16,
    consumer_tag: &str,
    delivery_tag: u64,
    redelivered: bool,
    exchange: &str,
    routing_key: &str,
) {
    let strings = [consumer_tag, exchange, routing_key];
    if strings.iter().any(|s| s.len() > usize::from(u8::MAX)) {
        // Cannot come from the wire (all three arrived as short strings).
        tracing::error!("cannot encode basic.deliver: a name is over 255 bytes");
        return;
    }
    let start = out.len();
    out.push(FRAME_METHOD);
    out.extend_from_slice(&channel.to_be_bytes());
    out.extend_from_slice(&[0; 4]);
    let fields = |ctx| {
        let ctx = gen_id(BASIC_CLASS_ID)(ctx)?;
        let ctx = gen_id(BASIC_DELIVER)(ctx)?;
        let ctx = gen_short_string(consumer_tag)(ctx)?;
        let ctx = gen_long_long_uint(delivery_tag)(ctx)?;
        let ctx = gen_short_short_uint(u8::from(redelivered))(ctx)?;
        let ctx = gen_short_string(exchange)(ctx)?;
        gen_short_string(routing_key)(ctx)
    };
    if let Err(error) = fields(WriteContext::from(&mut *out)) {
        // Writing into a Vec does not fail; the frame is dropped if it ever does.
        tracing::error!(%error, "cannot encode basic.deliver");
        out.truncate(start);
        return;
    }
    let size = (out.len() - start - 7) as u32;
    out[start + 3..start + 7].copy_from_slice(&size.to_be_bytes());
    out.push(FRAME_END);
}

/// Appends a content header and the body frames carrying `body` to `out`, splitting
/// the body so that no frame exceeds `frame_max` (0: no limit).
pub fn write_content(
    out: &mut Vec<u8>,
    channel: u16,
    raw_properties: &[u8],
    body: &[u8],
    frame_max: u32,
) {
    let header_size = 12 + raw_properties.len();
    out.reserve(header_size + body.len() + 2 * FRAME_OVERHEAD);
    out.push(FRAME_HEADER);
    out.extend_from_slice(&channel.to_be_bytes());
    out.extend_from_slice(&(header_size as u32).to_be_bytes());
    out.extend_from_slice(&BASIC_CLASS_ID.to_be_bytes());
    out.extend_from_slice(&0u16.to_be_bytes());
    out.extend_from_slice(&(body.len() as u64).to_be_bytes());
    out.extend_from_slice(raw_properties);
    out.push(FRAME_END);
    let chunk = if frame_max == 0 {
        usize::MAX
    } else {
        frame_max as usize - FRAME_OVERHEAD
    };
    for part in body.chunks(chunk) {
        out.push(FRAME_BODY);
        out.extend_from_slice(&channel.to_be_bytes());
        out.extend_from_slice(&(part.len() as u32).to_be_bytes());
        out.extend_from_slice(part);
        out.push(FRAME_END);
    }
}

/// Appends a heartbeat frame to `out`.
pub fn write_heartbeat(out: &mut Vec<u8>) {
    out.extend_from_slice(&[FRAME_HEARTBEAT, 0, 0, 0, 0, 0, 0, FRAME_END]);
}

/// Reads frames from a socket through a [`FrameDecoder`]. `next` is cancel-safe, so it
/// can sit in a `select!`; `next_buffered` drains frames already received without
/// touching the socket, which lets the connection handle a burst before flushing.
pub struct FrameReader {
    socket: crate::tls::stream::ReadHalf,
    buf: BytesMut,
    pub decoder: FrameDecoder,
    /// Bytes read from the socket so far.
    pub received: u64,
}

impl FrameReader {
    pub fn new(socket: crate::tls::stream::ReadHalf, frame_max: u32) -> FrameReader {
        FrameReader {
            socket,
            buf: BytesMut::with_capacity(64 * 1024),
            decoder: FrameDecoder { frame_max },
            received: 0,
        }
    }

    /// The next frame; `None` when the peer closed the socket.
    pub async fn next(&mut self) -> Result<Option<Frame>, ProtocolError> {
        use tokio::io::AsyncReadExt;
        loop {
            if let Some(frame) = self.decoder.decode(&mut self.buf)? {
                return Ok(Some(frame));
            }
            if self.buf.capacity() - self.buf.len() < 4096 {
                self.buf.reserve(64 * 1024);
            }
            let n = self.socket.read_buf(&mut self.buf).await?;
            if n == 0 {
                return Ok(None);
            }
            self.received += n as u64;
        }
    }

    /// Makes the coming close of the socket a reset (RST) rather than a normal close.
    pub fn reset_on_close(&self) {
        self.socket.reset_on_close();
    }

    /// Reads and drops raw bytes until the peer closes the socket (or it fails): for
    /// a stream that can no longer be parsed as frames.
    pub async fn discard_all(&mut self) {
        use tokio::io::AsyncReadExt;
        loop {
            self.buf.clear();
            if self.buf.capacity() < 4096 {
                self.buf.reserve(64 * 1024);
            }
            match self.socket.read_buf(&mut self.buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    }

    /// A frame already in the read buffer, if a whole one is there.
    pub fn next_buffered(&mut self) -> Result<Option<Frame>, ProtocolError> {
        self.decoder.decode(&mut self.buf)
    }
}

#[cfg(test)]
#[path = "codec_tests.rs"]
pub(crate) mod tests;
