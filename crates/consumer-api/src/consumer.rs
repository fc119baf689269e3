//! [`KafkaStreamConsumer`]: the one API every implementation offers.

use std::pin::Pin;

use futures_core::Stream;
use rdkafka::TopicPartitionList;

use crate::batch::{BatchStream, ReadyBatches};
use crate::config::ConsumerTier;
use crate::error::ConsumerError;
use crate::message::Message;

/// The stream of messages a [`KafkaStreamConsumer`] hands out: boxed so that
/// the trait stays object safe, `Send` so that it can move to a task.
pub type MessageStream<'a, K, V> =
    Pin<Box<dyn Stream<Item = Result<Message<K, V>, ConsumerError>> + Send + 'a>>;

/// A Kafka consumer that hands out deserialized messages as a stream, whatever
/// the implementation behind it.
///
/// The contract every implementation keeps:
///
/// - **At-least-once.** An offset is stored only once its message has been
///   yielded by the stream; [`commit`](Self::commit) commits exactly the stored
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
    /// [`commit`](Self::commit) covers every message of the batches yielded
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

    /// Commits, synchronously, the offsets of the messages yielded so far.
    ///
    /// # Errors
    ///
    /// [`ConsumerError::Kafka`] when the broker refuses or cannot be reached.
    /// Committing with nothing new to commit is not an error.
    fn commit(&self) -> Result<(), ConsumerError>;

    /// The position of each assigned partition: the offset of the next message
    /// this consumer will read there (`Offset::Invalid` before the first read).
    ///
    /// # Errors
    ///
    /// [`ConsumerError::Kafka`] when librdkafka cannot tell.
    fn current_offsets(&self) -> Result<TopicPartitionList, ConsumerError>;

    /// Which implementation this is: `None` for the legacy `StreamConsumer`,
    /// otherwise the fast consumer's tier. Handy for a startup log line.
    fn tier(&self) -> Option<ConsumerTier>;
}
