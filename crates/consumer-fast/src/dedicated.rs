//! The Dedicated tier: one polling thread per consumer feeding a bounded channel.

use std::collections::VecDeque;
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

use crate::consumer::{Consumer, Polled};

/// The most messages the polling thread sends in one batch.
const BATCH: usize = 256;
/// How many batches may wait in the channel: with `BATCH`, at most 1,024
/// messages are deserialized ahead of the application.
const CHANNEL_BATCHES: usize = 4;
/// How long the polling thread waits for librdkafka, or for room in the
/// channel, before checking whether it should stop: bounds the time to drop
/// the stream.
const POLL_INTERVAL: Duration = Duration::from_millis(100);
const SEND_SLICE: Duration = Duration::from_millis(50);

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
    /// the thread waits while the channel is full. If it has waited half
    /// `max.poll.interval.ms`, it pauses the assigned partitions and polls on
    /// the application's behalf (serving rebalances, and keeping the consumer
    /// in its group) for as long as the application keeps taking messages;
    /// an application that takes none for `max.poll.interval.ms` is stuck,
    /// and librdkafka removes the consumer from the group as in the other
    /// tiers.
    ///
    /// # Errors
    ///
    /// [`ConsumerError::Misuse`] while another dedicated stream of this
    /// consumer is open; [`ConsumerError::Io`] when the thread cannot start.
    pub fn dedicated_stream(self: &Arc<Self>) -> Result<DedicatedKafkaStream<K, V>, ConsumerError> {
        if self.dedicated_running.swap(true, Ordering::AcqRel) {
            return Err(ConsumerError::Misuse(
                "a dedicated stream of this consumer is already open; drop it before opening another"
                    .to_owned(),
            ));
        }
        let (sender, receiver) = flume::bounded(CHANNEL_BATCHES);
        let stop = Arc::new(AtomicBool::new(false));
        let handed_out = Arc::new(AtomicU64::new(0));
        let poller = {
            let poller = Poller {
                consumer: Arc::clone(self),
                sender,
                stop: Arc::clone(&stop),
                handed_out: Arc::clone(&handed_out),
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
                stop,
                thread: Some(thread),
            }),
            Err(error) => {
                self.dedicated_running.store(false, Ordering::Release);
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
}

impl<K, V> Poller<K, V> {
    /// The thread's loop; returns a batch it could not send.
    fn run(self) -> Batch<K, V> {
        while !self.stop.load(Ordering::Acquire) {
            let generation = self.consumer.book.generation();
            let Some(first) = self.consumer.base.poll(POLL_INTERVAL) else {
                continue;
            };
            let mut batch = VecDeque::with_capacity(BATCH);
            batch.push_back(self.consumer.decode(generation, first));
            self.consumer.refill(&mut batch, BATCH - 1);
            if let Err(unsent) = self.send(batch) {
                return unsent;
            }
        }
        VecDeque::new()
    }

    /// Sends `batch`, waiting for room in the channel; hands it back when the
    /// stream is gone or asks the thread to stop.
    ///
    /// A long wait means a slow application, and librdkafka counts the time
    /// since the last poll against `max.poll.interval.ms`: after half of it,
    /// the assigned partitions are paused (so polling returns no more
    /// messages to hold) and the consumer polls while the application keeps
    /// taking messages.
    fn send(&self, mut batch: Batch<K, V>) -> Result<(), Batch<K, V>> {
        let max_poll_interval = self.consumer.max_poll_interval;
        let waiting_since = Instant::now();
        let mut progress = (self.handed_out.load(Ordering::Relaxed), Instant::now());
        let mut paused_generation = None;
        let outcome = loop {
            match self.sender.send_timeout(batch, SEND_SLICE) {
                Ok(()) => break Ok(()),
                Err(SendTimeoutError::Disconnected(unsent)) => break Err(unsent),
                Err(SendTimeoutError::Timeout(unsent)) => batch = unsent,
            }
            if self.stop.load(Ordering::Acquire) {
                break Err(batch);
            }
            if waiting_since.elapsed() < max_poll_interval / 2 {
                continue;
            }
            let handed_out = self.handed_out.load(Ordering::Relaxed);
            if handed_out != progress.0 {
                progress = (handed_out, Instant::now());
            }
            if progress.1.elapsed() >= max_poll_interval {
                // Stuck: let librdkafka's liveness check do its work.
                continue;
            }
            let generation = self.consumer.book.generation();
            if paused_generation != Some(generation) {
                // First time, or a rebalance since: (re)pause what is assigned.
                self.set_paused(true);
                paused_generation = Some(generation);
            }
            if let Some(result) = self.consumer.base.poll(Duration::ZERO) {
                // Polled before the pause took effect: keep it in order.
                batch.push_back(self.consumer.decode(generation, result));
            }
        };
        if paused_generation.is_some() {
            self.set_paused(false);
        }
        outcome
    }

    /// Pauses or resumes the assigned partitions, except those the
    /// application paused itself.
    fn set_paused(&self, pause: bool) {
        let assignment = match self.consumer.base.assignment() {
            Ok(assignment) => assignment,
            Err(error) => {
                tracing::warn!(%error, "cannot read the assignment for backpressure");
                return;
            }
        };
        let mut partitions = TopicPartitionList::new();
        {
            let paused_by_application = self
                .consumer
                .paused_by_application
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            for element in assignment.elements() {
                let key = (element.topic().to_owned(), element.partition());
                if !paused_by_application.contains(&key) {
                    partitions.add_partition(element.topic(), element.partition());
                }
            }
        }
        let result = if pause {
            tracing::info!(
                partitions = partitions.count(),
                "the application is slow: pausing fetching and polling to stay in the group"
            );
            self.consumer.base.pause(&partitions)
        } else {
            tracing::info!(partitions = partitions.count(), "resuming fetching");
            self.consumer.base.resume(&partitions)
        };
        if let Err(error) = result {
            tracing::warn!(%error, pause, "cannot pause or resume for backpressure");
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
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Batch<K, V>>>,
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
        let this = self.get_mut();
        loop {
            while let Some(polled) = this.current.pop_front() {
                if let Some(item) = this.consumer.hand_out(polled) {
                    this.handed_out_here += 1;
                    this.handed_out
                        .store(this.handed_out_here, Ordering::Relaxed);
                    return Poll::Ready(Some(item));
                }
            }
            match Pin::new(&mut this.batches).poll_next(cx) {
                Poll::Ready(Some(batch)) => this.current = batch,
                // The thread ended without being asked to: it panicked.
                Poll::Ready(None) => return Poll::Ready(Some(Err(ConsumerError::Closed))),
                Poll::Pending => {
                    this.consumer.store_recorded_offsets();
                    return Poll::Pending;
                }
            }
        }
    }
}

impl<K: 'static, V: 'static> Drop for DedicatedKafkaStream<K, V> {
    fn drop(&mut self) {
        // The thread sees this within `POLL_INTERVAL` (or `SEND_SLICE` when
        // it waits for room) and hands back the batch it holds.
        self.stop.store(true, Ordering::Release);
        let mut unread: Vec<Polled<K, V>> = self.current.drain(..).collect();
        if let Some(thread) = self.thread.take() {
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
        self.consumer
            .dedicated_running
            .store(false, Ordering::Release);
    }
}
