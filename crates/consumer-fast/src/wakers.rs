//! [`StreamWakers`]: every reader of a consumer waiting for librdkafka, woken
//! together.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Wake, Waker};
use std::thread::Thread;

use slab::Slab;

/// The wakers of every stream (and polling thread) of one consumer that is
/// waiting for librdkafka's queue to become non-empty.
///
/// librdkafka's non-empty callback fires once per transition from empty to
/// non-empty, and any reader may then take what arrived, so every waiting
/// reader is woken: a single slot would keep only the last registration, and
/// a reader that registered earlier would sleep through the message (as a
/// stream polled once and dropped would take the wake-up with it).
///
/// Registration happens only on the way to `Pending`, so the lock is off the
/// per-message path.
#[derive(Debug, Default)]
pub(crate) struct StreamWakers {
    slots: Mutex<Slab<Option<Waker>>>,
}

impl StreamWakers {
    /// A slot for one reader; release it with [`remove`](Self::remove).
    pub(crate) fn insert(&self) -> usize {
        self.lock().insert(None)
    }

    /// Forgets a reader that will not wait again.
    pub(crate) fn remove(&self, slot: usize) {
        self.lock().try_remove(slot);
    }

    /// Sets the waker to wake when librdkafka has something for this reader.
    pub(crate) fn register(&self, slot: usize, waker: &Waker) {
        if let Some(entry) = self.lock().get_mut(slot) {
            match entry {
                Some(registered) if registered.will_wake(waker) => {}
                _ => *entry = Some(waker.clone()),
            }
        }
    }

    /// Wakes every registered reader once.
    pub(crate) fn wake_all(&self) {
        let wakers: Vec<Waker> = self
            .lock()
            .iter_mut()
            .filter_map(|(_, waker)| waker.take())
            .collect();
        // Woken outside the lock: a waker may run code that registers again.
        for waker in wakers {
            waker.wake();
        }
    }

    fn lock(&self) -> MutexGuard<'_, Slab<Option<Waker>>> {
        // Every update is a single slot write: consistent after a panic too.
        self.slots.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A waker that unparks a thread: the Dedicated polling thread and
/// `poll_blocking` wait for the queue with it.
pub(crate) fn thread_waker(thread: Thread) -> Waker {
    struct Unpark(Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    Waker::from(Arc::new(Unpark(thread)))
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[derive(Default)]
    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn every_registered_reader_is_woken_once_and_a_removed_one_never() {
        let wakers = StreamWakers::default();
        let (a, b) = (Arc::new(Count::default()), Arc::new(Count::default()));
        let slot_a = wakers.insert();
        let slot_b = wakers.insert();
        wakers.register(slot_a, &Waker::from(Arc::clone(&a)));
        wakers.register(slot_b, &Waker::from(Arc::clone(&b)));
        wakers.remove(slot_b);
        wakers.wake_all();
        wakers.wake_all();
        assert_eq!(a.0.load(Ordering::SeqCst), 1, "woken once per registration");
        assert_eq!(b.0.load(Ordering::SeqCst), 0, "removed before the wake");
    }
}
