//! Concurrent processing (`Consumer::process`, `Consumer::processing_stream`):
//! order per key and per partition, commits that stop at the first message not
//! done, a restart that redoes only those, retries and the dead-letter topic,
//! the dead-letter limit, and backpressure. The same bodies run on the
//! embedded mock and on real Kafka.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use kafka_test_env::{KafkaTestEnv, TestRecord};
use tiered_kafka::api::StringSerde;
use tiered_kafka::fast::{
    BoxError, Consumer, DeadLetterLimit, DeadLetterTopic, HEADER_ATTEMPTS, HEADER_ERROR,
    HEADER_ORIGINAL_OFFSET, HEADER_ORIGINAL_PARTITION, HEADER_ORIGINAL_TOPIC, ProcessError,
    ProcessOptions, ProcessingOrder, RetryPolicy,
};
use tokio::sync::Notify;

use common::{consumer_config, env, group_committed_partition};

fn fast_consumer(env: &KafkaTestEnv, group: &str, topic: &str) -> Arc<Consumer<String, String>> {
    let consumer = Consumer::with_config(consumer_config(env, group), StringSerde, StringSerde)
        .expect("consumer builds");
    consumer.subscribe(&[topic]).expect("subscribe");
    Arc::new(consumer)
}

/// Waits until every partition's committed offset is `expected`, failing
/// after `within`.
async fn await_committed(
    env: &KafkaTestEnv,
    group: &str,
    topic: &str,
    expected: &BTreeMap<i32, i64>,
    within: Duration,
) {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let mut committed = BTreeMap::new();
        for &partition in expected.keys() {
            let offset = group_committed_partition(env, group, topic, partition).await;
            committed.insert(partition, offset.unwrap_or(-1));
        }
        if &committed == expected {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "committed {committed:?}, expected {expected:?} within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// How many records each partition holds, from what was produced.
fn ends(produced: &[kafka_test_env::ProducedRecord]) -> BTreeMap<i32, i64> {
    let mut ends = BTreeMap::new();
    for record in produced {
        let end = ends.entry(record.partition).or_insert(0);
        *end = (*end).max(record.offset + 1);
    }
    ends
}

/// A pseudo-random 0-5 ms of work for a message, the same on every run.
fn work_for(partition: i32, offset: i64) -> Duration {
    let mixed = (offset as u64 ^ ((partition as u64) << 32)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    Duration::from_micros((mixed >> 40) % 5_001)
}

/// Handles `count` messages over `keys` keys and `partitions` partitions in
/// `ordering`, each taking 0-5 ms; returns, per order group, the offsets in
/// the order their handling started, and the most messages handled at once.
async fn handle_in_order(
    ordering: ProcessingOrder,
    count: usize,
    keys: usize,
    partitions: i32,
) -> (Vec<String>, usize) {
    let env = env();
    let topic = env.unique_topic("process-order");
    env.create_topic(&topic, partitions).expect("topic");
    let produced = env
        .produce(
            &topic,
            (0..count).map(|i| TestRecord::new(format!("key-{}", i % keys), format!("{i}"))),
        )
        .expect("produce");
    let group = env.unique_group("process-order");
    let consumer = fast_consumer(&env, &group, &topic);

    #[derive(Default)]
    struct Seen {
        /// Per order group: whether a message is being handled, and the
        /// last offset started.
        groups: HashMap<String, (bool, i64)>,
        violations: Vec<String>,
        handled: BTreeSet<(i32, i64)>,
        now: usize,
        most: usize,
    }
    let seen = Arc::new(Mutex::new(Seen::default()));
    let all_done = Arc::new(Notify::new());
    let options = ProcessOptions::new(ordering)
        .max_in_flight(1_000)
        .commit_interval(Duration::from_millis(200));
    let handler = {
        let seen = Arc::clone(&seen);
        let all_done = Arc::clone(&all_done);
        move |message: tiered_kafka::api::Message<String, String>| {
            let seen = Arc::clone(&seen);
            let all_done = Arc::clone(&all_done);
            async move {
                let group = match ordering {
                    ProcessingOrder::Key => format!(
                        "{}/{}",
                        message.partition,
                        message.key.clone().unwrap_or_default()
                    ),
                    _ => format!("{}", message.partition),
                };
                {
                    let mut seen = seen.lock().expect("seen");
                    let (busy, last) = seen.groups.get(&group).copied().unwrap_or((false, -1));
                    if busy {
                        seen.violations
                            .push(format!("{message} started while {group} was busy"));
                    }
                    if message.offset <= last {
                        seen.violations
                            .push(format!("{message} started after offset {last} of {group}"));
                    }
                    seen.groups.insert(group.clone(), (true, message.offset));
                    seen.now += 1;
                    seen.most = seen.most.max(seen.now);
                }
                tokio::time::sleep(work_for(message.partition, message.offset)).await;
                let mut seen = seen.lock().expect("seen");
                if let Some(state) = seen.groups.get_mut(&group) {
                    state.0 = false;
                }
                seen.now -= 1;
                if !seen.handled.insert((message.partition, message.offset)) {
                    seen.violations.push(format!("{message} handled twice"));
                }
                if seen.handled.len() == count {
                    all_done.notify_one();
                }
                Ok::<(), BoxError>(())
            }
        }
    };
    let stop = Arc::clone(&all_done);
    let run = consumer
        .processor(options)
        .run_until(handler, async move { stop.notified().await });
    tokio::time::timeout(Duration::from_secs(240), run)
        .await
        .expect("every message handled in time")
        .expect("processing succeeds");
    // Stopped: what is done is committed, every partition to its end.
    await_committed(
        &env,
        &group,
        &topic,
        &ends(&produced),
        Duration::from_secs(30),
    )
    .await;
    let seen = seen.lock().expect("seen");
    assert_eq!(seen.handled.len(), count, "every message handled once");
    (seen.violations.clone(), seen.most)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_order_keeps_each_key_in_offset_order_one_at_a_time() {
    let (violations, most) = handle_in_order(ProcessingOrder::Key, 50_000, 500, 8).await;
    assert!(
        violations.is_empty(),
        "order broken: {:?}",
        &violations[..violations.len().min(10)]
    );
    println!("most messages handled at once: {most}");
    assert!(
        most > 50,
        "keys are handled concurrently: at most {most} at once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partition_order_keeps_each_partition_in_offset_order_one_at_a_time() {
    let (violations, most) = handle_in_order(ProcessingOrder::Partition, 8_000, 500, 8).await;
    assert!(
        violations.is_empty(),
        "order broken: {:?}",
        &violations[..violations.len().min(10)]
    );
    println!("most messages handled at once: {most}");
    assert!(most <= 8, "one per partition at most: {most} at once");
    assert!(
        most > 1,
        "partitions are handled concurrently: at most {most} at once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commits_stop_at_the_first_unfinished_message_and_a_restart_redoes_only_those() {
    let env = env();
    let topic = env.unique_topic("process-commit");
    env.create_topic(&topic, 1).expect("topic");
    env.produce_test_messages(&topic, 100).expect("produce");
    let group = env.unique_group("process-commit");
    let unfinished = BTreeSet::from([20_i64, 57]);

    let consumer = fast_consumer(&env, &group, &topic);
    let options = ProcessOptions::new(ProcessingOrder::Unordered)
        .max_in_flight(200)
        .commit_interval(Duration::from_millis(100));
    let mut work = consumer
        .processing_stream(options.clone())
        .expect("processing starts");
    let mut kept = Vec::new();
    let mut received = 0;
    while received < 100 {
        let item = tokio::time::timeout(Duration::from_secs(30), work.next())
            .await
            .expect("100 messages in time")
            .expect("the stream goes on");
        let message = item.expect("no error");
        received += 1;
        if unfinished.contains(&message.offset) {
            kept.push(message);
        } else {
            message.ack();
        }
    }
    // The commit stops at the first message not done, and stays there.
    let at_first = BTreeMap::from([(0, 20)]);
    await_committed(&env, &group, &topic, &at_first, Duration::from_secs(20)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    await_committed(&env, &group, &topic, &at_first, Duration::ZERO).await;

    // Stop as a crash would leave it: the unfinished never acknowledged.
    drop(work);
    drop(kept);
    let consumer = Arc::into_inner(consumer).expect("nothing else holds the consumer");
    let report =
        tokio::task::spawn_blocking(move || consumer.close_blocking(Duration::from_secs(10)))
            .await
            .expect("close");
    assert!(report.is_clean(), "{report:?}");

    // The next member of the group gets exactly the messages not done.
    let consumer = fast_consumer(&env, &group, &topic);
    let mut work = consumer
        .processing_stream(options)
        .expect("processing starts");
    let mut again = BTreeSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let wait = if again.len() == unfinished.len() {
            // Anything else would come soon after.
            Duration::from_secs(2)
        } else {
            deadline.saturating_duration_since(tokio::time::Instant::now())
        };
        match tokio::time::timeout(wait, work.next()).await {
            Ok(Some(Ok(message))) => {
                assert!(again.insert(message.offset), "{} twice", *message);
                message.ack();
            }
            Ok(Some(Err(error))) => panic!("error: {error}"),
            Ok(None) => panic!("the stream ended"),
            Err(_) => break,
        }
    }
    assert_eq!(
        again, unfinished,
        "only the messages not done are handled again"
    );
    await_committed(
        &env,
        &group,
        &topic,
        &BTreeMap::from([(0, 100)]),
        Duration::from_secs(20),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_messages_are_retried_then_dead_lettered_and_the_partition_moves_on() {
    let env = env();
    let topic = env.unique_topic("process-dlt");
    env.create_topic(&topic, 1).expect("topic");
    env.create_topic(&format!("{topic}.DLT"), 1)
        .expect("dead-letter topic");
    let produced = env
        .produce(
            &topic,
            (0..50).map(|i| {
                TestRecord::new(format!("key-{i}"), format!("message-{i}"))
                    .header("trace", format!("t{i}"))
            }),
        )
        .expect("produce");
    let group = env.unique_group("process-dlt");
    let consumer = fast_consumer(&env, &group, &topic);
    let failing = BTreeSet::from(["message-7".to_owned(), "message-13".to_owned()]);
    let attempts: Arc<Mutex<BTreeMap<String, u32>>> = Arc::default();
    let finished = Arc::new(AtomicUsize::new(0));
    let all_done = Arc::new(Notify::new());
    let handler = {
        let attempts = Arc::clone(&attempts);
        let finished = Arc::clone(&finished);
        let all_done = Arc::clone(&all_done);
        let failing = failing.clone();
        move |message: tiered_kafka::api::Message<String, String>| {
            let attempts = Arc::clone(&attempts);
            let finished = Arc::clone(&finished);
            let all_done = Arc::clone(&all_done);
            let fails = message.value.as_ref().is_some_and(|v| failing.contains(v));
            async move {
                let value = message.value.clone().unwrap_or_default();
                *attempts
                    .lock()
                    .expect("attempts")
                    .entry(value.clone())
                    .or_default() += 1;
                if fails {
                    return Err(format!("refusing {value}"));
                }
                if finished.fetch_add(1, Ordering::SeqCst) + 1 == 48 {
                    all_done.notify_one();
                }
                Ok(())
            }
        }
    };
    let options = ProcessOptions::new(ProcessingOrder::Key)
        .retry(RetryPolicy::new(3).backoff(Duration::from_millis(20), Duration::from_millis(100)))
        .commit_interval(Duration::from_millis(100));
    let stop = Arc::clone(&all_done);
    let run = consumer
        .processor(options)
        .dead_letter(DeadLetterTopic::new(&env.bootstrap_servers()).expect("dead-letter producer"))
        .run_until(handler, async move {
            stop.notified().await;
            // The dead letters may still be on their way.
            tokio::time::sleep(Duration::from_secs(2)).await;
        });
    tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("processing ends in time")
        .expect("processing succeeds");
    let attempts = attempts.lock().expect("attempts").clone();
    for value in &failing {
        assert_eq!(attempts.get(value), Some(&3), "{value}: three attempts");
    }
    assert_eq!(attempts.len(), 50, "every message handled");
    await_committed(
        &env,
        &group,
        &topic,
        &ends(&produced),
        Duration::from_secs(20),
    )
    .await;

    // The dead-letter topic holds exactly the failing messages, intact.
    let reader = fast_consumer(
        &env,
        &env.unique_group("dlt-reader"),
        &format!("{topic}.DLT"),
    );
    let mut letters = reader.stream();
    let mut dead = BTreeMap::new();
    while dead.len() < 2 {
        let letter = tokio::time::timeout(Duration::from_secs(30), letters.next())
            .await
            .expect("dead letters in time")
            .expect("stream goes on")
            .expect("dead letter decodes");
        let header = |key: &str| {
            letter
                .headers
                .get(key)
                .and_then(|h| h.value_str().ok().flatten())
                .map(str::to_owned)
        };
        let value = letter.value.clone().expect("value kept");
        let offset: i64 = header(HEADER_ORIGINAL_OFFSET)
            .expect("offset header")
            .parse()
            .expect("number");
        let i = value.trim_start_matches("message-").to_owned();
        assert_eq!(
            letter.key.as_deref(),
            Some(format!("key-{i}").as_str()),
            "key kept"
        );
        assert_eq!(
            header("trace").as_deref(),
            Some(format!("t{i}").as_str()),
            "headers kept"
        );
        assert_eq!(
            header(HEADER_ORIGINAL_TOPIC).as_deref(),
            Some(topic.as_str())
        );
        assert_eq!(header(HEADER_ORIGINAL_PARTITION).as_deref(), Some("0"));
        assert_eq!(header(HEADER_ATTEMPTS).as_deref(), Some("3"));
        assert_eq!(header(HEADER_ERROR), Some(format!("refusing {value}")));
        dead.insert(value, offset);
    }
    assert_eq!(dead.keys().cloned().collect::<BTreeSet<_>>(), failing);
    assert_eq!(dead.get("message-7"), Some(&7));
    // Nothing else arrives.
    let extra = tokio::time::timeout(Duration::from_secs(2), letters.next()).await;
    assert!(
        extra.is_err(),
        "only the failing messages are dead-lettered: {extra:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_dead_letter_limit_processing_stops_and_commits_nothing_beyond() {
    let env = env();
    let topic = env.unique_topic("process-limit");
    env.create_topic(&topic, 1).expect("topic");
    env.produce_test_messages(&topic, 30).expect("produce");
    let group = env.unique_group("process-limit");
    let consumer = fast_consumer(&env, &group, &topic);
    let dead_lettered = Arc::new(Mutex::new(Vec::new()));
    let hook = {
        let dead_lettered = Arc::clone(&dead_lettered);
        move |letter: tiered_kafka::fast::DeadLetter| {
            dead_lettered
                .lock()
                .expect("letters")
                .push(letter.record.offset);
            async { Ok::<(), BoxError>(()) }
        }
    };
    let options = ProcessOptions::new(ProcessingOrder::Partition)
        .retry(RetryPolicy::no_retries())
        .dead_letter_limit(Some(DeadLetterLimit {
            max_share: 1.0,
            min_messages: 0,
            max_consecutive: 5,
        }))
        .commit_interval(Duration::from_millis(100));
    let outcome = tokio::time::timeout(
        Duration::from_secs(60),
        consumer
            .processor(options)
            .dead_letter(hook)
            .run(|_message| async { Err::<(), _>("always failing") }),
    )
    .await
    .expect("processing stops in time");
    match outcome {
        Err(ProcessError::DeadLetterLimit {
            offset,
            dead_lettered: 6,
            ..
        }) => assert_eq!(offset, 5),
        other => panic!("expected the dead-letter limit at offset 5: {other:?}"),
    }
    assert_eq!(*dead_lettered.lock().expect("letters"), vec![0, 1, 2, 3, 4]);
    await_committed(
        &env,
        &group,
        &topic,
        &BTreeMap::from([(0, 5)]),
        Duration::from_secs(20),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_dead_letter_hook_a_failing_message_stops_processing_before_it() {
    let env = env();
    let topic = env.unique_topic("process-nohook");
    env.create_topic(&topic, 1).expect("topic");
    env.produce_test_messages(&topic, 10).expect("produce");
    let group = env.unique_group("process-nohook");
    let consumer = fast_consumer(&env, &group, &topic);
    let options = ProcessOptions::new(ProcessingOrder::Partition)
        .retry(RetryPolicy::new(2).backoff(Duration::from_millis(10), Duration::from_millis(10)))
        .commit_interval(Duration::from_millis(100));
    let outcome = tokio::time::timeout(
        Duration::from_secs(60),
        consumer.process(
            options,
            |message: tiered_kafka::api::Message<String, String>| async move {
                if message.offset == 3 {
                    return Err("cannot handle 3");
                }
                Ok(())
            },
        ),
    )
    .await
    .expect("processing stops in time");
    match outcome {
        Err(ProcessError::Handler {
            offset: 3,
            attempts: 2,
            ref source,
            ..
        }) => {
            assert_eq!(source.to_string(), "cannot handle 3");
        }
        other => panic!("expected the handler's failure at offset 3: {other:?}"),
    }
    await_committed(
        &env,
        &group,
        &topic,
        &BTreeMap::from([(0, 3)]),
        Duration::from_secs(20),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_most_max_in_flight_messages_are_handled_at_once_while_the_handler_waits() {
    let env = env();
    let topic = env.unique_topic("process-bound");
    env.create_topic(&topic, 4).expect("topic");
    env.produce_test_messages(&topic, 2_000).expect("produce");
    let group = env.unique_group("process-bound");
    let consumer = fast_consumer(&env, &group, &topic);
    let started = Arc::new(AtomicUsize::new(0));
    let release = Arc::new(tokio::sync::Semaphore::new(0));
    let options = ProcessOptions::new(ProcessingOrder::Unordered)
        .max_in_flight(10)
        .max_in_flight_per_partition(10);
    let handler = {
        let started = Arc::clone(&started);
        let release = Arc::clone(&release);
        move |_message: tiered_kafka::api::Message<String, String>| {
            let started = Arc::clone(&started);
            let release = Arc::clone(&release);
            async move {
                started.fetch_add(1, Ordering::SeqCst);
                release.acquire().await.expect("open").forget();
                Ok::<(), BoxError>(())
            }
        }
    };
    let stop = Arc::new(Notify::new());
    let stopped = Arc::clone(&stop);
    let run = tokio::spawn({
        let consumer = Arc::clone(&consumer);
        async move {
            consumer
                .processor(options)
                .run_until(handler, async move { stopped.notified().await })
                .await
        }
    });
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        started.load(Ordering::SeqCst),
        10,
        "ten started, and no more while they wait"
    );
    release.add_permits(5);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        started.load(Ordering::SeqCst),
        15,
        "five more once five finished"
    );
    release.add_permits(10_000);
    stop.notify_one();
    tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("processing stops in time")
        .expect("the task")
        .expect("processing succeeds");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processing_started_again_on_the_same_consumer_handles_what_the_first_left_undone() {
    let env = env();
    let topic = env.unique_topic("process-again");
    env.create_topic(&topic, 1).expect("topic");
    env.produce_test_messages(&topic, 10).expect("produce");
    let group = env.unique_group("process-again");
    let consumer = fast_consumer(&env, &group, &topic);
    let options = ProcessOptions::new(ProcessingOrder::Partition)
        .retry(RetryPolicy::no_retries())
        .commit_interval(Duration::from_millis(100));
    // The first run takes every message from librdkafka, and stops at 3.
    let first = consumer
        .process(
            options.clone(),
            |message: tiered_kafka::api::Message<String, String>| async move {
                if message.offset == 3 {
                    return Err("not now");
                }
                Ok(())
            },
        )
        .await;
    assert!(
        matches!(first, Err(ProcessError::Handler { offset: 3, .. })),
        "{first:?}"
    );

    // The second run, on the same consumer, handles 3 and everything after.
    let handled = Arc::new(Mutex::new(Vec::new()));
    let all_done = Arc::new(Notify::new());
    let handler = {
        let handled = Arc::clone(&handled);
        let all_done = Arc::clone(&all_done);
        move |message: tiered_kafka::api::Message<String, String>| {
            let handled = Arc::clone(&handled);
            let all_done = Arc::clone(&all_done);
            async move {
                let mut handled = handled.lock().expect("handled");
                handled.push(message.offset);
                if message.offset == 9 {
                    all_done.notify_one();
                }
                Ok::<(), BoxError>(())
            }
        }
    };
    let stop = Arc::clone(&all_done);
    let second = tokio::time::timeout(
        Duration::from_secs(30),
        consumer
            .processor(options)
            .run_until(handler, async move { stop.notified().await }),
    )
    .await;
    assert!(
        matches!(second, Ok(Ok(()))),
        "the second run handles 3..=9 and stops: {second:?}, handled {:?}",
        handled.lock().expect("handled")
    );
    assert_eq!(
        *handled.lock().expect("handled"),
        (3..10).collect::<Vec<i64>>()
    );
    await_committed(
        &env,
        &group,
        &topic,
        &BTreeMap::from([(0, 10)]),
        Duration::from_secs(20),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_yaml_processing_section_builds_the_processor_it_describes() {
    let env = env();
    let topic = env.unique_topic("process-yaml");
    env.create_topic(&topic, 1).expect("topic");
    env.create_topic(&format!("{topic}-dead"), 1)
        .expect("dead-letter topic");
    env.produce_test_messages(&topic, 20).expect("produce");
    let group = env.unique_group("process-yaml");
    let yaml = format!(
        r#"
consumer:
  brokers: "{}"
  group_id: "{group}"
  auto_offset_reset: earliest
  enable_auto_commit: false
  extra:
    broker.address.family: v4
  processing:
    ordering: partition
    max_in_flight: 4
    commit_interval_ms: 100
    retry: {{ attempts: 2, initial_backoff_ms: 10, max_backoff_ms: 10 }}
    dead_letter: {{ topic_suffix: "-dead" }}
"#,
        env.bootstrap_servers()
    );
    let processor = tiered_kafka::factory::ConsumerFactory::processor_from_yaml_str(
        &yaml,
        StringSerde,
        StringSerde,
    )
    .expect("the processor builds");
    assert_eq!(processor.options().ordering, ProcessingOrder::Partition);
    assert_eq!(processor.options().max_in_flight, 4);
    processor
        .consumer()
        .subscribe(&[&topic])
        .expect("subscribe");
    let finished = Arc::new(AtomicUsize::new(0));
    let all_done = Arc::new(Notify::new());
    let handler = {
        let finished = Arc::clone(&finished);
        let all_done = Arc::clone(&all_done);
        move |message: tiered_kafka::api::Message<String, String>| {
            let finished = Arc::clone(&finished);
            let all_done = Arc::clone(&all_done);
            async move {
                if message.offset == 11 {
                    return Err("eleven is refused");
                }
                if finished.fetch_add(1, Ordering::SeqCst) + 1 == 19 {
                    all_done.notify_one();
                }
                Ok(())
            }
        }
    };
    let stop = Arc::clone(&all_done);
    tokio::time::timeout(
        Duration::from_secs(60),
        processor.run_until(handler, async move {
            stop.notified().await;
            tokio::time::sleep(Duration::from_secs(1)).await;
        }),
    )
    .await
    .expect("processing ends in time")
    .expect("processing succeeds");
    await_committed(
        &env,
        &group,
        &topic,
        &BTreeMap::from([(0, 20)]),
        Duration::from_secs(20),
    )
    .await;
    let reader = fast_consumer(
        &env,
        &env.unique_group("dead-reader"),
        &format!("{topic}-dead"),
    );
    let mut letters = reader.stream();
    let letter = tokio::time::timeout(Duration::from_secs(30), letters.next())
        .await
        .expect("the dead letter in time")
        .expect("stream goes on")
        .expect("decodes");
    assert_eq!(letter.value.as_deref(), Some("message-11"));

    // A value that cannot work is refused, naming its field.
    let bad = yaml.replace("max_in_flight: 4", "max_in_flight: 0");
    let error = tiered_kafka::factory::ConsumerFactory::processor_from_yaml_str::<String, String>(
        &bad,
        StringSerde,
        StringSerde,
    )
    .expect_err("0 in flight is refused");
    assert!(
        error.to_string().contains("processing.max_in_flight"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_whose_metadata_would_not_fit_pauses_instead_of_dropping_what_is_done() {
    let env = env();
    let topic = env.unique_topic("process-metadata");
    env.create_topic(&topic, 1).expect("topic");
    env.produce_test_messages(&topic, 10_000).expect("produce");
    let group = env.unique_group("process-metadata");
    // About 2,300 offsets fit in 400 bytes of bitset, base64 encoded.
    let options = ProcessOptions::new(ProcessingOrder::Unordered)
        .max_in_flight(20_000)
        .max_metadata_bytes(400)
        .commit_interval(Duration::from_millis(100));
    let consumer = fast_consumer(&env, &group, &topic);
    let mut work = consumer
        .processing_stream(options.clone())
        .expect("processing starts");
    // Offset 0 is never done; everything after it is, as it arrives.
    let mut held = None;
    let mut handed_out = 0_usize;
    loop {
        match tokio::time::timeout(Duration::from_secs(3), work.next()).await {
            Ok(Some(Ok(message))) => {
                handed_out += 1;
                if message.offset == 0 {
                    held = Some(message);
                } else {
                    message.ack();
                }
            }
            Ok(Some(Err(error))) => panic!("error: {error}"),
            Ok(None) => panic!("the stream ended"),
            // Nothing for 3 s: the partition is paused.
            Err(_) => break,
        }
    }
    println!("handed out {handed_out} of 10,000 before the pause");
    assert!(held.is_some(), "offset 0 was handed out");
    assert!(
        (1_000..9_000).contains(&handed_out),
        "the partition pauses once its metadata is nearly full: {handed_out} handed out"
    );
    // Stop without offset 0 done: the commit stays at 0, its metadata naming
    // every message done after it.
    await_committed(
        &env,
        &group,
        &topic,
        &BTreeMap::from([(0, 0)]),
        Duration::from_secs(20),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(work);
    drop(held);
    let consumer = Arc::into_inner(consumer).expect("nothing else holds the consumer");
    let report =
        tokio::task::spawn_blocking(move || consumer.close_blocking(Duration::from_secs(10)))
            .await
            .expect("close");
    assert!(report.is_clean(), "{report:?}");

    // The next member redoes offset 0 and reads on from where the first
    // stopped: nothing it had done comes back.
    let consumer = fast_consumer(&env, &group, &topic);
    let mut work = consumer
        .processing_stream(options)
        .expect("processing starts");
    let mut again = BTreeSet::new();
    while again.len() < 10_000 - handed_out + 1 {
        let message = tokio::time::timeout(Duration::from_secs(30), work.next())
            .await
            .expect("the rest in time")
            .expect("the stream goes on")
            .expect("no error");
        assert!(
            message.offset == 0 || message.offset >= handed_out as i64,
            "{} was done before, and named in the commit metadata",
            *message
        );
        again.insert(message.offset);
        message.ack();
    }
    await_committed(
        &env,
        &group,
        &topic,
        &BTreeMap::from([(0, 10_000)]),
        Duration::from_secs(20),
    )
    .await;
}
