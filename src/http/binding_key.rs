//! A binding's `properties_key`, as RabbitMQ's API computes it: the quoted routing
//! key, and when the binding has arguments, `~` and a digest of them. The digest is
//! the Erlang VM's portable term hash (`phash2`, 32 bits) of the arguments as
//! RabbitMQ holds them (a list of `{Name, Type, Value}` sorted by name), written in
//! url-safe base64, so that keys match RabbitMQ's byte for byte.

use amq_protocol::types::{AMQPValue, FieldTable};
use base64::Engine;

/// `~` for an empty routing key without arguments; else the quoted key, with `~`
/// and the arguments' digest when there are any.
pub fn properties_key(routing_key: &str, arguments: &FieldTable) -> String {
    if arguments.inner().is_empty() {
        if routing_key.is_empty() {
            return "~".to_owned();
        }
        return quote(routing_key);
    }
    format!("{}~{}", quote(routing_key), quote(&args_hash(arguments)))
}

/// The digest of a binding's arguments.
pub fn args_hash(arguments: &FieldTable) -> String {
    let mut h = Hasher { hash: 0 };
    h.term(&table_term(arguments));
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(h.hash.to_be_bytes())
}

/// `quote_plus` as RabbitMQ's API uses it in a properties key: letters, digits and
/// `.-_` stay, a space becomes `+`, everything else `%XX` (`~` too, since it
/// separates the parts of the key).
pub fn quote(s: &str) -> String {
    quote_plus(s, false)
}

/// `quote_plus` for a URL: as [`quote`], but `~` stays.
pub fn quote_plus(s: &str, keep_tilde: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'.' | b'-' | b'_' => out.push(b as char),
            b'~' if keep_tilde => out.push('~'),
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// The inverse of [`quote`].
pub fn unquote(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => match s.get(i + 1..i + 3).map(|h| u8::from_str_radix(h, 16)) {
                Some(Ok(b)) => {
                    out.push(b);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The Erlang terms an AMQP table is made of in RabbitMQ.
enum Term {
    Int(i64),
    Float(f64),
    Atom(&'static str),
    Bin(Vec<u8>),
    List(Vec<Term>),
    Tuple(Vec<Term>),
}

/// A table: `[{Name, Type, Value}]`, sorted by name.
fn table_term(t: &FieldTable) -> Term {
    let mut rows: Vec<(&[u8], &AMQPValue)> = t
        .inner()
        .iter()
        .map(|(k, v)| (k.as_str().as_bytes(), v))
        .collect();
    rows.sort_by(|a, b| a.0.cmp(b.0));
    Term::List(
        rows.into_iter()
            .map(|(k, v)| {
                let (ty, val) = typed(v);
                Term::Tuple(vec![Term::Bin(k.to_vec()), Term::Atom(ty), val])
            })
            .collect(),
    )
}

/// A field value's RabbitMQ type name and Erlang value.
fn typed(v: &AMQPValue) -> (&'static str, Term) {
    match v {
        AMQPValue::Boolean(b) => ("bool", Term::Atom(if *b { "true" } else { "false" })),
        AMQPValue::ShortShortInt(n) => ("byte", Term::Int(i64::from(*n))),
        AMQPValue::ShortShortUInt(n) => ("unsignedbyte", Term::Int(i64::from(*n))),
        AMQPValue::ShortInt(n) => ("short", Term::Int(i64::from(*n))),
        AMQPValue::ShortUInt(n) => ("unsignedshort", Term::Int(i64::from(*n))),
        AMQPValue::LongInt(n) => ("signedint", Term::Int(i64::from(*n))),
        AMQPValue::LongUInt(n) => ("unsignedint", Term::Int(i64::from(*n))),
        AMQPValue::LongLongInt(n) => ("long", Term::Int(*n)),
        AMQPValue::Timestamp(n) => ("timestamp", Term::Int(*n as i64)),
        AMQPValue::Float(f) => ("float", Term::Float(f64::from(*f))),
        AMQPValue::Double(f) => ("double", Term::Float(*f)),
        AMQPValue::DecimalValue(d) => (
            "decimal",
            Term::Tuple(vec![
                Term::Int(i64::from(d.scale)),
                Term::Int(i64::from(d.value)),
            ]),
        ),
        AMQPValue::ShortString(s) => ("longstr", Term::Bin(s.as_str().as_bytes().to_vec())),
        AMQPValue::LongString(s) => ("longstr", Term::Bin(s.as_bytes().to_vec())),
        AMQPValue::ByteArray(b) => ("binary", Term::Bin(b.as_slice().to_vec())),
        AMQPValue::FieldArray(a) => (
            "array",
            Term::List(
                a.as_slice()
                    .iter()
                    .map(|v| {
                        let (ty, val) = typed(v);
                        Term::Tuple(vec![Term::Atom(ty), val])
                    })
                    .collect(),
            ),
        ),
        AMQPValue::FieldTable(t) => ("table", table_term(t)),
        AMQPValue::Void => ("void", Term::Atom("undefined")),
    }
}

// The portable term hash's constants: the golden ratio, and its multiples that
// tag each kind of term.
const H1: u32 = 0x9e37_79b9;
const H2: u32 = 0x3c6e_f372;
const H3: u32 = 0xdaa6_6d2b;
const H4: u32 = 0x78dd_e6e4;
const H9: u32 = 0x8ff3_4781;
const H10: u32 = 0x2e2a_c13a;
const H11: u32 = 0xcc62_3af3;
const H12: u32 = 0x6a99_b4ac;
const H13: u32 = 0x08d1_2e65;
/// The hash of `[]` when it is the whole term.
const NIL_ALONE: u32 = 3_468_870_702;
/// The tag of `[]` mixed into a running hash.
const NIL_TAG: u32 = 2;

/// Bob Jenkins' mix of three 32-bit words.
fn mix(a: &mut u32, b: &mut u32, c: &mut u32) {
    let (mut x, mut y, mut z) = (*a, *b, *c);
    x = x.wrapping_sub(y).wrapping_sub(z) ^ (z >> 13);
    y = y.wrapping_sub(z).wrapping_sub(x) ^ (x << 8);
    z = z.wrapping_sub(x).wrapping_sub(y) ^ (y >> 13);
    x = x.wrapping_sub(y).wrapping_sub(z) ^ (z >> 12);
    y = y.wrapping_sub(z).wrapping_sub(x) ^ (x << 16);
    z = z.wrapping_sub(x).wrapping_sub(y) ^ (y >> 5);
    x = x.wrapping_sub(y).wrapping_sub(z) ^ (z >> 3);
    y = y.wrapping_sub(z).wrapping_sub(x) ^ (x << 10);
    z = z.wrapping_sub(x).wrapping_sub(y) ^ (y >> 15);
    (*a, *b, *c) = (x, y, z);
}

/// Jenkins' one-block-at-a-time hash of bytes, seeded with `init`.
fn block_hash(bytes: &[u8], init: u32) -> u32 {
    let (mut a, mut b, mut c) = (H1, H1, init);
    let word = |k: &[u8]| u32::from_le_bytes([k[0], k[1], k[2], k[3]]);
    let mut chunks = bytes.chunks_exact(12);
    for k in &mut chunks {
        a = a.wrapping_add(word(&k[0..4]));
        b = b.wrapping_add(word(&k[4..8]));
        c = c.wrapping_add(word(&k[8..12]));
        mix(&mut a, &mut b, &mut c);
    }
    let rest = chunks.remainder();
    c = c.wrapping_add(bytes.len() as u32);
    for (i, &byte) in rest.iter().enumerate() {
        let v = u32::from(byte);
        match i {
            0..=3 => a = a.wrapping_add(v << (8 * i)),
            4..=7 => b = b.wrapping_add(v << (8 * (i - 4))),
            // The low byte of c holds the length.
            _ => c = c.wrapping_add(v << (8 * (i - 7))),
        }
    }
    mix(&mut a, &mut b, &mut c);
    c
}

/// An atom's hash: hashpjw over its name.
fn atom_hash(name: &str) -> u32 {
    let mut h: u32 = 0;
    for &v in name.as_bytes() {
        h = (h << 4).wrapping_add(u32::from(v));
        let g = h & 0xf000_0000;
        if g != 0 {
            h ^= g >> 24;
            h ^= g;
        }
    }
    h
}

struct Hasher {
    hash: u32,
}

impl Hasher {
    fn words(&mut self, x: u32, y: u32, k: u32) {
        let (mut a, mut b) = (k.wrapping_add(x), k.wrapping_add(y));
        mix(&mut a, &mut b, &mut self.hash);
    }

    fn word(&mut self, x: u32, k: u32) {
        self.words(x, 0, k);
    }

    fn term(&mut self, t: &Term) {
        match t {
            Term::Int(n) => self.int(*n),
            Term::Float(f) => {
                // -0.0 hashes as 0.0.
                let f = if *f == 0.0 { 0.0 } else { *f };
                let bits = f.to_bits();
                self.words((bits >> 32) as u32, bits as u32, H12);
            }
            Term::Atom(name) => {
                let h = atom_hash(name);
                if self.hash == 0 {
                    self.hash = h;
                } else {
                    self.word(h, H3);
                }
            }
            Term::Bin(bytes) => {
                let seed = H13.wrapping_add(self.hash);
                self.hash = if bytes.is_empty() {
                    seed
                } else {
                    block_hash(bytes, seed)
                };
            }
            Term::Tuple(items) => {
                self.word(items.len() as u32, H9);
                for item in items {
                    self.term(item);
                }
            }
            Term::List(items) => self.list(items),
        }
    }

    fn int(&mut self, n: i64) {
        if (-(1 << 27)..(1 << 27)).contains(&n) {
            let y = n as i32;
            if y < 0 {
                self.word(y.wrapping_neg() as u32, H1);
            }
            self.word(y as u32, H1);
        } else {
            let (k, t) = if n < 0 {
                (H10, n.unsigned_abs())
            } else {
                (H11, n as u64)
            };
            self.words(t as u32, (t >> 32) as u32, k);
        }
    }

    /// A proper list: runs of small integers 0..=255 are packed four to a word;
    /// other elements are hashed one by one; the list ends with `[]`.
    fn list(&mut self, items: &[Term]) {
        let byte = |t: &Term| match t {
            Term::Int(n) if (0..=255).contains(n) => Some(*n as u32),
            _ => None,
        };
        let mut i = 0;
        loop {
            let (mut count, mut packed) = (0, 0u32);
            while let Some(v) = items.get(i).and_then(byte) {
                packed = (packed << 8).wrapping_add(v);
                if count == 3 {
                    self.word(packed, H4);
                    count = 0;
                    packed = 0;
                } else {
                    count += 1;
                }
                i += 1;
            }
            if count > 0 {
                self.word(packed, H4);
            }
            match items.get(i) {
                Some(item) => {
                    self.term(item);
                    i += 1;
                }
                None => {
                    if self.hash == 0 {
                        self.hash = NIL_ALONE;
                    } else {
                        self.word(NIL_TAG, H2);
                    }
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use amq_protocol::types::{LongString, ShortString};

    fn table(rows: &[(&str, AMQPValue)]) -> FieldTable {
        let mut t = FieldTable::default();
        for (k, v) in rows {
            t.insert(ShortString::from(*k), v.clone());
        }
        t
    }

    #[test]
    fn keys_match_rabbitmqs() {
        // Values RabbitMQ 3.10 gives for bindings made through its API.
        let x1 = table(&[("x", AMQPValue::LongLongInt(1))]);
        assert_eq!(properties_key("k2", &x1), "k2~9nmLZQ");
        assert_eq!(properties_key("", &FieldTable::default()), "~");
        assert_eq!(properties_key("a b~c", &FieldTable::default()), "a+b%7Ec");
        let s = |v: &str| AMQPValue::LongString(LongString::from(v));
        let cases: Vec<(FieldTable, &str)> = vec![
            (table(&[("x-match", s("any")), ("b", s("v"))]), "smR-6A"),
            (
                table(&[
                    ("n", AMQPValue::LongLongInt(-5)),
                    ("big", AMQPValue::LongLongInt(123_456_789_012)),
                    ("f", AMQPValue::Double(1.5)),
                ]),
                "ZPgYYg",
            ),
            (
                table(&[
                    ("t", AMQPValue::Boolean(true)),
                    (
                        "arr",
                        AMQPValue::FieldArray(
                            vec![AMQPValue::LongLongInt(1), s("s"), AMQPValue::Boolean(false)]
                                .into(),
                        ),
                    ),
                    (
                        "nest",
                        AMQPValue::FieldTable(table(&[
                            ("k", s("v")),
                            ("a", AMQPValue::LongLongInt(2)),
                        ])),
                    ),
                ]),
                "LOfrpQ",
            ),
            (
                table(&[(
                    "s",
                    s("a long string that is more than twelve bytes for sure"),
                )]),
                "equKQw",
            ),
            (
                table(&[("neg", AMQPValue::LongLongInt(-200_000_000))]),
                "rJtjgg",
            ),
        ];
        for (args, want) in cases {
            assert_eq!(args_hash(&args), want);
        }
    }
}
