//! The listener: accepts connections within the configured limit, and shuts down
//! gracefully (every connection gets connection.close 320, then the server waits for
//! them to finish, bounded by a timeout).

use crate::broker::Broker;
use crate::config::Config;
use crate::connection::{self, ServerContext};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

pub struct Server {
    listener: TcpListener,
    ctx: Arc<ServerContext>,
}

impl Server {
    /// Binds the listener. Port 0 picks a free port (see [`Server::local_addr`]).
    pub async fn bind(config: Config) -> std::io::Result<Server> {
        config
            .validate()
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        let started = std::time::Instant::now();
        let watermark = match config.memory_high_watermark {
            0 => crate::model::memory::default_high_watermark(),
            n => n as usize,
        };
        let memory = crate::model::memory::MemoryGauge::new(watermark);
        let options = crate::store::StoreOptions {
            cache_bytes: config.store_cache_mb.saturating_mul(1024 * 1024),
            page_after: config.queue_memory_messages,
            max_batch: config.store_max_batch,
            backlog_bytes: config.store_backlog_mb.saturating_mul(1024 * 1024),
        };
        let (store, recovered) = crate::store::Store::open(&config.data_dir, &memory, options)
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        let queues = recovered.queues.len();
        let messages: usize = recovered.queues.iter().map(|q| q.messages.len()).sum();
        let clean = recovered.clean;
        let broker = Broker::new(
            &config.default_user,
            &config.default_pass,
            &config.default_vhost,
            Some((store.clone(), recovered)),
            memory,
        );
        tracing::info!(
            file = %store.path().display(),
            queues,
            messages,
            clean_stop = clean,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "store recovered"
        );
        let listener = match TcpListener::bind(config.listen).await {
            Ok(l) => l,
            Err(e) => {
                broker.close();
                return Err(e);
            }
        };
        Ok(Server {
            listener,
            ctx: Arc::new(ServerContext { broker, config }),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        // The listener is bound, so its address is known; fall back to the configured one.
        self.listener.local_addr().unwrap_or(self.ctx.config.listen)
    }

    /// Accepts connections until `shutdown` completes, then closes them all.
    /// What every connection shares (the broker, the configuration): a handle to
    /// the running broker for whoever embeds it.
    pub fn context(&self) -> Arc<ServerContext> {
        self.ctx.clone()
    }

    pub async fn run(self, shutdown: impl Future<Output = ()>) -> std::io::Result<()> {
        let (stop_tx, stop_rx) = watch::channel(false);
        let limit = Arc::new(Semaphore::new(self.ctx.config.max_connections));
        let mut connections = JoinSet::new();
        let mut next_id: u64 = 1;
        tracing::info!(addr = %self.local_addr(), "listening for AMQP 0-9-1 connections");
        let sampler = tokio::spawn(sample_resources(self.ctx.clone()));
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                accepted = self.listener.accept() => {
                    let (socket, peer) = match accepted {
                        Ok(a) => a,
                        Err(error) => {
                            tracing::warn!(%error, "accept failed");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    };
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
                        connection::serve(socket, peer, id, ctx, stop).await;
                        drop(permit);
                    });
                }
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
            }
        }
        tracing::info!(connections = connections.len(), "shutting down");
        drop(self.listener);
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
        self.ctx.broker.close();
        tracing::info!("stopped");
        Ok(())
    }
}

/// Samples resident memory and free disk space every second for the alarms.
async fn sample_resources(ctx: Arc<ServerContext>) {
    use crate::model::memory::{disk_free, release_free_memory, resident_memory};
    let gauge = &ctx.broker.memory;
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
        if ctx.config.disk_free_limit > 0 {
            let dir = ctx.config.data_dir.clone();
            let free = tokio::task::spawn_blocking(move || disk_free(&dir))
                .await
                .ok()
                .flatten();
            if let Some(free) = free {
                gauge.set_disk_low(free < ctx.config.disk_free_limit);
            }
        }
    }
}
