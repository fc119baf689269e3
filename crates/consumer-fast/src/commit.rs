//! [`CommitFuture`]: a commit awaited without blocking a thread.

use std::ffi::c_void;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};

use consumer_api::ConsumerError;
use rdkafka::TopicPartitionList;
use rdkafka::bindings as rdsys;
use rdkafka::consumer::{Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};

/// A commit sent to the broker, resolving with its answer: `Ok` when the
/// coordinator confirmed it (or there was nothing to commit), else the
/// error it answered (a revoked partition, the coordinator gone, ...).
///
/// It waits on a reply queue of its own, which librdkafka's thread signals
/// when the answer arrives: no thread blocks for it. Dropping it before the
/// answer stops waiting; the commit itself may still be applied.
///
/// Made by `commit_async` on every consumer of this workspace; `start` is
/// the building block for any rdkafka consumer.
#[must_use = "a commit is sent at once, but its answer is only known by awaiting it"]
pub struct CommitFuture<'a> {
    state: State,
    /// Told the answer, when set by [`observed_by`](Self::observed_by).
    telemetry: Option<Arc<crate::Telemetry>>,
    /// `kafka.commit` (DEBUG), entered while the future is polled, closed
    /// with it.
    span: tracing::Span,
    /// The client the reply queue belongs to.
    _client: PhantomData<&'a ()>,
}

enum State {
    /// Nothing to commit, or librdkafka refused it at once.
    Ready(Option<Result<(), ConsumerError>>),
    /// Sent: the answer comes on `queue`.
    Waiting {
        queue: *mut rdsys::rd_kafka_queue_t,
        waker: Arc<Mutex<Option<Waker>>>,
    },
}

// SAFETY: a librdkafka queue handle may be used and destroyed from any
// thread; the waker slot is behind a mutex.
unsafe impl Send for CommitFuture<'_> {}

impl std::fmt::Debug for CommitFuture<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CommitFuture")
            .field("waiting", &matches!(self.state, State::Waiting { .. }))
            .finish()
    }
}

impl<'a> CommitFuture<'a> {
    /// Sends a commit of `offsets` for `consumer`: the future resolves with
    /// the broker's answer. An empty list resolves `Ok` at once.
    pub fn start<C: ConsumerContext>(
        consumer: &'a impl Consumer<C>,
        offsets: &TopicPartitionList,
    ) -> Self {
        if offsets.count() == 0 {
            return CommitFuture::ready(Ok(()));
        }
        let waker: Arc<Mutex<Option<Waker>>> = Arc::default();
        // SAFETY: the client pointer is valid for 'a, which the future
        // borrows. The queue is ours: the callback registered on it gets a
        // pointer to `waker`, which the future keeps alive until `Drop` has
        // unregistered the callback (librdkafka calls it under the queue's
        // lock, which the unregistering takes, so none runs after). The
        // commit op holds its own reference to the queue: an answer arriving
        // after the future is gone is discarded. `offsets` is copied.
        unsafe {
            let client = consumer.client().native_ptr();
            let queue = rdsys::rd_kafka_queue_new(client);
            rdsys::rd_kafka_queue_cb_event_enable(
                queue,
                Some(wake_on_answer),
                Arc::as_ptr(&waker).cast::<c_void>().cast_mut(),
            );
            let error = rdsys::rd_kafka_commit_queue(
                client,
                offsets.ptr(),
                queue,
                None,
                std::ptr::null_mut(),
            );
            let future = CommitFuture {
                state: State::Waiting { queue, waker },
                telemetry: None,
                span: tracing::debug_span!(
                    "kafka.commit",
                    partitions = offsets.count(),
                    ok = tracing::field::Empty
                ),
                _client: PhantomData,
            };
            if error != rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
                drop(future);
                return CommitFuture::ready(Err(commit_error(error)));
            }
            future
        }
    }

    /// A future that resolves at once with `result`.
    pub fn ready(result: Result<(), ConsumerError>) -> Self {
        CommitFuture {
            state: State::Ready(Some(result)),
            telemetry: None,
            span: tracing::Span::none(),
            _client: PhantomData,
        }
    }

    /// Counts the commit's answer in `telemetry`'s commit metric (a commit
    /// refused at once counts as failed; nothing to commit is not counted).
    pub fn observed_by(mut self, telemetry: &Arc<crate::Telemetry>) -> Self {
        match &self.state {
            State::Ready(Some(Err(_))) => telemetry.commit_answered(false),
            State::Ready(_) => {}
            State::Waiting { .. } => self.telemetry = Some(Arc::clone(telemetry)),
        }
        self
    }
}

/// librdkafka's signal that the reply queue is no longer empty.
unsafe extern "C" fn wake_on_answer(_: *mut rdsys::rd_kafka_t, opaque: *mut c_void) {
    // SAFETY: `opaque` is the future's waker slot, alive while the callback
    // is registered (see `CommitFuture::start`).
    let slot = unsafe { &*opaque.cast::<Mutex<Option<Waker>>>() };
    if let Some(waker) = slot.lock().unwrap_or_else(PoisonError::into_inner).take() {
        waker.wake();
    }
}

fn commit_error(error: rdsys::rd_kafka_resp_err_t) -> ConsumerError {
    ConsumerError::from(KafkaError::ConsumerCommit(RDKafkaErrorCode::from(error)))
}

impl Future for CommitFuture<'_> {
    type Output = Result<(), ConsumerError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let (queue, waker) = match &mut this.state {
            State::Ready(result) => {
                return Poll::Ready(result.take().unwrap_or(Err(ConsumerError::Misuse(
                    consumer_api::Misuse::PolledAfterCompletion("a commit future"),
                ))));
            }
            State::Waiting { queue, waker } => (*queue, Arc::clone(waker)),
        };
        // Registered before looking: an answer arriving in between still
        // wakes this task.
        *waker.lock().unwrap_or_else(PoisonError::into_inner) = Some(cx.waker().clone());
        // SAFETY: `queue` is ours until `Drop`; a zero timeout never blocks.
        let event = unsafe { rdsys::rd_kafka_queue_poll(queue, 0) };
        if event.is_null() {
            return Poll::Pending;
        }
        // SAFETY: `event` is the commit's result, ours to read and destroy.
        let error = unsafe {
            let error = rdsys::rd_kafka_event_error(event);
            rdsys::rd_kafka_event_destroy(event);
            error
        };
        let result = match error {
            rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR => Ok(()),
            // Nothing new to commit is not a failure.
            rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR__NO_OFFSET => Ok(()),
            error => Err(commit_error(error)),
        };
        this.release();
        this.state = State::Ready(None);
        if let Some(telemetry) = this.telemetry.take() {
            telemetry.commit_answered(result.is_ok());
        }
        this.span.record("ok", result.is_ok());
        Poll::Ready(result)
    }
}

impl CommitFuture<'_> {
    /// Unregisters the callback, then destroys the queue (once).
    fn release(&mut self) {
        if let State::Waiting { queue, .. } = self.state {
            // SAFETY: the queue is ours; after the callback is unregistered
            // (under the queue's lock) librdkafka no longer touches the
            // waker slot, which `self.state` still owns here.
            unsafe {
                rdsys::rd_kafka_queue_cb_event_enable(queue, None, std::ptr::null_mut());
                rdsys::rd_kafka_queue_destroy(queue);
            }
        }
    }
}

impl Drop for CommitFuture<'_> {
    fn drop(&mut self) {
        self.release();
    }
}
