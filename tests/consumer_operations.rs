//! The operations a service needs, through the `KafkaStreamConsumer` trait
//! (so that a consumer built by the factory has them), on every
//! implementation: seeking by timestamp, leaving the subscription, and the
//! lag of each partition.

mod common;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use std::sync::Arc;

use common::{Implementation, env, group_committed, next_within, subscribed_strings, take};
use futures_util::StreamExt;
use kafka_test_env::{BrokerKind, TestRecord};
use tiered_kafka::api::{KafkaStreamConsumer, OwnedStream};
use tiered_kafka::api::{Offset, PartitionLag};

const PATIENCE: Duration = Duration::from_secs(60);
const BROKER_TIMEOUT: Duration = Duration::from_secs(10);

contract_tests!(
    seeking_to_a_timestamp_reads_from_the_first_record_at_or_after_it,
    unsubscribing_stops_the_stream_and_commits_what_was_handed_out,
    lag_counts_what_the_application_has_not_been_handed,
    an_owned_stream_reads_in_a_spawned_task,
    a_decode_only_codec_reads,
);

/// 100 records one second apart (by their timestamps); read 10, seek to the
/// timestamp of record 50 plus half a second: the next record is 51.
///
/// The mock cluster cannot look offsets up by timestamp: it answers every
/// such query with "no such record" (`rdkafka_mock_handlers.c`, ListOffsets:
/// "FIXME: by timestamp"), so there the seek goes to the end, and the test
/// checks exactly that.
async fn seeking_to_a_timestamp_reads_from_the_first_record_at_or_after_it(
    implementation: Implementation,
) {
    let env = env();
    let topic = env.unique_topic("seek-time");
    env.create_topic(&topic, 1).expect("topic");
    let start = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_millis() as i64
        - 3_600_000;
    env.produce(
        &topic,
        (0..100i64).map(|i| {
            TestRecord::new(format!("k{i}"), format!("v{i}")).timestamp_ms(start + i * 1_000)
        }),
    )
    .expect("produce");
    let consumer = subscribed_strings(implementation, &env, &env.unique_group("seek-time"), &topic);
    let mut stream = consumer.stream();
    let first = take(&mut stream, 10, PATIENCE).await;
    assert_eq!(first.last().map(|m| m.offset), Some(9));

    let sought = tokio::task::block_in_place(|| {
        consumer.seek_to_timestamp_blocking(start + 50_500, BROKER_TIMEOUT)
    })
    .expect("seek to a timestamp");
    let sought = sought
        .find_partition(&topic, 0)
        .map(|element| element.offset());
    if matches!(env.kind(), BrokerKind::Mock { .. }) {
        assert_eq!(sought, Some(Offset::End), "{implementation:?}");
        if let Some(item) = next_within(&mut stream, Duration::from_secs(1)).await {
            panic!("{implementation:?}: handed out after seeking to the end: {item:?}");
        }
        return;
    }
    assert_eq!(sought, Some(Offset::Offset(51)), "{implementation:?}");
    let next = take(&mut stream, 1, PATIENCE).await;
    assert_eq!(
        (next[0].offset, next[0].value.as_deref()),
        (51, Some("v51")),
        "{implementation:?}"
    );
}

/// Read 30, unsubscribe: the stream hands out nothing more, the assignment
/// empties, and the revocation committed the 30.
async fn unsubscribing_stops_the_stream_and_commits_what_was_handed_out(
    implementation: Implementation,
) {
    let env = env();
    let topic = env.unique_topic("unsubscribe");
    env.create_topic(&topic, 1).expect("topic");
    env.produce_test_messages(&topic, 100).expect("produce");
    let group = env.unique_group("unsubscribe");
    let consumer = subscribed_strings(implementation, &env, &group, &topic);
    let mut stream = consumer.stream();
    take(&mut stream, 30, PATIENCE).await;

    consumer.unsubscribe().expect("unsubscribe");
    // Polling serves the revocation; nothing more may come.
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(item) = next_within(&mut stream, Duration::from_millis(200)).await {
            panic!("{implementation:?}: handed out after unsubscribe: {item:?}");
        }
        let assigned = consumer.assignment().expect("assignment").count();
        if assigned == 0 && group_committed(&env, &group, &topic).await == Some(30) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{implementation:?}: {assigned} partitions still assigned, committed {:?}",
            group_committed(&env, &group, &topic).await
        );
    }
    if let Some(item) = next_within(&mut stream, Duration::from_secs(1)).await {
        panic!("{implementation:?}: handed out after unsubscribe: {item:?}");
    }

    // Subscribing again reads on from the commit.
    consumer.subscribe(&[&topic]).expect("subscribe again");
    let next = take(&mut stream, 1, PATIENCE).await;
    assert_eq!(next[0].offset, 30, "{implementation:?}");
}

/// 1,000 records, 400 read: the lag reads 600 within a second, from
/// librdkafka's cached watermark (no broker round trip per call).
async fn lag_counts_what_the_application_has_not_been_handed(implementation: Implementation) {
    let env = env();
    let topic = env.unique_topic("lag");
    env.create_topic(&topic, 1).expect("topic");
    env.produce_test_messages(&topic, 1_000).expect("produce");
    let consumer = subscribed_strings(implementation, &env, &env.unique_group("lag"), &topic);
    let mut stream = consumer.stream();
    take(&mut stream, 400, PATIENCE).await;

    let read_at = Instant::now();
    let mut lag: Vec<PartitionLag>;
    loop {
        lag = consumer.lag().expect("lag");
        if lag.first().and_then(PartitionLag::lag) == Some(600) {
            break;
        }
        assert!(
            read_at.elapsed() < Duration::from_secs(1),
            "{implementation:?}: lag {lag:?} a second after reading 400 of 1,000"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(lag.len(), 1, "{lag:?}");
    assert_eq!(
        (lag[0].position, lag[0].high_watermark),
        (Some(400), Some(1_000)),
        "{implementation:?}"
    );
}

/// The stream moves into `tokio::spawn` with (an `Arc` of) its consumer;
/// the application keeps a clone to commit what the task was handed.
async fn an_owned_stream_reads_in_a_spawned_task(implementation: Implementation) {
    let env = env();
    let topic = env.unique_topic("owned");
    env.create_topic(&topic, 1).expect("topic");
    env.produce_test_messages(&topic, 100).expect("produce");
    let group = env.unique_group("owned");
    let consumer: Arc<dyn KafkaStreamConsumer<String, String>> =
        Arc::from(subscribed_strings(implementation, &env, &group, &topic));
    let mut messages = OwnedStream::new(Arc::clone(&consumer));
    let reader = tokio::spawn(async move {
        let mut offsets = Vec::new();
        while offsets.len() < 50 {
            match tokio::time::timeout(PATIENCE, messages.next()).await {
                Ok(Some(Ok(message))) => offsets.push(message.offset),
                other => panic!("after {} messages: {other:?}", offsets.len()),
            }
        }
        offsets
    });
    let offsets = reader.await.expect("the reading task");
    assert_eq!(offsets, (0..50).collect::<Vec<i64>>(), "{implementation:?}");
    consumer.commit_async().await.expect("commit");
    assert_eq!(group_committed(&env, &group, &topic).await, Some(50));
}

/// A codec that only decodes (no `serialize`) serves every consumer.
struct Shouting;

impl tiered_kafka::api::Decode<String> for Shouting {
    fn decode(&self, bytes: &[u8]) -> Result<String, tiered_kafka::api::SerdeError> {
        std::str::from_utf8(bytes)
            .map(str::to_uppercase)
            .map_err(tiered_kafka::api::SerdeError::new)
    }
}

async fn a_decode_only_codec_reads(implementation: Implementation) {
    let env = env();
    let topic = env.unique_topic("decode-only");
    env.create_topic(&topic, 1).expect("topic");
    env.produce_test_messages(&topic, 3).expect("produce");
    let consumer = common::subscribed(
        implementation,
        &env,
        &env.unique_group("decode-only"),
        &topic,
        Shouting,
        Shouting,
    );
    let read = take(&mut consumer.stream(), 3, PATIENCE).await;
    assert_eq!(
        read[2].value.as_deref(),
        Some("MESSAGE-2"),
        "{implementation:?}"
    );
    assert_eq!(read[2].key.as_deref(), Some("KEY-2"), "{implementation:?}");
}
