//! Configuration picks the consumer: the migration plan's four YAML documents
//! build the four implementations, which read and commit alike through the
//! trait object; bad configurations fail clearly.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{coordinates, env, next_within, take};
use futures_util::StreamExt;
use kafka_test_env::KafkaTestEnv;
use tiered_kafka::prelude::*;

/// The plan's "Configuration Examples", verbatim.
const PLAN_EXAMPLES: [(&str, Option<ConsumerTier>); 4] = [
    (
        r#"
# Uses StreamConsumer (existing behavior)
consumer:
  brokers: "localhost:9092"
  group_id: "my-group"
  # performance_tier: not specified = use StreamConsumer
"#,
        None,
    ),
    (
        r#"
consumer:
  brokers: "localhost:9092"
  group_id: "my-group"
  performance_tier: "standard"  # KafkaStream
"#,
        Some(ConsumerTier::Standard),
    ),
    (
        r#"
consumer:
  brokers: "localhost:9092"
  group_id: "my-group"
  performance_tier:
    buffered:
      batch_size: 32  # BufferedKafkaStream
"#,
        Some(ConsumerTier::Buffered { batch_size: 32 }),
    ),
    (
        r#"
consumer:
  brokers: "localhost:9092"
  group_id: "my-group"
  performance_tier: "dedicated"  # DedicatedKafkaStream
"#,
        Some(ConsumerTier::Dedicated),
    ),
];

const PATIENCE: Duration = Duration::from_secs(60);

/// A plan example pointed at the test broker and a group of its own, reading
/// from the beginning and committing only by hand.
fn plan_config(env: &KafkaTestEnv, yaml: &str, group: &str) -> ConsumerConfig {
    let yaml = yaml
        .replace("localhost:9092", &env.bootstrap_servers())
        .replace("my-group", group);
    let mut config = ConsumerConfig::from_yaml_str(&yaml).expect("plan example loads");
    let test_settings = common::consumer_config(env, group);
    config.auto_offset_reset = test_settings.auto_offset_reset;
    config.enable_auto_commit = test_settings.enable_auto_commit;
    config.session_timeout_ms = test_settings.session_timeout_ms;
    config.heartbeat_interval_ms = test_settings.heartbeat_interval_ms;
    config.extra = test_settings.extra;
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_examples_pick_their_consumer_and_read_alike() {
    const TOTAL: usize = 2000;
    const FIRST: usize = 800;
    let env = env();
    let topic = env.unique_topic("factory");
    env.create_topic(&topic, 4).expect("topic");
    let produced = env.produce_test_messages(&topic, TOTAL).expect("produce");
    let mut multisets = Vec::new();

    for (yaml, tier) in PLAN_EXAMPLES {
        let group = env.unique_group("factory");
        let mut read = Vec::new();
        {
            let consumer =
                ConsumerFactory::create(plan_config(&env, yaml, &group), StringSerde, StringSerde)
                    .expect("factory builds");
            assert_eq!(
                consumer.tier(),
                tier,
                "the factory picked the wrong implementation"
            );
            consumer.subscribe(&[&topic]).expect("subscribe");
            let mut stream = consumer.stream();
            read.extend(take(&mut stream, FIRST, PATIENCE).await);
            consumer
                .commit_blocking()
                .expect("commit through the trait object");
        }
        // A restarted consumer of the same configuration resumes after the commit.
        let consumer =
            ConsumerFactory::create(plan_config(&env, yaml, &group), StringSerde, StringSerde)
                .expect("factory builds");
        consumer.subscribe(&[&topic]).expect("subscribe");
        let mut stream = consumer.stream();
        read.extend(take(&mut stream, TOTAL - FIRST, PATIENCE).await);
        assert!(
            next_within(&mut stream, Duration::from_secs(1))
                .await
                .is_none(),
            "{tier:?}: a message came twice"
        );

        let mut multiset = BTreeMap::new();
        for message in &read {
            *multiset
                .entry((message.partition, message.offset, message.value.clone()))
                .or_insert(0usize) += 1;
        }
        assert_eq!(multiset.len(), produced.len(), "{tier:?}");
        assert!(
            multiset.values().all(|count| *count == 1),
            "{tier:?}: duplicates"
        );
        println!(
            "{}: read {} messages ({FIRST} before the restart), per partition {:?}",
            tiered_kafka::factory::describe(consumer.as_ref()),
            read.len(),
            common::per_partition(&coordinates(&read))
        );
        multisets.push(multiset);
    }
    assert!(
        multisets.windows(2).all(|pair| pair[0] == pair[1]),
        "the four read different messages"
    );
}

#[test]
fn unknown_extra_property_is_named() {
    let mut config = ConsumerConfig::new("127.0.0.1:9092", "g").with_tier(ConsumerTier::Standard);
    config.extra.insert("fetch.tunrbo".into(), "1".into());
    for tier in [None, Some(ConsumerTier::Standard)] {
        config.performance_tier = tier;
        let error = ConsumerFactory::create(config.clone(), StringSerde, StringSerde)
            .err()
            .expect("an unknown property is refused");
        assert!(matches!(error, ConsumerError::Config(_)), "{error:?}");
        assert!(error.to_string().contains("fetch.tunrbo"), "{error}");
    }
}

#[test]
fn conflicting_typed_and_extra_settings_name_both() {
    let mut config = ConsumerConfig::new("127.0.0.1:9092", "g");
    config.session_timeout_ms = Some(10_000);
    config
        .extra
        .insert("session.timeout.ms".into(), "30000".into());
    let error = ConsumerFactory::create(config, StringSerde, StringSerde)
        .err()
        .expect("a conflict is refused");
    let text = error.to_string();
    assert!(
        text.contains("session_timeout_ms") && text.contains("session.timeout.ms"),
        "{text}"
    );
}

#[test]
fn invalid_yaml_file_names_the_file_and_line() {
    let dir = std::env::temp_dir().join(format!("factory-yaml-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("consumer.yaml");
    std::fs::write(
        &path,
        "consumer:\n  brokers: b:9092\n  group_id: g\n  performance_tier: turbo\n",
    )
    .expect("write");
    let error = ConsumerFactory::from_yaml_file(&path, StringSerde, StringSerde)
        .err()
        .expect("an unknown tier is refused");
    let text = error.to_string();
    assert!(
        text.contains("consumer.yaml") && text.contains("turbo") && text.contains("line 4"),
        "{text}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

/// An unreachable broker is not a construction error; every implementation's
/// stream reports it within a bounded time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_broker_is_reported_by_every_implementation() {
    for (_, tier) in PLAN_EXAMPLES {
        let mut config = ConsumerConfig::new("127.0.0.1:1", "unreachable");
        config.performance_tier = tier;
        config
            .extra
            .insert("broker.address.family".into(), "v4".into());
        let consumer = ConsumerFactory::create(config, StringSerde, StringSerde)
            .expect("built without contacting the broker");
        consumer.subscribe(&["nowhere"]).expect("subscribe");
        let mut stream = consumer.stream();
        match next_within(&mut stream, Duration::from_secs(30)).await {
            Some(Err(error)) if error.kafka_error().is_some() => println!("{tier:?}: {error}"),
            other => panic!("{tier:?}: expected a Kafka error, got {other:?}"),
        }
    }
}

/// The dedicated adapter never runs two polling threads: a second stream
/// while the first is open is a clear error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_dedicated_stream_does_not_start_a_second_thread() {
    let env = env();
    let mut config = common::consumer_config(&env, &env.unique_group("twice"));
    config.performance_tier = Some(ConsumerTier::Dedicated);
    let consumer =
        ConsumerFactory::create(config, StringSerde, StringSerde).expect("factory builds");
    let first = consumer.stream();
    let mut second = consumer.stream();
    match second.next().await {
        Some(Err(ConsumerError::Misuse(Misuse::DedicatedStreamAlreadyOpen))) => {}
        other => panic!("expected a misuse error, got {other:?}"),
    }
    assert!(second.next().await.is_none());
    drop(first);
    // Once the first is gone, a new dedicated stream may start.
    let mut third = consumer.stream();
    assert!(
        next_within(&mut third, Duration::from_millis(300))
            .await
            .is_none()
    );
}

/// The configuration examples users copy (`examples/config/*.yaml`, shown in
/// `docs/configuration.md`) load through the factory, pick their consumer,
/// and say what the plan's examples say.
#[test]
fn example_config_files_build_their_consumer() {
    let config_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/config");
    let guide = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/configuration.md"),
    )
    .expect("docs/configuration.md");
    for (file, (plan_yaml, tier)) in ["legacy", "standard", "buffered", "dedicated"]
        .iter()
        .zip(PLAN_EXAMPLES)
    {
        let path = config_dir.join(format!("{file}.yaml"));
        let consumer = ConsumerFactory::from_yaml_file(&path, StringSerde, StringSerde)
            .unwrap_or_else(|error| panic!("{}: {error}", path.display()));
        assert_eq!(consumer.tier(), tier, "{}", path.display());
        assert_eq!(
            ConsumerConfig::from_yaml_file(&path).expect("loads"),
            ConsumerConfig::from_yaml_str(plan_yaml).expect("plan example loads"),
            "{} says something else than the plan's example",
            path.display()
        );
        let yaml = std::fs::read_to_string(&path).expect("read");
        assert!(
            guide.contains(&format!("```yaml\n{yaml}```")),
            "docs/configuration.md does not show {} verbatim",
            path.display()
        );
    }
}
