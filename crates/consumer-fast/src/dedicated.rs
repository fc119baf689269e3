//! The Dedicated tier: one polling thread per consumer feeding a bounded channel.

use std::collections::{BTreeSet, VecDeque};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use consumer_api::{ConsumerError, Message};
use flume::SendTimeoutError;
use flume::r#async::RecvStream;
use futures_core::Stream;
use rdkafka::TopicPartitionList;
use rdkafka::consumer::Consumer as _;

use crate::consumer::{BatchItem, Consumer, Polled, WakerSlot};
use crate::telemetry::MessageMeter;
use crate::wakers::thread_waker;

/// The most messages the polling thread sends in one batch.
const BATCH: usize = 256;
/// The most messages the polling thread sends in one batch for
/// [`Consumer::dedicated_batches`]: bounds what it decodes ahead, and how
/// long a seek waits for its gate.
const MAX_BATCH: usize = 1024;
/// How many batches may wait in the channel: with `BATCH`, at most 1,024
/// messages are deserialized ahead of the application.
const CHANNEL_BATCHES: usize = 4;
/// How long the polling thread waits for librdkafka before it polls anyway
/// (librdkafka counts polls for `max.poll.interval.ms`).
const POLL_INTERVAL: Duration = Duration::from_millis(100);
/// How long the polling thread waits for room in the channel before it
/// checks whether it should stop: bounds the time to drop the stream.
const SEND_SLICE: Duration = Duration::from_millis(50);
/// How long the polling thread waits for room before it pauses fetching and
/// polls for the application (or half `max.poll.interval.ms`, if shorter):
/// bounds how long a rebalance waits for this member.
const KEEP_ALIVE_AFTER: Duration = Duration::from_secs(1);

type Batch<K, V> = VecDeque<Polled<K, V>>;

impl<K: Send + 'static, V: Send + 'static> Consumer<K, V> {
    /// The Dedicated tier: starts this consumer's polling thread, which polls,
    /// deserializes and sends batches into a bounded channel that the returned
    /// stream reads.
    ///
    /// One consumer has at most one polling thread: dropping the stream stops
    /// and joins it, and only then can another dedicated stream start.
    ///
    /// Memory stays bounded when the application is slower than the topic:
    /// the thread waits while the channel is full. If it has waited a second
    /// (or half `max.poll.interval.ms`, if shorter), it pauses the assigned
    /// partitions (except those the application paused) and polls on the
    /// application's behalf, serving rebalances and keeping the consumer in
    /// its group, for as long as the application keeps taking messages;
    /// then it resumes them. An application that takes nothing for half
    /// `max.poll.interval.ms` is no longer polled for: librdkafka removes a
    /// stuck consumer from the group, as in the other tiers.
    ///
    /// If the thread panics (a codec, a rebalance hook), the stream yields
    /// [`ConsumerError::Closed`] once and ends.
    ///
    /// # Errors
    ///
    /// [`ConsumerError::Misuse`] while another dedicated stream of this
    /// consumer is open; [`ConsumerError::Io`] when the thread cannot start.
    pub fn dedicated_stream(self: &Arc<Self>) -> Result<DedicatedKafkaStream<K, V>, ConsumerError> {
        self.start_dedicated(BATCH)
    }

    /// The Dedicated tier in batches: as
    /// [`dedicated_stream`](Self::dedicated_stream), handing out up to `max`
    /// messages at once (a `max` of 0 counts as 1), their offsets recorded
    /// together. The polling thread sends batches of `max` messages, but
    /// no fewer than 256 and no more than 1,024 (so a batch handed out holds
    /// at most 1,024), and at most four wait in the channel.
    ///
    /// # Errors
    ///
    /// As [`dedicated_stream`](Self::dedicated_stream).
    pub fn dedicated_batches(
        self: &Arc<Self>,
        max: usize,
    ) -> Result<DedicatedKafkaBatches<K, V>, ConsumerError> {
        let max = max.max(1);
        Ok(DedicatedKafkaBatches {
            stream: self.start_dedicated(max.clamp(BATCH, MAX_BATCH))?,
            max,
        })
    }

    fn start_dedicated(
        self: &Arc<Self>,
        poll_batch: usize,
    ) -> Result<DedicatedKafkaStream<K, V>, ConsumerError> {
        self.polling_thread
            .claim(crate::PollingThread::Dedicated)
            .map_err(ConsumerError::Misuse)?;
        self.set_read_tier(consumer_api::ConsumerTier::Dedicated);
        let (sender, receiver) = flume::bounded(CHANNEL_BATCHES);
        let stop = Arc::new(AtomicBool::new(false));
        let handed_out = Arc::new(AtomicU64::new(0));
        let poller = {
            let poller = Poller {
                consumer: Arc::clone(self),
                sender,
                stop: Arc::clone(&stop),
                handed_out: Arc::clone(&handed_out),
                poll_batch,
            };
            std::thread::Builder::new()
                .name("kafka-dedicated".to_owned())
                .spawn(move || poller.run())
        };
        match poller {
            Ok(thread) => Ok(DedicatedKafkaStream {
                consumer: Arc::clone(self),
                batches: receiver.clone().into_stream(),
                receiver,
                current: VecDeque::new(),
                handed_out,
                handed_out_here: 0,
                closed: false,
                stop,
                thread: Some(thread),
                meter: self.telemetry.meter(),
            }),
            Err(error) => {
                self.polling_thread.release();
                Err(ConsumerError::Io(error))
            }
        }
    }
}

/// The polling thread's side of a Dedicated stream.
struct Poller<K, V> {
    consumer: Arc<Consumer<K, V>>,
    sender: flume::Sender<Batch<K, V>>,
    stop: Arc<AtomicBool>,
    /// How many messages the stream has handed to the application.
    handed_out: Arc<AtomicU64>,
    /// The most messages polled and sent at once.
    poll_batch: usize,
}

impl<K, V> Poller<K, V> {
    /// The thread's loop; returns what it polled but could not send, for the
    /// stream to rewind to. A panic (a codec, an application's rebalance
    /// hook) ends the thread but still hands back the batch it held.
    fn run(self) -> Batch<K, V> {
        let mut pending: Batch<K, V> = VecDeque::new();
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            let slot = WakerSlot::new(&self.consumer.wakers);
            let waker = thread_waker(std::thread::current());
            while !self.stop.load(Ordering::Acquire) {
                {
                    // This thread may wait here for a seek to finish.
                    let _polling = self.consumer.gate.read();
                    self.consumer.refill_locked(&mut pending, self.poll_batch);
                }
                if pending.is_empty() {
                    // Registered before looking, so a message arriving in
                    // between still unparks the thread.
                    slot.register(&waker);
                    if self.consumer.queue_len() == 0 && !self.stop.load(Ordering::Acquire) {
                        std::thread::park_timeout(POLL_INTERVAL);
                    }
                    continue;
                }
                if !self.send(&mut pending) {
                    return;
                }
            }
        }));
        if outcome.is_err() {
            tracing::error!(
                "the dedicated polling thread panicked; the stream ends with ConsumerError::Closed"
            );
        }
        pending
    }

    /// Sends `pending`, waiting for room in the channel; `false` (with the
    /// batch still in `pending`) when the stream is gone or asks the thread
    /// to stop.
    ///
    /// A long wait means a slow application, and librdkafka counts the time
    /// since the last poll against `max.poll.interval.ms` (and a rebalance
    /// waits for this member's poll): after [`KEEP_ALIVE_AFTER`] (or half the
    /// interval, if shorter) the assigned partitions are paused, so polling
    /// returns no more messages to hold, and the consumer polls while the
    /// application keeps taking messages.
    fn send(&self, pending: &mut Batch<K, V>) -> bool {
        let max_poll_interval = self.consumer.max_poll_interval;
        let keep_alive_after = KEEP_ALIVE_AFTER.min(max_poll_interval / 2);
        let waiting_since = Instant::now();
        let mut progress = (self.handed_out.load(Ordering::Relaxed), Instant::now());
        // Resumes what it paused when dropped, even by a panic.
        let mut backpressure = Backpressure::new(&self.consumer);
        loop {
            match self
                .sender
                .send_timeout(std::mem::take(pending), SEND_SLICE)
            {
                Ok(()) => {
                    let telemetry = &self.consumer.telemetry;
                    if telemetry.metrics_on() {
                        telemetry.channel_fill(self.sender.len(), CHANNEL_BATCHES);
                    }
                    return true;
                }
                Err(SendTimeoutError::Disconnected(unsent)) => {
                    *pending = unsent;
                    return false;
                }
                Err(SendTimeoutError::Timeout(unsent)) => *pending = unsent,
            }
            if self.stop.load(Ordering::Acquire) {
                return false;
            }
            if waiting_since.elapsed() < keep_alive_after {
                continue;
            }
            let handed_out = self.handed_out.load(Ordering::Relaxed);
            if handed_out != progress.0 {
                progress = (handed_out, Instant::now());
            }
            if progress.1.elapsed() >= max_poll_interval / 2 {
                // Stuck: stop polling for it, and librdkafka's liveness
                // check removes the consumer from the group within
                // `max.poll.interval.ms`, as in the other tiers.
                continue;
            }
            // Pause whatever is assigned and not paused yet: on the first
            // slice, and after a rebalance assigned more.
            backpressure.pause_assigned();
            self.consumer.telemetry.polled();
            let _polling = self.consumer.gate.read();
            let generation = self.consumer.book.generation();
            if let Some(result) = self.consumer.base.poll(Duration::ZERO) {
                // From a partition assigned since the last pause: keep it in
                // order, it is handed out after the rest.
                pending.push_back(self.consumer.decode(generation, result));
            }
        }
    }
}

/// The partitions one wait for room has paused, resumed when it ends (also
/// when a panic ends it), whether or not they are still assigned: librdkafka
/// keeps a partition's pause across a revocation.
struct Backpressure<'a, K, V> {
    consumer: &'a Consumer<K, V>,
    paused: BTreeSet<(String, i32)>,
    /// The application's resume count when this wait last paused.
    resumes_seen: u64,
    /// When this wait first paused, for the time-paused metric.
    paused_at: Option<Instant>,
}

impl<'a, K, V> Backpressure<'a, K, V> {
    fn new(consumer: &'a Consumer<K, V>) -> Self {
        Backpressure {
            consumer,
            paused: BTreeSet::new(),
            resumes_seen: consumer.application_resumes.load(Ordering::Acquire),
            paused_at: None,
        }
    }

    /// Pauses the assigned partitions that the application has not paused
    /// and that this wait has not paused yet, or has paused but the
    /// application resumed since.
    fn pause_assigned(&mut self) {
        let assignment = match self.consumer.base.assignment() {
            Ok(assignment) => assignment,
            Err(error) => {
                tracing::warn!(%error, "cannot read the assignment for backpressure");
                return;
            }
        };
        // Held across the pause, so the application's own pause and resume
        // do not interleave with it.
        let paused_by_application = self.consumer.lock_paused_by_application();
        // Read under the lock `Consumer::resume` bumps it under.
        let resumes = self.consumer.application_resumes.load(Ordering::Acquire);
        let resumed_since = std::mem::replace(&mut self.resumes_seen, resumes) != resumes;
        let mut partitions = TopicPartitionList::new();
        for element in assignment.elements() {
            let key = (element.topic().to_owned(), element.partition());
            if !paused_by_application.contains(&key)
                && (resumed_since || !self.paused.contains(&key))
            {
                partitions.add_partition(element.topic(), element.partition());
                self.paused.insert(key);
            }
        }
        if partitions.count() == 0 {
            return;
        }
        tracing::info!(
            partitions = partitions.count(),
            "the application is slow: pausing fetching and polling to stay in the group"
        );
        self.paused_at.get_or_insert_with(Instant::now);
        if let Err(error) = self.consumer.base.pause(&partitions) {
            tracing::warn!(%error, "cannot pause for backpressure");
        }
    }
}

impl<K, V> Drop for Backpressure<'_, K, V> {
    fn drop(&mut self) {
        if self.paused.is_empty() {
            return;
        }
        let paused_by_application = self.consumer.lock_paused_by_application();
        let mut partitions = TopicPartitionList::new();
        for key in &self.paused {
            if !paused_by_application.contains(key) {
                partitions.add_partition(&key.0, key.1);
            }
        }
        tracing::info!(partitions = partitions.count(), "resuming fetching");
        if let Some(paused_at) = self.paused_at {
            self.consumer.telemetry.paused_for(paused_at.elapsed());
        }
        if let Err(error) = self.consumer.base.resume(&partitions) {
            tracing::warn!(%error, "cannot resume after backpressure");
        }
    }
}

/// The Dedicated tier, from [`Consumer::dedicated_stream`]: a stream over the
/// bounded channel filled by the consumer's polling thread.
///
/// Dropping it stops and joins the thread (within about 100 ms), then moves
/// the consumer back to the messages that were polled but never handed out.
///
/// # Cancel safety
///
/// Dropping a pending `next()` loses nothing: batches stay in the stream.
#[must_use = "the polling thread runs until the stream is dropped"]
pub struct DedicatedKafkaStream<K: 'static, V: 'static> {
    consumer: Arc<Consumer<K, V>>,
    batches: RecvStream<'static, Batch<K, V>>,
    /// The same channel, to collect what is left after the thread stopped.
    receiver: flume::Receiver<Batch<K, V>>,
    current: Batch<K, V>,
    /// Shared with the thread: messages handed to the application.
    handed_out: Arc<AtomicU64>,
    handed_out_here: u64,
    /// The thread died and `Closed` was reported.
    closed: bool,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Batch<K, V>>>,
    /// Counts what is handed out, with metrics on.
    meter: Option<MessageMeter>,
}

impl<K: 'static, V: 'static> std::fmt::Debug for DedicatedKafkaStream<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DedicatedKafkaStream")
            .field("buffered", &self.current.len())
            .finish_non_exhaustive()
    }
}

// Batches are never pinned (no structural pinning), so the stream is `Unpin`
// whatever `K` and `V` are: callers need no `Unpin` bounds.
impl<K: 'static, V: 'static> Unpin for DedicatedKafkaStream<K, V> {}

impl<K: 'static, V: 'static> Stream for DedicatedKafkaStream<K, V> {
    type Item = Result<Message<K, V>, ConsumerError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut()
            .poll_hand_out(cx, |consumer, current, meter| {
                let item = consumer.hand_out(current.pop_front()?, meter.as_mut());
                Some(item.map(|item| (item, 1)))
            })
    }
}

impl<K: 'static, V: 'static> DedicatedKafkaStream<K, V> {
    /// Hands out what `take` makes of the current batch (with how many
    /// messages that is), receiving the next batch when it is used up.
    /// `take` answers `None` when the batch is empty, `Some(None)` when
    /// what it took was stale.
    fn poll_hand_out<T>(
        &mut self,
        cx: &mut Context<'_>,
        mut take: impl FnMut(
            &Consumer<K, V>,
            &mut Batch<K, V>,
            &mut Option<MessageMeter>,
        ) -> Option<Option<(Result<T, ConsumerError>, u64)>>,
    ) -> Poll<Option<Result<T, ConsumerError>>> {
        let this = self;
        loop {
            while let Some(taken) = take(&this.consumer, &mut this.current, &mut this.meter) {
                if let Some((item, count)) = taken {
                    this.handed_out_here += count;
                    this.handed_out
                        .store(this.handed_out_here, Ordering::Relaxed);
                    return Poll::Ready(Some(item));
                }
            }
            match Pin::new(&mut this.batches).poll_next(cx) {
                Poll::Ready(Some(batch)) => {
                    this.current = batch;
                    if this.meter.is_some() {
                        let telemetry = &this.consumer.telemetry;
                        telemetry.channel_fill(this.receiver.len(), CHANNEL_BATCHES);
                    }
                }
                // The thread ended without being asked to: it panicked. Say
                // so once, then end, so a loop that logs errors cannot spin.
                Poll::Ready(None) if this.closed => return Poll::Ready(None),
                Poll::Ready(None) => {
                    this.closed = true;
                    return Poll::Ready(Some(Err(ConsumerError::Closed)));
                }
                Poll::Pending => {
                    this.consumer.store_recorded_offsets();
                    if let Some(meter) = &mut this.meter {
                        meter.flush();
                    }
                    return Poll::Pending;
                }
            }
        }
    }
}

/// The Dedicated tier in batches, from [`Consumer::dedicated_batches`]: up
/// to `max` messages per item, handed out (and their offsets recorded)
/// together. It is a [`DedicatedKafkaStream`] in every other respect:
/// dropping it stops and joins the polling thread and rewinds to what was
/// polled but not handed out.
///
/// # Cancel safety
///
/// Dropping a pending `next()` loses nothing.
#[must_use = "the polling thread runs until the stream is dropped"]
#[derive(Debug)]
pub struct DedicatedKafkaBatches<K: 'static, V: 'static> {
    stream: DedicatedKafkaStream<K, V>,
    max: usize,
}

impl<K: 'static, V: 'static> Unpin for DedicatedKafkaBatches<K, V> {}

impl<K: 'static, V: 'static> Stream for DedicatedKafkaBatches<K, V> {
    type Item = BatchItem<K, V>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        let max = this.max;
        this.stream.poll_hand_out(cx, |consumer, current, meter| {
            if current.is_empty() {
                return None;
            }
            let item = consumer.hand_out_batch(current, max, meter.as_mut());
            Some(item.map(|item| {
                let count = item.as_ref().map_or(1, Vec::len);
                (item, u64::try_from(count).unwrap_or(u64::MAX))
            }))
        })
    }
}

impl<K: 'static, V: 'static> Drop for DedicatedKafkaStream<K, V> {
    fn drop(&mut self) {
        // The thread sees this within `POLL_INTERVAL` (or `SEND_SLICE` when
        // it waits for room) and hands back the batch it holds.
        self.stop.store(true, Ordering::Release);
        let mut unread: Vec<Polled<K, V>> = self.current.drain(..).collect();
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            match thread.join() {
                Ok(unsent) => unread.extend(unsent),
                Err(_) => tracing::error!("the dedicated polling thread panicked"),
            }
        }
        for batch in self.receiver.drain() {
            unread.extend(batch);
        }
        self.consumer.rewind(unread);
        self.consumer.store_recorded_offsets();
        self.consumer.polling_thread.release();
    }
}
