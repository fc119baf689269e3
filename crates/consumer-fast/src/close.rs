//! Closing a consumer within a deadline: [`close_within`].

use std::sync::mpsc::{RecvTimeoutError, channel};
use std::time::{Duration, Instant};

/// How a close bounded by [`close_within`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseOutcome {
    /// The close finished, after this long.
    Closed(Duration),
    /// The deadline passed first: the close goes on, on its `kafka-close`
    /// thread, which ends when the close does.
    StillClosing,
}

impl CloseOutcome {
    /// How long the close took, if it finished in time.
    pub fn closed_in(self) -> Option<Duration> {
        match self {
            CloseOutcome::Closed(took) => Some(took),
            CloseOutcome::StillClosing => None,
        }
    }
}

/// Runs `close` (the end of an rdkafka consumer: serving what its queue
/// holds, then rdkafka's drop, which is librdkafka's close: the last
/// revocation and `LeaveGroup`) on a thread of its own, named
/// `kafka-close`, and waits up to `timeout` for it.
///
/// librdkafka's close waits for the group coordinator (a `LeaveGroup`, a
/// commit it queued for an absent coordinator) with no bound of its own;
/// this is what bounds a consumer's drop. When `timeout` passes, the
/// caller goes on and the thread is left to finish: it holds the client
/// (its memory, librdkafka's threads and sockets) until librdkafka's close
/// returns, and the group sees the member leave by `session.timeout.ms` at
/// the latest. A close that finishes in time is joined; if it panicked
/// (an application's rebalance hook), the panic is resumed on the caller.
///
/// ```
/// use std::time::Duration;
/// use consumer_fast::{CloseOutcome, close_within};
///
/// let quick = close_within(Duration::from_secs(1), || {});
/// assert!(matches!(quick, CloseOutcome::Closed(_)));
///
/// let stuck = close_within(Duration::from_millis(10), || {
///     std::thread::sleep(Duration::from_millis(200))
/// });
/// assert_eq!(stuck, CloseOutcome::StillClosing);
/// ```
pub fn close_within(timeout: Duration, close: impl FnOnce() + Send + 'static) -> CloseOutcome {
    let started = Instant::now();
    let (done, finished) = channel();
    let closer = std::thread::Builder::new()
        .name("kafka-close".to_owned())
        .spawn(move || {
            close();
            let _ = done.send(());
        });
    let closer = match closer {
        Ok(closer) => closer,
        Err(error) => {
            // The closure, client included, was dropped with the failed
            // spawn: the client's own drop closed it, without a bound.
            tracing::warn!(%error, "cannot start a thread to close the consumer; it was closed without a deadline");
            return CloseOutcome::Closed(started.elapsed());
        }
    };
    match finished.recv_timeout(timeout) {
        Ok(()) | Err(RecvTimeoutError::Disconnected) => match closer.join() {
            Ok(()) => CloseOutcome::Closed(started.elapsed()),
            // A panic in the close (an application's rebalance hook) reaches
            // the caller, as it did when the close ran on its thread; unless
            // the caller is already unwinding (a drop during a panic), when
            // a second panic would abort the process.
            Err(panic) if !std::thread::panicking() => std::panic::resume_unwind(panic),
            Err(_) => {
                tracing::error!(
                    "the consumer's close panicked while the thread was already unwinding"
                );
                CloseOutcome::Closed(started.elapsed())
            }
        },
        Err(RecvTimeoutError::Timeout) => {
            tracing::warn!(
                ?timeout,
                "the consumer did not close in time (the group coordinator does not answer); \
                 its close goes on in the background on thread kafka-close"
            );
            CloseOutcome::StillClosing
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_close_in_time_is_joined_and_a_late_one_left_running() {
        let (closed, closed_signal) = channel();
        let outcome = close_within(Duration::from_secs(5), move || {
            let _ = closed.send(std::thread::current().name().map(str::to_owned));
        });
        assert!(matches!(outcome, CloseOutcome::Closed(took) if took < Duration::from_secs(5)));
        assert_eq!(
            closed_signal.try_recv().ok().flatten().as_deref(),
            Some("kafka-close")
        );

        let (release, released) = channel::<()>();
        let started = Instant::now();
        let outcome = close_within(Duration::from_millis(100), move || {
            let _ = released.recv();
        });
        assert_eq!(outcome, CloseOutcome::StillClosing);
        assert!(started.elapsed() < Duration::from_secs(2));
        drop(release);
    }
}
