//! Reliability, broker restart: the broker goes away mid-stream for several
//! seconds and comes back; the consumer reports the outage on its stream,
//! does not spin while the broker is gone, resumes by itself, and in the end
//! has read every message, those produced before and after the outage.
//!
//! On real Kafka the broker process is killed and started again with its
//! data ([`KafkaTestEnv::broker_outage`](kafka_test_env::KafkaTestEnv::broker_outage));
//! on the mock cluster its broker is set down and up. One test runs the
//! implementations one after another, since an outage disturbs anything else
//! using the broker.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::process::CpuMeter;
use common::{
    Implementation, build, consumer_config, env, next_within, produced_coordinates, take,
};
use futures_util::StreamExt;
use tiered_kafka::api::StringSerde;

const PARTITIONS: i32 = 3;
const BEFORE: usize = 2_000;
const AFTER: usize = 1_000;
/// How long the broker stays away while the application keeps reading.
const OUTAGE: Duration = Duration::from_secs(8);
/// A consumer retrying connections every `reconnect.backoff.ms` uses a few
/// percent of a core at most; a spinning one uses a whole core.
const MAX_OUTAGE_CPU_SHARE: f64 = 0.25;

#[test]
fn a_consumer_rides_out_a_broker_restart_without_spinning_or_losing_messages() {
    let env = env();
    let runtime = common::runtime();
    for implementation in Implementation::ALL {
        let topic = env.unique_topic("restart");
        env.create_topic(&topic, PARTITIONS).expect("topic");
        let mut produced = produced_coordinates(
            &env.produce_test_messages(&topic, BEFORE)
                .expect("produce before the outage"),
        );
        let config = consumer_config(&env, &env.unique_group("restart"));
        let _guard = runtime.enter();
        let consumer = build(implementation, config, StringSerde, StringSerde);
        consumer.subscribe(&[&topic]).expect("subscribe");
        let mut stream = consumer.stream();
        let mut consumed: BTreeSet<(i32, i64)> = BTreeSet::new();
        runtime.block_on(async {
            for message in take(&mut stream, BEFORE / 2, Duration::from_secs(60)).await {
                consumed.insert((message.partition, message.offset));
            }
        });
        consumer
            .commit_blocking()
            .expect("commit before the outage");

        let outage = env.broker_outage().expect("take the broker away");
        let outage_started = Instant::now();
        let meter = CpuMeter::start();
        let mut errors = Vec::new();
        runtime.block_on(async {
            // The application keeps reading: what was fetched before, then
            // errors about the broker, and never a busy loop.
            let deadline = tokio::time::Instant::now() + OUTAGE;
            while let Ok(item) = tokio::time::timeout_at(deadline, stream.next()).await {
                match item {
                    Some(Ok(message)) => {
                        consumed.insert((message.partition, message.offset));
                    }
                    Some(Err(error)) => errors.push(error.to_string()),
                    None => panic!("{implementation:?}: the stream ended during the outage"),
                }
            }
        });
        let outage_cpu = meter.share();
        let during_outage = consumed.len();
        drop(outage);
        let restart_took = outage_started.elapsed();

        produced.extend(produced_coordinates(
            &env.produce(
                &topic,
                (0..AFTER).map(|i| {
                    kafka_test_env::TestRecord::new(format!("after-{i}"), format!("after-{i}"))
                }),
            )
            .expect("produce after the outage"),
        ));
        let mut errors_after = 0;
        runtime.block_on(async {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
            while consumed.len() < produced.len() {
                match tokio::time::timeout_at(deadline, stream.next()).await {
                    Ok(Some(Ok(message))) => {
                        consumed.insert((message.partition, message.offset));
                    }
                    Ok(Some(Err(error))) => {
                        errors_after += 1;
                        println!("{implementation:?}: after the restart: {error}");
                    }
                    Ok(None) => panic!("{implementation:?}: the stream ended after the restart"),
                    Err(_) => panic!(
                        "{implementation:?}: read {} of {} messages within 120 s after the restart",
                        consumed.len(),
                        produced.len()
                    ),
                }
            }
        });
        // A member whose session expired during the outage learns so from
        // the commit (unknown member): it rejoins on its next polls, and
        // commits then. What it re-reads meanwhile was read already.
        let commit_failures = runtime.block_on(async {
            let mut failures = Vec::new();
            while let Err(error) = consumer.commit_blocking() {
                failures.push(error.to_string());
                assert!(
                    failures.len() < 60,
                    "{implementation:?}: no commit succeeded after the restart: {failures:?}"
                );
                if let Some(Ok(message)) =
                    next_within(&mut stream, Duration::from_millis(500)).await
                {
                    assert!(consumed.contains(&(message.partition, message.offset)));
                }
            }
            failures
        });
        drop(stream);
        drop(consumer);

        println!(
            "{implementation:?}: broker away for {restart_took:?}; during the outage the process used {:.1}% of a core, the stream gave {} errors (first: {:?}) and {} messages in all so far; after the restart it read all {} messages ({} errors on the way) and committed (after {} failed commits: {:?})",
            outage_cpu * 100.0,
            errors.len(),
            errors.first(),
            during_outage,
            produced.len(),
            errors_after,
            commit_failures.len(),
            commit_failures.first()
        );
        assert!(
            !errors.is_empty(),
            "{implementation:?}: the outage went unreported on the stream"
        );
        assert!(
            outage_cpu < MAX_OUTAGE_CPU_SHARE,
            "{implementation:?} used {:.0}% of a core while the broker was away",
            outage_cpu * 100.0
        );
        assert_eq!(
            consumed, produced,
            "{implementation:?}: consumed and produced differ"
        );
    }
}
