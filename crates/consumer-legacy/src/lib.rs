//! The legacy Kafka consumer of `tiered-kafka`, on rdkafka's `StreamConsumer`,
//! and the way out to the fast consumer.
//!
//! The migration plan keeps this consumer as the default, so that existing
//! code works unchanged, and gives it an opt-in path to `consumer-fast`:
//!
//! - [`KafkaConsumer`]: `new`, `with_config`, `subscribe`, `poll(timeout)`,
//!   [`stream`](KafkaConsumer::stream) (typed, a [`LegacyStream`]),
//!   [`raw_stream`](KafkaConsumer::raw_stream) (rdkafka's records, each
//!   recorded only by [`mark_delivered`](KafkaConsumer::mark_delivered)),
//!   `commit`, `current_offsets`, `group_metadata`; it implements
//!   [`KafkaStreamConsumer`](consumer_api::KafkaStreamConsumer) with
//!   `tier() == None`.
//! - [`ConsumerBuilder`]: brokers, group, config, serdes, and the
//!   application's context ([`LegacyConsumerContext`], default
//!   [`LegacyContext`]), or a [transactional](ConsumerBuilder::transactional)
//!   consumer.
//! - [`KafkaConsumer::into_fast_consumer`]: commits what was handed out and
//!   continues in the same group, subscription and serdes on a
//!   [`consumer_fast::Consumer`], from the next message.
//!
//! It keeps the fast consumer's contract: offsets are recorded only for
//! messages handed to the application (`enable.auto.offset.store=false`),
//! a commit (`commit_async().await`, `commit_blocking()`) commits exactly
//! those, a revocation commits them before it
//! completes; bad data is one [`ConsumerError::Deserialize`](consumer_api::ConsumerError::Deserialize)
//! and the stream goes on; tombstones are `value: None`; no busy waiting.
//!
//! # Transactions
//!
//! `isolation_level` in [`ConsumerConfig`](consumer_api::ConsumerConfig) is
//! passed to librdkafka (`read_committed` delivers only committed
//! transactions). For consume-transform-produce, build the consumer with
//! [`ConsumerBuilder::transactional`] and give a transactional producer
//! [`current_offsets`](KafkaConsumer::current_offsets) and
//! [`group_metadata`](KafkaConsumer::group_metadata) for
//! `send_offsets_to_transaction`.
//!
//! # Dependencies
//!
//! `consumer-api`, and `consumer-fast` for
//! [`into_fast_consumer`](KafkaConsumer::into_fast_consumer) (the plan's
//! Phase 6) and for the offset bookkeeping both consumers share
//! ([`OffsetBook`](consumer_fast::OffsetBook) and
//! [`RevocationPolicy`](consumer_fast::RevocationPolicy), which the
//! [`TrackingContext`] runs on). The direction is `api ← fast ← legacy`, and
//! `consumer-factory` depends on both: `consumer-fast` never depends on this
//! crate.
//!
//! # Example: the legacy API, then the way out
//!
//! This is the example of the migration guide's first section
//! (`docs/migration-guide.md`), compiled here as a doctest.
//!
//! ```no_run
//! use std::time::Duration;
//!
//! use consumer_api::{ConsumerConfig, ConsumerError, ConsumerTier, JsonSerde, KafkaStreamConsumer, StringSerde};
//! use consumer_fast::TieredConsumer;
//! use consumer_legacy::KafkaConsumer;
//! use futures_util::StreamExt;
//!
//! async fn consume_then_migrate() -> Result<(), ConsumerError> {
//!     // The legacy consumer, built as existing code builds it.
//!     let mut config = ConsumerConfig::new("localhost:9092", "billing");
//!     config.enable_auto_commit = Some(false);
//!     let legacy: KafkaConsumer<String, serde_json::Value, _, _> =
//!         KafkaConsumer::with_config(config, StringSerde, JsonSerde)?;
//!     legacy.subscribe(&["orders"])?;
//!
//!     // One message at a time...
//!     match legacy.poll(Duration::from_secs(5)).await {
//!         Ok(message) => println!("{message}: {:?}", message.value),
//!         Err(ConsumerError::Timeout(_)) => println!("nothing yet"),
//!         Err(error) => return Err(error),
//!     }
//!     // ...or as a stream: a record that does not deserialize is one error,
//!     // and the stream goes on.
//!     let mut messages = legacy.stream().take(100);
//!     while let Some(result) = messages.next().await {
//!         match result {
//!             Ok(message) => println!("{message}"),
//!             Err(error) => eprintln!("skipped: {error}"),
//!         }
//!     }
//!     drop(messages);
//!     legacy.commit_async().await?; // exactly the messages handed out above
//!     println!("next offsets: {:?}", legacy.current_offsets()?);
//!
//!     // The way out: commit, leave the group, and carry on in the same group
//!     // with the same subscription and serdes, from the next message.
//!     let fast = legacy.into_fast_consumer()?;
//!     let fast = TieredConsumer::new(fast, ConsumerTier::Buffered { batch_size: 64 });
//!     let mut messages = fast.stream();
//!     while let Some(result) = messages.next().await {
//!         match result {
//!             Ok(message) => println!("{message}"),
//!             Err(error) if error.is_fatal() => return Err(error),
//!             Err(error) => eprintln!("skipped: {error}"),
//!         }
//!     }
//!     Ok(())
//! }
//! ```

mod builder;
mod consumer;
mod context;
mod stream;

pub use crate::builder::ConsumerBuilder;
pub use crate::consumer::KafkaConsumer;
pub use crate::context::{LegacyConsumerContext, LegacyContext, TrackingContext};
pub use crate::stream::{LegacyBatches, LegacyStream, RawRecord, RawStream};

#[cfg(test)]
mod tests {
    use consumer_api::{
        BytesSerde, ConfigError, ConsumerConfig, ConsumerError, KafkaStreamConsumer, StringSerde,
    };

    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn public_types_are_send_and_sync() {
        assert_send_sync::<KafkaConsumer<String, Vec<u8>, StringSerde, BytesSerde>>();
        assert_send_sync::<
            LegacyStream<'static, String, Vec<u8>, StringSerde, BytesSerde, LegacyContext>,
        >();
        assert_send_sync::<ConsumerBuilder<StringSerde, BytesSerde, LegacyContext>>();
        assert_send_sync::<TrackingContext<LegacyContext>>();
        assert_send_sync::<LegacyContext>();
    }

    #[test]
    fn it_is_a_kafka_stream_consumer_of_no_tier() {
        // Built outside any runtime, without a broker: creation needs neither.
        let consumer: Box<dyn KafkaStreamConsumer<String, Vec<u8>>> = Box::new(
            KafkaConsumer::new("127.0.0.1:1", "unit", StringSerde, BytesSerde)
                .expect("created without a broker"),
        );
        assert_eq!(consumer.tier(), None);
        // Nothing handed out: nothing to commit, and that is fine.
        consumer.commit_blocking().expect("empty commit");
    }

    #[test]
    fn builder_needs_brokers_and_group() {
        let error = ConsumerBuilder::new()
            .group_id("g")
            .key_serde(StringSerde)
            .value_serde(StringSerde)
            .build::<String, String>()
            .expect_err("no brokers");
        assert!(
            matches!(&error, ConsumerError::Config(ConfigError::Invalid { field, .. }) if field == "brokers"),
            "{error}"
        );
        let consumer = ConsumerBuilder::new()
            .config(ConsumerConfig::new("127.0.0.1:1", "from-config"))
            .group_id("overridden")
            .key_serde(StringSerde)
            .value_serde(StringSerde)
            .build::<String, String>()
            .expect("built");
        assert_eq!(consumer.config().group_id, "overridden");
        assert_eq!(consumer.config().brokers, "127.0.0.1:1");
    }

    #[test]
    fn transactional_consumers_never_commit_on_their_own() {
        let mut config = ConsumerConfig::new("127.0.0.1:1", "txn");
        config.enable_auto_commit = Some(true);
        let error = ConsumerBuilder::new()
            .config(config.clone())
            .key_serde(StringSerde)
            .value_serde(StringSerde)
            .transactional()
            .build::<String, String>()
            .expect_err("auto-commit refused");
        assert!(error.to_string().contains("enable_auto_commit"), "{error}");

        config.enable_auto_commit = None;
        let consumer = ConsumerBuilder::new()
            .config(config)
            .key_serde(StringSerde)
            .value_serde(StringSerde)
            .transactional()
            .build::<String, String>()
            .expect("built");
        assert_eq!(consumer.config().enable_auto_commit, Some(false));
        assert!(matches!(
            consumer.commit_blocking(),
            Err(ConsumerError::Misuse(_))
        ));
        assert!(matches!(
            consumer.into_fast_consumer(),
            Err(ConsumerError::Misuse(_))
        ));
    }

    #[tokio::test]
    async fn poll_times_out_with_a_timeout_error() {
        let consumer: KafkaConsumer<String, String, _, _> =
            KafkaConsumer::new("127.0.0.1:1", "poll", StringSerde, StringSerde).expect("created");
        let timeout = std::time::Duration::from_millis(50);
        match consumer.poll(timeout).await {
            Err(ConsumerError::Timeout(waited)) => assert_eq!(waited, timeout),
            // Not subscribed: librdkafka may still report the unreachable broker.
            Err(error) if error.kafka_error().is_some() => {}
            other => panic!("expected a timeout, got {other:?}"),
        }
    }

    /// The migration guide shows the crate example verbatim, so the guide's
    /// snippet is compiled by this crate's doctests.
    #[test]
    fn migration_guide_shows_the_crate_example() {
        let source = include_str!("lib.rs");
        let mut example = String::new();
        let mut inside = false;
        for line in source.lines() {
            let Some(doc) = line.strip_prefix("//!") else {
                continue;
            };
            let doc = doc.strip_prefix(' ').unwrap_or(doc);
            if inside {
                if doc == "```" {
                    break;
                }
                example.push_str(doc);
                example.push('\n');
            } else if doc == "```no_run" {
                inside = true;
            }
        }
        assert!(example.contains("into_fast_consumer"), "{example}");
        let guide_path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/migration-guide.md");
        let guide = std::fs::read_to_string(guide_path).expect("docs/migration-guide.md");
        assert!(
            guide.contains(&format!("```rust,no_run\n{example}```")),
            "the first snippet of docs/migration-guide.md differs from the crate example of consumer-legacy"
        );
    }
}
