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
/// How long polling may stop while the most messages are held, before
/// fetching is paused and polling goes on (or half `max.poll.interval.ms`,
/// if shorter): bounds how long a rebalance waits for this member.
const KEEP_ALIVE_AFTER: Duration = Duration::from_secs(1);
/// The shortest commit interval: commits are sent from the polling loop.
const MIN_COMMIT_INTERVAL: Duration = Duration::from_millis(10);
/// Every this many commit rounds, unchanged commit points are committed
/// again: an earlier commit of them may have failed.
const RECOMMIT_EVERY: u32 = 10;

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
    /// A rebalance error dropped the whole assignment: forget it, commit
    /// nothing.
    fn lost_all(&self);
}

/// A partition, as the engine names it.
pub(crate) type PartitionId = (Arc<str>, i32);

/// Which messages wait for one another.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum GroupKey {
    /// The messages with this key, by a hash of it: two keys with the same
    /// hash share a group, which only ever orders more than asked (no
    /// copy of the key per message).
    Key(u64),
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
    /// Messages waiting behind a busy message of their order group: held,
    /// but none can start before another finishes.
    blocked: usize,
    /// Paused because it holds more than its share of blocked messages (so
    /// that librdkafka's queue, which hands out each partition's fetch as
    /// one block, reaches the other partitions' messages).
    paused_for_blocked: bool,
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
            blocked: 0,
            paused_for_blocked: false,
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
    /// Since when `paused_for_room` holds, for the time-paused metric.
    paused_for_room_since: Option<std::time::Instant>,
    /// Counts the messages taken in, with metrics on.
    meter: Option<crate::MessageMeter>,
    /// The polling thread has ended.
    poller_ended: bool,
    /// The commit points and metadata of the partitions revoked last: when
    /// their commit failed and one comes straight back, the revocation
    /// policy resumes it there, and its tracker must start from the same.
    revoked_last: HashMap<PartitionId, (i64, String)>,
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
    /// Whether a partition pauses when its commit metadata nears its limit.
    metadata_pauses: bool,
    /// How many times [`commit`](Self::commit) ran.
    commit_rounds: std::sync::atomic::AtomicU32,
    /// The polling thread waits for room: a message finishing wakes it.
    waiting_for_room: AtomicBool,
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
    pub(crate) fn new(consumer: Arc<Consumer<K, V>>, mut options: ProcessOptions) -> Self {
        // The fields are public: a bound of 0 would hand nothing out.
        options.max_in_flight = options.max_in_flight.max(1);
        options.max_in_flight_per_partition = options.max_in_flight_per_partition.max(1);
        options.max_buffered = options.max_buffered.max(options.max_in_flight);
        options.commit_interval = options.commit_interval.max(MIN_COMMIT_INTERVAL);
        // Pausing for metadata only helps where a partition can resume.
        let metadata_pauses = PartitionTracker::new(None, CompletedOffsets::default()).has_room(
            options.max_metadata_bytes,
            METADATA_RESUME_ROOM + POLL_BATCH as u64,
        );
        if !metadata_pauses {
            tracing::warn!(
                max_metadata_bytes = options.max_metadata_bytes,
                "commit metadata this small cannot hold a useful gap: partitions are not paused for it, and what does not fit is dropped (messages done out of order may be handled again after a restart)"
            );
        }
        let meter = consumer.telemetry.meter();
        Engine {
            metadata_pauses,
            commit_rounds: std::sync::atomic::AtomicU32::new(0),
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
                paused_for_room_since: None,
                meter,
                poller_ended: false,
                revoked_last: HashMap::new(),
            }),
            settled: Condvar::new(),
            stop: AtomicBool::new(false),
            waiting_for_room: AtomicBool::new(false),
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
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            // Assigned before processing started: set up as if just assigned,
            // reading back their commit metadata.
            match self.consumer.base.assignment() {
                Ok(assignment) if assignment.count() > 0 => {
                    self.assigned(&self.consumer.base, &assignment);
                }
                Ok(_) => {}
                Err(error) => tracing::warn!(%error, "cannot read the assignment"),
            }
            self.poll_until_stopped();
        }));
        if outcome.is_err() {
            tracing::error!("the concurrent processing thread panicked; processing ends");
        }
        self.commit();
        self.hand_back();
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
        // A slow handler: how long polling may stop while the most messages
        // are held, before fetching is paused so that polling can go on
        // (rebalances and `max.poll.interval.ms` wait for it).
        let keep_alive_after = KEEP_ALIVE_AFTER.min(consumer.max_poll_interval / 2);
        let mut full_since: Option<Instant> = None;
        while !self.stop.load(Ordering::Acquire) {
            let room = self.room();
            let (took, waited) = if room > 0 {
                full_since = None;
                // This thread may wait here for a seek to finish.
                let _polling = consumer.gate.read();
                (self.poll_round(room.min(POLL_BATCH)), false)
            } else {
                let since = *full_since.get_or_insert_with(Instant::now);
                if since.elapsed() < keep_alive_after {
                    // Leave the messages in librdkafka's queue (pausing
                    // would drop what it fetched ahead) and wait for room.
                    self.waiting_for_room.store(true, Ordering::Release);
                    if self.room() == 0 && !self.stop.load(Ordering::Acquire) {
                        std::thread::park_timeout(
                            IDLE_POLL.min(keep_alive_after.saturating_sub(since.elapsed())),
                        );
                    }
                    self.waiting_for_room.store(false, Ordering::Release);
                    (0, true)
                } else {
                    self.pause_for_room();
                    let _polling = consumer.gate.read();
                    // Paused: polling serves events; a message fetched
                    // before the pause may still come, and is held.
                    (self.poll_round(POLL_BATCH), false)
                }
            };
            self.resume_where_room();
            if last_commit.elapsed() >= self.options.commit_interval {
                self.commit();
                last_commit = Instant::now();
            }
            // Nothing came (paused or idle): sleep until librdkafka has
            // something, a message finishes, or it is time to poll anyway.
            if took == 0 && !waited {
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

    /// Gives the partitions back to whoever reads the consumer next: each
    /// read position goes back to its commit point (the messages not done
    /// were taken from librdkafka already), what the engine paused is
    /// resumed, and acknowledgements from now on change nothing.
    fn hand_back(&self) {
        let mut targets = TopicPartitionList::new();
        let mut to_resume = Vec::new();
        {
            let mut state = self.lock();
            for (id, partition) in state.partitions.drain() {
                if let Some(point) = partition.tracker.commit_point()
                    && let Err(error) =
                        targets.add_partition_offset(&id.0, id.1, Offset::Offset(point))
                {
                    tracing::warn!(topic = %id.0, partition = id.1, point, %error, "cannot rewind");
                }
                to_resume.push(id);
            }
            state.turn.clear();
            state.in_flight = 0;
            state.held = 0;
            state.paused_for_room = false;
            if let Some(since) = state.paused_for_room_since.take() {
                self.consumer.telemetry.paused_for(since.elapsed());
            }
        }
        self.resume_unless_paused_by_application(to_resume);
        if targets.count() == 0 {
            return;
        }
        let _seeking = self.consumer.gate.seek();
        self.consumer.book.invalidate(
            targets
                .elements()
                .iter()
                .map(|element| (element.topic(), element.partition())),
        );
        tracing::debug!(
            ?targets,
            "processing stopped: rewinding to the commit points"
        );
        if let Err(error) = self
            .consumer
            .base
            .seek_partitions(targets, rdkafka::util::Timeout::After(Duration::ZERO))
        {
            tracing::warn!(%error, "cannot rewind to the messages not done; they are read again after a restart");
        }
    }

    /// Resumes `partitions`, except those the application paused.
    fn resume_unless_paused_by_application(&self, mut partitions: Vec<PartitionId>) {
        {
            let paused_by_application = self.consumer.lock_paused_by_application();
            partitions.retain(|(topic, partition)| {
                !paused_by_application.contains(&(topic.to_string(), *partition))
            });
        }
        if partitions.is_empty() {
            return;
        }
        if let Err(error) = self.consumer.base.resume(&list_of(&partitions)) {
            tracing::warn!(%error, "cannot resume fetching");
        }
    }

    /// How many more messages may be held.
    fn room(&self) -> usize {
        self.options.max_buffered.saturating_sub(self.lock().held)
    }

    /// Pauses every assigned partition until enough messages finish.
    fn pause_for_room(&self) {
        let mut state = self.lock();
        if state.paused_for_room {
            return;
        }
        state.paused_for_room = true;
        state.paused_for_room_since = Some(std::time::Instant::now());
        let partitions: Vec<PartitionId> = state.partitions.keys().cloned().collect();
        drop(state);
        tracing::debug!("pausing fetching: the most messages are held and the handlers are slow");
        self.pause(&partitions);
    }

    /// Takes up to `most` messages from librdkafka (serving the events in
    /// between: rebalances, commit answers); returns how many.
    fn poll_round(&self, most: usize) -> usize {
        let consumer = &self.consumer;
        consumer.telemetry.polled();
        let mut took = 0;
        let mut events = 0;
        while took < most && !self.stop.load(Ordering::Acquire) {
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
                    let (owned, unreadable_headers) = self.own(&record);
                    drop(record);
                    self.receive(owned, unreadable_headers);
                }
                Some(Err(error)) => {
                    took += 1;
                    let error = consumer.base.context().reasons.attach(error);
                    consumer.telemetry.error(&error);
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
        if took > 0
            && let Some(meter) = self.lock().meter.as_mut()
        {
            meter.flush();
        }
        took
    }

    /// Copies a record's bytes. Headers are read only when the consumer
    /// reads them; a header key that is not UTF-8 makes the message that
    /// error, the key and value kept.
    fn own(
        &self,
        record: &rdkafka::message::BorrowedMessage<'_>,
    ) -> (OwnedRecord, Option<ConsumerError>) {
        let mut headers = consumer_api::Headers::new();
        let mut unreadable = None;
        if self.consumer.read_headers
            && let Some(raw) = record.headers()
        {
            match consumer_api::Headers::from_raw(raw) {
                Ok(read) => headers = read,
                Err((key, source)) => {
                    unreadable = Some(ConsumerError::Deserialize {
                        topic: record.topic().to_owned(),
                        partition: record.partition(),
                        offset: record.offset(),
                        part: consumer_api::PayloadPart::HeaderKey,
                        raw: key.to_vec(),
                        source: consumer_api::SerdeError::new(source),
                    });
                }
            }
        }
        let owned = OwnedRecord {
            topic: record.topic().to_owned(),
            partition: record.partition(),
            offset: record.offset(),
            timestamp: record.timestamp().into(),
            key: record.key().map(<[u8]>::to_vec),
            value: record.payload().map(<[u8]>::to_vec),
            headers,
        };
        (owned, unreadable)
    }

    /// Routes a message polled to its partition and order group, and pauses
    /// fetching where its commit metadata says so.
    fn receive(&self, record: OwnedRecord, unreadable_headers: Option<ConsumerError>) {
        let message = match unreadable_headers {
            None => self.decode(&record),
            Some(error) => Err(error),
        };
        let group = match self.options.ordering {
            ProcessingOrder::Unordered => None,
            ProcessingOrder::Partition => Some(GroupKey::Partition),
            ProcessingOrder::Key => Some(match &record.key {
                Some(key) => GroupKey::Key(key_hash(key)),
                None => GroupKey::NoKey,
            }),
        };
        let id = self.partition_id(&record.topic, record.partition);
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
        if let Some(meter) = state.meter.as_mut() {
            let record = &entry.record;
            let bytes =
                record.key.as_ref().map_or(0, Vec::len) + record.value.as_ref().map_or(0, Vec::len);
            match &entry.message {
                Err(ConsumerError::Deserialize { part, .. }) => {
                    meter.deserialize_error(&record.topic, record.partition, *part, bytes);
                }
                _ => meter.record(&record.topic, record.partition, bytes),
            }
        }
        self.consumer.telemetry.handed_out();
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
                Some(waiting) => {
                    waiting.push_back(entry);
                    partition.blocked += 1;
                }
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
        if self.metadata_pauses
            && !partition.paused_for_metadata
            && !partition
                .tracker
                .has_room(self.options.max_metadata_bytes, POLL_BATCH as u64)
        {
            partition.paused_for_metadata = true;
            to_pause.push(id.clone());
            tracing::info!(topic = %id.0, partition = id.1, "pausing a partition: its commit metadata is nearly full until earlier messages finish");
        }
        let share = self.blocked_share(state.partitions.len());
        if let Some(partition) = state.partitions.get_mut(&id)
            && !partition.paused_for_blocked
            && partition.blocked >= share
            // Pausing costs the partition its prefetch and a wait for the
            // next fetch: only when none of its held messages can start.
            && partition.ready.is_empty()
        {
            partition.paused_for_blocked = true;
            to_pause.push(id.clone());
            tracing::debug!(topic = %id.0, partition = id.1, blocked = partition.blocked, "pausing a partition: its messages wait for one another");
        }
        if made_ready && let Some(waker) = state.waker.take() {
            waker.wake();
        }
        drop(guard);
        if !to_pause.is_empty() {
            self.pause(&to_pause);
        }
    }

    /// The engine's name for a partition: the one it already uses, so that
    /// a message costs no allocation for it.
    fn partition_id(&self, topic: &str, partition: i32) -> PartitionId {
        let state = self.lock();
        state
            .partitions
            .keys()
            .find(|(known, number)| *number == partition && **known == *topic)
            .cloned()
            .unwrap_or_else(|| (Arc::from(topic), partition))
    }

    /// How many blocked messages one partition may hold before it is paused:
    /// its share of [`max_buffered`](ProcessOptions::max_buffered).
    fn blocked_share(&self, partitions: usize) -> usize {
        (self.options.max_buffered / partitions.max(1)).max(1)
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
                if let Some(since) = state.paused_for_room_since.take() {
                    self.consumer.telemetry.paused_for(since.elapsed());
                }
            }
            let share = self.blocked_share(state.partitions.len());
            for (id, partition) in &mut state.partitions {
                let unblocked = partition.paused_for_blocked && partition.blocked <= share / 2;
                if unblocked {
                    partition.paused_for_blocked = false;
                }
                let metadata_room = partition.paused_for_metadata
                    && partition
                        .tracker
                        .has_room(self.options.max_metadata_bytes, METADATA_RESUME_ROOM);
                if metadata_room {
                    partition.paused_for_metadata = false;
                }
                if (room_again || metadata_room || unblocked)
                    && !partition.paused_for_metadata
                    && !partition.paused_for_blocked
                    && !state.paused_for_room
                    && !partition.revoking
                {
                    to_resume.push(id.clone());
                }
            }
        }
        self.resume_unless_paused_by_application(to_resume);
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
                            partition.blocked -= 1;
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
        let unpark = state.paused_for_room
            || partition_paused(state, &ticket.partition)
            || self.waiting_for_room.load(Ordering::Acquire);
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
        let round = self.commit_rounds.fetch_add(1, Ordering::Relaxed);
        let again = round % RECOMMIT_EVERY == RECOMMIT_EVERY - 1;
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
                if partition.committed == now && !again {
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

/// Whether the engine paused this partition by itself (metadata, blocked).
fn partition_paused<K, V>(state: &State<K, V>, id: &PartitionId) -> bool {
    state
        .partitions
        .get(id)
        .is_some_and(|partition| partition.paused_for_metadata || partition.paused_for_blocked)
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
        let mut resume_now = Vec::new();
        let mut state = self.lock();
        let revoked_last = std::mem::take(&mut state.revoked_last);
        for id in ids {
            let mut committed_here = committed
                .as_ref()
                .and_then(|list| list.find_partition(&id.0, id.1))
                .and_then(|element| match element.offset() {
                    Offset::Offset(point) => Some((point, element.metadata().to_owned())),
                    _ => None,
                });
            // Back straight after a revocation whose commit may have failed:
            // reading resumes at this member's own commit point (the
            // revocation policy sees to it), so the tracker starts there.
            if let Some((point, metadata)) = revoked_last.get(&id)
                && committed_here
                    .as_ref()
                    .is_none_or(|(committed_point, _)| committed_point < point)
            {
                committed_here = Some((*point, metadata.clone()));
            }
            let (point, done_before) = match committed_here {
                Some((point, metadata)) => match decode_metadata(point, &metadata) {
                    Ok(done) => (Some(point), done),
                    Err(error) => {
                        tracing::warn!(topic = %id.0, partition = id.1, %error, "unreadable commit metadata; messages completed out of order before are handled again");
                        (Some(point), CompletedOffsets::default())
                    }
                },
                None => (None, CompletedOffsets::default()),
            };
            if !done_before.is_empty() {
                tracing::info!(topic = %id.0, partition = id.1, point, skipped = done_before.len(), "assigned: messages completed before will be skipped");
            }
            let epoch = state.next_epoch;
            state.next_epoch += 1;
            // A pause outlives a revocation (librdkafka keeps it): each
            // partition starts as the engine wants it now.
            if state.paused_for_room {
                pause_now.push(id.clone());
            } else {
                resume_now.push(id.clone());
            }
            let replaced = state
                .partitions
                .insert(id, PartitionState::new(epoch, point, done_before));
            if let Some(replaced) = replaced {
                state.in_flight -= replaced.in_flight;
                state.held -= replaced.held;
            }
        }
        drop(state);
        if !pause_now.is_empty() {
            self.pause(&pause_now);
        }
        self.resume_unless_paused_by_application(resume_now);
    }

    fn lost_all(&self) {
        let mut state = self.lock();
        let lost = state.partitions.len();
        state.partitions.clear();
        state.turn.clear();
        state.in_flight = 0;
        state.held = 0;
        state.revoked_last.clear();
        drop(state);
        tracing::warn!(
            lost,
            "rebalance error: the assignment is dropped, nothing of it committed"
        );
        self.settled.notify_all();
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
                    .set_completed(&id.0, id.1, point, metadata.clone());
                state.revoked_last.insert(id.clone(), (point, metadata));
            }
        }
        drop(guard);
        self.settled.notify_all();
    }
}

/// A message key's hash, naming its order group.
fn key_hash(key: &[u8]) -> u64 {
    use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
    BuildHasherDefault::<DefaultHasher>::default().hash_one(key)
}

/// A list of partitions, for pause and resume.
fn list_of(partitions: &[PartitionId]) -> TopicPartitionList {
    let mut list = TopicPartitionList::with_capacity(partitions.len());
    for (topic, partition) in partitions {
        list.add_partition(topic, *partition);
    }
    list
}
