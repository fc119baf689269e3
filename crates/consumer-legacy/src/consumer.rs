//! [`KafkaConsumer`]: a `StreamConsumer` that hands out deserialized messages.

use std::future::Future;
use std::marker::PhantomData;
use std::mem::ManuallyDrop;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use consumer_api::{
    ConfigError, ConsumerConfig, ConsumerError, ConsumerTier, Decode, KafkaStreamConsumer, Message,
    MessageStream, Misuse,
};
use consumer_fast::{Delivery, MessageMeter, RevocationPolicy, Telemetry};
use futures_core::Stream;
use rdkafka::consumer::{CommitMode, Consumer as _, ConsumerGroupMetadata, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::util::AsyncRuntime;
use rdkafka::{Offset, TopicPartitionList};

use crate::builder::ConsumerBuilder;
use crate::context::{LegacyConsumerContext, LegacyContext, TrackingContext};
use crate::stream::{LegacyBatches, LegacyStream, RawRecord, RawStream};

/// The rdkafka consumer underneath, closed within its close timeout: it
/// serves its queue before rdkafka closes it (see
/// [`consumer_fast::serve_queued_before_close`]), both on a thread bounded
/// by [`consumer_fast::close_within`].
struct Inner<C: LegacyConsumerContext> {
    consumer: ManuallyDrop<StreamConsumer<TrackingContext<C>, WakeRuntime>>,
    close_timeout: Duration,
    /// `consumer` was taken by [`shut_down`](Self::shut_down).
    shut: bool,
}

impl<C: LegacyConsumerContext> Inner<C> {
    /// Closes the client within `timeout`, once.
    fn shut_down(&mut self, timeout: Duration) -> consumer_fast::CloseOutcome {
        if std::mem::replace(&mut self.shut, true) {
            return consumer_fast::CloseOutcome::Closed(Duration::ZERO);
        }
        // SAFETY: taken once (`shut` guards it) and not read again: this
        // runs from `KafkaConsumer::close_blocking`, which consumes the
        // consumer, or from `drop`.
        let consumer = unsafe { ManuallyDrop::take(&mut self.consumer) };
        consumer_fast::close_within(timeout, move || {
            serve_queued(&consumer);
            drop(consumer);
        })
    }
}

impl<C: LegacyConsumerContext> std::ops::Deref for Inner<C> {
    type Target = StreamConsumer<TrackingContext<C>, WakeRuntime>;

    fn deref(&self) -> &Self::Target {
        &self.consumer
    }
}

impl<C: LegacyConsumerContext> Drop for Inner<C> {
    fn drop(&mut self) {
        self.shut_down(self.close_timeout);
    }
}

/// Serves what the consumer's queue holds, through its own stream.
fn serve_queued<C: LegacyConsumerContext>(
    consumer: &StreamConsumer<TrackingContext<C>, WakeRuntime>,
) {
    let mut stream = consumer.stream();
    let served = Arc::new(WokenFlag::default());
    let waker = Waker::from(Arc::clone(&served));
    let mut cx = Context::from_waker(&waker);
    consumer_fast::serve_queued_before_close(consumer, || {
        served.0.store(false, Ordering::Relaxed);
        match Pin::new(&mut stream).poll_next(&mut cx) {
            Poll::Ready(Some(_)) => true,
            Poll::Ready(None) => false,
            // rdkafka's stream wakes itself after serving an event
            // (a rebalance) and stays pending on an empty queue.
            Poll::Pending => served.0.load(Ordering::Relaxed),
        }
    });
}

/// A waker that only notes that it was woken.
#[derive(Debug, Default)]
struct WokenFlag(AtomicBool);

impl Wake for WokenFlag {
    fn wake(self: Arc<Self>) {
        self.0.store(true, Ordering::Relaxed);
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// The types a [`KafkaConsumer`] names but does not hold; a function type,
/// so that they do not decide its `Send`, `Sync` or drop check.
type Types<K, V, KS, VS> = fn() -> (K, V, Box<KS>, Box<VS>);

/// A Kafka consumer on rdkafka's `StreamConsumer`: the plan's "current"
/// consumer, kept as the default so that existing code works unchanged, with
/// a way out to the fast consumer ([`into_fast_consumer`](Self::into_fast_consumer)).
///
/// `K` and `V` are the key and value types, `KS` and `VS` their
/// codecs ([`Decode`]), `C` the application's [context](LegacyConsumerContext).
///
/// It keeps the same promises as the fast consumer:
///
/// - **At-least-once.** An offset is recorded only when its message is handed
///   to the application (by [`stream`](Self::stream), [`poll`](Self::poll) or
///   [`mark_delivered`](Self::mark_delivered)); [`commit`](Self::commit)
///   commits exactly those. When partitions are revoked, their recorded
///   offsets are committed before the revocation completes, then forgotten.
///   With `enable.auto.commit` on (librdkafka's default), each recorded
///   offset is also stored, so automatic commits cover exactly the same.
/// - **Bad data is per message.** A key or value that cannot be deserialized
///   is yielded as [`ConsumerError::Deserialize`] and counts as delivered.
/// - **Tombstones** are messages with `value: None`.
/// - **No busy waiting.** Streams are woken by librdkafka's queue non-empty
///   callback.
///
/// It starts no thread of its own. Created inside a Tokio runtime, it spawns
/// rdkafka's small keep-alive task, which wakes idle streams every half
/// `max.poll.interval.ms` so that an idle consumer keeps its group membership;
/// created outside one, it works the same, and an application idle for longer
/// than `max.poll.interval.ms` sees one `MaxPollExceeded` Kafka error and
/// rejoins.
///
/// # Examples
///
/// ```no_run
/// use consumer_api::{ConsumerConfig, JsonSerde, StringSerde};
/// use consumer_legacy::KafkaConsumer;
/// use futures_util::StreamExt;
///
/// # async fn run() -> Result<(), consumer_api::ConsumerError> {
/// let consumer: KafkaConsumer<String, serde_json::Value, _, _> =
///     KafkaConsumer::with_config(ConsumerConfig::new("localhost:9092", "billing"), StringSerde, JsonSerde)?;
/// consumer.subscribe(&["orders"])?;
/// let mut messages = consumer.stream();
/// while let Some(result) = messages.next().await {
///     match result {
///         Ok(message) => println!("{message}: {:?}", message.value),
///         Err(error) => eprintln!("skipping: {error}"),
///     }
/// }
/// # Ok(()) }
/// ```
///
/// # Naming the type
///
/// The codec parameters `KS` and `VS` default to `dyn Decode`, so a field or
/// a signature names two: `KafkaConsumer<String, Order>`, built by
/// [`with_boxed_codecs`](KafkaConsumer::with_boxed_codecs). The plan's
/// five-parameter form, `KafkaConsumer<K, V, KS, VS, C>`, built by
/// [`with_config`](KafkaConsumer::with_config), keeps each codec's own type
/// and is still there for code written against it.
///
/// ```no_run
/// use consumer_api::{ConsumerConfig, Json, StringSerde};
/// use consumer_legacy::KafkaConsumer;
///
/// #[derive(serde::Serialize, serde::Deserialize)]
/// struct Order {
///     id: u64,
/// }
///
/// struct Billing {
///     orders: KafkaConsumer<String, Order>,
/// }
///
/// let config = ConsumerConfig::new("localhost:9092", "billing");
/// let billing = Billing {
///     orders: KafkaConsumer::with_boxed_codecs(config, StringSerde, Json::new())?,
/// };
/// # Ok::<(), consumer_api::ConsumerError>(())
/// ```
pub struct KafkaConsumer<
    K,
    V,
    KS: ?Sized = dyn Decode<K>,
    VS: ?Sized = dyn Decode<V>,
    C = LegacyContext,
> where
    C: LegacyConsumerContext,
{
    consumer: Inner<C>,
    config: ConsumerConfig,
    /// Boxed whatever `KS` is, so that the two-parameter form
    /// (`KS = dyn Decode<K>`) is the same type as the others underneath.
    key_serde: Box<dyn Decode<K>>,
    value_serde: Box<dyn Decode<V>>,
    /// `enable.auto.commit` is on: store each recorded offset in librdkafka.
    store_offsets: bool,
    /// `ConsumerConfig::read_headers`, read once.
    read_headers: bool,
    transactional: bool,
    /// Metrics and health, shared with the context.
    telemetry: Arc<Telemetry>,
    /// Counts what is handed out, with metrics on (a lock per message: the
    /// legacy consumer's streams share it).
    meter: Mutex<Option<MessageMeter>>,
    _types: PhantomData<Types<K, V, KS, VS>>,
}

impl<K, V, KS: ?Sized, VS: ?Sized, C: LegacyConsumerContext> std::fmt::Debug
    for KafkaConsumer<K, V, KS, VS, C>
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaConsumer")
            .field("brokers", &self.config.brokers)
            .field("group_id", &self.config.group_id)
            .field("transactional", &self.transactional)
            .field("book", &self.consumer.context().book)
            .finish_non_exhaustive()
    }
}

impl KafkaConsumer<(), (), (), (), LegacyContext> {
    /// A [`ConsumerBuilder`], for a custom context or a transactional
    /// consumer; the same as [`ConsumerBuilder::new`].
    ///
    /// ```no_run
    /// use consumer_api::StringSerde;
    /// use consumer_legacy::KafkaConsumer;
    ///
    /// let consumer: KafkaConsumer<String, String, _, _> = KafkaConsumer::builder()
    ///     .brokers("localhost:9092")
    ///     .group_id("audit")
    ///     .key_serde(StringSerde)
    ///     .value_serde(StringSerde)
    ///     .build()?;
    /// # Ok::<(), consumer_api::ConsumerError>(())
    /// ```
    pub fn builder() -> ConsumerBuilder {
        ConsumerBuilder::new()
    }
}

impl<K, V, KS, VS> KafkaConsumer<K, V, KS, VS>
where
    KS: Decode<K> + 'static,
    VS: Decode<V> + 'static,
{
    /// A consumer of `brokers` in `group_id` with librdkafka's defaults.
    ///
    /// # Errors
    ///
    /// As [`with_config`](Self::with_config).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use consumer_api::{BytesSerde, StringSerde};
    /// use consumer_legacy::KafkaConsumer;
    ///
    /// let consumer: KafkaConsumer<String, Vec<u8>, _, _> =
    ///     KafkaConsumer::new("localhost:9092", "ingest", StringSerde, BytesSerde)?;
    /// # Ok::<(), consumer_api::ConsumerError>(())
    /// ```
    pub fn new(
        brokers: &str,
        group_id: &str,
        key_serde: KS,
        value_serde: VS,
    ) -> Result<Self, ConsumerError> {
        Self::with_config(
            ConsumerConfig::new(brokers, group_id),
            key_serde,
            value_serde,
        )
    }

    /// A consumer built from a [`ConsumerConfig`]. Its `performance_tier` is
    /// not used here (this is the legacy consumer); it is kept for
    /// [`into_fast_consumer`](Self::into_fast_consumer).
    ///
    /// # Errors
    ///
    /// [`ConsumerError::Config`] for an invalid configuration, naming the
    /// field or librdkafka property; [`ConsumerError::Kafka`] when librdkafka
    /// cannot create the client. An unreachable broker is not an error here:
    /// the stream reports it.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use consumer_api::{AutoOffsetReset, ConsumerConfig, StringSerde};
    /// use consumer_legacy::KafkaConsumer;
    ///
    /// let mut config = ConsumerConfig::new("localhost:9092", "billing");
    /// config.auto_offset_reset = Some(AutoOffsetReset::Earliest);
    /// config.enable_auto_commit = Some(false);
    /// let consumer: KafkaConsumer<String, String, _, _> =
    ///     KafkaConsumer::with_config(config, StringSerde, StringSerde)?;
    /// # Ok::<(), consumer_api::ConsumerError>(())
    /// ```
    pub fn with_config(
        config: ConsumerConfig,
        key_serde: KS,
        value_serde: VS,
    ) -> Result<Self, ConsumerError> {
        Self::create(
            config,
            Box::new(key_serde),
            Box::new(value_serde),
            LegacyContext,
            false,
        )
    }
}

impl<K, V> KafkaConsumer<K, V> {
    /// As [`with_config`](KafkaConsumer::with_config), with the codecs boxed,
    /// so that the consumer's type names only `K` and `V`.
    ///
    /// # Errors
    ///
    /// As [`with_config`](KafkaConsumer::with_config).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use consumer_api::{ConsumerConfig, Json, StringSerde};
    /// use consumer_legacy::KafkaConsumer;
    ///
    /// let consumer: KafkaConsumer<String, serde_json::Value> = KafkaConsumer::with_boxed_codecs(
    ///     ConsumerConfig::new("localhost:9092", "billing"),
    ///     StringSerde,
    ///     Json::new(),
    /// )?;
    /// # Ok::<(), consumer_api::ConsumerError>(())
    /// ```
    pub fn with_boxed_codecs(
        config: ConsumerConfig,
        key_serde: impl Decode<K> + 'static,
        value_serde: impl Decode<V> + 'static,
    ) -> Result<Self, ConsumerError> {
        KafkaConsumer::create(
            config,
            Box::new(key_serde),
            Box::new(value_serde),
            LegacyContext,
            false,
        )
    }
}

impl<K, V, KS: ?Sized, VS: ?Sized, C> KafkaConsumer<K, V, KS, VS, C>
where
    KS: Decode<K>,
    VS: Decode<V>,
    C: LegacyConsumerContext,
{
    /// Creates the consumer; `transactional` turns off its own commits.
    pub(crate) fn create(
        mut config: ConsumerConfig,
        key_serde: Box<dyn Decode<K>>,
        value_serde: Box<dyn Decode<V>>,
        context: C,
        transactional: bool,
    ) -> Result<Self, ConsumerError> {
        if transactional
            && config.enable_auto_commit.is_none()
            && !config.extra.contains_key("enable.auto.commit")
        {
            config.enable_auto_commit = Some(false);
        }
        let auto_commit = config
            .client_config()?
            .get("enable.auto.commit")
            .is_none_or(|value| {
                !matches!(
                    value.trim().to_ascii_lowercase().as_str(),
                    "false" | "f" | "0"
                )
            });
        if transactional && auto_commit {
            return Err(ConfigError::Invalid {
                field: "enable_auto_commit".to_owned(),
                value: "true".to_owned(),
                reason: "a transactional consumer's offsets are committed by the producer's \
                         transaction, never automatically"
                    .to_owned(),
            }
            .into());
        }
        let telemetry = Telemetry::for_config(&config);
        telemetry.set_tier(None);
        let mut revocation = RevocationPolicy::new();
        if transactional {
            revocation = revocation.without_commit();
        }
        let consumer = Inner {
            consumer: ManuallyDrop::new(
                config.create_with_context(TrackingContext::new(context, revocation, telemetry))?,
            ),
            close_timeout: config.close_timeout(),
            shut: false,
        };
        consumer
            .consumer
            .context()
            .reasons
            .name_group(&config.group_id);
        let telemetry = Arc::clone(&consumer.consumer.context().telemetry);
        telemetry.set_client(consumer.consumer.client());
        let meter = Mutex::new(telemetry.meter());
        tracing::debug!(
            brokers = %config.brokers,
            group_id = %config.group_id,
            transactional,
            auto_commit,
            "legacy consumer created"
        );
        Ok(KafkaConsumer {
            consumer,
            read_headers: config.reads_headers(),
            config,
            key_serde,
            value_serde,
            store_offsets: auto_commit,
            transactional,
            telemetry,
            meter,
            _types: PhantomData,
        })
    }

    /// Waits up to `timeout` for the next message.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: a message is taken from librdkafka only when it is
    /// returned.
    ///
    /// # Errors
    ///
    /// [`ConsumerError::Timeout`] when nothing arrived in time;
    /// [`ConsumerError::Deserialize`] for a message that cannot be
    /// deserialized (it counts as delivered); [`ConsumerError::Kafka`] for an
    /// error librdkafka reports; [`ConsumerError::Misuse`] outside a Tokio
    /// runtime (the timeout needs its timer).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use consumer_api::{ConsumerError, StringSerde};
    /// # use consumer_legacy::KafkaConsumer;
    /// use std::time::Duration;
    ///
    /// # async fn run(consumer: KafkaConsumer<String, String, StringSerde, StringSerde>) -> Result<(), ConsumerError> {
    /// match consumer.poll(Duration::from_secs(1)).await {
    ///     Ok(message) => println!("{message}"),
    ///     Err(ConsumerError::Timeout(_)) => println!("nothing within a second"),
    ///     Err(error) => return Err(error),
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn poll(&self, timeout: Duration) -> Result<Message<K, V>, ConsumerError> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(ConsumerError::Misuse(Misuse::NoTokioRuntime {
                call: "KafkaConsumer::poll",
            }));
        }
        let mut stream = self.stream();
        let next = std::future::poll_fn(|cx| Pin::new(&mut stream).poll_next(cx));
        match tokio::time::timeout(timeout, next).await {
            Ok(Some(result)) => result,
            Ok(None) => Err(ConsumerError::Closed),
            Err(_) => Err(ConsumerError::Timeout(timeout)),
        }
    }

    /// A stream of this consumer's deserialized messages. See
    /// [`LegacyStream`] for cancel safety and threading.
    ///
    /// Read through one stream at a time: two streams share the messages
    /// between them (every waiting one is woken), so neither sees a
    /// partition in full.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use consumer_api::{ConsumerError, StringSerde};
    /// # use consumer_legacy::KafkaConsumer;
    /// use futures_util::StreamExt;
    ///
    /// # async fn run(consumer: KafkaConsumer<String, String, StringSerde, StringSerde>) -> Result<(), ConsumerError> {
    /// let mut orders = consumer.stream().filter_map(|result| std::future::ready(result.ok()));
    /// while let Some(order) = orders.next().await {
    ///     println!("{order}");
    /// }
    /// # Ok(()) }
    /// ```
    pub fn stream(&self) -> LegacyStream<'_, K, V, KS, VS, C> {
        LegacyStream::new(self, self.consumer.stream())
    }

    /// Batches of up to `max` ready messages (a `max` of 0 counts as 1): a
    /// [`LegacyBatches`] over the same rdkafka stream as
    /// [`stream`](Self::stream). It never waits for a batch to fill; an
    /// error comes on its own, between two batches, and its offset is
    /// recorded only when it is handed out.
    pub fn batches(&self, max: usize) -> LegacyBatches<'_, K, V, KS, VS, C> {
        LegacyBatches::new(self, self.consumer.stream(), max)
    }

    /// Deserializes a polled record and records it when it deserialized;
    /// `Err` with the record's error, not recorded, when it did not; `None`
    /// when it is stale.
    pub(crate) fn take_for_batch(
        &self,
        generation: u64,
        record: &rdkafka::message::BorrowedMessage<'_>,
    ) -> Option<Result<Message<K, V>, ConsumerError>> {
        use rdkafka::Message as _;
        match Message::decode(
            record,
            &*self.key_serde,
            &*self.value_serde,
            self.read_headers,
        ) {
            Ok(message) => {
                let fresh = self.record(
                    generation,
                    record.topic(),
                    record.partition(),
                    record.offset(),
                );
                if !fresh {
                    return None;
                }
                let item = Ok(message);
                self.count(record, &item);
                Some(item)
            }
            Err(error) => Some(Err(error)),
        }
    }

    /// Records an error polled at `generation` as handed out (a record's
    /// deserialization error counts as delivered); `false` when its
    /// partition was revoked or sought since.
    pub(crate) fn record_error(&self, generation: u64, error: &ConsumerError) -> bool {
        match error {
            ConsumerError::Deserialize {
                topic,
                partition,
                offset,
                part,
                raw,
                ..
            } => {
                let fresh = self.record(generation, topic, *partition, *offset);
                if fresh {
                    self.telemetry.handed_out();
                    if let Some(meter) = self
                        .meter
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .as_mut()
                    {
                        meter.deserialize_error(topic, *partition, *part, raw.len());
                        meter.flush();
                    }
                }
                fresh
            }
            _ => true,
        }
    }

    /// Deserializes and records a polled record; `None` when it is stale.
    ///
    /// Deserialized first: whatever happens there (a serde error, a panic
    /// caught as one), the offset is recorded only together with the item
    /// handed out.
    pub(crate) fn hand_out(
        &self,
        generation: u64,
        record: &rdkafka::message::BorrowedMessage<'_>,
    ) -> Option<Result<Message<K, V>, ConsumerError>> {
        use rdkafka::Message as _;
        let item = Message::decode(
            record,
            &*self.key_serde,
            &*self.value_serde,
            self.read_headers,
        );
        self.telemetry.polled();
        if !self.record(
            generation,
            record.topic(),
            record.partition(),
            record.offset(),
        ) {
            tracing::debug!(
                topic = record.topic(),
                partition = record.partition(),
                offset = record.offset(),
                "dropping a message of a revoked partition"
            );
            return None;
        }
        self.count(record, &item);
        Some(item)
    }

    /// Counts a handed-out record for the metrics and health.
    fn count(
        &self,
        record: &rdkafka::message::BorrowedMessage<'_>,
        item: &Result<Message<K, V>, ConsumerError>,
    ) {
        use rdkafka::Message as _;
        self.telemetry.handed_out();
        if !self.telemetry.metrics_on() {
            return;
        }
        let mut meter = self.meter.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(meter) = meter.as_mut() else {
            return;
        };
        let bytes = record.key().map_or(0, <[u8]>::len) + record.payload().map_or(0, <[u8]>::len);
        match item {
            Err(ConsumerError::Deserialize { part, .. }) => {
                meter.deserialize_error(record.topic(), record.partition(), *part, bytes);
            }
            _ => meter.record(record.topic(), record.partition(), bytes),
        }
        // The legacy streams share this meter and keep no state of their
        // own to flush it from: counted at once.
        meter.flush();
    }

    /// Moves to the fast consumer (the plan's Phase 6): commits the offsets of
    /// what this consumer handed out, leaves the group, and returns a
    /// [`consumer_fast::Consumer`] with the same configuration, group,
    /// subscription and serdes. It continues from the next message: nothing
    /// handed out is read again, nothing is skipped.
    ///
    /// Pick the tier with the stream you open on it, or wrap it in a
    /// [`TieredConsumer`](consumer_fast::TieredConsumer).
    ///
    /// This blocks while the legacy consumer leaves the group (one broker
    /// round trip), like dropping it.
    ///
    /// # Errors
    ///
    /// [`ConsumerError::Kafka`] when the commit fails: the legacy consumer is
    /// closed (its revocation commits once more on the way out); build a fast
    /// consumer with [`Consumer::with_config`](consumer_fast::Consumer::with_config)
    /// to carry on, at least once. [`ConsumerError::Misuse`] for a
    /// [transactional](ConsumerBuilder::transactional) consumer (its offsets
    /// belong to the producer's transactions). As
    /// [`Consumer::with_config`](consumer_fast::Consumer::with_config) and
    /// [`subscribe`](consumer_fast::Consumer::subscribe) for the fast consumer.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use consumer_api::{ConsumerError, StringSerde};
    /// # use consumer_legacy::KafkaConsumer;
    /// use consumer_api::{ConsumerTier, KafkaStreamConsumer};
    /// use consumer_fast::TieredConsumer;
    ///
    /// # fn run(legacy: KafkaConsumer<String, String, StringSerde, StringSerde>) -> Result<(), ConsumerError> {
    /// let fast = TieredConsumer::new(legacy.into_fast_consumer()?, ConsumerTier::Dedicated);
    /// let messages = fast.stream();
    /// # Ok(()) }
    /// ```
    pub fn into_fast_consumer(self) -> Result<consumer_fast::Consumer<K, V>, ConsumerError>
    where
        K: 'static,
        V: 'static,
        KS: 'static,
        VS: 'static,
    {
        if self.transactional {
            return Err(ConsumerError::Misuse(Misuse::TransactionalIntoFast));
        }
        let topics = self.subscription()?;
        self.commit_blocking()?;
        let handed_out = self.consumer.context().book.snapshot();
        let KafkaConsumer {
            consumer,
            config,
            key_serde,
            value_serde,
            ..
        } = self;
        let mut consumer = consumer;
        match consumer.shut_down(config.close_timeout()) {
            consumer_fast::CloseOutcome::Closed(took) => {
                tracing::debug!(elapsed = ?took, "legacy consumer left the group");
            }
            outcome => tracing::warn!(
                ?outcome,
                "the legacy consumer did not leave its group in time; the fast consumer joins beside it"
            ),
        }
        let fast = consumer_fast::Consumer::with_config_dyn(config, key_serde, value_serde)?;
        if !topics.is_empty() {
            let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
            fast.subscribe(&topics)?;
        }
        tracing::info!(
            ?topics,
            committed = ?handed_out,
            "moved from the legacy consumer to the fast consumer"
        );
        Ok(fast)
    }
}

impl<K, V, KS: ?Sized, VS: ?Sized, C: LegacyConsumerContext> KafkaConsumer<K, V, KS, VS, C> {
    /// Subscribes to `topics`, replacing any earlier subscription.
    ///
    /// # Errors
    ///
    /// [`ConsumerError::Kafka`] when librdkafka refuses the subscription.
    pub fn subscribe(&self, topics: &[&str]) -> Result<(), ConsumerError> {
        self.consumer.subscribe(topics)?;
        self.telemetry.subscribed(false);
        Ok(())
    }

    /// rdkafka's own message stream, of undeserialized records: each
    /// [`RawRecord`] is rdkafka's `BorrowedMessage` (it implements
    /// [`rdkafka::Message`]), tagged with when it was polled.
    ///
    /// Messages read here are **not** recorded: [`commit`](Self::commit)
    /// covers one only after [`mark_delivered`](Self::mark_delivered).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use consumer_api::{ConsumerError, StringSerde};
    /// # use consumer_legacy::KafkaConsumer;
    /// use futures_util::StreamExt;
    /// use rdkafka::Message as _;
    ///
    /// # async fn run(consumer: KafkaConsumer<String, String, StringSerde, StringSerde>) -> Result<(), ConsumerError> {
    /// let mut raw = consumer.raw_stream();
    /// while let Some(record) = raw.next().await {
    ///     let record = record?;
    ///     println!("{} bytes", record.payload().map_or(0, <[u8]>::len));
    ///     consumer.mark_delivered(&record);
    /// }
    /// # Ok(()) }
    /// ```
    pub fn raw_stream(&self) -> RawStream<'_, C> {
        RawStream::new(&self.consumer.context().book, self.consumer.stream())
    }

    /// Records a message read from [`raw_stream`](Self::raw_stream) as handed
    /// to the application, so that [`commit`](Self::commit) covers it.
    ///
    /// Returns `false`, recording nothing, when the record's partition was
    /// revoked since it was polled: it belongs to another member now (which
    /// reads it again), and committing it would move that member's
    /// committed offset back.
    pub fn mark_delivered(&self, record: &RawRecord<'_>) -> bool {
        use rdkafka::Message as _;
        self.record(
            record.polled_at(),
            record.topic(),
            record.partition(),
            record.offset(),
        )
    }

    /// Records a polled message as handed out; `false` when its partition was
    /// revoked since `generation`.
    fn record(&self, generation: u64, topic: &str, partition: i32, offset: i64) -> bool {
        if self
            .consumer
            .context()
            .book
            .deliver(generation, topic, partition, offset)
            == Delivery::Stale
        {
            return false;
        }
        if self.store_offsets
            // `rd_kafka_offset_store` stores `offset + 1`, the next offset.
            && let Err(error) = self.consumer.store_offset(topic, partition, offset)
        {
            // Only for a partition no longer assigned: its offsets were
            // committed when it was revoked.
            tracing::debug!(%topic, partition, offset, %error, "cannot store offset");
        }
        true
    }

    pub(crate) fn book_generation(&self) -> u64 {
        self.consumer.context().book.generation()
    }

    /// An error the stream polled, with librdkafka's description of it.
    pub(crate) fn reported(&self, error: rdkafka::error::KafkaError) -> ConsumerError {
        let error = self.consumer.context().reasons.attach(error);
        self.telemetry.polled();
        self.telemetry.error(&error);
        error
    }

    /// Commits the offsets of every message handed to the application so far
    /// (including messages whose deserialization error was handed out),
    /// blocking the calling thread until the broker answers: for code
    /// outside an async runtime (in async code, await
    /// [`commit_async`](Self::commit_async)). Nothing else: messages
    /// librdkafka has fetched but not handed out are not covered.
    ///
    /// # Errors
    ///
    /// [`ConsumerError::Kafka`] when the broker refuses the commit or cannot
    /// be reached (nothing to commit is not an error);
    /// [`ConsumerError::Misuse`] for a
    /// [transactional](ConsumerBuilder::transactional) consumer.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use consumer_api::{ConsumerError, StringSerde};
    /// # use consumer_legacy::KafkaConsumer;
    /// use futures_util::StreamExt;
    ///
    /// # async fn run(consumer: KafkaConsumer<String, String, StringSerde, StringSerde>) -> Result<(), ConsumerError> {
    /// let batch: Vec<_> = consumer.stream().take(100).collect().await;
    /// // ... process the batch ...
    /// consumer.commit_async().await?; // exactly those 100
    /// # Ok(()) }
    /// ```
    pub fn commit_blocking(&self) -> Result<(), ConsumerError> {
        if self.transactional {
            return Err(ConsumerError::Misuse(Misuse::CommitOnTransactionalConsumer));
        }
        let offsets = self.consumer.context().book.snapshot();
        if offsets.count() == 0 {
            return Ok(());
        }
        let _commit = tracing::debug_span!("kafka.commit", partitions = offsets.count()).entered();
        let result = match self.consumer.commit(&offsets, CommitMode::Sync) {
            Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => Ok(()),
            Err(error) => Err(error.into()),
        };
        self.telemetry.commit_answered(result.is_ok());
        result
    }

    /// The plan's name for [`commit_blocking`](Self::commit_blocking), kept
    /// so that code written to it compiles.
    ///
    /// # Errors
    ///
    /// As [`commit_blocking`](Self::commit_blocking).
    #[deprecated(
        since = "0.1.0",
        note = "blocks the calling thread: await `commit_async()` in async code, or call `commit_blocking()`"
    )]
    pub fn commit(&self) -> Result<(), ConsumerError> {
        self.commit_blocking()
    }

    /// Commits, as [`commit_blocking`](Self::commit_blocking) does, without
    /// blocking: the returned future resolves with the broker's answer. A
    /// transactional consumer's resolves with the same `Misuse` error.
    pub fn commit_async(&self) -> consumer_fast::CommitFuture<'_> {
        if self.transactional {
            return consumer_fast::CommitFuture::ready(Err(ConsumerError::Misuse(
                Misuse::CommitOnTransactionalConsumer,
            )));
        }
        let offsets = self.consumer.context().book.snapshot();
        consumer_fast::CommitFuture::start(&*self.consumer, &offsets).observed_by(&self.telemetry)
    }

    /// Commits what was handed out (unless the consumer is transactional:
    /// its offsets go with the producer's transaction), leaves the group and
    /// closes the consumer, returning within `timeout` whatever the broker
    /// does: as [`consumer_fast::Consumer::close_blocking`]. It blocks the
    /// calling thread: from async code, await [`close`](Self::close).
    pub fn close_blocking(mut self, timeout: Duration) -> consumer_api::CloseReport {
        let started = Instant::now();
        let commit = if self.transactional {
            Ok(())
        } else {
            let offsets = self.consumer.context().book.snapshot();
            if offsets.count() == 0 {
                Ok(())
            } else {
                match consumer_fast::commit_within(&*self.consumer, &offsets, timeout) {
                    Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => Ok(()),
                    Err(error) => Err(error.into()),
                }
            }
        };
        let outcome = self
            .consumer
            .shut_down(timeout.saturating_sub(started.elapsed()));
        consumer_api::CloseReport {
            commit,
            left_group_in: outcome.closed_in(),
        }
    }

    /// The position of each assigned partition: the offset of the next message
    /// the application will be handed (`Offset::Invalid` where it has been
    /// handed none yet). For a transactional consumer, the offsets to pass to
    /// `send_offsets_to_transaction` (which leaves out the invalid ones).
    ///
    /// # Errors
    ///
    /// [`ConsumerError::Kafka`] when librdkafka cannot list the assignment.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use consumer_api::{ConsumerError, StringSerde};
    /// # use consumer_legacy::KafkaConsumer;
    /// # fn run(consumer: KafkaConsumer<String, String, StringSerde, StringSerde>) -> Result<(), ConsumerError> {
    /// for element in consumer.current_offsets()?.elements() {
    ///     println!("{}/{} next at {:?}", element.topic(), element.partition(), element.offset());
    /// }
    /// # Ok(()) }
    /// ```
    pub fn current_offsets(&self) -> Result<TopicPartitionList, ConsumerError> {
        let assignment = self.consumer.assignment()?;
        let book = &self.consumer.context().book;
        let mut positions = TopicPartitionList::with_capacity(assignment.count());
        for element in assignment.elements() {
            let offset = book
                .position(element.topic(), element.partition())
                .map_or(Offset::Invalid, Offset::Offset);
            positions.add_partition_offset(element.topic(), element.partition(), offset)?;
        }
        Ok(positions)
    }

    /// The group metadata a transactional producer passes to
    /// `send_offsets_to_transaction`, so that the group's offsets commit with
    /// its transaction. `None` before the client has a group handle.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use consumer_api::{ConsumerError, StringSerde};
    /// # use consumer_legacy::KafkaConsumer;
    /// use std::time::Duration;
    /// use rdkafka::producer::{BaseProducer, Producer};
    ///
    /// # fn run(consumer: KafkaConsumer<String, String, StringSerde, StringSerde>, producer: BaseProducer) -> Result<(), Box<dyn std::error::Error>> {
    /// producer.begin_transaction()?;
    /// // ... produce what the consumed messages became ...
    /// // Positions of partitions with nothing handed out are invalid offsets,
    /// // which librdkafka leaves out.
    /// let offsets = consumer.current_offsets()?;
    /// let metadata = consumer.group_metadata().ok_or("no group metadata")?;
    /// producer.send_offsets_to_transaction(&offsets, &metadata, Duration::from_secs(10))?;
    /// producer.commit_transaction(Duration::from_secs(10))?;
    /// # Ok(()) }
    /// ```
    pub fn group_metadata(&self) -> Option<ConsumerGroupMetadata> {
        self.consumer.group_metadata()
    }

    /// The partitions assigned to this consumer.
    ///
    /// # Errors
    ///
    /// [`ConsumerError::Kafka`] when librdkafka cannot tell.
    pub fn assignment(&self) -> Result<TopicPartitionList, ConsumerError> {
        Ok(self.consumer.assignment()?)
    }

    /// Moves a partition's read position to `offset`: the next message of it
    /// handed out is the one at `offset` (librdkafka drops what it fetched
    /// before the seek). Waits up to `timeout` for librdkafka's fetcher.
    ///
    /// Only a poll running on another thread at the very moment of the seek
    /// can still hand out one message of the old position after it returns
    /// (the fast consumer's gate closes that window; this consumer has no
    /// buffer of its own to guard). It counts as delivered, as any message
    /// handed out: nothing is skipped. With one task reading and seeking, it
    /// never happens.
    ///
    /// # Errors
    ///
    /// [`ConsumerError::Kafka`] when librdkafka refuses (e.g. the partition is
    /// not assigned).
    pub fn seek(
        &self,
        topic: &str,
        partition: i32,
        offset: Offset,
        timeout: Duration,
    ) -> Result<(), ConsumerError> {
        // No invalidation of the book here: a message a racing poll takes
        // after the seek is from the new position, and marking it stale
        // would drop it unread while librdkafka has moved past it.
        Ok(self.consumer.seek(topic, partition, offset, timeout)?)
    }

    /// Moves every assigned partition to its first record with a timestamp
    /// at or after `timestamp_ms` (or to its end where there is none), as
    /// [`seek`](Self::seek) does; returns the offsets sought. Asking the
    /// broker for them blocks for up to `timeout`.
    ///
    /// # Errors
    ///
    /// [`ConsumerError::Kafka`] when the broker does not answer in time or a
    /// seek is refused.
    pub fn seek_to_timestamp_blocking(
        &self,
        timestamp_ms: i64,
        timeout: Duration,
    ) -> Result<TopicPartitionList, ConsumerError> {
        let offsets = consumer_fast::offsets_at_timestamp(&*self.consumer, timestamp_ms, timeout)?;
        for element in offsets.elements() {
            self.seek(
                element.topic(),
                element.partition(),
                element.offset(),
                timeout,
            )?;
        }
        Ok(offsets)
    }

    /// Stops fetching from these partitions until [`resume`](Self::resume).
    ///
    /// # Errors
    ///
    /// [`ConsumerError::Kafka`] when librdkafka refuses.
    pub fn pause(&self, partitions: &TopicPartitionList) -> Result<(), ConsumerError> {
        Ok(self.consumer.pause(partitions)?)
    }

    /// Resumes fetching from paused partitions.
    ///
    /// # Errors
    ///
    /// [`ConsumerError::Kafka`] when librdkafka refuses.
    pub fn resume(&self, partitions: &TopicPartitionList) -> Result<(), ConsumerError> {
        Ok(self.consumer.resume(partitions)?)
    }

    /// Leaves the subscription: the partitions are revoked (what was handed
    /// out from them is committed, as on any revocation) when the consumer
    /// is next polled.
    pub fn unsubscribe(&self) {
        // A message being polled right now turns stale: nothing is handed
        // out once this returns.
        if let Ok(assignment) = self.consumer.assignment() {
            let elements = assignment.elements();
            self.consumer
                .context()
                .book
                .invalidate(elements.iter().map(|e| (e.topic(), e.partition())));
        }
        self.consumer.unsubscribe();
        self.telemetry.unsubscribed();
    }

    /// How far behind the application is on each assigned partition (see
    /// [`KafkaStreamConsumer::lag`]).
    ///
    /// # Errors
    ///
    /// [`ConsumerError::Kafka`] when librdkafka cannot list the assignment.
    pub fn lag(&self) -> Result<Vec<consumer_api::PartitionLag>, ConsumerError> {
        consumer_fast::partition_lag(&*self.consumer, &self.consumer.context().book)
    }

    /// The consumer's health (see [`KafkaStreamConsumer::health`]).
    pub fn health(&self) -> consumer_api::Health {
        consumer_fast::health(
            &*self.consumer,
            &self.consumer.context().book,
            &self.telemetry,
            self.max_poll_interval(),
        )
    }

    /// What the consumer reports about itself: the metrics it records and
    /// the facts behind [`health`](Self::health).
    pub fn telemetry(&self) -> &Arc<Telemetry> {
        &self.telemetry
    }

    /// librdkafka's `max.poll.interval.ms` for this consumer.
    fn max_poll_interval(&self) -> Duration {
        let configured = self.config.max_poll_interval_ms.or_else(|| {
            self.config
                .extra
                .get("max.poll.interval.ms")
                .and_then(|value| value.parse().ok())
        });
        configured.map_or(Duration::from_secs(300), Duration::from_millis)
    }

    /// A stream of this consumer polls librdkafka.
    pub(crate) fn note_poll(&self) {
        self.telemetry.polled();
    }

    /// The group's committed offsets for the assigned partitions, asked of the
    /// broker.
    ///
    /// # Errors
    ///
    /// [`ConsumerError::Kafka`] when the broker cannot be asked in time.
    pub fn committed(&self, timeout: Duration) -> Result<TopicPartitionList, ConsumerError> {
        Ok(self.consumer.committed(timeout)?)
    }

    /// The application's context, as given to
    /// [`ConsumerBuilder::context`] ([`LegacyContext`] otherwise).
    pub fn context(&self) -> &C {
        self.consumer.context().inner()
    }

    /// The configuration this consumer was built from.
    pub fn config(&self) -> &ConsumerConfig {
        &self.config
    }

    /// The subscribed topics (or patterns), as given to `subscribe`.
    fn subscription(&self) -> Result<Vec<String>, ConsumerError> {
        let mut topics: Vec<String> = Vec::new();
        for element in self.consumer.subscription()?.elements() {
            if !topics.iter().any(|t| t == element.topic()) {
                topics.push(element.topic().to_owned());
            }
        }
        Ok(topics)
    }
}

impl<K, V, KS: ?Sized, VS: ?Sized, C> KafkaConsumer<K, V, KS, VS, C>
where
    K: Send + 'static,
    V: Send + 'static,
    KS: Decode<K> + 'static,
    VS: Decode<V> + 'static,
    C: LegacyConsumerContext,
{
    /// [`close_blocking`](Self::close_blocking) on a thread of its own: the
    /// returned future resolves with the report, within `timeout`, and no
    /// executor thread waits for the broker. The way to end an async
    /// service: stop reading, then close.
    pub fn close(self, timeout: Duration) -> consumer_api::Closing {
        consumer_api::Closing::start(move || self.close_blocking(timeout))
    }
}

impl<K, V, KS: ?Sized, VS: ?Sized, C> KafkaStreamConsumer<K, V> for KafkaConsumer<K, V, KS, VS, C>
where
    K: Send + 'static,
    V: Send + 'static,
    KS: Decode<K> + 'static,
    VS: Decode<V> + 'static,
    C: LegacyConsumerContext,
{
    fn stream(&self) -> MessageStream<'_, K, V> {
        Box::pin(KafkaConsumer::stream(self))
    }

    fn batches<'a>(&'a self, max: usize) -> consumer_api::BatchStream<'a, K, V>
    where
        K: 'a,
        V: 'a,
    {
        Box::pin(KafkaConsumer::batches(self, max))
    }

    fn close(self: Box<Self>, timeout: Duration) -> consumer_api::Closing {
        KafkaConsumer::close(*self, timeout)
    }

    fn close_blocking(self: Box<Self>, timeout: Duration) -> consumer_api::CloseReport {
        KafkaConsumer::close_blocking(*self, timeout)
    }

    fn commit_async(&self) -> consumer_api::CommitAsync<'_> {
        Box::pin(KafkaConsumer::commit_async(self))
    }

    fn subscribe(&self, topics: &[&str]) -> Result<(), ConsumerError> {
        KafkaConsumer::subscribe(self, topics)
    }

    fn commit_blocking(&self) -> Result<(), ConsumerError> {
        KafkaConsumer::commit_blocking(self)
    }

    fn assignment(&self) -> Result<TopicPartitionList, ConsumerError> {
        KafkaConsumer::assignment(self)
    }

    fn seek(
        &self,
        topic: &str,
        partition: i32,
        offset: Offset,
        timeout: Duration,
    ) -> Result<(), ConsumerError> {
        KafkaConsumer::seek(self, topic, partition, offset, timeout)
    }

    fn seek_to_timestamp_blocking(
        &self,
        timestamp_ms: i64,
        timeout: Duration,
    ) -> Result<TopicPartitionList, ConsumerError> {
        KafkaConsumer::seek_to_timestamp_blocking(self, timestamp_ms, timeout)
    }

    fn pause(&self, partitions: &TopicPartitionList) -> Result<(), ConsumerError> {
        KafkaConsumer::pause(self, partitions)
    }

    fn resume(&self, partitions: &TopicPartitionList) -> Result<(), ConsumerError> {
        KafkaConsumer::resume(self, partitions)
    }

    fn committed_blocking(&self, timeout: Duration) -> Result<TopicPartitionList, ConsumerError> {
        KafkaConsumer::committed(self, timeout)
    }

    fn unsubscribe(&self) -> Result<(), ConsumerError> {
        KafkaConsumer::unsubscribe(self);
        Ok(())
    }

    fn lag(&self) -> Result<Vec<consumer_api::PartitionLag>, ConsumerError> {
        KafkaConsumer::lag(self)
    }

    fn health(&self) -> consumer_api::Health {
        KafkaConsumer::health(self)
    }

    fn current_offsets(&self) -> Result<TopicPartitionList, ConsumerError> {
        KafkaConsumer::current_offsets(self)
    }

    fn tier(&self) -> Option<ConsumerTier> {
        None
    }
}

/// The async runtime rdkafka's `StreamConsumer` spawns its keep-alive task on.
///
/// rdkafka's `TokioRuntime` calls `tokio::spawn`, which panics outside a Tokio
/// runtime; this one spawns on the current runtime when there is one and
/// otherwise does without the keep-alive (see [`KafkaConsumer`]).
pub(crate) struct WakeRuntime;

impl AsyncRuntime for WakeRuntime {
    type Delay = tokio::time::Sleep;

    fn spawn<T>(task: T)
    where
        T: Future<Output = ()> + Send + 'static,
    {
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn(task)),
            Err(_) => tracing::debug!(
                "created outside a Tokio runtime: no keep-alive wake-ups for idle streams"
            ),
        }
    }

    fn delay_for(duration: Duration) -> Self::Delay {
        tokio::time::sleep(duration)
    }
}
