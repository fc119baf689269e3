//! The plan's four YAML documents load as written; bad documents fail with an
//! error naming the field, the value and the line.

use consumer_api::{ConfigError, ConsumerConfig, ConsumerTier};

/// The four "Configuration Examples" of the migration plan, verbatim.
const LEGACY: &str = r#"
# Uses StreamConsumer (existing behavior)
consumer:
  brokers: "localhost:9092"
  group_id: "my-group"
  # performance_tier: not specified = use StreamConsumer
"#;

const STANDARD: &str = r#"
consumer:
  brokers: "localhost:9092"
  group_id: "my-group"
  performance_tier: "standard"  # KafkaStream
"#;

const BUFFERED: &str = r#"
consumer:
  brokers: "localhost:9092"
  group_id: "my-group"
  performance_tier:
    buffered:
      batch_size: 32  # BufferedKafkaStream
"#;

const DEDICATED: &str = r#"
consumer:
  brokers: "localhost:9092"
  group_id: "my-group"
  performance_tier: "dedicated"  # DedicatedKafkaStream
"#;

#[test]
fn plan_examples_load_as_written() {
    let cases = [
        (LEGACY, None),
        (STANDARD, Some(ConsumerTier::Standard)),
        (BUFFERED, Some(ConsumerTier::Buffered { batch_size: 32 })),
        (DEDICATED, Some(ConsumerTier::Dedicated)),
    ];
    for (yaml, tier) in cases {
        let config = ConsumerConfig::from_yaml_str(yaml).expect("plan example loads");
        assert_eq!(config.brokers, "localhost:9092");
        assert_eq!(config.group_id, "my-group");
        assert_eq!(config.performance_tier, tier, "in {yaml}");
        assert!(config.extra.is_empty());
    }
}

#[test]
fn typed_fields_and_extra_properties_load() {
    let config = ConsumerConfig::from_yaml_str(
        r#"
consumer:
  brokers: "b1:9092,b2:9092"
  group_id: billing
  client_id: billing-1
  auto_offset_reset: earliest
  enable_auto_commit: false
  session_timeout_ms: 10000
  isolation_level: read_committed
  extra:
    statistics.interval.ms: 5000
    check.crcs: true
    debug: "consumer,cgrp"
"#,
    )
    .expect("valid document");
    let client = config.client_config().expect("no conflicts");
    assert_eq!(client.get("bootstrap.servers"), Some("b1:9092,b2:9092"));
    assert_eq!(client.get("client.id"), Some("billing-1"));
    assert_eq!(client.get("auto.offset.reset"), Some("earliest"));
    assert_eq!(client.get("enable.auto.commit"), Some("false"));
    assert_eq!(client.get("session.timeout.ms"), Some("10000"));
    assert_eq!(client.get("isolation.level"), Some("read_committed"));
    assert_eq!(client.get("statistics.interval.ms"), Some("5000"));
    assert_eq!(client.get("check.crcs"), Some("true"));
    assert_eq!(client.get("debug"), Some("consumer,cgrp"));
    assert_eq!(client.get("enable.auto.offset.store"), Some("false"));
}

/// Loads `yaml`, expecting a YAML error; returns its text and line.
fn yaml_error(yaml: &str) -> (String, Option<u64>) {
    match ConsumerConfig::from_yaml_str(yaml) {
        Err(error @ ConfigError::Yaml { line, .. }) => (error.to_string(), line),
        other => panic!("expected a YAML error for {yaml:?}, got {other:?}"),
    }
}

fn assert_mentions(text: &str, needles: &[&str]) {
    for needle in needles {
        assert!(
            text.contains(needle),
            "error {text:?} does not mention {needle:?}"
        );
    }
}

#[test]
fn unknown_tier_names_the_value_and_the_choices() {
    let (text, line) = yaml_error(
        "consumer:\n  brokers: \"localhost:9092\"\n  group_id: g\n  performance_tier: \"turbo\"\n",
    );
    assert_mentions(&text, &["turbo", "standard", "buffered", "dedicated"]);
    assert_eq!(line, Some(4), "{text}");
}

#[test]
fn zero_batch_size_is_refused() {
    let (text, line) = yaml_error(
        "consumer:\n  brokers: b:9092\n  group_id: g\n  performance_tier:\n    buffered:\n      batch_size: 0\n",
    );
    assert_mentions(&text, &["batch_size", "0", "at least 1"]);
    assert_eq!(line, Some(6), "{text}");
}

#[test]
fn misspelt_field_is_named() {
    let (text, line) = yaml_error("consumer:\n  brokers: b:9092\n  group_idd: g\n");
    assert_mentions(&text, &["group_idd", "group_id"]);
    assert_eq!(line, Some(3), "{text}");
}

#[test]
fn missing_brokers_is_named() {
    let (text, _) = yaml_error("consumer:\n  group_id: g\n");
    assert_mentions(&text, &["brokers"]);
}

#[test]
fn wrong_type_names_the_field_and_value() {
    let (text, line) = yaml_error(
        "consumer:\n  brokers: b:9092\n  group_id: g\n  session_timeout_ms: \"ten seconds\"\n",
    );
    assert_mentions(&text, &["session_timeout_ms", "ten seconds"]);
    assert_eq!(line, Some(4), "{text}");
}

#[test]
fn missing_consumer_key_is_named() {
    let (text, _) = yaml_error("brokers: b:9092\ngroup_id: g\n");
    assert_mentions(&text, &["consumer"]);
}

#[test]
fn malformed_yaml_gives_the_line() {
    let (_, line) = yaml_error("consumer:\n  brokers: [b:9092\n  group_id: g\n");
    assert!(line.is_some());
}

#[test]
fn file_errors_name_the_path() {
    let error = ConsumerConfig::from_yaml_file("/nonexistent/consumer.yaml").unwrap_err();
    assert_mentions(&error.to_string(), &["/nonexistent/consumer.yaml"]);
}

#[test]
fn conflicting_typed_and_extra_settings_name_both() {
    let error = ConsumerConfig::from_yaml_str(
        "consumer:\n  brokers: b:9092\n  group_id: g\n  max_partition_fetch_bytes: 1048576\n  extra:\n    fetch.message.max.bytes: 2097152\n",
    )
    .unwrap_err();
    assert_mentions(
        &error.to_string(),
        &[
            "max_partition_fetch_bytes",
            "fetch.message.max.bytes",
            "1048576",
            "2097152",
        ],
    );
}

#[test]
fn reserved_property_is_refused() {
    let config = ConsumerConfig::new("b:9092", "g").with_extra("enable.auto.offset.store", "true");
    let error = config.client_config().unwrap_err();
    assert_mentions(&error.to_string(), &["enable.auto.offset.store"]);
}

#[test]
fn empty_brokers_is_refused() {
    let error =
        ConsumerConfig::from_yaml_str("consumer:\n  brokers: \"\"\n  group_id: g\n").unwrap_err();
    assert_mentions(&error.to_string(), &["brokers", "empty"]);
}

#[test]
fn programmatic_zero_batch_size_is_refused() {
    let config =
        ConsumerConfig::new("b:9092", "g").with_tier(ConsumerTier::Buffered { batch_size: 0 });
    assert_mentions(
        &config.validate().unwrap_err().to_string(),
        &["batch_size", "0"],
    );
}
