//! [`Closing`]: a close awaited without blocking the executor.

use std::any::Any;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};
use std::thread::JoinHandle;

use crate::consumer::CloseReport;

/// A consumer's close running on a thread of its own (`kafka-closing`),
/// from `close`: resolves with its [`CloseReport`].
///
/// Closing a Kafka consumer is a sequence of blocking calls into librdkafka
/// (the final commit, the last revocation, `LeaveGroup`), each bounded by
/// the close's timeout; run on an executor thread they would stall every
/// task there for that long. Here they run on a thread, and the future is
/// woken when the report is ready: no executor thread waits.
///
/// Dropping it before it resolves does not stop the close: the thread
/// finishes it (within the timeout it was given, if the process lives that
/// long) and its report is lost. A panic in the close (an application's
/// rebalance hook) is resumed where the future is polled (or, if no thread
/// could be started and the close ran in `start`, there).
///
/// ```
/// use consumer_api::{CloseReport, Closing};
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let report = Closing::start(|| CloseReport { commit: Ok(()), left_group_in: None }).await;
/// assert!(report.commit.is_ok());
/// # });
/// ```
#[must_use = "the close runs anyway; await it for its report"]
pub struct Closing {
    shared: Arc<Mutex<Shared>>,
    thread: Option<JoinHandle<()>>,
}

#[derive(Default)]
struct Shared {
    outcome: Option<std::thread::Result<CloseReport>>,
    waker: Option<Waker>,
}

impl std::fmt::Debug for Closing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let done = self
            .shared
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .outcome
            .is_some();
        f.debug_struct("Closing").field("done", &done).finish()
    }
}

impl Closing {
    /// Runs `close` on a new thread; the future resolves with what it
    /// returns. If no thread can be started, `close` runs here, blocking.
    pub fn start(close: impl FnOnce() -> CloseReport + Send + 'static) -> Self {
        let shared = Arc::new(Mutex::new(Shared::default()));
        let for_thread = Arc::clone(&shared);
        // The closure moves into the thread only if it starts: keep a way to
        // run it here otherwise.
        let close = Arc::new(Mutex::new(Some(close)));
        let for_spawn = Arc::clone(&close);
        let spawned = std::thread::Builder::new()
            .name("kafka-closing".to_owned())
            .spawn(move || {
                let close = for_spawn
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .take();
                let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    close.map(|close| close())
                }));
                let outcome: std::thread::Result<CloseReport> = match outcome {
                    Ok(Some(report)) => Ok(report),
                    Ok(None) => Err(Box::new("the close ran twice") as Box<dyn Any + Send>),
                    Err(panic) => Err(panic),
                };
                let waker = {
                    let mut shared = for_thread.lock().unwrap_or_else(PoisonError::into_inner);
                    shared.outcome = Some(outcome);
                    shared.waker.take()
                };
                if let Some(waker) = waker {
                    waker.wake();
                }
            });
        let thread = match spawned {
            Ok(thread) => Some(thread),
            Err(_) => {
                let close = close.lock().unwrap_or_else(PoisonError::into_inner).take();
                if let Some(close) = close {
                    let report = close();
                    shared
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .outcome = Some(Ok(report));
                }
                None
            }
        };
        Closing { shared, thread }
    }
}

impl Future for Closing {
    type Output = CloseReport;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<CloseReport> {
        let this = self.get_mut();
        let outcome = {
            let mut shared = this.shared.lock().unwrap_or_else(PoisonError::into_inner);
            match shared.outcome.take() {
                Some(outcome) => outcome,
                None => {
                    shared.waker = Some(cx.waker().clone());
                    return Poll::Pending;
                }
            }
        };
        // The thread has handed over its outcome and only returns now: the
        // join waits for nothing but its exit.
        if let Some(thread) = this.thread.take() {
            let _ = thread.join();
        }
        match outcome {
            Ok(report) => Poll::Ready(report),
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn a_slow_close_leaves_the_executor_free() {
        let started = Instant::now();
        let closing = Closing::start(|| {
            std::thread::sleep(Duration::from_millis(300));
            CloseReport {
                commit: Ok(()),
                left_group_in: Some(Duration::from_millis(300)),
            }
        });
        // The executor runs other tasks meanwhile.
        let ticks = tokio::spawn(async {
            let mut ticks = 0;
            while ticks < 5 {
                tokio::time::sleep(Duration::from_millis(10)).await;
                ticks += 1;
            }
            Instant::now()
        });
        let ticked_at = ticks.await.expect("ticker");
        let report = closing.await;
        assert!(report.is_clean());
        assert!(ticked_at < started + Duration::from_millis(250));
        assert!(started.elapsed() >= Duration::from_millis(300));
    }

    #[tokio::test(flavor = "current_thread")]
    #[should_panic(expected = "hook failed")]
    async fn a_panic_in_the_close_reaches_the_awaiting_task() {
        let _ = Closing::start(|| panic!("hook failed")).await;
    }
}
