//! Transaction coordination with the legacy consumer: `isolation_level` is
//! honoured, and a consume-transform-produce loop commits its input offsets
//! inside the producer's transaction (`send_offsets_to_transaction` with the
//! consumer's `group_metadata`), so a restart resumes after them.
//!
//! On the librdkafka mock cluster the transactional API works end to end
//! (InitProducerId, AddPartitionsToTxn, AddOffsetsToTxn, TxnOffsetCommit,
//! EndTxn), but the mock writes no transaction markers, reports no aborted
//! transactions in Fetch (so `read_committed` also sees aborted records), and
//! answers TxnOffsetCommit without storing the offsets. There the tests run
//! everything, assert what the mock does, and print what they could not
//! check; on Apache Kafka they assert it all.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{consumer_config, env, next_within, take};
use consumer_legacy::KafkaConsumer;
use kafka_test_env::KafkaTestEnv;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use tiered_kafka::api::{ConsumerError, IsolationLevel, KafkaStreamConsumer, Message, StringSerde};

const PATIENCE: Duration = Duration::from_secs(60);
const TXN_TIMEOUT: Duration = Duration::from_secs(30);

fn transactional_producer(env: &KafkaTestEnv, name: &str) -> BaseProducer {
    let mut config = env.client_config();
    config
        .set("transactional.id", env.unique_group(name))
        .set("transaction.timeout.ms", "30000");
    let producer: BaseProducer = config.create().expect("transactional producer");
    producer
        .init_transactions(TXN_TIMEOUT)
        .expect("init_transactions");
    producer
}

fn send(producer: &BaseProducer, topic: &str, partition: i32, key: &str, value: &str) {
    producer
        .send(
            BaseRecord::to(topic)
                .partition(partition)
                .key(key)
                .payload(value),
        )
        .map_err(|(error, _)| error)
        .expect("enqueue");
}

fn values(messages: &[Message<String, String>]) -> BTreeSet<String> {
    messages
        .iter()
        .map(|m| m.value.clone().expect("a value"))
        .collect()
}

/// Reads everything the topic holds for a consumer with this isolation level:
/// up to `at_least` messages, then until nothing arrives for 2 s.
async fn read_all(
    env: &KafkaTestEnv,
    topic: &str,
    isolation: IsolationLevel,
    at_least: usize,
) -> Vec<Message<String, String>> {
    let mut config = consumer_config(env, &env.unique_group("txn-reader"));
    config.isolation_level = Some(isolation);
    let consumer: KafkaConsumer<String, String, _, _> =
        KafkaConsumer::with_config(config, StringSerde, StringSerde).expect("reader");
    consumer.subscribe(&[topic]).expect("subscribe");
    let mut stream = KafkaStreamConsumer::stream(&consumer);
    let mut messages = take(&mut stream, at_least, PATIENCE).await;
    while let Some(item) = next_within(&mut stream, Duration::from_secs(2)).await {
        messages.push(item.expect("a message"));
    }
    messages
}

/// One committed and one aborted transaction (and a committed one after it):
/// `read_committed` sees only the committed records, `read_uncommitted` all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_committed_sees_only_committed_transactions() {
    let env = env();
    let topic = env.unique_topic("txn-isolation");
    env.create_topic(&topic, 2).expect("topic");
    let producer = transactional_producer(&env, "txn-isolation");

    producer.begin_transaction().expect("begin");
    for i in 0..6 {
        send(&producer, &topic, i % 2, "k", &format!("committed-{i}"));
    }
    producer.commit_transaction(TXN_TIMEOUT).expect("commit");

    producer.begin_transaction().expect("begin");
    for i in 0..4 {
        send(&producer, &topic, i % 2, "k", &format!("aborted-{i}"));
    }
    producer.flush(TXN_TIMEOUT).expect("flush");
    producer.abort_transaction(TXN_TIMEOUT).expect("abort");

    producer.begin_transaction().expect("begin");
    for i in 0..2 {
        send(&producer, &topic, i % 2, "k", &format!("after-{i}"));
    }
    producer.commit_transaction(TXN_TIMEOUT).expect("commit");
    drop(producer);

    let committed: BTreeSet<String> = (0..6)
        .map(|i| format!("committed-{i}"))
        .chain((0..2).map(|i| format!("after-{i}")))
        .collect();
    let aborted: BTreeSet<String> = (0..4).map(|i| format!("aborted-{i}")).collect();
    let everything: BTreeSet<String> = committed.union(&aborted).cloned().collect();

    let read_uncommitted =
        values(&read_all(&env, &topic, IsolationLevel::ReadUncommitted, 12).await);
    assert_eq!(
        read_uncommitted, everything,
        "read_uncommitted sees every record"
    );

    if env.kind().is_mock() {
        let read_committed =
            values(&read_all(&env, &topic, IsolationLevel::ReadCommitted, 12).await);
        // FIXME(mock): the mock reports no aborted transactions in Fetch, so
        // read_committed cannot filter them there. Assert today's behaviour so
        // that a mock that learns it makes this test say so.
        assert_eq!(read_committed, everything);
        println!(
            "mock: 3 transactions (commit, abort, commit) produced; read_uncommitted and \
             read_committed both read all {} records (the mock cannot filter aborted \
             transactions; filtering is checked on Apache Kafka)",
            everything.len()
        );
    } else {
        let read_committed =
            values(&read_all(&env, &topic, IsolationLevel::ReadCommitted, 8).await);
        assert_eq!(
            read_committed, committed,
            "read_committed sees only committed records"
        );
        println!(
            "{}: read_uncommitted read {} records, read_committed read the {} committed ones \
             and none of the {} aborted",
            env.kind(),
            read_uncommitted.len(),
            read_committed.len(),
            aborted.len()
        );
    }
}

/// Consume-transform-produce: the input offsets are committed inside the
/// producer's transaction; an aborted round commits neither its output nor
/// its offsets; a restart in the same group resumes after the committed
/// round.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consume_transform_produce_commits_offsets_in_the_transaction() {
    const INPUT: usize = 20;
    const COMMITTED_ROUND: usize = 10;
    const ABORTED_ROUND: usize = 5;
    let env = env();
    let input = env.unique_topic("ctp-in");
    let output = env.unique_topic("ctp-out");
    env.create_topic(&input, 2).expect("input topic");
    env.create_topic(&output, 1).expect("output topic");
    env.produce_test_messages(&input, INPUT).expect("produce");
    let group = env.unique_group("ctp");
    let producer = transactional_producer(&env, "ctp");

    let mut config = consumer_config(&env, &group);
    config.isolation_level = Some(IsolationLevel::ReadCommitted);
    let first_round = {
        let consumer: KafkaConsumer<String, String, _, _> = KafkaConsumer::builder()
            .config(config.clone())
            .key_serde(StringSerde)
            .value_serde(StringSerde)
            .transactional()
            .build()
            .expect("transactional consumer");
        consumer.subscribe(&[&input]).expect("subscribe");
        let mut stream = KafkaStreamConsumer::stream(&consumer);

        let transform = |messages: &[Message<String, String>]| {
            producer.begin_transaction().expect("begin");
            for message in messages {
                let value = message.value.as_deref().expect("a value").to_uppercase();
                send(&producer, &output, 0, "k", &value);
            }
            let offsets = consumer.current_offsets().expect("positions");
            let metadata = consumer.group_metadata().expect("group metadata");
            producer
                .send_offsets_to_transaction(&offsets, &metadata, TXN_TIMEOUT)
                .expect("send_offsets_to_transaction");
        };

        let first_round = take(&mut stream, COMMITTED_ROUND, PATIENCE).await;
        transform(&first_round);
        producer.commit_transaction(TXN_TIMEOUT).expect("commit");

        let aborted_round = take(&mut stream, ABORTED_ROUND, PATIENCE).await;
        transform(&aborted_round);
        producer.flush(TXN_TIMEOUT).expect("flush");
        producer.abort_transaction(TXN_TIMEOUT).expect("abort");

        // The consumer never commits by itself, not even on close.
        assert!(matches!(
            consumer.commit_blocking(),
            Err(ConsumerError::Misuse(_))
        ));
        drop(stream);
        first_round
    };
    drop(producer);

    let first_values = values(&first_round);
    let resumed = {
        let consumer: KafkaConsumer<String, String, _, _> =
            KafkaConsumer::with_config(config, StringSerde, StringSerde).expect("restart");
        consumer.subscribe(&[&input]).expect("subscribe");
        let mut stream = KafkaStreamConsumer::stream(&consumer);
        let expected = if env.kind().is_mock() {
            INPUT
        } else {
            INPUT - COMMITTED_ROUND
        };
        let mut resumed = take(&mut stream, expected, PATIENCE).await;
        while let Some(item) = next_within(&mut stream, Duration::from_secs(2)).await {
            resumed.push(item.expect("a message"));
        }
        resumed
    };
    let resumed_values = values(&resumed);
    let output_values = values(&read_all(&env, &output, IsolationLevel::ReadCommitted, 1).await);
    let first_upper: BTreeSet<String> = first_values.iter().map(|v| v.to_uppercase()).collect();

    if env.kind().is_mock() {
        // FIXME(mock): TxnOffsetCommit is answered but not stored, so the
        // restart starts from the beginning; and aborted output is visible.
        assert_eq!(resumed.len(), INPUT);
        assert!(first_upper.is_subset(&output_values));
        assert_eq!(output_values.len(), COMMITTED_ROUND + ABORTED_ROUND);
        println!(
            "mock: consume-transform-produce ran: {COMMITTED_ROUND} in a committed transaction \
             with send_offsets_to_transaction, {ABORTED_ROUND} in an aborted one; the mock \
             does not store transactional offsets (restart read all {INPUT}) nor filter \
             aborted output ({} visible): resuming is checked on Apache Kafka",
            output_values.len()
        );
    } else {
        assert_eq!(
            resumed.len(),
            INPUT - COMMITTED_ROUND,
            "the restart resumes after the committed round, nothing twice"
        );
        assert!(
            resumed_values.is_disjoint(&first_values),
            "a message of the committed round was read again"
        );
        let all: BTreeSet<String> = first_values.union(&resumed_values).cloned().collect();
        assert_eq!(all.len(), INPUT, "a message was lost");
        assert_eq!(
            output_values, first_upper,
            "only the committed round's output is visible"
        );
        println!(
            "{}: {COMMITTED_ROUND} messages transformed in a committed transaction with their \
             offsets, {ABORTED_ROUND} in an aborted one; the restart read the other {} (the \
             aborted round's included), the output holds the {} committed results",
            env.kind(),
            resumed.len(),
            output_values.len()
        );
    }
}
