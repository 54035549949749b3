//! The consumer timeout (RabbitMQ's `consumer_timeout`, and a queue's
//! `x-consumer-timeout` argument or `consumer-timeout` policy key): a channel whose
//! oldest unacknowledged delivery is older than the timeout is closed with 406, and
//! its deliveries go back to their queues, as RabbitMQ's channel does on its tick.

use super::Channel;
use crate::connection::Session;
use crate::model::BrokerError;
use crate::protocol::Exception;

impl Channel {
    /// Closes the channel if its oldest unacknowledged delivery waited longer than
    /// its queue's consumer timeout (or `default_ms`, the broker's). `now_ms` is the
    /// connection's clock, as deliveries record it. Only the oldest is looked at:
    /// deliveries are held in the order they were made.
    pub fn check_consumer_timeout(
        &mut self,
        s: &mut Session,
        now_ms: u64,
        default_ms: Option<u64>,
    ) {
        if self.closing {
            return;
        }
        let Some(oldest) = self.unacked.front() else {
            return;
        };
        let Some(timeout) = oldest.queue.consumer_timeout().or(default_ms) else {
            return;
        };
        if now_ms.saturating_sub(oldest.at) <= timeout {
            return;
        }
        let consumer = oldest
            .consumer
            .as_ref()
            .map_or("", |c| c.tag.as_str())
            .to_owned();
        tracing::warn!(
            channel = self.id,
            consumer = %consumer,
            queue = %oldest.queue.name,
            delivery_tag = oldest.tag,
            timeout_ms = timeout,
            "consumer timed out waiting for an acknowledgement"
        );
        let e = Exception::from_broker(
            BrokerError::PreconditionFailed(format!(
                "delivery acknowledgement on channel {} timed out. Timeout value used: {timeout} ms. \
                 This timeout value can be configured, see consumers doc guide to learn more",
                self.id
            )),
            0,
            0,
        );
        self.fail(s, &e);
    }
}
