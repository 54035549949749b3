//! Protocol violations on a raw socket: each one ends in the reply code and text
//! RabbitMQ sends (connection.close, then the socket closes), never in a panic or a
//! hang, and a well-behaved connection next to it carries on.

mod common;

use amq_protocol::protocol::{AMQPClass, basic, channel, queue};
use common::TestBroker;
use common::raw::{Got, RAW_WAIT, Raw, method_frame, raw_frame};
use lapin::{Channel, Connection};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const FRAME_MAX: u32 = 4096;

/// A lapin connection that must be unaffected by the misbehaving one.
async fn bystander(broker: &TestBroker) -> (Connection, Channel, String) {
    let (conn, ch) = broker.channel().await;
    let q = common::temp_queue(&ch).await;
    (conn, ch, q)
}

/// The bystander still works: a publish and a get round trip.
async fn still_fine(ch: &Channel, q: &str) {
    common::assert_round_trip(ch, q, b"ok").await;
}

fn publish_method() -> AMQPClass {
    AMQPClass::Basic(basic::AMQPMethod::Publish(basic::Publish {
        exchange: "".into(),
        routing_key: "nowhere".into(),
        mandatory: false,
        immediate: false,
    }))
}

fn declare_method() -> AMQPClass {
    common::raw::queue_declare("", false, true)
}

/// Content header payload for class 60 with an empty property list.
fn header_payload(body_size: u64) -> Vec<u8> {
    common::raw::content_header(body_size, 0, &[])
}

/// Runs a violation on its own connection and returns the connection.close it got.
async fn violation(broker: &TestBroker, bytes: &[u8]) -> (u16, String, u16, u16) {
    let (_conn, ch, q) = bystander(broker).await;
    let mut raw = Raw::opened(&broker.uri, FRAME_MAX).await;
    raw.send(bytes).await;
    let close = raw.expect_connection_close().await;
    still_fine(&ch, &q).await;
    close
}

#[tokio::test]
async fn wrong_protocol_header_gets_ours_back_and_the_socket_closed() {
    let broker = TestBroker::start().await;
    // AMQP 0-10: RabbitMQ (3.x and 4.x) answers with the 0-9-1 header it speaks.
    // For a header that is not AMQP at all RabbitMQ 4.x, which also speaks AMQP 1.0,
    // answers with the AMQP 1.0 SASL header; Warren only speaks 0-9-1 (as 3.x did).
    for header in [&b"AMQP\x00\x00\x0a\x00"[..], &b"HELO\x00\x00\x09\x01"[..]] {
        let mut raw = Raw::connect(&broker.uri).await;
        raw.send(header).await;
        // Read until the broker closes the socket (RabbitMQ may reset it).
        let mut back = Vec::new();
        tokio::time::timeout(RAW_WAIT, async {
            let mut buf = [0u8; 64];
            while let Ok(n @ 1..) = raw.stream.read(&mut buf).await {
                back.extend_from_slice(&buf[..n]);
            }
        })
        .await
        .expect("the broker closes the socket in time");
        assert_eq!(back, b"AMQP\x00\x00\x09\x01", "after {header:?}");
    }
    let (_conn, ch, q) = bystander(&broker).await;
    still_fine(&ch, &q).await;
}

#[tokio::test]
async fn frame_larger_than_frame_max_is_501() {
    let broker = TestBroker::start().await;
    // A method frame announcing 10 000 bytes with frame_max 4096: refused from the
    // frame header alone.
    let mut bytes = vec![1u8, 0, 1];
    bytes.extend_from_slice(&10_000u32.to_be_bytes());
    bytes.extend_from_slice(&[0u8; 64]);
    let (code, text, class, method) = violation(&broker, &bytes).await;
    assert_eq!(code, 501);
    assert_eq!(
        text,
        "FRAME_ERROR - type 1, all octets = <<>>: {frame_too_large,10000,4088}"
    );
    assert_eq!((class, method), (0, 0));
}

/// A client still writing a too-large frame when the broker refuses it can finish
/// writing and then read the connection.close: the broker drops what follows the
/// bad frame header instead of closing the socket on unread data (a reset).
#[tokio::test]
async fn a_large_refused_frame_can_be_written_out_and_the_close_read() {
    let broker = TestBroker::start().await;
    let mut raw = Raw::opened(&broker.uri, FRAME_MAX).await;
    let size = 1024 * 1024u32;
    let mut bytes = vec![3u8, 0, 1];
    bytes.extend_from_slice(&size.to_be_bytes());
    bytes.resize(7 + size as usize, 0x55);
    bytes.push(0xCE);
    let written = tokio::time::timeout(RAW_WAIT, raw.stream.write_all(&bytes)).await;
    assert!(
        matches!(written, Ok(Ok(()))),
        "the whole frame is taken: {written:?}"
    );
    let (code, text, ..) = raw.expect_connection_close().await;
    assert_eq!(code, 501, "{text}");
    drop(raw);
}

#[tokio::test]
async fn frames_up_to_frame_max_itself_are_tolerated() {
    // RabbitMQ lets clients exceed the payload limit (frame_max - 8) by up to 8 bytes,
    // "since quite a few get it wrong" (rabbit_reader FRAME_SIZE_FUDGE).
    let broker = TestBroker::start().await;
    let mut raw = Raw::opened(&broker.uri, FRAME_MAX).await;
    let size = FRAME_MAX as usize;
    let mut bytes = method_frame(1, publish_method());
    bytes.extend(raw_frame(2, 1, &header_payload(size as u64)));
    bytes.extend(raw_frame(3, 1, &vec![7u8; size]));
    bytes.extend(method_frame(1, declare_method()));
    raw.send(&bytes).await;
    match raw.next_method().await {
        Some((1, AMQPClass::Queue(queue::AMQPMethod::DeclareOk(_)))) => {}
        other => panic!("expected queue.declare-ok, got {other:?}"),
    }
}

#[tokio::test]
async fn method_on_a_channel_that_is_not_open_is_504() {
    let broker = TestBroker::start().await;
    // Never opened.
    let (code, text, class, method) = violation(&broker, &method_frame(5, declare_method())).await;
    assert_eq!(
        (code, text.as_str(), class, method),
        (504, "CHANNEL_ERROR - expected 'channel.open'", 50, 10)
    );
    // Opened, closed, then used again.
    let (_conn, ch, q) = bystander(&broker).await;
    let mut raw = Raw::opened(&broker.uri, FRAME_MAX).await;
    raw.close_channel(1).await;
    raw.send_method(1, declare_method()).await;
    let (code, text, class, method) = raw.expect_connection_close().await;
    assert_eq!(
        (code, text.as_str(), class, method),
        (504, "CHANNEL_ERROR - expected 'channel.open'", 50, 10)
    );
    still_fine(&ch, &q).await;
}

#[tokio::test]
async fn second_channel_open_is_504() {
    let broker = TestBroker::start().await;
    let open = method_frame(
        1,
        AMQPClass::Channel(channel::AMQPMethod::Open(channel::Open {})),
    );
    let (code, text, class, method) = violation(&broker, &open).await;
    assert_eq!(
        (code, text.as_str(), class, method),
        (504, "CHANNEL_ERROR - second 'channel.open' seen", 20, 10)
    );
}

#[tokio::test]
async fn content_header_without_a_method_is_505() {
    let broker = TestBroker::start().await;
    // A well-formed header, and a method's payload sent as a header frame (which
    // does not parse as one): either way the frame is out of place, and that is
    // what RabbitMQ reports.
    // basic.publish: class, method, ticket, exchange "", routing key "routing", bits.
    let mut method_as_header = vec![0u8, 60, 0, 40, 0, 0, 0, 7];
    method_as_header.extend_from_slice(b"routing\x00");
    for payload in [header_payload(3), method_as_header] {
        let (code, text, class, method) = violation(&broker, &raw_frame(2, 1, &payload)).await;
        assert_eq!(
            (code, text.as_str(), class, method),
            (
                505,
                "UNEXPECTED_FRAME - expected method frame, got non method frame instead",
                0,
                0
            )
        );
    }
    // A body frame with no method either.
    let (code, text, ..) = violation(&broker, &raw_frame(3, 1, b"abc")).await;
    assert_eq!(
        (code, text.as_str()),
        (
            505,
            "UNEXPECTED_FRAME - expected method frame, got non method frame instead"
        )
    );
}

#[tokio::test]
async fn method_where_content_was_expected_is_505() {
    let broker = TestBroker::start().await;
    let mut bytes = method_frame(1, publish_method());
    bytes.extend(method_frame(1, declare_method()));
    let (code, text, class, method) = violation(&broker, &bytes).await;
    assert_eq!(
        (code, text.as_str(), class, method),
        (
            505,
            "UNEXPECTED_FRAME - expected content header for class 60, got non content header frame instead",
            60,
            40
        )
    );
}

/// RabbitMQ 4.x (rabbit_command_assembler) answers 501; 3.10 had no check and waited
/// for a negative remainder forever.
#[tokio::test]
async fn body_longer_than_its_header_said_is_501() {
    let broker = TestBroker::start().await;
    let mut bytes = method_frame(1, publish_method());
    bytes.extend(raw_frame(2, 1, &header_payload(5)));
    bytes.extend(raw_frame(3, 1, b"0123456789"));
    let (code, text, class, method) = violation(&broker, &bytes).await;
    assert_eq!(
        (code, text.as_str(), class, method),
        (
            501,
            "FRAME_ERROR - content body frame exceeds remaining content size",
            60,
            40
        )
    );
}

/// The issue asks for 540 NOT_IMPLEMENTED. RabbitMQ (3.10, and 4.x by its source:
/// rabbit_framing_amqp_0_9_1:lookup_method_name exits) drops the socket without a
/// connection.close instead; Warren says what went wrong.
#[tokio::test]
async fn unknown_class_or_method_is_540() {
    let broker = TestBroker::start().await;
    for (class_id, method_id) in [(99u16, 1u16), (50, 99)] {
        let mut payload = class_id.to_be_bytes().to_vec();
        payload.extend_from_slice(&method_id.to_be_bytes());
        let (code, text, class, method) = violation(&broker, &raw_frame(1, 1, &payload)).await;
        assert_eq!(code, 540, "{text}");
        assert_eq!(
            text,
            format!("NOT_IMPLEMENTED - unknown class/method id {class_id}/{method_id}")
        );
        assert_eq!((class, method), (class_id, method_id));
    }
}

/// basic.qos with a prefetch size (in bytes): RabbitMQ does not implement it and
/// closes the connection with 540; a prefetch size of 0 is the usual case.
#[tokio::test]
async fn basic_qos_with_a_prefetch_size_is_540() {
    let broker = TestBroker::start().await;
    let qos = |prefetch_size: u32| {
        let mut payload = vec![0, 60, 0, 10];
        payload.extend_from_slice(&prefetch_size.to_be_bytes());
        payload.extend_from_slice(&10u16.to_be_bytes());
        payload.push(0);
        raw_frame(1, 1, &payload)
    };
    let mut raw = Raw::opened(&broker.uri, FRAME_MAX).await;
    raw.send(&qos(0)).await;
    assert!(
        matches!(
            raw.next_method().await,
            Some((1, AMQPClass::Basic(basic::AMQPMethod::QosOk(_))))
        ),
        "qos-ok for a prefetch size of 0"
    );
    let (code, text, class, method) = violation(&broker, &qos(1024)).await;
    assert_eq!(
        (code, text.as_str(), class, method),
        (540, "NOT_IMPLEMENTED - prefetch_size!=0 (1024)", 60, 10)
    );
}

#[tokio::test]
async fn unknown_frame_type_and_heartbeat_on_a_channel() {
    let broker = TestBroker::start().await;
    let (code, text, ..) = violation(&broker, &raw_frame(9, 0, b"")).await;
    assert_eq!(
        (code, text.as_str()),
        (
            501,
            "FRAME_ERROR - type 9, all octets = <<>>: unknown_frame"
        )
    );
    let (code, text, ..) = violation(&broker, &raw_frame(8, 1, b"")).await;
    assert_eq!(
        (code, text.as_str()),
        (505, "UNEXPECTED_FRAME - type 8, all octets = <<>>")
    );
}

#[tokio::test]
async fn bad_frame_end_is_501() {
    let broker = TestBroker::start().await;
    let mut bytes = raw_frame(8, 0, b"");
    *bytes.last_mut().expect("frame end") = 0xAB;
    let (code, text, ..) = violation(&broker, &bytes).await;
    assert_eq!(
        (code, text.as_str()),
        (
            501,
            "FRAME_ERROR - type 8, all octets = <<>>: {invalid_frame_end_marker,171}"
        )
    );
}

#[tokio::test]
async fn many_violations_leave_the_broker_serving() {
    let broker = TestBroker::start().await;
    let (_conn, ch, q) = bystander(&broker).await;
    let mut tasks = Vec::new();
    for i in 0..20u16 {
        let uri = broker.uri.clone();
        tasks.push(tokio::spawn(async move {
            let mut raw = Raw::opened(&uri, FRAME_MAX).await;
            let bytes = match i % 4 {
                0 => raw_frame(2, 1, &header_payload(1)),
                1 => method_frame(7, declare_method()),
                2 => raw_frame(1, 1, &[0, 99, 0, 1]),
                _ => {
                    let mut b = vec![1u8, 0, 1];
                    b.extend_from_slice(&u32::MAX.to_be_bytes());
                    b
                }
            };
            raw.send(&bytes).await;
            raw.expect_connection_close().await.0
        }));
    }
    for t in tasks {
        let code = t.await.expect("no panic");
        assert!(matches!(code, 501 | 504 | 505 | 540), "{code}");
    }
    still_fine(&ch, &q).await;
    // The raw client may also just vanish mid-frame.
    let mut raw = Raw::open(&broker.uri, 2047, FRAME_MAX, 0).await;
    raw.send(&[1, 0, 1, 0, 0, 0, 50, 0, 50]).await;
    drop(raw);
    still_fine(&ch, &q).await;
    let _ = Got::Eof;
}

#[tokio::test]
async fn channel_max_limits_open_channels_not_their_numbers() {
    // rabbit_reader:create_channel counts open channels against channel_max; any
    // number up to 65535 may be used.
    let broker = TestBroker::start().await;
    let (_conn, ch, q) = bystander(&broker).await;
    let mut raw = Raw::open(&broker.uri, 2, FRAME_MAX, 0).await;
    raw.open_channel(7).await;
    raw.open_channel(900).await;
    raw.send_method(
        3,
        AMQPClass::Channel(channel::AMQPMethod::Open(channel::Open {})),
    )
    .await;
    let (code, text, class, method) = raw.expect_connection_close().await;
    assert_eq!(
        (code, text.as_str(), class, method),
        (
            530,
            "NOT_ALLOWED - number of channels opened (2) has reached the negotiated channel_max (2)",
            0,
            0
        )
    );
    still_fine(&ch, &q).await;
}
