//! The plan's Phase 6: a legacy consumer hands over to the fast consumer with
//! `into_fast_consumer`, and the fast consumer, in each tier, continues from
//! the next message: every message exactly once across the two.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use common::{consumer_config, coordinates, env, next_within, take};
use consumer_legacy::KafkaConsumer;
use rdkafka::Offset;
use tiered_kafka::api::{ConsumerTier, KafkaStreamConsumer, StringSerde};
use tiered_kafka::fast::TieredConsumer;

const TOTAL: usize = 1000;
const BY_LEGACY: usize = 300;
const PATIENCE: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standard() {
    legacy_then_fast(ConsumerTier::Standard).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buffered() {
    legacy_then_fast(ConsumerTier::Buffered { batch_size: 32 }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dedicated() {
    legacy_then_fast(ConsumerTier::Dedicated).await;
}

/// Read 300 of 1,000 (4 partitions) with the legacy consumer, convert, read
/// the rest with the fast consumer in `tier`: exactly the 1,000 messages,
/// once each, each partition resuming where the legacy consumer stopped.
async fn legacy_then_fast(tier: ConsumerTier) {
    let env = env();
    let topic = env.unique_topic("migrate");
    env.create_topic(&topic, 4).expect("topic");
    let produced = env.produce_test_messages(&topic, TOTAL).expect("produce");
    let group = env.unique_group("migrate");

    let legacy: KafkaConsumer<String, String, _, _> =
        KafkaConsumer::with_config(consumer_config(&env, &group), StringSerde, StringSerde)
            .expect("legacy consumer");
    legacy.subscribe(&[&topic]).expect("subscribe");
    let first = {
        let mut stream = KafkaStreamConsumer::stream(&legacy);
        take(&mut stream, BY_LEGACY, PATIENCE).await
    };
    // Where the legacy consumer stopped: the next offset per partition.
    let positions: BTreeMap<i32, i64> = legacy
        .current_offsets()
        .expect("positions")
        .elements()
        .iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(next) => Some((e.partition(), next)),
            _ => None,
        })
        .collect();

    let converting = Instant::now();
    let fast = legacy.into_fast_consumer().expect("into_fast_consumer");
    let conversion = converting.elapsed();
    let fast = TieredConsumer::new(fast, tier);
    assert_eq!(fast.tier(), Some(tier));
    let second = {
        let mut stream = fast.stream();
        let second = take(&mut stream, TOTAL - BY_LEGACY, PATIENCE).await;
        assert!(
            next_within(&mut stream, Duration::from_secs(2))
                .await
                .is_none(),
            "{tier}: a message was read twice"
        );
        second
    };

    let first = coordinates(&first);
    let second = coordinates(&second);
    let all: BTreeSet<_> = first.iter().chain(&second).copied().collect();
    assert_eq!(all, common::produced_coordinates(&produced), "{tier}");
    assert_eq!(first.len() + second.len(), TOTAL, "{tier}: duplicates");
    // Each partition continues at the legacy consumer's position.
    for (partition, count) in common::per_partition(&second) {
        let resumed = second
            .iter()
            .filter(|c| c.0 == partition)
            .map(|c| c.1)
            .min();
        let expected = positions.get(&partition).copied().unwrap_or(0);
        assert_eq!(
            resumed,
            Some(expected),
            "{tier}: partition {partition} ({count} messages) resumed at {resumed:?}"
        );
    }
    println!(
        "{tier}: legacy read {BY_LEGACY} (per partition {:?}), converted in {conversion:?}, \
         fast read {} (per partition {:?}): {} distinct of {TOTAL}",
        common::per_partition(&first),
        second.len(),
        common::per_partition(&second),
        all.len()
    );
}
