//! The nesting-depth pre-check: every field table a frame carries is walked, without
//! recursion, before `amq-protocol` parses (recursively) what passed.

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
pub(crate) fn method_tables_within_limit(class_id: u16, method_id: u16, fields: &[u8]) -> bool {
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
pub(crate) fn properties_within_limit(properties: &[u8]) -> bool {
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
