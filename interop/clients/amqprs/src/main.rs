//! amqprs scenarios for Warren's interop suite: one JSON line per scenario on stdout
//! (`{"scenario", "ok", "obs", "err"}`), the same scenarios and observations as the other
//! clients (see interop/README.md and interop/clients/go-amqp091/main.go).

use amqprs::callbacks::ChannelCallback;
use amqprs::channel::{
    BasicAckArguments, BasicConsumeArguments, BasicGetArguments, BasicNackArguments,
    BasicPublishArguments, BasicQosArguments, BasicRejectArguments, Channel,
    ConfirmSelectArguments, ConsumerMessage, ExchangeDeclareArguments, ExchangeDeleteArguments,
    QueueBindArguments, QueueDeclareArguments, QueueDeleteArguments,
};
use amqprs::connection::{Connection, OpenConnectionArguments};
use amqprs::{Ack, BasicProperties, Cancel, CloseChannel, FieldTable, FieldValue, Nack, Return};
use serde_json::{json, Value};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::time::{sleep, timeout};

const LARGE_LEN: usize = 5 * 1024 * 1024 + 7;

/// A failed scenario: the message, and the observation so far (kept for `--diff`).
struct Fail {
    msg: String,
    obs: Option<Value>,
}

impl From<amqprs::error::Error> for Fail {
    fn from(e: amqprs::error::Error) -> Self {
        Fail {
            msg: format!("{e}"),
            obs: None,
        }
    }
}

fn fail(msg: impl Into<String>) -> Fail {
    Fail {
        msg: msg.into(),
        obs: None,
    }
}

type R = Result<Value, Fail>;

/// Fails (keeping obs) unless obs[k] == v for every (k, v).
fn expect(obs: Value, want: &[(&str, Value)]) -> R {
    let bad: Vec<String> = want
        .iter()
        .filter(|(k, v)| obs.get(*k) != Some(v))
        .map(|(k, v)| format!("{k}={} (want {v})", obs.get(*k).unwrap_or(&Value::Null)))
        .collect();
    if bad.is_empty() {
        Ok(obs)
    } else {
        Err(Fail {
            msg: format!("unexpected {}", bad.join("; ")),
            obs: Some(obs),
        })
    }
}

struct Env {
    host: String,
    port: u16,
    user: String,
    password: String,
    vhost: String,
    prefix: String,
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// amqp://user:password@host:port/vhost (amqprs parses URIs only with its `urispec` feature,
/// which pulls in another crate: the URL is taken apart here instead).
fn parse_env() -> Env {
    let url = std::env::var("INTEROP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_string());
    let rest = url.strip_prefix("amqp://").unwrap_or(&url);
    let (auth, hostpart) = rest.rsplit_once('@').unwrap_or(("guest:guest", rest));
    let (user, password) = auth.split_once(':').unwrap_or((auth, ""));
    let (hostport, vhost) = hostpart.split_once('/').unwrap_or((hostpart, ""));
    let (host, port) = hostport.rsplit_once(':').unwrap_or((hostport, "5672"));
    Env {
        host: percent_decode(host),
        port: port.parse().unwrap_or(5672),
        user: percent_decode(user),
        password: percent_decode(password),
        vhost: if vhost.is_empty() {
            "/".to_string()
        } else {
            percent_decode(vhost)
        },
        prefix: std::env::var("INTEROP_PREFIX").unwrap_or_else(|_| "it.amqprs".to_string()),
    }
}

fn args(e: &Env, password: &str) -> OpenConnectionArguments {
    OpenConnectionArguments::new(&e.host, e.port, &e.user, password)
        .virtual_host(&e.vhost)
        .finish()
}

/// What the channel callback saw: a channel.close from the server, publisher confirms
/// (tag, multiple, ack) and basic.return.
#[derive(Default)]
struct Seen {
    close: Option<(u16, String)>,
    confirms: Vec<(u64, bool, bool)>,
    returns: Vec<Value>,
}

#[derive(Clone, Default)]
struct Cb(Arc<Mutex<Seen>>);

impl Cb {
    fn get<T>(&self, f: impl FnOnce(&Seen) -> T) -> T {
        f(&self.0.lock().unwrap())
    }
}

#[async_trait::async_trait]
impl ChannelCallback for Cb {
    async fn close(&mut self, _: &Channel, c: CloseChannel) -> Result<(), amqprs::error::Error> {
        self.0.lock().unwrap().close = Some((c.reply_code(), c.reply_text().clone()));
        Ok(())
    }
    async fn cancel(&mut self, _: &Channel, _: Cancel) -> Result<(), amqprs::error::Error> {
        Ok(())
    }
    async fn flow(&mut self, _: &Channel, active: bool) -> Result<bool, amqprs::error::Error> {
        Ok(active)
    }
    async fn publish_ack(&mut self, _: &Channel, a: Ack) {
        self.0
            .lock()
            .unwrap()
            .confirms
            .push((a.delivery_tag(), a.mutiple(), true));
    }
    async fn publish_nack(&mut self, _: &Channel, n: Nack) {
        self.0
            .lock()
            .unwrap()
            .confirms
            .push((n.delivery_tag(), n.multiple(), false));
    }
    async fn publish_return(&mut self, _: &Channel, r: Return, _: BasicProperties, body: Vec<u8>) {
        self.0.lock().unwrap().returns.push(json!({
            "reply_code": r.reply_code(), "reply_text": r.reply_text(), "exchange": r.exchange(),
            "routing_key": r.routing_key(), "body": String::from_utf8_lossy(&body),
        }));
    }
}

/// (acked, nacked) among publish sequence numbers 1..=n.
fn settled(confirms: &[(u64, bool, bool)], n: u64) -> (u64, u64) {
    let mut state = vec![None; n as usize + 1];
    for &(tag, multiple, ack) in confirms {
        for t in 1..=n {
            if (t == tag || (multiple && t < tag)) && state[t as usize].is_none() {
                state[t as usize] = Some(ack);
            }
        }
    }
    let acked = state.iter().filter(|s| **s == Some(true)).count() as u64;
    let nacked = state.iter().filter(|s| **s == Some(false)).count() as u64;
    (acked, nacked)
}

async fn dial(e: &Env) -> Result<(Connection, Channel, Cb), Fail> {
    let c = Connection::open(&args(e, &e.password)).await?;
    let ch = c.open_channel(None).await?;
    let cb = Cb::default();
    ch.register_callback(cb.clone()).await?;
    Ok((c, ch, cb))
}

async fn close(c: Connection, chs: Vec<Channel>) {
    for ch in chs {
        let _ = ch.close().await;
    }
    let _ = c.close().await;
}

async fn decl(ch: &Channel, q: &str) -> Result<(String, u32, u32), Fail> {
    ch.queue_declare(QueueDeclareArguments::new(q))
        .await?
        .ok_or_else(|| fail("no declare-ok"))
}

async fn pub_(
    ch: &Channel,
    ex: &str,
    key: &str,
    body: &[u8],
    p: BasicProperties,
) -> Result<(), Fail> {
    Ok(ch
        .basic_publish(p, body.to_vec(), BasicPublishArguments::new(ex, key))
        .await?)
}

fn s(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

async fn get(
    ch: &Channel,
    q: &str,
    no_ack: bool,
) -> Result<Option<amqprs::channel::GetMessage>, Fail> {
    Ok(ch
        .basic_get(BasicGetArguments::new(q).no_ack(no_ack).finish())
        .await?)
}

async fn drain(ch: &Channel, q: &str) -> Result<Vec<String>, Fail> {
    let mut out = vec![];
    while let Some((_, _, body)) = get(ch, q, true).await? {
        out.push(s(&body));
    }
    Ok(out)
}

async fn recv(rx: &mut UnboundedReceiver<ConsumerMessage>, d: Duration) -> Option<ConsumerMessage> {
    timeout(d, rx.recv()).await.ok().flatten()
}

fn table(kv: Vec<(&str, FieldValue)>) -> FieldTable {
    let mut t = FieldTable::new();
    for (k, v) in kv {
        t.insert(k.try_into().unwrap(), v);
    }
    t
}

fn field_json(v: &FieldValue) -> Value {
    match v {
        FieldValue::t(b) => json!(b),
        FieldValue::b(n) => json!(n),
        FieldValue::B(n) => json!(n),
        FieldValue::s(n) => json!(n),
        FieldValue::u(n) => json!(n),
        FieldValue::I(n) => json!(n),
        FieldValue::i(n) => json!(n),
        FieldValue::l(n) => json!(n),
        FieldValue::f(n) => json!(n),
        FieldValue::d(n) => json!(n),
        FieldValue::T(n) => json!(n),
        FieldValue::S(st) => json!(st.as_ref()),
        FieldValue::F(t) => table_json(t),
        FieldValue::A(a) => Value::Array(
            Vec::<FieldValue>::from(a.clone())
                .iter()
                .map(field_json)
                .collect(),
        ),
        FieldValue::V => Value::Null,
        other => json!(format!("{other}")),
    }
}

fn table_json(t: &FieldTable) -> Value {
    Value::Object(
        t.as_ref()
            .iter()
            .map(|(k, v)| (k.as_ref().clone(), field_json(v)))
            .collect(),
    )
}

fn large_body() -> Vec<u8> {
    let mut b = vec![0u8; LARGE_LEN];
    for (i, x) in b.iter_mut().enumerate().take(LARGE_LEN - LARGE_LEN % 251) {
        *x = (((i % 251) * 7 + 3) % 251) as u8;
    }
    b
}

/// SHA-256 (FIPS 180-4); the suite compares digests of the large body.
fn sha256(data: &[u8]) -> [u8; 32] {
    const K: [u32; 64] = [
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4,
        0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe,
        0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f,
        0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
        0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc,
        0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
        0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116,
        0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
        0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
        0xc67178f2,
    ];
    let mut h: [u32; 8] = [
        0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab,
        0x5be0cd19,
    ];
    let mut msg = data.to_vec();
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&((data.len() as u64) * 8).to_be_bytes());
    for chunk in msg.chunks(64) {
        let mut w = [0u32; 64];
        for i in 0..16 {
            w[i] = u32::from_be_bytes(chunk[i * 4..i * 4 + 4].try_into().unwrap());
        }
        for i in 16..64 {
            let s0 = w[i - 15].rotate_right(7) ^ w[i - 15].rotate_right(18) ^ (w[i - 15] >> 3);
            let s1 = w[i - 2].rotate_right(17) ^ w[i - 2].rotate_right(19) ^ (w[i - 2] >> 10);
            w[i] = w[i - 16]
                .wrapping_add(s0)
                .wrapping_add(w[i - 7])
                .wrapping_add(s1);
        }
        let [mut a, mut b, mut c, mut d, mut e, mut f, mut g, mut hh] = h;
        for i in 0..64 {
            let s1 = e.rotate_right(6) ^ e.rotate_right(11) ^ e.rotate_right(25);
            let ch = (e & f) ^ (!e & g);
            let t1 = hh
                .wrapping_add(s1)
                .wrapping_add(ch)
                .wrapping_add(K[i])
                .wrapping_add(w[i]);
            let s0 = a.rotate_right(2) ^ a.rotate_right(13) ^ a.rotate_right(22);
            let maj = (a & b) ^ (a & c) ^ (b & c);
            let t2 = s0.wrapping_add(maj);
            hh = g;
            g = f;
            f = e;
            e = d.wrapping_add(t1);
            d = c;
            c = b;
            b = a;
            a = t1.wrapping_add(t2);
        }
        for (x, y) in h.iter_mut().zip([a, b, c, d, e, f, g, hh]) {
            *x = x.wrapping_add(y);
        }
    }
    let mut out = [0u8; 32];
    for (i, x) in h.iter().enumerate() {
        out[i * 4..i * 4 + 4].copy_from_slice(&x.to_be_bytes());
    }
    out
}

// ---------------------------------------------------------------------------------------------

async fn connect(e: &Env) -> R {
    let (c, ch, _) = dial(e).await?;
    let caps = c.server_properties().capabilities();
    let mut on: Vec<&str> = [
        (
            "authentication_failure_close",
            caps.authentication_failure_close(),
        ),
        ("basic.nack", caps.basic_nack()),
        ("connection.blocked", caps.connection_blocked()),
        ("consumer_cancel_notify", caps.consumer_cancel_notify()),
        ("consumer_priorities", caps.consumer_priorities()),
        ("direct_reply_to", caps.direct_reply_to()),
        (
            "exchange_exchange_bindings",
            caps.exchange_exchange_bindings(),
        ),
        ("per_consumer_qos", caps.per_consumer_qos()),
        ("publisher_confirms", caps.publisher_confirms()),
    ]
    .into_iter()
    .filter(|(_, v)| *v)
    .map(|(k, _)| k)
    .collect();
    on.sort();
    let obs = json!({"open": c.is_open() && ch.is_open(), "capabilities": on});
    close(c, vec![ch]).await;
    expect(obs, &[("open", json!(true))])
}

const TYPES: [&str; 4] = ["direct", "fanout", "topic", "headers"];

async fn declare(e: &Env) -> R {
    let (c, ch, _) = dial(e).await?;
    let q = format!("{}.declare", e.prefix);
    let r = decl(&ch, &q).await?;
    for t in TYPES {
        let x = format!("{}.x.{t}", e.prefix);
        ch.exchange_declare(ExchangeDeclareArguments::new(&x, t))
            .await?;
        ch.exchange_declare(ExchangeDeclareArguments::new(&x, t).passive(true).finish())
            .await?;
    }
    pub_(&ch, "", &q, b"1", BasicProperties::default()).await?;
    pub_(&ch, "", &q, b"2", BasicProperties::default()).await?;
    sleep(Duration::from_millis(200)).await; // RabbitMQ enqueues asynchronously
    let r2 = ch
        .queue_declare(QueueDeclareArguments::new(&q).passive(true).finish())
        .await?
        .ok_or_else(|| fail("no declare-ok"))?;
    let n = ch.queue_delete(QueueDeleteArguments::new(&q)).await?;
    for t in TYPES {
        ch.exchange_delete(ExchangeDeleteArguments::new(&format!("{}.x.{t}", e.prefix)))
            .await?;
    }
    close(c, vec![ch]).await;
    expect(
        json!({"declare_ok": [r.0, r.1, r.2], "passive_count": r2.1, "delete_count": n}),
        &[
            ("declare_ok", json!([q, 0, 0])),
            ("passive_count", json!(2)),
            ("delete_count", json!(2)),
        ],
    )
}

async fn routing(e: &Env) -> R {
    let (c, ch, _) = dial(e).await?;
    let (q1, q2) = (format!("{}.r1", e.prefix), format!("{}.r2", e.prefix));
    decl(&ch, &q1).await?;
    decl(&ch, &q2).await?;
    let x = |t: &str| format!("{}.rx.{t}", e.prefix);
    for t in TYPES {
        ch.exchange_declare(ExchangeDeclareArguments::new(&x(t), t))
            .await?;
    }
    let hdr = |m: &str| {
        table(vec![
            ("x-match", m.into()),
            ("a", FieldValue::I(1)),
            ("b", FieldValue::I(2)),
        ])
    };
    let binds = [
        (&q1, x("direct"), "a", FieldTable::new()),
        (&q2, x("direct"), "b", FieldTable::new()),
        (&q1, x("fanout"), "", FieldTable::new()),
        (&q2, x("fanout"), "", FieldTable::new()),
        (&q1, x("topic"), "x.*", FieldTable::new()),
        (&q2, x("topic"), "x.#", FieldTable::new()),
        (&q1, x("headers"), "", hdr("all")),
        (&q2, x("headers"), "", hdr("any")),
    ];
    for (q, ex, key, a) in binds {
        ch.queue_bind(QueueBindArguments::new(q, &ex, key).arguments(a).finish())
            .await?;
    }
    for k in ["a", "b", "c"] {
        pub_(
            &ch,
            &x("direct"),
            k,
            format!("direct-{k}").as_bytes(),
            BasicProperties::default(),
        )
        .await?;
    }
    pub_(
        &ch,
        &x("fanout"),
        "zzz",
        b"fanout",
        BasicProperties::default(),
    )
    .await?;
    for k in ["x.y", "x.y.z", "x"] {
        pub_(
            &ch,
            &x("topic"),
            k,
            format!("topic-{k}").as_bytes(),
            BasicProperties::default(),
        )
        .await?;
    }
    let with = |t: FieldTable| BasicProperties::default().with_headers(t).finish();
    pub_(
        &ch,
        &x("headers"),
        "",
        b"headers-a",
        with(table(vec![("a", FieldValue::I(1))])),
    )
    .await?;
    pub_(
        &ch,
        &x("headers"),
        "",
        b"headers-ab",
        with(table(vec![
            ("a", FieldValue::I(1)),
            ("b", FieldValue::I(2)),
        ])),
    )
    .await?;
    sleep(Duration::from_millis(200)).await;
    let obs = json!({"q1": drain(&ch, &q1).await?, "q2": drain(&ch, &q2).await?});
    close(c, vec![ch]).await;
    expect(
        obs,
        &[
            (
                "q1",
                json!(["direct-a", "fanout", "topic-x.y", "headers-ab"]),
            ),
            (
                "q2",
                json!([
                    "direct-b",
                    "fanout",
                    "topic-x.y",
                    "topic-x.y.z",
                    "topic-x",
                    "headers-a",
                    "headers-ab"
                ]),
            ),
        ],
    )
}

async fn properties(e: &Env) -> R {
    let (c, ch, _) = dial(e).await?;
    let q = format!("{}.props", e.prefix);
    decl(&ch, &q).await?;
    let headers = table(vec![
        ("s", "str".into()),
        ("i", FieldValue::I(42)),
        ("b", true.into()),
        ("n", table(vec![("k", "v".into())]).into()),
        (
            "l",
            FieldValue::A(vec![FieldValue::I(1), "two".into()].try_into().unwrap()),
        ),
    ]);
    let p = BasicProperties::default()
        .with_content_type("application/json")
        .with_content_encoding("utf-8")
        .with_headers(headers)
        .with_delivery_mode(2)
        .with_priority(5)
        .with_correlation_id("corr-1")
        .with_reply_to("rq")
        .with_expiration("60000")
        .with_message_id("mid-1")
        .with_timestamp(1700000000)
        .with_message_type("t1")
        .with_user_id("guest")
        .with_app_id("interop")
        .finish();
    pub_(&ch, "", &q, b"props-body", p).await?;
    sleep(Duration::from_millis(100)).await;
    let (ok, p, body) = get(&ch, &q, true)
        .await?
        .ok_or_else(|| fail("no message"))?;
    let props = json!({
        "content_type": p.content_type(), "content_encoding": p.content_encoding(),
        "delivery_mode": p.delivery_mode(), "priority": p.priority(),
        "correlation_id": p.correlation_id(), "reply_to": p.reply_to(), "expiration": p.expiration(),
        "message_id": p.message_id(), "timestamp": p.timestamp(), "type": p.message_type(),
        "user_id": p.user_id(), "app_id": p.app_id(), "headers": p.headers().map(table_json),
    });
    let obs = json!({"body": s(&body), "exchange": ok.exchange(), "routing_key": ok.routing_key(),
                     "redelivered": ok.redelivered(), "message_count": ok.message_count(), "props": props});
    close(c, vec![ch]).await;
    expect(
        obs,
        &[
            ("body", json!("props-body")),
            (
                "props",
                json!({"content_type": "application/json", "content_encoding": "utf-8", "delivery_mode": 2,
                       "priority": 5, "correlation_id": "corr-1", "reply_to": "rq", "expiration": "60000",
                       "message_id": "mid-1", "timestamp": 1700000000, "type": "t1", "user_id": "guest",
                       "app_id": "interop",
                       "headers": {"s": "str", "i": 42, "b": true, "n": {"k": "v"}, "l": [1, "two"]}}),
            ),
        ],
    )
}

fn tag(m: &ConsumerMessage) -> u64 {
    m.deliver.as_ref().map_or(0, |d| d.delivery_tag())
}

async fn consume_prefetch(e: &Env) -> R {
    let (c, ch, _) = dial(e).await?;
    let q = format!("{}.prefetch", e.prefix);
    decl(&ch, &q).await?;
    ch.basic_qos(BasicQosArguments::new(0, 2, false)).await?;
    for i in 0..5 {
        pub_(
            &ch,
            "",
            &q,
            format!("m{i}").as_bytes(),
            BasicProperties::default(),
        )
        .await?;
    }
    let (_, mut rx) = ch
        .basic_consume_rx(BasicConsumeArguments::new(&q, "").manual_ack(true).finish())
        .await?;
    let mut got = vec![];
    let end = Instant::now() + Duration::from_secs(5);
    while got.len() < 2 && Instant::now() < end {
        if let Some(m) = recv(&mut rx, Duration::from_millis(50)).await {
            got.push(m);
        }
    }
    // 400 ms more: nothing beyond the prefetch window may arrive before an ack.
    let grace = Instant::now() + Duration::from_millis(400);
    while Instant::now() < grace {
        if let Some(m) = recv(&mut rx, grace.saturating_duration_since(Instant::now())).await {
            got.push(m);
        }
    }
    let before = got.len();
    for m in &got {
        ch.basic_ack(BasicAckArguments::new(tag(m), false)).await?;
    }
    let end = Instant::now() + Duration::from_secs(5);
    while got.len() < 5 && Instant::now() < end {
        if let Some(m) = recv(&mut rx, Duration::from_millis(50)).await {
            ch.basic_ack(BasicAckArguments::new(tag(&m), false)).await?;
            got.push(m);
        }
    }
    let bodies: Vec<String> = got
        .iter()
        .map(|m| s(m.content.as_deref().unwrap_or_default()))
        .collect();
    let redel: Vec<bool> = got
        .iter()
        .map(|m| m.deliver.as_ref().is_some_and(|d| d.redelivered()))
        .collect();
    close(c, vec![ch]).await;
    expect(
        json!({"before_ack": before, "bodies": bodies, "redelivered": redel}),
        &[
            ("before_ack", json!(2)),
            ("bodies", json!(["m0", "m1", "m2", "m3", "m4"])),
        ],
    )
}

async fn get_(e: &Env) -> R {
    let (c, ch, _) = dial(e).await?;
    let q = format!("{}.get", e.prefix);
    decl(&ch, &q).await?;
    for i in 0..3 {
        pub_(
            &ch,
            "",
            &q,
            format!("g{i}").as_bytes(),
            BasicProperties::default(),
        )
        .await?;
    }
    sleep(Duration::from_millis(100)).await;
    let mut seq = vec![];
    for _ in 0..3 {
        let (ok, _, body) = get(&ch, &q, false)
            .await?
            .ok_or_else(|| fail("get-empty too early"))?;
        seq.push(json!([s(&body), ok.message_count(), ok.redelivered()]));
        ch.basic_ack(BasicAckArguments::new(ok.delivery_tag(), false))
            .await?;
    }
    let empty = get(&ch, &q, false).await?.is_none();
    close(c, vec![ch]).await;
    expect(
        json!({"gets": seq, "empty": empty}),
        &[
            (
                "gets",
                json!([["g0", 2, false], ["g1", 1, false], ["g2", 0, false]]),
            ),
            ("empty", json!(true)),
        ],
    )
}

async fn nack_requeue(e: &Env) -> R {
    let (c, ch, _) = dial(e).await?;
    let q = format!("{}.nack", e.prefix);
    decl(&ch, &q).await?;
    pub_(&ch, "", &q, b"n1", BasicProperties::default()).await?;
    pub_(&ch, "", &q, b"n2", BasicProperties::default()).await?;
    sleep(Duration::from_millis(100)).await;
    let mut seq = vec![];
    let (ok, _, b) = get(&ch, &q, false).await?.ok_or_else(|| fail("empty"))?;
    seq.push(json!([s(&b), ok.redelivered()]));
    ch.basic_nack(BasicNackArguments::new(ok.delivery_tag(), false, true))
        .await?;
    let (ok, _, b) = get(&ch, &q, false)
        .await?
        .ok_or_else(|| fail("empty after nack requeue"))?;
    seq.push(json!([s(&b), ok.redelivered()]));
    ch.basic_reject(BasicRejectArguments::new(ok.delivery_tag(), false))
        .await?;
    let (ok, _, b) = get(&ch, &q, false)
        .await?
        .ok_or_else(|| fail("empty after reject"))?;
    seq.push(json!([s(&b), ok.redelivered()]));
    ch.basic_nack(BasicNackArguments::new(ok.delivery_tag(), false, false))
        .await?;
    let empty = get(&ch, &q, false).await?.is_none();
    close(c, vec![ch]).await;
    expect(
        json!({"seq": seq, "empty": empty}),
        &[
            ("seq", json!([["n1", false], ["n1", true], ["n2", false]])),
            ("empty", json!(true)),
        ],
    )
}

async fn confirms(e: &Env) -> R {
    let (c, ch, cb) = dial(e).await?;
    let q = format!("{}.confirms", e.prefix);
    decl(&ch, &q).await?;
    ch.confirm_select(ConfirmSelectArguments::default()).await?;
    for i in 0..10 {
        pub_(
            &ch,
            "",
            &q,
            format!("c{i}").as_bytes(),
            BasicProperties::default(),
        )
        .await?;
    }
    let end = Instant::now() + Duration::from_secs(5);
    let (mut acked, mut nacked) = (0, 0);
    while Instant::now() < end {
        (acked, nacked) = cb.get(|s| settled(&s.confirms, 10));
        if acked + nacked == 10 {
            break;
        }
        sleep(Duration::from_millis(10)).await;
    }
    let r = ch
        .queue_declare(QueueDeclareArguments::new(&q).passive(true).finish())
        .await?
        .ok_or_else(|| fail("no declare-ok"))?;
    close(c, vec![ch]).await;
    expect(
        json!({"acked": acked, "nacked": nacked, "count": r.1}),
        &[
            ("acked", json!(10)),
            ("nacked", json!(0)),
            ("count", json!(10)),
        ],
    )
}

async fn mandatory(e: &Env) -> R {
    let (c, ch, cb) = dial(e).await?;
    ch.confirm_select(ConfirmSelectArguments::default()).await?;
    let key = format!("{}.nowhere", e.prefix);
    ch.basic_publish(
        BasicProperties::default(),
        b"ret".to_vec(),
        BasicPublishArguments::new("", &key)
            .mandatory(true)
            .finish(),
    )
    .await?;
    let end = Instant::now() + Duration::from_secs(5);
    while Instant::now() < end && cb.get(|s| s.returns.is_empty() || s.confirms.is_empty()) {
        sleep(Duration::from_millis(10)).await;
    }
    let (returns, acked) = cb.get(|s| (s.returns.clone(), settled(&s.confirms, 1).0 == 1));
    close(c, vec![ch]).await;
    expect(
        json!({"returns": returns, "confirm_acked": acked}),
        &[
            (
                "returns",
                json!([{"reply_code": 312, "reply_text": "NO_ROUTE", "exchange": "", "routing_key": key, "body": "ret"}]),
            ),
            ("confirm_acked", json!(true)),
        ],
    )
}

async fn competing(e: &Env) -> R {
    let (c, ch, _) = dial(e).await?;
    let q = format!("{}.work", e.prefix);
    decl(&ch, &q).await?;
    // (count per consumer, bodies seen)
    let seen: Arc<Mutex<([usize; 2], Vec<String>)>> = Arc::default();
    let mut chs = vec![];
    for i in 0..2 {
        let cch = c.open_channel(None).await?;
        cch.register_callback(Cb::default()).await?;
        cch.basic_qos(BasicQosArguments::new(0, 1, false)).await?;
        let (_, mut rx) = cch
            .basic_consume_rx(BasicConsumeArguments::new(&q, "").manual_ack(true).finish())
            .await?;
        let (seen, ach) = (seen.clone(), cch.clone());
        tokio::spawn(async move {
            while let Some(m) = rx.recv().await {
                {
                    let mut g = seen.lock().unwrap();
                    g.0[i] += 1;
                    g.1.push(s(m.content.as_deref().unwrap_or_default()));
                }
                sleep(Duration::from_millis(5)).await;
                if ach
                    .basic_ack(BasicAckArguments::new(tag(&m), false))
                    .await
                    .is_err()
                {
                    break;
                }
            }
        });
        chs.push(cch);
    }
    for i in 0..20 {
        pub_(
            &ch,
            "",
            &q,
            format!("w{i}").as_bytes(),
            BasicProperties::default(),
        )
        .await?;
    }
    let end = Instant::now() + Duration::from_secs(10);
    while Instant::now() < end && seen.lock().unwrap().1.len() < 20 {
        sleep(Duration::from_millis(10)).await;
    }
    sleep(Duration::from_millis(50)).await;
    let (counts, bodies) = seen.lock().unwrap().clone();
    let mut distinct = bodies.clone();
    distinct.sort();
    distinct.dedup();
    chs.push(ch);
    close(c, chs).await;
    expect(
        json!({"total": bodies.len(), "distinct": distinct.len(), "both_busy": counts[0] >= 5 && counts[1] >= 5}),
        &[
            ("total", json!(20)),
            ("distinct", json!(20)),
            ("both_busy", json!(true)),
        ],
    )
}

async fn rpc(e: &Env) -> R {
    let (c, srv, _) = dial(e).await?;
    let cli = c.open_channel(None).await?;
    cli.register_callback(Cb::default()).await?;
    let q = format!("{}.rpc", e.prefix);
    decl(&srv, &q).await?;
    let (_, mut reqs) = srv
        .basic_consume_rx(BasicConsumeArguments::new(&q, "").manual_ack(true).finish())
        .await?;
    let s2 = srv.clone();
    tokio::spawn(async move {
        while let Some(m) = reqs.recv().await {
            let p = m.basic_properties.clone().unwrap_or_default();
            let mut body = b"reply:".to_vec();
            body.extend_from_slice(m.content.as_deref().unwrap_or_default());
            let mut rp = BasicProperties::default();
            if let Some(cid) = p.correlation_id() {
                rp.with_correlation_id(cid);
            }
            let reply_to = p.reply_to().cloned().unwrap_or_default();
            let _ = s2
                .basic_publish(rp.finish(), body, BasicPublishArguments::new("", &reply_to))
                .await;
            let _ = s2.basic_ack(BasicAckArguments::new(tag(&m), false)).await;
        }
    });
    let (rq, _, _) = cli
        .queue_declare(QueueDeclareArguments::exclusive_server_named())
        .await?
        .ok_or_else(|| fail("no declare-ok"))?;
    let (_, mut reps) = cli
        .basic_consume_rx(
            BasicConsumeArguments::new(&rq, "")
                .manual_ack(false)
                .finish(),
        )
        .await?;
    let p = BasicProperties::default()
        .with_reply_to(&rq)
        .with_correlation_id("c-1")
        .finish();
    pub_(&cli, "", &q, b"ping", p).await?;
    let mut replies = vec![];
    if let Some(m) = recv(&mut reps, Duration::from_secs(5)).await {
        let cid = m
            .basic_properties
            .as_ref()
            .and_then(|p| p.correlation_id().cloned());
        replies.push(json!([cid, s(m.content.as_deref().unwrap_or_default())]));
    }
    let want_q = if rq.starts_with("amq.gen-") {
        rq.clone()
    } else {
        "amq.gen-?".to_string()
    };
    close(c, vec![cli, srv]).await;
    expect(
        json!({"reply_queue": rq, "replies": replies}),
        &[
            ("reply_queue", json!(want_q)),
            ("replies", json!([["c-1", "reply:ping"]])),
        ],
    )
}

async fn large(e: &Env) -> R {
    let (c, ch, _) = dial(e).await?;
    let q = format!("{}.large", e.prefix);
    decl(&ch, &q).await?;
    let body = large_body();
    pub_(&ch, "", &q, &body, BasicProperties::default()).await?;
    let end = Instant::now() + Duration::from_secs(10);
    let mut got = vec![];
    while Instant::now() < end {
        if let Some((_, _, b)) = get(&ch, &q, true).await? {
            got = b;
            break;
        }
        sleep(Duration::from_millis(50)).await;
    }
    close(c, vec![ch]).await;
    expect(
        json!({"len": got.len(), "sha256_ok": sha256(&got) == sha256(&body)}),
        &[("len", json!(LARGE_LEN)), ("sha256_ok", json!(true))],
    )
}

/// Runs a request that the broker answers with channel.close: amqprs hands the close to the
/// channel callback and fails the pending call; observe the code and text from the callback.
async fn channel_error(
    c: &Connection,
    cb: &Cb,
    res: Result<Option<(String, u32, u32)>, amqprs::error::Error>,
) -> Value {
    if res.is_ok() {
        return json!({"raised": false});
    }
    let end = Instant::now() + Duration::from_secs(2);
    while cb.get(|s| s.close.is_none()) && Instant::now() < end {
        sleep(Duration::from_millis(10)).await;
    }
    match cb.get(|s| s.close.clone()) {
        Some((code, text)) => json!({"code": code, "text": text, "conn_open": c.is_open()}),
        None => json!({"error": format!("{}", res.unwrap_err())}),
    }
}

async fn err_404(e: &Env) -> R {
    let (c, ch, cb) = dial(e).await?;
    let q = format!("{}.missing", e.prefix);
    let res = ch
        .queue_declare(QueueDeclareArguments::new(&q).passive(true).finish())
        .await;
    let obs = channel_error(&c, &cb, res).await;
    // The connection must still be usable: open another channel on it.
    let usable = match c.open_channel(None).await {
        Ok(ch2) => {
            let _ = ch2.close().await;
            true
        }
        Err(_) => false,
    };
    let mut obs = obs;
    if let Some(o) = obs.as_object_mut() {
        o.insert("conn_open".into(), json!(c.is_open() && usable));
    }
    let _ = c.close().await;
    expect(
        obs,
        &[
            ("code", json!(404)),
            (
                "text",
                json!(format!("NOT_FOUND - no queue '{q}' in vhost '/'")),
            ),
            ("conn_open", json!(true)),
        ],
    )
}

async fn err_406(e: &Env) -> R {
    let (c, ch, cb) = dial(e).await?;
    let q = format!("{}.q406", e.prefix);
    decl(&ch, &q).await?;
    let res = ch
        .queue_declare(QueueDeclareArguments::new(&q).durable(true).finish())
        .await;
    let obs = channel_error(&c, &cb, res).await;
    if let Ok(ch2) = c.open_channel(None).await {
        let _ = ch2.queue_delete(QueueDeleteArguments::new(&q)).await;
        let _ = ch2.close().await;
    }
    let _ = c.close().await;
    expect(
        obs,
        &[
            ("code", json!(406)),
            (
                "text",
                json!(format!(
                    "PRECONDITION_FAILED - inequivalent arg 'durable' for queue '{q}' in vhost '/': received 'true' but current is 'false'"
                )),
            ),
        ],
    )
}

/// amqprs does not announce `authentication_failure_close`, so the broker drops the socket
/// instead of sending connection.close 403: Connection::open fails with a network error.
async fn err_403(e: &Env) -> R {
    match Connection::open(&args(e, "wrong")).await {
        Ok(c) => {
            let _ = c.close().await;
            Err(Fail {
                msg: "connected with a wrong password".into(),
                obs: Some(json!({"raised": false})),
            })
        }
        Err(err) => {
            let kind = format!("{err:?}");
            let kind = kind.split('(').next().unwrap_or("").to_string();
            let obs = json!({"error": kind, "text": format!("{err}")});
            if kind == "NetworkError" || kind == "ConnectionOpenError" {
                Ok(obs)
            } else {
                Err(Fail {
                    msg: format!("unexpected error {err}"),
                    obs: Some(obs),
                })
            }
        }
    }
}

/// vhost_user: the non-default user and vhost of interop/definitions.json, from the
/// INTEROP_APP_USER / _PASS / _VHOST pieces (host and port as INTEROP_URL's).
async fn vhost_user(e: &Env) -> R {
    let var = |k: &str, d: &str| std::env::var(k).unwrap_or_else(|_| d.to_string());
    let app = Env {
        host: e.host.clone(),
        port: e.port,
        user: var("INTEROP_APP_USER", "interop-app"),
        password: var("INTEROP_APP_PASS", "interop-app-secret"),
        vhost: var("INTEROP_APP_VHOST", "interop-app"),
        prefix: e.prefix.clone(),
    };
    let q = format!("interop.app.{}", e.prefix);
    let denied = format!("{}.denied", e.prefix);
    let (c, ch, _) = dial(&app).await?;
    let r = decl(&ch, &q).await?;
    pub_(&ch, "", &q, b"vhost-user", BasicProperties::default()).await?;
    let mut got = Value::Null;
    let end = Instant::now() + Duration::from_secs(5);
    while Instant::now() < end {
        if let Some((_, _, body)) = get(&ch, &q, true).await? {
            got = json!(s(&body));
            break;
        }
        sleep(Duration::from_millis(50)).await;
    }
    let ch2 = c.open_channel(None).await?;
    let cb2 = Cb::default();
    ch2.register_callback(cb2.clone()).await?;
    let res = ch2.queue_declare(QueueDeclareArguments::new(&denied)).await;
    let refused = channel_error(&c, &cb2, res).await;
    let usable = match c.open_channel(None).await {
        Ok(ch3) => {
            let _ = ch3.queue_delete(QueueDeleteArguments::new(&q)).await;
            let _ = ch3.close().await;
            true
        }
        Err(_) => false,
    };
    let conn_open = c.is_open() && usable;
    let _ = c.close().await;
    let root = Env {
        host: app.host.clone(),
        user: app.user.clone(),
        password: app.password.clone(),
        vhost: "/".to_string(),
        prefix: app.prefix.clone(),
        ..app
    };
    let (root_error, root_text) = match Connection::open(&args(&root, &root.password)).await {
        Ok(c) => {
            let _ = c.close().await;
            (Value::Null, Value::Null)
        }
        Err(err) => {
            let kind = format!("{err:?}");
            (
                json!(kind.split('(').next().unwrap_or("")),
                json!(format!("{err}")),
            )
        }
    };
    let obs = json!({"declare_ok": [r.0, r.1, r.2], "got": got, "refused_code": refused.get("code"),
                     "refused_text": refused.get("text"), "conn_open": conn_open,
                     "root_error": root_error, "root_text": root_text});
    let tail = format!(
        "access to queue '{denied}' in vhost '{}' refused for user '{}'",
        app.vhost, app.user
    );
    let t = obs["refused_text"].as_str().unwrap_or("");
    if t != format!("ACCESS_REFUSED - {tail}") && t != format!("ACCESS_REFUSED - configure {tail}")
    {
        return Err(Fail {
            msg: format!("refused_text {t}"),
            obs: Some(obs),
        });
    }
    expect(
        obs,
        &[
            ("declare_ok", json!([q, 0, 0])),
            ("got", json!("vhost-user")),
            ("refused_code", json!(403)),
            ("conn_open", json!(true)),
            ("root_error", json!("ConnectionOpenError")),
            // amqprs prints the connection.close it got for connection.open (class 10, method 40)
            ("root_text", json!(format!("AMQP connection open error: failed to open connection, reason: \
                Close(MethodHeader {{ class_id: 10, method_id: 50 }}, Close {{ reply_code: 530, reply_text: \
                ShortStr({}, \"NOT_ALLOWED - access to vhost '/' refused for user '{}'\"), class_id: 10, method_id: 40 }})",
                "NOT_ALLOWED - access to vhost '/' refused for user ''".len() + app.user.len(), app.user))),
        ],
    )
}

async fn run<'a, F, Fut>(name: &str, e: &'a Env, f: F)
where
    F: FnOnce(&'a Env) -> Fut,
    Fut: Future<Output = R> + 'a,
{
    let (ok, obs, err) = match timeout(Duration::from_secs(20), f(e)).await {
        Ok(Ok(obs)) => (true, obs, String::new()),
        Ok(Err(Fail { msg, obs })) => (false, obs.unwrap_or(Value::Null), msg),
        Err(_) => (false, Value::Null, "timeout 20s".to_string()),
    };
    println!(
        "{}",
        json!({"scenario": name, "ok": ok, "obs": obs, "err": err})
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let e = parse_env();
    run("connect", &e, connect).await;
    run("declare", &e, declare).await;
    run("routing", &e, routing).await;
    run("properties", &e, properties).await;
    run("consume_prefetch", &e, consume_prefetch).await;
    run("get", &e, get_).await;
    run("nack_requeue", &e, nack_requeue).await;
    run("confirms", &e, confirms).await;
    run("mandatory", &e, mandatory).await;
    run("competing", &e, competing).await;
    run("rpc", &e, rpc).await;
    run("large", &e, large).await;
    run("err_404", &e, err_404).await;
    run("err_406", &e, err_406).await;
    run("err_403", &e, err_403).await;
    run("vhost_user", &e, vhost_user).await;
}

#[cfg(test)]
mod tests {
    #[test]
    fn sha256_vectors() {
        let hex = |d: [u8; 32]| d.iter().map(|b| format!("{b:02x}")).collect::<String>();
        assert_eq!(
            hex(super::sha256(b"")),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            hex(super::sha256(b"abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
