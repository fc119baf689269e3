//! The batch API (`KafkaStreamConsumer::batches`) keeps the stream's
//! promises, for every implementation, on the mock cluster and on real
//! Apache Kafka: every message once and in order, a batch's offsets
//! recorded when it is handed out (and only then), an error on its own
//! between two batches.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::{
    Implementation, Order, coordinates, env, group_committed, subscribed, subscribed_strings,
};
use futures_util::StreamExt;
use kafka_test_env::TestRecord;
use tiered_kafka::api::{BatchStream, ConsumerError, JsonSerde, Message, PayloadPart, StringSerde};

contract_tests!(
    batches_hold_every_message_once_in_order,
    a_commit_covers_the_batches_handed_out_and_nothing_buffered,
    an_error_comes_between_two_batches,
);

const PATIENCE: Duration = Duration::from_secs(60);

/// Reads batches until `count` messages arrived, failing on any error or
/// after [`PATIENCE`]; returns the batches.
async fn take_batches<K, V>(
    batches: &mut BatchStream<'_, K, V>,
    count: usize,
) -> Vec<Vec<Message<K, V>>> {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let mut taken = Vec::new();
    let mut messages = 0;
    while messages < count {
        match tokio::time::timeout_at(deadline, batches.next()).await {
            Ok(Some(Ok(batch))) => {
                messages += batch.len();
                taken.push(batch);
            }
            Ok(Some(Err(error))) => panic!("error after {messages} messages: {error}"),
            Ok(None) => panic!("the batches ended after {messages} of {count} messages"),
            Err(_) => panic!("only {messages} of {count} messages within {PATIENCE:?}"),
        }
    }
    taken
}

/// 3,000 records on 3 partitions read in batches of at most 100: each batch
/// is non-empty and within its bound, the offsets of each partition follow
/// each other without a gap or a repeat, and batching did happen.
async fn batches_hold_every_message_once_in_order(implementation: Implementation) {
    let env = env();
    let topic = env.unique_topic("batches");
    env.create_topic(&topic, 3).expect("topic");
    let produced = env.produce_test_messages(&topic, 3_000).expect("produce");

    let consumer = subscribed_strings(implementation, &env, &env.unique_group("batches"), &topic);
    let mut batches = consumer.batches(100);
    let taken = take_batches(&mut batches, produced.len()).await;

    let sizes: Vec<usize> = taken.iter().map(Vec::len).collect();
    assert!(
        sizes.iter().all(|&size| (1..=100).contains(&size)),
        "{implementation:?}: a batch outside 1..=100: {sizes:?}"
    );
    assert!(
        sizes.iter().any(|&size| size > 1),
        "{implementation:?}: 3,000 ready records came one per batch: {sizes:?}"
    );
    let read: Vec<(i32, i64)> = taken.iter().flat_map(|batch| coordinates(batch)).collect();
    let mut next_per_partition: BTreeMap<i32, i64> = BTreeMap::new();
    for &(partition, offset) in &read {
        let expected = next_per_partition.entry(partition).or_insert(0);
        assert_eq!(
            offset, *expected,
            "{implementation:?}: partition {partition} jumped from {expected} to {offset}"
        );
        *expected += 1;
    }
    assert_eq!(
        read.iter().copied().collect::<BTreeSet<_>>(),
        common::produced_coordinates(&produced),
        "{implementation:?}"
    );
    for message in taken.iter().flatten() {
        let record = produced
            .iter()
            .find(|r| (r.partition, r.offset) == (message.partition, message.offset))
            .expect("produced");
        assert_eq!(
            message.value.as_deref(),
            Some(format!("message-{}", record.index).as_str())
        );
    }
    let extra = tokio::time::timeout(Duration::from_millis(500), batches.next()).await;
    assert!(
        matches!(extra, Err(_) | Ok(None)),
        "{implementation:?}: an extra batch"
    );
    println!(
        "{implementation:?}: {} messages in {} batches (largest {})",
        read.len(),
        taken.len(),
        sizes.iter().max().copied().unwrap_or(0)
    );
}

/// On one partition of 2,000 records: take batches of at most 50 until at
/// least 120 messages were handed out, commit, drop. The group's committed offset is
/// the last handed-out offset + 1 (not what the tier had buffered beyond
/// it: the Dedicated thread polls 256 at a time), and a restarted consumer
/// reads on from exactly there.
async fn a_commit_covers_the_batches_handed_out_and_nothing_buffered(
    implementation: Implementation,
) {
    let env = env();
    let topic = env.unique_topic("batch-commit");
    env.create_topic(&topic, 1).expect("topic");
    let produced = env.produce_test_messages(&topic, 2_000).expect("produce");
    let group = env.unique_group("batch-commit");

    let (last_handed_out, handed_out) = {
        let consumer = subscribed_strings(implementation, &env, &group, &topic);
        let mut batches = consumer.batches(50);
        let taken = take_batches(&mut batches, 120).await;
        consumer.commit_blocking().expect("commit");
        let last = taken
            .last()
            .and_then(|batch| batch.last())
            .map(|message| message.offset)
            .expect("a message");
        let handed_out: usize = taken.iter().map(Vec::len).sum();
        assert_eq!(
            last + 1,
            i64::try_from(handed_out).expect("count"),
            "{implementation:?}: the batches skipped or repeated an offset"
        );
        (last, handed_out)
    };
    assert_eq!(
        group_committed(&env, &group, &topic).await,
        Some(last_handed_out + 1),
        "{implementation:?}: the commit must cover exactly the batches handed out"
    );

    let restarted = subscribed_strings(implementation, &env, &group, &topic);
    let mut batches = restarted.batches(500);
    let rest = take_batches(&mut batches, produced.len() - handed_out).await;
    let first = rest
        .first()
        .and_then(|batch| batch.first())
        .map(|message| message.offset);
    assert_eq!(
        first,
        Some(last_handed_out + 1),
        "{implementation:?}: the restart must begin right after the last batch handed out"
    );
    println!(
        "{implementation:?}: committed {} after {handed_out} messages in batches of at most 50",
        last_handed_out + 1
    );
}

/// Records 0-4 and 6-10 are orders, record 5 is not JSON: the batches hold
/// 0-4, then the error for record 5 comes on its own, then 6-10. A commit
/// after each batch before the error covers exactly that batch (never the
/// error the application has not seen yet); the error counts as delivered
/// once handed out, so a commit after all of it covers offset 10.
async fn an_error_comes_between_two_batches(implementation: Implementation) {
    let env = env();
    let topic = env.unique_topic("batch-bad");
    env.create_topic(&topic, 1).expect("topic");
    let records: Vec<TestRecord> = (0..11)
        .map(|i| {
            let value = if i == 5 {
                "{not json".to_owned()
            } else {
                format!(r#"{{"id":{i}}}"#)
            };
            TestRecord::new(format!("k{i}"), value)
        })
        .collect();
    env.produce(&topic, records).expect("produce");
    let group = env.unique_group("batch-bad");

    let consumer =
        subscribed::<String, Order>(implementation, &env, &group, &topic, StringSerde, JsonSerde);
    let mut batches = consumer.batches(100);
    let mut before = Vec::new();
    let mut after = Vec::new();
    let mut error = None;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while before.len() + after.len() < 10 {
        match tokio::time::timeout_at(deadline, batches.next()).await {
            Ok(Some(Ok(batch))) => {
                let ids: Vec<u32> = batch
                    .iter()
                    .map(|m| m.value.as_ref().map_or(u32::MAX, |order| order.id))
                    .collect();
                assert!(!ids.is_empty(), "an empty batch");
                if error.is_none() {
                    before.extend(ids);
                    let next = batch.last().map(|m| m.offset + 1);
                    consumer.commit_blocking().expect("commit");
                    assert_eq!(
                        group_committed(&env, &group, &topic).await,
                        next,
                        "{implementation:?}: a commit after the batch ending at {before:?} covered more than it"
                    );
                } else {
                    after.extend(ids);
                }
            }
            Ok(Some(Err(failure))) => {
                assert!(error.is_none(), "a second error: {failure}");
                error = Some(failure);
            }
            Ok(None) => panic!("the batches ended"),
            Err(_) => panic!("only {before:?} then {after:?} within {PATIENCE:?}"),
        }
    }
    assert_eq!(before, [0, 1, 2, 3, 4], "{implementation:?}");
    assert_eq!(after, [6, 7, 8, 9, 10], "{implementation:?}");
    match &error {
        Some(ConsumerError::Deserialize {
            topic: at,
            partition: 0,
            offset: 5,
            part: PayloadPart::Value,
            ..
        }) => assert_eq!(at, &topic),
        other => panic!("{implementation:?}: expected the error of record 5, got {other:?}"),
    }
    consumer.commit_blocking().expect("commit");
    assert_eq!(
        group_committed(&env, &group, &topic).await,
        Some(11),
        "{implementation:?}"
    );
}
