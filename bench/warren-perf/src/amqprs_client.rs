//! The `amqprs` backend.

use crate::cli::ExchangeType;
use crate::client::{
    ConfirmWindow, ConsumerOptions, Delivery, PublisherOptions, StreamOffset, parse_uri,
};
use amqprs::callbacks::ChannelCallback;
use amqprs::channel::{
    BasicAckArguments, BasicConsumeArguments, BasicGetArguments, BasicPublishArguments,
    BasicQosArguments, Channel, ConfirmSelectArguments, ConsumerMessage, ExchangeDeclareArguments,
    ExchangeDeleteArguments, QueueBindArguments, QueueDeclareArguments, QueueDeleteArguments,
    QueuePurgeArguments,
};
use amqprs::connection::{Connection, OpenConnectionArguments};
use amqprs::{Ack, BasicProperties, Cancel, CloseChannel, FieldTable, FieldValue, Nack, Return};
use anyhow::{Context, Result, anyhow};
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc::UnboundedReceiver;

async fn open(uri: &str) -> Result<(Connection, Channel)> {
    let p = parse_uri(uri)?;
    let args = OpenConnectionArguments::new(&p.host, p.port, &p.user, &p.password)
        .virtual_host(&p.vhost)
        .finish();
    let conn = Connection::open(&args)
        .await
        .map_err(|e| anyhow!("connect to {}:{}: {e}", p.host, p.port))?;
    let ch = conn
        .open_channel(None)
        .await
        .map_err(|e| anyhow!("open channel: {e}"))?;
    Ok((conn, ch))
}

async fn close_all(conn: Connection, ch: Channel) {
    let _ = ch.close().await;
    let _ = conn.close().await;
}

/// Publisher-confirm sequence numbers still waiting for the broker's ack or nack.
struct Outstanding {
    next_tag: u64,
    unconfirmed: BTreeSet<u64>,
}

impl Outstanding {
    /// Removes the confirmed tags and returns how many there were.
    fn settle(&mut self, tag: u64, multiple: bool) -> usize {
        if multiple {
            let rest = self.unconfirmed.split_off(&(tag + 1));
            let n = self.unconfirmed.len();
            self.unconfirmed = rest;
            n
        } else {
            usize::from(self.unconfirmed.remove(&tag))
        }
    }
}

struct ConfirmCallback {
    window: Arc<ConfirmWindow>,
    outstanding: Arc<Mutex<Outstanding>>,
}

#[async_trait::async_trait]
impl ChannelCallback for ConfirmCallback {
    async fn close(
        &mut self,
        _: &Channel,
        close: CloseChannel,
    ) -> Result<(), amqprs::error::Error> {
        eprintln!("warren-perf: producer channel closed by the broker: {close}");
        Ok(())
    }
    async fn cancel(&mut self, _: &Channel, _: Cancel) -> Result<(), amqprs::error::Error> {
        Ok(())
    }
    async fn flow(&mut self, _: &Channel, active: bool) -> Result<bool, amqprs::error::Error> {
        Ok(active)
    }
    async fn publish_ack(&mut self, _: &Channel, ack: Ack) {
        let n = self
            .outstanding
            .lock()
            .unwrap()
            .settle(ack.delivery_tag(), ack.mutiple());
        self.window.settled(n, true);
    }
    async fn publish_nack(&mut self, _: &Channel, nack: Nack) {
        let n = self
            .outstanding
            .lock()
            .unwrap()
            .settle(nack.delivery_tag(), nack.multiple());
        self.window.settled(n, false);
    }
    async fn publish_return(&mut self, _: &Channel, _: Return, _: BasicProperties, _: Vec<u8>) {}
}

pub struct Publisher {
    conn: Connection,
    ch: Channel,
    props: BasicProperties,
    args: BasicPublishArguments,
    outstanding: Option<Arc<Mutex<Outstanding>>>,
}

impl Publisher {
    pub async fn connect(uri: &str, opts: PublisherOptions) -> Result<Self> {
        let (conn, ch) = open(uri).await?;
        let mut outstanding = None;
        if let Some(window) = opts.confirms {
            let o = Arc::new(Mutex::new(Outstanding {
                next_tag: 1,
                unconfirmed: BTreeSet::new(),
            }));
            ch.register_callback(ConfirmCallback {
                window,
                outstanding: o.clone(),
            })
            .await
            .map_err(|e| anyhow!("register callback: {e}"))?;
            ch.confirm_select(ConfirmSelectArguments::default())
                .await
                .map_err(|e| anyhow!("confirm.select: {e}"))?;
            outstanding = Some(o);
        }
        let mut props = BasicProperties::default();
        if opts.persistent {
            props.with_persistence(true);
        }
        Ok(Publisher {
            conn,
            ch,
            props: props.finish(),
            args: BasicPublishArguments::new(&opts.route.exchange, &opts.route.routing_key),
            outstanding,
        })
    }

    pub async fn publish(&mut self, body: Vec<u8>) -> Result<()> {
        if let Some(o) = &self.outstanding {
            let mut o = o.lock().unwrap();
            let tag = o.next_tag;
            o.next_tag += 1;
            o.unconfirmed.insert(tag);
        }
        self.ch
            .basic_publish(self.props.clone(), body, self.args.clone())
            .await
            .map_err(|e| anyhow!("basic.publish: {e}"))
    }

    pub async fn close(self) {
        close_all(self.conn, self.ch).await;
    }
}

pub struct Consumer {
    conn: Connection,
    ch: Channel,
    rx: UnboundedReceiver<ConsumerMessage>,
}

impl Consumer {
    pub async fn connect(uri: &str, opts: ConsumerOptions) -> Result<Self> {
        let (conn, ch) = open(uri).await?;
        if opts.prefetch > 0 {
            ch.basic_qos(BasicQosArguments::new(0, opts.prefetch, false))
                .await
                .map_err(|e| anyhow!("basic.qos: {e}"))?;
        }
        let mut table = FieldTable::new();
        if let Some(o) = &opts.stream_offset {
            let v = match StreamOffset::parse(o) {
                StreamOffset::Offset(n) => FieldValue::l(n),
                StreamOffset::Spec(s) => FieldValue::S(s.try_into().context("x-stream-offset")?),
            };
            table.insert("x-stream-offset".try_into().context("field name")?, v);
        }
        let args = BasicConsumeArguments::new(&opts.queue, "")
            .manual_ack(!opts.auto_ack)
            .arguments(table)
            .finish();
        let (_tag, rx) = ch
            .basic_consume_rx(args)
            .await
            .map_err(|e| anyhow!("basic.consume on {}: {e}", opts.queue))?;
        Ok(Consumer { conn, ch, rx })
    }

    pub async fn next(&mut self) -> Option<Result<Delivery>> {
        let msg = self.rx.recv().await?;
        let tag = match msg.deliver {
            Some(d) => d.delivery_tag(),
            None => return Some(Err(anyhow!("delivery without basic.deliver"))),
        };
        Some(Ok(Delivery {
            tag,
            body: msg.content.unwrap_or_default(),
        }))
    }

    pub async fn ack(&mut self, tag: u64, multiple: bool) -> Result<()> {
        self.ch
            .basic_ack(BasicAckArguments::new(tag, multiple))
            .await
            .map_err(|e| anyhow!("basic.ack: {e}"))
    }

    pub async fn close(self) {
        close_all(self.conn, self.ch).await;
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

    /// Reopens the channel if the broker closed it (after an error).
    async fn ensure_channel(&mut self) -> Result<()> {
        if !self.ch.is_open() {
            if !self.conn.is_open() {
                let (conn, ch) = open(&self.uri).await?;
                self.conn = conn;
                self.ch = ch;
            } else {
                self.ch = self
                    .conn
                    .open_channel(None)
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
        let args = ExchangeDeclareArguments::new(name, kind.as_str())
            .durable(durable)
            .finish();
        self.ch
            .exchange_declare(args)
            .await
            .map_err(|e| anyhow!("exchange.declare {name}: {e}"))
    }

    pub async fn declare_queue(&mut self, name: &str, durable: bool) -> Result<u64> {
        self.ensure_channel().await?;
        let args = QueueDeclareArguments::new(name).durable(durable).finish();
        let r = self
            .ch
            .queue_declare(args)
            .await
            .map_err(|e| anyhow!("queue.declare {name}: {e}"))?;
        Ok(r.map_or(0, |(_, count, _)| u64::from(count)))
    }

    pub async fn declare_stream(&mut self, name: &str) -> Result<u64> {
        self.ensure_channel().await?;
        let mut table = FieldTable::new();
        table.insert(
            "x-queue-type".try_into().context("field name")?,
            FieldValue::S("stream".try_into().context("queue type")?),
        );
        let args = QueueDeclareArguments::new(name)
            .durable(true)
            .arguments(table)
            .finish();
        let r = self
            .ch
            .queue_declare(args)
            .await
            .map_err(|e| anyhow!("queue.declare {name} (stream): {e}"))?;
        Ok(r.map_or(0, |(_, count, _)| u64::from(count)))
    }

    pub async fn queue_message_count(&mut self, name: &str) -> Result<u64> {
        self.ensure_channel().await?;
        let args = QueueDeclareArguments::new(name).passive(true).finish();
        let r = self
            .ch
            .queue_declare(args)
            .await
            .map_err(|e| anyhow!("passive queue.declare {name}: {e}"))?;
        r.map(|(_, count, _)| u64::from(count))
            .context("no declare-ok")
    }

    pub async fn bind_queue(&mut self, queue: &str, exchange: &str, key: &str) -> Result<()> {
        self.ensure_channel().await?;
        self.ch
            .queue_bind(QueueBindArguments::new(queue, exchange, key))
            .await
            .map_err(|e| anyhow!("queue.bind {queue}: {e}"))
    }

    pub async fn purge_queue(&mut self, name: &str) -> Result<()> {
        self.ensure_channel().await?;
        self.ch
            .queue_purge(QueuePurgeArguments::new(name))
            .await
            .map(|_| ())
            .map_err(|e| anyhow!("queue.purge {name}: {e}"))
    }

    pub async fn delete_queue(&mut self, name: &str) -> Result<()> {
        self.ensure_channel().await?;
        self.ch
            .queue_delete(QueueDeleteArguments::new(name))
            .await
            .map(|_| ())
            .map_err(|e| anyhow!("queue.delete {name}: {e}"))
    }

    pub async fn delete_exchange(&mut self, name: &str) -> Result<()> {
        self.ensure_channel().await?;
        self.ch
            .exchange_delete(ExchangeDeleteArguments::new(name))
            .await
            .map_err(|e| anyhow!("exchange.delete {name}: {e}"))
    }

    pub async fn get_one(&mut self, queue: &str) -> Result<bool> {
        self.ensure_channel().await?;
        let args = BasicGetArguments::new(queue);
        let r = self
            .ch
            .basic_get(args)
            .await
            .map_err(|e| anyhow!("basic.get {queue}: {e}"))?;
        Ok(r.is_some())
    }

    pub async fn close(self) {
        close_all(self.conn, self.ch).await;
    }
}
