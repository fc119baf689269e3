//! The engine of concurrent processing: a polling thread that routes each
//! message to its order group, the state the hand-out and the
//! acknowledgements share, the commits, and the rebalance hook.

use std::collections::{HashMap, VecDeque};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::task::Waker;
use std::thread::Thread;
use std::time::{Duration, Instant};

use consumer_api::{ConsumerError, Message, OwnedRecord};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer as _};
use rdkafka::{Message as _, Offset, TopicPartitionList};

use crate::FastContext;
use crate::consumer::{Consumer, WakerSlot};
use crate::process::options::{ProcessOptions, ProcessingOrder};
use crate::process::tracker::{CompletedOffsets, PartitionTracker, Received, decode_metadata};
use crate::wakers::thread_waker;

/// The most messages the polling thread takes from librdkafka before it
/// looks at pauses and commits again.
const POLL_BATCH: usize = 256;
/// How many events a round may serve without finding a message or an empty
/// queue.
const MAX_EVENTS_PER_ROUND: usize = 1024;
/// How long the polling thread sleeps when librdkafka has nothing (it polls
/// anyway after that: librdkafka counts polls for `max.poll.interval.ms`).
const IDLE_POLL: Duration = Duration::from_millis(100);
/// How long the lookup of the committed offsets of newly assigned partitions
/// may take.
const COMMITTED_LOOKUP_TIMEOUT: Duration = Duration::from_secs(10);
/// A partition paused because its commit metadata was nearly full resumes
/// when this many more offsets would fit.
const METADATA_RESUME_ROOM: u64 = 1024;

/// What concurrent processing does when partitions are assigned or revoked;
/// [`FastContext`] calls it from its rebalance callback, on the polling
/// thread.
pub(crate) trait RebalanceHook: Send + Sync + std::fmt::Debug {
    /// The assignment is applied: read the committed offsets and metadata of
    /// `partitions`.
    fn assigned(&self, consumer: &BaseConsumer<FastContext>, partitions: &TopicPartitionList);
    /// `partitions` are being revoked: stop starting their messages, wait
    /// (bounded) for those being handled, and put their commit points in
    /// the book for the revocation's commit.
    fn revoking(&self, consumer: &BaseConsumer<FastContext>, partitions: &TopicPartitionList);
}

/// A partition, as the engine names it.
pub(crate) type PartitionId = (Arc<str>, i32);

/// Which messages wait for one another.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum GroupKey {
    /// The messages with this key.
    Key(Vec<u8>),
    /// The messages without a key.
    NoKey,
    /// Every message of the partition.
    Partition,
}

/// A message waiting for its turn.
pub(crate) struct Entry<K, V> {
    pub(crate) offset: i64,
    pub(crate) group: Option<GroupKey>,
    pub(crate) record: OwnedRecord,
    pub(crate) message: Result<Message<K, V>, ConsumerError>,
}

/// A message handed out, as the engine knows it: what its acknowledgement
/// needs.
#[derive(Debug, Clone)]
pub(crate) struct Ticket {
    pub(crate) partition: PartitionId,
    pub(crate) epoch: u64,
    pub(crate) offset: i64,
    pub(crate) group: Option<GroupKey>,
}

/// One assigned partition's state.
struct PartitionState<K, V> {
    /// Distinguishes this assignment of the partition from earlier ones: an
    /// acknowledgement from before a revocation changes nothing.
    epoch: u64,
    tracker: PartitionTracker,
    /// Order groups with a message ready or being handled, and the messages
    /// waiting behind it.
    groups: HashMap<GroupKey, VecDeque<Entry<K, V>>>,
    /// Messages that may start now.
    ready: VecDeque<Entry<K, V>>,
    /// Messages handed out and not acknowledged.
    in_flight: usize,
    /// Messages held: ready, waiting in a group, or handed out.
    held: usize,
    /// Revoked: nothing more starts.
    revoking: bool,
    /// Paused because its commit metadata is nearly full.
    paused_for_metadata: bool,
    /// What was last committed: the commit point and metadata.
    committed: Option<(i64, String)>,
}

impl<K, V> PartitionState<K, V> {
    fn new(epoch: u64, committed: Option<i64>, done_before: CompletedOffsets) -> Self {
        PartitionState {
            epoch,
            tracker: PartitionTracker::new(committed, done_before),
            groups: HashMap::new(),
            ready: VecDeque::new(),
            in_flight: 0,
            held: 0,
            revoking: false,
            paused_for_metadata: false,
            committed: None,
        }
    }
}

/// The state the polling thread, the hand-out and the acknowledgements share.
struct State<K, V> {
    partitions: HashMap<PartitionId, PartitionState<K, V>>,
    /// Partitions that may have ready messages, in turn.
    turn: VecDeque<PartitionId>,
    /// Messages handed out and not acknowledged, across partitions.
    in_flight: usize,
    /// Messages held, across partitions.
    held: usize,
    /// Errors that are about no message (a broker down), for the stream.
    errors: VecDeque<ConsumerError>,
    /// The task waiting for a message.
    waker: Option<Waker>,
    next_epoch: u64,
    /// Every assigned partition is paused: too many messages held.
    paused_for_room: bool,
    /// The polling thread has ended.
    poller_ended: bool,
}

/// Concurrent processing's engine, shared by its polling thread, its stream
/// and every acknowledgement handle.
pub(crate) struct Engine<K, V> {
    pub(crate) consumer: Arc<Consumer<K, V>>,
    pub(crate) options: ProcessOptions,
    state: Mutex<State<K, V>>,
    /// Signalled whenever a message handed out is acknowledged or returned.
    settled: Condvar,
    stop: AtomicBool,
    /// The polling thread, to wake when room frees up.
    poller: Mutex<Option<Thread>>,
}

impl<K, V> std::fmt::Debug for Engine<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl<K: Send + 'static, V: Send + 'static> Engine<K, V> {
    /// An engine over `consumer`; nothing runs until [`run_poller`](Self::run_poller).
    pub(crate) fn new(consumer: Arc<Consumer<K, V>>, options: ProcessOptions) -> Self {
        Engine {
            consumer,
            options,
            state: Mutex::new(State {
                partitions: HashMap::new(),
                turn: VecDeque::new(),
                in_flight: 0,
                held: 0,
                errors: VecDeque::new(),
                waker: None,
                next_epoch: 0,
                paused_for_room: false,
                poller_ended: false,
            }),
            settled: Condvar::new(),
            stop: AtomicBool::new(false),
            poller: Mutex::new(None),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State<K, V>> {
        // Every update keeps the counts and queues consistent between
        // statements that cannot panic.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The polling thread's loop, until [`stop`](Self::stop); then a last
    /// commit of what was completed.
    pub(crate) fn run_poller(&self) {
        *self.poller.lock().unwrap_or_else(PoisonError::into_inner) = Some(std::thread::current());
        let outcome = catch_unwind(AssertUnwindSafe(|| self.poll_until_stopped()));
        if outcome.is_err() {
            tracing::error!(
                "the concurrent processing thread panicked; the stream ends with ConsumerError::Closed"
            );
        }
        self.commit();
        let mut state = self.lock();
        state.poller_ended = true;
        if let Some(waker) = state.waker.take() {
            waker.wake();
        }
        drop(state);
        self.settled.notify_all();
    }

    fn poll_until_stopped(&self) {
        let consumer = &self.consumer;
        let slot = WakerSlot::new(&consumer.wakers);
        let waker = thread_waker(std::thread::current());
        let mut last_commit = Instant::now();
        while !self.stop.load(Ordering::Acquire) {
            let took = {
                // This thread may wait here for a seek to finish.
                let _polling = consumer.gate.read();
                self.poll_round()
            };
            self.resume_where_room();
            if last_commit.elapsed() >= self.options.commit_interval {
                self.commit();
                last_commit = Instant::now();
            }
            if took == 0 {
                // Registered before looking, so a message arriving in
                // between still unparks the thread.
                slot.register(&waker);
                if consumer.queue_len() == 0 && !self.stop.load(Ordering::Acquire) {
                    let until_commit = self
                        .options
                        .commit_interval
                        .saturating_sub(last_commit.elapsed());
                    std::thread::park_timeout(
                        IDLE_POLL.min(until_commit).max(Duration::from_millis(1)),
                    );
                }
            }
        }
    }

    /// Takes up to [`POLL_BATCH`] messages from librdkafka (serving the
    /// events in between: rebalances, commit answers); returns how many.
    fn poll_round(&self) -> usize {
        let consumer = &self.consumer;
        let mut took = 0;
        let mut events = 0;
        while took < POLL_BATCH && !self.stop.load(Ordering::Acquire) {
            let generation = consumer.book.generation();
            match consumer.base.poll(Duration::ZERO) {
                Some(Ok(record)) => {
                    took += 1;
                    if consumer
                        .book
                        .is_stale(generation, record.topic(), record.partition())
                    {
                        continue;
                    }
                    let owned = OwnedRecord::from_kafka(&record);
                    drop(record);
                    self.receive(owned);
                }
                Some(Err(error)) => {
                    took += 1;
                    let error = consumer.base.context().reasons.attach(error);
                    let mut state = self.lock();
                    state.errors.push_back(error);
                    if let Some(waker) = state.waker.take() {
                        waker.wake();
                    }
                }
                None if consumer.queue_len() == 0 => break,
                None => {
                    events += 1;
                    if events >= MAX_EVENTS_PER_ROUND {
                        break;
                    }
                }
            }
        }
        took
    }

    /// Routes a message polled to its partition and order group, and pauses
    /// fetching where the bounds say so.
    fn receive(&self, record: Result<OwnedRecord, ConsumerError>) {
        let (record, message) = match record {
            Ok(record) => {
                let message = self.decode(&record);
                (record, message)
            }
            Err(error) => {
                // A header key that is not UTF-8: the record, bytes and all,
                // cannot be read; it is handed out as that error.
                let ConsumerError::Deserialize {
                    topic,
                    partition,
                    offset,
                    ..
                } = &error
                else {
                    tracing::error!(%error, "a record could not be read");
                    return;
                };
                let record = OwnedRecord {
                    topic: topic.clone(),
                    partition: *partition,
                    offset: *offset,
                    timestamp: consumer_api::Timestamp::NotAvailable,
                    key: None,
                    value: None,
                    headers: consumer_api::Headers::new(),
                };
                (record, Err(error))
            }
        };
        let group = match self.options.ordering {
            ProcessingOrder::Unordered => None,
            ProcessingOrder::Partition => Some(GroupKey::Partition),
            ProcessingOrder::Key => Some(match &record.key {
                Some(key) => GroupKey::Key(key.clone()),
                None => GroupKey::NoKey,
            }),
        };
        let id: PartitionId = (Arc::from(record.topic.as_str()), record.partition);
        let offset = record.offset;
        let entry = Entry {
            offset,
            group,
            record,
            message,
        };
        let mut to_pause = Vec::new();
        let mut guard = self.lock();
        let state = &mut *guard;
        if !state.partitions.contains_key(&id) {
            // Assigned before processing started: no metadata was read back.
            let epoch = state.next_epoch;
            state.next_epoch += 1;
            state.partitions.insert(
                id.clone(),
                PartitionState::new(epoch, None, CompletedOffsets::default()),
            );
        }
        let Some(partition) = state.partitions.get_mut(&id) else {
            return;
        };
        if partition.revoking {
            return;
        }
        match partition.tracker.received(offset) {
            Received::Process => {}
            Received::AlreadyDone | Received::Repeat => return,
        }
        partition.held += 1;
        state.held += 1;
        let was_empty = partition.ready.is_empty();
        let mut made_ready = false;
        match &entry.group {
            None => {
                partition.ready.push_back(entry);
                made_ready = true;
            }
            Some(group) => match partition.groups.get_mut(group) {
                Some(waiting) => waiting.push_back(entry),
                None => {
                    partition.groups.insert(group.clone(), VecDeque::new());
                    partition.ready.push_back(entry);
                    made_ready = true;
                }
            },
        }
        if made_ready && was_empty {
            state.turn.push_back(id.clone());
        }
        if !partition.paused_for_metadata
            && !partition
                .tracker
                .has_room(self.options.max_metadata_bytes, POLL_BATCH as u64)
        {
            partition.paused_for_metadata = true;
            to_pause.push(id.clone());
            tracing::info!(topic = %id.0, partition = id.1, "pausing a partition: its commit metadata is nearly full until earlier messages finish");
        }
        if !state.paused_for_room && state.held >= self.options.max_buffered {
            state.paused_for_room = true;
            to_pause.extend(state.partitions.keys().cloned());
            tracing::debug!(
                held = state.held,
                "pausing fetching: the most messages are held"
            );
        }
        if made_ready && let Some(waker) = state.waker.take() {
            waker.wake();
        }
        drop(guard);
        if !to_pause.is_empty() {
            self.pause(&to_pause);
        }
    }

    fn decode(&self, record: &OwnedRecord) -> Result<Message<K, V>, ConsumerError> {
        record.decode(&*self.consumer.key_serde, &*self.consumer.value_serde)
    }

    /// Decodes a message handed out before, for another attempt.
    pub(crate) fn decode_again(
        &self,
        record: &OwnedRecord,
    ) -> Result<Message<K, V>, ConsumerError> {
        self.decode(record)
    }

    fn pause(&self, partitions: &[PartitionId]) {
        let list = list_of(partitions);
        if let Err(error) = self.consumer.base.pause(&list) {
            tracing::warn!(%error, "cannot pause fetching");
        }
    }

    /// Resumes what was paused for room or metadata and has room again;
    /// leaves alone what the application paused.
    fn resume_where_room(&self) {
        let mut to_resume = Vec::new();
        {
            let mut state = self.lock();
            let state = &mut *state;
            let room_again = state.paused_for_room && state.held <= self.options.max_buffered / 2;
            if room_again {
                state.paused_for_room = false;
            }
            for (id, partition) in &mut state.partitions {
                let metadata_room = partition.paused_for_metadata
                    && partition
                        .tracker
                        .has_room(self.options.max_metadata_bytes, METADATA_RESUME_ROOM);
                if metadata_room {
                    partition.paused_for_metadata = false;
                }
                if (room_again || metadata_room)
                    && !partition.paused_for_metadata
                    && !state.paused_for_room
                    && !partition.revoking
                {
                    to_resume.push(id.clone());
                }
            }
        }
        if to_resume.is_empty() {
            return;
        }
        let paused_by_application = self.consumer.lock_paused_by_application();
        to_resume.retain(|(topic, partition)| {
            !paused_by_application.contains(&(topic.to_string(), *partition))
        });
        let list = list_of(&to_resume);
        if let Err(error) = self.consumer.base.resume(&list) {
            tracing::warn!(%error, "cannot resume fetching");
        }
    }

    /// The next message that may start now, if the bounds allow one;
    /// otherwise registers `waker` for when one may.
    pub(crate) fn next_ready(&self, waker: &Waker) -> NextReady<K, V> {
        let mut state = self.lock();
        let state = &mut *state;
        if let Some(error) = state.errors.pop_front() {
            return NextReady::Error(error);
        }
        if state.in_flight < self.options.max_in_flight {
            for _ in 0..state.turn.len() {
                let Some(id) = state.turn.pop_front() else {
                    break;
                };
                let Some(partition) = state.partitions.get_mut(&id) else {
                    continue;
                };
                if partition.revoking || partition.ready.is_empty() {
                    continue;
                }
                if partition.in_flight >= self.options.max_in_flight_per_partition {
                    state.turn.push_back(id);
                    continue;
                }
                let Some(entry) = partition.ready.pop_front() else {
                    continue;
                };
                partition.in_flight += 1;
                state.in_flight += 1;
                if !partition.ready.is_empty() {
                    state.turn.push_back(id.clone());
                }
                let ticket = Ticket {
                    partition: id,
                    epoch: partition.epoch,
                    offset: entry.offset,
                    group: entry.group,
                };
                return NextReady::Work(ticket, entry.record, entry.message);
            }
        }
        if state.poller_ended {
            return NextReady::Ended;
        }
        state.waker = Some(waker.clone());
        NextReady::Pending
    }

    /// A message handed out is done: it counts as completed, and the next
    /// of its order group may start.
    pub(crate) fn complete(&self, ticket: &Ticket) {
        self.settle(ticket, None);
    }

    /// A message handed out comes back undone: it is handed out again, first
    /// of its order group.
    pub(crate) fn give_back(&self, ticket: &Ticket, record: OwnedRecord) {
        let message = self.decode(&record);
        let entry = Entry {
            offset: ticket.offset,
            group: ticket.group.clone(),
            record,
            message,
        };
        self.settle(ticket, Some(entry));
    }

    fn settle(&self, ticket: &Ticket, returned: Option<Entry<K, V>>) {
        let mut guard = self.lock();
        let state = &mut *guard;
        let Some(partition) = state.partitions.get_mut(&ticket.partition) else {
            return;
        };
        if partition.epoch != ticket.epoch {
            // Revoked since: the engine no longer counts it.
            return;
        }
        partition.in_flight -= 1;
        state.in_flight -= 1;
        let was_empty = partition.ready.is_empty();
        let mut made_ready = false;
        match returned {
            Some(entry) => {
                // Still the head of its group (the group stays busy).
                if !partition.revoking {
                    partition.ready.push_front(entry);
                    made_ready = true;
                }
            }
            None => {
                if !partition.tracker.complete(ticket.offset) {
                    tracing::warn!(topic = %ticket.partition.0, partition = ticket.partition.1, offset = ticket.offset, "acknowledged a message that was not in flight");
                }
                partition.held -= 1;
                state.held -= 1;
                if let Some(group) = &ticket.group {
                    match partition
                        .groups
                        .get_mut(group)
                        .and_then(VecDeque::pop_front)
                    {
                        Some(next) => {
                            partition.ready.push_back(next);
                            made_ready = true;
                        }
                        None => {
                            partition.groups.remove(group);
                        }
                    }
                }
            }
        }
        if made_ready && was_empty {
            state.turn.push_back(ticket.partition.clone());
        }
        if let Some(waker) = state.waker.take() {
            waker.wake();
        }
        let unpark =
            state.paused_for_room || partition_paused_for_metadata(state, &ticket.partition);
        drop(guard);
        self.settled.notify_all();
        if unpark {
            self.wake_poller();
        }
    }

    fn wake_poller(&self) {
        if let Some(thread) = &*self.poller.lock().unwrap_or_else(PoisonError::into_inner) {
            thread.unpark();
        }
    }

    /// How many messages are handed out and not acknowledged.
    pub(crate) fn in_flight(&self) -> usize {
        self.lock().in_flight
    }

    /// Asks the polling thread to stop.
    pub(crate) fn stop(&self) {
        self.stop.store(true, Ordering::Release);
        self.wake_poller();
    }

    /// Commits each partition's commit point, with its completed offsets
    /// above as metadata, where they changed; the book gets them too, for
    /// the consumer's own commits and its close.
    pub(crate) fn commit(&self) {
        let mut changed = Vec::new();
        {
            let mut state = self.lock();
            for (id, partition) in &mut state.partitions {
                if partition.revoking {
                    continue;
                }
                let Some(point) = partition.tracker.commit_point() else {
                    continue;
                };
                if !partition
                    .tracker
                    .metadata_fits(self.options.max_metadata_bytes)
                {
                    // A gap in the offsets (a compacted topic) widened the
                    // span past what pausing could foresee.
                    tracing::warn!(topic = %id.0, partition = id.1, point, "commit metadata cut short: some messages done out of order may be handled again after a restart");
                }
                let metadata = partition.tracker.metadata(self.options.max_metadata_bytes);
                let now = Some((point, metadata));
                if partition.committed == now {
                    continue;
                }
                partition.committed.clone_from(&now);
                if let Some((point, metadata)) = now {
                    changed.push((id.clone(), point, metadata));
                }
            }
        }
        if changed.is_empty() {
            return;
        }
        let mut list = TopicPartitionList::with_capacity(changed.len());
        for ((topic, partition), point, metadata) in &changed {
            self.consumer
                .book
                .set_completed(topic, *partition, *point, metadata.clone());
            if let Err(error) = list.add_partition_offset(topic, *partition, Offset::Offset(*point))
            {
                tracing::warn!(%topic, partition, point, %error, "cannot commit");
                continue;
            }
            if !metadata.is_empty()
                && let Some(mut element) = list.find_partition(topic, *partition)
            {
                element.set_metadata(metadata);
            }
        }
        tracing::debug!(offsets = ?list, "committing completed work");
        if let Err(error) = self.consumer.base.commit(&list, CommitMode::Async) {
            tracing::warn!(%error, "cannot send the commit of completed work; it is sent again at the next interval");
            let mut state = self.lock();
            for ((topic, partition), _, _) in changed {
                if let Some(partition) = state.partitions.get_mut(&(topic, partition)) {
                    partition.committed = None;
                }
            }
        }
    }
}

fn partition_paused_for_metadata<K, V>(state: &State<K, V>, id: &PartitionId) -> bool {
    state
        .partitions
        .get(id)
        .is_some_and(|partition| partition.paused_for_metadata)
}

/// What [`Engine::next_ready`] found.
pub(crate) enum NextReady<K, V> {
    /// A message to start.
    Work(Ticket, OwnedRecord, Result<Message<K, V>, ConsumerError>),
    /// An error about no message.
    Error(ConsumerError),
    /// Nothing may start now; the waker is registered.
    Pending,
    /// The polling thread has ended: nothing more comes.
    Ended,
}

impl<K: Send + 'static, V: Send + 'static> RebalanceHook for Engine<K, V> {
    fn assigned(&self, consumer: &BaseConsumer<FastContext>, partitions: &TopicPartitionList) {
        let ids: Vec<PartitionId> = partitions
            .elements()
            .iter()
            .map(|element| (Arc::from(element.topic()), element.partition()))
            .collect();
        let mut lookup = TopicPartitionList::with_capacity(ids.len());
        for (topic, partition) in &ids {
            lookup.add_partition(topic, *partition);
        }
        // On this (the polling) thread, before any message of theirs is
        // polled: what was completed out of order before is known in time.
        let committed = match consumer.committed_offsets(lookup, COMMITTED_LOOKUP_TIMEOUT) {
            Ok(committed) => Some(committed),
            Err(error) => {
                tracing::warn!(%error, "cannot read the committed offsets of assigned partitions; messages completed out of order before may be handled again");
                None
            }
        };
        let mut pause_now = Vec::new();
        let mut state = self.lock();
        for id in ids {
            let (point, done_before) = committed
                .as_ref()
                .and_then(|list| list.find_partition(&id.0, id.1))
                .map_or((None, CompletedOffsets::default()), |element| match element.offset() {
                    Offset::Offset(point) => match decode_metadata(point, element.metadata()) {
                        Ok(done) => (Some(point), done),
                        Err(error) => {
                            tracing::warn!(topic = %id.0, partition = id.1, %error, "unreadable commit metadata; messages completed out of order before are handled again");
                            (Some(point), CompletedOffsets::default())
                        }
                    },
                    _ => (None, CompletedOffsets::default()),
                });
            if !done_before.is_empty() {
                tracing::info!(topic = %id.0, partition = id.1, point, skipped = done_before.len(), "assigned: messages completed before will be skipped");
            }
            let epoch = state.next_epoch;
            state.next_epoch += 1;
            if state.paused_for_room {
                pause_now.push(id.clone());
            }
            state
                .partitions
                .insert(id, PartitionState::new(epoch, point, done_before));
        }
        drop(state);
        if !pause_now.is_empty() {
            self.pause(&pause_now);
        }
    }

    fn revoking(&self, consumer: &BaseConsumer<FastContext>, partitions: &TopicPartitionList) {
        let ids: Vec<PartitionId> = partitions
            .elements()
            .iter()
            .map(|element| (Arc::from(element.topic()), element.partition()))
            .collect();
        let lost = consumer.assignment_lost();
        {
            let mut state = self.lock();
            let state = &mut *state;
            for id in &ids {
                let Some(partition) = state.partitions.get_mut(id) else {
                    continue;
                };
                partition.revoking = true;
                // Never started: forgotten, and (incomplete) they hold the
                // commit point where it is.
                let waiting = partition.ready.len()
                    + partition.groups.values().map(VecDeque::len).sum::<usize>();
                partition.ready.clear();
                partition.groups.clear();
                partition.held -= waiting;
                state.held -= waiting;
            }
        }
        if !lost {
            let deadline = Instant::now() + self.options.revocation_timeout;
            let mut state = self.lock();
            loop {
                let busy: usize = ids
                    .iter()
                    .filter_map(|id| state.partitions.get(id))
                    .map(|partition| partition.in_flight)
                    .sum();
                let left = deadline.saturating_duration_since(Instant::now());
                if busy == 0 {
                    break;
                }
                if left.is_zero() {
                    tracing::warn!(
                        busy,
                        "revocation: messages still being handled after the revocation timeout; they are not committed by this member"
                    );
                    break;
                }
                state = self
                    .settled
                    .wait_timeout(state, left)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
            }
        }
        let mut guard = self.lock();
        let state = &mut *guard;
        for id in &ids {
            let Some(partition) = state.partitions.remove(id) else {
                continue;
            };
            state.in_flight -= partition.in_flight;
            state.held -= partition.held;
            if lost {
                continue;
            }
            if let Some(point) = partition.tracker.commit_point() {
                let metadata = partition.tracker.metadata(self.options.max_metadata_bytes);
                tracing::debug!(topic = %id.0, partition = id.1, point, not_done = partition.tracker.incomplete(), "revoked: committing completed work");
                self.consumer
                    .book
                    .set_completed(&id.0, id.1, point, metadata);
            }
        }
        drop(guard);
        self.settled.notify_all();
    }
}

/// A list of partitions, for pause and resume.
fn list_of(partitions: &[PartitionId]) -> TopicPartitionList {
    let mut list = TopicPartitionList::with_capacity(partitions.len());
    for (topic, partition) in partitions {
        list.add_partition(topic, *partition);
    }
    list
}
