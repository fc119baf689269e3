//! [`ProcessOptions`]: how concurrent processing orders, bounds, retries and
//! commits.

use std::time::Duration;

use consumer_api::ProcessingConfig;
pub use consumer_api::ProcessingOrder;

/// How a failed handler is retried, by
/// [`Consumer::process`](crate::Consumer::process): `attempts` in all, waiting
/// an exponentially growing, jittered backoff between them.
///
/// ```
/// use std::time::Duration;
/// use consumer_fast::RetryPolicy;
///
/// let policy = RetryPolicy::new(5)
///     .backoff(Duration::from_millis(100), Duration::from_secs(10));
/// assert_eq!(policy.attempts(), 5);
/// // The wait before the second attempt is 100 ms, jittered by up to a half.
/// let wait = policy.delay_before(2);
/// assert!(wait >= Duration::from_millis(50) && wait <= Duration::from_millis(150));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    attempts: u32,
    initial_backoff: Duration,
    max_backoff: Duration,
}

impl Default for RetryPolicy {
    /// Three attempts, waiting 100 ms then 200 ms (jittered).
    fn default() -> Self {
        RetryPolicy {
            attempts: 3,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// `attempts` in all (0 counts as 1), with the default backoff.
    pub fn new(attempts: u32) -> Self {
        RetryPolicy {
            attempts: attempts.max(1),
            ..Self::default()
        }
    }

    /// One attempt: a failure goes straight to the dead-letter hook.
    pub fn no_retries() -> Self {
        Self::new(1)
    }

    /// Waits `initial` before the second attempt, doubling each time up to
    /// `max`.
    #[must_use]
    pub fn backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.initial_backoff = initial;
        self.max_backoff = max.max(initial);
        self
    }

    /// How many attempts a message gets in all.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// The wait before attempt `attempt` (counted from 1; none before the
    /// first): the backoff for that attempt, plus or minus up to half of it
    /// at random, so that messages failing together do not retry together.
    pub fn delay_before(&self, attempt: u32) -> Duration {
        if attempt <= 1 {
            return Duration::ZERO;
        }
        let doublings = (attempt - 2).min(31);
        let base = self
            .initial_backoff
            .saturating_mul(1 << doublings)
            .min(self.max_backoff);
        // Jitter in [-base/2, +base/2], from a cheap per-call random number.
        let half = base / 2;
        let spread = half.as_nanos().saturating_mul(2).max(1);
        let pick = u128::from(jitter_seed()) % spread;
        (base - half) + Duration::from_nanos(u64::try_from(pick).unwrap_or(u64::MAX))
    }
}

/// A random-enough number for jitter: the standard library's per-process
/// random hasher keys, stirred with a counter.
fn jitter_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    hasher.finish()
}

/// When dead-lettering stops being an answer: past either bound,
/// [`Consumer::process`](crate::Consumer::process) stops with
/// [`ProcessError::DeadLetterLimit`](crate::ProcessError::DeadLetterLimit)
/// instead of dead-lettering on, and commits nothing beyond the last message
/// it handled. A bad deployment that fails every message then stops the
/// consumer rather than emptying the topic into its dead-letter topic.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DeadLetterLimit {
    /// The largest share (0.0 to 1.0) of messages finished since the start
    /// that may have been dead-lettered, checked once `min_messages` have
    /// finished.
    pub max_share: f64,
    /// How many messages must have finished before `max_share` applies.
    pub min_messages: u64,
    /// The most messages dead-lettered in a row.
    pub max_consecutive: u64,
}

impl Default for DeadLetterLimit {
    /// At most 10% of messages once 100 have finished, and 100 in a row.
    fn default() -> Self {
        DeadLetterLimit {
            max_share: 0.1,
            min_messages: 100,
            max_consecutive: 100,
        }
    }
}

/// How concurrent processing runs: see [`Consumer::process`](crate::Consumer::process)
/// and [`Consumer::processing_stream`](crate::Consumer::processing_stream).
///
/// ```
/// use std::time::Duration;
/// use consumer_fast::{ProcessOptions, ProcessingOrder, RetryPolicy};
///
/// let options = ProcessOptions::new(ProcessingOrder::Key)
///     .max_in_flight(1_000)
///     .max_in_flight_per_partition(200)
///     .retry(RetryPolicy::new(5))
///     .revocation_timeout(Duration::from_secs(5));
/// assert_eq!(options.max_buffered, 4_000);
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ProcessOptions {
    /// Which messages may be handled at the same time.
    pub ordering: ProcessingOrder,
    /// The most messages handled at once, across partitions.
    pub max_in_flight: usize,
    /// The most messages of one partition handled at once (so that one busy
    /// partition leaves room for the others).
    pub max_in_flight_per_partition: usize,
    /// The most messages held (waiting for their turn or being handled)
    /// before fetching pauses; memory stays bounded by it whatever the
    /// handler's speed. 4 × `max_in_flight` unless set.
    pub max_buffered: usize,
    /// How often completed work is committed.
    pub commit_interval: Duration,
    /// On revocation, how long the revoked partitions' messages being
    /// handled may take to finish before the partitions go (what finishes
    /// later is not committed by this member). Keep it well below
    /// `max.poll.interval.ms`.
    pub revocation_timeout: Duration,
    /// On stop, how long the messages being handled may take to finish
    /// before the last commit.
    pub shutdown_timeout: Duration,
    /// The longest commit metadata written: the broker's
    /// `offset.metadata.max.bytes` (4,096 unless changed). A partition whose
    /// completed-out-of-order offsets would need more is paused until the
    /// gap closes.
    pub max_metadata_bytes: usize,
    /// How [`Consumer::process`](crate::Consumer::process) retries a failed
    /// handler.
    pub retry: RetryPolicy,
    /// When [`Consumer::process`](crate::Consumer::process) stops
    /// dead-lettering; `None`: never.
    pub dead_letter_limit: Option<DeadLetterLimit>,
}

impl Default for ProcessOptions {
    fn default() -> Self {
        Self::new(ProcessingOrder::Key)
    }
}

impl ProcessOptions {
    /// 100 messages in flight in all, 100 per partition, 400 held, committed
    /// every second, waiting up to 10 s for in-flight work on revocation and
    /// 30 s on stop, with the default [`RetryPolicy`] and
    /// [`DeadLetterLimit`].
    pub fn new(ordering: ProcessingOrder) -> Self {
        ProcessOptions {
            ordering,
            max_in_flight: 100,
            max_in_flight_per_partition: 100,
            max_buffered: 400,
            commit_interval: Duration::from_secs(1),
            revocation_timeout: Duration::from_secs(10),
            shutdown_timeout: Duration::from_secs(30),
            max_metadata_bytes: 4096,
            retry: RetryPolicy::default(),
            dead_letter_limit: Some(DeadLetterLimit::default()),
        }
    }

    /// Sets [`max_in_flight`](Self::max_in_flight) (0 counts as 1), the
    /// per-partition bound to the same (lower it after with
    /// [`max_in_flight_per_partition`](Self::max_in_flight_per_partition)),
    /// and [`max_buffered`](Self::max_buffered) to 4 times it, so that the
    /// handlers stay fed while a fetch is under way.
    #[must_use]
    pub fn max_in_flight(mut self, max: usize) -> Self {
        self.max_in_flight = max.max(1);
        self.max_in_flight_per_partition = self.max_in_flight;
        self.max_buffered = self.max_in_flight.saturating_mul(4);
        self
    }

    /// Sets [`max_in_flight_per_partition`](Self::max_in_flight_per_partition)
    /// (0 counts as 1; above `max_in_flight` it changes nothing).
    #[must_use]
    pub fn max_in_flight_per_partition(mut self, max: usize) -> Self {
        self.max_in_flight_per_partition = max.max(1);
        self
    }

    /// Sets [`max_buffered`](Self::max_buffered) (at least `max_in_flight`).
    #[must_use]
    pub fn max_buffered(mut self, max: usize) -> Self {
        self.max_buffered = max.max(self.max_in_flight);
        self
    }

    /// Sets [`commit_interval`](Self::commit_interval).
    #[must_use]
    pub fn commit_interval(mut self, interval: Duration) -> Self {
        self.commit_interval = interval;
        self
    }

    /// Sets [`revocation_timeout`](Self::revocation_timeout).
    #[must_use]
    pub fn revocation_timeout(mut self, timeout: Duration) -> Self {
        self.revocation_timeout = timeout;
        self
    }

    /// Sets [`shutdown_timeout`](Self::shutdown_timeout).
    #[must_use]
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.shutdown_timeout = timeout;
        self
    }

    /// Sets [`max_metadata_bytes`](Self::max_metadata_bytes).
    #[must_use]
    pub fn max_metadata_bytes(mut self, max: usize) -> Self {
        self.max_metadata_bytes = max;
        self
    }

    /// Sets [`retry`](Self::retry).
    #[must_use]
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// The options a configuration's `processing:` section describes; what
    /// it leaves out keeps its default. The dead-letter topic it may name
    /// is built by `ConsumerFactory::processor`, not here.
    ///
    /// ```
    /// use consumer_api::{ProcessingConfig, ProcessingOrder};
    /// use consumer_fast::ProcessOptions;
    ///
    /// let mut config = ProcessingConfig::default();
    /// config.ordering = Some(ProcessingOrder::Partition);
    /// config.max_in_flight = Some(64);
    /// let options = ProcessOptions::from_config(&config);
    /// assert_eq!(options.ordering, ProcessingOrder::Partition);
    /// assert_eq!((options.max_in_flight, options.max_buffered), (64, 256));
    /// ```
    pub fn from_config(config: &ProcessingConfig) -> Self {
        let mut options = ProcessOptions::new(config.ordering.unwrap_or_default());
        if let Some(max) = config.max_in_flight {
            options = options.max_in_flight(max);
        }
        if let Some(max) = config.max_in_flight_per_partition {
            options = options.max_in_flight_per_partition(max);
        }
        if let Some(max) = config.max_buffered {
            options = options.max_buffered(max);
        }
        let millis = Duration::from_millis;
        if let Some(ms) = config.commit_interval_ms {
            options.commit_interval = millis(ms);
        }
        if let Some(ms) = config.revocation_timeout_ms {
            options.revocation_timeout = millis(ms);
        }
        if let Some(ms) = config.shutdown_timeout_ms {
            options.shutdown_timeout = millis(ms);
        }
        if let Some(max) = config.max_metadata_bytes {
            options.max_metadata_bytes = max;
        }
        if let Some(retry) = &config.retry {
            let defaults = RetryPolicy::default();
            options.retry = RetryPolicy::new(retry.attempts).backoff(
                retry
                    .initial_backoff_ms
                    .map_or(defaults.initial_backoff, millis),
                retry.max_backoff_ms.map_or(defaults.max_backoff, millis),
            );
        }
        if let Some(limit) = &config.dead_letter_limit {
            options.dead_letter_limit = Some(DeadLetterLimit {
                max_share: f64::from(limit.max_share_percent) / 100.0,
                min_messages: limit.min_messages,
                max_consecutive: limit.max_consecutive,
            });
        }
        options
    }

    /// Sets [`dead_letter_limit`](Self::dead_letter_limit).
    #[must_use]
    pub fn dead_letter_limit(mut self, limit: Option<DeadLetterLimit>) -> Self {
        self.dead_letter_limit = limit;
        self
    }
}
