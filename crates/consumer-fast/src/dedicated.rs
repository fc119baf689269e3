//! The Dedicated tier: one polling thread per consumer feeding a bounded channel.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::thread::JoinHandle;
use std::time::Duration;

use consumer_api::{ConsumerError, Message};
use futures_core::Stream;
use tokio::sync::mpsc;

use crate::consumer::{Consumer, Polled};

/// The most messages the polling thread sends in one batch.
const BATCH: usize = 256;
/// How many batches may wait in the channel: with `BATCH`, at most 1,024
/// messages are deserialized ahead of the application.
const CHANNEL_BATCHES: usize = 4;
/// How long the polling thread waits for librdkafka before checking whether
/// it should stop: bounds the time to drop the stream.
const POLL_INTERVAL: Duration = Duration::from_millis(100);

type Batch<K, V> = VecDeque<Polled<K, V>>;

impl<K: Send + 'static, V: Send + 'static> Consumer<K, V> {
    /// The Dedicated tier: starts this consumer's polling thread, which polls,
    /// deserializes and sends batches into a bounded channel that the returned
    /// stream reads.
    ///
    /// One consumer has at most one polling thread: dropping the stream stops
    /// and joins it, and only then can another dedicated stream start.
    /// Memory stays bounded when the application is slower than the topic:
    /// the thread waits while the channel is full.
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
        let (sender, receiver) = mpsc::channel(CHANNEL_BATCHES);
        let stop = Arc::new(AtomicBool::new(false));
        let poller = {
            let consumer = Arc::clone(self);
            let stop = Arc::clone(&stop);
            std::thread::Builder::new()
                .name("kafka-dedicated".to_owned())
                .spawn(move || poll_until_stopped(&consumer, &sender, &stop))
        };
        match poller {
            Ok(thread) => Ok(DedicatedKafkaStream {
                consumer: Arc::clone(self),
                receiver,
                current: VecDeque::new(),
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

/// The polling thread's loop; returns a batch it could not send.
fn poll_until_stopped<K, V>(
    consumer: &Consumer<K, V>,
    sender: &mpsc::Sender<Batch<K, V>>,
    stop: &AtomicBool,
) -> Batch<K, V> {
    while !stop.load(Ordering::Acquire) {
        let generation = consumer.book.generation();
        let Some(first) = consumer.base.poll(POLL_INTERVAL) else {
            continue;
        };
        let mut batch = VecDeque::with_capacity(BATCH);
        batch.push_back(consumer.decode(generation, first));
        consumer.refill(&mut batch, BATCH - 1);
        if let Err(unsent) = sender.blocking_send(batch) {
            // The stream is gone: hand the batch back for rewinding.
            return unsent.0;
        }
    }
    VecDeque::new()
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
pub struct DedicatedKafkaStream<K, V> {
    consumer: Arc<Consumer<K, V>>,
    receiver: mpsc::Receiver<Batch<K, V>>,
    current: Batch<K, V>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Batch<K, V>>>,
}

impl<K, V> std::fmt::Debug for DedicatedKafkaStream<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DedicatedKafkaStream")
            .field("buffered", &self.current.len())
            .finish_non_exhaustive()
    }
}

// Batches are never pinned (no structural pinning), so the stream is `Unpin`
// whatever `K` and `V` are: callers need no `Unpin` bounds.
impl<K, V> Unpin for DedicatedKafkaStream<K, V> {}

impl<K, V> Stream for DedicatedKafkaStream<K, V> {
    type Item = Result<Message<K, V>, ConsumerError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            while let Some(polled) = this.current.pop_front() {
                if let Some(item) = this.consumer.hand_out(polled) {
                    return Poll::Ready(Some(item));
                }
            }
            match this.receiver.poll_recv(cx) {
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

impl<K, V> Drop for DedicatedKafkaStream<K, V> {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        // Closing wakes a thread blocked on a full channel.
        self.receiver.close();
        let mut unread: Vec<Polled<K, V>> = self.current.drain(..).collect();
        if let Some(thread) = self.thread.take() {
            match thread.join() {
                Ok(unsent) => unread.extend(unsent),
                Err(_) => tracing::error!("the dedicated polling thread panicked"),
            }
        }
        while let Ok(batch) = self.receiver.try_recv() {
            unread.extend(batch);
        }
        self.consumer.rewind(unread);
        self.consumer.store_recorded_offsets();
        self.consumer
            .dedicated_running
            .store(false, Ordering::Release);
    }
}
