//! Smoke test of `kafka-test-env` against the broker named by
//! `KAFKA_TEST_BROKER` (the librdkafka mock cluster by default): what the env
//! produces is read back byte for byte with a plain rdkafka `BaseConsumer`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use kafka_test_env::{KafkaTestEnv, ProducedRecord, TestRecord};
use rdkafka::Message;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Headers;

/// How long a test may wait for its records before it fails.
const READ_DEADLINE: Duration = Duration::from_secs(60);

type HeaderList = Vec<(Vec<u8>, Option<Vec<u8>>)>;

/// What a consumer saw of one record.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    headers: HeaderList,
}

/// Record `i` of the smoke test: every one keyed, with an `index` header;
/// some with a duplicated header key, a null header, non-UTF-8 bytes, or no
/// value (tombstone).
fn smoke_record(i: usize) -> TestRecord {
    let mut record =
        TestRecord::new(format!("key-{i}"), format!("value-{i}")).header("index", i.to_string());
    if i.is_multiple_of(3) {
        record = record.header("dup", "first").header("dup", "second");
    }
    if i.is_multiple_of(5) {
        record = record.null_header("null");
    }
    if i.is_multiple_of(7) {
        record = record.header("bytes", vec![0xff, 0xfe, 0x00, (i % 256) as u8, 0xc3]);
    }
    if i % 50 == 49 {
        record.value = None;
    }
    record
}

fn expected_seen(record: &TestRecord) -> Seen {
    Seen {
        key: record.key.clone(),
        value: record.value.clone(),
        headers: record.headers.clone(),
    }
}

/// Subscribes a fresh group to `topic` and reads `count` records, keyed by
/// (partition, offset); fails after [`READ_DEADLINE`].
fn read_back(env: &KafkaTestEnv, topic: &str, count: usize) -> BTreeMap<(i32, i64), Seen> {
    let consumer: BaseConsumer = env
        .consumer_config(&env.unique_group("smoke"))
        .create()
        .expect("consumer is created");
    consumer.subscribe(&[topic]).expect("subscribe");

    let started = Instant::now();
    let mut seen = BTreeMap::new();
    let mut last_offset: BTreeMap<i32, i64> = BTreeMap::new();
    while seen.len() < count {
        assert!(
            started.elapsed() < READ_DEADLINE,
            "read only {} of {count} records from {topic} within {READ_DEADLINE:?} ({})",
            seen.len(),
            env.kind()
        );
        let Some(message) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        let message = message.expect("consumer error while reading back");
        let (partition, offset) = (message.partition(), message.offset());
        if let Some(previous) = last_offset.insert(partition, offset) {
            assert!(
                offset > previous,
                "partition {partition}: offset {offset} after {previous}"
            );
        }
        let headers: HeaderList = message
            .headers()
            .map(|headers| {
                headers
                    .iter()
                    .map(|header| {
                        (
                            header.key.as_bytes().to_vec(),
                            header.value.map(<[u8]>::to_vec),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        let previous = seen.insert(
            (partition, offset),
            Seen {
                key: message.key().map(<[u8]>::to_vec),
                value: message.payload().map(<[u8]>::to_vec),
                headers,
            },
        );
        assert!(
            previous.is_none(),
            "record at partition {partition} offset {offset} read twice"
        );
    }
    seen
}

/// Offsets per partition must be exactly 0..n.
fn assert_contiguous_offsets(produced: &[ProducedRecord], partitions: i32) {
    let mut offsets: BTreeMap<i32, Vec<i64>> = BTreeMap::new();
    for record in produced {
        offsets
            .entry(record.partition)
            .or_default()
            .push(record.offset);
    }
    for partition in offsets.keys() {
        assert!(
            (0..partitions).contains(partition),
            "record went to partition {partition} of a {partitions}-partition topic"
        );
    }
    for (partition, mut list) in offsets {
        list.sort_unstable();
        let expected: Vec<i64> = (0..list.len() as i64).collect();
        assert_eq!(
            list, expected,
            "partition {partition}: offsets are not contiguous from 0"
        );
    }
}

#[test]
fn thousand_keyed_records_with_headers_read_back_exactly() {
    const COUNT: usize = 1_000;
    const PARTITIONS: i32 = 3;

    let env = KafkaTestEnv::new();
    println!("broker: {}", env.kind());
    let topic = env.unique_topic("test-env-smoke");
    env.create_topic(&topic, PARTITIONS)
        .expect("topic is created");

    let records: Vec<TestRecord> = (0..COUNT).map(smoke_record).collect();
    let produced = env
        .produce(&topic, records.clone())
        .expect("every record is delivered");
    assert_eq!(produced.len(), COUNT);
    for (i, record) in produced.iter().enumerate() {
        assert_eq!(record.index, i);
        assert_eq!(record.key, records[i].key, "key of record {i}");
    }
    assert_contiguous_offsets(&produced, PARTITIONS);
    let used: std::collections::BTreeSet<i32> = produced.iter().map(|p| p.partition).collect();
    assert_eq!(
        used.len(),
        PARTITIONS as usize,
        "the key hash spreads 1000 keys over every partition"
    );

    let seen = read_back(&env, &topic, COUNT);
    assert_eq!(seen.len(), COUNT);
    let mut checked = 0;
    for record in &produced {
        let actual = seen
            .get(&(record.partition, record.offset))
            .unwrap_or_else(|| {
                panic!(
                    "record {} (partition {}, offset {}) was not read back",
                    record.index, record.partition, record.offset
                )
            });
        assert_eq!(
            actual,
            &expected_seen(&records[record.index]),
            "record {} at partition {} offset {}",
            record.index,
            record.partition,
            record.offset
        );
        checked += 1;
    }
    println!(
        "checked {checked} records (key, value, headers, partition, offset) on {}",
        env.kind()
    );
}

#[test]
fn explicit_partitions_timestamps_and_test_messages() {
    let env = KafkaTestEnv::new();
    let topic = env.unique_topic("test-env-explicit");
    env.create_topic(&topic, 2).expect("topic is created");

    let produced = env
        .produce(
            &topic,
            [
                TestRecord::new("a", "x")
                    .partition(1)
                    .timestamp_ms(1_600_000_000_000),
                TestRecord::keyless("no key").partition(1),
                TestRecord::tombstone("a").partition(0),
            ],
        )
        .expect("records are delivered");
    let placed: Vec<(i32, i64)> = produced.iter().map(|p| (p.partition, p.offset)).collect();
    assert_eq!(placed, [(1, 0), (1, 1), (0, 0)]);

    let more = env
        .produce_test_messages(&topic, 20)
        .expect("test messages are delivered");
    assert_eq!(more.len(), 20);
    assert_eq!(more[7].key.as_deref(), Some(&b"key-7"[..]));

    let seen = read_back(&env, &topic, 23);
    assert_eq!(
        seen[&(1, 0)],
        Seen {
            key: Some(b"a".to_vec()),
            value: Some(b"x".to_vec()),
            headers: Vec::new(),
        }
    );
    assert_eq!(seen[&(1, 1)].key, None);
    assert_eq!(seen[&(0, 0)].value, None);
    for record in &more {
        let actual = &seen[&(record.partition, record.offset)];
        assert_eq!(
            actual.value,
            Some(format!("message-{}", record.index).into_bytes())
        );
    }
}

#[test]
fn one_env_serves_producers_on_several_threads() {
    let env = Arc::new(KafkaTestEnv::new());
    let topic = env.unique_topic("test-env-threads");
    env.create_topic(&topic, 3).expect("topic is created");

    let workers: Vec<_> = (0..2)
        .map(|worker| {
            let env = Arc::clone(&env);
            let topic = topic.clone();
            thread::spawn(move || {
                let records =
                    (0..200).map(|i| TestRecord::new(format!("w{worker}-{i}"), "v".to_owned()));
                env.produce(&topic, records)
                    .expect("worker's records are delivered")
            })
        })
        .collect();
    let mut all = Vec::new();
    for (worker, handle) in workers.into_iter().enumerate() {
        let produced = handle.join().expect("worker thread finishes");
        assert_eq!(produced.len(), 200);
        for (i, record) in produced.iter().enumerate() {
            assert_eq!(record.key, Some(format!("w{worker}-{i}").into_bytes()));
        }
        all.extend(produced);
    }
    assert_contiguous_offsets(&all, 3);
    assert_eq!(read_back(&env, &topic, 400).len(), 400);
}

#[tokio::test]
async fn env_works_inside_a_tokio_runtime() {
    let env = KafkaTestEnv::new();
    let topic = env.unique_topic("test-env-tokio");
    env.create_topic(&topic, 1).expect("topic is created");
    let produced = env
        .produce_test_messages(&topic, 10)
        .expect("records are delivered");
    let offsets: Vec<i64> = produced.iter().map(|p| p.offset).collect();
    assert_eq!(offsets, (0..10).collect::<Vec<i64>>());
}

#[test]
fn delete_topic_works_on_real_brokers_and_is_refused_by_the_mock() {
    let env = KafkaTestEnv::new();
    let topic = env.unique_topic("test-env-delete");
    env.create_topic(&topic, 1).expect("topic is created");
    if env.kind().is_mock() {
        let error = env
            .delete_topic(&topic)
            .expect_err("the mock has no DeleteTopics");
        assert!(error.to_string().contains("not supported"), "{error}");
    } else {
        env.delete_topic(&topic).expect("topic is deleted");
        env.delete_topic(&topic)
            .expect("deleting a missing topic is fine");
        env.create_topic(&topic, 2)
            .expect("the name can be reused after deletion");
    }
}
