//! The migration plan's calls, as the plan writes them, keep compiling and
//! working: "existing code works unchanged". Each test holds one of the
//! plan's snippets (Phases 3, 4 and 6 and "Migration Path for Existing
//! Code"), with only the plan's placeholders filled in (`brokers`,
//! `group_id`, the serdes, a `base_consumer`), and reads through it.
//!
//! When the API grows simpler forms, these stay: they are the promise.
#![allow(deprecated)] // `commit()`, the plan's name, is deprecated in favour of `commit_async`.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{consumer_config, env};
use consumer_fast::{Consumer, FastContext};
use consumer_legacy::{KafkaConsumer, LegacyContext};
use futures_util::{Stream, StreamExt};
use rdkafka::consumer::BaseConsumer;
use tiered_kafka::api::{
    ConsumerConfig, ConsumerError, ConsumerTier, JsonSerde, KafkaStreamConsumer, Message,
    StringSerde,
};
use tiered_kafka::factory::ConsumerFactory;

const PATIENCE: Duration = Duration::from_secs(60);

/// Reads exactly `count` messages from any of the plan's streams.
async fn take<K, V, S>(stream: &mut S, count: usize, within: Duration) -> Vec<Message<K, V>>
where
    S: Stream<Item = Result<Message<K, V>, ConsumerError>> + Unpin,
{
    let mut messages = Vec::with_capacity(count);
    while messages.len() < count {
        match tokio::time::timeout(within, stream.next()).await {
            Ok(Some(Ok(message))) => messages.push(message),
            other => panic!(
                "after {} messages: {:?}",
                messages.len(),
                other.map(|item| item.map(|r| r.map(|_| ())))
            ),
        }
    }
    messages
}

/// A topic with `count` test messages, and a configuration of a fresh group.
fn topic_and_config(
    prefix: &str,
    count: usize,
) -> (kafka_test_env::KafkaTestEnv, String, ConsumerConfig) {
    let env = env();
    let topic = env.unique_topic(prefix);
    env.create_topic(&topic, 1).expect("topic");
    env.produce_test_messages(&topic, count).expect("produce");
    let config = consumer_config(&env, &env.unique_group(prefix));
    (env, topic, config)
}

/// The plan's "Step 1: No Changes": the legacy consumer, its five type
/// parameters, `with_config(config, key_serde, value_serde)`, `stream()`,
/// `subscribe`, `commit()` and `current_offsets()`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_legacy_consumer_as_the_plan_writes_it() {
    let (_env, topic, config) = topic_and_config("plan-legacy", 10);
    let key_serializer = StringSerde;
    let value_serializer = StringSerde;
    let consumer: KafkaConsumer<String, String, StringSerde, StringSerde, LegacyContext> =
        KafkaConsumer::with_config(config, key_serializer, value_serializer).expect("with_config");
    consumer.subscribe(&[&topic]).unwrap();
    let mut stream = consumer.stream();
    let read = take(&mut stream, 10, PATIENCE).await;
    drop(stream);
    consumer.commit().expect("commit");
    let offsets = consumer.current_offsets().expect("current_offsets");
    assert_eq!(read.len(), 10);
    assert_eq!(offsets.count(), 1);
}

/// Phase 3: `Consumer::with_config(config, Box::new(..), Box::new(..))`,
/// then the three streams of "Step 3: Direct Usage".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fast_consumer_with_config_and_its_three_streams() {
    let (_env, topic, config) = topic_and_config("plan-fast", 30);
    let key_serializer = StringSerde;
    let value_serializer = StringSerde;
    let consumer: Consumer<String, String> =
        Consumer::with_config(config, Box::new(key_serializer), Box::new(value_serializer))
            .expect("with_config");
    consumer.subscribe(&[&topic]).unwrap();
    take(&mut consumer.stream(), 10, PATIENCE).await;
    take(&mut consumer.buffered_stream(32), 10, PATIENCE).await;
    consumer.commit().expect("commit");
    let consumer = Arc::new(consumer);
    let mut dedicated = consumer.dedicated_stream().expect("dedicated_stream");
    let next = tokio::time::timeout(PATIENCE, dedicated.next())
        .await
        .expect("in time")
        .expect("a message")
        .expect("not an error");
    assert_eq!(next.offset, 20);
}

/// "Step 3: Direct Usage": `Consumer::new(base_consumer, Box::new(..),
/// Box::new(..))` and `Arc::new(consumer).dedicated_stream()`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fast_consumer_new_from_a_base_consumer() {
    let (env, topic, config) = topic_and_config("plan-new", 5);
    let base_consumer: BaseConsumer<FastContext> = env
        .consumer_config(&config.group_id)
        .set("enable.auto.offset.store", "false")
        .create_with_context(FastContext::new())
        .expect("base consumer");
    let value_serializer = JsonSerde;
    let key_serializer = StringSerde;
    let consumer: Consumer<serde_json::Value, String> = Consumer::new(
        base_consumer,
        Box::new(value_serializer),
        Box::new(key_serializer),
    )
    .expect("new");
    consumer.subscribe(&[&topic]).unwrap();
    let mut stream = Arc::new(consumer)
        .dedicated_stream()
        .expect("dedicated_stream");
    let first = tokio::time::timeout(PATIENCE, stream.next())
        .await
        .expect("in time")
        .expect("an item");
    // The plan passes the value's serde first: the key is read as JSON, and
    // the test messages' keys (`key-0`) are not JSON, so the first item is
    // that record's error, and the stream goes on.
    assert!(first.is_err(), "{first:?}");
}

/// Phase 4 and "Step 2: Opt-In via Config": `ConsumerConfig::new(brokers,
/// group_id)`, `performance_tier = Some(ConsumerTier::Standard)`, and
/// `ConsumerFactory::create(config, key_serializer, value_serializer)`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_factory_as_the_plan_writes_it() {
    let (env, topic, test_config) = topic_and_config("plan-factory", 10);
    let brokers = env.bootstrap_servers();
    let group_id = test_config.group_id.clone();
    let mut config = ConsumerConfig::new(brokers, group_id);
    config.performance_tier = Some(ConsumerTier::Standard);
    config.auto_offset_reset = test_config.auto_offset_reset;
    config.extra = test_config.extra;
    let key_serializer = StringSerde;
    let value_serializer = StringSerde;
    let consumer: Box<dyn KafkaStreamConsumer<String, String>> =
        ConsumerFactory::create(config, key_serializer, value_serializer).expect("create");
    consumer.subscribe(&[&topic]).unwrap();
    take(&mut consumer.stream(), 10, PATIENCE).await;
    consumer.commit().expect("commit");
}

/// Phase 6: `into_fast_consumer()` on the legacy consumer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn into_fast_consumer_as_the_plan_writes_it() {
    let (_env, topic, config) = topic_and_config("plan-into", 10);
    let consumer: KafkaConsumer<String, String, StringSerde, StringSerde> =
        KafkaConsumer::with_config(config, StringSerde, StringSerde).expect("with_config");
    consumer.subscribe(&[&topic]).unwrap();
    take(&mut consumer.stream(), 4, PATIENCE).await;
    let fast: Consumer<String, String> = consumer.into_fast_consumer().expect("into_fast_consumer");
    let rest = take(&mut fast.stream(), 6, PATIENCE).await;
    assert_eq!(rest.first().map(|m| m.offset), Some(4));
}
