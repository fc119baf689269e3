//! [`LegacyStream`]: deserialized messages over rdkafka's `MessageStream`.

use std::pin::Pin;
use std::task::{Context, Poll};

use consumer_api::{ConsumerError, Decode, Message};
use consumer_fast::OffsetBook;
use futures_core::Stream;
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedHeaders, BorrowedMessage};

use crate::consumer::KafkaConsumer;
use crate::context::{LegacyConsumerContext, TrackingContext};

/// The stream of a [`KafkaConsumer`], from [`KafkaConsumer::stream`]: each
/// item is a deserialized [`Message`], or the error of one record or of
/// librdkafka.
///
/// It never ends, and does not wait for messages: when librdkafka has nothing
/// ready it returns `Pending` and is woken by librdkafka's queue non-empty
/// callback. Rebalances, commit results and statistics are served inside
/// `poll_next`, on the task polling the stream, without waiting for the
/// broker: a revocation sends its commit and returns (librdkafka holds the
/// rejoin until the commit is answered).
///
/// # Cancel safety
///
/// Dropping a pending `next()` loses nothing: a message is taken from
/// librdkafka, recorded and deserialized only inside a `poll_next` that
/// returns it. Dropping the stream drops nothing either: the next stream
/// continues where this one stopped.
///
/// # Examples
///
/// ```no_run
/// # use consumer_api::{ConsumerError, JsonSerde, StringSerde};
/// # use consumer_legacy::KafkaConsumer;
/// use futures_util::StreamExt;
///
/// # async fn run(consumer: KafkaConsumer<String, serde_json::Value, StringSerde, JsonSerde>) -> Result<(), ConsumerError> {
/// let mut messages = consumer.stream();
/// while let Some(result) = messages.next().await {
///     match result {
///         Ok(message) if message.is_tombstone() => println!("{message}: deleted"),
///         Ok(message) => println!("{message}: {:?}", message.value),
///         Err(ConsumerError::Deserialize { raw, .. }) => eprintln!("dead letter: {raw:?}"),
///         Err(error) => return Err(error),
///     }
/// }
/// # Ok(()) }
/// ```
#[must_use = "streams do nothing unless polled"]
pub struct LegacyStream<'a, K, V, KS: ?Sized, VS: ?Sized, C: LegacyConsumerContext> {
    consumer: &'a KafkaConsumer<K, V, KS, VS, C>,
    raw: rdkafka::consumer::MessageStream<'a, TrackingContext<C>>,
}

impl<'a, K, V, KS: ?Sized, VS: ?Sized, C: LegacyConsumerContext> LegacyStream<'a, K, V, KS, VS, C> {
    pub(crate) fn new(
        consumer: &'a KafkaConsumer<K, V, KS, VS, C>,
        raw: rdkafka::consumer::MessageStream<'a, TrackingContext<C>>,
    ) -> Self {
        LegacyStream { consumer, raw }
    }
}

impl<K, V, KS: ?Sized, VS: ?Sized, C: LegacyConsumerContext> std::fmt::Debug
    for LegacyStream<'_, K, V, KS, VS, C>
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LegacyStream").finish_non_exhaustive()
    }
}

impl<K, V, KS: ?Sized, VS: ?Sized, C> Stream for LegacyStream<'_, K, V, KS, VS, C>
where
    KS: Decode<K>,
    VS: Decode<V>,
    C: LegacyConsumerContext,
{
    type Item = Result<Message<K, V>, ConsumerError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            // Read before polling: a revocation served by another stream's
            // poll in between makes this message stale.
            let generation = this.consumer.book_generation();
            this.consumer.note_poll();
            // One record per poll: the fast tiers' `kafka.poll` span.
            let _poll = tracing::trace_span!("kafka.poll", max = 1).entered();
            match Pin::new(&mut this.raw).poll_next(cx) {
                Poll::Ready(Some(Ok(record))) => {
                    if let Some(item) = this.consumer.hand_out(generation, &record) {
                        return Poll::Ready(Some(item));
                    }
                    // Its partition was revoked since: the new owner reads it.
                }
                Poll::Ready(Some(Err(error))) => {
                    return Poll::Ready(Some(Err(this.consumer.reported(error))));
                }
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

/// Batches from [`KafkaConsumer::batches`]: up to `max` ready messages per
/// item, read from rdkafka's stream as [`LegacyStream`] reads them.
///
/// It never waits for a batch to fill. A record that cannot be deserialized
/// ends the batch before it: its error is handed out on its own, next, and
/// only then recorded, so a commit after a batch never covers an error the
/// application has not seen.
///
/// # Cancel safety
///
/// Dropping a pending `next()` loses nothing. Dropping the stream while it
/// holds an error not yet handed out leaves that record unrecorded: it is
/// read again after a restart or by the partition's next owner, not
/// skipped.
#[must_use = "streams do nothing unless polled"]
pub struct LegacyBatches<'a, K, V, KS: ?Sized, VS: ?Sized, C: LegacyConsumerContext> {
    consumer: &'a KafkaConsumer<K, V, KS, VS, C>,
    raw: rdkafka::consumer::MessageStream<'a, TrackingContext<C>>,
    max: usize,
    /// An error met after some messages, with the generation it was polled
    /// at: handed out (and recorded) next.
    held: Option<(u64, ConsumerError)>,
}

impl<'a, K, V, KS: ?Sized, VS: ?Sized, C: LegacyConsumerContext>
    LegacyBatches<'a, K, V, KS, VS, C>
{
    pub(crate) fn new(
        consumer: &'a KafkaConsumer<K, V, KS, VS, C>,
        raw: rdkafka::consumer::MessageStream<'a, TrackingContext<C>>,
        max: usize,
    ) -> Self {
        LegacyBatches {
            consumer,
            raw,
            max: max.max(1),
            held: None,
        }
    }
}

impl<K, V, KS: ?Sized, VS: ?Sized, C: LegacyConsumerContext> std::fmt::Debug
    for LegacyBatches<'_, K, V, KS, VS, C>
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LegacyBatches")
            .field("max", &self.max)
            .finish_non_exhaustive()
    }
}

impl<K, V, KS: ?Sized, VS: ?Sized, C> Stream for LegacyBatches<'_, K, V, KS, VS, C>
where
    KS: Decode<K>,
    VS: Decode<V>,
    C: LegacyConsumerContext,
{
    type Item = Result<Vec<Message<K, V>>, ConsumerError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if let Some((generation, error)) = this.held.take()
            && this.consumer.record_error(generation, &error)
        {
            return Poll::Ready(Some(Err(error)));
        }
        let mut batch = Vec::new();
        while batch.len() < this.max {
            // Read before polling, as in `LegacyStream`.
            let generation = this.consumer.book_generation();
            this.consumer.note_poll();
            // One record per poll: the fast tiers' `kafka.poll` span.
            let _poll = tracing::trace_span!("kafka.poll", max = 1).entered();
            match Pin::new(&mut this.raw).poll_next(cx) {
                Poll::Ready(Some(Ok(record))) => {
                    match this.consumer.take_for_batch(generation, &record) {
                        Some(Ok(message)) => batch.push(message),
                        Some(Err(error)) => {
                            if !batch.is_empty() {
                                this.held = Some((generation, error));
                                break;
                            }
                            if this.consumer.record_error(generation, &error) {
                                return Poll::Ready(Some(Err(error)));
                            }
                        }
                        // Its partition was revoked since: the new owner
                        // reads it.
                        None => {}
                    }
                }
                Poll::Ready(Some(Err(error))) => {
                    let error = this.consumer.reported(error);
                    if batch.is_empty() {
                        return Poll::Ready(Some(Err(error)));
                    }
                    this.held = Some((generation, error));
                    break;
                }
                Poll::Ready(None) if batch.is_empty() => return Poll::Ready(None),
                // rdkafka's stream registered the waker: it wakes this task.
                Poll::Ready(None) | Poll::Pending => break,
            }
        }
        if batch.is_empty() {
            Poll::Pending
        } else {
            Poll::Ready(Some(Ok(batch)))
        }
    }
}

/// The stream of [`KafkaConsumer::raw_stream`]: rdkafka's records, each
/// tagged with when it was polled, for
/// [`mark_delivered`](KafkaConsumer::mark_delivered).
#[must_use = "streams do nothing unless polled"]
pub struct RawStream<'a, C: LegacyConsumerContext> {
    book: &'a OffsetBook,
    raw: rdkafka::consumer::MessageStream<'a, TrackingContext<C>>,
}

impl<'a, C: LegacyConsumerContext> RawStream<'a, C> {
    pub(crate) fn new(
        book: &'a OffsetBook,
        raw: rdkafka::consumer::MessageStream<'a, TrackingContext<C>>,
    ) -> Self {
        RawStream { book, raw }
    }
}

impl<C: LegacyConsumerContext> std::fmt::Debug for RawStream<'_, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawStream").finish_non_exhaustive()
    }
}

impl<'a, C: LegacyConsumerContext> Stream for RawStream<'a, C> {
    type Item = Result<RawRecord<'a>, KafkaError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        // Read before polling: a revocation served by this poll, or by
        // another stream's, makes the record stale.
        let polled_at = this.book.generation();
        Pin::new(&mut this.raw)
            .poll_next(cx)
            .map(|item| item.map(|result| result.map(|record| RawRecord { record, polled_at })))
    }
}

/// A record of [`KafkaConsumer::raw_stream`]: rdkafka's `BorrowedMessage`,
/// read through [`rdkafka::Message`], and when it was polled.
#[derive(Debug)]
pub struct RawRecord<'a> {
    record: BorrowedMessage<'a>,
    polled_at: u64,
}

impl<'a> RawRecord<'a> {
    /// The offset book's generation when the record was polled.
    pub(crate) fn polled_at(&self) -> u64 {
        self.polled_at
    }

    /// rdkafka's record, e.g. to [`detach`](BorrowedMessage::detach) it.
    pub fn record(&self) -> &BorrowedMessage<'a> {
        &self.record
    }
}

impl rdkafka::Message for RawRecord<'_> {
    type Headers = BorrowedHeaders;

    fn key(&self) -> Option<&[u8]> {
        self.record.key()
    }

    fn payload(&self) -> Option<&[u8]> {
        self.record.payload()
    }

    unsafe fn payload_mut(&mut self) -> Option<&mut [u8]> {
        // SAFETY: the caller upholds `payload_mut`'s contract for the record.
        unsafe { self.record.payload_mut() }
    }

    fn topic(&self) -> &str {
        self.record.topic()
    }

    fn partition(&self) -> i32 {
        self.record.partition()
    }

    fn offset(&self) -> i64 {
        self.record.offset()
    }

    fn timestamp(&self) -> rdkafka::Timestamp {
        self.record.timestamp()
    }

    fn headers(&self) -> Option<&BorrowedHeaders> {
        self.record.headers()
    }
}
