//! The offset book: what the application has been handed, per partition, and
//! which partitions were revoked or sought since a message was polled.
//!
//! Offsets enter the book only when a stream yields a message to the caller,
//! so a commit built from it never covers a message still in a buffer.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use rdkafka::{Offset, TopicPartitionList};

/// Shared between a [`Consumer`](crate::Consumer), its streams and its
/// rebalance callback.
#[derive(Debug, Default)]
pub(crate) struct OffsetBook {
    /// Bumped under the lock each time partitions are invalidated; read
    /// lock-free to tag each polled message.
    generation: AtomicU64,
    inner: Mutex<BookInner>,
}

#[derive(Debug, Default)]
struct BookInner {
    /// The next offset to commit (last yielded + 1) per partition.
    positions: Vec<PartitionOffset>,
    /// The generation at which each partition was last invalidated.
    invalidated: Vec<(String, i32, u64)>,
}

impl BookInner {
    fn invalidated_after(&self, generation: u64, topic: &str, partition: i32) -> bool {
        self.invalidated
            .iter()
            .any(|(t, p, at)| *p == partition && t == topic && *at > generation)
    }
}

#[derive(Debug)]
struct PartitionOffset {
    topic: String,
    partition: i32,
    next_offset: i64,
}

/// Whether a polled message may still be handed to the application.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Delivery {
    /// Recorded: hand it out.
    Deliver,
    /// Its partition was revoked or sought after it was polled: drop it.
    Stale,
}

impl OffsetBook {
    /// The generation to tag a freshly polled message with.
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Records that the message at `topic/partition@offset`, polled at
    /// `generation`, is being handed to the application, unless its partition
    /// was invalidated since.
    pub(crate) fn deliver(
        &self,
        generation: u64,
        topic: &str,
        partition: i32,
        offset: i64,
    ) -> Delivery {
        let mut inner = self.lock();
        if generation != self.generation.load(Ordering::Acquire)
            && inner.invalidated_after(generation, topic, partition)
        {
            return Delivery::Stale;
        }
        match inner
            .positions
            .iter_mut()
            .find(|entry| entry.partition == partition && entry.topic == topic)
        {
            Some(entry) => entry.next_offset = offset + 1,
            None => inner.positions.push(PartitionOffset {
                topic: topic.to_owned(),
                partition,
                next_offset: offset + 1,
            }),
        }
        Delivery::Deliver
    }

    /// Whether a message of `topic/partition` polled at `generation` may no
    /// longer be handed out.
    pub(crate) fn is_stale(&self, generation: u64, topic: &str, partition: i32) -> bool {
        self.lock().invalidated_after(generation, topic, partition)
    }

    /// Marks partitions so that messages polled before now are not delivered.
    /// With `forget`, their positions leave the book and are returned (for a
    /// final commit on revocation).
    pub(crate) fn invalidate<'a>(
        &self,
        partitions: impl IntoIterator<Item = (&'a str, i32)>,
        forget: bool,
    ) -> TopicPartitionList {
        let mut inner = self.lock();
        let generation = self.generation.load(Ordering::Acquire) + 1;
        let mut forgotten = TopicPartitionList::new();
        for (topic, partition) in partitions {
            match inner
                .invalidated
                .iter_mut()
                .find(|(t, p, _)| *p == partition && t == topic)
            {
                Some(entry) => entry.2 = generation,
                None => inner
                    .invalidated
                    .push((topic.to_owned(), partition, generation)),
            }
            if forget
                && let Some(index) = inner
                    .positions
                    .iter()
                    .position(|entry| entry.partition == partition && entry.topic == topic)
            {
                let entry = inner.positions.swap_remove(index);
                add(
                    &mut forgotten,
                    &entry.topic,
                    entry.partition,
                    entry.next_offset,
                );
            }
        }
        self.generation.store(generation, Ordering::Release);
        forgotten
    }

    /// Every recorded position, as offsets to commit.
    pub(crate) fn snapshot(&self) -> TopicPartitionList {
        let inner = self.lock();
        let mut list = TopicPartitionList::with_capacity(inner.positions.len());
        for entry in &inner.positions {
            add(&mut list, &entry.topic, entry.partition, entry.next_offset);
        }
        list
    }

    /// The recorded position of one partition.
    pub(crate) fn position(&self, topic: &str, partition: i32) -> Option<i64> {
        self.lock()
            .positions
            .iter()
            .find(|entry| entry.partition == partition && entry.topic == topic)
            .map(|entry| entry.next_offset)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BookInner> {
        // The book stays consistent even if a holder panicked: every update is
        // a single assignment or push.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn add(list: &mut TopicPartitionList, topic: &str, partition: i32, offset: i64) {
    // Adding an offset to a fresh list entry cannot fail for a valid offset.
    if let Err(error) = list.add_partition_offset(topic, partition, Offset::Offset(offset)) {
        tracing::warn!(%topic, partition, offset, %error, "cannot record offset");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivered_offsets_are_recorded_as_next_offsets() {
        let book = OffsetBook::default();
        let generation = book.generation();
        assert_eq!(book.deliver(generation, "t", 0, 41), Delivery::Deliver);
        assert_eq!(book.deliver(generation, "t", 0, 42), Delivery::Deliver);
        assert_eq!(book.deliver(generation, "t", 1, 7), Delivery::Deliver);
        assert_eq!(book.position("t", 0), Some(43));
        assert_eq!(book.position("t", 1), Some(8));
        assert_eq!(book.snapshot().count(), 2);
    }

    #[test]
    fn messages_polled_before_a_revocation_are_stale() {
        let book = OffsetBook::default();
        let before = book.generation();
        book.deliver(before, "t", 0, 1);
        let forgotten = book.invalidate([("t", 0)], true);
        assert_eq!(
            forgotten.find_partition("t", 0).map(|e| e.offset()),
            Some(Offset::Offset(2))
        );
        assert_eq!(book.deliver(before, "t", 0, 2), Delivery::Stale);
        // Other partitions polled at the same time are unaffected.
        assert_eq!(book.deliver(before, "t", 1, 2), Delivery::Deliver);
        // Messages polled after the revocation (a new assignment) are fine.
        assert_eq!(
            book.deliver(book.generation(), "t", 0, 5),
            Delivery::Deliver
        );
        assert_eq!(book.position("t", 0), Some(6));
    }

    #[test]
    fn seeking_keeps_the_position_but_drops_older_polls() {
        let book = OffsetBook::default();
        let before = book.generation();
        book.deliver(before, "t", 0, 9);
        let forgotten = book.invalidate([("t", 0)], false);
        assert_eq!(forgotten.count(), 0);
        assert_eq!(book.position("t", 0), Some(10));
        assert_eq!(book.deliver(before, "t", 0, 10), Delivery::Stale);
    }
}
