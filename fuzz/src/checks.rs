//! The frame codec, field-table and store-codec checks. Each function takes one fuzz
//! input and panics when the code under test misbehaves; it returns quietly on any
//! input the code handles correctly, including every input it refuses.
//!
//! Input layouts (first byte = selector):
//! - [`frame_codec`]: selector bits 0-1 pick `frame_max` (0 = no limit, 4096, 131072,
//!   or the next 4 bytes), bits 2-7 the size of the pieces the rest is fed in (0: at
//!   once), as a socket would deliver it.
//! - [`tables`]: selector % 4 picks a bare field table, a method frame carrying one
//!   (the next byte picks which method), a content header, or store records.

use amq_protocol::frame::{AMQPFrame, parse_frame};
use amq_protocol::protocol::basic::parse_properties;
use amq_protocol::protocol::{AMQPClass, basic, connection, exchange, queue};
use amq_protocol::types::parsing::parse_field_table;
use amq_protocol::types::{AMQPValue, FieldTable};
use bytes::BytesMut;
use tokio_util::codec::Decoder;
use warren::model::fields::encode_properties;
use warren::protocol::codec::{
    FRAME_OVERHEAD, Frame, FrameDecoder, MAX_RESERVE, MAX_TABLE_DEPTH, table_within_limit,
};
use warren::protocol::{Exception, ProtocolError};
use warren::store::codec::Reader;

/// How far past the bytes received the decoder may grow its buffer for a frame whose
/// size it knows.
const READ_AHEAD: usize = MAX_RESERVE;

/// Bytes of input above which a field table is not handed to the recursive parser when
/// the walk refused it: a level costs at least 5 bytes, so this bounds the recursion to
/// some 1 600 levels, which the fuzzer's 8 MiB main stack survives.
const PARSE_BOUND: usize = 8 * 1024;

pub fn frame_codec(data: &[u8]) {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let (frame_max, rest) = match selector & 3 {
        0 => (0, rest),
        1 => (4096, rest),
        2 => (131_072, rest),
        _ => match rest.split_first_chunk::<4>() {
            Some((max, rest)) => (u32::from_be_bytes(*max), rest),
            None => return,
        },
    };
    let piece = match (selector >> 2) as usize {
        0 => rest.len().max(1),
        n => n,
    };
    let mut decoder = FrameDecoder { frame_max };
    let mut buf = BytesMut::new();
    let mut fed = 0;
    for part in rest.chunks(piece) {
        buf.extend_from_slice(part);
        fed += part.len();
        if !drain(&mut decoder, &mut buf, fed) {
            return;
        }
    }
}

/// Decodes frames until the decoder wants more bytes (true) or fails (false).
fn drain(decoder: &mut FrameDecoder, buf: &mut BytesMut, fed: usize) -> bool {
    loop {
        let before = buf.len();
        let result = decoder.decode(buf);
        // The buffer never grows far past what was received, whatever size is claimed.
        assert!(
            buf.capacity() <= 4 * (fed + READ_AHEAD),
            "buffer of {} bytes for {fed} bytes received",
            buf.capacity()
        );
        match result {
            Ok(Some(frame)) => {
                assert!(buf.len() < before, "a frame consumed no bytes");
                check_frame(&frame, decoder.frame_max);
            }
            Ok(None) => {
                assert_eq!(buf.len(), before, "bytes consumed without a frame");
                return true;
            }
            Err(error) => {
                check_error(&error);
                return false;
            }
        }
    }
}

/// Every error becomes a reply the connection can send.
fn check_error(error: &ProtocolError) {
    let exception = Exception::from_protocol(error, 0, 0);
    assert!(exception.code >= 300, "{error:?} as {exception:?}");
    assert!(!error.to_string().is_empty());
}

fn check_frame(frame: &Frame, frame_max: u32) {
    assert!(!format!("{frame:?}").is_empty());
    match frame {
        Frame::Body(_, body) => {
            assert!(frame_max == 0 || body.len() <= frame_max as usize);
        }
        Frame::Method(_, method) => {
            for table in method_tables(method) {
                check_depth(table);
            }
        }
        Frame::Header(_, header) => {
            assert!(frame_max == 0 || header.raw_properties.len() + 12 <= frame_max as usize);
            if let Some(headers) = header.properties.headers() {
                check_depth(headers);
            }
            // The raw properties are sent on as received: they must read back the same.
            let again = parse_properties(&header.raw_properties[..]);
            let Ok((_, again)) = again else {
                panic!("raw properties of a decoded header do not parse: {again:?}");
            };
            assert_eq!(
                format!("{again:?}"),
                format!("{:?}", header.properties),
                "raw properties read back differently"
            );
            // Dead-lettering re-encodes them: that must parse too.
            let encoded = encode_properties(&header.properties);
            assert!(
                parse_properties(&encoded[..]).is_ok(),
                "re-encoded properties"
            );
        }
        Frame::Heartbeat(_) | Frame::MalformedHeader(_) => {}
    }
    let _ = FRAME_OVERHEAD;
}

fn check_depth(table: &FieldTable) {
    let depth = table_depth(table);
    assert!(
        depth <= MAX_TABLE_DEPTH,
        "a table nested {depth} deep got through"
    );
}

/// The field tables a method carries.
pub fn method_tables(method: &AMQPClass) -> Vec<&FieldTable> {
    match method {
        AMQPClass::Connection(connection::AMQPMethod::Start(m)) => vec![&m.server_properties],
        AMQPClass::Connection(connection::AMQPMethod::StartOk(m)) => vec![&m.client_properties],
        AMQPClass::Exchange(exchange::AMQPMethod::Declare(m)) => vec![&m.arguments],
        AMQPClass::Exchange(exchange::AMQPMethod::Bind(m)) => vec![&m.arguments],
        AMQPClass::Exchange(exchange::AMQPMethod::Unbind(m)) => vec![&m.arguments],
        AMQPClass::Queue(queue::AMQPMethod::Declare(m)) => vec![&m.arguments],
        AMQPClass::Queue(queue::AMQPMethod::Bind(m)) => vec![&m.arguments],
        AMQPClass::Queue(queue::AMQPMethod::Unbind(m)) => vec![&m.arguments],
        AMQPClass::Basic(basic::AMQPMethod::Consume(m)) => vec![&m.arguments],
        _ => Vec::new(),
    }
}

/// Nesting depth of a table, the table itself counting as 1.
pub fn table_depth(table: &FieldTable) -> usize {
    1 + table.inner().values().map(value_depth).max().unwrap_or(0)
}

fn value_depth(value: &AMQPValue) -> usize {
    match value {
        AMQPValue::FieldTable(t) => table_depth(t),
        AMQPValue::FieldArray(a) => 1 + a.as_slice().iter().map(value_depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// Methods that carry a field table, as (class, method).
pub const TABLE_METHODS: [(u16, u16); 9] = [
    (10, 10),
    (10, 11),
    (40, 10),
    (40, 30),
    (40, 40),
    (50, 10),
    (50, 20),
    (50, 50),
    (60, 20),
];

pub fn tables(data: &[u8]) {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    match selector % 4 {
        0 => bare_table(rest),
        1 => {
            let Some((&which, fields)) = rest.split_first() else {
                return;
            };
            let (class, method) = TABLE_METHODS[which as usize % TABLE_METHODS.len()];
            let mut payload = Vec::with_capacity(4 + fields.len());
            payload.extend_from_slice(&class.to_be_bytes());
            payload.extend_from_slice(&method.to_be_bytes());
            payload.extend_from_slice(fields);
            framed(1, &payload);
        }
        2 => {
            // Class basic, weight 0, a body size, then the fuzzed property list.
            let mut payload = vec![0, 60, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5];
            payload.extend_from_slice(rest);
            framed(2, &payload);
        }
        _ => store_records(rest),
    }
}

/// The walk and the parser agree on every table the parser reads.
fn bare_table(bytes: &[u8]) {
    let walk = table_within_limit(bytes);
    if walk.is_err() && bytes.len() > PARSE_BOUND {
        return;
    }
    if let Ok((_, table)) = parse_field_table(bytes) {
        let depth = table_depth(&table);
        assert_eq!(
            walk.is_ok(),
            depth <= MAX_TABLE_DEPTH,
            "walk {walk:?} on a table nested {depth} deep"
        );
    }
}

/// One frame of `kind` on channel 1 through the decoder, compared with the parser.
fn framed(kind: u8, payload: &[u8]) {
    let mut frame = Vec::with_capacity(payload.len() + FRAME_OVERHEAD);
    frame.push(kind);
    frame.extend_from_slice(&1u16.to_be_bytes());
    frame.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    frame.extend_from_slice(payload);
    frame.push(0xCE);
    let mut buf = BytesMut::from(&frame[..]);
    let decoded = FrameDecoder { frame_max: 0 }.decode(&mut buf);
    match &decoded {
        Ok(Some(frame)) => check_frame(frame, 0),
        Ok(None) => panic!("a whole frame was not decoded"),
        Err(error) => check_error(error),
    }
    // The parser itself, where its recursion is bounded by the input's size.
    if frame.len() > PARSE_BOUND {
        return;
    }
    let parsed = match parse_frame(&frame[..]) {
        Ok((_, AMQPFrame::Method(_, method))) => method_tables(&method)
            .into_iter()
            .map(table_depth)
            .max()
            .unwrap_or(0),
        Ok((_, AMQPFrame::Header(_, header))) => {
            header.properties.headers().as_ref().map_or(0, table_depth)
        }
        _ => return,
    };
    // Everything the parser reads within the limit is let through; the rest is not.
    let accepted = matches!(
        decoded,
        Ok(Some(Frame::Method(..))) | Ok(Some(Frame::Header(..)))
    );
    let refused_method = matches!(decoded, Err(ProtocolError::MethodNotImplemented(..)));
    assert!(
        refused_method || accepted == (parsed <= MAX_TABLE_DEPTH),
        "parser reads depth {parsed}, decoder gives {decoded:?}"
    );
}

/// The store's readers over arbitrary bytes, in the orders its records use.
fn store_records(bytes: &[u8]) {
    let Some((&layout, bytes)) = bytes.split_first() else {
        return;
    };
    let mut r = Reader::new(bytes);
    let table = match layout % 4 {
        // An exchange: type, auto-delete, internal, arguments.
        0 => (|| {
            r.string()?;
            r.u8()?;
            r.u8()?;
            r.table()
        })(),
        // A queue: id, auto-delete, arguments.
        1 => (|| {
            r.u64()?;
            r.u8()?;
            r.table()
        })(),
        // A binding: vhost, source, kind, destination, routing key, arguments.
        2 => (|| {
            r.string()?;
            r.string()?;
            r.u8()?;
            r.string()?;
            r.string()?;
            r.table()
        })(),
        // A message: exchange, routing key, properties, then the body.
        _ => {
            let _ = (|| {
                r.string()?;
                r.string()?;
                let raw = r.bytes()?;
                if raw.len() <= PARSE_BOUND {
                    let _ = parse_properties(raw);
                }
                Some(())
            })();
            None
        }
    };
    // Stored tables are not checked for depth: the store holds only tables the decoder
    // let through, so a deeper one means a damaged file, and reading it recurses only
    // as deep as the record is long.
    drop(table);
    assert!(r.rest().len() <= bytes.len());
}
