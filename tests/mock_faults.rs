//! Failures only the mock cluster can inject (librdkafka's per-request
//! fault injection, `KafkaTestEnv::fail_requests`). These tests build their
//! own mock cluster whatever `KAFKA_TEST_BROKER` says, so they run, on the
//! mock, in every phase of `cargo xtask test`.

mod common;

use std::time::Duration;

use common::{Implementation, consumer_config, take};
use kafka_test_env::KafkaTestEnv;
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use tiered_kafka::api::StringSerde;

contract_tests!(a_partition_whose_revocation_commit_failed_resumes_where_it_was,);

const PATIENCE: Duration = Duration::from_secs(60);

/// A consumer has read 40 of 100 messages of a partition, uncommitted. Its
/// subscription changes, so the partition is revoked and assigned back to
/// it, and the commit on revocation fails (the mock refuses every
/// `OffsetCommit` meanwhile). The consumer must go on at offset 40, its own
/// position: not at the committed offset (none: `earliest`, so 0), which
/// would hand out 40 messages again.
async fn a_partition_whose_revocation_commit_failed_resumes_where_it_was(
    implementation: Implementation,
) {
    common::init_logging();
    let env = KafkaTestEnv::mock().expect("mock cluster");
    let topic = env.unique_topic("commit-fails");
    let other = env.unique_topic("commit-fails-other");
    env.create_topic(&topic, 1).expect("topic");
    env.create_topic(&other, 1).expect("other topic");
    env.produce_test_messages(&topic, 100).expect("produce");
    let consumer = common::build(
        implementation,
        consumer_config(&env, &env.unique_group("commit-fails")),
        StringSerde,
        StringSerde,
    );
    consumer.subscribe(&[&topic]).expect("subscribe");
    let mut stream = consumer.stream();
    let first = take(&mut stream, 40, PATIENCE).await;
    assert_eq!(first.last().map(|m| m.offset), Some(39));

    env.fail_requests(
        RDKafkaApiKey::OffsetCommit,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_OFFSET_METADATA_TOO_LARGE; 16],
    )
    .expect("inject");
    consumer
        .subscribe(&[&topic, &other])
        .expect("subscribe to both");
    let rest = take(&mut stream, 60, PATIENCE).await;
    let offsets: Vec<i64> = rest.iter().map(|m| m.offset).collect();
    assert_eq!(
        offsets,
        (40..100).collect::<Vec<_>>(),
        "{implementation:?}: after the revocation whose commit failed"
    );
}
