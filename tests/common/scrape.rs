//! Scrapes a Prometheus endpoint over plain HTTP/1.1 and parses the text format.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One scrape: the response's head, its body, and its samples by `name{labels}`.
pub struct Scrape {
    pub head: String,
    pub body: String,
    pub samples: BTreeMap<String, f64>,
}

impl Scrape {
    /// The value of a sample, written as it appears before the value.
    pub fn value(&self, key: &str) -> f64 {
        *self
            .samples
            .get(key)
            .unwrap_or_else(|| panic!("no sample {key} in:\n{}", self.body))
    }

    /// Whether a family with this name (or its histogram series) is served.
    pub fn has_family(&self, name: &str) -> bool {
        self.samples.keys().any(|k| {
            let base = k.split('{').next().unwrap_or(k);
            base == name
        })
    }

    /// The `# HELP` and `# TYPE` lines of a family.
    pub fn type_of(&self, name: &str) -> Option<&str> {
        let prefix = format!("# TYPE {name} ");
        self.body
            .lines()
            .find_map(|l| l.strip_prefix(prefix.as_str()))
    }
}

/// GETs `path` and parses the exposition.
pub async fn scrape(addr: SocketAddr, path: &str) -> Scrape {
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connect to the Prometheus listener");
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .expect("send request");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.expect("read response");
    let text = String::from_utf8(raw).expect("utf-8 response");
    let (head, body) = text.split_once("\r\n\r\n").expect("a head and a body");
    let mut samples = BTreeMap::new();
    for line in body.lines() {
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let (key, value) = line.rsplit_once(' ').expect("name and value");
        let value: f64 = value.parse().expect("a number");
        samples.insert(key.to_owned(), value);
    }
    Scrape {
        head: head.to_owned(),
        body: body.to_owned(),
        samples,
    }
}
