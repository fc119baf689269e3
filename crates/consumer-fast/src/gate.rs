//! [`PollGate`]: what makes "polled before this seek" decidable.

use std::sync::{PoisonError, TryLockError};

use crate::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Readers of a consumer pass the gate shared, from reading the offset
/// book's generation until their poll of librdkafka returns; a seek passes
/// it exclusively while it invalidates the partition in the book and calls
/// librdkafka's seek.
///
/// librdkafka's seek raises the partition's version barrier before it
/// returns, and a poll drops messages fetched under an older version. So,
/// with the gate, a message is either polled before the seek (its tag is
/// older than the invalidation: stale) or after it (from the new position).
/// Without it, a reader could read the new generation, then poll a message
/// fetched before the seek, and hand it out as current.
#[derive(Debug, Default)]
pub(crate) struct PollGate(RwLock<()>);

impl PollGate {
    /// Passes as a reader, waiting for a seek in progress: for threads of
    /// their own (the Dedicated thread, `poll_blocking`).
    pub(crate) fn read(&self) -> RwLockReadGuard<'_, ()> {
        self.0.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Passes as a reader if no seek is in progress: for executor threads,
    /// which must not wait (`None`: wait for the seek's wake-up instead).
    pub(crate) fn try_read(&self) -> Option<RwLockReadGuard<'_, ()>> {
        match self.0.try_read() {
            Ok(guard) => Some(guard),
            Err(TryLockError::Poisoned(poisoned)) => Some(poisoned.into_inner()),
            Err(TryLockError::WouldBlock) => None,
        }
    }

    /// Passes as a seek: no reader is between its generation and its poll.
    pub(crate) fn seek(&self) -> RwLockWriteGuard<'_, ()> {
        self.0.write().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Model checks of the generation protocol, on the real [`OffsetBook`] and
/// [`PollGate`] built with loom's primitives: `cargo xtask test` runs them
/// with `cargo test -p consumer-fast --features loom --lib loom_`.
///
/// librdkafka's fetch queue is modelled by [`FetchQueue`]: a seek raises the
/// partition's version barrier before it returns, and a pop drops what was
/// fetched under an older version (`rd_kafka_op_version_outdated`).
///
/// [`OffsetBook`]: crate::OffsetBook
#[cfg(all(test, feature = "loom"))]
mod loom_model {
    use loom::sync::Arc;
    use loom::thread;

    use super::PollGate;
    use crate::offsets::{Delivery, OffsetBook};
    use crate::sync::Mutex;

    /// One partition's fetched messages, each with the version it was
    /// fetched under.
    struct FetchQueue(Mutex<(u32, Vec<(u32, i64)>)>);

    impl FetchQueue {
        /// Fetched from the old position: offsets 10 and 11.
        fn fetched_before_the_seek() -> Self {
            FetchQueue(Mutex::new((0, vec![(0, 10), (0, 11)])))
        }

        /// librdkafka's seek: a new version; the fetcher then fetches from
        /// offset 0 under it.
        fn seek_to_zero(&self) {
            let mut queue = self.0.lock().expect("queue");
            queue.0 += 1;
            let version = queue.0;
            queue.1.push((version, 0));
        }

        /// librdkafka's poll: the first message not outdated.
        fn pop(&self) -> Option<i64> {
            let mut queue = self.0.lock().expect("queue");
            let current = queue.0;
            queue.1.retain(|(version, _)| *version == current);
            (!queue.1.is_empty()).then(|| queue.1.remove(0).1)
        }
    }

    /// A reader polls while another thread seeks back to 0; once the seek
    /// has returned, the reader hands out what it polled. Whatever the
    /// interleaving, a message handed out after the seek is from offset 0,
    /// and offset 0, if polled, is handed out (dropping it as stale would
    /// lose it: librdkafka has moved past it).
    fn reader_against_a_seek(gated: bool) {
        loom::model(move || {
            let book = Arc::new(OffsetBook::new());
            let gate = Arc::new(PollGate::default());
            let queue = Arc::new(FetchQueue::fetched_before_the_seek());
            let seeker = {
                let (book, gate, queue) = (book.clone(), gate.clone(), queue.clone());
                thread::spawn(move || {
                    let _seeking = gated.then(|| gate.seek());
                    book.invalidate([("t", 0)]);
                    queue.seek_to_zero();
                })
            };
            // Both sides on threads of their own: loom explores the
            // interleavings of spawned threads fully.
            let reader = {
                let (book, gate, queue) = (book.clone(), gate.clone(), queue.clone());
                thread::spawn(move || {
                    let _polling = gated.then(|| gate.read());
                    let generation = book.generation();
                    (generation, queue.pop())
                })
            };
            let (generation, polled) = reader.join().expect("reader");
            seeker.join().expect("seeker");
            if let Some(offset) = polled {
                let delivery = book.deliver(generation, "t", 0, offset);
                if offset == 0 {
                    assert_eq!(delivery, Delivery::Deliver, "offset 0 was dropped: lost");
                } else {
                    assert_eq!(
                        delivery,
                        Delivery::Stale,
                        "offset {offset}, polled before the seek to 0, was handed out after it"
                    );
                }
            }
        });
    }

    #[test]
    fn loom_a_seek_is_never_overtaken_by_an_earlier_poll() {
        reader_against_a_seek(true);
    }

    /// The control: without the gate, loom finds the interleaving the
    /// Dedicated tier hit (generation read after the invalidation, message
    /// popped before the barrier), so the test above can fail.
    #[test]
    fn loom_without_the_gate_an_earlier_poll_overtakes_the_seek() {
        let outcome = std::panic::catch_unwind(|| reader_against_a_seek(false));
        assert!(
            outcome.is_err(),
            "loom found no bad interleaving without the gate"
        );
    }
}
