//! [`OffsetBook`]: what the application has been handed, per partition, and
//! which partitions were revoked or sought since a message was polled.
//!
//! Offsets enter the book only when a consumer hands a message to the
//! application, so a commit built from it never covers a message still in a
//! buffer.

use std::sync::PoisonError;

use rdkafka::{Offset, TopicPartitionList};

use crate::sync::{AtomicU64, Mutex, MutexGuard, Ordering};

/// The offset book: the next offset to commit per partition, for the messages
/// the application has been handed, and a generation counter that tells
/// whether a polled message may still be handed out.
///
/// It is the building block both consumers of `tiered-kafka` keep their
/// at-least-once promise with: this crate's [`Consumer`](crate::Consumer) and
/// `consumer-legacy`'s `KafkaConsumer`. Share one book between a consumer,
/// its streams and its rebalance callback (served by a
/// [`RevocationPolicy`](crate::RevocationPolicy)):
///
/// 1. Before polling, read the [`generation`](Self::generation) and tag the
///    polled message with it.
/// 2. When the message is handed to the application, [`deliver`](Self::deliver)
///    it: its offset is recorded, unless its partition was revoked or sought
///    since it was polled ([`Delivery::Stale`]: drop it, its partition's new
///    owner or new position reads it).
/// 3. Commit the [`snapshot`](Self::snapshot): exactly what was handed out.
///
/// ```
/// use consumer_fast::{Delivery, OffsetBook};
///
/// let book = OffsetBook::new();
/// let polled_at = book.generation();
/// assert_eq!(book.deliver(polled_at, "orders", 0, 41), Delivery::Deliver);
/// assert_eq!(book.position("orders", 0), Some(42));
///
/// // The partition is revoked: its position leaves the book (to be committed
/// // before the revocation completes), and what was polled before is stale.
/// let to_commit = book.revoke([("orders", 0)]);
/// assert_eq!(to_commit.count(), 1);
/// assert_eq!(book.deliver(polled_at, "orders", 0, 42), Delivery::Stale);
/// ```
#[derive(Debug, Default)]
pub struct OffsetBook {
    /// Bumped under the lock each time partitions are invalidated; read
    /// lock-free to tag each polled message.
    generation: AtomicU64,
    inner: Mutex<BookInner>,
}

#[derive(Debug, Default)]
struct BookInner {
    /// The next offset to commit (last handed out + 1) per partition.
    positions: Vec<PartitionOffset>,
    /// The generation at which each partition was last invalidated.
    invalidated: Vec<(String, i32, u64)>,
    /// Whether a position changed since [`OffsetBook::changed_snapshot`].
    changed: bool,
}

impl BookInner {
    fn invalidated_after(&self, generation: u64, topic: &str, partition: i32) -> bool {
        self.invalidated
            .iter()
            .any(|(t, p, at)| *p == partition && t == topic && *at > generation)
    }

    fn set_position(&mut self, topic: &str, partition: i32, next_offset: i64) {
        self.set_position_with(topic, partition, next_offset, None);
    }

    fn set_position_with(
        &mut self,
        topic: &str,
        partition: i32,
        next_offset: i64,
        metadata: Option<String>,
    ) {
        self.changed = true;
        match self
            .positions
            .iter_mut()
            .find(|entry| entry.partition == partition && entry.topic == topic)
        {
            Some(entry) => {
                entry.next_offset = next_offset;
                entry.metadata = metadata;
            }
            None => self.positions.push(PartitionOffset {
                topic: topic.to_owned(),
                partition,
                next_offset,
                metadata,
            }),
        }
    }
}

#[derive(Debug)]
struct PartitionOffset {
    topic: String,
    partition: i32,
    next_offset: i64,
    /// Committed with the offset: concurrent processing's completed offsets
    /// above it.
    metadata: Option<String>,
}

/// The offset book held for a run of deliveries, from
/// [`OffsetBook::deliveries`].
#[derive(Debug)]
pub(crate) struct Deliveries<'a> {
    book: &'a OffsetBook,
    inner: MutexGuard<'a, BookInner>,
}

impl Deliveries<'_> {
    /// As [`OffsetBook::deliver`], under the lock already held.
    pub(crate) fn deliver(
        &mut self,
        generation: u64,
        topic: &str,
        partition: i32,
        offset: i64,
    ) -> Delivery {
        if generation != self.book.generation()
            && self.inner.invalidated_after(generation, topic, partition)
        {
            return Delivery::Stale;
        }
        self.inner.set_position(topic, partition, offset + 1);
        Delivery::Deliver
    }
}

/// Whether a polled message may still be handed to the application, from
/// [`OffsetBook::deliver`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Recorded: hand it out.
    Deliver,
    /// Its partition was revoked or sought after it was polled, and nothing
    /// was recorded: drop it.
    Stale,
}

impl OffsetBook {
    /// An empty book.
    pub fn new() -> Self {
        Self::default()
    }

    /// The generation to tag a message with, read before polling it.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Records that the message at `topic/partition@offset`, polled at
    /// `generation`, is being handed to the application: the partition's
    /// position becomes `offset + 1`. Records nothing and returns
    /// [`Delivery::Stale`] when the partition was revoked or sought since.
    pub fn deliver(&self, generation: u64, topic: &str, partition: i32, offset: i64) -> Delivery {
        self.deliveries()
            .deliver(generation, topic, partition, offset)
    }

    /// Holds the book for several [`deliver`](Self::deliver)s in a row (a
    /// batch handed out at once): one lock for all of them. Revocations and
    /// seeks wait until it is dropped, and any other call on the book from
    /// the same thread would deadlock: keep it for the hand-out only.
    pub(crate) fn deliveries(&self) -> Deliveries<'_> {
        Deliveries {
            book: self,
            inner: self.lock(),
        }
    }

    /// Whether a message of `topic/partition` polled at `generation` may no
    /// longer be handed out (its partition was revoked or sought since).
    pub fn is_stale(&self, generation: u64, topic: &str, partition: i32) -> bool {
        self.lock().invalidated_after(generation, topic, partition)
    }

    /// Marks partitions whose read position moved (a seek): messages of them
    /// polled before now become stale. Their recorded positions stay.
    pub fn invalidate<'a>(&self, partitions: impl IntoIterator<Item = (&'a str, i32)>) {
        self.mark(partitions, false);
    }

    /// Forgets revoked partitions and returns their recorded positions (the
    /// offsets to commit before the revocation completes); messages of them
    /// polled before now become stale. A later [`snapshot`](Self::snapshot)
    /// never covers a partition this consumer no longer owns.
    pub fn revoke<'a>(
        &self,
        partitions: impl IntoIterator<Item = (&'a str, i32)>,
    ) -> TopicPartitionList {
        self.mark(partitions, true)
    }

    /// Sets a partition's position to `next_offset`: a partition that came
    /// back to this consumer after the commit on its revocation failed.
    pub(crate) fn resume(&self, topic: &str, partition: i32, next_offset: i64) {
        self.lock().set_position(topic, partition, next_offset);
    }

    /// Sets a partition's position and the metadata to commit with it:
    /// concurrent processing's commit point, which may move back (a message
    /// redelivered), and its completed offsets above it.
    pub(crate) fn set_completed(
        &self,
        topic: &str,
        partition: i32,
        next_offset: i64,
        metadata: String,
    ) {
        let metadata = (!metadata.is_empty()).then_some(metadata);
        self.lock()
            .set_position_with(topic, partition, next_offset, metadata);
    }

    /// Every recorded position, as the offsets to commit.
    pub fn snapshot(&self) -> TopicPartitionList {
        Self::list(&self.lock())
    }

    /// Like [`snapshot`](Self::snapshot), but `None` when no position changed
    /// since the last call: an idle stream need not hand librdkafka the same
    /// offsets again each time it goes to sleep.
    pub fn changed_snapshot(&self) -> Option<TopicPartitionList> {
        let mut inner = self.lock();
        if !std::mem::take(&mut inner.changed) {
            return None;
        }
        Some(Self::list(&inner))
    }

    fn list(inner: &BookInner) -> TopicPartitionList {
        let mut list = TopicPartitionList::with_capacity(inner.positions.len());
        for entry in &inner.positions {
            add_entry(&mut list, entry);
        }
        list
    }

    /// The recorded position of one partition: the offset of the next message
    /// the application will be handed, if it has been handed one.
    pub fn position(&self, topic: &str, partition: i32) -> Option<i64> {
        self.lock()
            .positions
            .iter()
            .find(|entry| entry.partition == partition && entry.topic == topic)
            .map(|entry| entry.next_offset)
    }

    /// Bumps the generation for `partitions`; with `forget`, their positions
    /// leave the book and are returned.
    fn mark<'a>(
        &self,
        partitions: impl IntoIterator<Item = (&'a str, i32)>,
        forget: bool,
    ) -> TopicPartitionList {
        let mut inner = self.lock();
        let generation = self.generation() + 1;
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
                add_entry(&mut forgotten, &entry);
            }
        }
        self.generation.store(generation, Ordering::Release);
        forgotten
    }

    fn lock(&self) -> MutexGuard<'_, BookInner> {
        // Every update is a single assignment, push or removal: the book stays
        // consistent even if a holder panicked.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Adds a recorded position, with its metadata, to a list of offsets to commit.
fn add_entry(list: &mut TopicPartitionList, entry: &PartitionOffset) {
    add(list, &entry.topic, entry.partition, entry.next_offset);
    if let Some(metadata) = &entry.metadata
        && let Some(mut element) = list.find_partition(&entry.topic, entry.partition)
    {
        element.set_metadata(metadata);
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
        let book = OffsetBook::new();
        let generation = book.generation();
        assert_eq!(book.deliver(generation, "t", 0, 41), Delivery::Deliver);
        assert_eq!(book.deliver(generation, "t", 0, 42), Delivery::Deliver);
        assert_eq!(book.deliver(generation, "t", 1, 7), Delivery::Deliver);
        assert_eq!(book.position("t", 0), Some(43));
        assert_eq!(book.position("t", 1), Some(8));
        assert_eq!(book.position("u", 0), None);
        assert_eq!(book.snapshot().count(), 2);
    }

    #[test]
    fn revocation_returns_positions_and_makes_earlier_polls_stale() {
        let book = OffsetBook::new();
        let before = book.generation();
        assert_eq!(book.deliver(before, "t", 0, 1), Delivery::Deliver);
        assert_eq!(book.deliver(before, "t", 1, 5), Delivery::Deliver);
        let forgotten = book.revoke([("t", 0), ("t", 2)]);
        assert_eq!(forgotten.count(), 1);
        assert_eq!(
            forgotten.find_partition("t", 0).map(|e| e.offset()),
            Some(Offset::Offset(2))
        );
        assert_eq!(book.position("t", 0), None);
        // Polled before the revocation: dropped, nothing recorded.
        assert!(book.is_stale(before, "t", 0));
        assert_eq!(book.deliver(before, "t", 0, 2), Delivery::Stale);
        assert_eq!(book.position("t", 0), None);
        // Other partitions polled at the same time are unaffected.
        assert!(!book.is_stale(before, "t", 1));
        assert_eq!(book.deliver(before, "t", 1, 6), Delivery::Deliver);
        // Polled after the revocation (a new assignment): recorded.
        assert_eq!(
            book.deliver(book.generation(), "t", 0, 9),
            Delivery::Deliver
        );
        assert_eq!(book.position("t", 0), Some(10));
    }

    #[test]
    fn seeking_keeps_the_position_but_drops_older_polls() {
        let book = OffsetBook::new();
        let before = book.generation();
        assert_eq!(book.deliver(before, "t", 0, 9), Delivery::Deliver);
        book.invalidate([("t", 0)]);
        assert_eq!(book.position("t", 0), Some(10));
        assert_eq!(book.deliver(before, "t", 0, 10), Delivery::Stale);
    }

    #[test]
    fn a_resumed_partition_is_committed_from_its_position() {
        let book = OffsetBook::new();
        book.resume("t", 3, 17);
        assert_eq!(book.position("t", 3), Some(17));
        book.resume("t", 3, 20);
        assert_eq!(book.position("t", 3), Some(20));
        assert_eq!(book.snapshot().count(), 1);
    }

    #[test]
    fn deliveries_under_one_lock_record_as_deliver_does() {
        let book = OffsetBook::new();
        let before = book.generation();
        book.invalidate([("t", 1)]);
        {
            let mut deliveries = book.deliveries();
            for offset in 0..3 {
                assert_eq!(
                    deliveries.deliver(before, "t", 0, offset),
                    Delivery::Deliver
                );
            }
            assert_eq!(deliveries.deliver(before, "t", 1, 9), Delivery::Stale);
        }
        assert_eq!(book.position("t", 0), Some(3));
        assert_eq!(book.position("t", 1), None);
    }

    #[test]
    fn changed_snapshot_only_after_a_delivery() {
        let book = OffsetBook::default();
        assert!(book.changed_snapshot().is_none());
        book.deliver(book.generation(), "t", 0, 3);
        assert_eq!(book.changed_snapshot().map(|list| list.count()), Some(1));
        assert!(book.changed_snapshot().is_none(), "nothing new since");
        assert_eq!(
            book.snapshot().count(),
            1,
            "snapshot always lists every position"
        );
    }
}

/// The generation protocol against a plain model, over random sequences of
/// polls, hand-outs, seeks and revocations: a polled record may be handed
/// out (and is recorded) exactly when its partition was neither sought nor
/// revoked since it was polled, and the book's positions are the model's.
#[cfg(test)]
mod properties {
    use std::collections::{BTreeMap, VecDeque};

    use proptest::prelude::*;

    use super::*;

    #[derive(Debug, Clone)]
    enum Op {
        Poll(i32),
        /// Hands out the oldest polled record of this partition, if any.
        HandOut(i32),
        Seek(i32),
        Revoke(i32),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0..3).prop_map(Op::Poll),
            4 => (0..3).prop_map(Op::HandOut),
            1 => (0..3).prop_map(Op::Seek),
            1 => (0..3).prop_map(Op::Revoke),
        ]
    }

    /// A polled record: its offset, the book's generation at the poll, and
    /// the step at which it was polled.
    struct Polled {
        offset: i64,
        generation: u64,
        step: usize,
    }

    proptest! {
        #[test]
        fn the_book_keeps_the_protocol(ops in proptest::collection::vec(op(), 1..80)) {
            let book = OffsetBook::new();
            let mut next_offset: BTreeMap<i32, i64> = BTreeMap::new();
            let mut polled: BTreeMap<i32, VecDeque<Polled>> = BTreeMap::new();
            // The model: the step of each partition's last seek or
            // revocation, and the recorded positions.
            let mut invalidated_at: BTreeMap<i32, usize> = BTreeMap::new();
            let mut positions: BTreeMap<i32, i64> = BTreeMap::new();
            for (step, op) in ops.into_iter().enumerate() {
                match op {
                    Op::Poll(p) => {
                        let offset = next_offset.entry(p).or_insert(0);
                        polled.entry(p).or_default().push_back(Polled {
                            offset: *offset,
                            generation: book.generation(),
                            step,
                        });
                        *offset += 1;
                    }
                    Op::HandOut(p) => {
                        let Some(record) = polled.entry(p).or_default().pop_front() else {
                            continue;
                        };
                        let stale = invalidated_at.get(&p).is_some_and(|at| *at > record.step);
                        let delivery = book.deliver(record.generation, "t", p, record.offset);
                        prop_assert_eq!(
                            delivery,
                            if stale { Delivery::Stale } else { Delivery::Deliver },
                            "partition {} offset {}", p, record.offset
                        );
                        if !stale {
                            positions.insert(p, record.offset + 1);
                        }
                    }
                    Op::Seek(p) => {
                        book.invalidate([("t", p)]);
                        invalidated_at.insert(p, step);
                    }
                    Op::Revoke(p) => {
                        let forgotten = book.revoke([("t", p)]);
                        invalidated_at.insert(p, step);
                        let expected = positions.remove(&p);
                        prop_assert_eq!(
                            forgotten.find_partition("t", p).and_then(|e| e.offset().to_raw()),
                            expected
                        );
                        prop_assert_eq!(forgotten.count(), usize::from(expected.is_some()));
                    }
                }
                for p in 0..3 {
                    prop_assert_eq!(book.position("t", p), positions.get(&p).copied());
                }
                prop_assert_eq!(book.snapshot().count(), positions.len());
            }
        }
    }
}
