//! The contract every consumer implementation keeps, run against each one
//! through the `KafkaStreamConsumer` trait: the same bodies on the mock
//! cluster and on real Apache Kafka.

mod common;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{
    Implementation, Order, build, consumer_config, coordinates, env, next_within, subscribed,
    subscribed_strings, take,
};
use futures_util::StreamExt;
use kafka_test_env::TestRecord;
use tiered_kafka::api::{
    ConsumerError, ConsumerTier, JsonSerde, PayloadPart, StringSerde, TopicPartitionList,
};

contract_tests!(
    reads_every_message_once,
    commits_only_what_was_yielded,
    bad_data_is_one_error_and_the_stream_goes_on,
    rebalance_loses_nothing,
    unreachable_broker_is_reported,
    auto_commit_keeps_up_with_a_busy_stream,
    dropping_a_stream_with_a_backlog_skips_nothing,
    every_waiting_stream_is_woken,
    headers_are_read_unless_configured_not_to,
    close_commits_what_was_handed_out_and_leaves_the_group,
    a_thousand_async_commits_interleaved_with_reading_all_resolve,
);

const PATIENCE: Duration = Duration::from_secs(60);

/// Every produced message arrives once, with its key, value and coordinates.
async fn reads_every_message_once(implementation: Implementation) {
    let env = env();
    let topic = env.unique_topic("every");
    env.create_topic(&topic, 3).expect("topic");
    let produced = env.produce_test_messages(&topic, 500).expect("produce");

    let consumer = subscribed_strings(implementation, &env, &env.unique_group("every"), &topic);
    assert_eq!(consumer.tier(), implementation_tier(implementation));
    let mut stream = consumer.stream();
    let messages = take(&mut stream, produced.len(), PATIENCE).await;

    let read: BTreeSet<_> = coordinates(&messages).into_iter().collect();
    assert_eq!(
        read,
        common::produced_coordinates(&produced),
        "{implementation:?}"
    );
    for message in &messages {
        let record = produced
            .iter()
            .find(|r| (r.partition, r.offset) == (message.partition, message.offset))
            .expect("produced");
        let i = record.index;
        assert_eq!(message.key.as_deref(), Some(format!("key-{i}").as_str()));
        assert_eq!(
            message.value.as_deref(),
            Some(format!("message-{i}").as_str())
        );
        assert_eq!(message.topic, topic);
    }
    assert!(
        next_within(&mut stream, Duration::from_millis(500))
            .await
            .is_none(),
        "an extra message"
    );
    println!(
        "{implementation:?}: read {} messages once each",
        messages.len()
    );
}

fn implementation_tier(implementation: Implementation) -> Option<ConsumerTier> {
    match implementation {
        Implementation::Fast(tier) => Some(tier),
        Implementation::Legacy => None,
    }
}

/// Take 400 of 1,000, commit, drop: a restarted consumer in the same group
/// reads exactly the other 600, from where each partition's share ended.
async fn commits_only_what_was_yielded(implementation: Implementation) {
    let env = env();
    let topic = env.unique_topic("commit");
    env.create_topic(&topic, 4).expect("topic");
    let produced = env.produce_test_messages(&topic, 1000).expect("produce");
    let group = env.unique_group("commit");

    let first = {
        let consumer = subscribed_strings(implementation, &env, &group, &topic);
        let mut stream = consumer.stream();
        let first = take(&mut stream, 400, PATIENCE).await;
        consumer.commit_blocking().expect("commit");
        let positions = consumer.current_offsets().expect("positions");
        check_positions_match(&positions, &coordinates(&first));
        first
    };

    let restarted = subscribed(
        Implementation::Fast(ConsumerTier::Standard),
        &env,
        &group,
        &topic,
        StringSerde,
        StringSerde,
    );
    let mut stream = restarted.stream();
    let second = take(&mut stream, 600, PATIENCE).await;
    assert!(
        next_within(&mut stream, Duration::from_secs(1))
            .await
            .is_none(),
        "a message was read twice"
    );

    let first = coordinates(&first);
    let second = coordinates(&second);
    // Each partition's share of the first 400 is a prefix 0..n, and the
    // restart begins at n.
    for (partition, count) in common::per_partition(&first) {
        let mut offsets: Vec<i64> = first
            .iter()
            .filter(|c| c.0 == partition)
            .map(|c| c.1)
            .collect();
        offsets.sort_unstable();
        assert_eq!(
            offsets,
            (0..count as i64).collect::<Vec<_>>(),
            "partition {partition}"
        );
        let resumed = second
            .iter()
            .filter(|c| c.0 == partition)
            .map(|c| c.1)
            .min();
        assert!(
            resumed.is_none_or(|o| o == count as i64),
            "partition {partition} resumed at {resumed:?}, not {count}"
        );
    }
    let all: BTreeSet<_> = first.iter().chain(&second).copied().collect();
    assert_eq!(all, common::produced_coordinates(&produced));
    assert_eq!(first.len() + second.len(), produced.len(), "duplicates");
    println!(
        "{implementation:?}: 400 committed, restart read the other 600, per partition {:?}",
        common::per_partition(&first)
    );
}

/// `current_offsets` reports, per partition, one past the last message yielded.
fn check_positions_match(positions: &TopicPartitionList, yielded: &[(i32, i64)]) {
    for (partition, _) in common::per_partition(yielded) {
        let last = yielded
            .iter()
            .filter(|c| c.0 == partition)
            .map(|c| c.1)
            .max()
            .expect("some");
        let position = positions
            .elements()
            .iter()
            .find(|e| e.partition() == partition)
            .and_then(|e| e.offset().to_raw());
        assert_eq!(
            position,
            Some(last + 1),
            "position of partition {partition}"
        );
    }
}

/// A key or value that does not deserialize is one `Deserialize` error naming
/// it; the messages around it arrive, tombstones arrive as `value: None`, and
/// the bad message counts as delivered.
async fn bad_data_is_one_error_and_the_stream_goes_on(implementation: Implementation) {
    let env = env();
    let topic = env.unique_topic("bad");
    env.create_topic(&topic, 1).expect("topic");
    let records = vec![
        TestRecord::new("k0", r#"{"id":0}"#),
        TestRecord::new("k1", "{not json"),
        TestRecord::new("k2", r#"{"id":"two"}"#),
        TestRecord::new("k3", ""),
        TestRecord::new(vec![0xff, 0xfe], r#"{"id":4}"#),
        TestRecord::tombstone("k5"),
        TestRecord::new("k6", r#"{"id":6}"#),
    ];
    env.produce(&topic, records).expect("produce");
    let group = env.unique_group("bad");

    {
        let consumer = subscribed::<String, Order>(
            implementation,
            &env,
            &group,
            &topic,
            StringSerde,
            JsonSerde,
        );
        let mut stream = consumer.stream();
        let mut items = Vec::new();
        while items.len() < 7 {
            items.push(
                next_within(&mut stream, PATIENCE)
                    .await
                    .expect("an item within the deadline"),
            );
        }
        let expect_error = |item: &Result<_, ConsumerError>,
                            offset: i64,
                            part: PayloadPart,
                            raw: &[u8]| match item {
            Err(
                error @ ConsumerError::Deserialize {
                    topic: t,
                    partition: 0,
                    offset: o,
                    part: p,
                    raw: r,
                    ..
                },
            ) => {
                assert_eq!(
                    (t.as_str(), *o, *p, r.as_slice()),
                    (topic.as_str(), offset, part, raw),
                    "{error}"
                );
                let text = error.to_string();
                assert!(text.contains(&format!("{topic}/0@{offset}")), "{text}");
            }
            other => panic!("expected a deserialization error at offset {offset}, got {other:?}"),
        };
        let ok = |item: &Result<tiered_kafka::api::Message<String, Order>, ConsumerError>| {
            item.as_ref()
                .unwrap_or_else(|e| panic!("unexpected error {e}"))
                .clone_light()
        };
        assert_eq!(ok(&items[0]), (0, Some("k0".into()), Some(Order { id: 0 })));
        expect_error(&items[1], 1, PayloadPart::Value, b"{not json");
        expect_error(&items[2], 2, PayloadPart::Value, br#"{"id":"two"}"#);
        expect_error(&items[3], 3, PayloadPart::Value, b"");
        expect_error(&items[4], 4, PayloadPart::Key, &[0xff, 0xfe]);
        assert_eq!(
            ok(&items[5]),
            (5, Some("k5".into()), None),
            "a tombstone is a message with no value"
        );
        assert_eq!(ok(&items[6]), (6, Some("k6".into()), Some(Order { id: 6 })));
        consumer.commit_blocking().expect("commit");
    }

    // The bad messages counted as delivered: a restart begins after them.
    env.produce(&topic, [TestRecord::new("k7", r#"{"id":7}"#)])
        .expect("produce");
    let restarted =
        subscribed::<String, Order>(implementation, &env, &group, &topic, StringSerde, JsonSerde);
    let mut stream = restarted.stream();
    let next = take(&mut stream, 1, PATIENCE).await;
    assert_eq!(next[0].offset, 7);
    println!(
        "{implementation:?}: 4 bad records reported, 3 good ones and a tombstone delivered, restart at 7"
    );
}

trait CloneLight {
    fn clone_light(&self) -> (i64, Option<String>, Option<Order>);
}

impl CloneLight for tiered_kafka::api::Message<String, Order> {
    fn clone_light(&self) -> (i64, Option<String>, Option<Order>) {
        (
            self.offset,
            self.key.clone(),
            self.value.as_ref().map(|o| Order { id: o.id }),
        )
    }
}

/// Two consumers in one group share a 4-partition topic while the second
/// joins mid-stream: together they see every message, and a message is seen
/// twice only if it was yielded but not committed when its partition moved
/// (the consumer commits on revocation, so none is expected).
async fn rebalance_loses_nothing(implementation: Implementation) {
    const TOTAL: usize = 2000;
    let env = Arc::new(env());
    let topic = env.unique_topic("rebalance");
    env.create_topic(&topic, 4).expect("topic");
    let produced = env.produce_test_messages(&topic, TOTAL).expect("produce");
    let group = env.unique_group("rebalance");
    let seen: Arc<Mutex<Vec<(usize, i32, i64)>>> = Arc::default();
    let stop = Arc::new(tokio::sync::Notify::new());

    let spawn_member = |member: usize| {
        let consumer = subscribed_strings(implementation, &env, &group, &topic);
        let seen = Arc::clone(&seen);
        let stop = Arc::clone(&stop);
        tokio::spawn(async move {
            let mut stream = consumer.stream();
            loop {
                tokio::select! {
                    _ = stop.notified() => break,
                    item = stream.next() => match item {
                        Some(Ok(message)) => {
                            seen.lock().expect("lock").push((member, message.partition, message.offset));
                            // Slow enough that the second member joins mid-stream.
                            tokio::time::sleep(Duration::from_micros(500)).await;
                        }
                        Some(Err(error)) => println!("member {member}: {error}"),
                        None => break,
                    },
                }
            }
        })
    };

    let first = spawn_member(0);
    wait_until(
        || seen.lock().expect("lock").len() >= 200,
        "the first member to start",
    )
    .await;
    let second = spawn_member(1);
    wait_until(
        || {
            seen.lock()
                .expect("lock")
                .iter()
                .map(|s| (s.1, s.2))
                .collect::<BTreeSet<_>>()
                .len()
                >= TOTAL
        },
        "every message to be seen",
    )
    .await;
    stop.notify_waiters();
    stop.notify_one();
    stop.notify_one();
    let _ = tokio::time::timeout(PATIENCE, first).await;
    let _ = tokio::time::timeout(PATIENCE, second).await;

    let seen = seen.lock().expect("lock").clone();
    let unique: BTreeSet<_> = seen.iter().map(|s| (s.1, s.2)).collect();
    assert_eq!(unique, common::produced_coordinates(&produced));
    let by_second = seen.iter().filter(|s| s.0 == 1).count();
    let duplicates = seen.len() - unique.len();
    println!(
        "{implementation:?}: {TOTAL} messages, first member {}, second {by_second}, duplicates {duplicates}",
        seen.len() - by_second
    );
    assert!(by_second > 0, "the second member never got a partition");
    // A duplicate is a message one member yielded before its partition moved
    // and the new owner read again: never the same member twice.
    for member in [0, 1] {
        let own: Vec<_> = seen
            .iter()
            .filter(|s| s.0 == member)
            .map(|s| (s.1, s.2))
            .collect();
        let own_unique: BTreeSet<_> = own.iter().copied().collect();
        assert_eq!(
            own.len(),
            own_unique.len(),
            "member {member} read a message twice"
        );
    }
    if env.kind().is_mock() {
        // The mock cluster refuses commits while a rebalance is in progress
        // (REBALANCE_IN_PROGRESS), so the commit on revocation fails there
        // and the new owner re-reads from the last successful commit.
        // Apache Kafka accepts it from the current generation.
    } else {
        assert_eq!(
            duplicates, 0,
            "yielded messages are committed on revocation"
        );
    }
}

async fn wait_until(done: impl Fn() -> bool, what: &str) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !done() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A consumer of a broker that is not there reports it as an error within a
/// bounded time instead of hanging, and can still be dropped.
async fn unreachable_broker_is_reported(implementation: Implementation) {
    let env = env();
    let mut config = consumer_config(&env, &env.unique_group("unreachable"));
    config.brokers = "127.0.0.1:1".to_owned();
    let consumer = build(implementation, config, StringSerde, StringSerde);
    consumer.subscribe(&["nowhere"]).expect("subscribe");
    let mut stream = consumer.stream();
    match next_within(&mut stream, Duration::from_secs(30)).await {
        Some(Err(error)) if error.kafka_error().is_some() => {
            println!("{implementation:?}: reported {error}")
        }
        other => panic!("expected a Kafka error, got {other:?}"),
    }
    let started = std::time::Instant::now();
    drop(stream);
    drop(consumer);
    println!("{implementation:?}: dropped in {:?}", started.elapsed());
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "drop took {:?}",
        started.elapsed()
    );
}

/// With `enable.auto.commit`, librdkafka commits the offsets the consumer
/// stored: a stream that is never idle (a backlog, a steady topic) must store
/// what it handed out as it goes, not only when it waits or is dropped, or a
/// crash would replay everything since the start.
async fn auto_commit_keeps_up_with_a_busy_stream(implementation: Implementation) {
    let env = env();
    let topic = env.unique_topic("auto-commit");
    env.create_topic(&topic, 1).expect("topic");
    env.produce_test_messages(&topic, 5_000).expect("produce");
    let group = env.unique_group("auto-commit");
    let mut config = common::consumer_config(&env, &group);
    config.enable_auto_commit = Some(true);
    config.auto_commit_interval_ms = Some(100);
    let consumer = common::build(implementation, config, StringSerde, StringSerde);
    consumer.subscribe(&[&topic]).expect("subscribe");
    let mut stream = consumer.stream();
    // 2,000 of the 5,000, with a little work now and then: the backlog keeps
    // the stream busy for well over a second.
    let mut handed_out = 0;
    while handed_out < 2_000 {
        take(&mut stream, 10, PATIENCE).await;
        handed_out += 10;
        tokio::time::sleep(Duration::from_millis(8)).await;
    }
    // The stream is neither waiting nor dropped: only stores made while it
    // delivered can be committed now.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let committed = loop {
        let committed = common::group_committed(&env, &group, &topic).await;
        if committed.is_some_and(|offset| offset >= 1_000) || tokio::time::Instant::now() > deadline
        {
            break committed;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    println!("{implementation:?}: {handed_out} handed out, auto-committed {committed:?}");
    assert!(
        committed.is_some_and(|offset| (1_000..=2_000).contains(&offset)),
        "{implementation:?}: after 2,000 messages handed out by a busy stream, auto-commit committed {committed:?}"
    );
}

/// A stream dropped while a backlog waits (for the Dedicated tier: a full
/// channel and a batch the polling thread could not send yet) leaves the
/// consumer at the first message it did not hand out: the next stream starts
/// there, neither skipping ahead nor going back to `auto.offset.reset`.
async fn dropping_a_stream_with_a_backlog_skips_nothing(implementation: Implementation) {
    const TOTAL: usize = 5_000;
    const READ: usize = 1_024;
    let env = env();
    let topic = env.unique_topic("drop-backlog");
    env.create_topic(&topic, 1).expect("topic");
    env.produce_test_messages(&topic, TOTAL).expect("produce");
    let consumer = subscribed_strings(
        implementation,
        &env,
        &env.unique_group("drop-backlog"),
        &topic,
    );
    let mut stream = consumer.stream();
    let first = take(&mut stream, READ, PATIENCE).await;
    assert_eq!(first.last().map(|m| m.offset), Some(READ as i64 - 1));
    // Let the read-ahead fill up before the stream goes.
    tokio::time::sleep(Duration::from_millis(500)).await;
    drop(stream);

    let mut stream = consumer.stream();
    let next = take(&mut stream, 1, PATIENCE).await;
    assert_eq!(
        next[0].offset, READ as i64,
        "{implementation:?}: the next stream starts after the last message handed out"
    );
}

/// A waker that counts how often it was woken.
#[derive(Default)]
struct CountingWaker(std::sync::atomic::AtomicUsize);

impl std::task::Wake for CountingWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}

impl CountingWaker {
    fn count(&self) -> usize {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// Two streams of one consumer: stream A waits for a message; stream B is
/// polled once and dropped. The next message must wake A: a consumer that
/// keeps only the last stream's waker would wake B's stale one, and A would
/// sleep until something else woke it. Decided with hand-made wakers that
/// count their wakes, not with a scheduler that may wake A for other reasons.
async fn every_waiting_stream_is_woken(implementation: Implementation) {
    use std::task::{Context, Poll, Waker};

    let env = env();
    let topic = env.unique_topic("wakers");
    env.create_topic(&topic, 1).expect("topic");
    let consumer = subscribed_strings(implementation, &env, &env.unique_group("wakers"), &topic);
    let mut a = consumer.stream();
    let a_waker = Arc::new(CountingWaker::default());
    let waker_a = Waker::from(Arc::clone(&a_waker));

    // Drive A by hand until the consumer has its partition and A waits with
    // nothing more to serve: pending, and not woken for a second.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{implementation:?}: stream A never settled"
        );
        let woken = a_waker.count();
        match a.as_mut().poll_next(&mut Context::from_waker(&waker_a)) {
            Poll::Ready(Some(Err(error))) => {
                println!("{implementation:?}: A: {error}");
                continue;
            }
            Poll::Ready(other) => panic!("{implementation:?}: A on an empty topic: {other:?}"),
            Poll::Pending => {}
        }
        let assigned = consumer
            .current_offsets()
            .map(|offsets| offsets.count() > 0)
            .unwrap_or(false);
        tokio::time::sleep(Duration::from_secs(1)).await;
        if assigned && a_waker.count() == woken {
            break;
        }
    }

    // B is polled once, with a waker of its own, and dropped.
    {
        let mut b = consumer.stream();
        let b_waker = Arc::new(CountingWaker::default());
        let waker_b = Waker::from(Arc::clone(&b_waker));
        match b.as_mut().poll_next(&mut Context::from_waker(&waker_b)) {
            Poll::Pending => {}
            Poll::Ready(item) => println!("{implementation:?}: B: {item:?}"),
        }
    }

    let woken = a_waker.count();
    env.produce_test_messages(&topic, 1).expect("produce");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while a_waker.count() == woken {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{implementation:?}: stream A was not woken within 5 s of a new message"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let message = next_within(&mut a, PATIENCE)
        .await
        .expect("a message")
        .expect("not an error");
    assert_eq!(message.offset, 0);
}

/// `read_headers: false` leaves every message's headers empty (and does not
/// look at header keys, so a key that is not UTF-8 is no error then); by
/// default they are read.
async fn headers_are_read_unless_configured_not_to(implementation: Implementation) {
    let env = env();
    let topic = env.unique_topic("no-headers");
    env.create_topic(&topic, 1).expect("topic");
    env.produce(
        &topic,
        [
            TestRecord::new("a", "a").header("trace", "t-1"),
            TestRecord::new("b", "b").header(b"\xff".to_vec(), "x"),
            TestRecord::new("c", "c"),
        ],
    )
    .expect("produce");

    let mut config = consumer_config(&env, &env.unique_group("no-headers"));
    config.read_headers = Some(false);
    let consumer = build(implementation, config, StringSerde, StringSerde);
    consumer.subscribe(&[&topic]).expect("subscribe");
    let mut stream = consumer.stream();
    let messages = take(&mut stream, 3, PATIENCE).await;
    assert!(
        messages.iter().all(|m| m.headers.is_empty()),
        "{implementation:?}: read_headers false, yet headers: {messages:?}"
    );
    drop(stream);
    drop(consumer);

    let consumer = subscribed_strings(
        implementation,
        &env,
        &env.unique_group("with-headers"),
        &topic,
    );
    let mut stream = consumer.stream();
    let first = take(&mut stream, 1, PATIENCE).await;
    assert_eq!(
        first[0].headers.get("trace").and_then(|h| h.value()),
        Some(&b"t-1"[..]),
        "{implementation:?}: headers are read by default"
    );
}

/// `close_blocking` on a healthy broker: the report says the commit and the
/// leave succeeded, the group's committed offset is the last handed-out
/// offset + 1 (nothing buffered), and the next member starts there.
async fn close_commits_what_was_handed_out_and_leaves_the_group(implementation: Implementation) {
    let env = env();
    let topic = env.unique_topic("close");
    env.create_topic(&topic, 1).expect("topic");
    env.produce_test_messages(&topic, 300).expect("produce");
    let group = env.unique_group("close");

    let consumer = subscribed_strings(implementation, &env, &group, &topic);
    let last = {
        let mut stream = consumer.stream();
        let taken = take(&mut stream, 30, PATIENCE).await;
        taken.last().map(|m| m.offset).expect("a message")
    };
    let report =
        tokio::task::spawn_blocking(move || consumer.close_blocking(Duration::from_secs(20)))
            .await
            .expect("close");
    assert!(report.is_clean(), "{implementation:?}: {report:?}");
    assert_eq!(
        common::group_committed(&env, &group, &topic).await,
        Some(last + 1),
        "{implementation:?}: the close must commit exactly what was handed out"
    );
    let next = subscribed_strings(implementation, &env, &group, &topic);
    let mut stream = next.stream();
    let first = take(&mut stream, 1, PATIENCE).await;
    assert_eq!(first[0].offset, last + 1, "{implementation:?}");
    println!("{implementation:?}: closed with {report:?}");
}

/// 1,000 `commit_async` calls awaited between reads of a 2,000-record
/// backlog (one after every second message): every one resolves `Ok`, and
/// the group's committed offset is the last handed-out offset + 1.
async fn a_thousand_async_commits_interleaved_with_reading_all_resolve(
    implementation: Implementation,
) {
    let env = env();
    let topic = env.unique_topic("commit-async");
    env.create_topic(&topic, 1).expect("topic");
    env.produce_test_messages(&topic, 2_000).expect("produce");
    let group = env.unique_group("commit-async");
    let consumer = subscribed_strings(implementation, &env, &group, &topic);
    let mut stream = consumer.stream();
    let mut commits = 0;
    let mut last = None;
    let started = std::time::Instant::now();
    while commits < 1_000 {
        let pair = take(&mut stream, 2, PATIENCE).await;
        last = pair.last().map(|m| m.offset);
        tokio::time::timeout(PATIENCE, consumer.commit_async())
            .await
            .unwrap_or_else(|_| panic!("{implementation:?}: commit {commits} did not resolve"))
            .unwrap_or_else(|e| panic!("{implementation:?}: commit {commits} failed: {e}"));
        commits += 1;
    }
    let last = last.expect("a message");
    assert_eq!(last, 1_999, "{implementation:?}");
    assert_eq!(
        common::group_committed(&env, &group, &topic).await,
        Some(last + 1),
        "{implementation:?}"
    );
    println!(
        "{implementation:?}: {commits} async commits resolved in {:?}",
        started.elapsed()
    );
}
