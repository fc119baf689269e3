//! Nothing a consumer does holds its executor: a current-thread runtime runs
//! the consumer and a ticker task that wakes every 10 ms, and the longest
//! gap between two ticks stays under 100 ms through everything a service
//! goes through:
//!
//! - reading, and `commit_async` while reading;
//! - a rebalance as a second member joins (the consumer's revocation commits
//!   what it handed out) and another as it leaves;
//! - the group coordinator killed while a commit is in flight, and brought
//!   back;
//! - `close`.
//!
//! On the embedded mock every answer of the broker is also delayed by
//! 400 ms through both rebalances (real Kafka cannot be slowed down from
//! here): a commit on revocation that waited for its answer inside
//! `poll_next` would show as a gap of at least that.
//!
//! One test runs the implementations in turn, since killing the broker
//! disturbs anything else using it, and since a gap on a loaded machine
//! should be the consumer's, not another test's.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, channel};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use common::{Implementation, build, consumer_config, env, next_within, take};
use kafka_test_env::{BrokerKind, KafkaTestEnv};
use tiered_kafka::api::{ConsumerConfig, KafkaStreamConsumer, MessageStream, StringSerde};
use tokio::sync::oneshot;

/// How often the ticker wakes.
const TICK: Duration = Duration::from_millis(10);
/// The longest gap between two ticks the executor may show.
const LONGEST_GAP: Duration = Duration::from_millis(100);
/// The mock broker's answers are this late through the rebalances.
const MOCK_ROUND_TRIP: Duration = Duration::from_millis(400);
const PARTITIONS: i32 = 4;
/// Records produced each time the consumer needs some to read.
const BATCH: usize = 200;
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);
const PATIENCE: Duration = Duration::from_secs(90);

#[test]
fn no_consumer_operation_holds_a_current_thread_executor() {
    let env = env();
    let mut failures = Vec::new();
    for implementation in Implementation::ALL {
        let gaps = run(&env, implementation);
        println!("{implementation:?}: longest gap between ticks, by phase: {gaps:?}");
        for (phase, gap) in gaps {
            if gap >= LONGEST_GAP {
                failures.push(format!("{implementation:?}, {phase}: {gap:?}"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "the executor was held {LONGEST_GAP:?} or longer: {failures:?}"
    );
}

/// Runs every phase for `implementation`; returns the longest gap between
/// two ticks in each.
fn run(env: &KafkaTestEnv, implementation: Implementation) -> BTreeMap<&'static str, Duration> {
    let topic = env.unique_topic("executor");
    env.create_topic(&topic, PARTITIONS).expect("topic");
    env.produce_test_messages(&topic, BATCH).expect("produce");
    let group = env.unique_group("executor");
    let mut config = consumer_config(env, &group);
    config.close_timeout_ms = Some(CLOSE_TIMEOUT.as_millis() as u64);

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let _guard = runtime.enter();
    let consumer = build(implementation, config.clone(), StringSerde, StringSerde);
    consumer.subscribe(&[&topic]).expect("subscribe");

    // Whatever blocks (producing, killing and restarting the broker) runs on
    // this thread, so that the executor only ever awaits it.
    let (commands, received) = channel();
    std::thread::scope(|scope| {
        scope.spawn(|| serve_broker_commands(env, &topic, received));
        let broker = BrokerHand { commands };
        runtime.block_on(phases(
            env,
            implementation,
            consumer,
            config,
            &topic,
            broker,
        ))
    })
}

async fn phases(
    env: &KafkaTestEnv,
    implementation: Implementation,
    consumer: Box<dyn KafkaStreamConsumer<String, String>>,
    config: ConsumerConfig,
    topic: &str,
    broker: BrokerHand,
) -> BTreeMap<&'static str, Duration> {
    let gaps = Gaps::default();
    let ticker = tokio::spawn(gaps.clone().tick());
    let mut stream = consumer.stream();

    gaps.enter("reading, with commit_async");
    for _ in 0..10 {
        take(&mut stream, BATCH / 20, PATIENCE).await;
        consumer.commit_async().await.expect("commit while reading");
    }
    // Handed out and not committed: the revocation commits these.
    take(&mut stream, BATCH / 4, PATIENCE).await;

    gaps.enter("rebalance: a member joins");
    let slowdown = env.broker_slowdown(MOCK_ROUND_TRIP).ok();
    let member = Member::join(implementation, config, topic);
    let shared = read_until_assigned(&*consumer, &mut stream, |n| {
        n > 0 && n < PARTITIONS as usize
    })
    .await;
    println!("{implementation:?}: shares the topic: {shared} of {PARTITIONS} partitions");

    gaps.enter("rebalance: the member leaves");
    let left = tokio::task::spawn_blocking(move || member.leave());
    read_until_assigned(&*consumer, &mut stream, |n| n == PARTITIONS as usize).await;
    left.await.expect("the member left");
    drop(slowdown);

    gaps.enter("coordinator killed mid-commit");
    broker.run(Command::Produce).await;
    take(&mut stream, BATCH / 2, PATIENCE).await;
    broker.run(Command::Kill).await;
    let commit = consumer.commit_async();
    broker.run(Command::Restore).await;
    let committed = tokio::time::timeout(PATIENCE, commit)
        .await
        .expect("the commit resolves");
    println!("{implementation:?}: the commit sent to a killed coordinator: {committed:?}");

    gaps.enter("close");
    drop(stream);
    let started = Instant::now();
    let report = consumer.close(CLOSE_TIMEOUT).await;
    println!(
        "{implementation:?}: closed in {:?}: {report:?}",
        started.elapsed()
    );
    ticker.abort();
    broker.finish();
    gaps.longest()
}

/// Reads (which is what serves a rebalance) until the number of assigned
/// partitions satisfies `wanted`; returns it.
async fn read_until_assigned(
    consumer: &dyn KafkaStreamConsumer<String, String>,
    stream: &mut MessageStream<'_, String, String>,
    wanted: impl Fn(usize) -> bool,
) -> usize {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let _ = next_within(stream, Duration::from_millis(50)).await;
        let assigned = consumer
            .current_offsets()
            .map(|offsets| offsets.count())
            .unwrap_or(0);
        if wanted(assigned) {
            return assigned;
        }
        assert!(
            Instant::now() < deadline,
            "still {assigned} partitions assigned after {PATIENCE:?}"
        );
    }
}

/// The longest gap between two ticks, per phase of the test.
#[derive(Clone, Default)]
struct Gaps(Arc<Mutex<Phases>>);

#[derive(Default)]
struct Phases {
    current: &'static str,
    started: Option<Instant>,
    longest: BTreeMap<&'static str, Duration>,
}

impl Gaps {
    fn enter(&self, phase: &'static str) {
        let mut phases = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(started) = phases.started {
            println!("  {} took {:?}", phases.current, started.elapsed());
        }
        phases.current = phase;
        phases.started = Some(Instant::now());
        phases.longest.entry(phase).or_default();
    }

    fn note(&self, gap: Duration) {
        let mut phases = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let phase = phases.current;
        let longest = phases.longest.entry(phase).or_default();
        *longest = (*longest).max(gap);
    }

    fn longest(&self) -> BTreeMap<&'static str, Duration> {
        self.enter("");
        let mut longest = self
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .longest
            .clone();
        longest.remove("");
        longest
    }

    async fn tick(self) {
        let mut last = Instant::now();
        loop {
            tokio::time::sleep(TICK).await;
            let now = Instant::now();
            self.note(now - last);
            last = now;
        }
    }
}

/// A second member of the group, reading on a thread of its own.
struct Member {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

impl Member {
    fn join(implementation: Implementation, config: ConsumerConfig, topic: &str) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let topic = topic.to_owned();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            let _guard = runtime.enter();
            let member = build(implementation, config, StringSerde, StringSerde);
            member.subscribe(&[&topic]).expect("subscribe");
            runtime.block_on(async {
                let mut stream = member.stream();
                while !stopped.load(Ordering::Relaxed) {
                    let _ = next_within(&mut stream, Duration::from_millis(100)).await;
                }
            });
            let report = member.close_blocking(Duration::from_secs(10));
            println!("{implementation:?}: the second member left: {report:?}");
        });
        Member { stop, thread }
    }

    /// Stops reading, closes the member (it leaves the group) and joins its
    /// thread.
    fn leave(self) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("the member's thread");
    }
}

/// What the broker thread does on request.
#[derive(Debug, Clone, Copy)]
enum Command {
    /// Produce [`BATCH`] more records.
    Produce,
    /// Kill the broker (on the mock: set it down).
    Kill,
    /// Bring it back, and wait until it answers.
    Restore,
}

/// Sends commands to the broker thread and awaits their completion.
struct BrokerHand {
    commands: std::sync::mpsc::Sender<(Command, oneshot::Sender<()>)>,
}

impl BrokerHand {
    async fn run(&self, command: Command) {
        let (done, finished) = oneshot::channel();
        self.commands
            .send((command, done))
            .expect("the broker thread listens");
        finished.await.expect("the broker thread answers");
    }

    /// Ends the broker thread (after restoring the broker if needed).
    fn finish(self) {}
}

fn serve_broker_commands(
    env: &KafkaTestEnv,
    topic: &str,
    commands: Receiver<(Command, oneshot::Sender<()>)>,
) {
    let mut outage = None;
    for (command, done) in commands {
        match command {
            Command::Produce => {
                env.produce_test_messages(topic, BATCH).expect("produce");
            }
            Command::Kill => outage = Some(env.broker_outage().expect("kill the broker")),
            Command::Restore => {
                drop(outage.take());
                if !matches!(env.kind(), BrokerKind::Mock { .. }) {
                    // The restarted broker answers; wait until it leads the
                    // topic again before the test goes on.
                    env.produce_test_messages(topic, 1)
                        .expect("produce after the restart");
                }
            }
        }
        let _ = done.send(());
    }
}
