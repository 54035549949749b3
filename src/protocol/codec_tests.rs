//! Unit tests of the frame codec and the nesting pre-check.

use super::*;
use amq_protocol::types::AMQPValue;
use amq_protocol::types::parsing::parse_field_table;

/// A field table nested `depth` deep (the outermost table is level 1). With
/// `arrays`, every even level is an array instead of a table. The innermost
/// level holds one long string. Built front to back, lengths computed first.
pub(crate) fn nested(depth: usize, arrays: bool) -> Vec<u8> {
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

pub(crate) fn decode(kind: u8, payload: &[u8]) -> Result<Option<Frame>, ProtocolError> {
    FrameDecoder { frame_max: 0 }.decode(&mut frame(kind, payload))
}

/// queue.declare of queue "q" with `arguments`.
pub(crate) fn queue_declare(arguments: &[u8]) -> Vec<u8> {
    let mut p = vec![0, 50, 0, 10, 0, 0, 1, b'q', 0];
    p.extend_from_slice(arguments);
    p
}

/// A content header whose properties are a content type, a content encoding and
/// `headers`.
pub(crate) fn content_header(headers: &[u8]) -> Vec<u8> {
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

/// The method amq-protocol's full parser reads from a method frame's payload.
fn full_parse(payload: &[u8]) -> Option<AMQPClass> {
    match parse_class(payload) {
        Ok(([], method)) => Some(method),
        _ => None,
    }
}

/// A basic.publish payload: class and method ids, ticket, exchange, routing key,
/// the flags octet, then `extra` bytes.
fn publish_payload(exchange: &str, key: &str, flags: u8, extra: &[u8]) -> Vec<u8> {
    let mut p = vec![0, 60, 0, 40, 0, 0];
    p.push(exchange.len() as u8);
    p.extend_from_slice(exchange.as_bytes());
    p.push(key.len() as u8);
    p.extend_from_slice(key.as_bytes());
    p.push(flags);
    p.extend_from_slice(extra);
    p
}

#[test]
fn publish_reads_as_the_full_parser_reads_it() {
    let long = "k".repeat(255);
    let names = [
        ("", ""),
        ("amq.topic", "a.b.c"),
        ("x", long.as_str()),
        ("é", "ключ"),
    ];
    for (exchange, key) in names {
        for flags in 0..=255u8 {
            let payload = publish_payload(exchange, key, flags, &[]);
            let fast = parse_publish(&payload[4..]);
            assert!(fast.is_some(), "{exchange:?} {key:?} {flags}");
            assert_eq!(fast, full_parse(&payload), "{exchange:?} {key:?} {flags}");
            match decode(FRAME_METHOD, &payload) {
                Ok(Some(Frame::Method(1, m))) => assert_eq!(Some(m), fast),
                other => panic!("{other:?}"),
            }
        }
    }
    // Trailing bytes, a cut-off name and invalid UTF-8 are left to the full parser.
    let trailing = publish_payload("x", "k", 0, &[7]);
    assert_eq!(parse_publish(&trailing[4..]), None);
    assert!(matches!(
        decode(FRAME_METHOD, &trailing),
        Err(ProtocolError::Undecodable(60, 40, _))
    ));
    let cut = &publish_payload("exchange", "k", 0, &[])[..9];
    assert_eq!(parse_publish(&cut[4..]), None);
    assert!(matches!(
        decode(FRAME_METHOD, cut),
        Err(ProtocolError::Undecodable(60, 40, _))
    ));
    let mut bad_utf8 = publish_payload("x", "k", 0, &[]);
    bad_utf8[7] = 0xff;
    assert_eq!(parse_publish(&bad_utf8[4..]), None);
    assert_eq!(full_parse(&bad_utf8), None);
}

#[test]
fn deliver_bytes_are_amq_protocols() {
    let long = "t".repeat(255);
    let cases = [
        ("", 1u64, false, "", ""),
        ("amq.ctag-x", 2, true, "amq.direct", "key"),
        (long.as_str(), u64::MAX, false, "é", "ключ"),
        ("c", 1 << 40, true, long.as_str(), long.as_str()),
    ];
    for (tag, delivery_tag, redelivered, exchange, key) in cases {
        let mut fast = vec![9];
        write_deliver(&mut fast, 7, tag, delivery_tag, redelivered, exchange, key);
        let mut reference = vec![9];
        write_method(
            &mut reference,
            7,
            AMQPClass::Basic(basic::AMQPMethod::Deliver(basic::Deliver {
                consumer_tag: tag.into(),
                delivery_tag,
                redelivered,
                exchange: exchange.into(),
                routing_key: key.into(),
            })),
        );
        assert_eq!(fast, reference, "{tag} {delivery_tag} {redelivered}");
    }
    // A name no short string can carry writes nothing.
    let mut out = vec![1, 2];
    write_deliver(&mut out, 1, &"t".repeat(256), 1, false, "", "");
    assert_eq!(out, [1, 2]);
}

#[test]
fn a_refused_method_frame_leaves_the_buffer_and_the_next_frame_reads() {
    let deep = queue_declare(&nested(MAX_TABLE_DEPTH + 1, true));
    let qos = [0, 60, 0, 10, 0, 0, 0, 1, 0, 10, 0];
    let unknown = [0, 60, 0, 99];
    for payload in [&deep[..], &qos[..], &unknown[..]] {
        let mut buf = frame(FRAME_METHOD, payload);
        buf.extend_from_slice(&frame(FRAME_HEARTBEAT, &[]));
        let mut decoder = FrameDecoder { frame_max: 0 };
        assert!(decoder.decode(&mut buf).is_err());
        assert!(matches!(
            decoder.decode(&mut buf),
            Ok(Some(Frame::Heartbeat(1)))
        ));
        assert!(buf.is_empty());
    }
}
