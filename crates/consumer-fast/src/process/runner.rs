//! [`Processor`]: concurrent processing driven for the application, each
//! message a Tokio task running its handler, with retries and a dead-letter
//! hook.

use consumer_api::{ConsumerError, Message, OwnedRecord};
use futures_util::FutureExt as _;
use futures_util::StreamExt as _;
use futures_util::stream::FuturesUnordered;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::{Pin, pin};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::Poll;

use crate::consumer::Consumer;
use crate::process::options::{DeadLetterLimit, ProcessOptions, RetryPolicy};
use crate::process::work::Pending;

/// Any error, boxed: what handlers and dead-letter hooks fail with.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A message that could not be handled, for a [`DeadLetterHook`].
#[derive(Debug)]
#[non_exhaustive]
pub struct DeadLetter {
    /// The record exactly as read from Kafka.
    pub record: OwnedRecord,
    /// The last attempt's error, or the decoding error for a record whose
    /// key or value could not be decoded.
    pub error: BoxError,
    /// How many times the handler ran on it (0: it could not be decoded).
    pub attempts: u32,
}

/// Where a message goes that could not be handled: after the hook's future
/// resolves `Ok`, the message counts as done. [`DeadLetterTopic`](crate::DeadLetterTopic)
/// is the ready one; any `Fn(DeadLetter) -> impl Future<Output = Result<(), BoxError>>`
/// is one too.
///
/// ```
/// use consumer_fast::{BoxError, DeadLetter, DeadLetterHook};
///
/// fn log_them() -> impl DeadLetterHook {
///     |letter: DeadLetter| async move {
///         eprintln!(
///             "giving up on {}/{}@{} after {} attempts: {}",
///             letter.record.topic, letter.record.partition, letter.record.offset,
///             letter.attempts, letter.error,
///         );
///         Ok::<(), BoxError>(())
///     }
/// }
/// ```
pub trait DeadLetterHook: Send + Sync + 'static {
    /// Takes a message that could not be handled; `Err` stops processing
    /// with [`ProcessError::DeadLetter`] (the message is not done).
    fn dead_letter(
        &self,
        letter: DeadLetter,
    ) -> Pin<Box<dyn Future<Output = Result<(), BoxError>> + Send + 'static>>;
}

impl<F, Fut> DeadLetterHook for F
where
    F: Fn(DeadLetter) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), BoxError>> + Send + 'static,
{
    fn dead_letter(
        &self,
        letter: DeadLetter,
    ) -> Pin<Box<dyn Future<Output = Result<(), BoxError>> + Send + 'static>> {
        Box::pin(self(letter))
    }
}

/// Why [`Processor::run`] stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProcessError {
    /// The consumer failed in a way that does not get better (fatal), or
    /// processing could not start.
    #[error(transparent)]
    Consumer(#[from] ConsumerError),
    /// A message failed every attempt (or could not be decoded) and no
    /// dead-letter hook is set: nothing beyond it is committed.
    #[error(
        "{topic}/{partition}@{offset} could not be handled ({attempts} attempts) and no \
         dead-letter hook is set: {source}"
    )]
    Handler {
        /// The record's topic.
        topic: String,
        /// The record's partition.
        partition: i32,
        /// The record's offset.
        offset: i64,
        /// How many times the handler ran on it.
        attempts: u32,
        /// The last attempt's (or the decoding's) error.
        #[source]
        source: BoxError,
    },
    /// Dead-lettering this message would pass the [`DeadLetterLimit`]: it is
    /// not dead-lettered, and nothing beyond it is committed.
    #[error(
        "not dead-lettering {topic}/{partition}@{offset}: {dead_lettered} of the {finished} \
         messages finished would be dead-lettered ({consecutive} in a row), past the limit {limit:?}"
    )]
    DeadLetterLimit {
        /// The record's topic.
        topic: String,
        /// The record's partition.
        partition: i32,
        /// The record's offset.
        offset: i64,
        /// Messages dead-lettered, this one included.
        dead_lettered: u64,
        /// Messages finished (handled or dead-lettered), this one included.
        finished: u64,
        /// Dead-lettered in a row, this one included.
        consecutive: u64,
        /// The limit passed.
        limit: DeadLetterLimit,
    },
    /// A processing task ended without an outcome: the dead-letter hook
    /// panicked, or the runtime cancelled it. Its message is not done.
    #[error("a processing task ended without an outcome: {0}")]
    TaskFailed(String),
    /// The dead-letter hook failed: the message is not done.
    #[error("the dead-letter hook failed for {topic}/{partition}@{offset}: {source}")]
    DeadLetter {
        /// The record's topic.
        topic: String,
        /// The record's partition.
        partition: i32,
        /// The record's offset.
        offset: i64,
        /// What the hook said.
        #[source]
        source: BoxError,
    },
}

impl<K: Send + 'static, V: Send + 'static> Consumer<K, V> {
    /// Concurrent processing: calls `handler` for every message, many at
    /// once (each in a Tokio task of its own, so CPU-bound handlers use
    /// every worker thread), in the order [`ProcessOptions::ordering`] asks,
    /// committing only what is done. Runs until a fatal error, a message
    /// that cannot be handled, or the [`DeadLetterLimit`]; see
    /// [`processor`](Self::processor) to stop on a signal or dead-letter.
    ///
    /// A handler that fails (or panics) is retried by
    /// [`ProcessOptions::retry`]; a message that fails every attempt, or
    /// cannot be decoded, goes to the dead-letter hook, and without one
    /// stops processing with [`ProcessError::Handler`].
    ///
    /// ```no_run
    /// use std::sync::Arc;
    /// use consumer_api::{ConsumerConfig, StringSerde};
    /// use consumer_fast::{BoxError, Consumer, ProcessOptions, ProcessingOrder};
    ///
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// let consumer = Arc::new(Consumer::with_config(
    ///     ConsumerConfig::new("localhost:9092", "billing"),
    ///     StringSerde,
    ///     StringSerde,
    /// )?);
    /// consumer.subscribe(&["orders"])?;
    /// let options = ProcessOptions::new(ProcessingOrder::Key).max_in_flight(1_000);
    /// consumer
    ///     .process(options, |order| async move {
    ///         // e.g. a database write; per key, one at a time and in order.
    ///         println!("{order}: {:?}", order.value);
    ///         Ok::<(), BoxError>(())
    ///     })
    ///     .await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// See [`ProcessError`].
    pub async fn process<F, Fut, E>(
        self: &Arc<Self>,
        options: ProcessOptions,
        handler: F,
    ) -> Result<(), ProcessError>
    where
        F: Fn(Message<K, V>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: Into<BoxError> + 'static,
    {
        self.processor(options).run(handler).await
    }

    /// A [`Processor`], to set a dead-letter hook or a stop signal before
    /// running.
    pub fn processor(self: &Arc<Self>, options: ProcessOptions) -> Processor<K, V> {
        Processor {
            consumer: Arc::clone(self),
            options,
            dead_letter: None,
        }
    }
}

/// Concurrent processing to run, from [`Consumer::processor`].
///
/// ```no_run
/// use std::sync::Arc;
/// use consumer_api::{ConsumerConfig, StringSerde};
/// use consumer_fast::{BoxError, Consumer, DeadLetterTopic, ProcessOptions};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let consumer = Arc::new(Consumer::with_config(
///     ConsumerConfig::new("localhost:9092", "billing"),
///     StringSerde,
///     StringSerde,
/// )?);
/// consumer.subscribe(&["orders"])?;
/// consumer
///     .processor(ProcessOptions::default())
///     .dead_letter(DeadLetterTopic::new("localhost:9092")?)
///     .run_until(
///         |order| async move { println!("{order}"); Ok::<(), BoxError>(()) },
///         async { tokio::signal::ctrl_c().await.ok(); },
///     )
///     .await?;
/// # Ok(()) }
/// ```
#[must_use = "a processor does nothing until run"]
pub struct Processor<K, V> {
    consumer: Arc<Consumer<K, V>>,
    options: ProcessOptions,
    dead_letter: Option<Arc<dyn DeadLetterHook>>,
}

impl<K, V> std::fmt::Debug for Processor<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Processor")
            .field("options", &self.options)
            .field("dead_letter", &self.dead_letter.is_some())
            .finish_non_exhaustive()
    }
}

/// What the runner's loop woke up for.
enum Event<K: Send + 'static, V: Send + 'static> {
    Shutdown,
    Work(Pending<K, V>),
    PollError(ConsumerError),
    Finished(Result<Result<(), ProcessError>, tokio::task::JoinError>),
    Ended,
    Drained,
}

impl<K: Send + 'static, V: Send + 'static> Processor<K, V> {
    /// The consumer it runs on: subscribe it before running.
    pub fn consumer(&self) -> &Arc<Consumer<K, V>> {
        &self.consumer
    }

    /// The options it runs with.
    pub fn options(&self) -> &ProcessOptions {
        &self.options
    }

    /// Where messages go that cannot be handled; after the hook succeeds
    /// they count as done.
    pub fn dead_letter(mut self, hook: impl DeadLetterHook) -> Self {
        self.dead_letter = Some(Arc::new(hook));
        self
    }

    /// Runs until a fatal error, a message that cannot be handled, or the
    /// [`DeadLetterLimit`].
    ///
    /// # Errors
    ///
    /// See [`ProcessError`].
    pub async fn run<F, Fut, E>(self, handler: F) -> Result<(), ProcessError>
    where
        F: Fn(Message<K, V>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: Into<BoxError> + 'static,
    {
        self.run_until(handler, std::future::pending()).await
    }

    /// As [`run`](Self::run), and also stops when `shutdown` resolves: no
    /// more messages start, those being handled get up to
    /// [`shutdown_timeout`](ProcessOptions::shutdown_timeout) to finish, the
    /// commit of what is done is sent, and it returns `Ok(())`. (The
    /// consumer's close, or `commit_async().await`, commits the same and
    /// waits for the broker's answer.)
    ///
    /// Stop it with `shutdown` rather than by dropping the future: a dropped
    /// run aborts its handler tasks at once, and stopping its polling thread
    /// then waits on the thread that drops it.
    ///
    /// # Errors
    ///
    /// See [`ProcessError`]; [`ConsumerError::Misuse`] outside a Tokio
    /// runtime.
    pub async fn run_until<F, Fut, E, S>(self, handler: F, shutdown: S) -> Result<(), ProcessError>
    where
        F: Fn(Message<K, V>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: Into<BoxError> + 'static,
        S: Future<Output = ()>,
    {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            ConsumerError::Misuse(consumer_api::Misuse::NoTokioRuntime {
                call: "Consumer::process",
            })
        })?;
        let Processor {
            consumer,
            options,
            dead_letter,
        } = self;
        let shutdown_timeout = options.shutdown_timeout;
        let job = Arc::new(Job {
            handler,
            retry: options.retry,
            dead_letter,
            counts: DeadLetterCounts::new(options.dead_letter_limit),
        });
        let mut stream = consumer.processing_stream(options)?;
        // Aborted if this future is dropped before they finish: cancelling
        // `run_until` cancels its handlers (their messages stay not done).
        let mut tasks = AbortOnDrop(FuturesUnordered::new());
        let mut shutdown = pin!(shutdown);
        let mut taking = true;
        let mut outcome = Ok(());
        loop {
            let event = std::future::poll_fn(|cx| {
                if taking && shutdown.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Event::Shutdown);
                }
                if let Poll::Ready(Some(joined)) = tasks.0.poll_next_unpin(cx) {
                    return Poll::Ready(Event::Finished(joined));
                }
                if taking {
                    match stream.poll_work(cx) {
                        Poll::Ready(Some(Ok(pending))) => return Poll::Ready(Event::Work(pending)),
                        Poll::Ready(Some(Err(error))) => {
                            return Poll::Ready(Event::PollError(error));
                        }
                        Poll::Ready(None) => return Poll::Ready(Event::Ended),
                        Poll::Pending => {}
                    }
                } else if tasks.0.is_empty() {
                    return Poll::Ready(Event::Drained);
                }
                Poll::Pending
            })
            .await;
            match event {
                Event::Work(pending) => {
                    tasks
                        .0
                        .push(runtime.spawn(Arc::clone(&job).handle(pending)));
                }
                Event::Finished(Ok(Ok(()))) => {}
                Event::Finished(Ok(Err(error))) => {
                    if outcome.is_ok() {
                        tracing::error!(%error, "concurrent processing stops");
                        outcome = Err(error);
                    }
                    taking = false;
                }
                Event::Finished(Err(join_error)) => {
                    // The handler's panics are caught inside: this is a
                    // dead-letter hook that panicked, or a task the runtime
                    // cancelled. Its message is not done.
                    tracing::error!(%join_error, "a processing task ended without an outcome");
                    if outcome.is_ok() {
                        outcome = Err(ProcessError::TaskFailed(join_error.to_string()));
                    }
                    taking = false;
                }
                Event::PollError(error) if error.is_fatal() => {
                    tracing::error!(%error, "concurrent processing stops on a fatal error");
                    if outcome.is_ok() {
                        outcome = Err(ProcessError::Consumer(error));
                    }
                    taking = false;
                }
                Event::PollError(error) => {
                    tracing::warn!(%error, "concurrent processing goes on");
                }
                Event::Shutdown => {
                    tracing::info!(in_flight = tasks.0.len(), "stopping concurrent processing");
                    taking = false;
                }
                Event::Ended => {
                    // The polling thread is gone (it panicked): nothing more
                    // comes, and what is handed out can no longer commit.
                    if outcome.is_ok() {
                        outcome = Err(ProcessError::Consumer(ConsumerError::Closed));
                    }
                    taking = false;
                }
                Event::Drained => break,
            }
            if !taking && tasks.0.is_empty() {
                break;
            }
            if !taking {
                // Let what is being handled finish, within the bound.
                let drained = tokio::time::timeout(shutdown_timeout, async {
                    while let Some(joined) = tasks.0.next().await {
                        if let Ok(Err(error)) = joined
                            && outcome.is_ok()
                        {
                            outcome = Err(error);
                        }
                    }
                })
                .await;
                if drained.is_err() {
                    tracing::warn!(
                        left = tasks.0.len(),
                        "messages still being handled after the shutdown timeout are not committed"
                    );
                    for task in &tasks.0 {
                        task.abort();
                    }
                }
                break;
            }
        }
        // Joining the polling thread waits for its last round and commit:
        // not on an executor thread.
        let stopped = runtime.spawn_blocking(move || drop(stream)).await;
        if let Err(error) = stopped {
            tracing::error!(%error, "stopping concurrent processing failed");
        }
        outcome
    }
}

/// Handler tasks, aborted when dropped unfinished.
struct AbortOnDrop<T>(FuturesUnordered<tokio::task::JoinHandle<T>>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

/// What every handler task shares.
struct Job<F> {
    handler: F,
    retry: RetryPolicy,
    dead_letter: Option<Arc<dyn DeadLetterHook>>,
    counts: DeadLetterCounts,
}

impl<F> Job<F> {
    /// Handles one message: attempts, backoff, then the dead-letter hook.
    async fn handle<K, V, Fut, E>(
        self: Arc<Self>,
        pending: Pending<K, V>,
    ) -> Result<(), ProcessError>
    where
        K: Send + 'static,
        V: Send + 'static,
        F: Fn(Message<K, V>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: Into<BoxError> + 'static,
    {
        let Pending { ack, mut message } = pending;
        let mut attempts = 0;
        let error: BoxError = loop {
            let decoded = match message {
                Ok(decoded) => decoded,
                Err(error) => break Box::new(error),
            };
            attempts += 1;
            let error: BoxError = match AssertUnwindSafe((self.handler)(decoded))
                .catch_unwind()
                .await
            {
                Ok(Ok(())) => {
                    self.counts.handled();
                    ack.ack();
                    return Ok(());
                }
                Ok(Err(error)) => error.into(),
                Err(panic) => panic_message(panic.as_ref()).into(),
            };
            if attempts >= self.retry.attempts() {
                break error;
            }
            let delay = self.retry.delay_before(attempts + 1);
            tracing::debug!(
                record = %Coordinates(ack.record()),
                attempts,
                %error,
                ?delay,
                "handler failed; retrying"
            );
            tokio::time::sleep(delay).await;
            message = ack.engine().decode_again(ack.record());
        };
        let record = ack.record();
        let Some(hook) = &self.dead_letter else {
            return Err(ProcessError::Handler {
                topic: record.topic.clone(),
                partition: record.partition,
                offset: record.offset,
                attempts,
                source: error,
            });
        };
        self.counts.admit(record)?;
        tracing::warn!(record = %Coordinates(record), attempts, %error, "dead-lettering");
        let letter = DeadLetter {
            record: record.clone(),
            error,
            attempts,
        };
        match hook.dead_letter(letter).await {
            Ok(()) => {
                ack.ack();
                Ok(())
            }
            Err(source) => Err(ProcessError::DeadLetter {
                topic: record.topic.clone(),
                partition: record.partition,
                offset: record.offset,
                source,
            }),
        }
    }
}

/// `topic/partition@offset`, for logs.
struct Coordinates<'a>(&'a OwnedRecord);

impl std::fmt::Display for Coordinates<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}@{}", self.0.topic, self.0.partition, self.0.offset)
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    let message = panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("a non-string payload");
    format!("the handler panicked: {message}")
}

/// Counts for the [`DeadLetterLimit`].
struct DeadLetterCounts {
    limit: Option<DeadLetterLimit>,
    counts: Mutex<Counts>,
}

#[derive(Default)]
struct Counts {
    finished: u64,
    dead_lettered: u64,
    consecutive: u64,
}

impl DeadLetterCounts {
    fn new(limit: Option<DeadLetterLimit>) -> Self {
        DeadLetterCounts {
            limit,
            counts: Mutex::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Counts> {
        self.counts.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A message was handled.
    fn handled(&self) {
        if self.limit.is_none() {
            return;
        }
        let mut counts = self.lock();
        counts.finished += 1;
        counts.consecutive = 0;
    }

    /// May this message be dead-lettered? Counts it if so.
    fn admit(&self, record: &OwnedRecord) -> Result<(), ProcessError> {
        let Some(limit) = self.limit else {
            return Ok(());
        };
        let mut counts = self.lock();
        let finished = counts.finished + 1;
        let dead_lettered = counts.dead_lettered + 1;
        let consecutive = counts.consecutive + 1;
        #[allow(clippy::cast_precision_loss)] // a share, not an exact count
        let share = dead_lettered as f64 / finished as f64;
        let over = consecutive > limit.max_consecutive
            || (finished >= limit.min_messages && share > limit.max_share);
        if over {
            return Err(ProcessError::DeadLetterLimit {
                topic: record.topic.clone(),
                partition: record.partition,
                offset: record.offset,
                dead_lettered,
                finished,
                consecutive,
                limit,
            });
        }
        *counts = Counts {
            finished,
            dead_lettered,
            consecutive,
        };
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn record(offset: i64) -> OwnedRecord {
        OwnedRecord {
            topic: "t".to_owned(),
            partition: 0,
            offset,
            timestamp: consumer_api::Timestamp::NotAvailable,
            key: None,
            value: None,
            headers: consumer_api::Headers::new(),
        }
    }

    #[test]
    fn the_limit_stops_a_run_of_dead_letters() {
        let counts = DeadLetterCounts::new(Some(DeadLetterLimit {
            max_share: 1.0,
            min_messages: 0,
            max_consecutive: 3,
        }));
        for offset in 0..3 {
            assert!(counts.admit(&record(offset)).is_ok());
        }
        let refused = counts.admit(&record(3));
        assert!(
            matches!(
                refused,
                Err(ProcessError::DeadLetterLimit {
                    offset: 3,
                    consecutive: 4,
                    ..
                })
            ),
            "{refused:?}"
        );
        counts.handled();
        assert!(counts.admit(&record(5)).is_ok(), "a success resets the run");
    }

    #[test]
    fn the_limit_stops_a_share_once_enough_have_finished() {
        let counts = DeadLetterCounts::new(Some(DeadLetterLimit {
            max_share: 0.5,
            min_messages: 4,
            max_consecutive: 100,
        }));
        assert!(
            counts.admit(&record(0)).is_ok(),
            "1 of 1, but fewer than 4 finished"
        );
        counts.handled();
        counts.handled();
        assert!(counts.admit(&record(3)).is_ok(), "2 of 4: not over half");
        let refused = counts.admit(&record(4));
        assert!(
            matches!(
                refused,
                Err(ProcessError::DeadLetterLimit {
                    dead_lettered: 3,
                    finished: 5,
                    ..
                })
            ),
            "{refused:?}"
        );
    }

    #[test]
    fn without_a_limit_everything_is_admitted() {
        let counts = DeadLetterCounts::new(None);
        for offset in 0..1_000 {
            assert!(counts.admit(&record(offset)).is_ok());
        }
    }

    #[test]
    fn retry_delays_grow_and_stay_within_their_jitter() {
        let policy =
            RetryPolicy::new(10).backoff(Duration::from_millis(100), Duration::from_secs(1));
        assert_eq!(policy.delay_before(1), Duration::ZERO);
        for (attempt, base_ms) in [(2, 100), (3, 200), (4, 400), (5, 800), (6, 1000), (9, 1000)] {
            let delay = policy.delay_before(attempt);
            let base = Duration::from_millis(base_ms);
            assert!(
                delay >= base / 2 && delay <= base + base / 2,
                "attempt {attempt}: {delay:?} outside {base:?} ± half"
            );
        }
    }
}
