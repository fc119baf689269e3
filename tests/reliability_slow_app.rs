//! Reliability, slow application: an application that processes far slower
//! than its topic delivers keeps bounded memory, and stays in its group as
//! long as it takes each message within `max.poll.interval.ms`.
//!
//! The topic holds a large backlog; the application spends
//! [`PER_MESSAGE`] on each message for [`RUN`], longer than
//! `max.poll.interval.ms`. The process's resident memory is sampled
//! throughout; at the end the consumer must still be a member (its commit
//! succeeds) and must have read each partition in order without a restart
//! (a consumer that left the group would see an error, or read again from
//! its last commit).
//!
//! One test runs the implementations one after another, so that their
//! memory does not mix.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::process::resident_bytes;
use common::{Implementation, build, consumer_config, env};
use futures_util::StreamExt;
use kafka_test_env::TestRecord;
use tiered_kafka::api::{BytesSerde, StringSerde};

/// Size of each record's value.
const RECORD_BYTES: usize = 10 * 1024;
/// Records in the backlog: 160 MB, far more than librdkafka may prefetch.
const RECORDS: usize = 16_000;
/// 4 MB per partition: the mock cluster keeps at most 5 MB per partition.
const PARTITIONS: i32 = 40;
/// What the application spends on each message.
const PER_MESSAGE: Duration = Duration::from_millis(8);
/// How long the application runs slowly: several `max.poll.interval.ms`, and
/// longer than it takes to work through what the Dedicated tier reads ahead.
const RUN: Duration = Duration::from_secs(20);
/// Then it reads at full speed for this long: a member that left the group
/// gets an error or rewinds on its next polls.
const CATCH_UP: Duration = Duration::from_secs(2);
/// `session.timeout.ms` and `max.poll.interval.ms` (librdkafka requires the
/// latter to be at least the former; Apache Kafka's smallest session timeout
/// is 6 s).
const MAX_POLL_INTERVAL: Duration = Duration::from_secs(6);
/// librdkafka's prefetch limit for this test (`queued.max.messages.kbytes`).
const PREFETCH_KBYTES: u64 = 16 * 1024;
/// The bound on resident memory growth: the prefetch limit, fetch responses
/// in flight and allocator slack. Unbounded reading would take the whole
/// backlog, 160 MB.
const MAX_GROWTH: u64 = 96 * 1024 * 1024;

#[test]
fn a_slow_application_keeps_bounded_memory_and_its_group_membership() {
    let env = env();
    let runtime = common::runtime();
    let topic = env.unique_topic("slow-app");
    env.create_topic(&topic, PARTITIONS).expect("topic");
    let value = vec![b'x'; RECORD_BYTES];
    env.produce(
        &topic,
        (0..RECORDS).map(|i| TestRecord::new(format!("key-{i}"), value.clone())),
    )
    .expect("produce the backlog");
    println!(
        "backlog: {RECORDS} records of {RECORD_BYTES} B in {PARTITIONS} partitions ({} MB)",
        RECORDS * RECORD_BYTES / (1024 * 1024)
    );

    for implementation in Implementation::ALL {
        release_free_memory();
        let baseline = resident_bytes("self");
        let mut config = consumer_config(&env, &env.unique_group("slow-app"));
        config.session_timeout_ms = Some(MAX_POLL_INTERVAL.as_millis() as u64);
        config.max_poll_interval_ms = Some(MAX_POLL_INTERVAL.as_millis() as u64);
        config.extra.insert(
            "queued.max.messages.kbytes".into(),
            PREFETCH_KBYTES.to_string(),
        );
        let _guard = runtime.enter();
        let consumer = build(implementation, config, StringSerde, BytesSerde);
        consumer.subscribe(&[&topic]).expect("subscribe");
        let mut stream = consumer.stream();

        let (processed, peak, per_partition) = runtime.block_on(async {
            let mut next_offset: BTreeMap<i32, i64> = BTreeMap::new();
            let mut processed = 0_usize;
            let mut peak = baseline;
            let started = tokio::time::Instant::now();
            let deadline = started + RUN + CATCH_UP;
            while let Ok(item) = tokio::time::timeout_at(deadline, stream.next()).await {
                let item = item.unwrap_or_else(|| {
                    panic!("{implementation:?}: the stream ended after {processed} messages")
                });
                let message = item.unwrap_or_else(|error| {
                    panic!("{implementation:?}: error after {processed} messages: {error}")
                });
                // A consumer that left the group and came back would read
                // from its last commit (here: the beginning) again.
                let expected = next_offset
                    .entry(message.partition)
                    .or_insert(message.offset);
                assert_eq!(
                    message.offset, *expected,
                    "{implementation:?}: partition {} jumped from offset {} to {} after {processed} messages",
                    message.partition, expected, message.offset
                );
                *expected += 1;
                if started.elapsed() < RUN {
                    tokio::time::sleep(PER_MESSAGE).await;
                }
                processed += 1;
                if processed.is_multiple_of(50) {
                    peak = peak.max(resident_bytes("self"));
                }
            }
            (processed, peak, next_offset)
        });
        consumer.commit_blocking().unwrap_or_else(|error| {
            panic!(
                "{implementation:?}: the member's commit failed (did it leave the group?): {error}"
            )
        });
        drop(stream);
        drop(consumer);

        let growth = peak.saturating_sub(baseline);
        println!(
            "{implementation:?}: processed {processed} messages in {RUN:?} slowly, then {CATCH_UP:?} at full speed, each partition in order ({} partitions read); resident memory grew by {} MB at most (bound {} MB); still a member at the end",
            per_partition.len(),
            growth / (1024 * 1024),
            MAX_GROWTH / (1024 * 1024)
        );
        assert!(
            processed as u128 > RUN.as_millis() / PER_MESSAGE.as_millis() / 2,
            "{implementation:?} processed only {processed} messages"
        );
        assert!(
            growth < MAX_GROWTH,
            "{implementation:?}: resident memory grew by {} MB",
            growth / (1024 * 1024)
        );
    }
}

/// Gives freed heap back to the system, so that one implementation's peak is
/// not counted as the next one's baseline headroom.
fn release_free_memory() {
    // SAFETY: malloc_trim only releases free memory of glibc's allocator.
    unsafe {
        libc::malloc_trim(0);
    }
}
