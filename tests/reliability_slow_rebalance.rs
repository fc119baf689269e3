//! Reliability, a rebalance while the application is slow: the partitions
//! that leave a slow member and later come back are read again.
//!
//! The Dedicated tier pauses fetching while its application is far behind
//! (and polls to stay in the group). librdkafka keeps a partition's pause
//! across a revocation, so a partition revoked during that time must still
//! be resumed, or it would never be fetched again once it comes back.
//!
//! Member A reads slowly until member B has joined and taken some of the
//! partitions, then reads at full speed; B leaves; A must end up reading
//! everything B did not.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{Implementation, build, consumer_config, env, next_within, produced_coordinates};
use futures_util::StreamExt;
use tiered_kafka::api::{ConsumerTier, Message, StringSerde};

const PARTITIONS: i32 = 4;
const MESSAGES: usize = 4_000;
/// What A spends on each message while it is slow: far behind the
/// Dedicated tier's read-ahead, so that it pauses fetching.
const SLOW: Duration = Duration::from_millis(20);
const PATIENCE: Duration = Duration::from_secs(90);

async fn partitions_revoked_from_a_slow_member_come_back_readable(implementation: Implementation) {
    let env = env();
    let topic = env.unique_topic("slow-rebalance");
    env.create_topic(&topic, PARTITIONS).expect("topic");
    let produced = produced_coordinates(
        &env.produce_test_messages(&topic, MESSAGES)
            .expect("produce"),
    );
    let group = env.unique_group("slow-rebalance");

    let a = build(
        implementation,
        consumer_config(&env, &group),
        StringSerde,
        StringSerde,
    );
    a.subscribe(&[&topic]).expect("subscribe A");
    let mut a_stream = a.stream();
    let mut read: BTreeSet<(i32, i64)> = BTreeSet::new();
    fn record(read: &mut BTreeSet<(i32, i64)>, message: Message<String, String>) {
        read.insert((message.partition, message.offset));
    }

    // A is slow for a while: its read-ahead fills up, and fetching pauses.
    for _ in 0..100 {
        let message = next_within(&mut a_stream, PATIENCE)
            .await
            .expect("A reads")
            .expect("no error");
        record(&mut read, message);
        tokio::time::sleep(SLOW).await;
    }

    // B joins and takes some partitions, while A is still slow (A serves the
    // rebalance from within its slowness).
    let b = build(
        Implementation::Fast(ConsumerTier::Standard),
        consumer_config(&env, &group),
        StringSerde,
        StringSerde,
    );
    b.subscribe(&[&topic]).expect("subscribe B");
    let b_read = {
        let mut b_stream = b.stream();
        let mut b_read = Vec::new();
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while b_read.is_empty() {
            assert!(tokio::time::Instant::now() < deadline, "B got no partition");
            if let Some(Ok(message)) = next_within(&mut b_stream, Duration::from_millis(100)).await
            {
                b_read.push((message.partition, message.offset));
            }
            // A keeps going, slowly.
            if let Some(Ok(message)) = next_within(&mut a_stream, Duration::from_millis(1)).await {
                record(&mut read, message);
                tokio::time::sleep(SLOW).await;
            }
        }
        b_read
    };
    // A catches up at full speed (its fetching resumes), then B leaves, and
    // its partitions come back to A.
    let mut caught_up = 0;
    while caught_up < 500 {
        match next_within(&mut a_stream, Duration::from_secs(2)).await {
            Some(Ok(message)) => {
                record(&mut read, message);
                caught_up += 1;
            }
            Some(Err(error)) => println!("{implementation:?}: A: {error}"),
            None => break,
        }
    }
    b.commit_blocking().expect("B commits");
    drop(b);

    let deadline = tokio::time::Instant::now() + PATIENCE;
    let b_set: BTreeSet<_> = b_read.iter().copied().collect();
    while !produced
        .iter()
        .all(|c| read.contains(c) || b_set.contains(c))
    {
        match tokio::time::timeout_at(deadline, a_stream.next()).await {
            Ok(Some(Ok(message))) => {
                record(&mut read, message);
            }
            Ok(Some(Err(error))) => println!("{implementation:?}: A: {error}"),
            Ok(None) => panic!("{implementation:?}: A's stream ended"),
            Err(_) => {
                let missing: BTreeSet<i32> = produced
                    .iter()
                    .filter(|c| !read.contains(c) && !b_set.contains(c))
                    .map(|(partition, _)| *partition)
                    .collect();
                panic!(
                    "{implementation:?}: A read {} messages and B {}, but partitions {missing:?} were never read to the end within {PATIENCE:?}",
                    read.len(),
                    b_read.len()
                );
            }
        }
    }
    println!(
        "{implementation:?}: A read {} messages, B {} before it left; every message was read",
        read.len(),
        b_read.len()
    );
}

contract_tests!(partitions_revoked_from_a_slow_member_come_back_readable);
