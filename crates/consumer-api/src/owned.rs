//! [`OwnedStream`]: a consumer's stream that owns (an `Arc` of) its
//! consumer, to move into a task.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_core::Stream;

use crate::consumer::{KafkaStreamConsumer, MessageStream};
use crate::error::ConsumerError;
use crate::message::Message;

/// A consumer's [`stream`](KafkaStreamConsumer::stream) that keeps the
/// consumer alive: `Send + 'static`, so it moves into `tokio::spawn`.
///
/// The borrowing `stream()` costs nothing more and suits a loop in the
/// function that owns the consumer; this one is for a task of its own.
/// Keep a clone of the `Arc` to commit, seek or read the lag from
/// elsewhere.
///
/// The consumer closes when the stream and the last clone are dropped, and
/// that drop waits for the close (up to its `close_timeout`) on the thread
/// that drops it. To keep executor threads free: with a concrete consumer
/// type, take it back once the stream is gone (`Arc::into_inner`) and await
/// its `close`; with an `Arc<dyn KafkaStreamConsumer>`, drop the last clone
/// in `spawn_blocking`.
///
/// ```no_run
/// use std::sync::Arc;
/// use consumer_api::{KafkaStreamConsumer, OwnedStream};
/// use futures_util::StreamExt;
///
/// fn start(consumer: Arc<dyn KafkaStreamConsumer<String, String>>) -> tokio::task::JoinHandle<()> {
///     let mut messages = OwnedStream::new(Arc::clone(&consumer));
///     tokio::spawn(async move {
///         while let Some(item) = messages.next().await {
///             match item {
///                 Ok(message) => println!("{message}"),
///                 Err(error) if error.is_fatal() => break,
///                 Err(error) => eprintln!("skipping: {error}"),
///             }
///         }
///     })
/// }
/// ```
///
/// The borrowing stream cannot go there: the task may outlive the function
/// that owns the consumer.
///
/// ```compile_fail,E0597
/// use std::sync::Arc;
/// use consumer_api::KafkaStreamConsumer;
/// use futures_util::StreamExt;
///
/// fn start(consumer: Arc<dyn KafkaStreamConsumer<String, String>>) {
///     let mut messages = consumer.stream();
///     tokio::spawn(async move { while let Some(_) = messages.next().await {} });
/// }
/// ```
pub struct OwnedStream<K, V> {
    // Declared before `_consumer`, so dropped first: it borrows the consumer.
    stream: MessageStream<'static, K, V>,
    /// The consumer `stream` reads from, kept alive (and in place, behind
    /// the `Arc`) while `stream` lives.
    _consumer: Box<dyn Send + Sync>,
}

impl<K: Send + 'static, V: Send + 'static> OwnedStream<K, V> {
    /// The stream of `consumer` (as its `stream()` gives it), owning the
    /// `Arc`.
    pub fn new<C>(consumer: Arc<C>) -> Self
    where
        C: KafkaStreamConsumer<K, V> + ?Sized + 'static,
    {
        let stream = consumer.stream();
        // SAFETY: `stream` borrows the consumer behind the `Arc`, whose
        // allocation does not move and stays alive as long as `self` holds
        // the `Arc` (in `consumer`). `stream` is dropped before that `Arc`
        // (field order), and it never leaves `self`: the `'static` it is
        // given here is never observed beyond the `Arc`'s life.
        let stream = unsafe {
            std::mem::transmute::<MessageStream<'_, K, V>, MessageStream<'static, K, V>>(stream)
        };
        OwnedStream {
            stream,
            _consumer: Box::new(consumer),
        }
    }
}

impl<K, V> std::fmt::Debug for OwnedStream<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OwnedStream").finish_non_exhaustive()
    }
}

impl<K, V> Stream for OwnedStream<K, V> {
    type Item = Result<Message<K, V>, ConsumerError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().stream.as_mut().poll_next(cx)
    }
}
