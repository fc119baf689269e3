//! [`ProcessingStream`]: concurrent processing's lower level, a stream of
//! messages each carrying its acknowledgement ([`Work`], [`Ack`]).

use std::pin::Pin;
use std::sync::{Arc, PoisonError};
use std::task::{Context, Poll};
use std::thread::JoinHandle;

use consumer_api::{ConsumerError, Message, OwnedRecord};
use futures_core::Stream;
use rdkafka::consumer::Consumer as _;

use crate::consumer::Consumer;
use crate::process::engine::{Engine, NextReady, RebalanceHook, Ticket};
use crate::process::options::ProcessOptions;

impl<K: Send + 'static, V: Send + 'static> Consumer<K, V> {
    /// Concurrent processing, as a stream of messages to handle in any
    /// number of tasks, each carrying its acknowledgement: the lower level
    /// of [`process`](Self::process), for an application that wants its own
    /// task structure (batching into a database, say).
    ///
    /// - A message is handed out only when its turn has come
    ///   ([`ProcessOptions::ordering`]: the message before it with the same
    ///   key, or of the same partition, has been acknowledged) and fewer than
    ///   `max_in_flight` (and `max_in_flight_per_partition`) are handed out
    ///   and unacknowledged; otherwise the stream waits.
    /// - [`Work::ack`] (or [`Ack::ack`]) marks a message done. Per partition,
    ///   the highest offset below which every message is done is committed
    ///   every [`commit_interval`](ProcessOptions::commit_interval), with the
    ///   messages done above it in the commit's metadata: after a restart or
    ///   a rebalance, only the messages really not done are handed out again.
    /// - A [`Work`] (or [`Ack`]) dropped without `ack` is not done: it is
    ///   handed out again, before any later message of its order group.
    /// - A record whose key or value cannot be decoded comes out as
    ///   [`ConsumerError::Deserialize`] and counts as done, as in the tiers.
    ///   Errors about no message (a broker down) come out as they do there.
    /// - When partitions are revoked, no more of their messages start; the
    ///   revocation waits up to [`revocation_timeout`](ProcessOptions::revocation_timeout)
    ///   for those handed out, then commits what is done. What is
    ///   acknowledged later is not committed by this consumer.
    /// - Fetching pauses while [`max_buffered`](ProcessOptions::max_buffered)
    ///   messages are held, and for a partition whose commit metadata would
    ///   not fit in [`max_metadata_bytes`](ProcessOptions::max_metadata_bytes).
    ///
    /// Polling runs on a thread of its own (`kafka-processing`), stopped and
    /// joined when the stream is dropped, after a last commit of what is
    /// done; acknowledge what is handed out before dropping the stream. Do
    /// not read the consumer in another way while the stream lives.
    ///
    /// ```no_run
    /// use std::sync::Arc;
    /// use consumer_api::{ConsumerConfig, StringSerde};
    /// use consumer_fast::{Consumer, ProcessOptions, ProcessingOrder};
    /// use futures_util::StreamExt;
    ///
    /// # async fn run() -> Result<(), consumer_api::ConsumerError> {
    /// let consumer = Arc::new(Consumer::with_config(
    ///     ConsumerConfig::new("localhost:9092", "billing"),
    ///     StringSerde,
    ///     StringSerde,
    /// )?);
    /// consumer.subscribe(&["orders"])?;
    /// let mut work = consumer.processing_stream(ProcessOptions::new(ProcessingOrder::Key))?;
    /// while let Some(item) = work.next().await {
    ///     match item {
    ///         Ok(order) => {
    ///             tokio::spawn(async move {
    ///                 println!("{}: {:?}", *order, order.value);
    ///                 order.ack();
    ///             });
    ///         }
    ///         Err(error) if error.is_fatal() => return Err(error),
    ///         Err(error) => eprintln!("skipping: {error}"),
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// [`ConsumerError::Misuse`] while a Dedicated stream or another
    /// processing of this consumer runs; [`ConsumerError::Io`] when the thread
    /// cannot start.
    pub fn processing_stream(
        self: &Arc<Self>,
        options: ProcessOptions,
    ) -> Result<ProcessingStream<K, V>, ConsumerError> {
        self.polling_thread
            .claim(crate::PollingThread::Processing)
            .map_err(ConsumerError::Misuse)?;
        let engine = Arc::new(Engine::new(Arc::clone(self), options));
        let hook: Arc<dyn RebalanceHook> = engine.clone();
        *self
            .base
            .context()
            .processing
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(hook);
        let poller = {
            let engine = Arc::clone(&engine);
            std::thread::Builder::new()
                .name("kafka-processing".to_owned())
                .spawn(move || engine.run_poller())
        };
        match poller {
            Ok(thread) => Ok(ProcessingStream {
                engine,
                thread: Some(thread),
            }),
            Err(error) => {
                detach(self);
                Err(ConsumerError::Io(error))
            }
        }
    }
}

/// Ends processing's hold on the consumer: no more rebalance hook, and the
/// polling thread's flag is free.
fn detach<K, V>(consumer: &Consumer<K, V>) {
    *consumer
        .base
        .context()
        .processing
        .lock()
        .unwrap_or_else(PoisonError::into_inner) = None;
    consumer.polling_thread.release();
}

/// Concurrent processing's stream, from [`Consumer::processing_stream`]:
/// messages whose turn has come, each a [`Work`] to acknowledge.
#[must_use = "streams do nothing unless polled"]
pub struct ProcessingStream<K: Send + 'static, V: Send + 'static> {
    engine: Arc<Engine<K, V>>,
    thread: Option<JoinHandle<()>>,
}

impl<K: Send + 'static, V: Send + 'static> std::fmt::Debug for ProcessingStream<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessingStream")
            .field("engine", &self.engine)
            .finish_non_exhaustive()
    }
}

impl<K: Send + 'static, V: Send + 'static> ProcessingStream<K, V> {
    /// How many messages are handed out and not acknowledged.
    pub fn in_flight(&self) -> usize {
        self.engine.in_flight()
    }

    /// The next message whose turn has come, with its decoding left to the
    /// caller: the runner's way in, which dead-letters what does not decode.
    pub(crate) fn poll_work(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Pending<K, V>, ConsumerError>>> {
        match self.engine.next_ready(cx.waker()) {
            NextReady::Work(ticket, record, message) => Poll::Ready(Some(Ok(Pending {
                ack: Ack {
                    engine: Arc::clone(&self.engine),
                    ticket,
                    record: Some(record),
                },
                message,
            }))),
            NextReady::Error(error) => Poll::Ready(Some(Err(error))),
            NextReady::Pending => Poll::Pending,
            NextReady::Ended => Poll::Ready(None),
        }
    }
}

impl<K: Send + 'static, V: Send + 'static> Stream for ProcessingStream<K, V> {
    type Item = Result<Work<K, V>, ConsumerError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match self.get_mut().poll_work(cx) {
            Poll::Ready(Some(Ok(Pending {
                ack,
                message: Ok(message),
            }))) => Poll::Ready(Some(Ok(Work { message, ack }))),
            Poll::Ready(Some(Ok(Pending {
                ack,
                message: Err(error),
            }))) => {
                // Counts as done, as in the tiers.
                ack.ack();
                Poll::Ready(Some(Err(error)))
            }
            Poll::Ready(Some(Err(error))) => Poll::Ready(Some(Err(error))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<K: Send + 'static, V: Send + 'static> Drop for ProcessingStream<K, V> {
    fn drop(&mut self) {
        self.engine.stop();
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!("the concurrent processing thread panicked");
        }
        detach(&self.engine.consumer);
    }
}

/// A message handed out with its decoding's outcome: the runner's view.
pub(crate) struct Pending<K: Send + 'static, V: Send + 'static> {
    pub(crate) ack: Ack<K, V>,
    pub(crate) message: Result<Message<K, V>, ConsumerError>,
}

/// A message to handle, from a [`ProcessingStream`]: dereferences to the
/// [`Message`]. [`ack`](Self::ack) it when it is done; dropped without,
/// it is handed out again.
pub struct Work<K: Send + 'static, V: Send + 'static> {
    message: Message<K, V>,
    ack: Ack<K, V>,
}

impl<K: Send + 'static, V: Send + 'static> std::fmt::Debug for Work<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Work({})", self.message)
    }
}

impl<K: Send + 'static, V: Send + 'static> std::ops::Deref for Work<K, V> {
    type Target = Message<K, V>;

    fn deref(&self) -> &Message<K, V> {
        &self.message
    }
}

impl<K: Send + 'static, V: Send + 'static> Work<K, V> {
    /// Marks the message done: it may be committed, and the next message of
    /// its order group may start.
    pub fn ack(self) {
        self.ack.ack();
    }

    /// The message and its acknowledgement apart, to move the message into
    /// a handler and acknowledge afterwards.
    pub fn into_parts(self) -> (Message<K, V>, Ack<K, V>) {
        (self.message, self.ack)
    }

    /// The record's bytes as read from Kafka.
    pub fn record(&self) -> &OwnedRecord {
        self.ack.record()
    }
}

/// The acknowledgement of one message handed out by a
/// [`ProcessingStream`]: [`ack`](Self::ack) when the message is done;
/// dropped without, the message is handed out again (decoded anew from
/// its bytes), before any later message of its order group.
#[must_use = "a message is done only when acknowledged; dropped, it is handed out again"]
pub struct Ack<K: Send + 'static, V: Send + 'static> {
    engine: Arc<Engine<K, V>>,
    ticket: Ticket,
    /// Taken when the message is given back.
    record: Option<OwnedRecord>,
}

impl<K: Send + 'static, V: Send + 'static> std::fmt::Debug for Ack<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Ack({}/{}@{})",
            self.ticket.partition.0, self.ticket.partition.1, self.ticket.offset
        )
    }
}

impl<K: Send + 'static, V: Send + 'static> Ack<K, V> {
    /// Marks the message done.
    pub fn ack(mut self) {
        self.record = None;
        self.engine.complete(&self.ticket);
    }

    /// The record's bytes as read from Kafka.
    pub fn record(&self) -> &OwnedRecord {
        match &self.record {
            Some(record) => record,
            // Taken only by `ack` and `drop`, which consume `self`.
            None => unreachable!("the record is kept until the acknowledgement is used"),
        }
    }

    /// The engine, for the runner to decode the record again.
    pub(crate) fn engine(&self) -> &Engine<K, V> {
        &self.engine
    }
}

impl<K: Send + 'static, V: Send + 'static> Drop for Ack<K, V> {
    fn drop(&mut self) {
        if let Some(record) = self.record.take() {
            self.engine.give_back(&self.ticket, record);
        }
    }
}
