//! A queue's timers: message expiry (`x-message-ttl`, `expiration`) and queue expiry
//! (`x-expires`), each a task holding only a weak reference to the queue.

use super::{Queue, QueueState};
use crate::model::now_ms;
use std::sync::Arc;
use std::time::Duration;

impl Queue {
    /// Makes sure a timer will drop the head when it expires.
    pub(super) fn arm_ttl_timer(self: &Arc<Self>, state: &mut QueueState) {
        let Some(next) = state.ready.next_expiry() else {
            return;
        };
        if state.ttl_timer != 0 && state.ttl_timer <= next {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        state.ttl_timer = next;
        let weak = Arc::downgrade(self);
        runtime.spawn(async move {
            let wait = next.saturating_sub(now_ms());
            tokio::time::sleep(Duration::from_millis(wait)).await;
            let Some(q) = weak.upgrade() else {
                return;
            };
            let mut state = q.lock();
            if state.ttl_timer == next {
                state.ttl_timer = 0;
            }
            if state.deleted {
                return;
            }
            q.dispatch_locked(&mut state);
            q.finish(state);
        });
    }

    /// Notes that the queue was used (declared, read, consumed from) and, if it has
    /// `x-expires`, makes sure a timer will delete it once unused for that long.
    pub fn touch(self: &Arc<Self>) {
        let mut state = self.lock();
        if state.settings.expires.is_none() {
            return;
        }
        state.last_used = now_ms();
        self.arm_expiry_timer(&mut state);
    }

    /// Starts the queue expiry timer unless one runs or the queue is in use. The
    /// timer reads the expiry from the settings each time, so a policy can change it;
    /// it ends when restarted (a new `expires_gen`).
    pub(super) fn arm_expiry_timer(self: &Arc<Self>, state: &mut QueueState) {
        let Some(expires) = state.settings.expires else {
            return;
        };
        if state.expires_timer || !state.consumers.is_empty() || state.deleted {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        state.expires_timer = true;
        let generation = state.expires_gen;
        let weak = Arc::downgrade(self);
        let mut due = state.last_used.saturating_add(expires);
        runtime.spawn(async move {
            loop {
                let wait = due.saturating_sub(now_ms());
                tokio::time::sleep(Duration::from_millis(wait)).await;
                let Some(q) = weak.upgrade() else {
                    return;
                };
                let mut state = q.lock();
                if state.expires_gen != generation {
                    return;
                }
                let Some(expires) = state.settings.expires else {
                    state.expires_timer = false;
                    return;
                };
                if state.deleted || !state.consumers.is_empty() {
                    state.expires_timer = false;
                    return;
                }
                due = state.last_used.saturating_add(expires);
                if now_ms() >= due {
                    state.expires_timer = false;
                    drop(state);
                    if let Some(vhost) = q.vhost.upgrade() {
                        tracing::debug!(queue = %q.name, "queue expired (x-expires)");
                        vhost.remove_queue(&q);
                    }
                    return;
                }
            }
        });
    }

    /// After recovery: dead-letters what expired while the broker was down, and arms
    /// the timers.
    pub fn start_timers(self: &Arc<Self>) {
        let state = self.lock();
        self.finish(state);
        self.touch();
    }
}
