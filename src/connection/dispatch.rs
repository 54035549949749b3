//! Frames on their way in: channel 0's connection methods, channel.open, and every
//! other frame handed to its channel, whose errors close the channel or the
//! connection as the mapper decides.

use super::Connection;
use super::channel::{self, Channel};
use crate::protocol::{Exception, Frame};
use amq_protocol::protocol::{AMQPClass, channel as chan, connection};

impl Connection {
    pub(super) fn handle_frame(&mut self, frame: Frame) -> Result<(), FrameOutcome> {
        let channel_id = frame.channel();
        if channel_id == 0 {
            return match frame {
                Frame::Heartbeat(_) => Ok(()),
                Frame::Method(_, m) => self.handle_connection_method(m),
                _ => Err(FrameOutcome::Close(Exception::unexpected_frame(
                    "expected method frame, got non method frame instead",
                ))),
            };
        }
        if let Frame::Heartbeat(_) = frame {
            // rabbit_reader: a heartbeat off channel 0 is an unexpected frame.
            return Err(FrameOutcome::Close(Exception::unexpected_frame(
                "type 8, all octets = <<>>",
            )));
        }
        let Some(ch) = self.channels.get_mut(&channel_id) else {
            return self.handle_unopened(channel_id, frame);
        };
        match ch.handle_frame(&mut self.session, frame) {
            Ok(channel::After::Continue) => Ok(()),
            Ok(channel::After::Remove) => {
                if let Some(mut ch) = self.channels.remove(&channel_id) {
                    crate::metrics::inc(&self.session.metrics.channels_closed);
                    ch.release(&mut self.session);
                }
                Ok(())
            }
            Err(e) if e.is_connection_level() => Err(FrameOutcome::Close(e)),
            Err(e) => {
                tracing::info!(channel = channel_id, code = e.code, text = %e.text, "channel error");
                ch.fail(&mut self.session, &e);
                Ok(())
            }
        }
    }

    pub(super) fn handle_unopened(
        &mut self,
        channel_id: u16,
        frame: Frame,
    ) -> Result<(), FrameOutcome> {
        let Frame::Method(_, m) = frame else {
            return Err(FrameOutcome::Close(Exception::channel_error(
                "expected 'channel.open'",
                0,
                0,
            )));
        };
        let (class_id, method_id) = (m.get_amqp_class_id(), m.get_amqp_method_id());
        match m {
            AMQPClass::Channel(chan::AMQPMethod::Open(_)) => {
                // rabbit_reader:create_channel limits how many channels are open,
                // whatever their numbers.
                if self.channels.len() >= usize::from(self.channel_max) {
                    return Err(FrameOutcome::Close(Exception::not_allowed(format_args!(
                        "number of channels opened ({}) has reached the negotiated channel_max ({})",
                        self.channels.len(),
                        self.channel_max
                    ))));
                }
                self.check_channel_limits()?;
                let slot = self.registration.open_channel(channel_id);
                self.channels
                    .insert(channel_id, Channel::new(channel_id, slot));
                crate::metrics::inc(&self.session.metrics.channels_opened);
                self.session.send(
                    channel_id,
                    AMQPClass::Channel(chan::AMQPMethod::OpenOk(chan::OpenOk {})),
                );
                Ok(())
            }
            // A close-ok for a channel we already forgot, or a close of an unknown one.
            AMQPClass::Channel(chan::AMQPMethod::CloseOk(_)) => Ok(()),
            _ => Err(FrameOutcome::Close(Exception::channel_error(
                "expected 'channel.open'",
                class_id,
                method_id,
            ))),
        }
    }

    pub(super) fn handle_connection_method(&mut self, m: AMQPClass) -> Result<(), FrameOutcome> {
        let (class_id, method_id) = (m.get_amqp_class_id(), m.get_amqp_method_id());
        match m {
            AMQPClass::Connection(connection::AMQPMethod::Close(c)) => {
                tracing::debug!(code = c.reply_code, text = %c.reply_text, "client closed connection");
                Err(FrameOutcome::CloseRequested)
            }
            AMQPClass::Connection(connection::AMQPMethod::CloseOk(_)) => {
                Err(FrameOutcome::ClosedByPeer)
            }
            AMQPClass::Connection(connection::AMQPMethod::UpdateSecret(_)) => {
                self.session.send(
                    0,
                    AMQPClass::Connection(connection::AMQPMethod::UpdateSecretOk(
                        connection::UpdateSecretOk {},
                    )),
                );
                Ok(())
            }
            _ => Err(FrameOutcome::Close(Exception::command_invalid(
                "unexpected method on channel 0",
                class_id,
                method_id,
            ))),
        }
    }
}

pub(super) enum FrameOutcome {
    Close(Exception),
    /// The client answered our connection.close.
    ClosedByPeer,
    /// The client sent connection.close.
    CloseRequested,
}

/// Whether a frame is basic.cancel.
pub(super) fn is_cancel(frame: &Frame) -> bool {
    matches!(frame, Frame::Method(_, m) if matches!(m, AMQPClass::Basic(amq_protocol::protocol::basic::AMQPMethod::Cancel(_))))
}

impl Connection {
    /// channel.open's limits beyond channel_max, in rabbit_reader's order: the
    /// user's `max-channels`, then the broker's `channel_max_per_node`.
    fn check_channel_limits(&self) -> Result<(), FrameOutcome> {
        let ctx = &self.session.ctx;
        let user = self.session.user.as_str();
        let connections = ctx.broker.connections();
        // The registry learns this connection's count when a channel opens or
        // closes; the count here is the live one.
        let this = self.channels.len();
        let registered = self.registration.channels();
        let limit = ctx
            .broker
            .access()
            .read(|s| s.user(user).and_then(|u| u.limit("max-channels")));
        if let Some(limit) = limit {
            let open = connections.count_user(user).1.saturating_sub(registered) + this;
            if open as u64 >= limit {
                return Err(FrameOutcome::Close(Exception::user_channel_limit(
                    user, limit,
                )));
            }
        }
        let node_limit = ctx.config.channel_max_per_node;
        if node_limit > 0
            && connections.count_channels().saturating_sub(registered) + this >= node_limit
        {
            return Err(FrameOutcome::Close(Exception::node_channel_limit(
                &crate::identity::node_name(),
                node_limit as u64,
            )));
        }
        Ok(())
    }
}
