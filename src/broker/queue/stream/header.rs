//! The `x-stream-offset` header every stream delivery carries, added to the message's
//! encoded properties by patching the bytes: the headers table gains one entry (or is
//! created), and nothing else is decoded or re-encoded.

use crate::model::fields::encode_properties;
use amq_protocol::protocol::basic::parse_properties;
use amq_protocol::types::AMQPValue;
use bytes::{BufMut, Bytes, BytesMut};

const KEY: &[u8] = b"x-stream-offset";
/// The headers flag of the first property-flags word.
const HEADERS_FLAG: u16 = 1 << 13;
const CONTENT_TYPE_FLAG: u16 = 1 << 15;
const CONTENT_ENCODING_FLAG: u16 = 1 << 14;
/// The last bit of a flags word: another flags word follows.
const CONTINUED: u16 = 1;
/// The entry's size: key length, key, type tag, 64-bit value.
const ENTRY_LEN: usize = 1 + KEY.len() + 1 + 8;

/// The properties `raw` with the header `x-stream-offset` = `offset` (a long).
pub(super) fn with_offset(raw: &Bytes, offset: u64) -> Bytes {
    patch(raw, offset).unwrap_or_else(|| reencode(raw, offset))
}

/// The byte patch; None when the properties are not in the plain shape it handles
/// (continued flags, truncated fields, or a headers table that already names the key).
fn patch(raw: &[u8], offset: u64) -> Option<Bytes> {
    let flags = u16::from_be_bytes(*raw.first_chunk::<2>()?);
    if flags & CONTINUED != 0 {
        return None;
    }
    // Skip the short strings before the headers.
    let mut at = 2;
    for flag in [CONTENT_TYPE_FLAG, CONTENT_ENCODING_FLAG] {
        if flags & flag != 0 {
            at += 1 + usize::from(*raw.get(at)?);
        }
    }
    let mut out = BytesMut::with_capacity(raw.len() + ENTRY_LEN + 4);
    out.put_u16(flags | HEADERS_FLAG);
    out.put_slice(raw.get(2..at)?);
    if flags & HEADERS_FLAG != 0 {
        let len = u32::from_be_bytes(*raw.get(at..)?.first_chunk::<4>()?) as usize;
        let table = raw.get(at + 4..at + 4 + len)?;
        if table.windows(KEY.len()).any(|w| w == KEY) {
            return None;
        }
        out.put_u32(u32::try_from(len + ENTRY_LEN).ok()?);
        out.put_slice(table);
        entry(&mut out, offset);
        out.put_slice(&raw[at + 4 + len..]);
    } else {
        out.put_u32(ENTRY_LEN as u32);
        entry(&mut out, offset);
        out.put_slice(raw.get(at..)?);
    }
    Some(out.freeze())
}

fn entry(out: &mut BytesMut, offset: u64) {
    out.put_u8(KEY.len() as u8);
    out.put_slice(KEY);
    out.put_u8(b'l');
    out.put_i64(offset as i64);
}

/// The general way: decode, set the header (replacing one already there), encode.
fn reencode(raw: &Bytes, offset: u64) -> Bytes {
    let properties = parse_properties(raw.as_ref())
        .map(|(_, p)| p)
        .unwrap_or_default();
    let mut headers = properties.headers().clone().unwrap_or_default();
    headers.insert(
        "x-stream-offset".into(),
        AMQPValue::LongLongInt(offset as i64),
    );
    encode_properties(&properties.with_headers(headers))
}

#[cfg(test)]
mod tests {
    use super::*;
    use amq_protocol::protocol::BasicProperties;
    use amq_protocol::types::{FieldTable, LongString, ShortString};

    fn offset_of(raw: &Bytes) -> (BasicProperties, Option<AMQPValue>) {
        let (rest, p) = parse_properties(raw.as_ref()).expect("parses");
        assert!(rest.is_empty(), "bytes left over");
        let v = p
            .headers()
            .as_ref()
            .and_then(|h| h.inner().get("x-stream-offset").cloned());
        (p, v)
    }

    #[test]
    fn the_header_is_added_whatever_the_properties_hold() {
        let mut headers = FieldTable::default();
        headers.insert(
            ShortString::from("k"),
            AMQPValue::LongString(LongString::from("v")),
        );
        let cases = [
            BasicProperties::default(),
            BasicProperties::default().with_delivery_mode(2),
            BasicProperties::default()
                .with_content_type("text/plain".into())
                .with_content_encoding("gzip".into())
                .with_priority(3)
                .with_message_id("m".into()),
            BasicProperties::default()
                .with_content_type("a/b".into())
                .with_headers(headers.clone())
                .with_app_id("app".into()),
            BasicProperties::default().with_headers(headers),
        ];
        for p in cases {
            let raw = encode_properties(&p);
            let patched = with_offset(&raw, 1234);
            assert!(patch(&raw, 1234).is_some(), "patched in place: {p:?}");
            let (got, v) = offset_of(&patched);
            assert_eq!(v, Some(AMQPValue::LongLongInt(1234)));
            // Everything else is as it was.
            let mut want_headers = p.headers().clone().unwrap_or_default();
            want_headers.insert("x-stream-offset".into(), AMQPValue::LongLongInt(1234));
            assert_eq!(got, p.clone().with_headers(want_headers));
        }
    }

    #[test]
    fn a_header_already_there_is_replaced() {
        let mut headers = FieldTable::default();
        headers.insert(
            ShortString::from("x-stream-offset"),
            AMQPValue::LongLongInt(7),
        );
        let raw = encode_properties(&BasicProperties::default().with_headers(headers));
        assert!(patch(&raw, 9).is_none());
        let (p, v) = offset_of(&with_offset(&raw, 9));
        assert_eq!(v, Some(AMQPValue::LongLongInt(9)));
        assert_eq!(p.headers().as_ref().map(|h| h.inner().len()), Some(1));
    }
}
