//! Messages handed out in batches: [`BatchStream`] and [`ReadyBatches`], the
//! adapter that batches any message stream.

use std::pin::Pin;
use std::task::{Context, Poll};

use futures_core::Stream;

use crate::error::ConsumerError;
use crate::message::Message;

/// The stream of batches a [`KafkaStreamConsumer`](crate::KafkaStreamConsumer)
/// hands out from [`batches`](crate::KafkaStreamConsumer::batches): each item
/// is a non-empty batch of messages in the order they were read, or one
/// error. Boxed and `Send`, as [`MessageStream`](crate::MessageStream).
pub type BatchStream<'a, K, V> =
    Pin<Box<dyn Stream<Item = Result<Vec<Message<K, V>>, ConsumerError>> + Send + 'a>>;

/// Batches a message stream: each item is every message the inner stream has
/// ready, up to `max`, taken without waiting for more.
///
/// An error ends a batch: the messages before it are yielded first, then
/// the error on its own, then the stream goes on. So a batch never hides an
/// error, and the offset rules stay those of the inner stream (a message is
/// recorded when the inner stream yields it, which is just before its batch
/// is handed out).
///
/// This is what [`KafkaStreamConsumer::batches`](crate::KafkaStreamConsumer::batches)
/// does by default; every implementation in this workspace batches inside
/// instead. One caveat for a stream that records a record's error when it
/// yields it: an error met after some messages is recorded while this
/// adapter holds it, so a commit between the batch and the error covers
/// the error before the application sees it. The workspace's own batch
/// streams record an error only when they hand it out.
///
/// # Examples
///
/// ```
/// use consumer_api::{ConsumerError, Message, ReadyBatches, Timestamp};
/// use futures_util::{FutureExt, StreamExt, stream};
///
/// fn message(offset: i64) -> Result<Message<String, String>, ConsumerError> {
///     Ok(Message {
///         topic: "orders".into(),
///         partition: 0,
///         offset,
///         timestamp: Timestamp::NotAvailable,
///         key: None,
///         value: Some(format!("order {offset}")),
///         headers: Default::default(),
///     })
/// }
///
/// let messages = stream::iter([message(0), message(1), Err(ConsumerError::Closed), message(2)]);
/// let sizes: Vec<_> = ReadyBatches::new(messages, 8)
///     .map(|batch| batch.map(|messages| messages.len()).map_err(|error| error.to_string()))
///     .collect::<Vec<_>>()
///     .now_or_never()
///     .expect("every message is ready");
/// assert_eq!(sizes, [Ok(2), Err(ConsumerError::Closed.to_string()), Ok(1)]);
/// ```
#[derive(Debug)]
#[must_use = "streams do nothing unless polled"]
pub struct ReadyBatches<S> {
    inner: S,
    max: usize,
    /// An error met while filling the batch before it, yielded next.
    held_error: Option<ConsumerError>,
    /// The inner stream ended while a batch was being filled.
    ended: bool,
}

impl<S> ReadyBatches<S> {
    /// Batches `inner`, at most `max` messages per batch (at least 1).
    pub fn new(inner: S, max: usize) -> Self {
        ReadyBatches {
            inner,
            max: max.max(1),
            held_error: None,
            ended: false,
        }
    }
}

impl<S, K, V> Stream for ReadyBatches<S>
where
    S: Stream<Item = Result<Message<K, V>, ConsumerError>> + Unpin,
{
    type Item = Result<Vec<Message<K, V>>, ConsumerError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if let Some(error) = this.held_error.take() {
            return Poll::Ready(Some(Err(error)));
        }
        if this.ended {
            return Poll::Ready(None);
        }
        let mut batch = Vec::new();
        while batch.len() < this.max {
            match Pin::new(&mut this.inner).poll_next(cx) {
                Poll::Ready(Some(Ok(message))) => {
                    if batch.is_empty() {
                        batch.reserve(this.max.min(64));
                    }
                    batch.push(message);
                }
                Poll::Ready(Some(Err(error))) if batch.is_empty() => {
                    return Poll::Ready(Some(Err(error)));
                }
                Poll::Ready(Some(Err(error))) => {
                    this.held_error = Some(error);
                    break;
                }
                Poll::Ready(None) => {
                    this.ended = true;
                    break;
                }
                // The inner stream registered the waker: it wakes this task
                // when more arrives.
                Poll::Pending => break,
            }
        }
        match (batch.is_empty(), this.ended) {
            (false, _) => Poll::Ready(Some(Ok(batch))),
            (true, true) => Poll::Ready(None),
            (true, false) => Poll::Pending,
        }
    }
}
