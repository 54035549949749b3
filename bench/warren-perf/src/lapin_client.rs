//! The `lapin` backend.
//!
//! lapin's `basic_publish` and `basic_ack` resolve only once their frames have been written
//! by the connection's I/O thread, so awaiting each in turn costs a thread round trip per
//! message. To keep messages flowing, publishes (with their confirms) and acks run as spawned
//! tasks, bounded by a semaphore.

use crate::cli::ExchangeType;
use crate::client::{
    ConfirmWindow, ConsumerOptions, Delivery, PublisherOptions, stream_offset_table,
};
use anyhow::{Result, anyhow};
use futures_lite::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicGetOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions,
    QueueDeclareOptions, QueueDeleteOptions, QueuePurgeOptions,
};
use lapin::types::{FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::sync::Semaphore;

/// Publishes (or acks) in flight at once per connection when nothing else bounds them.
const IN_FLIGHT: usize = 256;

async fn open(uri: &str) -> Result<(Connection, Channel)> {
    let conn = Connection::connect(uri, ConnectionProperties::default())
        .await
        .map_err(|e| anyhow!("connect to {uri}: {e}"))?;
    let ch = conn
        .create_channel()
        .await
        .map_err(|e| anyhow!("open channel: {e}"))?;
    Ok((conn, ch))
}

async fn close_conn(conn: Connection) {
    let _ = conn.close(200, "bye".into()).await;
}

pub struct Publisher {
    conn: Connection,
    ch: Channel,
    exchange: ShortString,
    routing_key: ShortString,
    props: BasicProperties,
    confirms: Option<Arc<ConfirmWindow>>,
    in_flight: Arc<Semaphore>,
    failed: Arc<AtomicBool>,
}

impl Publisher {
    pub async fn connect(uri: &str, opts: PublisherOptions) -> Result<Self> {
        let (conn, ch) = open(uri).await?;
        if opts.confirms.is_some() {
            ch.confirm_select(ConfirmSelectOptions::default())
                .await
                .map_err(|e| anyhow!("confirm.select: {e}"))?;
        }
        let mut props = BasicProperties::default();
        if opts.persistent {
            props = props.with_delivery_mode(2);
        }
        Ok(Publisher {
            conn,
            ch,
            exchange: opts.route.exchange.as_str().into(),
            routing_key: opts.route.routing_key.as_str().into(),
            props,
            confirms: opts.confirms,
            in_flight: Arc::new(Semaphore::new(IN_FLIGHT)),
            failed: Arc::new(AtomicBool::new(false)),
        })
    }

    pub async fn publish(&mut self, body: Vec<u8>) -> Result<()> {
        if self.failed.load(Ordering::Relaxed) || !self.conn.status().connected() {
            return Err(anyhow!("basic.publish failed: connection lost"));
        }
        // With confirms, the confirm window (taken by the caller) bounds what is in flight.
        let permit = match self.confirms {
            Some(_) => None,
            None => Some(self.in_flight.clone().acquire_owned().await?),
        };
        let ch = self.ch.clone();
        let exchange = self.exchange.clone();
        let key = self.routing_key.clone();
        let props = self.props.clone();
        let confirms = self.confirms.clone();
        let failed = self.failed.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let result = async {
                let confirm = ch
                    .basic_publish(exchange, key, BasicPublishOptions::default(), &body, props)
                    .await?;
                if let Some(window) = confirms {
                    let c = confirm.await?;
                    window.settled(1, c.is_ack());
                }
                Ok::<_, lapin::Error>(())
            }
            .await;
            if result.is_err() {
                failed.store(true, Ordering::Relaxed);
            }
        });
        Ok(())
    }

    pub async fn close(self) {
        // Let spawned publishes finish writing before closing.
        let _ = self.in_flight.acquire_many(IN_FLIGHT as u32).await;
        close_conn(self.conn).await;
    }
}

pub struct Consumer {
    conn: Connection,
    ch: Channel,
    consumer: lapin::Consumer,
    in_flight: Arc<Semaphore>,
}

impl Consumer {
    pub async fn connect(uri: &str, opts: ConsumerOptions) -> Result<Self> {
        let (conn, ch) = open(uri).await?;
        if opts.prefetch > 0 {
            ch.basic_qos(opts.prefetch, BasicQosOptions::default())
                .await
                .map_err(|e| anyhow!("basic.qos: {e}"))?;
        }
        let options = BasicConsumeOptions {
            no_ack: opts.auto_ack,
            ..Default::default()
        };
        let consumer = ch
            .basic_consume(
                opts.queue.as_str().into(),
                "".into(),
                options,
                stream_offset_table(opts.stream_offset.as_deref()),
            )
            .await
            .map_err(|e| anyhow!("basic.consume on {}: {e}", opts.queue))?;
        Ok(Consumer {
            conn,
            ch,
            consumer,
            in_flight: Arc::new(Semaphore::new(IN_FLIGHT)),
        })
    }

    pub async fn next(&mut self) -> Option<Result<Delivery>> {
        let d = self.consumer.next().await?;
        Some(
            d.map(|d| Delivery {
                tag: d.delivery_tag,
                body: d.data,
            })
            .map_err(|e| anyhow!("consumer: {e}")),
        )
    }

    pub async fn ack(&mut self, tag: u64, multiple: bool) -> Result<()> {
        let permit = self.in_flight.clone().acquire_owned().await?;
        let ch = self.ch.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let _ = ch.basic_ack(tag, BasicAckOptions { multiple }).await;
        });
        Ok(())
    }

    pub async fn close(self) {
        let _ = self.in_flight.acquire_many(IN_FLIGHT as u32).await;
        close_conn(self.conn).await;
    }
}

pub struct Admin {
    uri: String,
    conn: Connection,
    ch: Channel,
}

impl Admin {
    pub async fn connect(uri: &str) -> Result<Self> {
        let (conn, ch) = open(uri).await?;
        Ok(Admin {
            uri: uri.to_string(),
            conn,
            ch,
        })
    }

    /// Reopens the channel (or the connection) if the broker closed it after an error.
    async fn ensure_channel(&mut self) -> Result<()> {
        if !self.ch.status().connected() {
            if !self.conn.status().connected() {
                let (conn, ch) = open(&self.uri).await?;
                self.conn = conn;
                self.ch = ch;
            } else {
                self.ch = self
                    .conn
                    .create_channel()
                    .await
                    .map_err(|e| anyhow!("open channel: {e}"))?;
            }
        }
        Ok(())
    }

    pub async fn declare_exchange(
        &mut self,
        name: &str,
        kind: ExchangeType,
        durable: bool,
    ) -> Result<()> {
        self.ensure_channel().await?;
        let kind = match kind {
            ExchangeType::Direct => ExchangeKind::Direct,
            ExchangeType::Fanout => ExchangeKind::Fanout,
            ExchangeType::Topic => ExchangeKind::Topic,
        };
        let options = ExchangeDeclareOptions {
            durable,
            ..Default::default()
        };
        self.ch
            .exchange_declare(name.into(), kind, options, FieldTable::default())
            .await
            .map_err(|e| anyhow!("exchange.declare {name}: {e}"))
    }

    pub async fn declare_stream(&mut self, name: &str) -> Result<u64> {
        self.ensure_channel().await?;
        let options = QueueDeclareOptions {
            durable: true,
            ..Default::default()
        };
        let mut args = FieldTable::default();
        args.insert(
            "x-queue-type".into(),
            lapin::types::AMQPValue::LongString("stream".into()),
        );
        let q = self
            .ch
            .queue_declare(name.into(), options, args)
            .await
            .map_err(|e| anyhow!("queue.declare {name} (stream): {e}"))?;
        Ok(u64::from(q.message_count()))
    }

    pub async fn declare_queue(&mut self, name: &str, durable: bool) -> Result<u64> {
        self.ensure_channel().await?;
        let options = QueueDeclareOptions {
            durable,
            ..Default::default()
        };
        let q = self
            .ch
            .queue_declare(name.into(), options, FieldTable::default())
            .await
            .map_err(|e| anyhow!("queue.declare {name}: {e}"))?;
        Ok(u64::from(q.message_count()))
    }

    pub async fn queue_message_count(&mut self, name: &str) -> Result<u64> {
        self.ensure_channel().await?;
        let options = QueueDeclareOptions {
            passive: true,
            ..Default::default()
        };
        let q = self
            .ch
            .queue_declare(name.into(), options, FieldTable::default())
            .await
            .map_err(|e| anyhow!("passive queue.declare {name}: {e}"))?;
        Ok(u64::from(q.message_count()))
    }

    pub async fn bind_queue(&mut self, queue: &str, exchange: &str, key: &str) -> Result<()> {
        self.ensure_channel().await?;
        self.ch
            .queue_bind(
                queue.into(),
                exchange.into(),
                key.into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(|e| anyhow!("queue.bind {queue}: {e}"))
    }

    pub async fn purge_queue(&mut self, name: &str) -> Result<()> {
        self.ensure_channel().await?;
        self.ch
            .queue_purge(name.into(), QueuePurgeOptions::default())
            .await
            .map(|_| ())
            .map_err(|e| anyhow!("queue.purge {name}: {e}"))
    }

    pub async fn delete_queue(&mut self, name: &str) -> Result<()> {
        self.ensure_channel().await?;
        self.ch
            .queue_delete(name.into(), QueueDeleteOptions::default())
            .await
            .map(|_| ())
            .map_err(|e| anyhow!("queue.delete {name}: {e}"))
    }

    pub async fn delete_exchange(&mut self, name: &str) -> Result<()> {
        self.ensure_channel().await?;
        self.ch
            .exchange_delete(name.into(), ExchangeDeleteOptions::default())
            .await
            .map_err(|e| anyhow!("exchange.delete {name}: {e}"))
    }

    pub async fn get_one(&mut self, queue: &str) -> Result<bool> {
        self.ensure_channel().await?;
        let r = self
            .ch
            .basic_get(queue.into(), BasicGetOptions { no_ack: false })
            .await
            .map_err(|e| anyhow!("basic.get {queue}: {e}"))?;
        Ok(r.is_some())
    }

    pub async fn close(self) {
        close_conn(self.conn).await;
    }
}
