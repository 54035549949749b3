//! A minimal HTTP/1.1 client for the management API tests: one request per connection
//! (`Connection: close`), basic auth, JSON bodies. Enough for Warren's replies, which
//! carry a Content-Length or none (204).

use base64::Engine;
use serde_json::Value;
use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A reply: status, headers (lower-case names), body.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    /// The body as JSON (panics with the body if it is not).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "not JSON ({e}): {} {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A client for one API address with one user's credentials (`None`: no credentials).
#[derive(Clone)]
pub struct Api {
    pub addr: SocketAddr,
    pub auth: Option<(String, String)>,
}

impl Api {
    pub fn new(addr: SocketAddr, user: &str, pass: &str) -> Api {
        Api {
            addr,
            auth: Some((user.into(), pass.into())),
        }
    }

    pub fn as_user(&self, user: &str, pass: &str) -> Api {
        Api::new(self.addr, user, pass)
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.request("GET", path, None).await
    }

    pub async fn put(&self, path: &str, body: Value) -> Reply {
        self.request("PUT", path, Some(body.to_string().as_bytes()))
            .await
    }

    pub async fn post(&self, path: &str, body: Value) -> Reply {
        self.request("POST", path, Some(body.to_string().as_bytes()))
            .await
    }

    pub async fn delete(&self, path: &str) -> Reply {
        self.request("DELETE", path, None).await
    }

    /// GETs `path` until `ready` holds for its JSON (a broker's statistics may lag
    /// behind, RabbitMQ's by seconds); returns that JSON, or panics with the last
    /// reply after 30 s.
    pub async fn poll(&self, path: &str, ready: impl Fn(&Value) -> bool) -> Value {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let r = self.get(path).await;
            if r.status == 200 {
                let v = r.json();
                if ready(&v) {
                    return v;
                }
                if std::time::Instant::now() > deadline {
                    panic!("{path} never became ready: {v}");
                }
            } else if std::time::Instant::now() > deadline {
                panic!("{path}: {} {}", r.status, String::from_utf8_lossy(&r.body));
            }
            tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        }
    }

    /// Sends one request with an optional raw body.
    pub async fn request(&self, method: &str, path: &str, body: Option<&[u8]>) -> Reply {
        let mut stream = TcpStream::connect(self.addr).await.expect("connect to API");
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n",
            self.addr
        );
        if let Some((u, p)) = &self.auth {
            let token = base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"));
            head.push_str(&format!("Authorization: Basic {token}\r\n"));
        }
        let body = body.unwrap_or_default();
        head.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        ));
        stream.write_all(head.as_bytes()).await.expect("write");
        stream.write_all(body).await.expect("write body");
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await.expect("read reply");
        parse(&raw)
    }
}

fn parse(raw: &[u8]) -> Reply {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("end of headers");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .expect("status line");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.contains("chunked"));
    if chunked {
        body = dechunk(&body);
    }
    Reply {
        status,
        headers,
        body,
    }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(end) = data.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(String::from_utf8_lossy(&data[..end]).trim(), 16)
            .expect("chunk size");
        if size == 0 {
            break;
        }
        out.extend_from_slice(&data[end + 2..end + 2 + size]);
        data = &data[end + 2 + size + 2..];
    }
    out
}
