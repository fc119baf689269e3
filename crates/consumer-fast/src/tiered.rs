//! [`TieredConsumer`]: a fast [`Consumer`] fixed to one tier, behind the
//! [`KafkaStreamConsumer`] trait.

use std::sync::Arc;
use std::time::Duration;

use consumer_api::{
    BatchStream, CloseReport, ConsumerConfig, ConsumerError, ConsumerTier, Decode,
    KafkaStreamConsumer, Message, MessageStream, TopicPartitionList,
};

use crate::consumer::Consumer;

/// A fast [`Consumer`] whose [`stream`](KafkaStreamConsumer::stream) is the
/// tier it was created with.
///
/// One type serves all three tiers because they differ only in which stream
/// `stream()` opens; everything else (subscribe, commit, offsets) is the
/// consumer's own.
///
/// For the Dedicated tier, only one stream is open at a time: a second call to
/// `stream()` while the first is alive yields a single
/// [`ConsumerError::Misuse`] instead of starting a second polling thread.
///
/// # Examples
///
/// ```no_run
/// use consumer_api::{ConsumerConfig, ConsumerTier, KafkaStreamConsumer, StringSerde};
/// use consumer_fast::TieredConsumer;
///
/// let consumer: Box<dyn KafkaStreamConsumer<String, String>> = Box::new(
///     TieredConsumer::with_config(
///         ConsumerConfig::new("localhost:9092", "audit"),
///         ConsumerTier::Dedicated,
///         StringSerde,
///         StringSerde,
///     )?,
/// );
/// consumer.subscribe(&["audit-log"])?;
/// # Ok::<(), consumer_api::ConsumerError>(())
/// ```
#[derive(Debug)]
pub struct TieredConsumer<K, V> {
    consumer: Arc<Consumer<K, V>>,
    tier: ConsumerTier,
}

impl<K, V> TieredConsumer<K, V> {
    /// Fixes `consumer` to `tier`.
    pub fn new(consumer: Consumer<K, V>, tier: ConsumerTier) -> Self {
        TieredConsumer {
            consumer: Arc::new(consumer),
            tier,
        }
    }

    /// Builds the consumer from `config` in `tier`.
    ///
    /// # Errors
    ///
    /// As [`Consumer::with_config`].
    pub fn with_config(
        config: ConsumerConfig,
        tier: ConsumerTier,
        key_serde: impl Decode<K> + 'static,
        value_serde: impl Decode<V> + 'static,
    ) -> Result<Self, ConsumerError> {
        Ok(Self::new(
            Consumer::with_config(config, key_serde, value_serde)?,
            tier,
        ))
    }

    /// The consumer, for what the trait does not cover (seek, pause, ...).
    pub fn consumer(&self) -> &Arc<Consumer<K, V>> {
        &self.consumer
    }
}

impl<K: Send + 'static, V: Send + 'static> KafkaStreamConsumer<K, V> for TieredConsumer<K, V> {
    fn stream(&self) -> MessageStream<'_, K, V> {
        match self.tier {
            ConsumerTier::Standard => Box::pin(self.consumer.stream()),
            ConsumerTier::Buffered { batch_size } => {
                Box::pin(self.consumer.buffered_stream(batch_size))
            }
            ConsumerTier::Dedicated => match self.consumer.dedicated_stream() {
                Ok(stream) => Box::pin(stream),
                Err(error) => Box::pin(OneError::<Message<K, V>>::new(error)),
            },
        }
    }

    /// Batches read as the tier reads: Standard and Buffered take up to
    /// `max` ready messages from librdkafka at once, Dedicated hands out its
    /// polling thread's batches (see [`Consumer::batches`] and
    /// [`Consumer::dedicated_batches`]).
    fn batches<'a>(&'a self, max: usize) -> BatchStream<'a, K, V>
    where
        K: 'a,
        V: 'a,
    {
        match self.tier {
            ConsumerTier::Standard | ConsumerTier::Buffered { .. } => {
                Box::pin(self.consumer.batches(max))
            }
            ConsumerTier::Dedicated => match self.consumer.dedicated_batches(max) {
                Ok(batches) => Box::pin(batches),
                Err(error) => Box::pin(OneError::<Vec<Message<K, V>>>::new(error)),
            },
        }
    }

    fn subscribe(&self, topics: &[&str]) -> Result<(), ConsumerError> {
        self.consumer.subscribe(topics)
    }

    fn commit_blocking(&self) -> Result<(), ConsumerError> {
        self.consumer.commit_blocking()
    }

    fn commit_async(&self) -> consumer_api::CommitAsync<'_> {
        Box::pin(self.consumer.commit_async())
    }

    fn current_offsets(&self) -> Result<TopicPartitionList, ConsumerError> {
        self.consumer.current_offsets()
    }

    fn assignment(&self) -> Result<TopicPartitionList, ConsumerError> {
        self.consumer.assignment()
    }

    fn seek(
        &self,
        topic: &str,
        partition: i32,
        offset: rdkafka::Offset,
        timeout: Duration,
    ) -> Result<(), ConsumerError> {
        self.consumer.seek(topic, partition, offset, timeout)
    }

    fn seek_to_timestamp_blocking(
        &self,
        timestamp_ms: i64,
        timeout: Duration,
    ) -> Result<TopicPartitionList, ConsumerError> {
        self.consumer
            .seek_to_timestamp_blocking(timestamp_ms, timeout)
    }

    fn pause(&self, partitions: &TopicPartitionList) -> Result<(), ConsumerError> {
        self.consumer.pause(partitions)
    }

    fn resume(&self, partitions: &TopicPartitionList) -> Result<(), ConsumerError> {
        self.consumer.resume(partitions)
    }

    fn committed_blocking(&self, timeout: Duration) -> Result<TopicPartitionList, ConsumerError> {
        self.consumer.committed(timeout)
    }

    fn unsubscribe(&self) -> Result<(), ConsumerError> {
        self.consumer.unsubscribe();
        Ok(())
    }

    fn lag(&self) -> Result<Vec<consumer_api::PartitionLag>, ConsumerError> {
        self.consumer.lag()
    }

    fn health(&self) -> consumer_api::Health {
        self.consumer.health()
    }

    /// [`close_blocking`](KafkaStreamConsumer::close_blocking) on a thread
    /// of its own, as [`Consumer::close`] does.
    fn close(self: Box<Self>, timeout: Duration) -> consumer_api::Closing {
        consumer_api::Closing::start(move || self.close_blocking(timeout))
    }

    /// Closes the consumer as [`Consumer::close_blocking`] does. If the
    /// application still holds a clone of [`consumer`](Self::consumer), the
    /// commit is made (within `timeout`) but the consumer closes only when
    /// that clone is dropped: `left_group_in` is then `None`, and a warning
    /// says why.
    fn close_blocking(self: Box<Self>, timeout: Duration) -> CloseReport {
        match Arc::try_unwrap(self.consumer) {
            Ok(consumer) => consumer.close_blocking(timeout),
            Err(shared) => {
                tracing::warn!(
                    "close_blocking: a clone of TieredConsumer::consumer() is still held; \
                     the consumer closes when it is dropped"
                );
                CloseReport {
                    commit: shared.commit_bounded(timeout),
                    left_group_in: None,
                }
            }
        }
    }

    fn tier(&self) -> Option<ConsumerTier> {
        Some(self.tier)
    }
}

/// A stream that yields one error, then ends.
struct OneError<T>(Option<ConsumerError>, std::marker::PhantomData<fn() -> T>);

impl<T> OneError<T> {
    fn new(error: ConsumerError) -> Self {
        OneError(Some(error), std::marker::PhantomData)
    }
}

impl<T> futures_core::Stream for OneError<T> {
    type Item = Result<T, ConsumerError>;

    fn poll_next(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        std::task::Poll::Ready(self.get_mut().0.take().map(Err))
    }
}
