//! A load run: declare the topology, connect producers and consumers, drive them until the
//! duration ends or the fixed message counts are done, then report.

use crate::cli::{ClientKind, ExchangeType, LoadArgs};
use crate::client::{
    Admin, ConfirmWindow, Consumer, ConsumerOptions, Publisher, PublisherOptions, Route,
};
use crate::raw_client;
use crate::roles::{Role, processes_cpu};
use crate::stats::{Reporter, Stats, cpu_time, unix_nanos};
use anyhow::{Context, Result, bail};
use serde_json::json;
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// After the producers finish a fixed count, stop waiting for consumers once nothing has
/// been delivered for this long.
const DRAIN_STALL: Duration = Duration::from_secs(5);

/// Queues, exchange and routing derived from the flags.
struct Topology {
    queues: Vec<String>,
    exchange: Option<(String, ExchangeType)>,
    /// Routing key each queue is bound with (when there is an exchange).
    binding_keys: Vec<String>,
    /// How many queues each published message reaches.
    copies: u64,
    durable: bool,
    /// Queues are streams (`--stream`).
    stream: bool,
    /// Queue holding the non-matching extra bindings (`--extra-bindings`), and their number.
    sink: Option<(String, usize)>,
}

impl Topology {
    fn new(args: &LoadArgs) -> Result<Self> {
        let n = args.fanout.unwrap_or(args.queues);
        if n == 0 {
            bail!("need at least one queue");
        }
        let prefix = args
            .queue_prefix
            .clone()
            .unwrap_or_else(|| format!("perf-{}", std::process::id()));
        let queues: Vec<String> = (1..=n).map(|i| format!("{prefix}-{i}")).collect();
        let kind = match (args.exchange_type, args.fanout) {
            (Some(t), _) => Some(t),
            (None, Some(_)) => Some(ExchangeType::Fanout),
            (None, None) => None,
        };
        let exchange = kind.map(|k| {
            (
                args.exchange
                    .clone()
                    .unwrap_or_else(|| format!("{prefix}-x")),
                k,
            )
        });
        // With --fanout every queue gets the same binding key, so a direct or topic exchange
        // fans out too; otherwise each queue is bound with its own name.
        let binding_keys = if args.fanout.is_some() {
            vec!["perf".to_string(); n]
        } else {
            queues.clone()
        };
        let copies = if args.fanout.is_some() { n as u64 } else { 1 };
        Ok(Topology {
            queues,
            exchange,
            binding_keys,
            copies,
            durable: args.persistent || args.durable || args.stream.is_some(),
            stream: args.stream.is_some(),
            sink: args
                .extra_bindings
                .filter(|n| *n > 1)
                .map(|n| (format!("{prefix}-sink"), n - 1)),
        })
    }

    fn route(&self, producer: usize) -> Route {
        let q = producer % self.queues.len();
        match &self.exchange {
            Some((x, _)) => Route {
                exchange: x.clone(),
                routing_key: self.binding_keys[q].clone(),
            },
            None => Route {
                exchange: String::new(),
                routing_key: self.queues[q].clone(),
            },
        }
    }

    async fn declare(&self, admin: &mut Admin, purge: bool) -> Result<()> {
        if let Some((x, kind)) = &self.exchange {
            admin.declare_exchange(x, *kind, self.durable).await?;
        }
        for (i, q) in self.queues.iter().enumerate() {
            if self.stream {
                admin.declare_stream(q).await?;
            } else {
                admin.declare_queue(q, self.durable).await?;
            }
            if let Some((x, _)) = &self.exchange {
                admin.bind_queue(q, x, &self.binding_keys[i]).await?;
            }
            if purge {
                admin.purge_queue(q).await?;
            }
        }
        if let (Some((x, kind)), Some((sink, n))) = (&self.exchange, &self.sink) {
            admin.declare_queue(sink, self.durable).await?;
            for i in 0..*n {
                let key = match (kind, i % 2) {
                    (ExchangeType::Topic, 0) => format!("k{i}.*"),
                    (ExchangeType::Topic, _) => format!("*.k{i}.#"),
                    _ => format!("k{i}"),
                };
                admin.bind_queue(sink, x, &key).await?;
            }
        }
        Ok(())
    }

    async fn delete(&self, admin: &mut Admin) -> Result<()> {
        for q in self.queues.iter().chain(self.sink.as_ref().map(|(q, _)| q)) {
            admin.delete_queue(q).await?;
        }
        if let Some((x, _)) = &self.exchange {
            admin.delete_exchange(x).await?;
        }
        Ok(())
    }
}

/// Everything a producer task needs.
struct ProducerTask {
    publisher: Publisher,
    confirms: Option<Arc<ConfirmWindow>>,
    stats: Arc<Stats>,
    cancel: CancellationToken,
    /// Messages per second for this producer.
    rate: Option<f64>,
    count: Option<u64>,
    size: usize,
}

impl ProducerTask {
    async fn run(self) -> Result<()> {
        match self.publisher {
            Publisher::Raw(_) if self.confirms.is_none() => self.run_raw().await,
            _ => self.run_each().await,
        }
    }

    /// The raw producer: as many messages as are due (at most a write batch) per write.
    async fn run_raw(self) -> Result<()> {
        let Publisher::Raw(mut p) = self.publisher else {
            bail!("not a raw publisher");
        };
        let batch = raw_client::Publisher::batch_for(self.size);
        let start = Instant::now();
        let mut sent = 0u64;
        loop {
            if self.cancel.is_cancelled() {
                break;
            }
            let mut n = batch;
            if let Some(c) = self.count {
                n = n.min(c - sent);
                if n == 0 {
                    break;
                }
            }
            if let Some(r) = self.rate {
                let due = (start.elapsed().as_secs_f64() * r) as u64 + 1;
                if sent >= due {
                    let next = start + Duration::from_secs_f64(sent as f64 / r);
                    tokio::select! {
                        _ = tokio::time::sleep_until(next.into()) => {}
                        _ = self.cancel.cancelled() => break,
                    }
                    continue;
                }
                n = n.min(due - sent);
            }
            let stamp = if self.size >= 8 { unix_nanos() } else { 0 };
            tokio::select! {
                r = p.publish_batch(n, self.size, stamp) => r?,
                _ = self.cancel.cancelled() => break,
            }
            self.stats.add_published(n);
            sent += n;
        }
        p.close().await;
        Ok(())
    }

    async fn run_each(mut self) -> Result<()> {
        let template = vec![0u8; self.size];
        let start = Instant::now();
        let mut sent = 0u64;
        loop {
            if self.cancel.is_cancelled() || self.count.is_some_and(|n| sent >= n) {
                break;
            }
            if let Some(r) = self.rate {
                // Send what is due by now; sleep until the next message is due.
                let due = (start.elapsed().as_secs_f64() * r) as u64 + 1;
                if sent >= due {
                    let next = start + Duration::from_secs_f64(sent as f64 / r);
                    tokio::select! {
                        _ = tokio::time::sleep_until(next.into()) => {}
                        _ = self.cancel.cancelled() => break,
                    }
                    continue;
                }
            }
            if let Some(w) = &self.confirms {
                tokio::select! {
                    p = w.permits.acquire() => p?.forget(),
                    _ = self.cancel.cancelled() => break,
                }
            }
            let mut body = template.clone();
            if body.len() >= 8 {
                body[..8].copy_from_slice(&unix_nanos().to_le_bytes());
            }
            tokio::select! {
                r = self.publisher.publish(body) => r?,
                _ = self.cancel.cancelled() => break,
            }
            self.stats.add_published(1);
            sent += 1;
        }
        // A fixed-count run waits for its last confirms.
        if let (Some(w), false) = (&self.confirms, self.cancel.is_cancelled()) {
            tokio::select! {
                p = w.permits.acquire_many(w.size as u32) => drop(p?),
                _ = self.cancel.cancelled() => {}
            }
        }
        self.publisher.close().await;
        Ok(())
    }
}

struct ConsumerTask {
    consumer: Consumer,
    stats: Arc<Stats>,
    cancel: CancellationToken,
    auto_ack: bool,
    multi_ack_every: u64,
    count: Option<u64>,
}

impl ConsumerTask {
    async fn run(self) -> Result<()> {
        match self.consumer {
            Consumer::Raw(_) => self.run_raw().await,
            _ => self.run_each().await,
        }
    }

    /// The raw consumer: every delivery in the read buffer per wake-up, acks in one write.
    async fn run_raw(self) -> Result<()> {
        let Consumer::Raw(mut c) = self.consumer else {
            bail!("not a raw consumer");
        };
        if !self.auto_ack {
            c.ack_every(self.multi_ack_every);
        }
        let recorder = self.stats.latency_recorder();
        let mut received = 0u64;
        loop {
            if self.count.is_some_and(|n| received >= n) {
                break;
            }
            // One clock read per batch, once its first delivery is complete.
            let mut now = 0;
            let record = |head: &[u8]| {
                if now == 0 {
                    now = unix_nanos();
                }
                recorder.record_body(head, now);
            };
            let n = tokio::select! {
                n = c.read_batch(record) => n,
                _ = self.cancel.cancelled() => break,
            };
            match n {
                Ok(n) => {
                    self.stats.add_delivered(n);
                    received += n;
                }
                Err(_) if self.cancel.is_cancelled() => break,
                Err(e) => return Err(e.context("consumer ended")),
            }
        }
        c.close().await;
        Ok(())
    }

    async fn run_each(mut self) -> Result<()> {
        let recorder = self.stats.latency_recorder();
        let mut received = 0u64;
        let every = self.multi_ack_every.max(1);
        loop {
            if self.count.is_some_and(|n| received >= n) {
                break;
            }
            let d = tokio::select! {
                d = self.consumer.next() => d,
                _ = self.cancel.cancelled() => break,
            };
            let d = match d {
                None => {
                    if self.cancel.is_cancelled() {
                        break;
                    }
                    bail!("consumer ended: channel or connection closed");
                }
                Some(d) => d?,
            };
            recorder.record_body(&d.body, unix_nanos());
            self.stats.add_delivered(1);
            received += 1;
            if !self.auto_ack && received.is_multiple_of(every) {
                self.consumer.ack(d.tag, every > 1).await?;
            }
        }
        self.consumer.close().await;
        Ok(())
    }
}

pub async fn run(kind: ClientKind, args: LoadArgs) -> Result<()> {
    if args.producers == 0 && args.consumers == 0 {
        bail!("nothing to do: no producers and no consumers");
    }
    let topo = Topology::new(&args)?;
    let stats = Arc::new(Stats::default());

    let mut admin = Admin::connect(kind, &args.uri)
        .await
        .context("admin connection")?;
    topo.declare(&mut admin, args.purge).await?;

    // Connect everyone before the clock starts.
    let consumer_opts = |i: usize| ConsumerOptions {
        queue: topo.queues[i % topo.queues.len()].clone(),
        prefetch: args.prefetch,
        auto_ack: args.auto_ack,
        stream_offset: args.stream.clone(),
    };
    // The raw client runs producers and consumers on a thread each (current-thread
    // runtimes), which also gives each role's CPU time; the others share the main runtime.
    let roles = if kind == ClientKind::Raw {
        let ncpu = std::thread::available_parallelism().map_or(1, |n| n.get());
        Some((
            Role::start("producers", args.pin.then_some(0))?,
            Role::start("consumers", args.pin.then_some(1 % ncpu))?,
        ))
    } else {
        None
    };
    let main_rt = tokio::runtime::Handle::current();
    let (producer_rt, consumer_rt) = match &roles {
        Some((p, c)) => (p.handle().clone(), c.handle().clone()),
        None => (main_rt.clone(), main_rt),
    };
    let mut connecting = JoinSet::new();
    for i in 0..args.consumers {
        let (uri, opts) = (args.uri.clone(), consumer_opts(i));
        connecting.spawn_on(
            async move { Consumer::connect(kind, &uri, opts).await },
            &consumer_rt,
        );
    }
    let mut consumers = Vec::new();
    while let Some(r) = connecting.join_next().await {
        consumers.push(r?.context("consumer connection")?);
    }
    let mut connecting = JoinSet::new();
    for i in 0..args.producers {
        let confirms = args
            .confirm
            .map(|n| Arc::new(ConfirmWindow::new(n.max(1), stats.clone())));
        let opts = PublisherOptions {
            route: topo.route(i),
            persistent: args.persistent,
            confirms: confirms.clone(),
        };
        let uri = args.uri.clone();
        connecting.spawn_on(
            async move {
                Ok::<_, anyhow::Error>((Publisher::connect(kind, &uri, opts).await?, confirms))
            },
            &producer_rt,
        );
    }
    let mut producers = Vec::new();
    while let Some(r) = connecting.join_next().await {
        producers.push(r?.context("producer connection")?);
    }

    let cancel = CancellationToken::new();
    let mut reporter = Reporter::new(
        stats.clone(),
        args.json,
        args.quiet,
        args.broker_pid.clone(),
    );
    let start = reporter.start();
    let role_cpu = || {
        roles
            .as_ref()
            .map(|(p, c)| (p.cpu(), c.cpu()))
            .unwrap_or_default()
    };
    let roles_at_start = role_cpu();
    let broker_at_start = processes_cpu(&args.broker_pid);

    let consumers_left = Arc::new(AtomicUsize::new(consumers.len()));
    let mut consumer_tasks = JoinSet::new();
    for consumer in consumers {
        let task = ConsumerTask {
            consumer,
            stats: stats.clone(),
            cancel: cancel.clone(),
            auto_ack: args.auto_ack,
            multi_ack_every: args.multi_ack_every,
            count: args.cmessages,
        };
        let left = consumers_left.clone();
        let stats = stats.clone();
        consumer_tasks.spawn_on(
            async move {
                if let Err(e) = task.run().await {
                    stats.error(format!("consumer: {e:#}"));
                }
                left.fetch_sub(1, Ordering::Relaxed);
            },
            &consumer_rt,
        );
    }
    let rate = args
        .rate
        .filter(|r| *r > 0.0)
        .map(|r| r / args.producers.max(1) as f64);
    let producers_left = Arc::new(AtomicUsize::new(producers.len()));
    let mut producer_tasks = JoinSet::new();
    for (publisher, confirms) in producers {
        let task = ProducerTask {
            publisher,
            confirms,
            stats: stats.clone(),
            cancel: cancel.clone(),
            rate,
            count: args.pmessages,
            size: args.size,
        };
        let left = producers_left.clone();
        let stats = stats.clone();
        producer_tasks.spawn_on(
            async move {
                if let Err(e) = task.run().await {
                    stats.error(format!("producer: {e:#}"));
                }
                left.fetch_sub(1, Ordering::Relaxed);
            },
            &producer_rt,
        );
    }

    // Wait for the end of the run.
    let deadline = (args.duration > 0.0).then(|| start + Duration::from_secs_f64(args.duration));
    let mut ticker = tokio::time::interval_at(
        (start + Duration::from_secs(1)).into(),
        Duration::from_secs(1),
    );
    let mut poll = tokio::time::interval(Duration::from_millis(20));
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let mut producers_done_at: Option<Instant> = None;
    let mut last_delivery_at = start;
    let mut last_delivered = 0;
    let mut interrupted = false;
    loop {
        tokio::select! {
            _ = ticker.tick() => reporter.tick(),
            _ = poll.tick() => {}
            _ = &mut ctrl_c => { interrupted = true; break; }
        }
        let now = Instant::now();
        let delivered = stats.delivered();
        if delivered != last_delivered {
            last_delivered = delivered;
            last_delivery_at = now;
        }
        if deadline.is_some_and(|d| now >= d) {
            break;
        }
        let producers_done = producers_left.load(Ordering::Relaxed) == 0;
        if producers_done && producers_done_at.is_none() {
            producers_done_at = Some(now);
        }
        let consumers_done = consumers_left.load(Ordering::Relaxed) == 0;
        let fixed_count = args.pmessages.is_some() || args.cmessages.is_some();
        if producers_done && consumers_done {
            break;
        }
        if !fixed_count {
            continue;
        }
        if producers_done && args.consumers == 0 {
            break;
        }
        if producers_done && args.cmessages.is_none() {
            // Consumers without a count stop once they have everything that was published.
            let expected = stats.published() * topo.copies;
            if stats.delivered() >= expected {
                break;
            }
            if now.duration_since(last_delivery_at.max(producers_done_at.unwrap_or(now)))
                > DRAIN_STALL
            {
                stats.error(format!(
                    "gave up waiting for deliveries: {} of {expected} after a {}s stall",
                    stats.delivered(),
                    DRAIN_STALL.as_secs()
                ));
                break;
            }
        }
    }
    let end = Instant::now();
    let cpu_at_end = cpu_time();
    let roles_at_end = role_cpu();
    let broker_at_end = processes_cpu(&args.broker_pid);
    cancel.cancel();
    // Producers close their connections (waiting for in-flight writes); don't hang on it.
    let _ = tokio::time::timeout(Duration::from_secs(10), async {
        while producer_tasks.join_next().await.is_some() {}
        while consumer_tasks.join_next().await.is_some() {}
    })
    .await;

    let timed = deadline.is_some() || interrupted;
    let publish_end = if timed {
        end
    } else {
        producers_done_at.unwrap_or(end)
    };
    let deliver_end = if timed { end } else { last_delivery_at };
    // CPU per message: per published message for the producers, per delivery for the
    // consumers and the broker (and per published message for the broker as well).
    let (published, delivered) = (stats.published(), stats.delivered());
    let us_per = |cpu: Duration, n: u64| (n > 0).then(|| cpu.as_secs_f64() * 1e6 / n as f64);
    let producer_cpu = roles_at_end.0.saturating_sub(roles_at_start.0);
    let consumer_cpu = roles_at_end.1.saturating_sub(roles_at_start.1);
    let client_cpu = cpu_at_end.saturating_sub(reporter.cpu_start());
    let broker_cpu = broker_at_end.saturating_sub(broker_at_start);
    let mut cost = json!({
        "client_us_per_msg": us_per(client_cpu, published.max(delivered)),
    });
    if roles.is_some() {
        cost["producer_cpu_s"] = json!(producer_cpu.as_secs_f64());
        cost["consumer_cpu_s"] = json!(consumer_cpu.as_secs_f64());
        cost["producer_us_per_msg"] = json!(us_per(producer_cpu, published));
        cost["consumer_us_per_msg"] = json!(us_per(consumer_cpu, delivered));
    }
    if !args.broker_pid.is_empty() {
        cost["broker_cpu_s"] = json!(broker_cpu.as_secs_f64());
        cost["broker_us_per_delivery"] = json!(us_per(broker_cpu, delivered));
        cost["broker_us_per_publish"] = json!(us_per(broker_cpu, published));
    }
    let mut extra = json!({
        "client": format!("{kind:?}").to_lowercase(),
        "producers": args.producers,
        "consumers": args.consumers,
        "queues": topo.queues.len(),
        "size": args.size,
        "interrupted": interrupted,
    });
    if let (serde_json::Value::Object(e), serde_json::Value::Object(c)) = (&mut extra, cost) {
        e.extend(c);
    }
    let summary = reporter.summary(
        end,
        cpu_at_end,
        publish_end.duration_since(start).as_secs_f64(),
        deliver_end.duration_since(start).as_secs_f64(),
        extra,
    );
    if let Some(path) = &args.summary_file {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        writeln!(f, "{summary}")?;
    }

    if !args.keep
        && let Err(e) = topo.delete(&mut admin).await
    {
        eprintln!("warren-perf: cleanup: {e:#}");
    }
    admin.close().await;
    drop(roles);
    let errors = stats.errors();
    if !errors.is_empty() {
        bail!("{} error(s) during the run", errors.len());
    }
    Ok(())
}
