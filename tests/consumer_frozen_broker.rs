//! A frozen broker keeps its connections open and answers nothing (a
//! process stopped with `SIGSTOP`, a partition that drops packets): on
//! Apache Kafka the broker gets `SIGSTOP`, on the mock every answer is
//! delayed by an hour. Closing a consumer with uncommitted messages then
//! returns within its timeout, the report says the final commit did not
//! make it, and once the broker thaws a new member of the group reads on
//! from the last commit: duplicates only from the uncommitted window,
//! nothing lost. The close left behind (a `kafka-close` thread until
//! librdkafka's close ends) is counted and printed.
//!
//! One test runs the implementations in turn, since a freeze disturbs
//! anything else using the broker.

mod common;

use std::time::{Duration, Instant};

use common::process::threads_named;
use common::{Implementation, build, consumer_config, env, take};
use tiered_kafka::api::StringSerde;

/// The close timeout under test.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);
/// Slack for the close itself on a loaded machine.
const MARGIN: Duration = Duration::from_secs(3);
const PATIENCE: Duration = Duration::from_secs(90);
/// Messages committed before the freeze.
const COMMITTED: i64 = 50;
/// Messages handed out before the freeze: the last 30 are not committed.
const HANDED_OUT: i64 = 80;
/// Records in the topic.
const RECORDS: i64 = 200;

#[test]
fn closing_against_a_frozen_broker_returns_in_time_and_loses_nothing() {
    let env = env();
    let runtime = common::runtime();
    for implementation in Implementation::ALL {
        let topic = env.unique_topic("frozen");
        env.create_topic(&topic, 1).expect("topic");
        env.produce_test_messages(&topic, RECORDS as usize)
            .expect("produce");
        let group = env.unique_group("frozen");
        let consumer = build(
            implementation,
            consumer_config(&env, &group),
            StringSerde,
            StringSerde,
        );
        consumer.subscribe(&[&topic]).expect("subscribe");
        runtime.block_on(async {
            let mut stream = consumer.stream();
            take(&mut stream, COMMITTED as usize, PATIENCE).await;
            consumer
                .commit_blocking()
                .expect("commit before the freeze");
            take(&mut stream, (HANDED_OUT - COMMITTED) as usize, PATIENCE).await;
        });
        let closers_before = threads_named("kafka-close");
        let freeze = env.broker_freeze().expect("freeze");
        let started = Instant::now();
        let (closed, closed_signal) = std::sync::mpsc::channel();
        let closer = std::thread::spawn(move || {
            let report = consumer.close_blocking(CLOSE_TIMEOUT);
            let _ = closed.send(());
            report
        });
        let in_time = closed_signal.recv_timeout(CLOSE_TIMEOUT + MARGIN).is_ok();
        let took = started.elapsed();
        let left_behind =
            threads_named("kafka-close") - closers_before.min(threads_named("kafka-close"));
        drop(freeze);
        let report = closer.join().expect("the closing thread");
        assert!(
            in_time,
            "{implementation:?}: close_blocking({CLOSE_TIMEOUT:?}) took {took:?} against a frozen broker"
        );
        assert!(
            report.commit.is_err(),
            "{implementation:?}: a commit to a frozen broker cannot be confirmed: {report:?}"
        );
        println!(
            "{implementation:?}: closed in {took:?} against a frozen broker: {report:?}; \
             kafka-close threads left running: {left_behind}"
        );

        // Thawed: a new member reads on from the last commit it can see (the
        // one before the freeze, or the close's if the broker applied it
        // after thawing), to the end, without a gap.
        let reader = build(
            implementation,
            consumer_config(&env, &group),
            StringSerde,
            StringSerde,
        );
        reader.subscribe(&[&topic]).expect("subscribe");
        let offsets: Vec<i64> = runtime.block_on(async {
            let mut stream = reader.stream();
            let first = take(&mut stream, 1, PATIENCE).await[0].offset;
            assert!(
                (COMMITTED..=HANDED_OUT).contains(&first),
                "{implementation:?}: after the thaw the group resumed at {first}, outside \
                 the last commit before the freeze ({COMMITTED}) .. the close's ({HANDED_OUT})"
            );
            let rest = take(&mut stream, (RECORDS - 1 - first) as usize, PATIENCE).await;
            std::iter::once(first)
                .chain(rest.iter().map(|m| m.offset))
                .collect()
        });
        let expected: Vec<i64> = (offsets[0]..RECORDS).collect();
        assert_eq!(
            offsets, expected,
            "{implementation:?}: a gap or a repeat after the thaw"
        );
        println!(
            "{implementation:?}: after the thaw the group resumed at {} ({} duplicates)",
            offsets[0],
            HANDED_OUT - offsets[0]
        );
        drop(reader);
        println!(
            "{implementation:?}: kafka-close threads still running after the re-read: {}",
            threads_named("kafka-close")
        );
    }
}
