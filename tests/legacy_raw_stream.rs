//! The legacy consumer's `raw_stream` and `mark_delivered`: a record is
//! recorded only if its partition is still this consumer's since it was
//! polled.

mod common;

use std::time::Duration;

use common::{consumer_config, env};
use futures_util::StreamExt;
use kafka_test_env::TestRecord;
use rdkafka::Message as _;
use tiered_kafka::api::StringSerde;
use tiered_kafka::legacy::{KafkaConsumer, RawRecord};

const PATIENCE: Duration = Duration::from_secs(60);

/// Member A reads one raw record from each of two partitions and keeps them
/// unmarked. Member B joins; after the rebalance B owns one of the
/// partitions, reads it to the end and commits. A then marks its kept
/// records and commits: B's partition must keep B's offset. A record polled
/// before the revocation is stale, whenever it is marked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_kept_across_a_rebalance_does_not_move_the_new_owner_back() {
    const PER_PARTITION: usize = 10;
    let env = env();
    let topic = env.unique_topic("raw-kept");
    env.create_topic(&topic, 2).expect("topic");
    let records = (0..2).flat_map(|partition| {
        (0..PER_PARTITION)
            .map(move |i| TestRecord::new(format!("k{i}"), format!("v{i}")).partition(partition))
    });
    env.produce(&topic, records).expect("produce");
    let group = env.unique_group("raw-kept");

    let a = KafkaConsumer::with_config(consumer_config(&env, &group), StringSerde, StringSerde)
        .expect("member A");
    a.subscribe(&[&topic]).expect("subscribe A");
    let mut raw = a.raw_stream();
    let mut kept: Vec<RawRecord<'_>> = Vec::new();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while kept.len() < 2 {
        let record = tokio::time::timeout_at(deadline, raw.next())
            .await
            .expect("A reads a record of each partition")
            .expect("stream goes on")
            .expect("a record");
        if kept.iter().all(|k| k.partition() != record.partition()) {
            kept.push(record);
        }
    }

    let b = KafkaConsumer::with_config(consumer_config(&env, &group), StringSerde, StringSerde)
        .expect("member B");
    b.subscribe(&[&topic]).expect("subscribe B");
    let mut b_stream = b.stream();
    // A polls (serving the rebalance, marking nothing) while B reads.
    let mut b_read = Vec::new();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while b_read.len() < PER_PARTITION {
        assert!(
            tokio::time::Instant::now() < deadline,
            "B read only {b_read:?}"
        );
        tokio::select! {
            _ = raw.next() => {}
            item = b_stream.next() => {
                if let Some(Ok(message)) = item {
                    b_read.push((message.partition, message.offset));
                }
            }
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
    }
    let b_partition = b_read[0].0;
    assert!(
        b_read.iter().all(|(p, _)| *p == b_partition),
        "B owns one partition: {b_read:?}"
    );
    b.commit_blocking().expect("B commits");
    assert_eq!(
        common::group_committed_partition(&env, &group, &topic, b_partition).await,
        Some(PER_PARTITION as i64)
    );

    for record in &kept {
        let recorded = a.mark_delivered(record);
        println!(
            "A marks {}/{}@{}: recorded {recorded}",
            record.topic(),
            record.partition(),
            record.offset()
        );
        // (A's own partition was revoked and assigned back too, with the
        // default eager assignor: its record may be stale as well.)
        assert!(
            !(recorded && record.partition() == b_partition),
            "a record polled before its partition moved to B is recorded"
        );
    }
    drop(kept);
    a.commit_blocking().expect("A commits");
    assert_eq!(
        common::group_committed_partition(&env, &group, &topic, b_partition).await,
        Some(PER_PARTITION as i64),
        "A's commit moved B's partition {b_partition} back"
    );
}
