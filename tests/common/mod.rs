//! Shared by the facade's integration tests: the broker, the consumer
//! implementations under test, and helpers to read from them with a deadline.
#![allow(dead_code, unreachable_pub)]

pub mod process;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use consumer_legacy::KafkaConsumer;
use futures_util::StreamExt;
use kafka_test_env::{BrokerKind, KafkaTestEnv, ProducedRecord};
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};
use tiered_kafka::api::{
    AutoOffsetReset, ConsumerConfig, ConsumerError, ConsumerTier, Decode, KafkaStreamConsumer,
    Message, MessageStream,
};
use tiered_kafka::fast::TieredConsumer;

/// A JSON value the tests decode with `JsonSerde`: `{"id": 7}`.
#[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Order {
    /// The order's number.
    pub id: u32,
}

/// The broker `KAFKA_TEST_BROKER` names (the embedded mock by default).
pub fn env() -> KafkaTestEnv {
    init_logging();
    let env = KafkaTestEnv::from_env().unwrap_or_else(|error| panic!("no test broker: {error}"));
    println!("broker: {}", env.kind());
    env
}

/// Logs (ours and librdkafka's) go to the test output when RUST_LOG asks.
pub fn init_logging() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// Every consumer implementation the contract applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Implementation {
    /// `consumer-fast` in a tier.
    Fast(ConsumerTier),
    /// `consumer-legacy`: the `StreamConsumer`-based `KafkaConsumer`.
    Legacy,
}

impl Implementation {
    /// Every implementation, for tests that run them one after another.
    pub const ALL: [Implementation; 4] = [
        Implementation::Fast(ConsumerTier::Standard),
        Implementation::Fast(ConsumerTier::Buffered { batch_size: 32 }),
        Implementation::Fast(ConsumerTier::Dedicated),
        Implementation::Legacy,
    ];
}

/// A multi-threaded runtime with two workers, for a plain `#[test]` that
/// drives consumers itself (one implementation after another, or a child
/// process).
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// A consumer configuration for the test broker: earliest, no auto-commit,
/// quick group changes.
pub fn consumer_config(env: &KafkaTestEnv, group: &str) -> ConsumerConfig {
    let mut config = ConsumerConfig::new(env.bootstrap_servers(), group);
    config.auto_offset_reset = Some(AutoOffsetReset::Earliest);
    config.enable_auto_commit = Some(false);
    config.session_timeout_ms = Some(10_000);
    config.heartbeat_interval_ms = Some(500);
    if !matches!(env.kind(), BrokerKind::External { .. }) {
        config
            .extra
            .insert("broker.address.family".into(), "v4".into());
    }
    config
}

/// `config` connecting with librdkafka `properties` applied in order, as
/// `kafka_test_env::SecuredBroker` gives them: `bootstrap.servers` becomes
/// `brokers`, the others go to `extra`.
pub fn with_client_properties(
    mut config: ConsumerConfig,
    properties: &[(String, String)],
) -> ConsumerConfig {
    for (property, value) in properties {
        if property == "bootstrap.servers" {
            config.brokers = value.clone();
        } else {
            config.extra.insert(property.clone(), value.clone());
        }
    }
    config
}

/// Builds `implementation` from `config`.
pub fn build<K: Send + 'static, V: Send + 'static>(
    implementation: Implementation,
    config: ConsumerConfig,
    key_serde: impl Decode<K> + 'static,
    value_serde: impl Decode<V> + 'static,
) -> Box<dyn KafkaStreamConsumer<K, V>> {
    match implementation {
        Implementation::Fast(tier) => Box::new(
            TieredConsumer::with_config(config, tier, key_serde, value_serde)
                .expect("fast consumer builds"),
        ),
        Implementation::Legacy => Box::new(
            KafkaConsumer::with_boxed_codecs(config, key_serde, value_serde)
                .expect("legacy consumer builds"),
        ),
    }
}

/// Builds `implementation` for the test broker in `group` and subscribes it
/// to `topic`.
pub fn subscribed<K: Send + 'static, V: Send + 'static>(
    implementation: Implementation,
    env: &KafkaTestEnv,
    group: &str,
    topic: &str,
    key_serde: impl Decode<K> + 'static,
    value_serde: impl Decode<V> + 'static,
) -> Box<dyn KafkaStreamConsumer<K, V>> {
    let consumer = build(
        implementation,
        consumer_config(env, group),
        key_serde,
        value_serde,
    );
    consumer.subscribe(&[topic]).expect("subscribe");
    consumer
}

/// [`subscribed`] with `String` keys and values, as most tests read.
pub fn subscribed_strings(
    implementation: Implementation,
    env: &KafkaTestEnv,
    group: &str,
    topic: &str,
) -> Box<dyn KafkaStreamConsumer<String, String>> {
    subscribed(
        implementation,
        env,
        group,
        topic,
        tiered_kafka::api::StringSerde,
        tiered_kafka::api::StringSerde,
    )
}

/// Waits up to `within` for the next item.
pub async fn next_within<K, V>(
    stream: &mut MessageStream<'_, K, V>,
    within: Duration,
) -> Option<Result<Message<K, V>, ConsumerError>> {
    tokio::time::timeout(within, stream.next())
        .await
        .ok()
        .flatten()
}

/// Reads exactly `count` messages, failing on any error or after `within`.
pub async fn take<K, V>(
    stream: &mut MessageStream<'_, K, V>,
    count: usize,
    within: Duration,
) -> Vec<Message<K, V>> {
    let deadline = tokio::time::Instant::now() + within;
    let mut messages = Vec::with_capacity(count);
    while messages.len() < count {
        match tokio::time::timeout_at(deadline, stream.next()).await {
            Ok(Some(Ok(message))) => messages.push(message),
            Ok(Some(Err(error))) => panic!("error after {} messages: {error}", messages.len()),
            Ok(None) => panic!("stream ended after {} of {count} messages", messages.len()),
            Err(_) => panic!(
                "only {} of {count} messages within {within:?}",
                messages.len()
            ),
        }
    }
    messages
}

/// `(partition, offset)` of each message.
pub fn coordinates<K, V>(messages: &[Message<K, V>]) -> Vec<(i32, i64)> {
    messages.iter().map(|m| (m.partition, m.offset)).collect()
}

/// `(partition, offset)` of each produced record.
pub fn produced_coordinates(produced: &[ProducedRecord]) -> BTreeSet<(i32, i64)> {
    produced.iter().map(|r| (r.partition, r.offset)).collect()
}

/// How many of `coordinates` fall in each partition.
pub fn per_partition(coordinates: &[(i32, i64)]) -> BTreeMap<i32, usize> {
    let mut counts = BTreeMap::new();
    for (partition, _) in coordinates {
        *counts.entry(*partition).or_default() += 1;
    }
    counts
}

/// Generates one `#[tokio::test]` per implementation for each listed body
/// (`async fn body(implementation: Implementation)`), in a module per
/// implementation so a failure names both.
#[macro_export]
macro_rules! contract_tests {
    ($($body:ident),* $(,)?) => {
        mod standard {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $body() {
                super::$body($crate::common::Implementation::Fast(
                    tiered_kafka::api::ConsumerTier::Standard,
                ))
                .await
            })*
        }
        mod buffered {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $body() {
                super::$body($crate::common::Implementation::Fast(
                    tiered_kafka::api::ConsumerTier::Buffered { batch_size: 32 },
                ))
                .await
            })*
        }
        mod dedicated {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $body() {
                super::$body($crate::common::Implementation::Fast(
                    tiered_kafka::api::ConsumerTier::Dedicated,
                ))
                .await
            })*
        }
        mod legacy {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $body() {
                super::$body($crate::common::Implementation::Legacy).await
            })*
        }
    };
}

/// Drops `value` on a thread of its own and waits up to `bound` for the drop
/// to finish: how long it took, or `None` if it did not finish (the thread is
/// then left behind; the test is failing anyway).
pub fn drop_within<T: Send + 'static>(value: T, bound: Duration) -> Option<Duration> {
    let started = std::time::Instant::now();
    let (dropped, dropped_signal) = std::sync::mpsc::channel();
    let dropper = std::thread::spawn(move || {
        drop(value);
        let _ = dropped.send(());
    });
    match dropped_signal.recv_timeout(bound) {
        Ok(()) => Some(started.elapsed()),
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => None,
        // The drop panicked: the panic reaches the caller.
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => match dropper.join() {
            Err(panic) => std::panic::resume_unwind(panic),
            Ok(()) => Some(started.elapsed()),
        },
    }
}

/// The group's committed offset of `topic/0`, read by a client of its own.
pub async fn group_committed(env: &KafkaTestEnv, group: &str, topic: &str) -> Option<i64> {
    group_committed_partition(env, group, topic, 0).await
}

/// The group's committed offset of `topic/partition`, read by a client of
/// its own.
pub async fn group_committed_partition(
    env: &KafkaTestEnv,
    group: &str,
    topic: &str,
    partition: i32,
) -> Option<i64> {
    let config = env.consumer_config(group);
    let topic = topic.to_owned();
    tokio::task::spawn_blocking(move || {
        let reader: BaseConsumer = config.create().expect("offset reader");
        let mut partitions = TopicPartitionList::new();
        partitions.add_partition(&topic, partition);
        // A broker that has just started may still be electing the group's
        // coordinator (creating `__consumer_offsets`): ask again.
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        let offsets = loop {
            match reader.committed_offsets(partitions.clone(), Duration::from_secs(30)) {
                Ok(offsets) => break offsets,
                Err(error)
                    if std::time::Instant::now() < deadline
                        && matches!(
                            error.rdkafka_error_code(),
                            Some(
                                RDKafkaErrorCode::NotCoordinator
                                    | RDKafkaErrorCode::CoordinatorNotAvailable
                                    | RDKafkaErrorCode::CoordinatorLoadInProgress
                            )
                        ) =>
                {
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(error) => panic!("committed offsets: {error}"),
            }
        };
        offsets
            .find_partition(&topic, partition)
            .and_then(|element| match element.offset() {
                Offset::Offset(offset) => Some(offset),
                _ => None,
            })
    })
    .await
    .expect("offset reader")
}
