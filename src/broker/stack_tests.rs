//! How deep a field table may nest: everything the broker does with a received table,
//! run at the codec's depth limit on a thread with a fraction of a worker's stack.

use crate::protocol::codec::tests::{content_header, decode, nested, queue_declare};
use crate::protocol::codec::{
    FRAME_HEADER, FRAME_METHOD, Frame, FrameDecoder, MAX_TABLE_DEPTH, write_content, write_method,
};
use amq_protocol::protocol::AMQPClass;
use amq_protocol::types::{AMQPValue, FieldTable};
use bytes::{Bytes, BytesMut};
use tokio_util::codec::Decoder;

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
    let AMQPClass::Queue(queue::AMQPMethod::Declare(declare)) = method else {
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
