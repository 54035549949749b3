//! One client connection: the protocol header, the handshake, then a loop that reads
//! frames, receives deliveries from queues, and hands encoded frames to the writer.

mod accept;
mod channel;
mod closing;
mod dispatch;
mod events;
mod handshake;
mod served;
mod timeouts;
mod writer;

use crate::access::{Perm, Permissions, Resource};
use crate::broker::registry::{NewConnection, Registration};
use crate::broker::{Broker, ConsumerEvent, Flow, VHost};
use crate::config::Config;
use crate::model::BrokerError;
use crate::model::FastMap;
use crate::protocol::codec::{FrameReader, write_method};
use crate::protocol::{Exception, ProtocolError};
use crate::tls::TlsAcceptor;
use crate::tls::stream::WriteHalf;
use amq_protocol::protocol::{AMQPClass, connection};
use amq_protocol::types::ShortString;
use channel::Channel;
use closing::{await_close_ok, discard_until_closed, write_close};
use dispatch::{FrameOutcome, is_cancel};
use handshake::HandshakeError;
use served::Served;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use writer::Outbox;

pub use handshake::server_properties;

/// What every connection shares: the broker and the configuration.
pub struct ServerContext {
    pub broker: Broker,
    pub config: Config,
}

/// Connection-wide state that channel handlers need besides their own channel.
pub(crate) struct Session {
    pub id: u64,
    /// The authenticated user (a published user_id must match it).
    pub user: String,
    pub ctx: Arc<ServerContext>,
    pub vhost: Arc<VHost>,
    /// Frames encoded during the current wake-up, handed to the writer in one piece.
    pub out: Vec<u8>,
    pub frame_max: u32,
    pub events: mpsc::UnboundedSender<ConsumerEvent>,
    pub consumer_cancel_notify: bool,
    /// This connection has published: the memory alarm blocks it.
    pub publisher: bool,
    pub store: Option<Arc<crate::store::Store>>,
    /// The highest store ticket known to be committed.
    pub committed: u64,
    /// This connection's backlog of deliveries (its consumers share it).
    pub flow: Arc<Flow>,
    /// A consumer connection this one's publishes congested: stop reading until it
    /// catches up.
    pub throttle: Option<Arc<Flow>>,
    /// This connection's publishes found the store's backlog full: stop reading
    /// until the store catches up.
    pub store_wait: bool,
    /// The user's compiled permissions in the vhost (see [`Session::permissions`]).
    pub perms: Arc<Permissions>,
    /// The broker's event counters.
    pub metrics: Arc<crate::metrics::Counters>,
    /// This connection's own per-message counts (only this task writes them).
    pub tally: crate::metrics::tally::TallyHandle,
    /// The shortest consumer timeout this connection's deliveries may have: the
    /// broker's, or a queue's lower one (see [`timeouts`]).
    pub consumer_timeout: Option<u64>,
}

impl Session {
    /// The user's permissions in the connection's vhost, compiled again when an
    /// operator changed anything since.
    pub fn permissions(&mut self) -> &Permissions {
        self.ctx.broker.access().refresh(&mut self.perms);
        &self.perms
    }

    /// `perm` on the exchange or queue `name`, or the 403 refusal.
    pub fn check(&mut self, perm: Perm, kind: Resource, name: &str) -> Result<(), BrokerError> {
        self.permissions().check(perm, kind, name)
    }

    pub fn send(&mut self, channel: u16, method: AMQPClass) {
        write_method(&mut self.out, channel, method);
    }
}

/// How long a refused client waits before its socket is closed without a
/// connection.close (RabbitMQ's SILENT_CLOSE_DELAY).
const SILENT_CLOSE_DELAY: Duration = Duration::from_secs(3);

/// Waits until a congested consumer connection has caught up.
async fn wait_drained(throttle: &Option<Arc<Flow>>) {
    if let Some(flow) = throttle {
        flow.wait_drained(Duration::from_millis(100)).await;
    }
}

/// How the main loop ended.
enum Ending {
    /// The peer closed the socket or it failed.
    Gone(String),
    /// A close handshake finished (either side started it).
    Closed,
    /// The client sent connection.close: close-ok is sent once the connection's
    /// channels are gone.
    CloseRequested,
}

/// Serves one accepted socket until it closes; `tls` is the listener's TLS
/// acceptor for an amqps listener.
pub async fn serve(
    socket: TcpStream,
    peer: SocketAddr,
    id: u64,
    ctx: Arc<ServerContext>,
    shutdown: watch::Receiver<bool>,
    tls: Option<TlsAcceptor>,
) {
    // Dropped last, once everything the connection held is freed.
    let _served = Served::new();
    let _ = socket.set_nodelay(true);
    let handshake_timeout = Duration::from_secs(ctx.config.handshake_timeout_secs);
    let local = socket.local_addr().unwrap_or(peer);
    let Some((socket, peer_cert, tls_info)) = accept::open(socket, peer, &ctx, tls).await else {
        return;
    };
    let (read_half, write_half) = socket.split();
    let (plain, tls_half) = match write_half {
        WriteHalf::Tcp(w) => (Some(w), None),
        WriteHalf::Tls(w) => (None, Some(w)),
    };
    let outbox = Arc::new(Outbox::new(plain));
    let writer = tokio::spawn(writer::run(outbox.clone(), tls_half));
    // Until tune-ok, frames are limited to the AMQP minimum, as in RabbitMQ.
    let mut reader = FrameReader::new(read_half, 4096);
    let mut out = Vec::new();

    let negotiated = {
        let mut send = |m: AMQPClass| {
            write_method(&mut out, 0, m);
            outbox.push(&mut out);
        };
        tokio::time::timeout(
            handshake_timeout,
            handshake::negotiate(
                &mut reader,
                &mut send,
                &ctx.broker,
                &ctx.config,
                peer,
                peer_cert.as_ref(),
            ),
        )
        .await
    };
    let negotiated = match negotiated {
        Ok(Ok(n)) => n,
        Ok(Err(HandshakeError::Close(e))) => {
            tracing::warn!(%peer, code = e.code, text = %e.text, "handshake failed");
            write_close(&mut out, &e);
            outbox.push(&mut out);
            await_close_ok(&mut reader, &ctx.config).await;
            outbox.close();
            let _ = writer.await;
            return;
        }
        Ok(Err(HandshakeError::Silent(reason))) => {
            tracing::info!(%peer, reason, "login refused, closing the connection silently");
            tokio::time::sleep(SILENT_CLOSE_DELAY).await;
            // RabbitMQ's socket is reset at that point; clients report it as such.
            outbox.close();
            let _ = writer.await;
            if let Ok(outbox) = Arc::try_unwrap(outbox) {
                outbox.forget();
            }
            reader.reset_on_close();
            return;
        }
        Ok(Err(HandshakeError::Drop(reason))) => {
            tracing::info!(%peer, reason, "connection dropped during handshake");
            outbox.close();
            let _ = writer.await;
            return;
        }
        Err(_) => {
            tracing::info!(%peer, "handshake timed out");
            outbox.close();
            let _ = writer.await;
            return;
        }
    };
    outbox.set_heartbeat(negotiated.heartbeat);
    tracing::info!(%peer, user = negotiated.user, vhost = %negotiated.vhost.name, "connection opened");

    let (registration, close_requests) = ctx.broker.connections().register(NewConnection {
        id,
        user: negotiated.user.clone(),
        vhost: negotiated.vhost.name.clone(),
        peer,
        local,
        client_properties: negotiated.client_properties,
        auth_mechanism: negotiated.auth_mechanism,
        channel_max: negotiated.channel_max,
        frame_max: negotiated.frame_max,
        heartbeat: negotiated.heartbeat,
        tls: tls_info,
    });
    let (events_tx, mut events_rx) = mpsc::unbounded_channel();
    let mut conn = Connection {
        session: Session {
            id,
            user: negotiated.user.clone(),
            ctx: ctx.clone(),
            vhost: negotiated.vhost.clone(),
            out,
            frame_max: negotiated.frame_max,
            events: events_tx,
            consumer_cancel_notify: negotiated.consumer_cancel_notify,
            publisher: false,
            store: ctx.broker.store().cloned(),
            committed: 0,
            flow: Arc::new(Flow::default()),
            throttle: None,
            store_wait: false,
            metrics: ctx.broker.metrics.clone(),
            tally: ctx.broker.metrics.tally(),
            consumer_timeout: ctx.config.consumer_timeout_ms,
            perms: ctx
                .broker
                .access()
                .permissions(&negotiated.user, &negotiated.vhost.name),
        },
        channels: FastMap::default(),
        channel_max: negotiated.channel_max,
        heartbeat: negotiated.heartbeat,
        blocked_notify: negotiated.blocked_notify,
        outbox: outbox.clone(),
        registration,
    };
    let ending = conn
        .run(
            &mut reader,
            &mut events_rx,
            shutdown.clone(),
            close_requests,
        )
        .await;
    conn.cleanup(&mut events_rx);
    if let Ending::CloseRequested = ending {
        // As RabbitMQ: channels and exclusive queues are gone before close-ok, and
        // what the client sent after its close is read and dropped until it closes
        // the socket; closing it with unread data would reset the connection.
        conn.session.send(
            0,
            AMQPClass::Connection(connection::AMQPMethod::CloseOk(connection::CloseOk {})),
        );
        conn.flush();
        discard_until_closed(&mut reader, shutdown).await;
    }
    outbox.close();
    let _ = writer.await;
    match ending {
        Ending::Closed | Ending::CloseRequested => tracing::info!(%peer, "connection closed"),
        Ending::Gone(reason) => tracing::info!(%peer, reason, "connection lost"),
    }
}

/// A short string cut to the 255 bytes the protocol allows, on a char boundary.
pub(crate) fn short(s: &str) -> amq_protocol::types::ShortString {
    if s.len() <= 255 {
        return amq_protocol::types::ShortString::from(s);
    }
    // As RabbitMQ cuts a long reply text: 252 bytes and "...".
    let mut end = 252;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    amq_protocol::types::ShortString::from(format!("{}...", &s[..end]))
}

struct Connection {
    session: Session,
    channels: FastMap<u16, Channel>,
    channel_max: u16,
    heartbeat: u16,
    blocked_notify: bool,
    outbox: Arc<Outbox>,
    /// This connection's entry in the broker's registry, removed when it ends.
    registration: Registration,
}

impl Connection {
    async fn run(
        &mut self,
        reader: &mut FrameReader,
        events: &mut mpsc::UnboundedReceiver<ConsumerEvent>,
        mut shutdown: watch::Receiver<bool>,
        mut close_requests: watch::Receiver<Option<String>>,
    ) -> Ending {
        let mut committed = match &self.session.store {
            Some(store) => store.committed(),
            None => watch::channel(u64::MAX).1,
        };
        let mut alarm = self.session.ctx.broker.memory.subscribe();
        let mut alarms = *alarm.borrow_and_update();
        let mut blocked = alarms.any();
        // Only connections that publish are blocked and told so, as in RabbitMQ.
        let mut told_blocked = false;
        let mut last_read = Instant::now();
        let timeout = Duration::from_secs(u64::from(self.heartbeat) * 2);
        let mut timeout_check = timeouts::Check::new(self.session.consumer_timeout);
        let mut ticker = tokio::time::interval(if self.heartbeat == 0 {
            Duration::from_secs(3600)
        } else {
            Duration::from_secs(u64::from(self.heartbeat))
        });
        loop {
            let waiting = self.channels.values().any(|c| c.waiting_on_store());
            let backlogged = self.outbox.backlogged();
            tokio::select! {
                biased;
                Ok(()) = committed.changed(), if waiting || self.session.store_wait => {}
                Ok(()) = alarm.changed() => {
                    alarms = *alarm.borrow_and_update();
                    blocked = alarms.any();
                }
                _ = shutdown.changed() => {
                    let e = Exception::connection_forced(
                        "broker forced connection closure with reason 'shutdown'",
                    );
                    return self.close_with(reader, &e).await;
                }
                Ok(()) = close_requests.changed() => {
                    let reason = close_requests.borrow_and_update().clone().unwrap_or_default();
                    let e = Exception::connection_forced(reason);
                    return self.close_with(reader, &e).await;
                }
                () = wait_drained(&self.session.throttle), if self.session.throttle.is_some() => {
                    self.session.throttle = None;
                }
                frame = reader.next(), if !(blocked && self.session.publisher) && self.session.throttle.is_none() && !self.session.store_wait => {
                    last_read = Instant::now();
                    let mut frame = frame;
                    loop {
                        match frame {
                            Ok(Some(f)) => {
                                if is_cancel(&f) {
                                    // Deliveries the queues dispatched before the cancel
                                    // reach the client before cancel-ok, as in RabbitMQ.
                                    while let Ok(event) = events.try_recv() {
                                        self.handle_event(event);
                                    }
                                    self.session.flow.resume_stalled();
                                }
                                if let Err(end) = self.handle_frame(f) {
                                    match end {
                                        FrameOutcome::Close(e) => {
                                            return self.close_with(reader, &e).await;
                                        }
                                        FrameOutcome::ClosedByPeer => {
                                            self.flush();
                                            return Ending::Closed;
                                        }
                                        FrameOutcome::CloseRequested => {
                                            return self
                                                .close_requested(
                                                    reader,
                                                    &mut committed,
                                                    events,
                                                    &mut shutdown,
                                                )
                                                .await;
                                        }
                                    }
                                }
                            }
                            Ok(None) => return Ending::Gone("socket closed by peer".into()),
                            Err(ProtocolError::Io(e)) => return Ending::Gone(e.to_string()),
                            Err(e) => {
                                let e = Exception::from_protocol(&e, 0, 0);
                                return self.close_with(reader, &e).await;
                            }
                        }
                        if self.session.throttle.is_some() || self.session.store_wait {
                            break;
                        }
                        // Handle the rest of a burst before flushing.
                        frame = match reader.next_buffered() {
                            Ok(None) => break,
                            other => other,
                        };
                    }
                }
                () = self.outbox.wait_written(), if backlogged => {}
                Some(event) = events.recv(), if !backlogged => {
                    self.handle_event(event);
                    for _ in 0..256 {
                        match events.try_recv() {
                            Ok(event) => self.handle_event(event),
                            Err(_) => break,
                        }
                    }
                    // Queues that stopped because this connection was full go on.
                    self.session.flow.resume_stalled();
                }
                _ = timeout_check.tick() => self.check_consumer_timeouts(),
                _ = ticker.tick() => {
                    if (blocked && self.session.publisher) || self.session.store_wait {
                        // Not reading while blocked: the peer's heartbeats wait unread.
                        last_read = Instant::now();
                    } else if self.heartbeat != 0 && last_read.elapsed() > timeout {
                        tracing::warn!(
                            timeout_secs = self.heartbeat,
                            "missed heartbeats from client, closing connection"
                        );
                        return Ending::Gone("missed heartbeats".into());
                    }
                }
            }
            let block = blocked && self.session.publisher;
            if block != told_blocked {
                told_blocked = block;
                self.notify_blocked(block, alarms.reason());
            }
            self.session.committed = *committed.borrow_and_update();
            if self.session.store_wait
                && self.session.store.as_ref().is_none_or(|st| st.caught_up())
            {
                self.session.store_wait = false;
            }
            if let Some(e) = self.flush_confirms() {
                return self.close_with(reader, &e).await;
            }
            timeout_check.follow(self.session.consumer_timeout);
            self.registration.set_channels(self.channels.len());
            self.registration
                .set_traffic(reader.received, self.outbox.sent());
            self.flush();
        }
    }

    /// Tells a client that supports it that publishing is blocked or resumes.
    fn notify_blocked(&mut self, blocked: bool, reason: &str) {
        if !self.blocked_notify {
            return;
        }
        let method = if blocked {
            connection::AMQPMethod::Blocked(connection::Blocked {
                reason: ShortString::from(reason),
            })
        } else {
            connection::AMQPMethod::Unblocked(connection::Unblocked {})
        };
        self.session.send(0, AMQPClass::Connection(method));
    }

    fn flush(&mut self) {
        self.outbox.push(&mut self.session.out);
    }

    /// Sends the confirms and replies that became due; an error if a store write
    /// that one of them waited on failed. Each channel then stores its state for the
    /// management API (once per wake-up, whatever the wake-up handled).
    fn flush_confirms(&mut self) -> Option<Exception> {
        let mut error = None;
        for ch in self.channels.values_mut() {
            error = error.or(ch.flush_confirms(&mut self.session));
            ch.sync_stats();
        }
        self.channels.retain(|_, ch| !ch.finished());
        error
    }
}
