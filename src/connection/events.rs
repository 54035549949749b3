//! What queues send a connection: deliveries to its consumers and cancellations;
//! and, when it ends, what it gives back to them.

use super::Connection;
use crate::broker::{ConsumerEvent, Queue, QueueEntry};
use std::sync::Arc;
use tokio::sync::mpsc;

impl Connection {
    pub(super) fn handle_event(&mut self, event: ConsumerEvent) {
        match event {
            ConsumerEvent::Deliver {
                consumer,
                queue,
                entry,
            } => {
                consumer.flow.done(entry.msg.body.len());
                match self.channels.get_mut(&consumer.channel) {
                    Some(ch) if ch.owns(&consumer) => {
                        ch.deliver(&mut self.session, &consumer, queue, entry)
                    }
                    _ => {
                        // Cancelled or closed meanwhile: the message never reached the client.
                        consumer.release();
                        queue.requeue([entry], false);
                    }
                }
            }
            ConsumerEvent::Cancelled {
                channel,
                consumer_tag,
            } => {
                if let Some(ch) = self.channels.get_mut(&channel) {
                    ch.cancelled_by_server(&mut self.session, &consumer_tag);
                }
            }
        }
    }

    /// Releases everything the connection held: unacked messages go back to their
    /// queues, consumers are removed, exclusive queues are deleted.
    pub(super) fn cleanup(&mut self, events: &mut mpsc::UnboundedReceiver<ConsumerEvent>) {
        for (_, mut ch) in self.channels.drain() {
            crate::metrics::inc(&self.session.metrics.channels_closed);
            ch.release(&mut self.session);
        }
        // The consumers are gone from their queues, so nothing more arrives here:
        // deliveries handed to this connection but never written go back to their
        // queues, at their positions and not marked redelivered.
        let mut back: Vec<(Arc<Queue>, Vec<QueueEntry>)> = Vec::new();
        while let Ok(event) = events.try_recv() {
            if let ConsumerEvent::Deliver {
                consumer,
                queue,
                entry,
            } = event
            {
                consumer.flow.done(entry.msg.body.len());
                consumer.release();
                match back.iter_mut().find(|(q, _)| Arc::ptr_eq(q, &queue)) {
                    Some((_, entries)) => entries.push(entry),
                    None => back.push((queue, vec![entry])),
                }
            }
        }
        for (queue, entries) in back {
            queue.requeue(entries, false);
        }
        self.session.vhost.remove_exclusive_queues(self.session.id);
    }
}
