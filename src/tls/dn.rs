//! The user name in a client certificate, as RabbitMQ's EXTERNAL mechanism reads it:
//! the subject's distinguished name (the last RDN first, `,` between RDNs, `+` within
//! one, RFC 4514 escapes, bytes outside printable ASCII as `\XX`), or the common name
//! alone. A small DER reader over the certificate's subject, nothing more.

/// Which part of the certificate names the user (RabbitMQ: `ssl_cert_login_from`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum CertLogin {
    /// The whole subject, e.g. `CN=alice,O=Example,C=US`.
    #[default]
    DistinguishedName,
    /// The subject's common name(s) (several joined with `,`).
    CommonName,
}

/// One DER element: tag and contents.
struct Der<'a> {
    tag: u8,
    body: &'a [u8],
}

/// Reads the element at the start of `input`; returns it and what follows.
fn element(input: &[u8]) -> Option<(Der<'_>, &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    Some((
        Der {
            tag,
            body: &rest[..len],
        },
        &rest[len..],
    ))
}

/// The elements of a constructed value's contents.
fn children(mut body: &[u8]) -> Option<Vec<Der<'_>>> {
    let mut out = Vec::new();
    while !body.is_empty() {
        let (e, rest) = element(body)?;
        out.push(e);
        body = rest;
    }
    Some(out)
}

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const OID: u8 = 0x06;

/// One attribute of the subject: its dotted OID and its value as text.
struct Attribute {
    oid: String,
    value: Vec<u8>,
}

/// The subject's RDNs in certificate order, each a list of attributes.
fn subject(cert: &[u8]) -> Option<Vec<Vec<Attribute>>> {
    let (cert, _) = element(cert)?;
    let tbs = children(cert.body)?.into_iter().next()?;
    let fields = children(tbs.body)?;
    // An explicit version ([0]) comes first when present.
    let skip = usize::from(fields.first()?.tag == 0xa0);
    // serialNumber, signature, issuer, validity, subject.
    let name = fields.get(skip + 4)?;
    if name.tag != SEQUENCE {
        return None;
    }
    let mut rdns = Vec::new();
    for rdn in children(name.body)? {
        if rdn.tag != SET {
            return None;
        }
        let mut attributes = Vec::new();
        for atv in children(rdn.body)? {
            let parts = children(atv.body)?;
            let (oid, value) = (parts.first()?, parts.get(1)?);
            if oid.tag != OID {
                return None;
            }
            attributes.push(Attribute {
                oid: dotted(oid.body)?,
                value: text(value),
            });
        }
        rdns.push(attributes);
    }
    Some(rdns)
}

/// An OID's dotted form.
fn dotted(body: &[u8]) -> Option<String> {
    let mut arcs: Vec<u64> = Vec::new();
    let mut n: u64 = 0;
    for &b in body {
        n = n.checked_mul(128)? | u64::from(b & 0x7f);
        if b & 0x80 == 0 {
            if arcs.is_empty() {
                let first = (n / 40).min(2);
                arcs.push(first);
                arcs.push(n - first * 40);
            } else {
                arcs.push(n);
            }
            n = 0;
        }
    }
    Some(
        arcs.iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join("."),
    )
}

/// A directory string's value as UTF-8 bytes.
fn text(value: &Der<'_>) -> Vec<u8> {
    match value.tag {
        // BMPString: UTF-16BE.
        0x1e => {
            let units: Vec<u16> = value
                .body
                .chunks_exact(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]]))
                .collect();
            String::from_utf16_lossy(&units).into_bytes()
        }
        // UniversalString: UTF-32BE.
        0x1c => value
            .body
            .chunks_exact(4)
            .filter_map(|c| char::from_u32(u32::from_be_bytes([c[0], c[1], c[2], c[3]])))
            .collect::<String>()
            .into_bytes(),
        // TeletexString: read as Latin-1.
        0x14 => value
            .body
            .iter()
            .map(|&b| char::from(b))
            .collect::<String>()
            .into_bytes(),
        // UTF8String, PrintableString, IA5String and the rest: the bytes as they are.
        _ => value.body.to_vec(),
    }
}

/// The short names RabbitMQ prints; other types appear as their dotted OID.
fn short_name(oid: &str) -> Option<&'static str> {
    Some(match oid {
        "2.5.4.4" => "SN",
        "2.5.4.42" => "GIVENNAME",
        "2.5.4.43" => "INITIALS",
        "2.5.4.44" => "GENERATIONQUALIFIER",
        "2.5.4.3" => "CN",
        "2.5.4.7" => "L",
        "2.5.4.8" => "ST",
        "2.5.4.10" => "O",
        "2.5.4.11" => "OU",
        "2.5.4.12" => "TITLE",
        "2.5.4.6" => "C",
        "2.5.4.5" => "SERIALNUMBER",
        "2.5.4.65" => "PSEUDONYM",
        "0.9.2342.19200300.100.1.25" => "DC",
        "1.2.840.113549.1.9.1" => "EMAILADDRESS",
        "0.9.2342.19200300.100.1.1" => "UID",
        _ => return None,
    })
}

/// RFC 4514 escaping as RabbitMQ applies it, byte by byte.
fn escape(value: &[u8], out: &mut String) {
    use std::fmt::Write;
    for (i, &b) in value.iter().enumerate() {
        let first = i == 0;
        let last = i + 1 == value.len();
        if (first && (b == b' ' || b == b'#'))
            || (last && b == b' ')
            || matches!(b, b'"' | b'+' | b',' | b';' | b'<' | b'>' | b'\\')
        {
            out.push('\\');
            out.push(char::from(b));
        } else if !(32..126).contains(&b) {
            let _ = write!(out, "\\{b:02X}");
        } else {
            out.push(char::from(b));
        }
    }
}

/// The subject's distinguished name in RabbitMQ's form.
pub fn distinguished_name(cert: &[u8]) -> Option<String> {
    let rdns = subject(cert)?;
    let mut out = String::new();
    for (i, rdn) in rdns.iter().rev().enumerate() {
        if i > 0 {
            out.push(',');
        }
        for (j, a) in rdn.iter().enumerate() {
            if j > 0 {
                out.push('+');
            }
            out.push_str(short_name(&a.oid).unwrap_or(&a.oid));
            out.push('=');
            escape(&a.value, &mut out);
        }
    }
    Some(out)
}

/// The subject's common names joined with `,`; `None` if it has none.
pub fn common_name(cert: &[u8]) -> Option<String> {
    let names: Vec<String> = subject(cert)?
        .into_iter()
        .flatten()
        .filter(|a| a.oid == "2.5.4.3")
        .map(|a| String::from_utf8_lossy(&a.value).into_owned())
        .collect();
    (!names.is_empty()).then(|| names.join(","))
}

/// The user name `cert` stands for under `from`.
pub fn login_name(cert: &[u8], from: CertLogin) -> Option<String> {
    match from {
        CertLogin::DistinguishedName => distinguished_name(cert).filter(|n| !n.is_empty()),
        CertLogin::CommonName => common_name(cert),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_as_rabbitmq() {
        let mut s = String::new();
        escape(b"#a, b+c ", &mut s);
        assert_eq!(s, "\\#a\\, b\\+c\\ ");
        let mut s = String::new();
        escape("é~".as_bytes(), &mut s);
        assert_eq!(s, "\\C3\\A9\\7E");
    }

    #[test]
    fn oids() {
        assert_eq!(dotted(&[0x55, 0x04, 0x03]).as_deref(), Some("2.5.4.3"));
        assert_eq!(
            dotted(&[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x01]).as_deref(),
            Some("1.2.840.113549.1.9.1")
        );
    }
}
