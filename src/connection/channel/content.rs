//! The frames of a channel: methods go to their handlers, and a published message's
//! content header and body frames are assembled here until the message is whole.

use super::reply::Tickets;
use super::{After, Channel, Failure, precondition};
use crate::connection::Session;
use crate::protocol::codec::ContentHeader;
use crate::protocol::error::BASIC_PUBLISH;
use crate::protocol::{Exception, Frame, ProtocolError};
use amq_protocol::protocol::{AMQPClass, basic, channel as chan};
use bytes::{Bytes, BytesMut};

/// A publish whose content is still arriving.
pub(super) struct Incoming {
    pub(super) publish: basic::Publish,
    pub(super) header: Option<Box<ContentHeader>>,
    pub(super) body: BodyParts,
    pub(super) received: u64,
}

/// The body frames of a publish. Most bodies come in one frame: that one is kept
/// without a `Vec` of its own.
#[derive(Default)]
pub(super) struct BodyParts {
    first: Option<Bytes>,
    more: Vec<Bytes>,
}

impl BodyParts {
    fn push(&mut self, part: Bytes) {
        if self.first.is_none() {
            self.first = Some(part);
        } else {
            self.more.push(part);
        }
    }

    /// The whole body: the one frame's bytes as they are, or the frames joined.
    pub(super) fn join(self, size: usize) -> Bytes {
        let Some(first) = self.first else {
            return Bytes::new();
        };
        if self.more.is_empty() {
            return first;
        }
        let mut all = BytesMut::with_capacity(size);
        all.extend_from_slice(&first);
        for part in self.more {
            all.extend_from_slice(&part);
        }
        all.freeze()
    }
}

impl Channel {
    pub fn handle_frame(&mut self, s: &mut Session, frame: Frame) -> Result<After, Exception> {
        if self.closed_by_client {
            // Waiting to send close-ok; the client sends nothing meanwhile.
            return Ok(After::Continue);
        }
        if self.closing {
            return Ok(match frame {
                Frame::Method(_, m) => match m {
                    AMQPClass::Channel(chan::AMQPMethod::CloseOk(_)) => After::Remove,
                    AMQPClass::Channel(chan::AMQPMethod::Close(_)) => {
                        let close_ok =
                            AMQPClass::Channel(chan::AMQPMethod::CloseOk(chan::CloseOk {}));
                        if self.deferred.is_empty() {
                            s.send(self.id, close_ok);
                            After::Remove
                        } else {
                            // After our channel.close and the replies before it.
                            self.defer(s, Tickets::default(), close_ok);
                            self.closed_by_client = true;
                            After::Continue
                        }
                    }
                    _ => After::Continue,
                },
                _ => After::Continue,
            });
        }
        match frame {
            Frame::Method(_, m) => {
                if let Some(incoming) = &self.incoming {
                    let detail = if incoming.header.is_none() {
                        "expected content header for class 60, got non content header frame instead"
                    } else {
                        "expected content body, got non content body frame instead"
                    };
                    // RabbitMQ names the method whose content was cut short.
                    return Err(Exception::unexpected_frame_in(detail, BASIC_PUBLISH));
                }
                let (class_id, method_id) = (m.get_amqp_class_id(), m.get_amqp_method_id());
                self.handle_method(s, m).map_err(|e| match e {
                    Failure::Broker(e) => Exception::from_broker(e, class_id, method_id),
                    Failure::Protocol(e) => Exception::from_protocol(&e, class_id, method_id),
                })
            }
            Frame::MalformedHeader(_) => {
                if self.incoming.as_ref().is_some_and(|i| i.header.is_none()) {
                    return Err(Exception::from_protocol(
                        &ProtocolError::Frame("type 2: malformed content header".into()),
                        0,
                        0,
                    ));
                }
                Err(Exception::unexpected_frame(
                    "expected method frame, got non method frame instead",
                ))
            }
            Frame::Header(_, header) => {
                let Some(incoming) = self.incoming.as_mut().filter(|i| i.header.is_none()) else {
                    return Err(Exception::unexpected_frame(
                        "expected method frame, got non method frame instead",
                    ));
                };
                if header.class_id != 60 {
                    return Err(Exception::unexpected_frame(format!(
                        "expected content header for class 60, got one for class {} instead",
                        header.class_id
                    )));
                }
                let max = s.ctx.config.max_message_size;
                if header.body_size > max {
                    self.incoming = None;
                    let detail = if max == crate::config::Config::default().max_message_size {
                        format!(
                            "message size {} is larger than max size {max}",
                            header.body_size
                        )
                    } else {
                        format!(
                            "message size {} is larger than configured max size {max}",
                            header.body_size
                        )
                    };
                    return Err(Exception::from_broker(
                        precondition(detail),
                        BASIC_PUBLISH.0,
                        BASIC_PUBLISH.1,
                    ));
                }
                let done = header.body_size == 0;
                incoming.header = Some(header);
                if done {
                    self.finish_publish(s)?;
                }
                Ok(After::Continue)
            }
            Frame::Body(_, body) => {
                let Some(incoming) = self.incoming.as_mut() else {
                    return Err(Exception::unexpected_frame(
                        "expected method frame, got non method frame instead",
                    ));
                };
                let Some(header) = &incoming.header else {
                    return Err(Exception::unexpected_frame(
                        "expected content header for class 60, got non content header frame instead",
                    ));
                };
                incoming.received += body.len() as u64;
                if incoming.received > header.body_size {
                    return Err(Exception::frame_error_in(
                        "content body frame exceeds remaining content size",
                        BASIC_PUBLISH,
                    ));
                }
                let done = incoming.received == header.body_size;
                incoming.body.push(body);
                if done {
                    self.finish_publish(s)?;
                }
                Ok(After::Continue)
            }
            Frame::Heartbeat(_) => Ok(After::Continue),
        }
    }
}
