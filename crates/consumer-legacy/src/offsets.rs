//! The offset book: the next offset to commit per partition, for the messages
//! the application has been handed, and which partitions were revoked since a
//! message was polled.
//!
//! The same idea as `consumer-fast`'s book, for a consumer without buffers: a
//! `StreamConsumer` message is handed out in the `poll_next` that polled it,
//! and a rebalance is served in a `poll_next` of its own, so a message can only
//! turn stale when two streams of one consumer poll on two threads at once.
//! The generation check covers that case.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use rdkafka::{Offset, TopicPartitionList};

/// Shared between a [`KafkaConsumer`](crate::KafkaConsumer), its streams and
/// its rebalance callback (it lives in the [`TrackingContext`](crate::TrackingContext)).
#[derive(Debug, Default)]
pub(crate) struct OffsetBook {
    /// Bumped under the lock each time partitions are revoked; read lock-free
    /// to tag each poll.
    generation: AtomicU64,
    inner: Mutex<BookInner>,
}

#[derive(Debug, Default)]
struct BookInner {
    /// `(topic, partition, next offset to commit)`: last handed out + 1.
    positions: Vec<(String, i32, i64)>,
    /// `(topic, partition, generation)` of each partition's last revocation.
    revoked: Vec<(String, i32, u64)>,
}

impl OffsetBook {
    /// The generation to tag a poll with, read before polling.
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Records that the message at `topic/partition@offset`, polled at
    /// `generation`, is handed to the application. Returns `false` (and
    /// records nothing) when its partition was revoked since the poll.
    pub(crate) fn deliver(
        &self,
        generation: u64,
        topic: &str,
        partition: i32,
        offset: i64,
    ) -> bool {
        let mut inner = self.lock();
        if generation != self.generation()
            && inner
                .revoked
                .iter()
                .any(|(t, p, at)| *p == partition && t == topic && *at > generation)
        {
            return false;
        }
        match inner
            .positions
            .iter_mut()
            .find(|(t, p, _)| *p == partition && t == topic)
        {
            Some(entry) => entry.2 = offset + 1,
            None => inner
                .positions
                .push((topic.to_owned(), partition, offset + 1)),
        }
        true
    }

    /// Forgets the revoked partitions' positions and returns them (for the
    /// commit on revocation); messages of them polled before now become stale.
    pub(crate) fn revoke<'a>(
        &self,
        partitions: impl IntoIterator<Item = (&'a str, i32)>,
    ) -> TopicPartitionList {
        let mut inner = self.lock();
        let generation = self.generation() + 1;
        let mut forgotten = TopicPartitionList::new();
        for (topic, partition) in partitions {
            match inner
                .revoked
                .iter_mut()
                .find(|(t, p, _)| *p == partition && t == topic)
            {
                Some(entry) => entry.2 = generation,
                None => inner
                    .revoked
                    .push((topic.to_owned(), partition, generation)),
            }
            if let Some(index) = inner
                .positions
                .iter()
                .position(|(t, p, _)| *p == partition && t == topic)
            {
                let (topic, partition, next) = inner.positions.swap_remove(index);
                add(&mut forgotten, &topic, partition, next);
            }
        }
        self.generation.store(generation, Ordering::Release);
        forgotten
    }

    /// Sets a partition's position to `next` (a partition that came back to
    /// this consumer after a failed commit on revocation).
    pub(crate) fn resume(&self, topic: &str, partition: i32, next: i64) {
        let mut inner = self.lock();
        match inner
            .positions
            .iter_mut()
            .find(|(t, p, _)| *p == partition && t == topic)
        {
            Some(entry) => entry.2 = next,
            None => inner.positions.push((topic.to_owned(), partition, next)),
        }
    }

    /// Every recorded position, as offsets to commit.
    pub(crate) fn snapshot(&self) -> TopicPartitionList {
        let inner = self.lock();
        let mut list = TopicPartitionList::with_capacity(inner.positions.len());
        for (topic, partition, next) in &inner.positions {
            add(&mut list, topic, *partition, *next);
        }
        list
    }

    /// The recorded position of one partition.
    pub(crate) fn position(&self, topic: &str, partition: i32) -> Option<i64> {
        self.lock()
            .positions
            .iter()
            .find(|(t, p, _)| *p == partition && t == topic)
            .map(|entry| entry.2)
    }

    fn lock(&self) -> MutexGuard<'_, BookInner> {
        // Every update is a single assignment, push or removal: the book stays
        // consistent even if a holder panicked.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn add(list: &mut TopicPartitionList, topic: &str, partition: i32, offset: i64) {
    if let Err(error) = list.add_partition_offset(topic, partition, Offset::Offset(offset)) {
        tracing::warn!(%topic, partition, offset, %error, "cannot record offset");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handed_out_offsets_are_recorded_as_next_offsets() {
        let book = OffsetBook::default();
        let generation = book.generation();
        assert!(book.deliver(generation, "t", 0, 41));
        assert!(book.deliver(generation, "t", 0, 42));
        assert!(book.deliver(generation, "t", 1, 7));
        assert_eq!(book.position("t", 0), Some(43));
        assert_eq!(book.position("t", 1), Some(8));
        assert_eq!(book.position("u", 0), None);
        assert_eq!(book.snapshot().count(), 2);
    }

    #[test]
    fn revocation_returns_positions_and_makes_earlier_polls_stale() {
        let book = OffsetBook::default();
        let before = book.generation();
        assert!(book.deliver(before, "t", 0, 1));
        assert!(book.deliver(before, "t", 1, 5));
        let forgotten = book.revoke([("t", 0), ("t", 2)]);
        assert_eq!(forgotten.count(), 1);
        assert_eq!(
            forgotten.find_partition("t", 0).map(|e| e.offset()),
            Some(Offset::Offset(2))
        );
        assert_eq!(book.position("t", 0), None);
        // Polled before the revocation: dropped.
        assert!(!book.deliver(before, "t", 0, 2));
        assert_eq!(book.position("t", 0), None);
        // Other partitions polled at the same time are unaffected.
        assert!(book.deliver(before, "t", 1, 6));
        // Polled after the revocation (a new assignment): recorded.
        assert!(book.deliver(book.generation(), "t", 0, 9));
        assert_eq!(book.position("t", 0), Some(10));
    }
}
