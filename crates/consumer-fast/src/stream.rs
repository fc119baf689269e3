//! The Standard and Buffered tiers: streams polled on the caller's task.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};

use consumer_api::{ConsumerError, Message};
use futures_core::Stream;

use crate::consumer::{BatchItem, Consumer, Polled, Refill, WakerSlot};
use crate::telemetry::MessageMeter;

/// Both tiers: hand out buffered items, else take what is ready, else
/// register for librdkafka's non-empty callback and wait.
struct PolledStream<'a, K, V> {
    consumer: &'a Consumer<K, V>,
    buffer: VecDeque<Polled<K, V>>,
    batch_size: usize,
    /// This stream's waker among the consumer's waiting readers.
    slot: WakerSlot<'a>,
    /// Counts what is handed out, with metrics on.
    meter: Option<MessageMeter>,
}

impl<'a, K, V> PolledStream<'a, K, V> {
    fn new(consumer: &'a Consumer<K, V>, batch_size: usize) -> Self {
        let batch_size = batch_size.max(1);
        PolledStream {
            consumer,
            // Grows to `batch_size` only if librdkafka has that much ready.
            buffer: VecDeque::with_capacity(batch_size.min(1024)),
            batch_size,
            slot: WakerSlot::new(&consumer.wakers),
            meter: consumer.telemetry.meter(),
        }
    }

    fn poll_next(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Message<K, V>, ConsumerError>>> {
        self.poll_hand_out(cx, |consumer, buffer, meter| {
            buffer
                .pop_front()
                .map(|polled| consumer.hand_out(polled, meter.as_mut()))
        })
    }

    fn poll_next_batch(&mut self, cx: &mut Context<'_>) -> Poll<Option<BatchItem<K, V>>> {
        let max = self.batch_size;
        self.poll_hand_out(cx, |consumer, buffer, meter| {
            (!buffer.is_empty()).then(|| consumer.hand_out_batch(buffer, max, meter.as_mut()))
        })
    }

    /// Hands out what `take` makes of the buffer, refilling it from
    /// librdkafka when empty. `take` answers `None` when the buffer is empty,
    /// `Some(None)` when what it took was stale.
    fn poll_hand_out<T>(
        &mut self,
        cx: &mut Context<'_>,
        mut take: impl FnMut(
            &Consumer<K, V>,
            &mut VecDeque<Polled<K, V>>,
            &mut Option<MessageMeter>,
        ) -> Option<Option<T>>,
    ) -> Poll<Option<T>> {
        loop {
            while let Some(taken) = take(self.consumer, &mut self.buffer, &mut self.meter) {
                if let Some(item) = taken {
                    return Poll::Ready(Some(item));
                }
            }
            match self.consumer.refill(&mut self.buffer, self.batch_size) {
                Refill::Took(_) => continue,
                Refill::Crowded => {
                    // Still events waiting: ask to be polled again rather
                    // than hog the executor (once per 1,024 events).
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
                Refill::Empty | Refill::Seeking => {}
            }
            // Registered, then looked at again: a message (or the end of a
            // seek) between the first look and the registration still wakes
            // this task.
            self.slot.register(cx.waker());
            match self.consumer.refill(&mut self.buffer, self.batch_size) {
                Refill::Took(_) => continue,
                Refill::Crowded => {
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
                Refill::Empty | Refill::Seeking => {
                    // Idle: let auto-commit and close see what was handed out.
                    self.consumer.store_recorded_offsets();
                    if let Some(meter) = &mut self.meter {
                        meter.flush();
                    }
                    return Poll::Pending;
                }
            }
        }
    }
}

impl<K, V> Drop for PolledStream<'_, K, V> {
    fn drop(&mut self) {
        // Messages taken from librdkafka but never handed out are read again
        // by the next stream, not skipped.
        self.consumer.rewind(self.buffer.drain(..));
        self.consumer.store_recorded_offsets();
    }
}

/// The Standard tier, from [`Consumer::stream`]: one message per wake-up,
/// lowest latency.
///
/// When librdkafka has nothing ready it returns `Pending` and is woken by
/// librdkafka's queue non-empty callback (every waiting stream of the
/// consumer is woken). It does not wait for messages, nor for the broker: a
/// rebalance is served inside `poll_next`, and a revocation sends its commit
/// without waiting for the answer.
///
/// # Cancel safety
///
/// Dropping a pending `next()` loses nothing: a message is taken from
/// librdkafka only inside a `poll_next` that returns it.
#[must_use = "streams do nothing unless polled"]
pub struct KafkaStream<'a, K, V>(PolledStream<'a, K, V>);

impl<'a, K, V> KafkaStream<'a, K, V> {
    pub(crate) fn new(consumer: &'a Consumer<K, V>) -> Self {
        KafkaStream(PolledStream::new(consumer, 1))
    }
}

// Buffered messages are never pinned (no structural pinning), so the stream is
// `Unpin` whatever `K` and `V` are: callers need no `Unpin` bounds.
impl<K, V> Unpin for KafkaStream<'_, K, V> {}

impl<K, V> Stream for KafkaStream<'_, K, V> {
    type Item = Result<Message<K, V>, ConsumerError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().0.poll_next(cx)
    }
}

/// The Buffered tier, from [`Consumer::buffered_stream`]: up to `batch_size`
/// ready messages taken per wake-up, handed out one by one.
///
/// It never waits for a batch to fill: under light traffic it behaves like
/// [`KafkaStream`]. Buffered messages are not committed until handed out;
/// when the stream is dropped, the consumer is moved back to them so that the
/// next stream reads them.
#[must_use = "streams do nothing unless polled"]
pub struct BufferedKafkaStream<'a, K, V>(PolledStream<'a, K, V>);

impl<'a, K, V> BufferedKafkaStream<'a, K, V> {
    pub(crate) fn new(consumer: &'a Consumer<K, V>, batch_size: usize) -> Self {
        BufferedKafkaStream(PolledStream::new(consumer, batch_size))
    }
}

// As for `KafkaStream`: no structural pinning.
impl<K, V> Unpin for BufferedKafkaStream<'_, K, V> {}

impl<K, V> Stream for BufferedKafkaStream<'_, K, V> {
    type Item = Result<Message<K, V>, ConsumerError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().0.poll_next(cx)
    }
}

/// Batches from [`Consumer::batches`]: up to `max` ready messages per item,
/// handed out (and their offsets recorded) together.
///
/// It never waits for a batch to fill: each item is what librdkafka had
/// ready, up to `max`. An error (a record that cannot be deserialized, a
/// broker error) comes on its own, between two batches. Messages taken from
/// librdkafka but not yet handed out are read again when the stream is
/// dropped, as in [`BufferedKafkaStream`].
///
/// # Cancel safety
///
/// Dropping a pending `next()` loses nothing.
#[must_use = "streams do nothing unless polled"]
pub struct KafkaBatches<'a, K, V>(PolledStream<'a, K, V>);

impl<'a, K, V> KafkaBatches<'a, K, V> {
    pub(crate) fn new(consumer: &'a Consumer<K, V>, max: usize) -> Self {
        KafkaBatches(PolledStream::new(consumer, max))
    }
}

// As for `KafkaStream`: no structural pinning.
impl<K, V> Unpin for KafkaBatches<'_, K, V> {}

impl<K, V> Stream for KafkaBatches<'_, K, V> {
    type Item = BatchItem<K, V>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().0.poll_next_batch(cx)
    }
}
