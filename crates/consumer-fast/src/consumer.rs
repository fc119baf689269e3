//! [`Consumer`]: a `BaseConsumer` that hands out deserialized messages.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::mem::ManuallyDrop;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use consumer_api::{
    ConsumerConfig, ConsumerError, ConsumerTier, Decode, KafkaStreamConsumer, Message,
    MessageStream,
};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer as _, ConsumerGroupMetadata};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::util::Timeout;
use rdkafka::{Offset, TopicPartitionList};

use crate::context::FastContext;
use crate::gate::PollGate;
use crate::liveness::{PollKeeper, auto_commit, max_poll_interval};
use crate::offsets::{Delivery, OffsetBook};
use crate::queue::QueueHandle;
use crate::stream::{BufferedKafkaStream, KafkaBatches, KafkaStream};
use crate::telemetry::{MessageMeter, Telemetry};
use crate::wakers::{StreamWakers, thread_waker};

/// What a batch stream yields: a batch of messages, or one error.
pub(crate) type BatchItem<K, V> = Result<Vec<Message<K, V>>, ConsumerError>;

/// A message (or per-message error) polled from librdkafka, tagged with the
/// offset book's generation at poll time.
pub(crate) struct Polled<K, V> {
    pub(crate) generation: u64,
    pub(crate) result: Result<Message<K, V>, ConsumerError>,
    /// The record's key and value bytes, for the bytes metric.
    pub(crate) bytes: usize,
}

impl<K, V> Polled<K, V> {
    /// The record this item is about, if it is about one.
    pub(crate) fn coordinates(&self) -> Option<(&str, i32, i64)> {
        match &self.result {
            Ok(message) => Some((&message.topic, message.partition, message.offset)),
            Err(ConsumerError::Deserialize {
                topic,
                partition,
                offset,
                ..
            }) => Some((topic, *partition, *offset)),
            Err(_) => None,
        }
    }
}

/// A Kafka consumer on rdkafka's `BaseConsumer`, read through one of three
/// performance tiers:
///
/// | tier | method | what it does |
/// |---|---|---|
/// | Standard | [`stream`](Self::stream) | one message per wake-up: lowest latency |
/// | Buffered | [`buffered_stream`](Self::buffered_stream) | up to `batch_size` ready messages per wake-up |
/// | Dedicated | [`dedicated_stream`](Self::dedicated_stream) | a polling thread feeding a bounded channel |
///
/// Every tier wakes up only when librdkafka has something for it: an idle
/// consumer costs no CPU. Every tier keeps the same promise on offsets: an
/// offset is recorded only when its message is handed to the application, and
/// [`commit`](Self::commit) commits exactly those, never a buffered message.
///
/// Read through one stream (or `poll_blocking` / `try_poll`) at a time: two
/// readers share the messages between them (every waiting reader is woken
/// when messages arrive), so neither sees a partition in full; only one
/// Dedicated stream may be open.
///
/// # Examples
///
/// ```no_run
/// use consumer_api::{ConsumerConfig, JsonSerde, StringSerde};
/// use consumer_fast::Consumer;
/// use futures_util::StreamExt;
///
/// # async fn run() -> Result<(), consumer_api::ConsumerError> {
/// let consumer: Consumer<String, serde_json::Value> = Consumer::with_config(
///     ConsumerConfig::new("localhost:9092", "billing"),
///     StringSerde,
///     JsonSerde,
/// )?;
/// consumer.subscribe(&["orders"])?;
/// let mut messages = consumer.buffered_stream(64);
/// while let Some(result) = messages.next().await {
///     match result {
///         Ok(message) => println!("{message}: {:?}", message.value),
///         Err(error) => eprintln!("skipping: {error}"),
///     }
/// }
/// consumer.commit_async().await?;
/// # Ok(()) }
/// ```
pub struct Consumer<K, V> {
    // Both taken by `shut_down` (from `close_blocking` or `Drop`), which
    // releases the queue reference before the client is destroyed, on a
    // thread bounded by the close timeout.
    queue: ManuallyDrop<QueueHandle>,
    pub(crate) base: ManuallyDrop<BaseConsumer<FastContext>>,
    /// Every reader waiting for librdkafka's queue, woken by its non-empty
    /// callback.
    pub(crate) wakers: Arc<StreamWakers>,
    /// Makes "polled before this seek" decidable.
    pub(crate) gate: PollGate,
    pub(crate) book: Arc<OffsetBook>,
    /// Metrics and health, shared with the context.
    pub(crate) telemetry: Arc<Telemetry>,
    /// The meter of [`poll_blocking`](Self::poll_blocking) and
    /// [`try_poll`](Self::try_poll) (streams keep their own).
    blocking_meter: Mutex<Option<MessageMeter>>,
    pub(crate) key_serde: Box<dyn Decode<K>>,
    pub(crate) value_serde: Box<dyn Decode<V>>,
    /// Which polling thread of its own the consumer runs, if any: a
    /// Dedicated stream or concurrent processing (one at most).
    pub(crate) polling_thread: crate::PollingThreadSlot,
    /// librdkafka's `max.poll.interval.ms` for this consumer.
    pub(crate) max_poll_interval: Duration,
    /// Started with the first Standard or Buffered stream; `None` inside when
    /// the thread could not start.
    poll_keeper: OnceLock<Option<PollKeeper>>,
    /// Partitions the application paused, which the Dedicated tier's
    /// backpressure must leave paused.
    paused_by_application: Mutex<BTreeSet<(String, i32)>>,
    /// Bumped by each [`resume`](Self::resume): the Dedicated tier's
    /// backpressure pauses again what the application resumed.
    pub(crate) application_resumes: AtomicU64,
    /// The tier of the stream opened last, for
    /// [`KafkaStreamConsumer::tier`].
    read_tier: Mutex<ConsumerTier>,
    /// Whether messages carry their records' headers.
    pub(crate) read_headers: bool,
    /// librdkafka's `enable.auto.commit`: it commits what was stored.
    auto_commit: bool,
    /// Messages handed out since [`stored_at`](Self::stored_at) was checked.
    handed_out_unchecked: AtomicU32,
    /// When offsets were last stored for auto-commit.
    stored_at: Mutex<Instant>,
    /// The longest the drop waits for librdkafka's close.
    close_timeout: Duration,
    /// `queue` and `base` were taken by [`shut_down`](Self::shut_down).
    shut: bool,
    /// [`wakeup`](Self::wakeup) was called and no blocking poll has
    /// answered it yet.
    wakeup_requested: AtomicBool,
}

impl<K, V> std::fmt::Debug for Consumer<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer")
            .field("book", &self.book)
            .finish_non_exhaustive()
    }
}

/// With auto-commit, how often a stream that never waits stores offsets.
const STORE_INTERVAL: Duration = Duration::from_millis(500);
/// How many messages are handed out between two looks at the clock.
const STORE_CHECK_EVERY: u32 = 16;

/// How many operations a refill may serve without finding either a message or
/// an empty queue before it yields to the executor once.
const MAX_EVENTS_PER_REFILL: usize = 1024;

impl<K, V> Consumer<K, V> {
    /// Wraps a `BaseConsumer` built with [`FastContext`].
    ///
    /// Build it with `enable.auto.offset.store=false` (as
    /// [`with_config`](Self::with_config) does): otherwise librdkafka stores
    /// offsets when messages are polled, before the application has them.
    ///
    /// # Errors
    ///
    /// [`ConsumerError::Config`] when the consumer has no `group.id`.
    pub fn new(
        base: BaseConsumer<FastContext>,
        key_serde: impl Decode<K> + 'static,
        value_serde: impl Decode<V> + 'static,
    ) -> Result<Self, ConsumerError> {
        Self::assemble(base, Box::new(key_serde), Box::new(value_serde))
    }

    fn assemble(
        mut base: BaseConsumer<FastContext>,
        key_serde: Box<dyn Decode<K>>,
        value_serde: Box<dyn Decode<V>>,
    ) -> Result<Self, ConsumerError> {
        let queue = QueueHandle::of(&base).ok_or_else(|| {
            ConsumerError::Config(consumer_api::ConfigError::Invalid {
                field: "group.id".to_owned(),
                value: String::new(),
                reason: "the fast consumer needs a consumer group".to_owned(),
            })
        })?;
        let wakers = Arc::new(StreamWakers::default());
        let wake = Arc::clone(&wakers);
        base.set_nonempty_callback(move || wake.wake_all());
        let book = Arc::clone(&base.context().book);
        let telemetry = Arc::clone(&base.context().telemetry);
        telemetry.set_client(base.client());
        let blocking_meter = Mutex::new(telemetry.meter());
        let max_poll_interval = max_poll_interval(&base);
        let auto_commit = auto_commit(&base);
        Ok(Consumer {
            queue: ManuallyDrop::new(queue),
            base: ManuallyDrop::new(base),
            wakers,
            gate: PollGate::default(),
            book,
            telemetry,
            blocking_meter,
            key_serde,
            value_serde,
            polling_thread: crate::PollingThreadSlot::default(),
            max_poll_interval,
            poll_keeper: OnceLock::new(),
            paused_by_application: Mutex::default(),
            application_resumes: AtomicU64::new(0),
            read_tier: Mutex::new(ConsumerTier::Standard),
            read_headers: true,
            auto_commit,
            handed_out_unchecked: AtomicU32::new(0),
            stored_at: Mutex::new(Instant::now()),
            close_timeout: consumer_api::DEFAULT_CLOSE_TIMEOUT,
            shut: false,
            wakeup_requested: AtomicBool::new(false),
        })
    }

    /// Builds a consumer from a [`ConsumerConfig`]; its `performance_tier` is
    /// ignored here (pick the tier by the stream you open).
    ///
    /// # Errors
    ///
    /// [`ConsumerError::Config`] for an invalid configuration, naming the
    /// field or librdkafka property; [`ConsumerError::Kafka`] when librdkafka
    /// cannot create the client.
    pub fn with_config(
        config: ConsumerConfig,
        key_serde: impl Decode<K> + 'static,
        value_serde: impl Decode<V> + 'static,
    ) -> Result<Self, ConsumerError> {
        Self::with_config_dyn(config, Box::new(key_serde), Box::new(value_serde))
    }

    /// [`with_config`](Self::with_config) with codecs already boxed: how the
    /// legacy consumer's `into_fast_consumer` hands its codecs over (a
    /// `Box<dyn Decode>` is not itself a `Decode`: the blanket impl over
    /// `Serde` leaves no room for one). Not part of the API.
    #[doc(hidden)]
    pub fn with_config_dyn(
        config: ConsumerConfig,
        key_serde: Box<dyn Decode<K>>,
        value_serde: Box<dyn Decode<V>>,
    ) -> Result<Self, ConsumerError> {
        let telemetry = Telemetry::for_config(&config);
        // Until a stream says which tier reads: the configured one.
        telemetry.set_tier(Some(
            config.performance_tier.unwrap_or(ConsumerTier::Standard),
        ));
        let base: BaseConsumer<FastContext> =
            config.create_with_context(FastContext::with_telemetry(telemetry))?;
        base.context().reasons.name_group(&config.group_id);
        Ok(Self::assemble(base, key_serde, value_serde)?
            .reading_headers(config.reads_headers())
            .closing_within(config.close_timeout()))
    }

    /// The longest dropping this consumer waits for librdkafka's close
    /// (builder style; [`ConsumerConfig::close_timeout`] says what that is,
    /// and what happens when it passes). [`DEFAULT_CLOSE_TIMEOUT`](consumer_api::DEFAULT_CLOSE_TIMEOUT)
    /// unless set.
    #[must_use]
    pub fn closing_within(mut self, timeout: Duration) -> Self {
        self.close_timeout = timeout;
        self
    }

    /// Whether messages carry their records' headers (builder style; `true`
    /// unless set otherwise). `false` leaves every message's `headers`
    /// empty and saves librdkafka's parse of each record's header section:
    /// see [`ConsumerConfig::read_headers`].
    #[must_use]
    pub fn reading_headers(mut self, read: bool) -> Self {
        self.read_headers = read;
        self
    }

    /// Builds a consumer for `brokers` in `group_id` with librdkafka's defaults.
    ///
    /// # Errors
    ///
    /// As [`with_config`](Self::with_config).
    pub fn from_brokers(
        brokers: &str,
        group_id: &str,
        key_serde: impl Decode<K> + 'static,
        value_serde: impl Decode<V> + 'static,
    ) -> Result<Self, ConsumerError> {
        Self::with_config(
            ConsumerConfig::new(brokers, group_id),
            key_serde,
            value_serde,
        )
    }

    /// Subscribes to `topics`, replacing any earlier subscription.
    ///
    /// # Errors
    ///
    /// [`ConsumerError::Kafka`] when librdkafka refuses the subscription.
    pub fn subscribe(&self, topics: &[&str]) -> Result<(), ConsumerError> {
        self.base.subscribe(topics)?;
        self.telemetry.subscribed(false);
        Ok(())
    }

    /// Commits the offsets of every message handed to the application so far
    /// (and of every message whose deserialization error was handed out),
    /// blocking the calling thread until the broker answers: for code
    /// outside an async runtime (in async code, await
    /// [`commit_async`](Self::commit_async)). Messages still buffered by a
    /// stream are not covered.
    ///
    /// # Errors
    ///
    /// [`ConsumerError::Kafka`] when the broker refuses the commit or cannot
    /// be reached. Nothing to commit is not an error.
    pub fn commit_blocking(&self) -> Result<(), ConsumerError> {
        let offsets = self.book.snapshot();
        if offsets.count() == 0 {
            return Ok(());
        }
        self.store(&offsets);
        let _commit = tracing::debug_span!("kafka.commit", partitions = offsets.count()).entered();
        let result = match self.base.commit(&offsets, CommitMode::Sync) {
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

    /// Commits the offsets of every message handed out so far, as
    /// [`commit_blocking`](Self::commit_blocking) does, without blocking: the
    /// returned future resolves with the broker's answer.
    ///
    /// ```no_run
    /// # use consumer_fast::Consumer;
    /// # async fn run(consumer: Consumer<String, Vec<u8>>) {
    /// if let Err(error) = consumer.commit_async().await {
    ///     eprintln!("the commit failed: {error}");
    /// }
    /// # }
    /// ```
    pub fn commit_async(&self) -> crate::CommitFuture<'_> {
        let offsets = self.book.snapshot();
        if offsets.count() > 0 {
            self.store(&offsets);
        }
        crate::CommitFuture::start(&*self.base, &offsets).observed_by(&self.telemetry)
    }

    /// Hands librdkafka the recorded offsets, so that its auto-commit (when
    /// enabled) and its commit on close cover what the application has seen.
    pub(crate) fn store_recorded_offsets(&self) {
        if let Some(offsets) = self.book.changed_snapshot()
            && offsets.count() > 0
        {
            self.store(&offsets);
        }
    }

    /// With auto-commit on, stores what was handed out at least every
    /// [`STORE_INTERVAL`] while a stream keeps delivering: a stream that
    /// never waits would otherwise store nothing, and librdkafka's
    /// auto-commit would commit nothing until the stream is dropped. The
    /// clock is read once every [`STORE_CHECK_EVERY`] messages (or once per
    /// batch).
    fn store_now_and_then(&self, handed_out: u32) {
        if !self.auto_commit
            || self
                .handed_out_unchecked
                .fetch_add(handed_out, Ordering::Relaxed)
                .saturating_add(handed_out)
                < STORE_CHECK_EVERY
        {
            return;
        }
        self.handed_out_unchecked.store(0, Ordering::Relaxed);
        {
            let mut stored_at = self
                .stored_at
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if stored_at.elapsed() < STORE_INTERVAL {
                return;
            }
            *stored_at = Instant::now();
        }
        self.store_recorded_offsets();
    }

    fn store(&self, offsets: &TopicPartitionList) {
        // Storing fails for partitions no longer assigned; their offsets were
        // committed when they were revoked.
        if let Err(error) = self.base.store_offsets(offsets) {
            tracing::debug!(%error, "some offsets could not be stored");
        }
    }

    /// The position of each assigned partition: the offset of the next message
    /// the application will be handed (`Offset::Invalid` where it has been
    /// handed none yet).
    ///
    /// # Errors
    ///
    /// [`ConsumerError::Kafka`] when librdkafka cannot list the assignment.
    pub fn current_offsets(&self) -> Result<TopicPartitionList, ConsumerError> {
        let assignment = self.base.assignment()?;
        let mut positions = TopicPartitionList::with_capacity(assignment.count());
        for element in assignment.elements() {
            let offset = self
                .book
                .position(element.topic(), element.partition())
                .map_or(Offset::Invalid, Offset::Offset);
            positions.add_partition_offset(element.topic(), element.partition(), offset)?;
        }
        Ok(positions)
    }

    /// Waits up to `timeout` for the next message.
    ///
    /// This blocks the calling thread: call it from a thread of your own or
    /// `spawn_blocking`, never from an async task.
    ///
    /// # Errors
    ///
    /// [`ConsumerError::Timeout`] when nothing arrived in time;
    /// [`ConsumerError::WokenUp`] when [`wakeup`](Self::wakeup) asked it
    /// to return; [`ConsumerError::Deserialize`] for a message that cannot be
    /// deserialized (it counts as delivered); [`ConsumerError::Kafka`], with
    /// librdkafka's description as its `reason` when it gave one, for an
    /// error librdkafka reports: match with [`ConsumerError::code`].
    pub fn poll_blocking(&self, timeout: Duration) -> Result<Message<K, V>, ConsumerError> {
        let deadline = Instant::now() + timeout;
        let slot = WakerSlot::new(&self.wakers);
        let waker = thread_waker(std::thread::current());
        let mut ready = VecDeque::with_capacity(1);
        loop {
            if self.wakeup_requested.swap(false, Ordering::AcqRel) {
                return Err(ConsumerError::WokenUp);
            }
            {
                let _polling = self.gate.read();
                self.refill_locked(&mut ready, 1);
            }
            while let Some(polled) = ready.pop_front() {
                let mut meter = self.lock_blocking_meter();
                let handed_out = self.hand_out(polled, meter.as_mut());
                // A blocking call hands out one message: counted at once.
                if let Some(meter) = meter.as_mut() {
                    meter.flush();
                }
                if let Some(result) = handed_out {
                    return result;
                }
            }
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(ConsumerError::Timeout(timeout));
            }
            // Registered before looking: a message arriving in between
            // still unparks this thread. Waking at least every half
            // `max.poll.interval.ms` keeps a long wait in the group.
            slot.register(&waker);
            if self.queue.len() == 0 && !self.wakeup_requested.load(Ordering::Acquire) {
                std::thread::park_timeout(remaining.min(self.max_poll_interval / 2));
            }
        }
    }

    /// Makes a [`poll_blocking`](Self::poll_blocking) waiting on another
    /// thread return [`ConsumerError::WokenUp`] at once, as the Java
    /// consumer's `wakeup()`: the way to stop a thread blocked in a poll
    /// (for a shutdown). With no poll waiting, the next `poll_blocking`
    /// returns it instead. Streams are not affected: stop a stream by
    /// dropping its `next()` (it is cancel safe).
    ///
    /// ```no_run
    /// # use std::sync::Arc;
    /// # use std::time::Duration;
    /// # use consumer_fast::Consumer;
    /// # fn run(consumer: Arc<Consumer<String, Vec<u8>>>) {
    /// let poller = {
    ///     let consumer = Arc::clone(&consumer);
    ///     std::thread::spawn(move || loop {
    ///         match consumer.poll_blocking(Duration::from_secs(60)) {
    ///             Ok(message) => println!("{message}"),
    ///             Err(consumer_api::ConsumerError::WokenUp) => break,
    ///             Err(error) => eprintln!("{error}"),
    ///         }
    ///     })
    /// };
    /// consumer.wakeup(); // on shutdown
    /// poller.join().expect("the polling thread");
    /// # }
    /// ```
    pub fn wakeup(&self) {
        self.wakeup_requested.store(true, Ordering::Release);
        self.wakers.wake_all();
    }

    /// The next message if one is ready now, without waiting.
    ///
    /// # Errors
    ///
    /// As [`poll_blocking`](Self::poll_blocking), without the timeout.
    pub fn try_poll(&self) -> Result<Option<Message<K, V>>, ConsumerError> {
        let mut ready = VecDeque::with_capacity(1);
        while let Refill::Took(_) = self.refill(&mut ready, 1) {
            let mut meter = self.lock_blocking_meter();
            let handed_out = ready
                .pop_front()
                .and_then(|polled| self.hand_out(polled, meter.as_mut()));
            if let Some(meter) = meter.as_mut() {
                meter.flush();
            }
            if let Some(result) = handed_out {
                return result.map(Some);
            }
        }
        Ok(None)
    }

    /// The Standard tier: a stream handing out one message per wake-up.
    pub fn stream(&self) -> KafkaStream<'_, K, V> {
        self.keep_polled();
        self.set_read_tier(ConsumerTier::Standard);
        KafkaStream::new(self)
    }

    /// The Buffered tier: a stream taking up to `batch_size` ready messages
    /// from librdkafka per wake-up (a `batch_size` of 0 counts as 1). It never
    /// waits for a batch to fill.
    pub fn buffered_stream(&self, batch_size: usize) -> BufferedKafkaStream<'_, K, V> {
        self.keep_polled();
        self.set_read_tier(ConsumerTier::Buffered { batch_size });
        BufferedKafkaStream::new(self, batch_size)
    }

    /// Batches of up to `max` ready messages (a `max` of 0 counts as 1),
    /// handed out together: one hand-out, one lock of the offset book and
    /// one wake-up per batch instead of per message. It never waits for a
    /// batch to fill. Counts as the Buffered tier (batches read from
    /// librdkafka as that tier does).
    ///
    /// A batch's offsets are recorded when it is handed out, so
    /// [`commit`](Self::commit) covers every message of the batches yielded
    /// so far. An error is yielded on its own, between two batches.
    ///
    /// ```no_run
    /// # use consumer_fast::Consumer;
    /// use futures_util::StreamExt;
    ///
    /// # async fn run(consumer: Consumer<String, Vec<u8>>) -> Result<(), consumer_api::ConsumerError> {
    /// let mut batches = consumer.batches(500);
    /// while let Some(batch) = batches.next().await {
    ///     match batch {
    ///         Ok(messages) => {
    ///             println!("storing {} records in one write", messages.len());
    ///             consumer.commit_blocking()?;
    ///         }
    ///         Err(error) => eprintln!("skipping: {error}"),
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    pub fn batches(&self, max: usize) -> KafkaBatches<'_, K, V> {
        self.keep_polled();
        self.set_read_tier(ConsumerTier::Buffered { batch_size: max });
        KafkaBatches::new(self, max)
    }

    /// Makes sure a stream waiting on an empty topic polls librdkafka at
    /// least every half `max.poll.interval.ms`: otherwise librdkafka takes
    /// the waiting consumer for a stuck one and leaves the group.
    fn keep_polled(&self) {
        self.poll_keeper.get_or_init(|| {
            match PollKeeper::start(Arc::clone(&self.wakers), self.max_poll_interval) {
                Ok(keeper) => Some(keeper),
                Err(error) => {
                    tracing::error!(
                        %error,
                        "cannot start the poll keeper thread: a consumer waiting longer than max.poll.interval.ms for a message will leave its group and rejoin"
                    );
                    None
                }
            }
        });
    }

    fn lock_blocking_meter(&self) -> std::sync::MutexGuard<'_, Option<MessageMeter>> {
        self.blocking_meter
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Records which tier is being read, for [`KafkaStreamConsumer::tier`]
    /// and the metrics' `tier` label.
    pub(crate) fn set_read_tier(&self, tier: ConsumerTier) {
        self.telemetry.set_tier(Some(tier));
        *self
            .read_tier
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = tier;
    }

    /// The partitions assigned to this consumer.
    ///
    /// # Errors
    ///
    /// [`ConsumerError::Kafka`] when librdkafka cannot tell.
    pub fn assignment(&self) -> Result<TopicPartitionList, ConsumerError> {
        Ok(self.base.assignment()?)
    }

    /// Moves a partition's read position to `offset`; messages of it already
    /// buffered by a stream (or by the Dedicated polling thread) are dropped,
    /// not handed out: once this returns, the next message of the partition
    /// handed out is the one at `offset`.
    ///
    /// Readers wait while it runs (a stream returns `Pending` and is woken
    /// when it ends), for up to `timeout` as librdkafka confirms the seek.
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
        let result = {
            // Exclusive: no reader is between reading the generation and
            // returning from its poll, so whatever it polled before now is
            // stale and whatever it polls after is from the new position.
            let _seeking = self.gate.seek();
            self.book.invalidate([(topic, partition)]);
            self.base.seek(topic, partition, offset, timeout)
        };
        // Readers that found the lock taken wait for this.
        self.wakers.wake_all();
        Ok(result?)
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
        let offsets = crate::watermarks::offsets_at_timestamp(&*self.base, timestamp_ms, timeout)?;
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

    /// Leaves the subscription: the partitions are revoked (what was handed
    /// out from them is committed, as on any revocation) when the consumer
    /// is next polled. Messages already read ahead (a Buffered batch, the
    /// Dedicated channel) are not handed out: once this returns, a stream
    /// hands out nothing until the next [`subscribe`](Self::subscribe).
    pub fn unsubscribe(&self) {
        {
            // Exclusive, as for a seek: what a reader polled before is stale.
            let _leaving = self.gate.seek();
            if let Ok(assignment) = self.base.assignment() {
                let elements = assignment.elements();
                self.book
                    .invalidate(elements.iter().map(|e| (e.topic(), e.partition())));
            }
            self.base.unsubscribe();
            self.telemetry.unsubscribed();
        }
        self.wakers.wake_all();
    }

    /// How far behind the application is on each assigned partition (see
    /// [`KafkaStreamConsumer::lag`]).
    ///
    /// # Errors
    ///
    /// [`ConsumerError::Kafka`] when librdkafka cannot list the assignment.
    pub fn lag(&self) -> Result<Vec<consumer_api::PartitionLag>, ConsumerError> {
        crate::watermarks::partition_lag(&*self.base, &self.book)
    }

    /// The consumer's health (see [`KafkaStreamConsumer::health`]).
    ///
    /// ```no_run
    /// # fn probe(consumer: &consumer_fast::Consumer<String, String>) {
    /// match consumer.health().liveness() {
    ///     Ok(()) => println!("live"),
    ///     Err(problem) => eprintln!("not live: {problem}"),
    /// }
    /// # }
    /// ```
    pub fn health(&self) -> consumer_api::Health {
        crate::watermarks::health(
            &*self.base,
            &self.book,
            &self.telemetry,
            self.max_poll_interval,
        )
    }

    /// What the consumer reports about itself: the metrics it records and
    /// the facts behind [`health`](Self::health).
    pub fn telemetry(&self) -> &Arc<Telemetry> {
        &self.telemetry
    }

    /// Stops fetching from these partitions until [`resume`](Self::resume).
    ///
    /// # Errors
    ///
    /// [`ConsumerError::Kafka`] when librdkafka refuses.
    pub fn pause(&self, partitions: &TopicPartitionList) -> Result<(), ConsumerError> {
        // Held across the call: the Dedicated tier's backpressure reads the
        // set around its own pause and resume.
        let mut paused = self.lock_paused_by_application();
        self.base.pause(partitions)?;
        paused.extend(
            partitions
                .elements()
                .iter()
                .map(|e| (e.topic().to_owned(), e.partition())),
        );
        Ok(())
    }

    /// Resumes fetching from paused partitions.
    ///
    /// # Errors
    ///
    /// [`ConsumerError::Kafka`] when librdkafka refuses.
    pub fn resume(&self, partitions: &TopicPartitionList) -> Result<(), ConsumerError> {
        let mut paused = self.lock_paused_by_application();
        self.base.resume(partitions)?;
        self.application_resumes.fetch_add(1, Ordering::AcqRel);
        for element in partitions.elements() {
            paused.remove(&(element.topic().to_owned(), element.partition()));
        }
        Ok(())
    }

    /// The partitions the application paused. Never held across a call that
    /// can run our callbacks (`pause` and `resume` only wait for librdkafka's
    /// own threads).
    pub(crate) fn lock_paused_by_application(
        &self,
    ) -> std::sync::MutexGuard<'_, BTreeSet<(String, i32)>> {
        self.paused_by_application
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The group's committed offsets for the assigned partitions.
    ///
    /// # Errors
    ///
    /// [`ConsumerError::Kafka`] when the broker cannot be asked in time.
    pub fn committed(&self, timeout: Duration) -> Result<TopicPartitionList, ConsumerError> {
        Ok(self.base.committed(timeout)?)
    }

    /// The group metadata a transactional producer needs for
    /// `send_offsets_to_transaction`.
    pub fn group_metadata(&self) -> Option<ConsumerGroupMetadata> {
        self.base.group_metadata()
    }

    /// The underlying `BaseConsumer`, for anything this type does not wrap.
    /// Do not poll it directly: messages polled there bypass the offset book.
    pub fn base(&self) -> &BaseConsumer<FastContext> {
        &self.base
    }

    /// Deserializes one poll result.
    pub(crate) fn decode(
        &self,
        generation: u64,
        result: Result<rdkafka::message::BorrowedMessage<'_>, KafkaError>,
    ) -> Polled<K, V> {
        let (result, bytes) = match result {
            Ok(record) => {
                let bytes = record_bytes(&record);
                let message = Message::decode(
                    &record,
                    &*self.key_serde,
                    &*self.value_serde,
                    self.read_headers,
                );
                (message, bytes)
            }
            Err(error) => (Err(self.base.context().reasons.attach(error)), 0),
        };
        Polled {
            generation,
            result,
            bytes,
        }
    }

    /// How many operations wait in librdkafka's consumer queue.
    pub(crate) fn queue_len(&self) -> usize {
        self.queue.len()
    }

    /// Takes up to `max` ready items from librdkafka into `into` without
    /// waiting, on an executor thread: a seek in progress is
    /// [`Refill::Seeking`], not a wait.
    pub(crate) fn refill(&self, into: &mut VecDeque<Polled<K, V>>, max: usize) -> Refill {
        let Some(_polling) = self.gate.try_read() else {
            return Refill::Seeking;
        };
        self.refill_locked(into, max)
    }

    /// [`refill`](Self::refill) for a caller that passed the gate.
    pub(crate) fn refill_locked(&self, into: &mut VecDeque<Polled<K, V>>, max: usize) -> Refill {
        self.telemetry.polled();
        // Free when the subscriber filters TRACE out (one atomic load).
        let span = tracing::trace_span!("kafka.poll", max, messages = tracing::field::Empty);
        let _poll = span.enter();
        let mut taken = 0;
        let mut events = 0;
        while taken < max {
            let generation = self.book.generation();
            match self.base.poll(Duration::ZERO) {
                Some(result) => {
                    into.push_back(self.decode(generation, result));
                    taken += 1;
                }
                // `None` is an empty queue or a served event (rebalance,
                // commit result); only the first may end the refill.
                None if self.queue.len() == 0 => break,
                None => {
                    events += 1;
                    if events >= MAX_EVENTS_PER_REFILL {
                        break;
                    }
                }
            }
        }
        span.record("messages", taken);
        match (taken, events >= MAX_EVENTS_PER_REFILL) {
            (0, true) => Refill::Crowded,
            (0, false) => Refill::Empty,
            (taken, _) => Refill::Took(taken),
        }
    }

    /// Records an item as handed to the application; `None` when its
    /// partition was revoked or sought since it was polled.
    pub(crate) fn hand_out(
        &self,
        polled: Polled<K, V>,
        meter: Option<&mut MessageMeter>,
    ) -> Option<Result<Message<K, V>, ConsumerError>> {
        match polled.coordinates() {
            Some((topic, partition, offset)) => {
                match self
                    .book
                    .deliver(polled.generation, topic, partition, offset)
                {
                    Delivery::Deliver => {
                        self.store_now_and_then(1);
                        self.telemetry.handed_out();
                        if let Some(meter) = meter {
                            meter_record(meter, &polled);
                        }
                        Some(polled.result)
                    }
                    Delivery::Stale => None,
                }
            }
            None => {
                if let Err(error) = &polled.result {
                    self.telemetry.error(error);
                }
                Some(polled.result)
            }
        }
    }

    /// Hands out up to `max` messages from the front of `from` as one batch,
    /// recording their offsets under one lock of the offset book; `None`
    /// when `from` held only stale items. An error is handed out on its
    /// own: one met after some messages ends the batch and stays at the
    /// front of `from`.
    pub(crate) fn hand_out_batch(
        &self,
        from: &mut VecDeque<Polled<K, V>>,
        max: usize,
        mut meter: Option<&mut MessageMeter>,
    ) -> Option<BatchItem<K, V>> {
        let mut batch = Vec::new();
        let mut error = None;
        {
            let mut deliveries = self.book.deliveries();
            while batch.len() < max {
                let Some(polled) = from.pop_front() else {
                    break;
                };
                if polled.result.is_err() && !batch.is_empty() {
                    from.push_front(polled);
                    break;
                }
                let fresh = match polled.coordinates() {
                    Some((topic, partition, offset)) => {
                        deliveries.deliver(polled.generation, topic, partition, offset)
                            == Delivery::Deliver
                    }
                    None => {
                        if let Err(error) = &polled.result {
                            self.telemetry.error(error);
                        }
                        true
                    }
                };
                if fresh && let Some(meter) = meter.as_deref_mut() {
                    meter_record(meter, &polled);
                }
                match polled.result {
                    _ if !fresh => {}
                    Ok(message) => {
                        if batch.is_empty() {
                            batch.reserve_exact(max.min(from.len() + 1));
                        }
                        batch.push(message);
                    }
                    Err(failure) => {
                        error = Some(failure);
                        break;
                    }
                }
            }
        }
        let handed_out = batch.len() + usize::from(error.is_some());
        if handed_out > 0 {
            self.store_now_and_then(u32::try_from(handed_out).unwrap_or(u32::MAX));
            self.telemetry.handed_out();
        }
        match error {
            Some(error) => Some(Err(error)),
            None if batch.is_empty() => None,
            None => Some(Ok(batch)),
        }
    }

    /// Moves partitions back to the first of `unread` per partition, so that
    /// items polled but never handed out are read again. Items whose partition
    /// was revoked or sought since are left to their new position. Like a
    /// seek, it makes what other readers polled of those partitions stale:
    /// they read it again from the rewound position.
    pub(crate) fn rewind(&self, unread: impl IntoIterator<Item = Polled<K, V>>) {
        let _seeking = self.gate.seek();
        let current = self.book.generation();
        let targets = first_offsets(unread.into_iter().filter_map(|polled| {
            let (topic, partition, offset) = polled.coordinates()?;
            let stale = polled.generation != current
                && self.book.is_stale(polled.generation, topic, partition);
            (!stale).then(|| (topic.to_owned(), partition, offset))
        }));
        if targets.count() == 0 {
            return;
        }
        self.book.invalidate(
            targets
                .elements()
                .iter()
                .map(|element| (element.topic(), element.partition())),
        );
        tracing::debug!(?targets, "rewinding to messages polled but not handed out");
        if let Err(error) = self
            .base
            .seek_partitions(targets, Timeout::After(Duration::ZERO))
        {
            tracing::warn!(%error, "cannot rewind to unread messages; they are read again after a restart");
        }
    }
}

/// The key and value bytes of a record.
#[inline]
pub(crate) fn record_bytes(record: &impl rdkafka::Message) -> usize {
    record.key().map_or(0, <[u8]>::len) + record.payload().map_or(0, <[u8]>::len)
}

/// Counts a handed-out item into `meter`: a message, or a record that could
/// not be deserialized.
#[inline]
fn meter_record<K, V>(meter: &mut MessageMeter, polled: &Polled<K, V>) {
    match &polled.result {
        Ok(message) => meter.record(&message.topic, message.partition, polled.bytes),
        Err(ConsumerError::Deserialize {
            topic,
            partition,
            part,
            ..
        }) => meter.deserialize_error(topic, *partition, *part, polled.bytes),
        Err(_) => {}
    }
}

/// What [`Consumer::refill`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refill {
    /// Took this many items (at least one).
    Took(usize),
    /// librdkafka's queue is empty.
    Empty,
    /// A seek holds the gate; it wakes the waiting readers when done.
    Seeking,
    /// Served many events without finding a message or an empty queue.
    Crowded,
}

/// A reader's slot in [`StreamWakers`], released when the reader goes (also
/// by a panic).
pub(crate) struct WakerSlot<'a> {
    wakers: &'a StreamWakers,
    slot: usize,
}

impl<'a> WakerSlot<'a> {
    pub(crate) fn new(wakers: &'a StreamWakers) -> Self {
        WakerSlot {
            wakers,
            slot: wakers.insert(),
        }
    }

    pub(crate) fn register(&self, waker: &std::task::Waker) {
        self.wakers.register(self.slot, waker);
    }
}

impl Drop for WakerSlot<'_> {
    fn drop(&mut self) {
        self.wakers.remove(self.slot);
    }
}

/// The first (lowest) offset per partition, as one list with one element per
/// partition. `TopicPartitionList::add_partition_offset` appends a second
/// element for a partition already listed (librdkafka creates it at
/// `OFFSET_INVALID`) and then sets the first: seeking such a list would send
/// the partition to `auto.offset.reset`. So the minimum is found first.
fn first_offsets(records: impl Iterator<Item = (String, i32, i64)>) -> TopicPartitionList {
    let mut first: BTreeMap<(String, i32), i64> = BTreeMap::new();
    for (topic, partition, offset) in records {
        first
            .entry((topic, partition))
            .and_modify(|seen| *seen = (*seen).min(offset))
            .or_insert(offset);
    }
    let mut list = TopicPartitionList::with_capacity(first.len());
    for ((topic, partition), offset) in first {
        if let Err(error) = list.add_partition_offset(&topic, partition, Offset::Offset(offset)) {
            tracing::warn!(%topic, partition, offset, %error, "cannot rewind");
        }
    }
    list
}

impl<K: Send + 'static, V: Send + 'static> Consumer<K, V> {
    /// [`close_blocking`](Self::close_blocking) on a thread of its own: the
    /// returned future resolves with the report, within `timeout`, and no
    /// executor thread waits for the broker. The way to end an async
    /// service: stop reading, then close.
    ///
    /// ```no_run
    /// # use consumer_fast::Consumer;
    /// # async fn run(consumer: Consumer<String, Vec<u8>>) {
    /// use std::time::Duration;
    ///
    /// let report = consumer.close(Duration::from_secs(5)).await;
    /// if !report.is_clean() {
    ///     eprintln!("closed with trouble: {report:?}");
    /// }
    /// # }
    /// ```
    pub fn close(self, timeout: Duration) -> consumer_api::Closing {
        consumer_api::Closing::start(move || self.close_blocking(timeout))
    }
}

impl<K, V> Consumer<K, V> {
    /// Commits what was handed out, leaves the group and closes the
    /// consumer, returning within `timeout` whatever the broker does: the
    /// commit waits for the broker's answer at most `timeout`, and
    /// librdkafka's close what is left of it (see
    /// [`ConsumerConfig::close_timeout`] for what happens when it passes).
    ///
    /// It blocks the calling thread: from async code, await
    /// [`close`](Self::close). A consumer read through a Dedicated stream is
    /// closed once the stream is dropped and the `Arc` unwrapped
    /// (`Arc::try_unwrap`).
    ///
    /// ```no_run
    /// # use consumer_fast::Consumer;
    /// # fn run(consumer: Consumer<String, Vec<u8>>) {
    /// use std::time::Duration;
    ///
    /// let report = consumer.close_blocking(Duration::from_secs(5));
    /// if let Err(error) = &report.commit {
    ///     eprintln!("the last offsets were not committed: {error}");
    /// }
    /// # }
    /// ```
    pub fn close_blocking(mut self, timeout: Duration) -> consumer_api::CloseReport {
        let started = Instant::now();
        let commit = self.commit_bounded(timeout);
        let outcome = self.shut_down(timeout.saturating_sub(started.elapsed()));
        consumer_api::CloseReport {
            commit,
            left_group_in: outcome.closed_in(),
        }
    }

    /// [`commit`](Self::commit), waiting at most `timeout` for the broker.
    pub(crate) fn commit_bounded(&self, timeout: Duration) -> Result<(), ConsumerError> {
        let offsets = self.book.snapshot();
        if offsets.count() == 0 {
            return Ok(());
        }
        self.store(&offsets);
        match crate::revocation::commit_within(&*self.base, &offsets, timeout) {
            Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => Ok(()),
            Err(error) => Err(error.into()),
        }
    }

    /// Closes the client within `timeout`, once: what the queue holds is
    /// served first (librdkafka #4884, see `serve_queued_before_close`),
    /// then rdkafka's own drop closes the consumer, both on a `kafka-close`
    /// thread bounded by `timeout`.
    fn shut_down(&mut self, timeout: Duration) -> crate::close::CloseOutcome {
        if std::mem::replace(&mut self.shut, true) {
            return crate::close::CloseOutcome::Closed(Duration::ZERO);
        }
        // librdkafka commits stored offsets on close when auto-commit is on.
        self.store_recorded_offsets();
        // SAFETY: taken once (`shut` guards it), and neither field is read
        // again: `shut_down` runs from `close_blocking`, which consumes the
        // consumer, or from `drop`.
        let (queue, base) = unsafe {
            (
                ManuallyDrop::take(&mut self.queue),
                ManuallyDrop::take(&mut self.base),
            )
        };
        // Released here, while the client is alive: the closing thread takes
        // its own, a local it drops before the client whatever happens.
        drop(queue);
        crate::close::close_within(timeout, move || {
            if let Some(queue) = QueueHandle::of(&base) {
                crate::revocation::serve_queued_before_close(&base, || {
                    let _ = base.poll(Duration::ZERO);
                    queue.len() > 0
                });
            }
            drop(base);
        })
    }
}

impl<K, V> Drop for Consumer<K, V> {
    fn drop(&mut self) {
        self.shut_down(self.close_timeout);
    }
}

impl<K: Send + 'static, V: Send + 'static> KafkaStreamConsumer<K, V> for Consumer<K, V> {
    fn stream(&self) -> MessageStream<'_, K, V> {
        Box::pin(Consumer::stream(self))
    }

    fn batches<'a>(&'a self, max: usize) -> consumer_api::BatchStream<'a, K, V>
    where
        K: 'a,
        V: 'a,
    {
        Box::pin(Consumer::batches(self, max))
    }

    fn subscribe(&self, topics: &[&str]) -> Result<(), ConsumerError> {
        Consumer::subscribe(self, topics)
    }

    fn commit_blocking(&self) -> Result<(), ConsumerError> {
        Consumer::commit_blocking(self)
    }

    fn current_offsets(&self) -> Result<TopicPartitionList, ConsumerError> {
        Consumer::current_offsets(self)
    }

    fn assignment(&self) -> Result<TopicPartitionList, ConsumerError> {
        Consumer::assignment(self)
    }

    fn seek(
        &self,
        topic: &str,
        partition: i32,
        offset: Offset,
        timeout: Duration,
    ) -> Result<(), ConsumerError> {
        Consumer::seek(self, topic, partition, offset, timeout)
    }

    fn seek_to_timestamp_blocking(
        &self,
        timestamp_ms: i64,
        timeout: Duration,
    ) -> Result<TopicPartitionList, ConsumerError> {
        Consumer::seek_to_timestamp_blocking(self, timestamp_ms, timeout)
    }

    fn pause(&self, partitions: &TopicPartitionList) -> Result<(), ConsumerError> {
        Consumer::pause(self, partitions)
    }

    fn resume(&self, partitions: &TopicPartitionList) -> Result<(), ConsumerError> {
        Consumer::resume(self, partitions)
    }

    fn committed_blocking(&self, timeout: Duration) -> Result<TopicPartitionList, ConsumerError> {
        Consumer::committed(self, timeout)
    }

    fn unsubscribe(&self) -> Result<(), ConsumerError> {
        Consumer::unsubscribe(self);
        Ok(())
    }

    fn lag(&self) -> Result<Vec<consumer_api::PartitionLag>, ConsumerError> {
        Consumer::lag(self)
    }

    fn health(&self) -> consumer_api::Health {
        Consumer::health(self)
    }

    fn close(self: Box<Self>, timeout: Duration) -> consumer_api::Closing {
        Consumer::close(*self, timeout)
    }

    fn close_blocking(self: Box<Self>, timeout: Duration) -> consumer_api::CloseReport {
        Consumer::close_blocking(*self, timeout)
    }

    fn commit_async(&self) -> consumer_api::CommitAsync<'_> {
        Box::pin(Consumer::commit_async(self))
    }

    /// The tier of the stream opened last on this consumer (Standard, which
    /// [`stream`](KafkaStreamConsumer::stream) opens, before any).
    fn tier(&self) -> Option<ConsumerTier> {
        Some(
            *self
                .read_tier
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewinding_takes_the_first_offset_per_partition_whatever_the_order() {
        let records = [
            ("t".to_owned(), 0, 1_280),
            ("t".to_owned(), 1, 7),
            ("t".to_owned(), 0, 1_024),
            ("t".to_owned(), 0, 1_100),
        ];
        let list = first_offsets(records.into_iter());
        assert_eq!(list.count(), 2, "one element per partition: {list:?}");
        assert_eq!(
            list.find_partition("t", 0).map(|e| e.offset()),
            Some(Offset::Offset(1_024))
        );
        assert_eq!(
            list.find_partition("t", 1).map(|e| e.offset()),
            Some(Offset::Offset(7))
        );
        assert!(
            list.elements()
                .iter()
                .all(|e| matches!(e.offset(), Offset::Offset(_))),
            "no element left at OFFSET_INVALID: {list:?}"
        );
    }

    proptest::proptest! {
        /// Whatever the order of the unread records (the Dedicated stream
        /// hands them over as current, then the thread's batch, then the
        /// channel's), the rewind lists each partition once, at its lowest
        /// offset.
        #[test]
        fn rewinding_lists_each_partition_once_at_its_lowest_offset(
            records in proptest::collection::vec((0..2usize, 0..4i32, 0..10_000i64), 0..60)
        ) {
            let topics = ["a", "b"];
            let list = first_offsets(
                records.iter().map(|(t, p, o)| (topics[*t].to_owned(), *p, *o)),
            );
            let mut lowest = BTreeMap::new();
            for (t, p, o) in &records {
                let entry = lowest.entry((topics[*t], *p)).or_insert(*o);
                *entry = (*entry).min(*o);
            }
            proptest::prop_assert_eq!(list.count(), lowest.len());
            for ((topic, partition), offset) in lowest {
                proptest::prop_assert_eq!(
                    list.find_partition(topic, partition).map(|e| e.offset()),
                    Some(Offset::Offset(offset))
                );
            }
        }
    }

    /// The trap `first_offsets` avoids, as rdkafka 0.39 behaves: adding a
    /// partition twice leaves a second element at `OFFSET_INVALID`.
    #[test]
    fn adding_a_listed_partition_again_appends_an_invalid_element() {
        let mut list = TopicPartitionList::new();
        list.add_partition_offset("t", 0, Offset::Offset(1_280))
            .expect("offset");
        list.add_partition_offset("t", 0, Offset::Offset(1_024))
            .expect("offset");
        let offsets: Vec<_> = list.elements().iter().map(|e| e.offset()).collect();
        assert_eq!(offsets, [Offset::Offset(1_024), Offset::Invalid]);
    }
}
