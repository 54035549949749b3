//! tx.select, tx.commit and tx.rollback: publishes and settlements held until the
//! commit, whose reply waits for the store like a publisher confirm.

use super::ack::{Settle, Unacked};
use super::reply::Tickets;
use super::{Channel, Failure, command_invalid, precondition};
use crate::broker::Queue;
use crate::connection::Session;
use crate::model::Message;
use amq_protocol::protocol::{AMQPClass, tx};
use std::sync::Arc;

/// A publish held until tx.commit.
pub(super) struct TxPublish {
    pub(super) queues: Vec<Arc<Queue>>,
    pub(super) msg: Arc<Message>,
    pub(super) mandatory: bool,
}

#[derive(Default)]
pub(super) struct Tx {
    pub(super) publishes: Vec<TxPublish>,
    pub(super) settles: Vec<(Vec<Unacked>, Settle)>,
}

impl Channel {
    pub(super) fn handle_tx(&mut self, s: &mut Session, m: tx::AMQPMethod) -> Result<(), Failure> {
        match m {
            tx::AMQPMethod::Select(_) => {
                if self.confirms.is_some() {
                    return Err(precondition("cannot switch from confirm to tx mode").into());
                }
                if self.tx.is_none() {
                    self.tx = Some(Tx::default());
                }
                self.reply(
                    s,
                    false,
                    AMQPClass::Tx(tx::AMQPMethod::SelectOk(tx::SelectOk {})),
                );
            }
            tx::AMQPMethod::Commit(_) => {
                let Some(t) = self.tx.as_mut() else {
                    return Err(precondition("channel is not transactional").into());
                };
                let publishes = std::mem::take(&mut t.publishes);
                let settles = std::mem::take(&mut t.settles);
                let mut tickets = Tickets::default();
                let mut refused = false;
                for p in publishes {
                    let (t, r) = self.deliver_to_queues(s, &p.queues, p.msg, p.mandatory);
                    tickets.add(t.first);
                    tickets.add(t.last);
                    refused |= r;
                }
                for (items, how) in settles {
                    self.settle(items, how);
                }
                if refused {
                    // A full queue refused a message: RabbitMQ applies the rest, then
                    // fails the commit.
                    return Err(precondition("partial tx completion").into());
                }
                self.defer(
                    s,
                    tickets,
                    AMQPClass::Tx(tx::AMQPMethod::CommitOk(tx::CommitOk {})),
                );
            }
            tx::AMQPMethod::Rollback(_) => {
                let Some(t) = self.tx.as_mut() else {
                    return Err(precondition("channel is not transactional").into());
                };
                t.publishes.clear();
                let settles = std::mem::take(&mut t.settles);
                for (items, _) in settles {
                    self.unacked.extend(items);
                }
                self.unacked.make_contiguous().sort_by_key(|u| u.tag);
                self.reply(
                    s,
                    false,
                    AMQPClass::Tx(tx::AMQPMethod::RollbackOk(tx::RollbackOk {})),
                );
            }
            _ => return Err(command_invalid("tx")),
        }
        Ok(())
    }
}
