//! Frame decoding and encoding.
//!
//! Method and content-header frames are parsed by `amq-protocol`. This module adds what
//! a server needs around it: the negotiated frame-size limit, zero-copy body frames
//! (`Bytes` sliced out of the read buffer), and the raw property bytes of each content
//! header, which are sent back verbatim on delivery so that every property and header
//! table reaches consumers bit for bit as the publisher wrote it.

use crate::protocol::error::ProtocolError;
use amq_protocol::frame::{AMQPFrame, WriteContext, gen_frame, parse_frame};
use amq_protocol::protocol::{AMQPClass, BasicProperties};
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

/// A decoded frame.
#[derive(Debug)]
pub enum Frame {
    Method(u16, Box<AMQPClass>),
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
                let frame = src.split_to(total).freeze();
                if size < 4 {
                    return Err(ProtocolError::Frame("method frame too short".into()));
                }
                let class_id = u16::from_be_bytes([frame[7], frame[8]]);
                let method_id = u16::from_be_bytes([frame[9], frame[10]]);
                // basic.qos: amq-protocol drops prefetch-size (the first field), which
                // RabbitMQ refuses when it is not zero.
                if (class_id, method_id) == (60, 10) && size >= 8 {
                    let prefetch_size =
                        u32::from_be_bytes([frame[11], frame[12], frame[13], frame[14]]);
                    if prefetch_size != 0 {
                        return Err(ProtocolError::MethodNotImplemented(
                            60,
                            10,
                            format!("prefetch_size!=0 ({prefetch_size})"),
                        ));
                    }
                }
                if !method_tables_within_limit(class_id, method_id, &frame[11..total - 1]) {
                    // Refused like any method frame whose fields do not decode.
                    tracing::debug!(class_id, method_id, "field table nested too deeply");
                    return Err(ProtocolError::Undecodable(
                        class_id,
                        method_id,
                        fields_prefix(&frame[11..total - 1]),
                    ));
                }
                match parse_frame(&frame[..]) {
                    Ok((_, AMQPFrame::Method(_, method))) => {
                        Ok(Some(Frame::Method(channel, Box::new(method))))
                    }
                    _ if !is_known_method(class_id, method_id) => {
                        Err(ProtocolError::UnknownMethod(class_id, method_id))
                    }
                    _ => Err(ProtocolError::Undecodable(
                        class_id,
                        method_id,
                        fields_prefix(&frame[11..total - 1]),
                    )),
                }
            }
            _ => {
                let frame = src.split_to(total).freeze();
                // Payload: class (2), weight (2), body size (8), then properties.
                if size >= 14 && !properties_within_limit(&frame[7 + 12..total - 1]) {
                    // Refused like any content header whose properties do not decode.
                    tracing::debug!("headers table nested too deeply");
                    return Ok(Some(Frame::MalformedHeader(channel)));
                }
                match parse_frame(&frame[..]) {
                    Ok((_, AMQPFrame::Header(_, header))) => {
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

/// Deepest nesting of field tables and arrays accepted in a frame, the outermost
/// table counting as 1.
///
/// Parsing a field value recurses once per level in `amq-protocol`, and so do
/// cloning, comparing, encoding, formatting and dropping it; a 128 KiB frame holds
/// some 20 000 levels, far more than a 2 MiB worker stack survives. Frames nested
/// deeper than this are refused before they are parsed. Measured per level, parsing
/// (the deepest of those operations) takes about 1.6 KiB of stack in a release build
/// and 9.4 KiB in a debug build, so at 64 levels everything the broker does with a
/// table needs about 110 KiB in release (a nineteenth of a worker stack), and in a
/// debug build parsing alone about 600 KiB (under a third); the
/// `nesting_at_the_limit_*` test below runs it all on a reduced stack. Real clients
/// nest a few levels (the `x-death` header is 4 deep).
pub const MAX_TABLE_DEPTH: usize = 64;

/// Whether every field table in the fields of method `class_id`/`method_id` nests
/// at most [`MAX_TABLE_DEPTH`] deep. Fields that end before their table are left to
/// the parser to refuse.
fn method_tables_within_limit(class_id: u16, method_id: u16, fields: &[u8]) -> bool {
    // Where the table is: bytes before the short strings (a reserved short and the
    // like), short strings, then bytes after them (bit fields).
    let (before, short_strings, after) = match (class_id, method_id) {
        // connection.start: version major, minor; server-properties.
        (10, 10) => (2, 0, 0),
        // connection.start-ok: client-properties first.
        (10, 11) => (0, 0, 0),
        // exchange.declare: ticket, exchange, type, bits.
        (40, 10) => (2, 2, 1),
        // exchange.bind / unbind, queue.bind: ticket, three names, nowait.
        (40, 30) | (40, 40) | (50, 20) => (2, 3, 1),
        // queue.declare: ticket, queue, bits.
        (50, 10) => (2, 1, 1),
        // queue.unbind: ticket, queue, exchange, routing key; no bits.
        (50, 50) => (2, 3, 0),
        // basic.consume: ticket, queue, consumer tag, bits.
        (60, 20) => (2, 2, 1),
        _ => return true,
    };
    let mut at = before;
    for _ in 0..short_strings {
        match fields.get(at) {
            Some(&n) => at += 1 + n as usize,
            None => return true,
        }
    }
    at += after;
    fields
        .get(at..)
        .is_none_or(|table| table_within_limit(table).is_ok())
}

/// Whether the headers in a basic property list (flags, then the properties present)
/// nest at most [`MAX_TABLE_DEPTH`] deep. Without headers this reads only the flags.
fn properties_within_limit(properties: &[u8]) -> bool {
    const CONTENT_TYPE: u16 = 1 << 15;
    const CONTENT_ENCODING: u16 = 1 << 14;
    const HEADERS: u16 = 1 << 13;
    let [hi, lo, ..] = *properties else {
        return true;
    };
    let flags = u16::from_be_bytes([hi, lo]);
    if flags & HEADERS == 0 {
        return true;
    }
    // Headers come third, after two optional short strings.
    let mut at = 2;
    for flag in [CONTENT_TYPE, CONTENT_ENCODING] {
        if flags & flag != 0 {
            match properties.get(at) {
                Some(&n) => at += 1 + n as usize,
                None => return true,
            }
        }
    }
    properties
        .get(at..)
        .is_none_or(|table| table_within_limit(table).is_ok())
}

/// A field table nested deeper than [`MAX_TABLE_DEPTH`].
#[derive(Debug, PartialEq, Eq)]
pub struct TooDeep;

/// Checks the nesting of the field table encoded at the start of `buf` (length
/// prefix first) without recursion and without allocating: one pass over the bytes,
/// with the end of each open table or array on a fixed-size stack.
///
/// Only nesting is judged. Where the encoding is invalid (an unknown type tag, a
/// value running past the end of its table) the walk stops and reports `Ok`: the
/// parser, which reads the same bytes in the same order, fails at that same place,
/// so it never goes deeper than the walk did.
pub fn table_within_limit(buf: &[u8]) -> Result<(), TooDeep> {
    // (end offset, is an array) of each open table or array, outermost first.
    let mut open = [(0usize, false); MAX_TABLE_DEPTH];
    let Some(len) = read_u32(buf, 0) else {
        return Ok(());
    };
    let Some(end) = 4usize.checked_add(len).filter(|&e| e <= buf.len()) else {
        return Ok(());
    };
    open[0] = (end, false);
    let mut depth = 1;
    let mut at = 4;
    while depth > 0 {
        let (end, is_array) = open[depth - 1];
        if at == end {
            depth -= 1;
            continue;
        }
        if !is_array {
            // The entry's name: a short string.
            let Some(&name_len) = buf.get(at) else {
                return Ok(());
            };
            at += 1 + name_len as usize;
        }
        let Some(&tag) = buf.get(at).filter(|_| at < end) else {
            return Ok(());
        };
        at += 1;
        let width = match tag {
            b'V' => 0,
            b't' | b'b' | b'B' => 1,
            b's' | b'U' | b'u' => 2,
            b'I' | b'i' | b'f' => 4,
            b'D' => 5,
            b'l' | b'L' | b'd' | b'T' => 8,
            b'S' | b'x' | b'F' | b'A' => {
                let Some(len) = read_u32(buf, at) else {
                    return Ok(());
                };
                let Some(inner_end) = (at + 4).checked_add(len).filter(|&e| e <= end) else {
                    return Ok(());
                };
                if matches!(tag, b'F' | b'A') {
                    if depth == MAX_TABLE_DEPTH {
                        return Err(TooDeep);
                    }
                    open[depth] = (inner_end, tag == b'A');
                    depth += 1;
                    at += 4;
                    continue;
                }
                4 + len
            }
            _ => return Ok(()),
        };
        at += width;
        if at > end {
            return Ok(());
        }
    }
    Ok(())
}

/// The big-endian u32 at `at`, as a length.
fn read_u32(buf: &[u8], at: usize) -> Option<usize> {
    let bytes = buf.get(at..)?.first_chunk::<4>()?;
    Some(u32::from_be_bytes(*bytes) as usize)
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
    socket: tokio::net::tcp::OwnedReadHalf,
    buf: BytesMut,
    pub decoder: FrameDecoder,
}

impl FrameReader {
    pub fn new(socket: tokio::net::tcp::OwnedReadHalf, frame_max: u32) -> FrameReader {
        FrameReader {
            socket,
            buf: BytesMut::with_capacity(64 * 1024),
            decoder: FrameDecoder { frame_max },
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
            if self.socket.read_buf(&mut self.buf).await? == 0 {
                return Ok(None);
            }
        }
    }

    /// Makes the coming close of the socket a reset (RST) rather than a normal close.
    pub fn reset_on_close(&self) {
        let stream: &tokio::net::TcpStream = self.socket.as_ref();
        let _ = stream.set_zero_linger();
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
mod tests {
    use super::*;
    use amq_protocol::types::parsing::parse_field_table;
    use amq_protocol::types::{AMQPValue, FieldTable};

    /// A field table nested `depth` deep (the outermost table is level 1). With
    /// `arrays`, every even level is an array instead of a table. The innermost
    /// level holds one long string. Built front to back, lengths computed first.
    fn nested(depth: usize, arrays: bool) -> Vec<u8> {
        let is_array = |level: usize| arrays && level.is_multiple_of(2);
        // Bytes each level adds before its child: a name (in a table) and a tag.
        let entry = |level: usize| if is_array(level) { 1 } else { 3 };
        let leaf = |level: usize| entry(level) + 5;
        let mut lens = vec![0usize; depth + 1];
        lens[depth] = leaf(depth);
        for level in (1..depth).rev() {
            lens[level] = entry(level) + 4 + lens[level + 1];
        }
        let mut out = Vec::with_capacity(4 + lens[1]);
        for (level, len) in lens.iter().enumerate().skip(1) {
            out.extend_from_slice(&(*len as u32).to_be_bytes());
            if !is_array(level) {
                out.extend_from_slice(&[1, b'n']);
            }
            if level < depth {
                out.push(if is_array(level + 1) { b'A' } else { b'F' });
            }
        }
        out.extend_from_slice(&[b'S', 0, 0, 0, 1, b'x']);
        out
    }

    #[test]
    fn a_size_claim_alone_does_not_allocate() {
        // Found by the frame_codec fuzz harness: a header claiming 4 GiB (frame_max 0 or
        // large) made the decoder reserve 4 GiB before a byte of the payload arrived.
        for (frame_max, size) in [(0, u32::MAX), (u32::MAX, u32::MAX - 8), (1 << 30, 1 << 30)] {
            let mut buf = BytesMut::from(&[FRAME_BODY, 0, 1][..]);
            buf.extend_from_slice(&size.to_be_bytes());
            let mut decoder = FrameDecoder { frame_max };
            assert!(matches!(decoder.decode(&mut buf), Ok(None)));
            assert!(buf.capacity() <= 2 * MAX_RESERVE, "{}", buf.capacity());
        }
    }

    #[test]
    fn a_frame_max_below_the_overhead_refuses_without_overflow() {
        // Found by the frame_codec fuzz target: with frame_max 1, a larger frame made the
        // frame_too_large message compute 1 - 8 (a panic with overflow checks). The broker
        // negotiates at least 4096, but FrameDecoder's frame_max is public.
        for frame_max in 1..8 {
            let mut buf = frame(FRAME_BODY, &[0; 9]);
            let decoded = FrameDecoder { frame_max }.decode(&mut buf);
            let Err(ProtocolError::Frame(text)) = decoded else {
                panic!("refused as too large: {decoded:?}");
            };
            assert!(text.ends_with("{frame_too_large,9,0}"), "{text}");
        }
    }

    #[test]
    fn a_large_frame_arriving_in_pieces_decodes() {
        let body = vec![7u8; 5 * MAX_RESERVE + 3];
        let whole = frame(FRAME_BODY, &body);
        let mut decoder = FrameDecoder { frame_max: 0 };
        let mut buf = BytesMut::new();
        for (i, piece) in whole.chunks(1000).enumerate() {
            buf.extend_from_slice(piece);
            let decoded = decoder.decode(&mut buf);
            if (i + 1) * 1000 < whole.len() {
                assert!(matches!(decoded, Ok(None)));
                assert!(buf.capacity() <= 2 * (buf.len() + MAX_RESERVE));
            } else {
                let Ok(Some(Frame::Body(1, got))) = decoded else {
                    panic!("the frame decodes: {decoded:?}");
                };
                assert_eq!(got, body);
            }
        }
    }

    #[test]
    fn nested_builds_what_the_parser_reads() {
        for arrays in [false, true] {
            let bytes = nested(5, arrays);
            let (rest, table) = parse_field_table(&bytes[..]).expect("parses");
            assert!(rest.is_empty());
            let mut value = AMQPValue::FieldTable(table);
            for _ in 1..5 {
                value = match value {
                    AMQPValue::FieldTable(t) => t.inner().get("n").cloned().expect("n"),
                    AMQPValue::FieldArray(a) => a.as_slice()[0].clone(),
                    other => panic!("{other:?}"),
                };
            }
            assert!(matches!(
                value,
                AMQPValue::FieldTable(_) | AMQPValue::FieldArray(_)
            ));
        }
    }

    #[test]
    fn depth_limit_is_exact() {
        for arrays in [false, true] {
            assert_eq!(table_within_limit(&nested(1, arrays)), Ok(()));
            assert_eq!(table_within_limit(&nested(MAX_TABLE_DEPTH, arrays)), Ok(()));
            assert_eq!(
                table_within_limit(&nested(MAX_TABLE_DEPTH + 1, arrays)),
                Err(TooDeep)
            );
            assert_eq!(table_within_limit(&nested(20_000, arrays)), Err(TooDeep));
        }
    }

    #[test]
    fn every_value_type_is_stepped_over() {
        // One entry of each type, then a table nested to the limit after them: the
        // walk must reach it, so every width has to be right.
        let mut body = Vec::new();
        let mut entry = |tag: u8, value: &[u8]| {
            // Named after its type tag.
            body.extend_from_slice(&[1, tag, tag]);
            body.extend_from_slice(value);
        };
        entry(b't', &[1]);
        entry(b'b', &[0xF0]);
        entry(b'B', &[0xF0]);
        entry(b's', b"FA");
        entry(b'U', b"FA");
        entry(b'u', b"FA");
        entry(b'I', b"FAFA");
        entry(b'i', b"FAFA");
        entry(b'f', b"FAFA");
        entry(b'D', b"FAFAF");
        entry(b'l', b"FAFAFAFA");
        entry(b'L', b"FAFAFAFA");
        entry(b'd', b"FAFAFAFA");
        entry(b'T', b"FAFAFAFA");
        entry(b'V', &[]);
        entry(b'S', b"\0\0\0\x03FAF");
        entry(b'x', b"\0\0\0\x02FA");
        entry(b'A', b"\0\0\0\x09t\x01S\0\0\0\x01FV");
        entry(b'F', b"\0\0\0\x04\x01kB\x02");
        let deep = |depth: usize| {
            let mut t = body.clone();
            t.extend_from_slice(&[1, b'z', b'F']);
            t.extend_from_slice(&nested(depth, false));
            let mut out = (t.len() as u32).to_be_bytes().to_vec();
            out.extend_from_slice(&t);
            out
        };
        let shallow = deep(3);
        let (rest, table) = parse_field_table(&shallow[..]).expect("parses");
        assert!(rest.is_empty());
        assert_eq!(table.inner().len(), 20);
        assert_eq!(table_within_limit(&deep(MAX_TABLE_DEPTH - 1)), Ok(()));
        assert_eq!(table_within_limit(&deep(MAX_TABLE_DEPTH)), Err(TooDeep));
    }

    #[test]
    fn malformed_tables_are_left_to_the_parser() {
        for bytes in [
            &b""[..],
            b"\0\0",
            b"\0\0\0\x09",
            b"\0\0\0\x03\x01kZ",
            b"\0\0\0\x04\x05kF\0",
            b"\0\0\0\x08\x01kF\0\0\0\xFF",
            b"\0\0\0\x04\x01kI\0",
        ] {
            assert_eq!(table_within_limit(bytes), Ok(()), "{bytes:?}");
        }
    }

    /// A raw frame: type, channel 1, payload, frame-end.
    fn frame(kind: u8, payload: &[u8]) -> BytesMut {
        let mut f = vec![kind, 0, 1];
        f.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        f.extend_from_slice(payload);
        f.push(FRAME_END);
        BytesMut::from(&f[..])
    }

    fn decode(kind: u8, payload: &[u8]) -> Result<Option<Frame>, ProtocolError> {
        FrameDecoder { frame_max: 0 }.decode(&mut frame(kind, payload))
    }

    /// queue.declare of queue "q" with `arguments`.
    fn queue_declare(arguments: &[u8]) -> Vec<u8> {
        let mut p = vec![0, 50, 0, 10, 0, 0, 1, b'q', 0];
        p.extend_from_slice(arguments);
        p
    }

    /// A content header whose properties are a content type, a content encoding and
    /// `headers`.
    fn content_header(headers: &[u8]) -> Vec<u8> {
        let mut p = vec![0, 60, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0b1110_0000, 0];
        p.extend_from_slice(&[4, b't', b'e', b'x', b't', 0]);
        p.extend_from_slice(headers);
        p
    }

    #[test]
    fn decoder_refuses_deep_tables_in_methods_and_headers() {
        let ok = nested(MAX_TABLE_DEPTH, true);
        let deep = nested(MAX_TABLE_DEPTH + 1, true);
        assert!(matches!(
            decode(FRAME_METHOD, &queue_declare(&ok)),
            Ok(Some(Frame::Method(1, _)))
        ));
        assert!(matches!(
            decode(FRAME_METHOD, &queue_declare(&deep)),
            Err(ProtocolError::Undecodable(50, 10, _))
        ));
        assert!(matches!(
            decode(FRAME_HEADER, &content_header(&ok)),
            Ok(Some(Frame::Header(1, _)))
        ));
        assert!(matches!(
            decode(FRAME_HEADER, &content_header(&deep)),
            Ok(Some(Frame::MalformedHeader(1)))
        ));
    }

    #[test]
    fn table_offsets_of_each_method() {
        let deep = nested(MAX_TABLE_DEPTH + 1, false);
        let with = |head: &[u8]| {
            let mut p = head.to_vec();
            p.extend_from_slice(&deep);
            p
        };
        let cases: [(&[u8], u16, u16); 9] = [
            (&[0, 10, 0, 10, 0, 9], 10, 10),
            (&[0, 10, 0, 11], 10, 11),
            (&[0, 40, 0, 10, 0, 0, 1, b'x', 1, b'd', 0], 40, 10),
            (&[0, 40, 0, 30, 0, 0, 1, b'a', 1, b'b', 1, b'k', 0], 40, 30),
            (&[0, 40, 0, 40, 0, 0, 1, b'a', 1, b'b', 1, b'k', 0], 40, 40),
            (&[0, 50, 0, 10, 0, 0, 1, b'q', 0], 50, 10),
            (&[0, 50, 0, 20, 0, 0, 1, b'q', 1, b'x', 1, b'k', 0], 50, 20),
            (&[0, 50, 0, 50, 0, 0, 1, b'q', 1, b'x', 1, b'k'], 50, 50),
            (&[0, 60, 0, 20, 0, 0, 1, b'q', 1, b't', 0], 60, 20),
        ];
        for (head, class, method) in cases {
            match decode(FRAME_METHOD, &with(head)) {
                Err(ProtocolError::Undecodable(c, m, _)) => assert_eq!((c, m), (class, method)),
                other => panic!("{class}/{method}: {other:?}"),
            }
        }
    }

    /// Everything the broker does with received field tables, on tables nested
    /// `depth` deep: decoding (method and content header), Debug, clone, compare,
    /// headers-exchange matching, the store's encoding and decoding, dead-lettering
    /// (which re-encodes the properties), reading properties back, and drop.
    fn exercise(depth: usize) {
        use crate::broker::deadletter::{Reason, dead_letter};
        use crate::broker::exchange::headers_match;
        use crate::model::fields::encode_properties;
        use crate::model::memory::MemoryGauge;
        use crate::model::message::Message;
        use crate::store::codec::{Reader, put_table};
        use amq_protocol::protocol::queue;

        let bytes = nested(depth, true);
        let declare = decode(FRAME_METHOD, &queue_declare(&bytes));
        assert!(!format!("{declare:?}").is_empty());
        let Ok(Some(Frame::Method(_, method))) = declare else {
            panic!("queue.declare decodes");
        };
        let AMQPClass::Queue(queue::AMQPMethod::Declare(declare)) = *method else {
            panic!("queue.declare decodes as such");
        };
        let arguments = declare.arguments;
        let copy = arguments.clone();
        assert_eq!(copy, arguments);
        assert!(headers_match(&arguments, Some(&copy)));
        let mut stored = Vec::new();
        put_table(&mut stored, &arguments);
        assert_eq!(stored, bytes);
        assert_eq!(Reader::new(&stored).table().as_ref(), Some(&arguments));
        let mut encoded = Vec::new();
        let mut start = FieldTable::default();
        start.insert("nested".into(), AMQPValue::FieldTable(copy));
        write_method(
            &mut encoded,
            0,
            AMQPClass::Connection(amq_protocol::protocol::connection::AMQPMethod::Start(
                amq_protocol::protocol::connection::Start {
                    version_major: 0,
                    version_minor: 9,
                    server_properties: start,
                    mechanisms: "PLAIN".into(),
                    locales: "en_US".into(),
                },
            )),
        );
        assert!(encoded.len() > bytes.len());

        let header = decode(FRAME_HEADER, &content_header(&bytes));
        assert!(!format!("{header:?}").is_empty());
        let Ok(Some(Frame::Header(_, header))) = header else {
            panic!("content header decodes");
        };
        let memory = MemoryGauge::new(usize::MAX);
        let msg = Message::new(
            "x".into(),
            "k".into(),
            &header.properties,
            header.raw_properties.clone(),
            Bytes::from_static(b"body"),
            memory.charge(4),
        );
        let (dead, headers) = dead_letter(&msg, Reason::Rejected, "q", "dlx", None, &memory);
        let properties = dead.properties();
        assert_eq!(properties.headers().as_ref(), Some(&headers));
        let again = encode_properties(&properties);
        assert!(again.len() > bytes.len());
        let mut out = Vec::new();
        write_content(&mut out, 1, &again, b"body", 0);
        let redelivered = FrameDecoder { frame_max: 0 }.decode(&mut BytesMut::from(&out[..]));
        assert!(matches!(redelivered, Ok(Some(Frame::Header(1, _)))));
    }

    /// The worker stack the broker runs on (tokio's default).
    const WORKER_STACK: usize = 2 * 1024 * 1024;

    #[test]
    fn nesting_at_the_limit_fits_a_fraction_of_a_worker_stack() {
        // Measured with `probe_stack`: about 110 KiB in release. Debug builds use
        // some six times more stack per level (parsing alone about 600 KiB).
        let share = if cfg!(debug_assertions) { 2 } else { 8 };
        let worker = std::thread::Builder::new()
            .stack_size(WORKER_STACK / share)
            .spawn(|| exercise(MAX_TABLE_DEPTH))
            .expect("thread starts");
        assert!(worker.join().is_ok());
    }

    /// How the limit was chosen: runs [`exercise`] at a given depth (up to the limit)
    /// on a thread with a given stack, so that the smallest stack it survives can be
    /// found by bisection (an overflow aborts the process). For example
    /// `WARREN_PROBE_DEPTH=64 WARREN_PROBE_STACK=131072 cargo test --release --lib
    /// probe_stack -- --ignored`.
    #[test]
    #[ignore = "a measurement, run by hand"]
    fn probe_stack() {
        let var = |name: &str| -> usize {
            std::env::var(name)
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{name} must be set"))
        };
        let (depth, stack) = (var("WARREN_PROBE_DEPTH"), var("WARREN_PROBE_STACK"));
        let worker = std::thread::Builder::new()
            .stack_size(stack)
            .spawn(move || exercise(depth))
            .expect("thread starts");
        assert!(worker.join().is_ok());
    }
}
