//! Reliability, group churn: three consumers share a 6-partition topic in one
//! group while a steady producer writes to it, and the group changes under
//! them. Nothing may be lost; duplicates are counted and bounded.
//!
//! The timeline (from the start of producing, which lasts [`PRODUCE_FOR`]):
//!
//! | when | what |
//! |---|---|
//! | 0 | members A and B join |
//! | [`LATE_JOIN_AT`] | member C joins late |
//! | [`DROP_AT`] | A is dropped abruptly: mid-stream, with messages processed since its last commit, and without committing them |
//! | [`CLOSE_AT`] | B commits what it processed, then is dropped |
//! | after producing | C, the survivor, reads until every produced message was processed by someone, then commits and leaves |
//!
//! Each member is a task of its own that records the `(partition, offset)`
//! of every message it processes and commits every
//! [`COMMIT_EVERY_MESSAGES`] messages or [`COMMIT_EVERY`], whichever comes
//! first. Every test runs once with librdkafka's default assignor (the eager
//! `range,roundrobin`) and once with `cooperative-sticky`.
//!
//! # What is asserted
//!
//! On every broker:
//! - **nothing lost**: the union of what the members processed is exactly
//!   what was produced;
//! - **no member repeats itself while it owns a partition**: a duplicate is
//!   a message processed again after its partition moved (on the mock,
//!   where commits on revocation can be refused, the partition may come back
//!   to the member that processed it, which then reads from the same stale
//!   committed offset);
//! - **a clean close hands over exactly**: once B's commit succeeded, nobody
//!   processes again a message of a partition B owned below the position B
//!   committed there.
//!
//! On Apache Kafka: **no duplicates at all**. Dropping a consumer is not a
//! crash: the drop closes the librdkafka consumer, which revokes its
//! partitions, and the revocation commits the offsets of every message the
//! application was handed (`consumer-fast`'s `RevocationPolicy`, shared by
//! the legacy consumer). So A's "uncommitted" window is committed on its way
//! out, and every rebalance caused by a join or a departure commits the moved
//! partitions' positions as well; Kafka accepts commits from the current
//! generation during a rebalance. (A message handed out but not yet processed
//! when the consumer is dropped would be committed too: processing here is
//! done before the next message is asked for.)
//!
//! On the mock cluster, librdkafka's mock refuses `OffsetCommit` while a
//! rebalance is in progress (`REBALANCE_IN_PROGRESS`), from the moment a
//! member joins or leaves until every member has synced again: under the
//! eager protocol the commit on revocation of the members that stay always
//! fails there; under the cooperative one it fails when another member's
//! rejoin has already restarted the join phase, and so does a leaving
//! member's commit on close if the group is rebalancing at that moment. The
//! partitions' new owners then read again from the last periodic commit.
//! Those duplicates are reported, and only the properties above are
//! asserted; the mock runs with a short session timeout
//! ([`MOCK_SESSION_TIMEOUT`]) so that its rebalances take seconds, not ten.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Implementation, build, consumer_config, env, next_within};
use kafka_test_env::{KafkaTestEnv, ProducedRecord, TestRecord};
use rdkafka::Offset;
use tiered_kafka::api::{ConsumerError, KafkaStreamConsumer, StringSerde};
use tokio::sync::watch;
use tokio::task::JoinHandle;

const PARTITIONS: i32 = 6;
/// Records per `produce` call.
const BATCH: usize = 20;
/// One batch every this long: about 400 messages per second.
const BATCH_EVERY: Duration = Duration::from_millis(50);
/// How long the producer runs.
const PRODUCE_FOR: Duration = Duration::from_secs(18);
/// When member C joins the group.
const LATE_JOIN_AT: Duration = Duration::from_secs(5);
/// When member A is dropped without committing its last messages.
const DROP_AT: Duration = Duration::from_secs(10);
/// When member B commits and closes.
const CLOSE_AT: Duration = Duration::from_secs(14);
/// `session.timeout.ms` on the mock cluster. Once a member joins or leaves,
/// the mock holds the group in its join phase for the session timeout less
/// one second, whether or not every member has rejoined, and refuses commits
/// meanwhile: with the 10 s of [`consumer_config`] each change would stall
/// the group for 9 s. Apache Kafka ends the join phase once every member has
/// rejoined, and refuses session timeouts under 6 s, so it keeps 10 s.
const MOCK_SESSION_TIMEOUT: Duration = Duration::from_secs(3);
/// A member commits after this many messages...
const COMMIT_EVERY_MESSAGES: usize = 100;
/// ... or this long after its last commit, whichever comes first.
const COMMIT_EVERY: Duration = Duration::from_millis(500);
/// A member that fails to commit to close retries this often (reading in
/// between, so that the group's rebalance can complete).
const CLOSE_RETRY: Duration = Duration::from_millis(200);
/// Generous deadline for anything that should take a few seconds: a member
/// processing its first message, a clean close, a task ending.
const PATIENCE: Duration = Duration::from_secs(60);
/// How long a member asked to close cleanly waits to own partitions again
/// (when asked between a revocation and the next assignment) before it
/// closes with nothing to commit.
const OWNING_PATIENCE: Duration = Duration::from_secs(20);
/// Generous deadline for the survivor to process what is left once the
/// producer is done.
const CATCH_UP: Duration = Duration::from_secs(90);

/// The assignor the group runs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Assignor {
    /// librdkafka's default, `range,roundrobin`: the eager protocol.
    Default,
    /// `cooperative-sticky`: the incremental protocol.
    CooperativeSticky,
}

async fn default_assignor(implementation: Implementation) {
    churn(implementation, Assignor::Default).await;
}

async fn cooperative_sticky(implementation: Implementation) {
    churn(implementation, Assignor::CooperativeSticky).await;
}

contract_tests!(default_assignor, cooperative_sticky);

/// One processed message: where it was, and when (a sequence number shared
/// by all members, in processing order).
#[derive(Debug, Clone, Copy)]
struct Read {
    partition: i32,
    offset: i64,
    seq: u64,
    /// How many times this member had been assigned the partition when it
    /// processed the message, as far as it saw (1 for the first time).
    ownership: u32,
}

/// How a member leaves the group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Leaving {
    /// Stops mid-stream with messages processed since its last commit, and
    /// is dropped without committing.
    Abruptly,
    /// Commits what it processed, then is dropped.
    Cleanly,
}

/// What a member's task reports when it ends.
#[derive(Debug, Default)]
struct Outcome {
    commits: usize,
    failed_commits: usize,
    /// Errors the stream yielded (all of them librdkafka's).
    errors: usize,
    /// Messages processed since the last successful commit when it left.
    uncommitted_at_exit: usize,
    /// Positions (next offset) of the partitions it owned when it left, and
    /// for a clean close the positions its last commit covered.
    positions_at_exit: BTreeMap<i32, i64>,
    /// The shared sequence number when it left: reads numbered from here on
    /// happened after.
    exit_seq: u64,
    /// How long dropping the consumer took.
    drop_took: Duration,
}

/// A running member.
struct Member {
    name: &'static str,
    reads: Arc<Mutex<Vec<Read>>>,
    stop: watch::Sender<bool>,
    task: JoinHandle<Outcome>,
}

impl Member {
    fn processed(&self) -> usize {
        self.reads.lock().expect("lock").len()
    }

    /// Asks the member to leave, and waits until it has.
    async fn leave(self) -> (Vec<Read>, Outcome) {
        self.stop.send_replace(true);
        let outcome = tokio::time::timeout(PATIENCE, self.task)
            .await
            .unwrap_or_else(|_| panic!("member {} did not leave within {PATIENCE:?}", self.name))
            .unwrap_or_else(|error| panic!("member {} failed: {error}", self.name));
        let reads = self.reads.lock().expect("lock").clone();
        (reads, outcome)
    }
}

type Consumer = Box<dyn KafkaStreamConsumer<String, String>>;

async fn churn(implementation: Implementation, assignor: Assignor) {
    let env = Arc::new(env());
    let topic = env.unique_topic("churn");
    env.create_topic(&topic, PARTITIONS).expect("topic");
    let group = env.unique_group("churn");
    let label = format!("{implementation:?} with the {assignor:?} assignor");
    let new_member = || {
        let mut config = consumer_config(&env, &group);
        if env.kind().is_mock() {
            config.session_timeout_ms = Some(MOCK_SESSION_TIMEOUT.as_millis() as u64);
        }
        if assignor == Assignor::CooperativeSticky {
            config.extra.insert(
                "partition.assignment.strategy".into(),
                "cooperative-sticky".into(),
            );
        }
        let consumer = build(implementation, config, StringSerde, StringSerde);
        consumer.subscribe(&[&topic]).expect("subscribe");
        consumer
    };
    let seq = Arc::new(AtomicU64::new(0));

    let started = Instant::now();
    let producer = {
        let env = Arc::clone(&env);
        let topic = topic.clone();
        std::thread::spawn(move || produce_steadily(&env, &topic))
    };
    let a = spawn_member("A", new_member(), Leaving::Abruptly, &seq);
    let b = spawn_member("B", new_member(), Leaving::Cleanly, &seq);

    sleep_until(started, LATE_JOIN_AT).await;
    let c = spawn_member("C", new_member(), Leaving::Cleanly, &seq);

    sleep_until(started, DROP_AT).await;
    wait_until(|| a.processed() > 0, "A to process a message").await;
    let (a_reads, a_outcome) = a.leave().await;
    println!(
        "{label}: A dropped at {:?} after {} messages, {} of them since its last commit, positions {:?}",
        started.elapsed(),
        a_reads.len(),
        a_outcome.uncommitted_at_exit,
        a_outcome.positions_at_exit
    );

    sleep_until(started, CLOSE_AT).await;
    wait_until(|| b.processed() > 0, "B to process a message").await;
    let (b_reads, b_outcome) = b.leave().await;
    println!(
        "{label}: B committed and closed at {:?} after {} messages, committed positions {:?}",
        started.elapsed(),
        b_reads.len(),
        b_outcome.positions_at_exit
    );

    let produced =
        tokio::task::spawn_blocking(move || producer.join().expect("the producer thread panicked"))
            .await
            .expect("join the producer");
    let expected = common::produced_coordinates(&produced);
    assert_eq!(
        expected.len(),
        produced.len(),
        "a coordinate produced twice"
    );
    let produced_by = started.elapsed();

    // The survivor reads until everything was processed by someone.
    let deadline = Instant::now() + CATCH_UP;
    let done_before_c: BTreeSet<(i32, i64)> = a_reads
        .iter()
        .chain(&b_reads)
        .map(|r| (r.partition, r.offset))
        .collect();
    loop {
        let missing = {
            let c_reads = c.reads.lock().expect("lock");
            let union: BTreeSet<_> = c_reads
                .iter()
                .map(|r| (r.partition, r.offset))
                .chain(done_before_c.iter().copied())
                .collect();
            expected.difference(&union).copied().collect::<Vec<_>>()
        };
        if missing.is_empty() {
            break;
        }
        if Instant::now() >= deadline {
            panic!(
                "{label}: {} of {} produced messages still unprocessed {CATCH_UP:?} after producing ended; per partition {:?}, first {:?}",
                missing.len(),
                expected.len(),
                common::per_partition(&missing),
                &missing[..missing.len().min(10)]
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (c_reads, c_outcome) = c.leave().await;
    let elapsed = started.elapsed();

    check(
        &env,
        &label,
        &expected,
        [
            ("A", a_reads, a_outcome),
            ("B", b_reads, b_outcome),
            ("C", c_reads, c_outcome),
        ],
    );
    println!(
        "{label}: produced {} messages in {produced_by:?}, all processed, done in {elapsed:?}",
        expected.len()
    );
}

/// The assertions, on what the three members processed.
fn check(
    env: &KafkaTestEnv,
    label: &str,
    expected: &BTreeSet<(i32, i64)>,
    members: [(&str, Vec<Read>, Outcome); 3],
) {
    // Every read, in processing order, with its member's index.
    let mut all: Vec<(usize, Read)> = members
        .iter()
        .enumerate()
        .flat_map(|(index, (_, reads, _))| reads.iter().map(move |read| (index, *read)))
        .collect();
    all.sort_by_key(|(_, read)| read.seq);

    // Nothing lost, nothing that was not produced.
    let union: BTreeSet<(i32, i64)> = all.iter().map(|(_, r)| (r.partition, r.offset)).collect();
    let lost: Vec<_> = expected.difference(&union).copied().collect();
    let unknown: Vec<_> = union.difference(expected).copied().collect();
    assert!(
        lost.is_empty() && unknown.is_empty(),
        "{label}: {} produced messages never processed {:?}, {} processed but never produced {:?}",
        lost.len(),
        &lost[..lost.len().min(10)],
        unknown.len(),
        &unknown[..unknown.len().min(10)]
    );

    // Duplicates: every read after a message's first one, by whom, and who
    // had processed the message first.
    let mut first_by: BTreeMap<(i32, i64), usize> = BTreeMap::new();
    let mut duplicates_by = [0usize; 3];
    let mut re_read_from: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    for (member, read) in &all {
        match first_by.get(&(read.partition, read.offset)) {
            None => {
                first_by.insert((read.partition, read.offset), *member);
            }
            Some(first) => {
                duplicates_by[*member] += 1;
                *re_read_from
                    .entry((members[*first].0, members[*member].0))
                    .or_default() += 1;
            }
        }
    }
    let duplicates: usize = duplicates_by.iter().sum();
    for (index, (name, reads, outcome)) in members.iter().enumerate() {
        println!(
            "{label}: member {name} processed {} (per partition {:?}), duplicates {}, commits {} ok / {} failed, stream errors {}, uncommitted when it left {}, dropped in {:?}",
            reads.len(),
            common::per_partition(
                &reads
                    .iter()
                    .map(|r| (r.partition, r.offset))
                    .collect::<Vec<_>>()
            ),
            duplicates_by[index],
            outcome.commits,
            outcome.failed_commits,
            outcome.errors,
            outcome.uncommitted_at_exit,
            outcome.drop_took
        );
    }
    println!(
        "{label}: {} produced, {} processed, {duplicates} duplicates (first processed by → processed again by: {re_read_from:?})",
        expected.len(),
        all.len()
    );

    // A member processes a message again only after its partition left it
    // and came back: within one ownership the consumer never repeats itself.
    // (On the mock a commit on revocation can be refused; when the partition
    // comes back, its owner reads from the stale committed offset again.)
    for (name, reads, _) in &members {
        let mut first_ownership: BTreeMap<(i32, i64), u32> = BTreeMap::new();
        let mut within_one_ownership = Vec::new();
        for read in reads {
            match first_ownership.get(&(read.partition, read.offset)) {
                None => {
                    first_ownership.insert((read.partition, read.offset), read.ownership);
                }
                Some(&first) if first == read.ownership => {
                    within_one_ownership.push((read.partition, read.offset));
                }
                Some(_) => {}
            }
        }
        assert!(
            within_one_ownership.is_empty(),
            "{label}: member {name} processed {} messages twice while it owned their partition, e.g. {:?}",
            within_one_ownership.len(),
            &within_one_ownership[..within_one_ownership.len().min(10)]
        );
    }

    // The scenario took place: A left with processed but uncommitted
    // messages; every member took part.
    let (_, a_reads, a_outcome) = &members[0];
    assert!(
        a_outcome.uncommitted_at_exit > 0,
        "{label}: A had nothing uncommitted when dropped ({} processed)",
        a_reads.len()
    );
    for (name, reads, _) in &members {
        assert!(
            !reads.is_empty(),
            "{label}: member {name} processed nothing"
        );
    }

    // After its commit succeeded, nobody reads again below B's committed
    // positions. A's positions at its drop are checked the same way on
    // Apache Kafka (the drop commits them); on the mock they are reported.
    let re_read_below = |member: usize| -> usize {
        let (_, _, outcome) = &members[member];
        all.iter()
            .filter(|(by, read)| {
                *by != member
                    && read.seq >= outcome.exit_seq
                    && outcome
                        .positions_at_exit
                        .get(&read.partition)
                        .is_some_and(|position| read.offset < *position)
            })
            .count()
    };
    assert!(
        !members[1].2.positions_at_exit.is_empty(),
        "{label}: B owned no partition with a position when it closed"
    );
    let after_close = re_read_below(1);
    let after_drop = re_read_below(0);
    println!(
        "{label}: read again below the positions A had when dropped: {after_drop}; below those B committed before closing: {after_close}"
    );
    assert_eq!(
        after_close, 0,
        "{label}: messages B processed and committed before closing were processed again"
    );

    if env.kind().is_mock() {
        // The mock refuses the commit on revocation while the group
        // rebalances (REBALANCE_IN_PROGRESS): the members that stay when C
        // joins or A leaves cannot commit the partitions that move, and their
        // new owners read again from the last periodic commit. Only the
        // properties above hold there.
        println!(
            "{label}: on the mock, {duplicates} duplicates allowed (commits refused during rebalances)"
        );
    } else {
        // Apache Kafka: every revocation, including the one A's drop and B's
        // close make, commits what was handed out.
        assert_eq!(
            after_drop, 0,
            "{label}: messages A processed before it was dropped were processed again: its drop did not commit them"
        );
        assert_eq!(
            duplicates, 0,
            "{label}: every revoked partition's position is committed on revocation, so no message is processed twice ({re_read_from:?})"
        );
    }
}

fn spawn_member(
    name: &'static str,
    consumer: Consumer,
    leaving: Leaving,
    seq: &Arc<AtomicU64>,
) -> Member {
    let reads = Arc::new(Mutex::new(Vec::new()));
    let (stop, stopped) = watch::channel(false);
    let task = tokio::spawn(run_member(
        name,
        consumer,
        leaving,
        Arc::clone(&reads),
        Arc::clone(seq),
        stopped,
    ));
    Member {
        name,
        reads,
        stop,
        task,
    }
}

/// One member: reads, records, commits periodically, and leaves as told.
async fn run_member(
    name: &'static str,
    consumer: Consumer,
    leaving: Leaving,
    reads: Arc<Mutex<Vec<Read>>>,
    seq: Arc<AtomicU64>,
    mut stop: watch::Receiver<bool>,
) -> Outcome {
    let mut outcome = Outcome::default();
    let mut since_commit = 0usize;
    let mut last_commit = Instant::now();
    let mut stopping_since: Option<Instant> = None;
    let mut ownership = Ownership::default();
    {
        let mut stream = consumer.stream();
        loop {
            ownership.observe(&*consumer);
            tokio::select! {
                biased;
                _ = stop.wait_for(|stop| *stop), if stopping_since.is_none() => {
                    stopping_since = Some(Instant::now());
                }
                item = next_within(&mut stream, COMMIT_EVERY) => match item {
                    Some(Ok(message)) => {
                        ownership.observe(&*consumer);
                        let read = Read {
                            partition: message.partition,
                            offset: message.offset,
                            seq: seq.fetch_add(1, Ordering::SeqCst),
                            ownership: ownership.of(message.partition),
                        };
                        reads.lock().expect("lock").push(read);
                        since_commit += 1;
                    }
                    Some(Err(error @ ConsumerError::Deserialize { .. })) => {
                        panic!("member {name}: every produced message is a string: {error}")
                    }
                    Some(Err(error)) => {
                        println!("member {name}: stream error: {error}");
                        outcome.errors += 1;
                    }
                    None => {}
                },
            }
            if let Some(since) = stopping_since {
                match leaving {
                    Leaving::Abruptly => {
                        // Leave mid-stream, with something uncommitted.
                        if since_commit > 0 || since.elapsed() > PATIENCE {
                            outcome.positions_at_exit = positions(&*consumer);
                            outcome.exit_seq = seq.load(Ordering::SeqCst);
                            break;
                        }
                    }
                    Leaving::Cleanly if last_commit.elapsed() >= CLOSE_RETRY => {
                        let before = positions(&*consumer);
                        if before.is_empty() && since.elapsed() < OWNING_PATIENCE {
                            // Between a revocation and the next assignment:
                            // close once there is something to commit.
                            continue;
                        }
                        match commit(&*consumer) {
                            Ok(()) => {
                                outcome.commits += 1;
                                since_commit = 0;
                                // What the commit covered: the positions of
                                // the partitions owned before and after it.
                                let after = positions(&*consumer);
                                outcome.positions_at_exit = before
                                    .into_iter()
                                    .filter(|(partition, position)| {
                                        after.get(partition) == Some(position)
                                    })
                                    .collect();
                                outcome.exit_seq = seq.load(Ordering::SeqCst);
                                break;
                            }
                            Err(error) => {
                                outcome.failed_commits += 1;
                                last_commit = Instant::now();
                                println!("member {name}: commit to close failed: {error}");
                                assert!(
                                    since.elapsed() < PATIENCE,
                                    "member {name} could not commit to close within {PATIENCE:?}: {error}"
                                );
                            }
                        }
                    }
                    Leaving::Cleanly => {}
                }
                continue;
            }
            // Every COMMIT_EVERY_MESSAGES or COMMIT_EVERY; after a refusal,
            // not before CLOSE_RETRY.
            let due = since_commit > 0
                && (last_commit.elapsed() >= COMMIT_EVERY
                    || (since_commit >= COMMIT_EVERY_MESSAGES
                        && last_commit.elapsed() >= CLOSE_RETRY));
            if due {
                last_commit = Instant::now();
                match commit(&*consumer) {
                    Ok(()) => {
                        outcome.commits += 1;
                        since_commit = 0;
                    }
                    Err(error) => {
                        // Refused during a rebalance: the next one covers it.
                        outcome.failed_commits += 1;
                        println!("member {name}: periodic commit failed: {error}");
                    }
                }
            }
        }
        outcome.uncommitted_at_exit = since_commit;
        // The stream drops here (moving back to what it polled and did not
        // hand out), then the consumer, closing it: both may block.
        tokio::task::block_in_place(move || drop(stream));
    }
    let dropping = Instant::now();
    tokio::task::block_in_place(move || drop(consumer));
    outcome.drop_took = dropping.elapsed();
    outcome
}

/// A member's view of its assignment: how many times it has been assigned
/// each partition, sampled on every message and every loop turn.
#[derive(Default)]
struct Ownership {
    owned: BTreeSet<i32>,
    times: BTreeMap<i32, u32>,
}

impl Ownership {
    fn observe(&mut self, consumer: &dyn KafkaStreamConsumer<String, String>) {
        let Ok(list) = consumer.assignment() else {
            return;
        };
        let now: BTreeSet<i32> = list.elements().iter().map(|e| e.partition()).collect();
        for partition in now.difference(&self.owned) {
            *self.times.entry(*partition).or_default() += 1;
        }
        self.owned = now;
    }

    fn of(&self, partition: i32) -> u32 {
        self.times.get(&partition).copied().unwrap_or_default()
    }
}

/// A synchronous commit, off the async worker's back.
fn commit(consumer: &dyn KafkaStreamConsumer<String, String>) -> Result<(), ConsumerError> {
    tokio::task::block_in_place(|| consumer.commit_blocking())
}

/// The position (next offset to hand out) of each assigned partition the
/// consumer has handed out messages from.
fn positions(consumer: &dyn KafkaStreamConsumer<String, String>) -> BTreeMap<i32, i64> {
    let Ok(list) = consumer.current_offsets() else {
        return BTreeMap::new();
    };
    list.elements()
        .iter()
        .filter_map(|element| match element.offset() {
            Offset::Offset(offset) => Some((element.partition(), offset)),
            _ => None,
        })
        .collect()
}

/// Produces [`BATCH`] records every [`BATCH_EVERY`] for [`PRODUCE_FOR`], and
/// returns where each one went.
fn produce_steadily(env: &KafkaTestEnv, topic: &str) -> Vec<ProducedRecord> {
    let started = Instant::now();
    let mut produced = Vec::new();
    let mut next_batch = started;
    while started.elapsed() < PRODUCE_FOR {
        let first = produced.len();
        let batch = env
            .produce(
                topic,
                (first..first + BATCH)
                    .map(|i| TestRecord::new(format!("key-{i}"), format!("message-{i}"))),
            )
            .expect("produce");
        produced.extend(batch);
        next_batch += BATCH_EVERY;
        if let Some(wait) = next_batch.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
    produced
}

async fn sleep_until(started: Instant, at: Duration) {
    tokio::time::sleep_until((started + at).into()).await;
}

async fn wait_until(done: impl Fn() -> bool, what: &str) {
    let deadline = Instant::now() + PATIENCE;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
