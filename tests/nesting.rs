//! Field tables and arrays nested far deeper than any client nests them (some 20 000
//! levels fit in one frame) are refused before they are parsed, wherever a frame
//! carries a table: the connection gets the close any undecodable frame gets, and
//! the broker keeps serving. Modest nesting is accepted and delivered intact.

mod common;

use amq_protocol::protocol::{AMQPClass, connection, queue};
use amq_protocol::types::{LongString, ShortString};
use common::TestBroker;
use common::raw::{Raw, raw_frame};
use lapin::options::*;
use lapin::types::{AMQPValue, FieldArray, FieldTable};
use lapin::{BasicProperties, Channel};
use warren::protocol::codec::MAX_TABLE_DEPTH;

const FRAME_MAX: u32 = 131_072;
/// Deep enough to overflow any thread stack if it were parsed, and still within
/// one frame of `FRAME_MAX` bytes (6 bytes a level for tables, 5 for arrays).
const DEEP: usize = 20_000;

/// A field table (length prefix first) whose one entry, named "", holds a table
/// holding a table, and so on: `depth` containers in all, the outermost a table.
/// With `arrays` every container below the outermost is an array. Written front to
/// back, the lengths computed first, so that it takes no recursion to build.
fn deep(depth: usize, arrays: bool) -> Vec<u8> {
    let is_array = |level: usize| arrays && level > 0;
    // What each container holds besides its child's length and contents: the
    // entry's empty name (in a table) and the child's type tag.
    let head = |level: usize| if is_array(level) { 1 } else { 2 };
    let mut lens = vec![0usize; depth];
    for level in (0..depth - 1).rev() {
        lens[level] = head(level) + 4 + lens[level + 1];
    }
    let mut out = Vec::with_capacity(4 + lens[0]);
    for (level, len) in lens.iter().enumerate() {
        out.extend_from_slice(&(*len as u32).to_be_bytes());
        if level + 1 < depth {
            if !is_array(level) {
                out.push(0);
            }
            out.push(if is_array(level + 1) { b'A' } else { b'F' });
        }
    }
    out
}

fn short_string(out: &mut Vec<u8>, s: &str) {
    out.push(s.len() as u8);
    out.extend_from_slice(s.as_bytes());
}

/// A method frame on channel 1: class and method ids, `fields`, then `table`.
fn method(class_id: u16, method_id: u16, fields: &[u8], table: &[u8]) -> Vec<u8> {
    let mut payload = class_id.to_be_bytes().to_vec();
    payload.extend_from_slice(&method_id.to_be_bytes());
    payload.extend_from_slice(fields);
    payload.extend_from_slice(table);
    raw_frame(1, 1, &payload)
}

/// Reserved ticket, the short strings `names`, then a bit-field octet of 0.
fn fields(names: &[&str]) -> Vec<u8> {
    let mut out = vec![0, 0];
    for name in names {
        short_string(&mut out, name);
    }
    out.push(0);
    out
}

/// A fresh client connects, declares a queue and gets back a message published to it.
async fn still_serving(broker: &TestBroker) {
    let (conn, ch) = broker.channel().await;
    let q = common::temp_queue(&ch).await;
    round_trip(&ch, &q).await;
    conn.close(200, "bye".into()).await.expect("close");
}

async fn round_trip(ch: &Channel, q: &str) {
    common::assert_round_trip(ch, q, b"still here").await;
}

/// RabbitMQ's answer to a method frame it cannot decode: 501 naming the method,
/// quoting the fields as Erlang prints a binary, cut to 255 bytes with "...".
fn assert_undecodable(close: &(u16, String, u16, u16), class_id: u16, method_id: u16) {
    let (code, text, c, m) = close;
    assert_eq!((*code, *c, *m), (501, class_id, method_id), "{text}");
    assert!(text.starts_with("FRAME_ERROR - cannot decode <<"), "{text}");
    assert!(text.len() <= 255 && text.ends_with("..."), "{text}");
}

/// Sends `bytes` on an open connection, expects the connection closed with a
/// frame error naming `class_id`/`method_id`, and checks the broker still serves.
async fn refused_method(bytes: &[u8], class_id: u16, method_id: u16) {
    let broker = TestBroker::start().await;
    let mut raw = Raw::opened(&broker.uri, FRAME_MAX).await;
    raw.send(bytes).await;
    let close = raw.expect_connection_close().await;
    assert_undecodable(&close, class_id, method_id);
    still_serving(&broker).await;
}

#[tokio::test]
async fn queue_declare_arguments() {
    let frame = method(50, 10, &fields(&["nested"]), &deep(DEEP, false));
    assert!(frame.len() <= FRAME_MAX as usize);
    refused_method(&frame, 50, 10).await;
}

#[tokio::test]
async fn exchange_declare_arguments() {
    let frame = method(40, 10, &fields(&["nested", "direct"]), &deep(DEEP, false));
    refused_method(&frame, 40, 10).await;
}

#[tokio::test]
async fn queue_bind_arguments() {
    let frame = method(
        50,
        20,
        &fields(&["nested", "amq.headers", "key"]),
        &deep(DEEP, false),
    );
    refused_method(&frame, 50, 20).await;
}

#[tokio::test]
async fn basic_consume_arguments() {
    let frame = method(60, 20, &fields(&["nested", ""]), &deep(DEEP, false));
    refused_method(&frame, 60, 20).await;
}

#[tokio::test]
async fn array_nested_inside_a_table() {
    let frame = method(50, 10, &fields(&["nested"]), &deep(DEEP, true));
    refused_method(&frame, 50, 10).await;
}

/// A content header whose headers are nested too deeply is refused like any content
/// header whose properties do not decode.
#[tokio::test]
async fn message_headers() {
    let broker = TestBroker::start().await;
    let mut raw = Raw::opened(&broker.uri, FRAME_MAX).await;
    raw.declare_queue(1, "nested", false, true).await;
    let mut bytes = method(60, 40, &fields(&["", "nested"]), &[]);
    let mut header = vec![0, 60, 0, 0];
    header.extend_from_slice(&1u64.to_be_bytes());
    // Flags: content-type, headers; then the content type, then the headers.
    header.extend_from_slice(&[0b1010_0000, 0]);
    short_string(&mut header, "text/plain");
    header.extend_from_slice(&deep(DEEP, false));
    bytes.extend(raw_frame(2, 1, &header));
    assert!(header.len() <= FRAME_MAX as usize);
    raw.send(&bytes).await;
    let close = raw.expect_connection_close().await;
    assert_eq!(
        close,
        (
            501,
            "FRAME_ERROR - type 2: malformed content header".to_string(),
            0,
            0
        )
    );
    still_serving(&broker).await;
}

/// Before connection.tune frames are limited to 4096 bytes, which still holds a
/// table nested hundreds of levels deep.
#[tokio::test]
async fn start_ok_client_properties() {
    let broker = TestBroker::start().await;
    let (mut raw, _) = Raw::start(&broker.uri).await;
    let mut payload = vec![0, 10, 0, 11];
    payload.extend_from_slice(&deep(600, false));
    short_string(&mut payload, "PLAIN");
    payload.extend_from_slice(&12u32.to_be_bytes());
    payload.extend_from_slice(b"\0guest\0guest");
    short_string(&mut payload, "en_US");
    assert!(payload.len() <= 4096 - 8);
    raw.send(&raw_frame(1, 0, &payload)).await;
    let close = raw.expect_connection_close().await;
    assert_undecodable(&close, 10, 11);
    still_serving(&broker).await;
}

/// connection.start-ok with the AMQPLAIN mechanism, whose response (a field table
/// without its length prefix) carries `extra` as entry "extra".
fn amqplain_start_ok(extra: &[u8]) -> AMQPClass {
    let mut response = Vec::new();
    for (name, value) in [("LOGIN", "guest"), ("PASSWORD", "guest")] {
        short_string(&mut response, name);
        response.push(b'S');
        response.extend_from_slice(&(value.len() as u32).to_be_bytes());
        response.extend_from_slice(value.as_bytes());
    }
    short_string(&mut response, "extra");
    response.push(b'F');
    response.extend_from_slice(extra);
    let mut caps = FieldTable::default();
    caps.insert("authentication_failure_close".into(), true.into());
    let mut props = FieldTable::default();
    props.insert("capabilities".into(), caps.into());
    AMQPClass::Connection(connection::AMQPMethod::StartOk(connection::StartOk {
        client_properties: props,
        mechanism: ShortString::from("AMQPLAIN"),
        response: LongString::from(response),
        locale: ShortString::from("en_US"),
    }))
}

/// The AMQPLAIN response is parsed as a field table too: one nested too deeply is a
/// refused login, one nested a little is a login.
#[tokio::test]
async fn amqplain_response() {
    let broker = TestBroker::start().await;
    let (mut raw, _) = Raw::start(&broker.uri).await;
    raw.send_method(0, amqplain_start_ok(&deep(10, false)))
        .await;
    match raw.next_method().await {
        Some((0, AMQPClass::Connection(connection::AMQPMethod::Tune(_)))) => {}
        other => panic!("expected connection.tune, got {other:?}"),
    }
    drop(raw);
    let (mut raw, _) = Raw::start(&broker.uri).await;
    raw.send_method(0, amqplain_start_ok(&deep(600, false)))
        .await;
    let close = raw.expect_connection_close().await;
    assert_eq!(
        close,
        (
            403,
            "ACCESS_REFUSED - Login was refused using authentication mechanism AMQPLAIN. For details see the broker logfile.".to_string(),
            0,
            0
        )
    );
    still_serving(&broker).await;
}

/// The limit itself: arguments nested exactly that deep are taken, one more level is
/// refused.
#[tokio::test]
async fn the_limit_is_exact() {
    let broker = TestBroker::start().await;
    let mut raw = Raw::opened(&broker.uri, FRAME_MAX).await;
    raw.send(&method(
        50,
        10,
        &fields(&["at-the-limit"]),
        &deep(MAX_TABLE_DEPTH, true),
    ))
    .await;
    match raw.next_method().await {
        Some((1, AMQPClass::Queue(queue::AMQPMethod::DeclareOk(_)))) => {}
        other => panic!("expected queue.declare-ok, got {other:?}"),
    }
    raw.send(&method(
        50,
        10,
        &fields(&["over-the-limit"]),
        &deep(MAX_TABLE_DEPTH + 1, true),
    ))
    .await;
    let close = raw.expect_connection_close().await;
    assert_undecodable(&close, 50, 10);
    still_serving(&broker).await;
}

/// A value nested `depth` levels deep counting the table it is put in: tables and
/// arrays in turn, a long string innermost.
fn modest(depth: usize) -> AMQPValue {
    let mut value = AMQPValue::LongString("innermost".into());
    for level in (2..=depth).rev() {
        value = if level % 2 == 0 {
            let mut t = FieldTable::default();
            t.insert("level".into(), AMQPValue::LongLongInt(level as i64));
            t.insert("n".into(), value);
            AMQPValue::FieldTable(t)
        } else {
            let mut a = FieldArray::default();
            a.push(AMQPValue::LongLongInt(level as i64));
            a.push(value);
            AMQPValue::FieldArray(a)
        };
    }
    value
}

/// Ten levels, more than real clients use: queue arguments are taken, and message
/// headers reach a consumer exactly as published.
#[tokio::test]
async fn modest_nesting_is_accepted_and_delivered_intact() {
    use futures_lite::StreamExt;
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let mut arguments = FieldTable::default();
    arguments.insert("nested".into(), modest(10));
    let q = ch
        .queue_declare(
            "".into(),
            QueueDeclareOptions {
                exclusive: true,
                ..Default::default()
            },
            arguments,
        )
        .await
        .expect("declare with nested arguments");
    let mut headers = FieldTable::default();
    headers.insert("nested".into(), modest(10));
    headers.insert("plain".into(), AMQPValue::LongString("value".into()));
    let mut consumer = common::consume_no_ack(&ch, q.name().as_str(), "").await;
    ch.basic_publish(
        "".into(),
        q.name().as_str().into(),
        BasicPublishOptions::default(),
        b"nested",
        BasicProperties::default().with_headers(headers.clone()),
    )
    .await
    .expect("publish");
    let delivery = tokio::time::timeout(std::time::Duration::from_secs(10), consumer.next())
        .await
        .expect("delivery in time")
        .expect("consumer running")
        .expect("delivery");
    assert_eq!(delivery.data, b"nested");
    assert_eq!(delivery.properties.headers().as_ref(), Some(&headers));
    conn.close(200, "bye".into()).await.expect("close");
}
