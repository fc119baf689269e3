//! [`KafkaStreamConsumer`]: the one API every implementation offers.

use std::pin::Pin;
use std::time::Duration;

use futures_core::Stream;
use rdkafka::{Offset, TopicPartitionList};

use crate::batch::{BatchStream, ReadyBatches};
use crate::closing::Closing;
use crate::config::ConsumerTier;
use crate::error::ConsumerError;
use crate::message::Message;

/// The stream of messages a [`KafkaStreamConsumer`] hands out: boxed so that
/// the trait stays object safe, `Send` so that it can move to a task.
pub type MessageStream<'a, K, V> =
    Pin<Box<dyn Stream<Item = Result<Message<K, V>, ConsumerError>> + Send + 'a>>;

/// A commit in flight, from
/// [`KafkaStreamConsumer::commit_async`]: resolves with the broker's answer.
pub type CommitAsync<'a> =
    Pin<Box<dyn std::future::Future<Output = Result<(), ConsumerError>> + Send + 'a>>;

/// What closing a consumer did, from `close_blocking`: whether the final
/// commit and leaving the group succeeded within the timeout.
#[derive(Debug)]
#[must_use = "a close can fail to commit; look at the report"]
pub struct CloseReport {
    /// The final commit of what was handed out: `Ok` when the broker
    /// confirmed it (or there was nothing to commit, as always for a
    /// transactional legacy consumer, whose offsets go with its producer's
    /// transaction), else why not (the timeout passed first:
    /// `OperationTimedOut`; the coordinator refused).
    pub commit: Result<(), ConsumerError>,
    /// How long librdkafka's close (the last revocation, `LeaveGroup`)
    /// took; `None` when it did not finish: the timeout passed first and it
    /// goes on in the background (see `ConsumerConfig::close_timeout`), or
    /// (a `TieredConsumer` whose consumer is still shared) it waits for the
    /// last clone.
    pub left_group_in: Option<Duration>,
}

impl CloseReport {
    /// Whether the final commit succeeded and the consumer left its group
    /// within the timeout.
    pub fn is_clean(&self) -> bool {
        self.commit.is_ok() && self.left_group_in.is_some()
    }
}

/// How far behind one assigned partition the application is: from
/// [`KafkaStreamConsumer::lag`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PartitionLag {
    /// The partition's topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The offset of the next message the application will be handed;
    /// `None` until it has been handed one of this partition.
    pub position: Option<i64>,
    /// The partition's high watermark (the offset the next record written
    /// will get) as librdkafka last saw it in a fetch response; `None`
    /// before the first. It is the high watermark even under
    /// `read_committed`, not the last stable offset: on a transactional
    /// topic the lag counts records of open transactions and the commit
    /// markers, so it does not reach 0.
    pub high_watermark: Option<i64>,
}

impl PartitionLag {
    /// A partition's lag: `position` and `high_watermark` as given.
    pub fn new(
        topic: impl Into<String>,
        partition: i32,
        position: Option<i64>,
        high_watermark: Option<i64>,
    ) -> Self {
        PartitionLag {
            topic: topic.into(),
            partition,
            position,
            high_watermark,
        }
    }

    /// How many records of the partition the application has not been
    /// handed yet (`high_watermark - position`, never negative); `None`
    /// while either is unknown.
    pub fn lag(&self) -> Option<i64> {
        Some((self.high_watermark? - self.position?).max(0))
    }
}

/// A Kafka consumer that hands out deserialized messages as a stream, whatever
/// the implementation behind it.
///
/// The contract every implementation keeps:
///
/// - **At-least-once.** An offset is stored only once its message has been
///   yielded by the stream; [`commit_async`](Self::commit_async) commits exactly the stored
///   offsets, never a message still in a buffer.
/// - **Bad data is per message.** A key or value that cannot be deserialized
///   is yielded as [`ConsumerError::Deserialize`] for that one message, and the
///   stream goes on; the message counts as delivered.
/// - **Tombstones are messages** with `value: None`.
///
/// It is object safe:
///
/// ```
/// use consumer_api::{KafkaStreamConsumer, Message};
/// use futures_util::StreamExt;
///
/// async fn count_orders(consumer: &dyn KafkaStreamConsumer<String, Vec<u8>>) -> usize {
///     consumer
///         .stream()
///         .take(100)
///         .filter(|result| std::future::ready(result.is_ok()))
///         .count()
///         .await
/// }
/// ```
pub trait KafkaStreamConsumer<K, V>: Send + Sync {
    /// A stream of this consumer's messages.
    ///
    /// Only one stream should be read at a time: two streams over one consumer
    /// share its messages between them.
    fn stream(&self) -> MessageStream<'_, K, V>;

    /// A stream of this consumer's messages in batches of up to `max` (at
    /// least 1): each batch holds the messages that are ready, in the order
    /// they were read; it never waits for a batch to fill.
    ///
    /// The offset rules are those of [`stream`](Self::stream): a batch's
    /// offsets are recorded when it is handed out, so
    /// [`commit_async`](Self::commit_async) covers every message of the batches yielded
    /// so far. An error is yielded on its own, between two batches (a
    /// message that cannot be deserialized counts as delivered, as in
    /// `stream`).
    ///
    /// The default batches [`stream`](Self::stream) with [`ReadyBatches`];
    /// the fast consumer's tiers batch inside, which saves a hand-out per
    /// message.
    ///
    /// ```
    /// use consumer_api::KafkaStreamConsumer;
    /// use futures_util::StreamExt;
    ///
    /// async fn archive(consumer: &dyn KafkaStreamConsumer<String, Vec<u8>>) {
    ///     let mut batches = consumer.batches(500);
    ///     while let Some(batch) = batches.next().await {
    ///         match batch {
    ///             Ok(messages) => println!("writing {} records in one insert", messages.len()),
    ///             Err(error) => eprintln!("skipping: {error}"),
    ///         }
    ///     }
    /// }
    /// ```
    fn batches<'a>(&'a self, max: usize) -> BatchStream<'a, K, V>
    where
        K: 'a,
        V: 'a,
    {
        Box::pin(ReadyBatches::new(self.stream(), max))
    }

    /// Subscribes to these topics, replacing any earlier subscription.
    ///
    /// # Errors
    ///
    /// [`ConsumerError::Kafka`] when librdkafka refuses the subscription.
    fn subscribe(&self, topics: &[&str]) -> Result<(), ConsumerError>;

    /// Commits the offsets of the messages yielded so far, blocking the
    /// calling thread until the broker answers: for code outside an async
    /// runtime. In async code, await [`commit_async`](Self::commit_async).
    ///
    /// # Errors
    ///
    /// [`ConsumerError::Kafka`] when the broker refuses or cannot be reached.
    /// Committing with nothing new to commit is not an error.
    fn commit_blocking(&self) -> Result<(), ConsumerError>;

    /// The plan's name for [`commit_blocking`](Self::commit_blocking), kept
    /// so that code written to it compiles; it blocks the calling thread (an
    /// executor's, in async code) for a broker round trip.
    ///
    /// # Errors
    ///
    /// As [`commit_blocking`](Self::commit_blocking).
    #[deprecated(
        since = "0.1.0",
        note = "blocks the calling thread: await `commit_async()` in async code, or call `commit_blocking()`"
    )]
    fn commit(&self) -> Result<(), ConsumerError> {
        self.commit_blocking()
    }

    /// Commits the offsets of the messages yielded so far without blocking
    /// the calling thread: the commit is sent at once, and the returned
    /// future resolves with the broker's answer (`Ok`, or the error it
    /// answered: a revoked partition, the coordinator gone). Nothing to
    /// commit resolves `Ok` at once.
    /// [`commit_blocking`](Self::commit_blocking) is the same, blocking
    /// until the answer.
    ///
    /// ```no_run
    /// use consumer_api::KafkaStreamConsumer;
    /// use futures_util::StreamExt;
    ///
    /// async fn run(consumer: &dyn KafkaStreamConsumer<String, Vec<u8>>) {
    ///     let mut messages = consumer.stream();
    ///     while let Some(Ok(message)) = messages.next().await {
    ///         println!("{message}");
    ///         if let Err(error) = consumer.commit_async().await {
    ///             eprintln!("commit failed, read on: {error}");
    ///         }
    ///     }
    /// }
    /// ```
    fn commit_async(&self) -> CommitAsync<'_>;

    /// The position of each assigned partition: the offset of the next message
    /// this consumer will read there (`Offset::Invalid` before the first read).
    ///
    /// # Errors
    ///
    /// [`ConsumerError::Kafka`] when librdkafka cannot tell.
    fn current_offsets(&self) -> Result<TopicPartitionList, ConsumerError>;

    /// Commits what was handed out, leaves the group and closes the
    /// consumer, resolving within `timeout` whatever the broker does, with
    /// a report of what succeeded. The close runs on a thread of its own
    /// ([`Closing`]), so no executor thread waits for the broker.
    ///
    /// This is the end of a service: stop reading, then close.
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use consumer_api::KafkaStreamConsumer;
    ///
    /// async fn shut_down(consumer: Box<dyn KafkaStreamConsumer<String, Vec<u8>>>) {
    ///     let report = consumer.close(Duration::from_secs(5)).await;
    ///     if !report.is_clean() {
    ///         eprintln!("closed with trouble: {report:?}");
    ///     }
    /// }
    /// ```
    fn close(self: Box<Self>, timeout: Duration) -> Closing;

    /// [`close`](Self::close), blocking the calling thread for up to
    /// `timeout`: for code outside an async runtime. Dropping the consumer
    /// closes it too, within `ConsumerConfig::close_timeout`, and its close
    /// also commits what was handed out (through the commit on revocation),
    /// but without a report.
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use consumer_api::KafkaStreamConsumer;
    ///
    /// fn shut_down(consumer: Box<dyn KafkaStreamConsumer<String, Vec<u8>>>) {
    ///     let report = consumer.close_blocking(Duration::from_secs(5));
    ///     if !report.is_clean() {
    ///         eprintln!("closed with trouble: {report:?}");
    ///     }
    /// }
    /// ```
    fn close_blocking(self: Box<Self>, timeout: Duration) -> CloseReport;

    /// The partitions assigned to this consumer.
    ///
    /// # Errors
    ///
    /// [`ConsumerError::Kafka`] when librdkafka cannot tell.
    fn assignment(&self) -> Result<TopicPartitionList, ConsumerError>;

    /// Moves an assigned partition's read position to `offset`: the next
    /// message of it handed out is the one at `offset` (messages of it
    /// already read ahead are dropped, not handed out). It waits up to
    /// `timeout` for librdkafka's fetcher to take the new position (a local
    /// hand-over, not a broker round trip).
    ///
    /// # Errors
    ///
    /// [`ConsumerError::Kafka`] when librdkafka refuses (the partition is
    /// not assigned, the timeout passed).
    fn seek(
        &self,
        topic: &str,
        partition: i32,
        offset: Offset,
        timeout: Duration,
    ) -> Result<(), ConsumerError>;

    /// Moves every assigned partition to its first record with a timestamp
    /// at or after `timestamp_ms` (milliseconds since the Unix epoch), or to
    /// its end where there is none; returns the offsets sought. Asking the
    /// broker for those offsets (`offsets_for_times`) blocks the calling
    /// thread for up to `timeout`: outside an async runtime, or in
    /// `spawn_blocking`.
    ///
    /// ```no_run
    /// use std::time::{Duration, SystemTime, UNIX_EPOCH};
    /// use consumer_api::{ConsumerError, KafkaStreamConsumer};
    ///
    /// fn replay_last_hour(consumer: &dyn KafkaStreamConsumer<String, String>) -> Result<(), ConsumerError> {
    ///     let hour_ago = SystemTime::now() - Duration::from_secs(3600);
    ///     let millis = hour_ago.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
    ///     let sought = consumer.seek_to_timestamp_blocking(millis, Duration::from_secs(10))?;
    ///     println!("reading again from {sought:?}");
    ///     Ok(())
    /// }
    /// ```
    ///
    /// # Errors
    ///
    /// [`ConsumerError::Kafka`] when the broker cannot answer in time or a
    /// seek is refused.
    fn seek_to_timestamp_blocking(
        &self,
        timestamp_ms: i64,
        timeout: Duration,
    ) -> Result<TopicPartitionList, ConsumerError>;

    /// Stops fetching from these partitions until [`resume`](Self::resume);
    /// the consumer stays in its group.
    ///
    /// # Errors
    ///
    /// [`ConsumerError::Kafka`] when librdkafka refuses.
    fn pause(&self, partitions: &TopicPartitionList) -> Result<(), ConsumerError>;

    /// Resumes fetching from paused partitions.
    ///
    /// # Errors
    ///
    /// [`ConsumerError::Kafka`] when librdkafka refuses.
    fn resume(&self, partitions: &TopicPartitionList) -> Result<(), ConsumerError>;

    /// The group's committed offsets for the assigned partitions, asked of
    /// the broker: blocks the calling thread for up to `timeout`.
    ///
    /// # Errors
    ///
    /// [`ConsumerError::Kafka`] when the broker cannot answer in time.
    fn committed_blocking(&self, timeout: Duration) -> Result<TopicPartitionList, ConsumerError>;

    /// Leaves the subscription: the partitions are revoked (what was handed
    /// out from them is committed, as on any revocation) once the consumer
    /// is next polled, and the stream hands out nothing more until the next
    /// [`subscribe`](Self::subscribe).
    ///
    /// # Errors
    ///
    /// [`ConsumerError::Kafka`] when librdkafka refuses.
    fn unsubscribe(&self) -> Result<(), ConsumerError>;

    /// How far behind the application is on each assigned partition: the
    /// high watermark librdkafka last saw minus the position of the next
    /// message the application will be handed. No broker round trip: the
    /// watermark is the one of the latest fetch response, so it is as fresh
    /// as the consumer's fetching.
    ///
    /// ```no_run
    /// use consumer_api::KafkaStreamConsumer;
    ///
    /// fn report(consumer: &dyn KafkaStreamConsumer<String, String>) {
    ///     for partition in consumer.lag().unwrap_or_default() {
    ///         println!("{}/{}: {:?} behind", partition.topic, partition.partition, partition.lag());
    ///     }
    /// }
    /// ```
    ///
    /// # Errors
    ///
    /// [`ConsumerError::Kafka`] when librdkafka cannot list the assignment.
    fn lag(&self) -> Result<Vec<PartitionLag>, ConsumerError>;

    /// The consumer's [`Health`](crate::Health), for liveness and readiness
    /// probes: whether it subscribed and joined its group, how long ago it
    /// polled librdkafka and handed out a message, its last fatal error and
    /// its lag. No broker round trip.
    fn health(&self) -> crate::Health;

    /// Which implementation this is: `None` for the legacy `StreamConsumer`,
    /// otherwise the fast consumer's tier. Handy for a startup log line.
    fn tier(&self) -> Option<ConsumerTier>;
}
