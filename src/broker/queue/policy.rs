//! A queue's policies: applying a changed policy to the effective settings under the
//! queue's lock (as `rabbit_amqqueue_process:process_args_policy` does), and what the
//! HTTP API shows of them.

use super::Queue;
use crate::broker::args::Overflow;
use crate::broker::policy::{Applied, QueueType};
use crate::model::now_ms;
use std::sync::Arc;

impl Queue {
    /// The queue's type as policies match it (`apply-to`): a queue declared as
    /// quorum is one for policies, though Warren serves it as a classic queue.
    pub fn queue_type(&self) -> QueueType {
        self.base.policy_type()
    }

    /// Applies the policies that match the queue now (None: none does). If they
    /// changed, the settings are recomputed at once: a lower length limit drops (or
    /// dead-letters) from the head unless the queue rejects publishes, a new TTL
    /// applies to messages published from now on, the expiry timer restarts, and
    /// dead letters go to the new target.
    pub fn apply_policy(self: &Arc<Self>, applied: Option<Arc<Applied>>) {
        let definition = applied
            .as_ref()
            .map(|a| a.effective_definition())
            .unwrap_or_default();
        let settings = self.base.with_policy(&self.arguments, &definition);
        let mut state = self.lock();
        if state.deleted || state.policy == applied {
            return;
        }
        if let (Some(s), Some(base)) = (self.stream(), &self.base.stream) {
            s.set_settings(base.with_policy(&definition));
            state.policy = applied;
            return;
        }
        let old_overflow = state.settings.overflow;
        state.settings = settings;
        state.policy = applied;
        // RabbitMQ applies the new limits under the old overflow mode, then the new
        // mode: either being drop-head trims the queue.
        if old_overflow == Overflow::DropHead || state.settings.overflow == Overflow::DropHead {
            self.drop_head_over_limit(&mut state);
        }
        // The expiry timer restarts from now, whatever changed.
        state.expires_gen += 1;
        state.expires_timer = false;
        if state.settings.expires.is_some() {
            state.last_used = now_ms();
            self.arm_expiry_timer(&mut state);
        }
        self.finish(state);
    }

    /// How long a delivery from this queue may stay unacknowledged, in
    /// milliseconds, when its arguments or policy say (the lower of the two, as
    /// RabbitMQ's channel looks it up); None: the broker's `consumer_timeout`.
    pub fn consumer_timeout(&self) -> Option<u64> {
        self.lock().settings.consumer_timeout
    }

    /// The policy and operator policy applied now.
    pub fn applied_policy(&self) -> Option<Arc<Applied>> {
        self.lock().policy.clone()
    }
}
