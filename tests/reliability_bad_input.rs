//! Reliability, bad input (issue 7, scenario 5): each kind of bad input gives
//! one clear error naming what was wrong, and loses nothing else. The same
//! bodies run against every implementation (`contract_tests!`) and every
//! broker; where the mock cluster cannot play the part (deleting a topic),
//! the body asserts what the mock does instead. `docs/reliability.md` lists
//! these tests in its "Bad input" table.

mod common;

use std::io::Write as _;
use std::time::{Duration, Instant};

use common::{Implementation, build, consumer_config, env, next_within, subscribed, take};
use kafka_test_env::{TestEnvError, TestRecord};
use rdkafka::error::RDKafkaErrorCode;
use tiered_kafka::api::{
    BytesSerde, ConfigError, ConsumerConfig, ConsumerError, ConsumerTier, JsonSerde, Message,
    MessageStream, PayloadPart, Serde, StringSerde,
};
use tiered_kafka::factory::ConsumerFactory;

contract_tests!(
    malformed_json_is_one_error_naming_its_record,
    wrong_json_type_is_one_error_naming_the_field,
    empty_payload_is_an_error_for_json,
    empty_string_is_a_message_and_null_is_a_tombstone,
    invalid_utf8_key_and_value_are_errors_for_strings,
    record_larger_than_the_fetch_limits_is_delivered_whole,
    unknown_topic_is_reported_naming_it,
    deleted_topic_is_reported_and_other_topics_go_on,
    unreachable_broker_is_reported_naming_it,
    header_key_that_is_not_utf8_is_one_error,
    panicking_serde_is_one_error_and_skips_nothing,
);

const PATIENCE: Duration = Duration::from_secs(60);

/// Drops a stream and its consumer, failing if that takes more than a
/// generous bound (a hang, not a slow close).
macro_rules! assert_drops_promptly {
    ($implementation:expr, $consumer:ident, $stream:ident) => {{
        let started = Instant::now();
        drop($stream);
        drop($consumer);
        let took = started.elapsed();
        println!("{:?}: dropped in {took:?}", $implementation);
        assert!(took < Duration::from_secs(30), "drop took {took:?}");
    }};
}

#[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
struct Order {
    id: u32,
}

/// A record's key and value bytes.
type KeyAndValue = (Option<Vec<u8>>, Option<Vec<u8>>);

/// Builds a consumer from a configuration, and drops it.
type Builder = fn(ConsumerConfig) -> Result<(), ConsumerError>;

/// What a record of [`read_sequence`] should come out as.
enum Expect {
    /// A message.
    Good,
    /// A `Deserialize` error about this part, whose text mentions each needle.
    Bad(PayloadPart, &'static [&'static str]),
}

/// Produces `records` to a new 1-partition topic and reads them in order
/// through `implementation`: each good one is a message at its offset; each
/// bad one is exactly one `ConsumerError::Deserialize` naming the topic,
/// partition, offset and part, carrying the raw bytes, and saying what the
/// codec found. After each error `commit()` covers the bad record (the
/// group's committed offset becomes its offset + 1): it was handed out, as
/// an error. At the end the group has committed past every record and
/// nothing more arrives.
async fn read_sequence<K: Send + 'static, V: Send + 'static>(
    implementation: Implementation,
    prefix: &str,
    key_serde: impl Serde<K> + 'static,
    value_serde: impl Serde<V> + 'static,
    records: Vec<(TestRecord, Expect)>,
) -> Vec<Message<K, V>> {
    let env = env();
    let topic = env.unique_topic(prefix);
    env.create_topic(&topic, 1).expect("topic");
    let (records, expectations): (Vec<_>, Vec<_>) = records.into_iter().unzip();
    let raw: Vec<KeyAndValue> = records
        .iter()
        .map(|r| (r.key.clone(), r.value.clone()))
        .collect();
    let produced = env.produce(&topic, records).expect("produce");
    let group = env.unique_group(prefix);
    let consumer = subscribed(implementation, &env, &group, &topic, key_serde, value_serde);
    let mut stream = consumer.stream();
    let mut messages = Vec::new();
    for (index, expect) in expectations.iter().enumerate() {
        let offset = produced[index].offset;
        assert_eq!(produced[index].partition, 0);
        let item = next_within(&mut stream, PATIENCE)
            .await
            .unwrap_or_else(|| panic!("{implementation:?}: nothing for offset {offset}"));
        match (expect, item) {
            (Expect::Good, Ok(message)) => {
                assert_eq!((message.partition, message.offset), (0, offset));
                messages.push(message);
            }
            (Expect::Bad(part, needles), Err(error)) => {
                let bytes = match part {
                    PayloadPart::Key => raw[index].0.clone(),
                    PayloadPart::Value => raw[index].1.clone(),
                    other => panic!("read_sequence has no bytes for the {other}"),
                }
                .expect("a bad part has bytes");
                assert_deserialize_error(&error, &topic, offset, *part, &bytes, needles);
                println!("{implementation:?}: offset {offset}: {error}");
                consumer.commit_blocking().expect("commit after the error");
                assert_eq!(
                    common::group_committed(&env, &group, &topic).await,
                    Some(offset + 1),
                    "{implementation:?}: commit() after the error at offset {offset} covers it"
                );
            }
            (Expect::Good, Err(error)) => {
                panic!("{implementation:?}: offset {offset}: unexpected error {error}")
            }
            (Expect::Bad(..), Ok(message)) => {
                panic!("{implementation:?}: offset {offset}: expected an error, got {message}")
            }
        }
    }
    consumer.commit_blocking().expect("commit");
    let end = produced.last().expect("records").offset + 1;
    assert_eq!(
        common::group_committed(&env, &group, &topic).await,
        Some(end)
    );
    assert!(
        next_within(&mut stream, Duration::from_millis(500))
            .await
            .is_none(),
        "{implementation:?}: an extra item"
    );
    messages
}

fn assert_deserialize_error(
    error: &ConsumerError,
    topic: &str,
    offset: i64,
    part: PayloadPart,
    bytes: &[u8],
    needles: &[&str],
) {
    match error {
        ConsumerError::Deserialize {
            topic: t,
            partition,
            offset: o,
            part: p,
            raw,
            ..
        } => assert_eq!(
            (t.as_str(), *partition, *o, *p, raw.as_slice()),
            (topic, 0, offset, part, bytes),
            "{error}"
        ),
        other => panic!("expected a Deserialize error at offset {offset}, got {other:?}"),
    }
    // The stream goes on after it, and reading the record again fails again.
    assert!(!error.is_fatal() && !error.is_retriable(), "{error:?}");
    let text = error.to_string();
    let place = format!("the {part} of the record at {topic}/0@{offset}");
    assert!(text.contains(&place), "{text:?} does not name {place:?}");
    for needle in needles {
        assert!(
            text.contains(needle),
            "{text:?} does not mention {needle:?}"
        );
    }
}

/// Case 1: a value that is not JSON.
async fn malformed_json_is_one_error_naming_its_record(implementation: Implementation) {
    let messages = read_sequence::<String, Order>(
        implementation,
        "malformed",
        StringSerde,
        JsonSerde,
        vec![
            (TestRecord::new("k0", r#"{"id":0}"#), Expect::Good),
            (
                TestRecord::new("k1", r#"{"id": 1,"#),
                Expect::Bad(
                    PayloadPart::Value,
                    &["(9 bytes): EOF while parsing a value at line 1 column 9"],
                ),
            ),
            (TestRecord::new("k2", r#"{"id":2}"#), Expect::Good),
        ],
    )
    .await;
    let ids: Vec<_> = messages
        .iter()
        .map(|m| m.value.as_ref().map(|o| o.id))
        .collect();
    assert_eq!(ids, [Some(0), Some(2)]);
}

/// Case 2: valid JSON of the wrong shape: the error names the field and what
/// it held.
async fn wrong_json_type_is_one_error_naming_the_field(implementation: Implementation) {
    read_sequence::<String, Order>(
        implementation,
        "wrongtype",
        StringSerde,
        JsonSerde,
        vec![
            (TestRecord::new("k0", r#"{"id":0}"#), Expect::Good),
            (
                TestRecord::new("k1", r#"{"id":"two"}"#),
                Expect::Bad(
                    PayloadPart::Value,
                    &["field `id`", "invalid type: string \"two\", expected u32"],
                ),
            ),
            (
                TestRecord::new("k2", r#""2""#),
                Expect::Bad(
                    PayloadPart::Value,
                    &["invalid type: string \"2\", expected struct Order"],
                ),
            ),
            (
                TestRecord::new("k3", r#"{"number":3}"#),
                Expect::Bad(PayloadPart::Value, &["missing field `id`"]),
            ),
            (TestRecord::new("k4", r#"{"id":4}"#), Expect::Good),
        ],
    )
    .await;
}

/// Case 3a: an empty (zero-length, not null) value is not JSON.
async fn empty_payload_is_an_error_for_json(implementation: Implementation) {
    read_sequence::<String, Order>(
        implementation,
        "emptyjson",
        StringSerde,
        JsonSerde,
        vec![
            (TestRecord::new("k0", r#"{"id":0}"#), Expect::Good),
            (
                TestRecord::new("k1", ""),
                Expect::Bad(PayloadPart::Value, &["(0 bytes)", "EOF while parsing"]),
            ),
            // A null value is a tombstone, never an error, whatever the codec.
            (TestRecord::tombstone("k2"), Expect::Good),
            (TestRecord::new("k3", r#"{"id":3}"#), Expect::Good),
        ],
    )
    .await;
}

/// Case 3b: for `StringSerde` an empty value is the empty string, and a null
/// value (a tombstone) is `value: None`; an empty key is `Some("")`, a null
/// key `None`.
async fn empty_string_is_a_message_and_null_is_a_tombstone(implementation: Implementation) {
    let messages = read_sequence::<String, String>(
        implementation,
        "emptystring",
        StringSerde,
        StringSerde,
        vec![
            (TestRecord::new("k0", ""), Expect::Good),
            (TestRecord::tombstone("k1"), Expect::Good),
            (TestRecord::new("", "v2"), Expect::Good),
            (TestRecord::keyless("v3"), Expect::Good),
        ],
    )
    .await;
    let seen: Vec<_> = messages
        .iter()
        .map(|m| (m.key.as_deref(), m.value.as_deref(), m.is_tombstone()))
        .collect();
    assert_eq!(
        seen,
        [
            (Some("k0"), Some(""), false),
            (Some("k1"), None, true),
            (Some(""), Some("v2"), false),
            (None, Some("v3"), false),
        ]
    );
}

/// Case 4: invalid UTF-8 in a key and in a value for `StringSerde`.
async fn invalid_utf8_key_and_value_are_errors_for_strings(implementation: Implementation) {
    read_sequence::<String, String>(
        implementation,
        "utf8",
        StringSerde,
        StringSerde,
        vec![
            (TestRecord::new("k0", "v0"), Expect::Good),
            (
                TestRecord::new(vec![0xff, 0xfe], "v1"),
                Expect::Bad(PayloadPart::Key, &["invalid utf-8", "index 0"]),
            ),
            (TestRecord::new("k2", "v2"), Expect::Good),
            (
                TestRecord::new("k3", vec![b'o', 0xc3, 0x28]),
                Expect::Bad(PayloadPart::Value, &["invalid utf-8", "index 1"]),
            ),
            (TestRecord::new("k4", "v4"), Expect::Good),
        ],
    )
    .await;
}

/// Case 5: a record far larger than `max.partition.fetch.bytes` and
/// `fetch.max.bytes` (and the consumer's `message.max.bytes`, which would
/// otherwise raise `fetch.max.bytes`) is still delivered, whole, and so are
/// the records after it: librdkafka 2.x and the broker (KIP-74) always return
/// the first record batch of a fetch even when it exceeds the limits, which
/// bound how much is fetched, not which records may be read.
async fn record_larger_than_the_fetch_limits_is_delivered_whole(implementation: Implementation) {
    const LIMIT: u64 = 1_000;
    const BIG: usize = 200_000;
    let env = env();
    let topic = env.unique_topic("oversized");
    env.create_topic(&topic, 1).expect("topic");
    let sizes = [10, BIG, 10, BIG, 10];
    let records = sizes
        .iter()
        .enumerate()
        .map(|(i, &size)| TestRecord::new(format!("k{i}"), vec![b'a' + i as u8; size]));
    env.produce(&topic, records).expect("produce");

    let mut config = consumer_config(&env, &env.unique_group("oversized"));
    config.max_partition_fetch_bytes = Some(LIMIT);
    config.fetch_max_bytes = Some(LIMIT);
    config
        .extra
        .insert("message.max.bytes".into(), LIMIT.to_string());
    let consumer = build(implementation, config, StringSerde, BytesSerde);
    consumer.subscribe(&[&topic]).expect("subscribe");
    let mut stream = consumer.stream();
    let messages = take(&mut stream, sizes.len(), PATIENCE).await;
    for (i, message) in messages.iter().enumerate() {
        assert_eq!(message.offset, i as i64);
        assert_eq!(
            message.value.as_deref(),
            Some(vec![b'a' + i as u8; sizes[i]].as_slice()),
            "{implementation:?}: record {i} of {} bytes",
            sizes[i]
        );
    }
    println!(
        "{implementation:?}: records of {sizes:?} bytes all delivered whole with fetch limits of {LIMIT} bytes"
    );
}

/// Reads items until one satisfies `found`, printing the others; `None`
/// after `within`.
async fn first_error_where<K, V>(
    stream: &mut MessageStream<'_, K, V>,
    within: Duration,
    found: impl Fn(&ConsumerError) -> bool,
) -> Option<ConsumerError> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, futures_util::StreamExt::next(stream)).await {
            Ok(Some(Err(error))) if found(&error) => return Some(error),
            Ok(Some(Err(error))) => println!("other error: {error}"),
            Ok(Some(Ok(_))) => panic!("a message where none was expected"),
            Ok(None) => panic!("the stream ended"),
            Err(_) => return None,
        }
    }
}

/// Case 6: subscribing to a topic that does not exist is not an error (the
/// topic may be created later), but the stream reports it once, as a
/// `Kafka` `UnknownTopicOrPartition` error, with a reason whose text names the topic;
/// then it waits, without errors or busy work, and once the topic exists its
/// messages arrive.
async fn unknown_topic_is_reported_naming_it(implementation: Implementation) {
    let env = env();
    let topic = env.unique_topic("unknown");
    let mut config = consumer_config(&env, &env.unique_group("unknown"));
    // librdkafka's default refresh (5 minutes) bounds how soon a topic
    // created later is noticed; shortened so the test sees it.
    config
        .extra
        .insert("topic.metadata.refresh.interval.ms".into(), "1000".into());
    let consumer = build(implementation, config, StringSerde, StringSerde);
    consumer
        .subscribe(&[&topic])
        .expect("subscribing to a missing topic is not refused");
    let mut stream = consumer.stream();
    let started = Instant::now();
    let error = first_error_where(&mut stream, PATIENCE, |error| {
        error.code() == Some(RDKafkaErrorCode::UnknownTopicOrPartition)
    })
    .await
    .unwrap_or_else(|| panic!("{implementation:?}: no unknown-topic error within {PATIENCE:?}"));
    // The topic may yet be created: retriable, not fatal.
    assert!(error.is_retriable() && !error.is_fatal(), "{error:?}");
    let text = error.to_string();
    assert!(
        matches!(&error, ConsumerError::Kafka { reason: Some(reason), .. } if reason.contains(&topic)),
        "{implementation:?}: {error:?} does not name {topic}"
    );
    assert!(text.contains(&topic), "{text}");
    println!("{implementation:?}: after {:?}: {text}", started.elapsed());
    // Reported once: no more items while the topic is missing.
    if let Some(item) = next_within(&mut stream, Duration::from_secs(3)).await {
        panic!("{implementation:?}: more after the unknown-topic error: {item:?}");
    }

    env.create_topic(&topic, 1).expect("topic");
    env.produce(&topic, [TestRecord::new("k", "arrived")])
        .expect("produce");
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        match tokio::time::timeout_at(deadline, futures_util::StreamExt::next(&mut stream)).await {
            Ok(Some(Ok(message))) => {
                assert_eq!(message.value.as_deref(), Some("arrived"));
                break;
            }
            // librdkafka may report the topic once more while it appears.
            Ok(Some(Err(error))) => {
                println!("{implementation:?}: while the topic appears: {error}")
            }
            Ok(None) => panic!("the stream ended"),
            Err(_) => panic!("{implementation:?}: the created topic's message never arrived"),
        }
    }
    println!(
        "{implementation:?}: the topic's first message arrived once it was created, after {:?}",
        started.elapsed()
    );
}

/// Case 7: a topic deleted while it is read. On Apache Kafka the stream
/// reports the topic, by name, as unavailable; the consumer goes on with its
/// other topic, and drops without hanging. The mock cluster cannot delete
/// topics (no DeleteTopics API): there the body asserts exactly that.
async fn deleted_topic_is_reported_and_other_topics_go_on(implementation: Implementation) {
    let env = env();
    let doomed = env.unique_topic("deleted");
    let other = env.unique_topic("survivor");
    env.create_topic(&doomed, 1).expect("topic");
    env.create_topic(&other, 1).expect("topic");
    env.produce_test_messages(&doomed, 3).expect("produce");
    env.produce_test_messages(&other, 3).expect("produce");

    let mut config = consumer_config(&env, &env.unique_group("deleted"));
    // Notice the deletion within about a second rather than 5 minutes.
    config
        .extra
        .insert("topic.metadata.refresh.interval.ms".into(), "1000".into());
    let consumer = build(implementation, config, StringSerde, StringSerde);
    consumer.subscribe(&[&doomed, &other]).expect("subscribe");
    let mut stream = consumer.stream();
    let before = take(&mut stream, 6, PATIENCE).await;
    consumer.commit_blocking().expect("commit");
    assert_eq!(before.iter().filter(|m| m.topic == doomed).count(), 3);

    if env.kind().is_mock() {
        match env.delete_topic(&doomed) {
            Err(TestEnvError::Unsupported { .. }) => println!(
                "{implementation:?}: the mock cluster cannot delete topics; this case is proven on Apache Kafka (KAFKA_TEST_BROKER=local)"
            ),
            other => panic!("the mock cluster deleted a topic? {other:?}"),
        }
        return;
    }

    env.delete_topic(&doomed).expect("delete");
    let started = Instant::now();
    let error = first_error_where(&mut stream, PATIENCE, |error| {
        error.to_string().contains(&doomed)
    })
    .await
    .unwrap_or_else(|| {
        panic!("{implementation:?}: no error naming the deleted topic within {PATIENCE:?}")
    });
    println!(
        "{implementation:?}: {:?} after the deletion: {error}",
        started.elapsed()
    );
    assert!(
        matches!(
            error.code(),
            Some(RDKafkaErrorCode::UnknownTopicOrPartition | RDKafkaErrorCode::UnknownTopic)
        ),
        "{error:?}"
    );

    // Nothing else is lost: the other topic's new messages arrive.
    env.produce(&other, [TestRecord::new("k", "after")])
        .expect("produce");
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        match tokio::time::timeout_at(deadline, futures_util::StreamExt::next(&mut stream)).await {
            Ok(Some(Ok(message))) => {
                assert_eq!(
                    (message.topic.as_str(), message.value.as_deref()),
                    (other.as_str(), Some("after")),
                    "{implementation:?}"
                );
                break;
            }
            Ok(Some(Err(error))) => println!("{implementation:?}: {error}"),
            Ok(None) => panic!("the stream ended"),
            Err(_) => panic!("{implementation:?}: the other topic's message never arrived"),
        }
    }
    assert_drops_promptly!(implementation, consumer, stream);
}

/// Case 9: a broker that is not there. Building and subscribing succeed
/// (nothing is contacted yet); the stream's first item is a `Reported`
/// error naming the address (`127.0.0.1:1/bootstrap: Connect to
/// ipv4#127.0.0.1:1 failed: Connection refused`), as soon as the first
/// connection fails; the consumer drops without hanging.
async fn unreachable_broker_is_reported_naming_it(implementation: Implementation) {
    let env = env();
    let mut config = consumer_config(&env, &env.unique_group("unreachable"));
    config.brokers = "127.0.0.1:1".to_owned();
    let started = Instant::now();
    let consumer = build(implementation, config, StringSerde, StringSerde);
    consumer.subscribe(&["nowhere"]).expect("subscribe");
    let mut stream = consumer.stream();
    let item = next_within(&mut stream, Duration::from_secs(30)).await;
    let error = match item {
        Some(Err(error)) => error,
        other => panic!("{implementation:?}: expected an error, got {other:?}"),
    };
    println!("{implementation:?}: after {:?}: {error}", started.elapsed());
    assert!(
        matches!(&error, ConsumerError::Kafka { reason: Some(reason), .. } if reason.contains("127.0.0.1:1")),
        "{implementation:?}: {error:?} does not name the broker"
    );
    assert!(
        matches!(
            error.code(),
            Some(RDKafkaErrorCode::BrokerTransportFailure | RDKafkaErrorCode::AllBrokersDown)
        ),
        "{error:?}"
    );
    // Not the end: the broker may come up; a reading loop logs and goes on.
    assert!(error.is_retriable() && !error.is_fatal(), "{error:?}");
    assert_drops_promptly!(implementation, consumer, stream);
}

/// Every way to build a consumer from a configuration, by name.
fn builders() -> Vec<(&'static str, Builder)> {
    fn fast(config: ConsumerConfig, tier: ConsumerTier) -> Result<(), ConsumerError> {
        tiered_kafka::fast::TieredConsumer::<String, String>::with_config(
            config,
            tier,
            Box::new(StringSerde),
            Box::new(StringSerde),
        )
        .map(drop)
    }
    vec![
        ("standard", |c| fast(c, ConsumerTier::Standard)),
        ("buffered", |c| {
            fast(c, ConsumerTier::Buffered { batch_size: 32 })
        }),
        ("dedicated", |c| fast(c, ConsumerTier::Dedicated)),
        ("legacy", |c| {
            consumer_legacy::KafkaConsumer::<String, String, _, _>::with_config(
                c,
                StringSerde,
                StringSerde,
            )
            .map(drop)
        }),
        ("factory", |c| {
            ConsumerFactory::create(c, StringSerde, StringSerde).map(drop)
        }),
    ]
}

/// Case 8: a property librdkafka does not know, or a value it refuses, in
/// `extra` or in a typed field: building the consumer fails at once with
/// `ConsumerError::Config(ConfigError::Invalid)` naming the librdkafka
/// property, the value, and librdkafka's reason. No client is left behind.
#[test]
fn invalid_librdkafka_properties_are_refused_naming_property_and_value() {
    let extra_cases = [
        ("fetch.tunrbo", "1", "No such configuration property"),
        ("session.timeout.ms", "soon", "Invalid value"),
        (
            "auto.offset.reset",
            "sometimes",
            "Invalid value \"sometimes\"",
        ),
        ("fetch.max.bytes", "-5", "outside allowed range"),
    ];
    let mut cases: Vec<(ConsumerConfig, &str, &str, &str)> = extra_cases
        .iter()
        .map(|&(property, value, reason)| {
            (
                ConsumerConfig::new("127.0.0.1:9092", "g").with_extra(property, value),
                property,
                value,
                reason,
            )
        })
        .collect();
    let mut typed = ConsumerConfig::new("127.0.0.1:9092", "g");
    typed.max_partition_fetch_bytes = Some(0);
    cases.push((
        typed,
        "max.partition.fetch.bytes",
        "0",
        "outside allowed range",
    ));

    for (name, build) in builders() {
        for (config, property, value, reason) in &cases {
            let error = build(config.clone())
                .err()
                .unwrap_or_else(|| panic!("{name}: {property}={value} was accepted"));
            match &error {
                ConsumerError::Config(ConfigError::Invalid {
                    field,
                    value: given,
                    reason: why,
                }) => {
                    assert_eq!((field.as_str(), given.as_str()), (*property, *value));
                    assert!(why.contains(reason), "{name}: {why}");
                }
                other => panic!("{name}: expected ConfigError::Invalid, got {other:?}"),
            }
            let text = error.to_string();
            assert!(
                text.contains(&format!("`{property}`")) && text.contains(&format!("{value:?}")),
                "{name}: {text}"
            );
            println!("{name}: {text}");
        }
    }
}

/// Writes `yaml` to a fresh `.yaml` file and loads it through the factory,
/// expecting a YAML error; returns the error text and line.
fn yaml_file_error(yaml: &str) -> (tempfile::NamedTempFile, String, Option<u64>) {
    let mut file = tempfile::Builder::new()
        .prefix("consumer-")
        .suffix(".yaml")
        .tempfile()
        .expect("temp file");
    file.write_all(yaml.as_bytes()).expect("write");
    let error = ConsumerFactory::from_yaml_file(file.path(), StringSerde, StringSerde)
        .err()
        .unwrap_or_else(|| panic!("{yaml:?} was accepted"));
    match error {
        ConsumerError::Config(
            ref config @ ConfigError::Yaml {
                ref origin, line, ..
            },
        ) => {
            assert_eq!(origin, &file.path().display().to_string());
            let text = config.to_string();
            assert!(text.contains(&file.path().display().to_string()), "{text}");
            println!("{text}");
            (file, text, line)
        }
        other => panic!("expected a YAML error for {yaml:?}, got {other:?}"),
    }
}

fn assert_mentions(text: &str, needles: &[&str]) {
    for needle in needles {
        assert!(
            text.contains(needle),
            "{text:?} does not mention {needle:?}"
        );
    }
}

/// Case 10: invalid YAML files, through `ConsumerFactory::from_yaml_file`:
/// each error is `ConfigError::Yaml` naming the file, the line and the
/// field or value at fault.
#[test]
fn yaml_syntax_error_names_file_and_line() {
    let (_file, text, line) = yaml_file_error("consumer:\n  brokers: [b:9092\n  group_id: g\n");
    let line = line.expect("a line");
    assert!((2..=4).contains(&line), "line {line}: {text}");
    assert_mentions(&text, &[&format!("line {line}")]);
}

#[test]
fn yaml_unknown_field_names_file_line_and_field() {
    let (_file, text, line) =
        yaml_file_error("consumer:\n  brokers: b:9092\n  group_id: g\n  fetch_turbo: true\n");
    assert_eq!(line, Some(4), "{text}");
    assert_mentions(&text, &["fetch_turbo", "line 4"]);
}

#[test]
fn yaml_wrong_type_names_file_line_field_and_value() {
    let (_file, text, line) = yaml_file_error(
        "consumer:\n  brokers: b:9092\n  group_id: g\n  max_poll_interval_ms: \"five minutes\"\n",
    );
    assert_eq!(line, Some(4), "{text}");
    assert_mentions(&text, &["max_poll_interval_ms", "five minutes", "line 4"]);
}

#[test]
fn yaml_invalid_tier_names_file_line_value_and_choices() {
    let (_file, text, line) = yaml_file_error(
        "consumer:\n  brokers: b:9092\n  group_id: g\n  performance_tier: \"turbo\"\n",
    );
    assert_eq!(line, Some(4), "{text}");
    assert_mentions(
        &text,
        &["turbo", "standard", "buffered", "dedicated", "line 4"],
    );
    let (_file, text, line) = yaml_file_error(
        "consumer:\n  brokers: b:9092\n  group_id: g\n  performance_tier:\n    buffered:\n      batch_size: 0\n",
    );
    assert_eq!(line, Some(6), "{text}");
    assert_mentions(&text, &["batch_size", "at least 1", "line 6"]);
}

#[test]
fn yaml_missing_file_names_the_path() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("absent.yaml");
    let error = ConsumerFactory::from_yaml_file(&path, StringSerde, StringSerde)
        .err()
        .expect("a missing file is refused");
    match &error {
        ConsumerError::Config(ConfigError::Io { path: named, .. }) => {
            assert_eq!(named, &path.display().to_string());
        }
        other => panic!("expected ConfigError::Io, got {other:?}"),
    }
    assert_mentions(&error.to_string(), &["absent.yaml"]);
}

/// Reads the three records of a 1-partition topic: `a`, then `bad`, then `c`.
/// `a` and `c` must come out as messages at offsets 0 and 2, and `bad` as
/// one `ConsumerError::Deserialize` at offset 1 whose text mentions
/// `needle`, with these raw bytes. Between `bad` and `c` the stream is
/// dropped and a new one opened: the error counted as handed out, so the
/// new stream starts at `c`, skipping nothing and repeating nothing.
async fn a_bad_record_between_two_good_ones<V: Send + std::fmt::Debug + 'static>(
    implementation: Implementation,
    prefix: &str,
    value_serde: impl Serde<V> + 'static,
    bad: TestRecord,
    needle: &str,
    raw: &[u8],
) {
    let env = env();
    let topic = env.unique_topic(prefix);
    env.create_topic(&topic, 1).expect("topic");
    env.produce(
        &topic,
        [TestRecord::new("a", "a"), bad, TestRecord::new("c", "c")],
    )
    .expect("produce");
    let consumer = subscribed(
        implementation,
        &env,
        &env.unique_group(prefix),
        &topic,
        StringSerde,
        value_serde,
    );
    let mut stream = consumer.stream();
    let a = take(&mut stream, 1, PATIENCE).await;
    assert_eq!(a[0].offset, 0);
    match next_within(&mut stream, PATIENCE).await {
        Some(Err(error @ ConsumerError::Deserialize { .. })) => {
            let text = error.to_string();
            println!("{implementation:?}: {text}");
            assert!(text.contains(&format!("{topic}/0@1")), "{text}");
            assert!(text.contains(needle), "{text}");
            let ConsumerError::Deserialize { raw: got, .. } = error else {
                unreachable!()
            };
            assert_eq!(got, raw);
        }
        other => panic!("{implementation:?}: expected one error for offset 1, got {other:?}"),
    }
    drop(stream);
    let mut stream = consumer.stream();
    let c = take(&mut stream, 1, PATIENCE).await;
    assert_eq!(
        c[0].offset, 2,
        "{implementation:?}: the next stream starts at c"
    );
}

/// Header keys are bytes on the wire: a key that is not UTF-8 (which other
/// clients can write) is one error for its record, naming it and carrying
/// the key, and the stream goes on. rdkafka's header iterator would panic.
async fn header_key_that_is_not_utf8_is_one_error(implementation: Implementation) {
    a_bad_record_between_two_good_ones(
        implementation,
        "header-key",
        StringSerde,
        TestRecord::new("b", "b").header(b"\xff\xfe".to_vec(), "x"),
        "header key",
        b"\xff\xfe",
    )
    .await;
}

/// A string serde that panics the first time it sees `boom`.
#[derive(Default)]
struct PanicsOnce {
    panicked: std::sync::atomic::AtomicBool,
}

impl Serde<String> for PanicsOnce {
    fn serialize(&self, value: &String) -> Result<Vec<u8>, tiered_kafka::api::SerdeError> {
        StringSerde.serialize(value)
    }

    fn deserialize(&self, bytes: &[u8]) -> Result<String, tiered_kafka::api::SerdeError> {
        if bytes == b"boom"
            && !self
                .panicked
                .swap(true, std::sync::atomic::Ordering::SeqCst)
        {
            panic!("a bug in the application's serde");
        }
        StringSerde.deserialize(bytes)
    }
}

/// A serde that panics is contained to its record: one error, and nothing
/// else lost or skipped.
async fn panicking_serde_is_one_error_and_skips_nothing(implementation: Implementation) {
    a_bad_record_between_two_good_ones(
        implementation,
        "panic-serde",
        PanicsOnce::default(),
        TestRecord::new("b", "boom"),
        "the serde panicked: a bug in the application's serde",
        b"boom",
    )
    .await;
}
