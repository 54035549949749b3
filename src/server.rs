//! The listeners: accept connections within the configured limit, and shut down
//! gracefully (every connection gets connection.close 320, then the server waits for
//! them to finish, bounded by a timeout).
//!
//! Every configured address gets its own socket; IPv6 sockets are IPv6-only, so
//! `[::]:5672` and `0.0.0.0:5672` (RabbitMQ's "every interface") bind side by side. On a
//! host without IPv6, IPv6 listeners are skipped with a warning as long as another
//! listener is bound. Once every listener is bound the server logs RabbitMQ's
//! `Server startup complete` line, which testcontainers waits for.

use crate::broker::Broker;
use crate::config::Config;
use crate::connection::{self, ServerContext};
use crate::tls::TlsAcceptor;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinSet;

/// The line RabbitMQ logs when it has booted; testcontainers (Java, Go, .NET) wait for
/// `.*Server startup complete.*`.
pub const STARTUP_COMPLETE: &str = "Server startup complete; 0 plugins started.";

pub struct Server {
    /// Each bound listener with its address (port 0 resolved).
    listeners: Vec<(TcpListener, SocketAddr)>,
    /// The Prometheus listener, if enabled, with its address.
    prometheus: Option<(TcpListener, SocketAddr)>,
    /// The management HTTP API's listener, if configured.
    management: Option<(TcpListener, SocketAddr)>,
    /// The amqps listeners and their acceptor.
    tls_listeners: Vec<(TcpListener, SocketAddr)>,
    amqp_tls: Option<TlsAcceptor>,
    /// The management API's HTTPS listener and its acceptor.
    management_tls: Option<(TcpListener, SocketAddr, TlsAcceptor)>,
    ctx: Arc<ServerContext>,
}

/// An accepted socket, with the acceptor of an amqps listener.
type Accepted = (TcpStream, SocketAddr, Option<TlsAcceptor>);

impl Server {
    /// Binds the listener. Port 0 picks a free port (see [`Server::local_addr`]).
    pub async fn bind(config: Config) -> std::io::Result<Server> {
        config
            .validate()
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        // Certificates and keys are read before anything else: a bad file stops the
        // boot before the store is touched.
        let invalid = |e: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, e);
        let amqp_tls = config.tls.amqp_acceptor().map_err(invalid)?;
        let management_acceptor = config.tls.management_acceptor().map_err(invalid)?;
        let started = std::time::Instant::now();
        let watermark = config.memory_watermark_bytes();
        let memory = crate::model::memory::MemoryGauge::new(watermark);
        let options = crate::store::StoreOptions {
            cache_bytes: config.store_cache_mb.saturating_mul(1024 * 1024),
            page_after: config.queue_memory_messages,
            max_batch: config.store_max_batch,
            backlog_bytes: config.store_backlog_mb.saturating_mul(1024 * 1024),
        };
        // Definitions are parsed before the store is opened: a file that does not
        // parse stops the boot before anything is touched.
        let definitions = match &config.load_definitions {
            Some(path) => {
                Some(crate::definitions::BootDefinitions::read(path).map_err(definitions_error)?)
            }
            None => None,
        };
        let (store, recovered) = crate::store::Store::open(&config.data_dir, &memory, options)
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        let queues = recovered.queues.len();
        let messages: usize = recovered.queues.iter().map(|q| q.messages.len()).sum();
        let clean = recovered.clean;
        // A store from before format 2 has data but no users: an upgrade, not a
        // first boot.
        let migrated = recovered.previous_format.is_some();
        let broker = Broker::new(
            false,
            &config.default_user,
            &config.default_pass,
            &config.default_vhost,
            Some((store.clone(), recovered)),
            memory,
        )
        .map_err(|e| std::io::Error::other(format!("{}: {e}", store.path().display())))?;
        // RabbitMQ's rule: a first boot that imports definitions creates no default
        // user and vhost.
        if broker.fresh() && (definitions.is_none() || migrated) {
            broker.create_defaults(
                &config.default_user,
                &config.default_pass,
                &config.default_vhost,
            );
            broker.add_vhost(&config.default_vhost);
        }
        // What exists is kept. RabbitMQ 3.10.8 (checked by hand) re-imports the file
        // at every boot and resets users, permissions and policies to the file's;
        // ImportMode::Overwrite would do the same.
        if let Some(definitions) = &definitions
            && let Err(e) =
                definitions.import(&broker, crate::definitions::ImportMode::KeepExisting)
        {
            broker.close();
            return Err(definitions_error(e));
        }
        tracing::info!(
            file = %store.path().display(),
            queues,
            messages,
            clean_stop = clean,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "store recovered"
        );
        let listeners = match bind_all(&config.listen) {
            Ok(l) => l,
            Err(e) => {
                broker.close();
                return Err(e);
            }
        };
        let prometheus = match config.prometheus_listen.map(bind_http).transpose() {
            Ok(p) => p,
            Err(e) => {
                broker.close();
                return Err(e);
            }
        };
        let management = match config.management_listen.map(bind_http).transpose() {
            Ok(m) => m,
            Err(e) => {
                broker.close();
                return Err(std::io::Error::new(
                    e.kind(),
                    format!("cannot listen for the management API: {e}"),
                ));
            }
        };
        let tls_listeners = if config.tls.listen.is_empty() {
            Vec::new()
        } else {
            match bind_all(&config.tls.listen) {
                Ok(l) => l,
                Err(e) => {
                    broker.close();
                    return Err(e);
                }
            }
        };
        let management_tls = match (config.tls.management_listen, management_acceptor) {
            (Some(addr), Some(acceptor)) => match bind_http(addr) {
                Ok((listener, local)) => Some((listener, local, acceptor)),
                Err(e) => {
                    broker.close();
                    return Err(std::io::Error::new(
                        e.kind(),
                        format!("cannot listen for the management API over HTTPS: {e}"),
                    ));
                }
            },
            _ => None,
        };
        Ok(Server {
            listeners,
            prometheus,
            management,
            tls_listeners,
            amqp_tls,
            management_tls,
            ctx: Arc::new(ServerContext { broker, config }),
        })
    }

    /// The first listener's address (tests bind one listener on port 0 and read it here).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addrs()[0]
    }

    /// The Prometheus listener's address (port 0 resolved), if it is enabled.
    pub fn prometheus_addr(&self) -> Option<SocketAddr> {
        self.prometheus.as_ref().map(|(_, addr)| *addr)
    }

    /// Every bound listener's address, in configuration order (never empty).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.listeners.iter().map(|(_, addr)| *addr).collect()
    }

    /// Every amqps listener's address (port 0 resolved), in configuration order.
    pub fn tls_addrs(&self) -> Vec<SocketAddr> {
        self.tls_listeners.iter().map(|(_, addr)| *addr).collect()
    }

    /// The management API's HTTPS address (port 0 resolved), if it listens.
    pub fn management_tls_addr(&self) -> Option<SocketAddr> {
        self.management_tls.as_ref().map(|(_, a, _)| *a)
    }

    /// The management HTTP API's address (port 0 resolved), if it listens.
    pub fn management_addr(&self) -> Option<SocketAddr> {
        self.management.as_ref().map(|(_, a)| *a)
    }

    /// What every connection shares (the broker, the configuration): a handle to
    /// the running broker for whoever embeds it.
    pub fn context(&self) -> Arc<ServerContext> {
        self.ctx.clone()
    }

    /// Accepts connections until `shutdown` completes, then closes them all.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> std::io::Result<()> {
        let (stop_tx, stop_rx) = watch::channel(false);
        let limit = Arc::new(Semaphore::new(self.ctx.config.max_connections));
        let mut connections = JoinSet::new();
        let mut next_id: u64 = 1;
        let (accepted_tx, mut accepted_rx) = mpsc::channel::<Accepted>(64);
        let mut acceptors = JoinSet::new();
        let amqp_addrs: Vec<SocketAddr> = self.listeners.iter().map(|(_, a)| *a).collect();
        for (listener, addr) in self.listeners {
            tracing::info!(%addr, "listening for AMQP 0-9-1 connections");
            acceptors.spawn(accept_loop(listener, None, accepted_tx.clone()));
        }
        for (listener, addr) in self.tls_listeners {
            tracing::info!(%addr, "listening for AMQP 0-9-1 connections over TLS");
            acceptors.spawn(accept_loop(
                listener,
                self.amqp_tls.clone(),
                accepted_tx.clone(),
            ));
        }
        drop(accepted_tx);
        let management_tls = self.management_tls.map(|(listener, addr, acceptor)| {
            tracing::info!(%addr, "listening for management API requests over HTTPS");
            let api = crate::http::Api {
                ctx: self.ctx.clone(),
                amqp: Arc::new(amqp_addrs.clone()),
                management: addr,
            };
            let timeout = Duration::from_secs(self.ctx.config.handshake_timeout_secs);
            let listener = crate::tls::listener::TlsListener::new(listener, acceptor, timeout);
            tokio::spawn(crate::http::serve(listener, api, stop_rx.clone()))
        });
        let management = self.management.map(|(listener, addr)| {
            tracing::info!(%addr, "listening for management API requests");
            let api = crate::http::Api {
                ctx: self.ctx.clone(),
                amqp: Arc::new(amqp_addrs.clone()),
                management: addr,
            };
            tokio::spawn(crate::http::serve(listener, api, stop_rx.clone()))
        });
        let sampler = tokio::spawn(sample_resources(self.ctx.clone()));
        let prometheus = self.prometheus.map(|(listener, addr)| {
            tracing::info!(%addr, "serving Prometheus metrics");
            let exporter = Arc::new(crate::metrics::report::Exporter::new(self.ctx.clone()));
            let mut stop = stop_rx.clone();
            tokio::spawn(crate::metrics::http::serve(
                listener,
                exporter,
                async move {
                    let _ = stop.wait_for(|s| *s).await;
                },
            ))
        });
        tracing::info!(
            version = crate::identity::WARREN_VERSION,
            rabbitmq_version = crate::identity::RABBITMQ_VERSION,
            "{STARTUP_COMPLETE}"
        );
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                accepted = accepted_rx.recv() => {
                    let Some((socket, peer, tls)) = accepted else { break };
                    let Ok(permit) = limit.clone().try_acquire_owned() else {
                        tracing::warn!(
                            %peer,
                            limit = self.ctx.config.max_connections,
                            "connection refused: connection limit reached"
                        );
                        drop(socket);
                        continue;
                    };
                    let id = next_id;
                    next_id += 1;
                    let ctx = self.ctx.clone();
                    let stop = stop_rx.clone();
                    connections.spawn(async move {
                        connection::serve(socket, peer, id, ctx, stop, tls).await;
                        drop(permit);
                    });
                }
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
            }
        }
        tracing::info!(connections = connections.len(), "shutting down");
        acceptors.abort_all();
        while acceptors.join_next().await.is_some() {}
        let _ = stop_tx.send(true);
        let grace = Duration::from_secs(self.ctx.config.close_timeout_secs + 2);
        if tokio::time::timeout(grace, async {
            while connections.join_next().await.is_some() {}
        })
        .await
        .is_err()
        {
            connections.abort_all();
        }
        sampler.abort();
        if let Some(p) = prometheus {
            p.abort();
        }
        for task in [management, management_tls].into_iter().flatten() {
            if tokio::time::timeout(Duration::from_secs(2), task)
                .await
                .is_err()
            {
                tracing::warn!("management API did not stop in time");
            }
        }
        self.ctx.broker.close();
        tracing::info!("stopped");
        Ok(())
    }
}

/// Accepts on one listener and hands each connection to the server loop, with the
/// listener's TLS acceptor if it is an amqps listener.
async fn accept_loop(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    to_server: mpsc::Sender<Accepted>,
) {
    loop {
        match listener.accept().await {
            Ok((socket, peer)) => {
                if to_server.send((socket, peer, tls.clone())).await.is_err() {
                    return;
                }
            }
            Err(error) => {
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Binds every address. Addresses with port 0 share the port the first of them gets.
fn bind_all(addrs: &[SocketAddr]) -> std::io::Result<Vec<(TcpListener, SocketAddr)>> {
    let mut bound = Vec::new();
    let mut skipped = Vec::new();
    let mut picked_port = None;
    for &configured in addrs {
        let mut addr = configured;
        if addr.port() == 0
            && let Some(port) = picked_port
        {
            addr.set_port(port);
        }
        match bind_one(addr) {
            Ok(listener) => {
                let local = listener.local_addr()?;
                if configured.port() == 0 && picked_port.is_none() {
                    picked_port = Some(local.port());
                }
                bound.push((listener, local));
            }
            Err(e) if addr.is_ipv6() && ipv6_unavailable(&e) => skipped.push((addr, e)),
            Err(e) => {
                return Err(std::io::Error::new(
                    e.kind(),
                    format!("cannot listen on {addr}: {e}"),
                ));
            }
        }
    }
    if bound.is_empty() {
        let (addr, e) = skipped
            .into_iter()
            .next()
            .ok_or_else(|| std::io::Error::other("no listen address configured"))?;
        return Err(std::io::Error::new(
            e.kind(),
            format!("cannot listen on {addr}: {e}"),
        ));
    }
    for (addr, error) in skipped {
        tracing::warn!(%addr, %error, "IPv6 is not available here: not listening on this address");
    }
    Ok(bound)
}

/// Errors that mean the host has no IPv6 (or not that address), not a conflict.
fn ipv6_unavailable(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::AddrNotAvailable || e.raw_os_error() == Some(libc::EAFNOSUPPORT)
}

/// Binds an HTTP listener, naming the address in the error.
fn bind_http(addr: SocketAddr) -> std::io::Result<(TcpListener, SocketAddr)> {
    let listener = bind_one(addr)
        .map_err(|e| std::io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))?;
    let local = listener.local_addr()?;
    Ok((listener, local))
}

fn bind_one(addr: SocketAddr) -> std::io::Result<TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    // As tokio's TcpListener::bind: a restarted broker rebinds at once.
    #[cfg(unix)]
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    TcpListener::from_std(socket.into())
}

/// Samples resident memory and free disk space every second for the alarms.
async fn sample_resources(ctx: Arc<ServerContext>) {
    use crate::model::memory::{disk_free, release_free_memory, resident_memory};
    let gauge = &ctx.broker.memory;
    let disk_limit = ctx.config.disk_free_limit();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let strategy = ctx.config.memory_calculation_strategy;
        if strategy == crate::config::MemoryStrategy::Rss
            && let Some(mut resident) = resident_memory()
        {
            if resident > gauge.high_watermark() && gauge.used() < gauge.high_watermark() / 2 {
                // Most of it may be freed memory the allocator kept: give it back
                // before deciding that the broker really holds that much.
                release_free_memory();
                resident = resident_memory().unwrap_or(resident);
            }
            gauge.set_resident(resident);
        }
        if disk_limit > 0 {
            let dir = ctx.config.data_dir.clone();
            let free = tokio::task::spawn_blocking(move || disk_free(&dir))
                .await
                .ok()
                .flatten();
            if let Some(free) = free {
                gauge.set_disk_low(free < disk_limit);
            }
        }
    }
}

fn definitions_error(e: crate::definitions::DefinitionsError) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string())
}
