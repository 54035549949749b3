//! The stored forms of messages and definitions: length-prefixed fields, field tables
//! in their AMQP encoding. Every record starts with nothing but its fields; the format
//! version of the whole file lives in the `meta` table.

use crate::protocol::nesting::{properties_within_limit, table_within_limit};
use amq_protocol::frame::WriteContext;
use amq_protocol::protocol::BasicProperties;
use amq_protocol::protocol::basic::parse_properties;
use amq_protocol::types::FieldTable;
use amq_protocol::types::generation::gen_field_table;
use amq_protocol::types::parsing::parse_field_table;

/// A stored message's properties; None when malformed or when their headers nest
/// deeper than the wire allows.
pub fn properties(raw: &[u8]) -> Option<BasicProperties> {
    if !properties_within_limit(raw) {
        return None;
    }
    parse_properties(raw).ok().map(|(_, p)| p)
}

pub fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_be_bytes());
    out.extend_from_slice(b);
}

pub fn put_table(out: &mut Vec<u8>, t: &FieldTable) {
    let buf = match gen_field_table(t)(WriteContext::from(Vec::new())) {
        Ok(ctx) => ctx.into_inner().0,
        // A table that was parsed from the wire always re-encodes; keep an empty one
        // rather than fail a durable declare.
        Err(_) => 0u32.to_be_bytes().to_vec(),
    };
    out.extend_from_slice(&buf);
}

/// Reads fields back in the order they were written.
pub struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }

    pub fn bytes(&mut self) -> Option<&'a [u8]> {
        if self.buf.len() < 4 {
            return None;
        }
        let n = u32::from_be_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]) as usize;
        let rest = &self.buf[4..];
        if rest.len() < n {
            return None;
        }
        let (b, rest) = rest.split_at(n);
        self.buf = rest;
        Some(b)
    }

    pub fn string(&mut self) -> Option<String> {
        String::from_utf8(self.bytes()?.to_vec()).ok()
    }

    pub fn u8(&mut self) -> Option<u8> {
        let (&b, rest) = self.buf.split_first()?;
        self.buf = rest;
        Some(b)
    }

    pub fn u64(&mut self) -> Option<u64> {
        if self.buf.len() < 8 {
            return None;
        }
        let (b, rest) = self.buf.split_at(8);
        self.buf = rest;
        Some(u64::from_be_bytes(b.try_into().ok()?))
    }

    /// A field table; None when it is malformed or nested deeper than the wire
    /// allows (a damaged file must not exhaust the stack of the recovery).
    pub fn table(&mut self) -> Option<FieldTable> {
        table_within_limit(self.buf).ok()?;
        let (rest, t) = parse_field_table(self.buf).ok()?;
        self.buf = rest;
        Some(t)
    }

    pub fn rest(&self) -> &'a [u8] {
        self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::codec::tests::nested;

    #[test]
    fn a_damaged_record_nested_too_deep_is_refused_not_recursed_into() {
        // 100,000 levels would exhaust any thread's stack in the parser.
        let deep = nested(100_000, false);
        assert!(Reader::new(&deep).table().is_none());
        let shallow = nested(10, true);
        assert!(Reader::new(&shallow).table().is_some());
        // Properties: flags with only `headers` set, then the table.
        let mut raw = vec![0x20, 0x00];
        raw.extend_from_slice(&deep);
        assert!(properties(&raw).is_none());
        let mut raw = vec![0x20, 0x00];
        raw.extend_from_slice(&shallow);
        assert!(properties(&raw).is_some());
    }
}
