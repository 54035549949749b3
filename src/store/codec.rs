//! The stored forms of messages and definitions: length-prefixed fields, field tables
//! in their AMQP encoding. Every record starts with nothing but its fields; the format
//! version of the whole file lives in the `meta` table.

use amq_protocol::frame::WriteContext;
use amq_protocol::types::FieldTable;
use amq_protocol::types::generation::gen_field_table;
use amq_protocol::types::parsing::parse_field_table;

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

    pub fn table(&mut self) -> Option<FieldTable> {
        let (rest, t) = parse_field_table(self.buf).ok()?;
        self.buf = rest;
        Some(t)
    }

    pub fn rest(&self) -> &'a [u8] {
        self.buf
    }
}
