//! How often a connection looks for deliveries held past their consumer timeout.
//! RabbitMQ's channels look once a minute (`channel_tick_interval`); Warren looks
//! at least twice per the shortest timeout its deliveries may have, and at most
//! once a minute, so that a short timeout set for a test fires close to its time.

use super::{Connection, Session};
use std::time::Duration;
use tokio::time::{Interval, MissedTickBehavior};

/// The longest pause between two looks, as RabbitMQ's channel tick.
const LONGEST: Duration = Duration::from_secs(60);

/// The shortest: a few of the clock's steps.
const SHORTEST: Duration = Duration::from_millis(100);

pub(super) struct Check {
    /// The timeout the period was computed from.
    timeout: Option<u64>,
    interval: Interval,
}

impl Check {
    pub(super) fn new(timeout: Option<u64>) -> Check {
        let mut interval = tokio::time::interval(period(timeout));
        interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
        Check { timeout, interval }
    }

    pub(super) async fn tick(&mut self) {
        self.interval.tick().await;
    }

    /// Looks more often once a shorter timeout applies.
    pub(super) fn follow(&mut self, timeout: Option<u64>) {
        if timeout != self.timeout {
            *self = Check::new(timeout);
        }
    }
}

fn period(timeout: Option<u64>) -> Duration {
    match timeout {
        Some(ms) => (Duration::from_millis(ms) / 2).clamp(SHORTEST, LONGEST),
        None => LONGEST,
    }
}

impl Session {
    /// A queue with its own consumer timeout was consumed from (or got from).
    pub fn note_consumer_timeout(&mut self, queue_timeout: Option<u64>) {
        if let Some(t) = queue_timeout {
            self.consumer_timeout = Some(self.consumer_timeout.map_or(t, |c| c.min(t)));
        }
    }
}

impl Connection {
    /// Closes the channels whose oldest delivery waited past its timeout.
    pub(super) fn check_consumer_timeouts(&mut self) {
        let now = crate::model::clock::coarse_ms();
        let default = self.session.ctx.config.consumer_timeout_ms;
        for ch in self.channels.values_mut() {
            ch.check_consumer_timeout(&mut self.session, now, default);
        }
    }
}
