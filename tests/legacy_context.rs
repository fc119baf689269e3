//! What only the legacy consumer has: the builder with an application context
//! that really receives rdkafka's callbacks, `poll(timeout)`, the raw stream
//! with `mark_delivered`, and automatic commits that cover exactly what was
//! handed out.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{consumer_config, env, next_within, take};
use consumer_legacy::{KafkaConsumer, LegacyConsumerContext, TrackingContext};
use futures_util::StreamExt;
use rdkafka::consumer::{BaseConsumer, Consumer as _, Rebalance};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tiered_kafka::api::{ConsumerError, KafkaStreamConsumer, StringSerde};

const PATIENCE: Duration = Duration::from_secs(60);

/// A commit callback: whether it succeeded, and `(partition, offset)`s.
type CommitResult = (bool, Vec<(i32, Option<i64>)>);

/// Counts every callback it receives; the counters outlive the consumer.
#[derive(Debug, Default, Clone)]
struct Counting(Arc<Counters>);

#[derive(Debug, Default)]
struct Counters {
    assigned: AtomicUsize,
    revoked: AtomicUsize,
    post_rebalances: AtomicUsize,
    /// The assignment as the consumer saw it from inside `post_rebalance`.
    assignment_seen: AtomicUsize,
    commits: Mutex<Vec<CommitResult>>,
    stats: AtomicUsize,
    errors: AtomicUsize,
}

impl ClientContext for Counting {
    fn stats_raw(&self, _statistics: &[u8]) {
        self.0.stats.fetch_add(1, Ordering::Relaxed);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        println!("context got error: {error}: {reason}");
        self.0.errors.fetch_add(1, Ordering::Relaxed);
    }
}

impl LegacyConsumerContext for Counting {
    fn pre_rebalance(&self, _: &BaseConsumer<TrackingContext<Self>>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(_) => self.0.assigned.fetch_add(1, Ordering::Relaxed),
            Rebalance::Revoke(_) => self.0.revoked.fetch_add(1, Ordering::Relaxed),
            Rebalance::Error(_) => 0,
        };
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<TrackingContext<Self>>, _: &Rebalance<'_>) {
        self.0.post_rebalances.fetch_add(1, Ordering::Relaxed);
        if let Ok(assignment) = consumer.assignment() {
            self.0
                .assignment_seen
                .store(assignment.count(), Ordering::Relaxed);
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        let offsets = offsets
            .elements()
            .iter()
            .map(|e| {
                (
                    e.partition(),
                    match e.offset() {
                        Offset::Offset(o) => Some(o),
                        _ => None,
                    },
                )
            })
            .collect();
        self.0
            .commits
            .lock()
            .expect("lock")
            .push((result.is_ok(), offsets));
    }
}

/// The builder's context gets the rebalance, commit, statistics and error
/// callbacks while the consumer runs, and a revocation when it closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn builder_context_receives_the_callbacks() {
    let env = env();
    let topic = env.unique_topic("context");
    env.create_topic(&topic, 2).expect("topic");
    env.produce_test_messages(&topic, 40).expect("produce");

    let mut config = consumer_config(&env, &env.unique_group("context"));
    config.enable_auto_commit = Some(true);
    config.auto_commit_interval_ms = Some(200);
    config
        .extra
        .insert("statistics.interval.ms".into(), "100".into());
    let counting = Counting::default();
    let consumer: KafkaConsumer<String, String, _, _, Counting> = KafkaConsumer::builder()
        .config(config)
        .key_serde(StringSerde)
        .value_serde(StringSerde)
        .context(counting.clone())
        .build()
        .expect("built");
    consumer.subscribe(&[&topic]).expect("subscribe");
    {
        let mut stream = KafkaStreamConsumer::stream(&consumer);
        take(&mut stream, 40, PATIENCE).await;
        // Nothing more to read: serve events (commit results, statistics).
        assert!(
            next_within(&mut stream, Duration::from_millis(1500))
                .await
                .is_none()
        );
    }
    let context = &consumer.context().0;
    assert!(
        context.assigned.load(Ordering::Relaxed) >= 1,
        "no assignment"
    );
    assert!(context.post_rebalances.load(Ordering::Relaxed) >= 1);
    assert_eq!(
        context.assignment_seen.load(Ordering::Relaxed),
        2,
        "post_rebalance sees the applied assignment"
    );
    assert!(context.stats.load(Ordering::Relaxed) >= 1, "no statistics");
    let commits = context.commits.lock().expect("lock").clone();
    // Automatic commits of what was handed out: all 40 in the end, in one
    // commit or across several (one per interval while reading, when a
    // loaded machine spreads the reading over more than one).
    let mut latest = std::collections::BTreeMap::new();
    for (_, offsets) in commits.iter().filter(|(ok, _)| *ok) {
        for (partition, offset) in offsets {
            if let Some(offset) = offset {
                let entry = latest.entry(*partition).or_insert(*offset);
                *entry = (*entry).max(*offset);
            }
        }
    }
    let committed_everything = latest.values().sum::<i64>() == 40;
    assert!(
        committed_everything,
        "no automatic commit of the 40 handed out: {commits:?}"
    );
    println!(
        "context: {} assignment(s), {} statistics, {} commit results, {} errors",
        context.assigned.load(Ordering::Relaxed),
        context.stats.load(Ordering::Relaxed),
        commits.len(),
        context.errors.load(Ordering::Relaxed),
    );

    assert_eq!(context.revoked.load(Ordering::Relaxed), 0);
    // Closing revokes the assignment through the context.
    drop(consumer);
    assert_eq!(
        counting.0.revoked.load(Ordering::Relaxed),
        1,
        "revocation on close"
    );
}

/// The context's `error` callback hears about an unreachable broker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn builder_context_hears_errors() {
    let consumer: KafkaConsumer<String, String, _, _, Counting> = KafkaConsumer::builder()
        .brokers("127.0.0.1:1")
        .group_id("unreachable")
        .key_serde(StringSerde)
        .value_serde(StringSerde)
        .context(Counting::default())
        .build()
        .expect("built");
    consumer.subscribe(&["nowhere"]).expect("subscribe");
    let mut stream = consumer.stream();
    match tokio::time::timeout(Duration::from_secs(30), stream.next()).await {
        Ok(Some(Err(error))) if error.kafka_error().is_some() => {
            println!("stream reported {error}")
        }
        other => panic!("expected a Kafka error, got {other:?}"),
    }
    assert!(consumer.context().0.errors.load(Ordering::Relaxed) >= 1);
}

/// With automatic commits on, librdkafka commits exactly what was handed
/// out, although it has fetched (and holds) the rest of the partition.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn automatic_commits_cover_only_what_was_handed_out() {
    let env = env();
    let topic = env.unique_topic("autocommit");
    env.create_topic(&topic, 1).expect("topic");
    env.produce_test_messages(&topic, 100).expect("produce");
    let mut config = consumer_config(&env, &env.unique_group("autocommit"));
    config.enable_auto_commit = Some(true);
    config.auto_commit_interval_ms = Some(100);
    let consumer: KafkaConsumer<String, String, _, _> =
        KafkaConsumer::with_config(config, StringSerde, StringSerde).expect("built");
    consumer.subscribe(&[&topic]).expect("subscribe");
    let mut stream = KafkaStreamConsumer::stream(&consumer);
    take(&mut stream, 30, PATIENCE).await;
    // Let the automatic commit happen without reading on.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let committed = consumer
        .committed(Duration::from_secs(10))
        .expect("committed");
    let offset = committed.find_partition(&topic, 0).map(|e| e.offset());
    assert_eq!(offset, Some(Offset::Offset(30)));
    println!("automatic commit after 30 of 100 handed out: {offset:?}");
}

/// `poll` hands out messages one by one and reports a timeout when there are
/// none; the raw stream records nothing until `mark_delivered`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poll_and_raw_stream() {
    let env = env();
    let topic = env.unique_topic("poll");
    env.create_topic(&topic, 1).expect("topic");
    env.produce_test_messages(&topic, 10).expect("produce");
    let group = env.unique_group("poll");
    {
        let consumer: KafkaConsumer<String, String, _, _> =
            KafkaConsumer::with_config(consumer_config(&env, &group), StringSerde, StringSerde)
                .expect("built");
        consumer.subscribe(&[&topic]).expect("subscribe");
        for expected in 0..3 {
            let message = consumer.poll(PATIENCE).await.expect("a message");
            assert_eq!(message.offset, expected);
            assert_eq!(
                message.value.as_deref(),
                Some(format!("message-{expected}").as_str())
            );
        }
        // Raw records are not recorded...
        let mut raw = consumer.raw_stream();
        let mut last = None;
        for _ in 0..5 {
            let record = raw.next().await.expect("never ends").expect("a record");
            last = Some(rdkafka::Message::offset(&record));
            if rdkafka::Message::offset(&record) == 5 {
                // ...until marked: 3 and 4 are covered by marking 5.
                consumer.mark_delivered(&record);
            }
        }
        drop(raw);
        assert_eq!(last, Some(7));
        let position = consumer.current_offsets().expect("positions");
        assert_eq!(
            position.find_partition(&topic, 0).map(|e| e.offset()),
            Some(Offset::Offset(6))
        );
        consumer.commit_blocking().expect("commit");
        // The rest, then nothing: a timeout.
        for expected in 8..10 {
            assert_eq!(
                consumer.poll(PATIENCE).await.expect("a message").offset,
                expected
            );
        }
        match consumer.poll(Duration::from_millis(300)).await {
            Err(ConsumerError::Timeout(waited)) => {
                assert_eq!(waited, Duration::from_millis(300));
            }
            other => panic!("expected a timeout, got {other:?}"),
        }
        // Close without committing 8 and 9: the close commits them (they were
        // handed out); to check the explicit commit, read the group's offsets
        // before that.
        let committed = consumer
            .committed(Duration::from_secs(10))
            .expect("committed");
        assert_eq!(
            committed.find_partition(&topic, 0).map(|e| e.offset()),
            Some(Offset::Offset(6))
        );
    }
    println!("poll: 0..3, raw 3..8 with 5 marked, commit at 6, poll 8..10, then a timeout");
}

/// Panics in `pre_rebalance` when partitions are revoked.
#[derive(Debug, Default)]
struct PanicsOnRevoke;

impl ClientContext for PanicsOnRevoke {}

impl LegacyConsumerContext for PanicsOnRevoke {
    fn pre_rebalance(&self, _: &BaseConsumer<TrackingContext<Self>>, rebalance: &Rebalance<'_>) {
        if matches!(rebalance, Rebalance::Revoke(_)) {
            panic!("the application's pre_rebalance panicked");
        }
    }
}

/// librdkafka waits for a rebalance to be applied before it completes a
/// close: a panic in a rebalance hook must not leave the assignment
/// unapplied, or dropping the consumer would wait forever. The panic reaches
/// the caller once the revocation is applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_rebalance_hook_does_not_wedge_the_consumer() {
    let env = env();
    let topic = env.unique_topic("hook-panic");
    env.create_topic(&topic, 1).expect("topic");
    env.produce_test_messages(&topic, 1).expect("produce");
    let consumer: KafkaConsumer<String, String, _, _, PanicsOnRevoke> = KafkaConsumer::builder()
        .config(consumer_config(&env, &env.unique_group("hook-panic")))
        .key_serde(StringSerde)
        .value_serde(StringSerde)
        .context(PanicsOnRevoke)
        .build()
        .expect("built");
    consumer.subscribe(&[&topic]).expect("subscribe");
    {
        let mut stream = KafkaStreamConsumer::stream(&consumer);
        take(&mut stream, 1, PATIENCE).await;
    }

    // Closing revokes the partition: the hook panics inside the drop.
    let (done, dropped) = std::sync::mpsc::channel();
    let started = std::time::Instant::now();
    std::thread::spawn(move || {
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(consumer)));
        let _ = done.send(outcome.is_err());
    });
    let panicked = dropped
        .recv_timeout(Duration::from_secs(30))
        .expect("dropping the consumer finished within 30 s");
    println!(
        "dropped in {:?}; the hook's panic reached the caller: {panicked}",
        started.elapsed()
    );
    assert!(panicked, "the hook's panic was swallowed");
}
