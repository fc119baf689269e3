//! Reliability, liveness: a consumer waiting on a quiet topic stays in its
//! group, however long the wait.
//!
//! librdkafka's liveness check (KIP-62) removes a consumer that has not
//! polled for `max.poll.interval.ms`, taking it for a stuck application. A
//! stream waiting for the next message is not stuck: each implementation
//! must keep polling while its application waits in `next()`.

mod common;

use std::time::Duration;

use common::{Implementation, build, consumer_config, env, next_within, take};
use tiered_kafka::api::StringSerde;

/// `session.timeout.ms` and `max.poll.interval.ms`: Apache Kafka's smallest
/// session timeout, and librdkafka wants the poll interval at least as long.
const MAX_POLL_INTERVAL: Duration = Duration::from_secs(6);
/// How long the consumer waits on the empty topic: two intervals and more.
const QUIET: Duration = Duration::from_secs(14);

async fn a_waiting_consumer_stays_in_its_group(implementation: Implementation) {
    let env = env();
    let topic = env.unique_topic("quiet");
    env.create_topic(&topic, 1).expect("topic");
    env.produce_test_messages(&topic, 1).expect("produce");
    let mut config = consumer_config(&env, &env.unique_group("quiet"));
    config.session_timeout_ms = Some(MAX_POLL_INTERVAL.as_millis() as u64);
    config.max_poll_interval_ms = Some(MAX_POLL_INTERVAL.as_millis() as u64);
    let consumer = build(implementation, config, StringSerde, StringSerde);
    consumer.subscribe(&[&topic]).expect("subscribe");
    let mut stream = consumer.stream();
    let first = take(&mut stream, 1, Duration::from_secs(60)).await;
    assert_eq!(first[0].offset, 0);

    // Nothing committed: a consumer that left the group and rejoined would
    // start again at offset 0; librdkafka also reports the departure as an
    // error on the stream.
    let during_quiet = next_within(&mut stream, QUIET).await;
    assert!(
        during_quiet.is_none(),
        "{implementation:?}: while the topic was quiet the stream gave {during_quiet:?}"
    );
    env.produce(
        &topic,
        [kafka_test_env::TestRecord::new("key-1", "message-1")],
    )
    .expect("produce");
    let next = take(&mut stream, 1, Duration::from_secs(30)).await;
    assert_eq!(
        (next[0].offset, next[0].value.as_deref()),
        (1, Some("message-1")),
        "{implementation:?} read {:?} after waiting {QUIET:?} (max.poll.interval.ms {MAX_POLL_INTERVAL:?})",
        next[0]
    );
    consumer.commit_blocking().expect("commit as a member");
    println!(
        "{implementation:?}: waited {QUIET:?} on a quiet topic with max.poll.interval.ms of {MAX_POLL_INTERVAL:?}, then read the next message in order"
    );
}

contract_tests!(a_waiting_consumer_stays_in_its_group);
