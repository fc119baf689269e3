//! [`Health`]: what a consumer says about itself, for liveness and readiness
//! probes.

use std::fmt;
use std::time::Duration;

/// A consumer's health, from
/// [`KafkaStreamConsumer::health`](crate::KafkaStreamConsumer::health): cheap
/// to take (no broker round trip), so a probe may ask every second.
///
/// [`liveness`](Self::liveness) and [`readiness`](Self::readiness) apply the
/// documented thresholds ([`HealthThresholds::for_consumer`]); the fields are
/// there for a probe with thresholds of its own
/// ([`check`](Self::check)) or for a status page.
///
/// ```
/// use std::time::Duration;
/// use consumer_api::Health;
///
/// let mut health = Health::default();
/// health.subscribed = true;
/// health.joined = true;
/// health.since_last_poll = Some(Duration::from_millis(20));
/// assert!(health.liveness().is_ok());
/// assert!(health.readiness().is_ok());
///
/// health.last_fatal_error = Some("Broker: Fenced instance ID".to_owned());
/// let problem = health.liveness().unwrap_err();
/// assert!(problem.to_string().contains("fatal error"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Health {
    /// The consumer subscribed to topics, or was assigned partitions by hand.
    pub subscribed: bool,
    /// Partitions assigned to this consumer now.
    pub assigned_partitions: usize,
    /// The consumer received a group assignment (possibly empty: a group may
    /// have more members than partitions) since it subscribed, or was
    /// assigned partitions by hand.
    pub joined: bool,
    /// How long ago the application was last handed a message; `None` when
    /// it never was. Measured with a coarse clock (a few milliseconds).
    pub since_last_message: Option<Duration>,
    /// How long ago the consumer last polled librdkafka (which is also what
    /// serves rebalances and keeps the member in its group); `None` when it
    /// never did.
    pub since_last_poll: Option<Duration>,
    /// How long ago the consumer first polled librdkafka; `None` when it
    /// never did.
    pub since_first_poll: Option<Duration>,
    /// The last fatal error the consumer reported (see
    /// [`ConsumerError::is_fatal`](crate::ConsumerError::is_fatal)): the
    /// consumer cannot go on and must be rebuilt.
    pub last_fatal_error: Option<String>,
    /// How many records the application has not been handed yet, summed over
    /// the assigned partitions whose lag is known (as
    /// [`KafkaStreamConsumer::lag`](crate::KafkaStreamConsumer::lag)
    /// computes it); `None` when none is known.
    pub lag: Option<i64>,
    /// The consumer's `max.poll.interval.ms`: the default for both
    /// thresholds.
    pub max_poll_interval: Duration,
}

impl Default for Health {
    /// A consumer that has done nothing yet, with librdkafka's default
    /// `max.poll.interval.ms` (300 s).
    fn default() -> Self {
        Health {
            subscribed: false,
            assigned_partitions: 0,
            joined: false,
            since_last_message: None,
            since_last_poll: None,
            since_first_poll: None,
            last_fatal_error: None,
            lag: None,
            max_poll_interval: Duration::from_secs(300),
        }
    }
}

/// The limits [`Health::check`] applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct HealthThresholds {
    /// Not live when the consumer has not polled librdkafka for longer:
    /// past `max.poll.interval.ms` librdkafka has left the group anyway.
    pub max_poll_gap: Duration,
    /// Not live when records wait (lag above 0) and the application has not
    /// been handed one for longer: the application is stuck, or reads too
    /// slowly to ever catch up.
    pub max_message_gap: Duration,
}

impl HealthThresholds {
    /// The documented defaults: both gaps at the consumer's
    /// `max.poll.interval.ms`.
    pub fn for_consumer(health: &Health) -> Self {
        HealthThresholds {
            max_poll_gap: health.max_poll_interval,
            max_message_gap: health.max_poll_interval,
        }
    }

    /// Both gaps at `gap` (builder style for a probe's own limit).
    pub fn new(max_poll_gap: Duration, max_message_gap: Duration) -> Self {
        HealthThresholds {
            max_poll_gap,
            max_message_gap,
        }
    }
}

/// Why a consumer is not live or not ready.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Unhealthy {
    /// The consumer reported a fatal error: rebuild it.
    Fatal(String),
    /// The consumer has not polled librdkafka for this long.
    NotPolling {
        /// Since the last poll.
        since: Duration,
        /// The threshold it passed.
        limit: Duration,
    },
    /// Records wait and the application was handed none for this long
    /// (never, when `since` is `None`).
    Stalled {
        /// Records waiting.
        lag: i64,
        /// Since the last message handed out.
        since: Option<Duration>,
        /// The threshold it passed.
        limit: Duration,
    },
    /// The consumer has not subscribed to anything.
    NotSubscribed,
    /// The consumer subscribed but has not received its group assignment yet.
    NotJoined,
}

impl fmt::Display for Unhealthy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unhealthy::Fatal(error) => write!(f, "fatal error: {error}"),
            Unhealthy::NotPolling { since, limit } => write!(
                f,
                "librdkafka not polled for {:.1} s (limit {:.1} s)",
                since.as_secs_f64(),
                limit.as_secs_f64()
            ),
            Unhealthy::Stalled {
                lag,
                since: Some(since),
                limit,
            } => write!(
                f,
                "{lag} records wait and no message was handed out for {:.1} s (limit {:.1} s)",
                since.as_secs_f64(),
                limit.as_secs_f64()
            ),
            Unhealthy::Stalled {
                lag, since: None, ..
            } => write!(f, "{lag} records wait and no message was ever handed out"),
            Unhealthy::NotSubscribed => f.write_str("not subscribed to any topic"),
            Unhealthy::NotJoined => f.write_str("subscribed, but no group assignment yet"),
        }
    }
}

impl std::error::Error for Unhealthy {}

/// What [`Health::check`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HealthStatus {
    /// Nothing in `problems` is a liveness problem: restarting the process
    /// would not help.
    pub live: bool,
    /// Live, subscribed and joined: the consumer is doing its work.
    pub ready: bool,
    /// Every problem found, liveness ones first.
    pub problems: Vec<Unhealthy>,
}

impl Health {
    /// Liveness and readiness under `thresholds`, with every problem found.
    ///
    /// A consumer that subscribed a moment ago is live but not ready until
    /// its group assignment arrives; one that was never handed a message is
    /// stalled only once `max_message_gap` has passed since its first poll.
    pub fn check(&self, thresholds: &HealthThresholds) -> HealthStatus {
        let mut problems = Vec::new();
        if let Some(error) = &self.last_fatal_error {
            problems.push(Unhealthy::Fatal(error.clone()));
        }
        if let Some(since) = self.since_last_poll
            && since > thresholds.max_poll_gap
        {
            problems.push(Unhealthy::NotPolling {
                since,
                limit: thresholds.max_poll_gap,
            });
        }
        if let Some(lag) = self.lag.filter(|lag| *lag > 0) {
            // Without a message yet, the consumer has been at it since its
            // first poll; before that, it is not stalled.
            let waited = self.since_last_message.or(self.since_first_poll);
            if waited.is_some_and(|waited| waited > thresholds.max_message_gap) {
                problems.push(Unhealthy::Stalled {
                    lag,
                    since: self.since_last_message,
                    limit: thresholds.max_message_gap,
                });
            }
        }
        let live = problems.is_empty();
        if !self.subscribed {
            problems.push(Unhealthy::NotSubscribed);
        } else if !self.joined {
            problems.push(Unhealthy::NotJoined);
        }
        HealthStatus {
            live,
            ready: live && self.subscribed && self.joined,
            problems,
        }
    }

    /// Whether the process should be left running, under the documented
    /// thresholds ([`HealthThresholds::for_consumer`]).
    ///
    /// # Errors
    ///
    /// The first liveness problem: a fatal error, no poll of librdkafka
    /// within `max.poll.interval.ms`, or records waiting while the
    /// application was handed none within `max.poll.interval.ms`.
    pub fn liveness(&self) -> Result<(), Unhealthy> {
        let status = self.check(&HealthThresholds::for_consumer(self));
        match status.live {
            true => Ok(()),
            false => Err(first(status.problems)),
        }
    }

    /// Whether the consumer is doing its work: live, subscribed and joined.
    ///
    /// # Errors
    ///
    /// The first problem found.
    pub fn readiness(&self) -> Result<(), Unhealthy> {
        let status = self.check(&HealthThresholds::for_consumer(self));
        match status.ready {
            true => Ok(()),
            false => Err(first(status.problems)),
        }
    }
}

fn first(problems: Vec<Unhealthy>) -> Unhealthy {
    problems.into_iter().next().unwrap_or(Unhealthy::NotJoined)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn working() -> Health {
        Health {
            subscribed: true,
            joined: true,
            assigned_partitions: 3,
            since_last_poll: Some(Duration::from_millis(5)),
            since_first_poll: Some(Duration::from_secs(600)),
            since_last_message: Some(Duration::from_millis(5)),
            lag: Some(10),
            max_poll_interval: Duration::from_secs(60),
            last_fatal_error: None,
        }
    }

    #[test]
    fn a_working_consumer_is_live_and_ready() {
        let status = working().check(&HealthThresholds::for_consumer(&working()));
        assert!(status.live && status.ready, "{status:?}");
        assert!(status.problems.is_empty());
    }

    #[test]
    fn a_consumer_that_stopped_polling_is_not_live() {
        let health = Health {
            since_last_poll: Some(Duration::from_secs(61)),
            ..working()
        };
        let problem = health.liveness().expect_err("not polled for 61 s");
        assert!(matches!(problem, Unhealthy::NotPolling { .. }), "{problem}");
        assert!(health.readiness().is_err());
    }

    #[test]
    fn waiting_records_with_no_message_handed_out_is_a_stall() {
        let stalled = Health {
            since_last_message: Some(Duration::from_secs(61)),
            ..working()
        };
        assert!(matches!(
            stalled.liveness(),
            Err(Unhealthy::Stalled { lag: 10, .. })
        ));
        // Nothing waits: an idle consumer is not stalled.
        let idle = Health {
            lag: Some(0),
            ..stalled.clone()
        };
        assert_eq!(idle.liveness(), Ok(()));
        // Never handed anything, polling for longer than the limit.
        let starting = Health {
            since_last_message: None,
            since_first_poll: Some(Duration::from_secs(1)),
            ..working()
        };
        assert_eq!(starting.liveness(), Ok(()), "started a second ago");
        let stuck = Health {
            since_last_message: None,
            since_first_poll: Some(Duration::from_secs(61)),
            ..working()
        };
        assert!(matches!(
            stuck.liveness(),
            Err(Unhealthy::Stalled { since: None, .. })
        ));
    }

    #[test]
    fn a_consumer_not_yet_joined_is_live_but_not_ready() {
        let joining = Health {
            joined: false,
            ..working()
        };
        assert_eq!(joining.liveness(), Ok(()));
        assert_eq!(joining.readiness(), Err(Unhealthy::NotJoined));
        let fresh = Health::default();
        assert_eq!(fresh.liveness(), Ok(()));
        assert_eq!(fresh.readiness(), Err(Unhealthy::NotSubscribed));
    }

    #[test]
    fn a_fatal_error_comes_first() {
        let health = Health {
            last_fatal_error: Some("fenced".to_owned()),
            since_last_poll: Some(Duration::from_secs(100)),
            ..working()
        };
        let status = health.check(&HealthThresholds::for_consumer(&health));
        assert!(!status.live);
        assert_eq!(status.problems[0], Unhealthy::Fatal("fenced".to_owned()));
        assert_eq!(status.problems.len(), 2);
    }
}
