//! What every example needs around the consumer it shows: a broker with demo
//! data on it.
//!
//! With `KAFKA_BROKERS=host:port[,host:port...]` set, the examples use that
//! broker; otherwise they start librdkafka's mock cluster inside the process,
//! so `cargo run --example NAME` needs nothing installed. Either way they
//! create a fresh topic (one partition, so the output reads in order), write
//! demo records to it, and read it in a fresh consumer group.
#![allow(dead_code, unreachable_pub)] // each example uses a part of this module

use std::time::Duration;

use anyhow::Context as _;
use kafka_test_env::{KafkaTestEnv, TestRecord};
use rdkafka::Offset;
use tiered_kafka::api::{AutoOffsetReset, ConsumerConfig, TopicPartitionList};

/// How many records [`Demo::start`] writes.
pub const DEMO_MESSAGES: usize = 10;

/// How long an example may run before it gives up, so that a run in CI
/// cannot hang (the examples themselves stop after the demo records).
const WATCHDOG: Duration = Duration::from_secs(120);

/// A broker, a topic with demo records on it, and a consumer group to read it.
///
/// Declare it before the consumers: they are dropped first, while the mock
/// cluster it owns still runs.
pub struct Demo {
    /// The topic holding the demo records.
    pub topic: String,
    /// A consumer group nobody has used yet.
    pub group: String,
    /// How many records were written.
    pub messages: usize,
    env: KafkaTestEnv,
}

impl Demo {
    /// A broker with [`DEMO_MESSAGES`] records `key-i` → `message-i`.
    pub fn start(name: &str) -> anyhow::Result<Demo> {
        Self::start_with(
            name,
            (0..DEMO_MESSAGES).map(|i| TestRecord::new(format!("key-{i}"), format!("message-{i}"))),
        )
    }

    /// A broker with these records, in order.
    pub fn start_with(
        name: &str,
        records: impl IntoIterator<Item = TestRecord>,
    ) -> anyhow::Result<Demo> {
        // RUST_LOG=info shows the consumers' own logs (rebalances, the tier).
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| "warn".into()),
            )
            .try_init();
        std::thread::spawn(|| {
            std::thread::sleep(WATCHDOG);
            eprintln!("example still running after {WATCHDOG:?}: giving up");
            std::process::exit(1);
        });

        let env = match std::env::var("KAFKA_BROKERS") {
            Ok(brokers) if !brokers.trim().is_empty() => KafkaTestEnv::external(&brokers)?,
            _ => KafkaTestEnv::mock()?,
        };
        let topic = env.unique_topic(name);
        env.create_topic(&topic, 1)
            .with_context(|| format!("creating topic {topic} on {}", env.kind()))?;
        let messages = env.produce(&topic, records)?.len();
        println!("{}: wrote {messages} records to {topic}", env.kind());
        Ok(Demo {
            group: env.unique_group(name),
            topic,
            messages,
            env,
        })
    }

    /// The demo broker's bootstrap servers.
    pub fn brokers(&self) -> String {
        self.env.bootstrap_servers()
    }

    /// A configuration for the demo broker and group, reading from the
    /// beginning of the topic (a new group otherwise starts at its end).
    pub fn config(&self) -> ConsumerConfig {
        let mut config = ConsumerConfig::new(self.brokers(), &self.group);
        config.auto_offset_reset = Some(AutoOffsetReset::Earliest);
        config
    }

    /// [`config`](Self::config) with a consumer group of its own, for an
    /// example reading the same records several times.
    pub fn config_in_new_group(&self) -> ConsumerConfig {
        let mut config = self.config();
        config.group_id = self.env.unique_group(&self.group);
        config
    }
}

/// Partition positions as `topic/partition@offset`, one per partition.
pub fn offsets(list: &TopicPartitionList) -> String {
    let positions: Vec<String> = list
        .elements()
        .iter()
        .map(|element| {
            let offset = match element.offset() {
                Offset::Offset(offset) => offset.to_string(),
                other => format!("{other:?}"),
            };
            format!("{}/{}@{offset}", element.topic(), element.partition())
        })
        .collect();
    positions.join(", ")
}
