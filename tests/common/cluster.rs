//! Shared by the `cluster_*` tests (each includes it with
//! `#[path = "common/cluster.rs"] mod cluster;` beside `mod common;`): a
//! producer that writes at a steady rate whatever the cluster does, and
//! consumers that read on threads of their own while the test takes nodes
//! down, logging every message, commit and error with its time.
//!
//! The four implementations run side by side, each in its own group on the
//! same topic, through the same failure: one failure, four measurements, in
//! the time one would take.
#![allow(dead_code, unreachable_pub)]

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use kafka_test_env::{KafkaCluster, KafkaTestEnv};
use rdkafka::ClientContext;
use rdkafka::message::{DeliveryResult, Message as _};
use rdkafka::producer::{BaseRecord, Producer, ProducerContext, ThreadedProducer};
use tiered_kafka::api::StringSerde;

use crate::common::{Implementation, build, consumer_config};

/// The env's cluster, or `None` (saying so) on any other broker: the
/// scenarios need the three nodes of `cargo xtask kafka start --nodes 3`,
/// which `cargo xtask test` starts for its `cluster` phase.
pub fn cluster_or_say_why(env: &KafkaTestEnv) -> Option<KafkaCluster<'_>> {
    let cluster = env.cluster();
    if cluster.is_none() {
        println!(
            "{} is not the three-node cluster: this scenario runs against \
             `cargo xtask kafka start --nodes 3` (cargo xtask test, cluster phase; \
             KAFKA_TEST_BROKER=cluster)",
            env.kind()
        );
    }
    cluster
}

/// A short name for an implementation, for reports.
pub fn name(implementation: Implementation) -> &'static str {
    match implementation {
        Implementation::Fast(tiered_kafka::api::ConsumerTier::Standard) => "standard",
        Implementation::Fast(tiered_kafka::api::ConsumerTier::Buffered { .. }) => "buffered",
        Implementation::Fast(tiered_kafka::api::ConsumerTier::Dedicated) => "dedicated",
        Implementation::Legacy => "legacy",
    }
}

/// What the steady producer got delivered.
#[derive(Debug, Default)]
struct Deliveries {
    delivered: BTreeSet<(i32, i64)>,
    /// Delivered, but the offset unknown: librdkafka reports a retried
    /// batch that the broker had written already
    /// (`DUPLICATE_SEQUENCE_NUMBER`) as delivered, at offset -1.
    offset_unknown: usize,
    times: Vec<Instant>,
    failed: Vec<String>,
}

struct Collector(Arc<Mutex<Deliveries>>);

impl ClientContext for Collector {}

impl ProducerContext for Collector {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        let mut deliveries = lock(&self.0);
        match result {
            Ok(message) if message.offset() < 0 => {
                deliveries.offset_unknown += 1;
                deliveries.times.push(Instant::now());
            }
            Ok(message) => {
                deliveries
                    .delivered
                    .insert((message.partition(), message.offset()));
                deliveries.times.push(Instant::now());
            }
            Err((error, _)) => deliveries.failed.push(error.to_string()),
        }
    }
}

/// Writes keyed records to a topic at a steady rate, on a thread of its
/// own, with `acks=all` and idempotence (a retry across a leader change
/// writes no duplicate). It never waits for a delivery, so the partitions
/// whose leader is away do not hold up the others.
pub struct SteadyProducer {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    deliveries: Arc<Mutex<Deliveries>>,
    thread: Option<JoinHandle<()>>,
    producer: Arc<ThreadedProducer<Collector>>,
}

impl SteadyProducer {
    /// Starts writing `per_second` records a second to `topic`.
    pub fn start(env: &KafkaTestEnv, topic: &str, per_second: u64) -> SteadyProducer {
        let deliveries = Arc::new(Mutex::new(Deliveries::default()));
        let mut config = env.client_config();
        config
            .set("acks", "all")
            .set("enable.idempotence", "true")
            .set("linger.ms", "5")
            .set("message.timeout.ms", "120000");
        let producer: Arc<ThreadedProducer<Collector>> = Arc::new(
            config
                .create_with_context(Collector(Arc::clone(&deliveries)))
                .expect("the steady producer"),
        );
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let thread = {
            let (stop, sent, producer) =
                (Arc::clone(&stop), Arc::clone(&sent), Arc::clone(&producer));
            let topic = topic.to_owned();
            std::thread::spawn(move || {
                let started = Instant::now();
                while !stop.load(Ordering::Relaxed) {
                    // As many as the rate allows by now.
                    let due = started.elapsed().as_millis() as u64 * per_second / 1000;
                    while sent.load(Ordering::Relaxed) < due {
                        let n = sent.load(Ordering::Relaxed);
                        let key = steady_key(n);
                        let value = format!("value-{n}");
                        match producer.send(BaseRecord::to(&topic).key(&key).payload(&value)) {
                            Ok(()) => {
                                sent.fetch_add(1, Ordering::Relaxed);
                            }
                            // The queue is full: try again in a moment.
                            Err(_) => break,
                        }
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
            })
        };
        SteadyProducer {
            stop,
            sent,
            deliveries,
            thread: Some(thread),
            producer,
        }
    }

    /// Records handed to the producer so far.
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// Stops writing, waits until every record is delivered, and returns
    /// their keys, the `(partition, offset)` of each whose offset is known,
    /// and when its delivery was reported; fails the test on any failed
    /// delivery.
    pub fn finish(mut self) -> Produced {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            thread.join().expect("the steady producer's thread");
        }
        self.producer
            .flush(Duration::from_secs(120))
            .expect("every record delivered within 120 s");
        let deliveries = std::mem::take(&mut *lock(&self.deliveries));
        assert!(
            deliveries.failed.is_empty(),
            "{} of {} records failed: first {:?}",
            deliveries.failed.len(),
            self.sent(),
            deliveries.failed.first()
        );
        assert_eq!(
            deliveries.times.len() as u64,
            self.sent(),
            "every record sent has one delivery report"
        );
        assert_eq!(
            (deliveries.delivered.len() + deliveries.offset_unknown) as u64,
            self.sent(),
            "no two records delivered at the same offset"
        );
        Produced {
            keys: (0..self.sent()).map(steady_key).collect(),
            records: deliveries.delivered,
            offset_unknown: deliveries.offset_unknown,
            delivery_times: deliveries.times,
        }
    }
}

/// The key of the steady producer's `n`th record (keys are unique).
fn steady_key(n: u64) -> String {
    format!("steady-{n}")
}

/// What a [`SteadyProducer`] wrote.
pub struct Produced {
    /// The key of every record, each unique.
    pub keys: Vec<String>,
    /// `(partition, offset)` of every record whose offset is known.
    pub records: BTreeSet<(i32, i64)>,
    /// Records delivered with their offset unknown (see [`Deliveries`]).
    pub offset_unknown: usize,
    /// When each delivery report came, in order.
    pub delivery_times: Vec<Instant>,
}

impl Produced {
    /// The longest gap between two delivery reports since `from`: how long
    /// the producer (not the consumers) stalled.
    pub fn longest_gap(&self, from: Instant) -> Duration {
        longest_gap(self.delivery_times.iter().copied(), from, None).0
    }
}

impl Drop for SteadyProducer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// One commit a reader made.
#[derive(Debug, Clone)]
pub struct CommitRecord {
    /// When the broker answered.
    pub at: Instant,
    /// The next offset per partition of what was handed out when the commit
    /// was sent: what it covers.
    pub covers: BTreeMap<i32, i64>,
    /// The broker's answer.
    pub outcome: Result<(), String>,
}

/// Everything one reader did, with times.
#[derive(Debug, Default)]
pub struct ReadLog {
    /// Each message handed out: partition, offset, when.
    pub reads: Vec<(i32, i64, Instant)>,
    /// The keys of the messages handed out.
    pub keys: HashSet<String>,
    /// Each commit (the one of the close last, if the close committed).
    pub commits: Vec<CommitRecord>,
    /// Each error the stream yielded, with when.
    pub errors: Vec<(Instant, String)>,
    /// The next offset per partition of what was handed out.
    pub position: BTreeMap<i32, i64>,
    /// What the successful commits cover, per partition.
    pub committed: BTreeMap<i32, i64>,
    /// Messages handed out since the last successful commit; and its
    /// largest value over the run (the uncommitted window).
    pub since_commit: usize,
    pub max_window: usize,
    /// Messages handed out a second time, and those of them below what a
    /// successful commit of this reader covered (never allowed).
    pub duplicates: usize,
    pub below_commit: Vec<(i32, i64)>,
    seen: HashMap<(i32, i64), u32>,
    /// Whether the stream ended (it must not).
    pub ended: bool,
}

impl ReadLog {
    fn read(&mut self, partition: i32, offset: i64, key: Option<String>) {
        let at = Instant::now();
        if let Some(key) = key {
            self.keys.insert(key);
        }
        let count = self.seen.entry((partition, offset)).or_default();
        *count += 1;
        if *count > 1 {
            self.duplicates += 1;
            if self
                .committed
                .get(&partition)
                .is_some_and(|&committed| offset < committed)
            {
                self.below_commit.push((partition, offset));
            }
        }
        self.reads.push((partition, offset, at));
        let next = self.position.entry(partition).or_insert(offset + 1);
        *next = (*next).max(offset + 1);
        self.since_commit += 1;
        self.max_window = self.max_window.max(self.since_commit);
    }

    fn committed(&mut self, covers: BTreeMap<i32, i64>, outcome: Result<(), String>) {
        if outcome.is_ok() {
            for (&partition, &next) in &covers {
                let committed = self.committed.entry(partition).or_insert(next);
                *committed = (*committed).max(next);
            }
            self.since_commit = 0;
        }
        self.commits.push(CommitRecord {
            at: Instant::now(),
            covers,
            outcome,
        });
    }

    /// The distinct `(partition, offset)` read.
    pub fn distinct(&self) -> BTreeSet<(i32, i64)> {
        self.seen.keys().copied().collect()
    }

    /// Whether `(partition, offset)` was read.
    pub fn has(&self, coordinates: &(i32, i64)) -> bool {
        self.seen.contains_key(coordinates)
    }

    /// Whether a message with key `key` was read.
    pub fn has_key(&self, key: &str) -> bool {
        self.keys.contains(key)
    }

    /// How many of `keys` were not read.
    pub fn missing(&self, keys: &[String]) -> usize {
        keys.iter().filter(|key| !self.has_key(key)).count()
    }

    /// The longest gap between two consecutive messages read in
    /// `[from, to]` (or since `from` until the last read), and when it
    /// started.
    pub fn longest_gap(&self, from: Instant, to: Option<Instant>) -> (Duration, Option<Instant>) {
        longest_gap(self.reads.iter().map(|&(_, _, at)| at), from, to)
    }

    /// The same for the messages of `partition` only.
    pub fn longest_partition_gap(
        &self,
        partition: i32,
        from: Instant,
        to: Option<Instant>,
    ) -> (Duration, Option<Instant>) {
        longest_gap(
            self.reads
                .iter()
                .filter(|&&(p, _, _)| p == partition)
                .map(|&(_, _, at)| at),
            from,
            to,
        )
    }

    /// The first message of `partition` read after `after`, and when.
    pub fn first_read_after(&self, partition: i32, after: Instant) -> Option<Instant> {
        self.reads
            .iter()
            .find(|&&(p, _, at)| p == partition && at > after)
            .map(|&(_, _, at)| at)
    }

    /// Successful commits answered after `after`.
    pub fn commits_ok_after(&self, after: Instant) -> Vec<&CommitRecord> {
        self.commits
            .iter()
            .filter(|commit| commit.at > after && commit.outcome.is_ok())
            .collect()
    }
}

/// The longest gap between consecutive instants of `times` (sorted) that
/// falls in `[from, to]`, counting the gap that spans `from`.
fn longest_gap(
    times: impl Iterator<Item = Instant>,
    from: Instant,
    to: Option<Instant>,
) -> (Duration, Option<Instant>) {
    let mut previous: Option<Instant> = None;
    let mut longest = (Duration::ZERO, None);
    for at in times {
        if to.is_some_and(|to| at > to) {
            break;
        }
        if let Some(previous) = previous
            && at > from
        {
            let start = previous.max(from);
            let gap = at.duration_since(start);
            if gap > longest.0 {
                longest = (gap, Some(start));
            }
        }
        previous = Some(at);
    }
    longest
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A consumer of one implementation reading on a thread of its own (with a
/// current-thread runtime) until told to stop; it commits after every
/// `commit_every` messages, and closes with a commit at the end.
pub struct Reader {
    /// The implementation.
    pub implementation: Implementation,
    /// The group.
    pub group: String,
    log: Arc<Mutex<ReadLog>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Reader {
    /// Starts reading `topic` in `group`.
    pub fn start(
        env: &KafkaTestEnv,
        implementation: Implementation,
        group: &str,
        topic: &str,
        commit_every: usize,
    ) -> Reader {
        let log = Arc::new(Mutex::new(ReadLog::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let mut config = consumer_config(env, group);
        config.close_timeout_ms = Some(20_000);
        let thread = {
            let (log, stop, topic) = (Arc::clone(&log), Arc::clone(&stop), topic.to_owned());
            std::thread::Builder::new()
                .name(format!("reader-{}", name(implementation)))
                .spawn(move || read(implementation, config, &topic, commit_every, &log, &stop))
                .expect("a reader thread")
        };
        Reader {
            implementation,
            group: group.to_owned(),
            log,
            stop,
            thread: Some(thread),
        }
    }

    /// The log so far (locked: keep the guard short).
    pub fn log(&self) -> MutexGuard<'_, ReadLog> {
        lock(&self.log)
    }

    /// Stops reading, closes the consumer (committing what was handed out)
    /// and returns the log.
    pub fn finish(mut self) -> ReadLog {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            thread.join().expect("the reader thread");
        }
        std::mem::take(&mut *lock(&self.log))
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn read(
    implementation: Implementation,
    config: tiered_kafka::api::ConsumerConfig,
    topic: &str,
    commit_every: usize,
    log: &Mutex<ReadLog>,
    stop: &AtomicBool,
) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let _guard = runtime.enter();
    let consumer = build(implementation, config, StringSerde, StringSerde);
    consumer.subscribe(&[topic]).expect("subscribe");
    runtime.block_on(async {
        let mut stream = consumer.stream();
        let mut since_commit = 0;
        while !stop.load(Ordering::Relaxed) {
            match tokio::time::timeout(Duration::from_millis(200), stream.next()).await {
                Ok(Some(Ok(message))) => {
                    lock(log).read(message.partition, message.offset, message.key);
                    since_commit += 1;
                    if since_commit >= commit_every {
                        since_commit = 0;
                        let covers = lock(log).position.clone();
                        let outcome = consumer
                            .commit_async()
                            .await
                            .map_err(|error| error.to_string());
                        lock(log).committed(covers, outcome);
                    }
                }
                Ok(Some(Err(error))) => lock(log).errors.push((Instant::now(), error.to_string())),
                Ok(None) => {
                    lock(log).ended = true;
                    break;
                }
                Err(_) => {}
            }
        }
    });
    let covers = lock(log).position.clone();
    let report = consumer.close_blocking(Duration::from_secs(20));
    lock(log).committed(covers, report.commit.map_err(|error| error.to_string()));
}

/// Waits up to `within` until `done` holds, looking every 100 ms; whether
/// it does.
pub fn wait_until(within: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A new group name whose coordinator is (or, with `want: false`, is not)
/// node `node`.
pub fn group_coordinated(
    env: &KafkaTestEnv,
    cluster: &KafkaCluster<'_>,
    prefix: &str,
    node: i32,
    want: bool,
) -> String {
    for _ in 0..200 {
        let group = env.unique_group(prefix);
        let coordinator = cluster
            .group_coordinator(&group)
            .expect("the group's coordinator");
        if (coordinator == node) == want {
            return group;
        }
    }
    panic!("no group name with the coordinator wanted in 200 tries");
}

/// Milliseconds, for reports.
pub fn ms(duration: Duration) -> u128 {
    duration.as_millis()
}
