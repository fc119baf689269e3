//! [`Telemetry`]: what a consumer reports about itself. Metrics through the
//! `metrics` crate facade (when the configuration turns them on) and the
//! timestamps behind [`Health`](consumer_api::Health) (always).
//!
//! Shared with `consumer-legacy`, like the offset book. The metric names and
//! labels are the observability guide's table (`docs/observability.md`);
//! [`names`] lists them.

use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::Duration;

use consumer_api::{ConsumerConfig, ConsumerError, ConsumerTier, IsolationLevel, PayloadPart};
use metrics::{Counter, Label};
use rdkafka::statistics::Statistics;

use crate::offsets::OffsetBook;

/// The name of every metric the consumers record, as in the observability
/// guide.
pub mod names {
    /// Gauge: records after the application's position, per partition.
    pub const LAG: &str = "kafka_consumer_lag";
    /// Gauge: records after the group's committed offset, per partition.
    pub const COMMITTED_LAG: &str = "kafka_consumer_committed_lag";
    /// Gauge: partitions assigned to the consumer.
    pub const ASSIGNED_PARTITIONS: &str = "kafka_consumer_assigned_partitions";
    /// Counter: records handed to the application, per partition.
    pub const MESSAGES: &str = "kafka_consumer_messages_total";
    /// Counter: key and value bytes of those records, per partition.
    pub const BYTES: &str = "kafka_consumer_bytes_total";
    /// Counter: records handed out as deserialization errors.
    pub const DESERIALIZE_ERRORS: &str = "kafka_consumer_deserialize_errors_total";
    /// Counter: errors the stream returned that are not about one record.
    pub const ERRORS: &str = "kafka_consumer_errors_total";
    /// Counter: offset commits answered, by result.
    pub const COMMITS: &str = "kafka_consumer_commits_total";
    /// Counter: rebalance callbacks, by event.
    pub const REBALANCES: &str = "kafka_consumer_rebalances_total";
    /// Histogram: seconds from a revocation to the next assignment.
    pub const REBALANCE_DURATION: &str = "kafka_consumer_rebalance_duration_seconds";
    /// Gauge: batches waiting in the Dedicated tier's channel.
    pub const DEDICATED_CHANNEL_FILL: &str = "kafka_consumer_dedicated_channel_fill";
    /// Gauge: the Dedicated tier channel's capacity, in batches.
    pub const DEDICATED_CHANNEL_CAPACITY: &str = "kafka_consumer_dedicated_channel_capacity";
    /// Counter: seconds spent with partitions paused by backpressure.
    pub const BACKPRESSURE_PAUSED: &str = "kafka_consumer_backpressure_paused_seconds_total";

    /// Every name above.
    pub const ALL: &[&str] = &[
        LAG,
        COMMITTED_LAG,
        ASSIGNED_PARTITIONS,
        MESSAGES,
        BYTES,
        DESERIALIZE_ERRORS,
        ERRORS,
        COMMITS,
        REBALANCES,
        REBALANCE_DURATION,
        DEDICATED_CHANNEL_FILL,
        DEDICATED_CHANNEL_CAPACITY,
        BACKPRESSURE_PAUSED,
    ];
}

/// A rebalance callback, as [`Telemetry::rebalanced`] counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RebalanceEvent {
    /// Partitions were assigned.
    Assigned,
    /// Partitions were revoked.
    Revoked,
    /// The assignment was lost (the member was fenced or timed out).
    Lost,
    /// The rebalance failed; the assignment is dropped.
    Error,
}

impl RebalanceEvent {
    /// The event of a rebalance callback called with `error`, before it is
    /// served (a lost assignment is a revocation whose partitions are
    /// already gone).
    pub fn of<C: rdkafka::consumer::ConsumerContext>(
        error: rdkafka::types::RDKafkaRespErr,
        consumer: &rdkafka::consumer::BaseConsumer<C>,
    ) -> Self {
        use rdkafka::consumer::Consumer as _;
        use rdkafka::types::RDKafkaRespErr;
        match error {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => RebalanceEvent::Assigned,
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS if consumer.assignment_lost() => {
                RebalanceEvent::Lost
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => RebalanceEvent::Revoked,
            _ => RebalanceEvent::Error,
        }
    }

    fn label(self) -> &'static str {
        match self {
            RebalanceEvent::Assigned => "assigned",
            RebalanceEvent::Revoked => "revoked",
            RebalanceEvent::Lost => "lost",
            RebalanceEvent::Error => "error",
        }
    }
}

/// The `tier` label: the implementation reading.
const TIERS: [&str; 4] = ["legacy", "standard", "buffered", "dedicated"];

fn tier_index(tier: Option<ConsumerTier>) -> u8 {
    match tier {
        None => 0,
        Some(ConsumerTier::Standard) => 1,
        Some(ConsumerTier::Buffered { .. }) => 2,
        Some(ConsumerTier::Dedicated) => 3,
    }
}

/// What a consumer reports about itself: its metrics (when on) and the
/// facts behind its [`Health`](consumer_api::Health).
///
/// Both consumers of `tiered-kafka` keep one, shared by the consumer, its
/// streams and its context: the context feeds it librdkafka's statistics,
/// rebalances and commit answers, the streams the messages they hand out.
/// Everything a stream does per message goes through a
/// [`MessageMeter`]: two integer additions with metrics on, nothing with
/// them off.
///
/// ```
/// use consumer_api::ConsumerConfig;
/// use consumer_fast::Telemetry;
///
/// let off = Telemetry::for_config(&ConsumerConfig::new("localhost:9092", "billing"));
/// assert!(!off.metrics_on());
/// ```
#[derive(Debug)]
pub struct Telemetry {
    metrics_on: bool,
    read_committed: bool,
    group: String,
    /// librdkafka's name for the client (`rdkafka#consumer-3`), set once it
    /// exists.
    client: OnceLock<String>,
    tier: AtomicU8,
    /// Coarse-clock readings ([`coarse_now`]); 0 is "never".
    first_poll: AtomicU64,
    last_poll: AtomicU64,
    last_message: AtomicU64,
    subscribed: AtomicBool,
    joined: AtomicBool,
    fatal: Mutex<Option<String>>,
    /// When the last revocation began, for the rebalance duration.
    revoked_at: Mutex<Option<std::time::Instant>>,
    /// Partitions whose lag gauges were set, to zero them once they go.
    lag_partitions: Mutex<Vec<(String, i32)>>,
    /// Time paused by backpressure so far, in microseconds.
    paused_micros: AtomicU64,
}

impl Default for Telemetry {
    fn default() -> Self {
        Telemetry {
            metrics_on: false,
            read_committed: false,
            group: String::new(),
            client: OnceLock::new(),
            tier: AtomicU8::new(1),
            first_poll: AtomicU64::new(0),
            last_poll: AtomicU64::new(0),
            last_message: AtomicU64::new(0),
            subscribed: AtomicBool::new(false),
            joined: AtomicBool::new(false),
            fatal: Mutex::new(None),
            revoked_at: Mutex::new(None),
            lag_partitions: Mutex::new(Vec::new()),
            paused_micros: AtomicU64::new(0),
        }
    }
}

/// A coarse monotonic clock reading (a few milliseconds of resolution, a
/// few nanoseconds to read): cheap enough for every poll. Never 0.
fn coarse_now() -> u64 {
    coarsetime::Instant::now_without_cache_update()
        .as_ticks()
        .max(1)
}

fn since(ticks: u64) -> Option<Duration> {
    (ticks != 0).then(|| {
        let elapsed = coarse_now().saturating_sub(ticks);
        Duration::from(coarsetime::Duration::from_ticks(elapsed))
    })
}

impl Telemetry {
    /// Telemetry for a consumer built from `config`: metrics as its
    /// [`metrics`](ConsumerConfig::metrics) section says, labelled with its
    /// group and its `performance_tier` (`legacy` when `None`).
    pub fn for_config(config: &ConsumerConfig) -> Self {
        Telemetry {
            metrics_on: config.metrics_enabled(),
            // librdkafka's default is read_committed.
            read_committed: match config.isolation_level {
                Some(level) => level == IsolationLevel::ReadCommitted,
                None => config
                    .extra
                    .get("isolation.level")
                    .is_none_or(|level| level != "read_uncommitted"),
            },
            group: config.group_id.clone(),
            tier: AtomicU8::new(tier_index(config.performance_tier)),
            ..Telemetry::default()
        }
    }

    /// Whether metrics are recorded.
    pub fn metrics_on(&self) -> bool {
        self.metrics_on
    }

    /// Sets the `client` label: librdkafka's name for `client`
    /// (`rdkafka#consumer-3`: its `client.id` and a number unique in the
    /// process).
    pub fn set_client<C: rdkafka::ClientContext>(&self, client: &rdkafka::client::Client<C>) {
        let _ = self.client.set(client_name(client));
    }

    /// Sets the `tier` label for what is recorded from now on (`None`:
    /// legacy).
    pub fn set_tier(&self, tier: Option<ConsumerTier>) {
        self.tier.store(tier_index(tier), Ordering::Relaxed);
    }

    /// The labels every metric carries: `group`, `client`, `tier`.
    fn labels(&self) -> Vec<Label> {
        let tier = TIERS[usize::from(self.tier.load(Ordering::Relaxed)).min(TIERS.len() - 1)];
        vec![
            Label::new("group", self.group.clone()),
            Label::new("client", self.client.get().cloned().unwrap_or_default()),
            Label::new("tier", tier),
        ]
    }

    fn labels_with(&self, extra: impl IntoIterator<Item = Label>) -> Vec<Label> {
        let mut labels = self.labels();
        labels.extend(extra);
        labels
    }

    fn partition_labels(&self, topic: &str, partition: i32) -> Vec<Label> {
        self.labels_with([
            Label::new("topic", topic.to_owned()),
            Label::new("partition", partition.to_string()),
        ])
    }

    /// The consumer polled librdkafka: called once per poll batch.
    #[inline]
    pub fn polled(&self) {
        let now = coarse_now();
        self.last_poll.store(now, Ordering::Relaxed);
        if self.first_poll.load(Ordering::Relaxed) == 0 {
            let _ = self
                .first_poll
                .compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed);
        }
    }

    /// The application was handed messages: stamped with the time of the
    /// latest poll, which a stream takes just before it hands out (and the
    /// Dedicated tier's thread keeps taking), so that a message costs no
    /// clock read.
    #[inline]
    pub fn handed_out(&self) {
        self.last_message
            .store(self.last_poll.load(Ordering::Relaxed), Ordering::Relaxed);
    }

    /// The consumer subscribed (or was assigned partitions by hand, with
    /// `joined`).
    pub fn subscribed(&self, joined: bool) {
        self.subscribed.store(true, Ordering::Relaxed);
        self.joined.store(joined, Ordering::Relaxed);
    }

    /// The consumer unsubscribed.
    pub fn unsubscribed(&self) {
        self.subscribed.store(false, Ordering::Relaxed);
        self.joined.store(false, Ordering::Relaxed);
    }

    /// An error the consumer hands to the application that is not about one
    /// record: counted, and kept for [`Health`](consumer_api::Health) when
    /// fatal.
    pub fn error(&self, error: &ConsumerError) {
        let fatal = error.is_fatal();
        if fatal {
            *self.fatal.lock().unwrap_or_else(PoisonError::into_inner) = Some(error.to_string());
        }
        if self.metrics_on {
            let code = error
                .code()
                .map_or_else(|| "none".to_owned(), |code| format!("{code:?}"));
            metrics::counter!(
                names::ERRORS,
                self.labels_with([
                    Label::new("code", code),
                    Label::new("fatal", if fatal { "true" } else { "false" }),
                ])
            )
            .increment(1);
        }
    }

    /// A rebalance callback of `event`, with `assignment` the partitions
    /// assigned once it was applied. The lag gauges of partitions no longer
    /// assigned go to 0 at once.
    pub fn rebalanced(&self, event: RebalanceEvent, assignment: &rdkafka::TopicPartitionList) {
        if event == RebalanceEvent::Assigned {
            self.joined.store(true, Ordering::Relaxed);
        }
        if !self.metrics_on {
            return;
        }
        let assigned_now = assignment.count();
        {
            let mut lagging = self
                .lag_partitions
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            lagging.retain(|(topic, partition)| {
                let kept = assignment.find_partition(topic, *partition).is_some();
                if !kept {
                    self.zero_lag(topic, *partition);
                }
                kept
            });
        }
        metrics::counter!(
            names::REBALANCES,
            self.labels_with([Label::new("event", event.label())])
        )
        .increment(1);
        metrics::gauge!(names::ASSIGNED_PARTITIONS, self.labels())
            .set(u32::try_from(assigned_now).unwrap_or(u32::MAX));
        let mut revoked_at = self
            .revoked_at
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match event {
            RebalanceEvent::Revoked | RebalanceEvent::Lost => {
                revoked_at.get_or_insert_with(std::time::Instant::now);
            }
            RebalanceEvent::Assigned => {
                if let Some(start) = revoked_at.take() {
                    metrics::histogram!(names::REBALANCE_DURATION, self.labels())
                        .record(start.elapsed().as_secs_f64());
                }
            }
            RebalanceEvent::Error => {}
        }
    }

    /// A commit was answered (or failed to be sent).
    pub fn commit_answered(&self, ok: bool) {
        if self.metrics_on {
            metrics::counter!(
                names::COMMITS,
                self.labels_with([Label::new("result", if ok { "ok" } else { "error" })])
            )
            .increment(1);
        }
    }

    /// The Dedicated tier's channel holds `fill` of `capacity` batches.
    pub fn channel_fill(&self, fill: usize, capacity: usize) {
        if self.metrics_on {
            metrics::gauge!(names::DEDICATED_CHANNEL_FILL, self.labels())
                .set(u32::try_from(fill).unwrap_or(u32::MAX));
            metrics::gauge!(names::DEDICATED_CHANNEL_CAPACITY, self.labels())
                .set(u32::try_from(capacity).unwrap_or(u32::MAX));
        }
    }

    /// Partitions were paused by backpressure for `paused`.
    pub fn paused_for(&self, paused: Duration) {
        let micros = u64::try_from(paused.as_micros()).unwrap_or(u64::MAX);
        let total = self.paused_micros.fetch_add(micros, Ordering::Relaxed) + micros;
        if self.metrics_on {
            // Counters are integers: the whole seconds of the running total.
            metrics::counter!(names::BACKPRESSURE_PAUSED, self.labels())
                .absolute(total / 1_000_000);
        }
    }

    /// librdkafka's statistics: refreshes the lag gauges of the assigned
    /// partitions from their end offsets and `book`'s positions, and zeroes
    /// those of partitions no longer assigned.
    pub fn statistics(&self, statistics: &Statistics, book: &OffsetBook) {
        let _ = self.client.set(statistics.name.clone());
        if !self.metrics_on {
            return;
        }
        let mut seen = Vec::new();
        for topic in statistics.topics.values() {
            for partition in topic.partitions.values() {
                // -1 is librdkafka's internal "unassigned" partition.
                if partition.partition < 0 || !partition.desired {
                    continue;
                }
                let end = if self.read_committed {
                    partition.ls_offset
                } else {
                    partition.hi_offset
                };
                if end < 0 {
                    continue;
                }
                let committed =
                    (partition.committed_offset >= 0).then_some(partition.committed_offset);
                let labels = self.partition_labels(&topic.topic, partition.partition);
                if let Some(position) = book
                    .position(&topic.topic, partition.partition)
                    .or(committed)
                {
                    metrics::gauge!(names::LAG, labels.clone()).set(lag(end, position));
                }
                if let Some(committed) = committed {
                    metrics::gauge!(names::COMMITTED_LAG, labels).set(lag(end, committed));
                }
                seen.push((topic.topic.clone(), partition.partition));
            }
        }
        let mut previous = self
            .lag_partitions
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for (topic, partition) in previous.iter().filter(|entry| !seen.contains(entry)) {
            self.zero_lag(topic, *partition);
        }
        *previous = seen;
    }

    /// A partition no longer assigned: its lag is another member's now.
    fn zero_lag(&self, topic: &str, partition: i32) {
        let labels = self.partition_labels(topic, partition);
        metrics::gauge!(names::LAG, labels.clone()).set(0.0);
        metrics::gauge!(names::COMMITTED_LAG, labels).set(0.0);
    }

    /// Takes the facts of a [`Health`](consumer_api::Health) that this
    /// keeps; the consumer adds its assignment, lag and poll interval.
    pub fn health(
        &self,
        assigned_partitions: usize,
        lag: Option<i64>,
        max_poll_interval: Duration,
    ) -> consumer_api::Health {
        let mut health = consumer_api::Health::default();
        health.subscribed = self.subscribed.load(Ordering::Relaxed) || assigned_partitions > 0;
        health.joined = self.joined.load(Ordering::Relaxed);
        health.assigned_partitions = assigned_partitions;
        health.since_last_message = since(self.last_message.load(Ordering::Relaxed));
        health.since_last_poll = since(self.last_poll.load(Ordering::Relaxed));
        health.since_first_poll = since(self.first_poll.load(Ordering::Relaxed));
        health.last_fatal_error = self
            .fatal
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        health.lag = lag;
        health.max_poll_interval = max_poll_interval;
        health
    }

    /// A meter for a stream's messages; `None` with metrics off.
    pub fn meter(self: &std::sync::Arc<Self>) -> Option<MessageMeter> {
        self.metrics_on.then(|| MessageMeter {
            telemetry: std::sync::Arc::clone(self),
            partitions: Vec::new(),
            last: 0,
            unflushed: 0,
        })
    }
}

/// librdkafka's name for a client.
fn client_name<C: rdkafka::ClientContext>(client: &rdkafka::client::Client<C>) -> String {
    // SAFETY: the client pointer is valid while `client` lives;
    // `rd_kafka_name` returns a NUL-terminated string owned by the client,
    // copied here before `client` can go.
    unsafe {
        let name = rdkafka::bindings::rd_kafka_name(client.native_ptr());
        if name.is_null() {
            return String::new();
        }
        std::ffi::CStr::from_ptr(name)
            .to_string_lossy()
            .into_owned()
    }
}

fn lag(end: i64, position: i64) -> f64 {
    // Exact up to 2^53 records.
    (end - position).max(0) as f64
}

/// Counts one stream's messages and bytes into the per-partition counters.
///
/// It adds into plain integers per partition and hands them to the
/// recorder every 256 messages, when its stream waits, and when it is
/// dropped: an addition through a recorder is an indirect call and one or
/// two atomic updates, about 3% of a Standard stream's thread when made per
/// message (the performance guide's profile). The counters may so trail a
/// busy stream by up to 256 messages.
#[derive(Debug)]
pub struct MessageMeter {
    telemetry: std::sync::Arc<Telemetry>,
    partitions: Vec<PartitionCounters>,
    /// Index of the partition counted last: messages come in runs.
    last: usize,
    /// Messages counted since the last flush.
    unflushed: u32,
}

#[derive(Debug)]
struct PartitionCounters {
    topic: String,
    partition: i32,
    messages: Counter,
    bytes: Counter,
    /// Counted here, not yet added to the handles.
    pending_messages: u64,
    pending_bytes: u64,
}

impl PartitionCounters {
    fn flush(&mut self) {
        if self.pending_messages > 0 {
            self.messages.increment(self.pending_messages);
            self.bytes.increment(self.pending_bytes);
            self.pending_messages = 0;
            self.pending_bytes = 0;
        }
    }
}

/// Messages a meter counts before it adds them to the recorder's counters.
const FLUSH_EVERY: u32 = 256;

impl Drop for MessageMeter {
    fn drop(&mut self) {
        self.flush();
    }
}

impl MessageMeter {
    /// One record of `topic`/`partition`, `bytes` of key and value, handed
    /// to the application.
    #[inline]
    pub fn record(&mut self, topic: &str, partition: i32, bytes: usize) {
        let index = match self.partitions.get(self.last) {
            Some(last) if last.partition == partition && last.topic == topic => self.last,
            _ => self.find(topic, partition),
        };
        let counters = &mut self.partitions[index];
        counters.pending_messages += 1;
        counters.pending_bytes += bytes as u64;
        self.unflushed += 1;
        if self.unflushed >= FLUSH_EVERY {
            self.flush();
        }
    }

    /// Adds what was counted to the recorder's counters: every
    /// `FLUSH_EVERY` messages, when the stream waits, and on drop.
    pub fn flush(&mut self) {
        self.unflushed = 0;
        for counters in &mut self.partitions {
            counters.flush();
        }
    }

    /// A record handed out as a deserialization error: counted as a message
    /// and as an error of its `part`.
    pub fn deserialize_error(
        &mut self,
        topic: &str,
        partition: i32,
        part: PayloadPart,
        bytes: usize,
    ) {
        self.record(topic, partition, bytes);
        let part = match part {
            PayloadPart::Key => "key",
            PayloadPart::Value => "value",
            PayloadPart::HeaderKey => "header_key",
            _ => "other",
        };
        metrics::counter!(
            names::DESERIALIZE_ERRORS,
            self.telemetry.labels_with([
                Label::new("topic", topic.to_owned()),
                Label::new("part", part),
            ])
        )
        .increment(1);
    }

    #[cold]
    fn find(&mut self, topic: &str, partition: i32) -> usize {
        let index = match self
            .partitions
            .iter()
            .position(|entry| entry.partition == partition && entry.topic == topic)
        {
            Some(index) => index,
            None => {
                let labels = self.telemetry.partition_labels(topic, partition);
                self.partitions.push(PartitionCounters {
                    topic: topic.to_owned(),
                    partition,
                    messages: metrics::counter!(names::MESSAGES, labels.clone()),
                    bytes: metrics::counter!(names::BYTES, labels),
                    pending_messages: 0,
                    pending_bytes: 0,
                });
                self.partitions.len() - 1
            }
        };
        self.last = index;
        index
    }
}
