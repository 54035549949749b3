//! The management HTTP API client behind the commands that read or change the broker's
//! objects. It speaks RabbitMQ's management API, so the same commands work against
//! Warren and against RabbitMQ.
//!
//! Where the API is: `--api URL`, else `WARREN_API`, else the broker's own
//! configuration (`management_listen` in Warren's config, `management.tcp.port` /
//! `management.tcp.ip` in rabbitmq.conf). Whose credentials: `--username` /
//! `--password`, else those in the URL (`http://user:pass@host:port`), else the default
//! user of the configuration (`default_user` / `default_pass`,
//! `RABBITMQ_DEFAULT_USER` / `RABBITMQ_DEFAULT_PASS`).

use crate::options::Options;
use base64::Engine;
use serde_json::Value;
use std::time::Duration;
use warren::Config;
use warren::config::listen::reachable;

pub struct Api {
    base: String,
    user: String,
    authorization: String,
    agent: ureq::Agent,
}

/// Why a request did not succeed.
pub enum Failure {
    /// The API answered with an error status; `body` is its JSON (`error`, `reason`).
    Status { status: u16, body: Value },
    /// Nothing answered, or the answer was not the API's.
    Unreachable(String),
}

impl Failure {
    pub fn status(&self) -> Option<u16> {
        match self {
            Failure::Status { status, .. } => Some(*status),
            Failure::Unreachable(_) => None,
        }
    }

    /// The API's `reason` (or `error`) text, without the HTML escapes RabbitMQ's
    /// API puts in it.
    pub fn reason(&self) -> String {
        match self {
            Failure::Status { body, status } => body
                .get("reason")
                .or_else(|| body.get("error"))
                .and_then(Value::as_str)
                .map_or_else(
                    || format!("HTTP status {status}"),
                    |r| {
                        r.replace("&lt;", "<")
                            .replace("&gt;", ">")
                            .replace("&quot;", "\"")
                            .replace("&amp;", "&")
                    },
                ),
            Failure::Unreachable(e) => e.clone(),
        }
    }
}

/// Percent-encodes one path segment (a vhost `/` becomes `%2F`).
pub fn seg(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Finds the API and the credentials (see the module's documentation).
pub fn locate(options: &Options, config: &Config) -> Result<Api, String> {
    let url = match &options.api {
        Some(url) => url.clone(),
        None => {
            let addr = config.management_listen.ok_or(
                "the management API is turned off in the configuration \
                 (management_listen = \"none\"); give its address with --api URL or WARREN_API",
            )?;
            format!("http://{}", reachable(addr))
        }
    };
    let url = if url.contains("://") {
        url
    } else {
        format!("http://{url}")
    };
    let (scheme, rest) = url.split_once("://").unwrap_or(("http", &url));
    if scheme != "http" {
        return Err(format!(
            "--api {url}: only http:// is supported (put a TLS proxy's plain side here)"
        ));
    }
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
        None => (rest, ""),
    };
    let (userinfo, host) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    let (url_user, url_pass) = match userinfo.map(|u| u.split_once(':').unwrap_or((u, ""))) {
        Some((u, p)) => (Some(u.to_string()), Some(p.to_string())),
        None => (None, None),
    };
    let user = options
        .username
        .clone()
        .or(url_user)
        .unwrap_or_else(|| config.default_user.clone());
    let pass = options
        .password
        .clone()
        .or(url_pass)
        .unwrap_or_else(|| config.default_pass.clone());
    let timeout = options.timeout_or(Duration::from_secs(60));
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .build()
        .into();
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
    Ok(Api {
        base: format!("http://{host}{path}"),
        user,
        authorization: format!("Basic {token}"),
        agent,
    })
}

impl Api {
    pub fn base(&self) -> &str {
        &self.base
    }

    pub fn user(&self) -> &str {
        &self.user
    }

    /// The same API as another user.
    pub fn as_user(&self, user: &str, pass: &str) -> Api {
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
        Api {
            base: self.base.clone(),
            user: user.to_string(),
            authorization: format!("Basic {token}"),
            agent: self.agent.clone(),
        }
    }

    pub fn get(&self, path: &str) -> Result<Value, Failure> {
        self.send("GET", path, None, None)
    }

    pub fn put(&self, path: &str, body: &Value) -> Result<Value, Failure> {
        self.send("PUT", path, Some(body), None)
    }

    pub fn post(&self, path: &str, body: &Value) -> Result<Value, Failure> {
        self.send("POST", path, Some(body), None)
    }

    /// DELETE, with RabbitMQ's `X-Reason` header when a reason is given.
    pub fn delete(&self, path: &str, reason: Option<&str>) -> Result<Value, Failure> {
        self.send("DELETE", path, None, reason)
    }

    fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
        reason: Option<&str>,
    ) -> Result<Value, Failure> {
        let url = format!("{}{path}", self.base);
        let auth = self.authorization.as_str();
        let unreachable = |e: ureq::Error| Failure::Unreachable(format!("{url}: {e}"));
        let result = match method {
            "GET" => self.agent.get(&url).header("authorization", auth).call(),
            "DELETE" => {
                let mut request = self.agent.delete(&url).header("authorization", auth);
                if let Some(reason) = reason {
                    request = request.header("x-reason", reason);
                }
                request.call()
            }
            _ => {
                let text = body.map_or_else(String::new, Value::to_string);
                let request = if method == "PUT" {
                    self.agent.put(&url)
                } else {
                    self.agent.post(&url)
                };
                request
                    .header("authorization", auth)
                    .header("content-type", "application/json")
                    .send(text.as_str())
            }
        };
        let mut response = result.map_err(unreachable)?;
        let status = response.status().as_u16();
        let text = response
            .body_mut()
            .with_config()
            .limit(1 << 30)
            .read_to_string()
            .map_err(unreachable)?;
        let value = if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        if (200..300).contains(&status) {
            Ok(value)
        } else {
            Err(Failure::Status {
                status,
                body: value,
            })
        }
    }
}
