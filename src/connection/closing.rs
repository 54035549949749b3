//! Closing a connection: connection.close in either direction, the replies owed
//! before close-ok, and the bounded waits RabbitMQ allows around them.

use super::{Connection, Ending, short};
use crate::broker::ConsumerEvent;
use crate::config::Config;
use crate::protocol::codec::{FrameReader, write_method};
use crate::protocol::{Exception, Frame, ProtocolError};
use amq_protocol::protocol::{AMQPClass, connection};
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// How long the socket stays open after close-ok, for the client to close it
/// (RabbitMQ's CLOSING_TIMEOUT).
const CLOSING_TIMEOUT: Duration = Duration::from_secs(30);

pub(super) fn write_close(out: &mut Vec<u8>, e: &Exception) {
    write_method(
        out,
        0,
        AMQPClass::Connection(connection::AMQPMethod::Close(connection::Close {
            reply_code: e.code,
            reply_text: short(&e.text),
            class_id: e.class_id,
            method_id: e.method_id,
        })),
    );
}

/// After close-ok: discard frames until the client closes the socket, the broker
/// stops, or [`CLOSING_TIMEOUT`].
pub(super) async fn discard_until_closed(
    reader: &mut FrameReader,
    mut shutdown: watch::Receiver<bool>,
) {
    let discard = async { while let Ok(Some(_)) = reader.next().await {} };
    tokio::select! {
        _ = discard => {}
        _ = shutdown.changed() => {}
        _ = tokio::time::sleep(CLOSING_TIMEOUT) => {}
    }
}

/// After sending connection.close: discard frames until close-ok, the socket
/// closing, or the timeout.
pub(super) async fn await_close_ok(reader: &mut FrameReader, config: &Config) {
    let wait = async {
        loop {
            match reader.next().await {
                Ok(Some(Frame::Method(_, m))) => {
                    if matches!(
                        m,
                        AMQPClass::Connection(connection::AMQPMethod::CloseOk(_))
                            | AMQPClass::Connection(connection::AMQPMethod::Close(_))
                    ) {
                        return;
                    }
                }
                Ok(Some(_)) => {}
                Ok(None) | Err(ProtocolError::Io(_)) => return,
                Err(_) => {
                    // The stream cannot be parsed any more (the frame error that
                    // caused the close): drop raw bytes until the client closes,
                    // rather than reset the socket under the close it has to read.
                    reader.discard_all().await;
                    return;
                }
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(config.close_timeout_secs), wait).await;
}

impl Connection {
    /// The client sent connection.close: the channels stop (consumers go, unacked
    /// messages return to their queues), then every reply they still owe is sent,
    /// after the store commits it waits for, before close-ok (RabbitMQ flushes its
    /// channels first). Frames after the close are not read.
    pub(super) async fn close_requested(
        &mut self,
        reader: &mut FrameReader,
        committed: &mut watch::Receiver<u64>,
        events: &mut mpsc::UnboundedReceiver<ConsumerEvent>,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Ending {
        for ch in self.channels.values_mut() {
            ch.release(&mut self.session);
        }
        let mut store_running = true;
        loop {
            self.session.committed = *committed.borrow_and_update();
            if let Some(e) = self.flush_confirms() {
                return self.close_with(reader, &e).await;
            }
            self.flush();
            let owed = self.channels.values().filter(|c| c.owes_replies()).count();
            if owed == 0 {
                return Ending::CloseRequested;
            }
            if !store_running {
                // The store stopped (the broker is stopping) after committing what
                // it had: what still waits never will.
                tracing::warn!(channels = owed, "replies still owed at connection close");
                return Ending::CloseRequested;
            }
            tokio::select! {
                biased;
                changed = committed.changed() => store_running = changed.is_ok(),
                _ = shutdown.changed() => store_running = false,
                // Deliveries dispatched before the consumers went: back to their queues.
                Some(event) = events.recv() => self.handle_event(event),
            }
        }
    }

    /// Sends connection.close, waits for close-ok (bounded), and ends.
    pub(super) async fn close_with(&mut self, reader: &mut FrameReader, e: &Exception) -> Ending {
        if e.is_forced() {
            tracing::info!(code = e.code, text = %e.text, "closing connection");
        } else {
            tracing::warn!(code = e.code, text = %e.text, "connection error");
        }
        self.flush_confirms();
        write_close(&mut self.session.out, e);
        self.flush();
        await_close_ok(reader, &self.session.ctx.config).await;
        Ending::Closed
    }
}
