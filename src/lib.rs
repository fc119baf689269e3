//! Consume Apache Kafka through one API, and choose the consumer behind it by
//! configuration.
//!
//! `tiered-kafka` ties together:
//!
//! - [`api`] (`consumer-api`): the [`KafkaStreamConsumer`](api::KafkaStreamConsumer)
//!   trait, messages, serdes, errors and [`ConsumerConfig`](api::ConsumerConfig).
//! - [`legacy`] (`consumer-legacy`): the `StreamConsumer`-based
//!   `KafkaConsumer`, the default.
//! - [`fast`] (`consumer-fast`): the `BaseConsumer`-based consumer in three
//!   performance tiers: Standard, Buffered, Dedicated.
//! - [`factory`] (`consumer-factory`): `ConsumerFactory`, configuration picks
//!   the consumer.
//!
//! `use tiered_kafka::prelude::*` brings in what a service needs.
//!
//! # Features
//!
//! - `yaml` (default): load [`ConsumerConfig`](api::ConsumerConfig) from YAML.
//! - `otel`: `api::otel`, W3C trace context (`traceparent`, `tracestate`)
//!   from message headers, and `message.process_span()`, a `tracing` span
//!   whose OpenTelemetry parent is the producer's span.
//!
//! # Example
//!
//! ```no_run
//! use tiered_kafka::prelude::*;
//! use futures_util::StreamExt;
//!
//! # async fn run() -> Result<(), ConsumerError> {
//! # let (brokers, group_id) = ("localhost:9092", "my-group");
//! // The plan's "opt-in via config": no tier keeps the legacy StreamConsumer.
//! let mut config = ConsumerConfig::new(brokers, group_id);
//! config.performance_tier = Some(ConsumerTier::Standard);
//!
//! let consumer = ConsumerFactory::create(config, StringSerde, StringSerde)?;
//! consumer.subscribe(&["events"])?;
//! let mut messages = consumer.stream();
//! while let Some(item) = messages.next().await {
//!     match item {
//!         Ok(message) => println!("{message}"),
//!         // Stop on what cannot get better; log the rest and go on.
//!         Err(error) if error.is_fatal() => return Err(error),
//!         Err(error) => eprintln!("skipping: {error}"),
//!     }
//! }
//! consumer.commit_async().await?;
//! # Ok(()) }
//! ```

#[doc(inline)]
pub use consumer_api as api;
#[doc(inline)]
pub use consumer_factory as factory;
#[doc(inline)]
pub use consumer_fast as fast;
#[doc(inline)]
pub use consumer_legacy as legacy;
/// The rdkafka crate this library is built on (its version is this
/// library's), for what the API does not cover: `TopicPartitionList`,
/// `Offset`, client contexts.
pub use rdkafka;

/// What a service consuming Kafka usually needs, in one import.
pub mod prelude {
    pub use consumer_api::{
        AutoOffsetReset, BytesSerde, CloseReport, ConfigError, ConsumerConfig, ConsumerError,
        ConsumerTier, ErrorCode, Headers, Json, JsonSerde, KafkaStreamConsumer, Message, Misuse,
        OwnedStream, Serde, StringSerde, Timestamp, TopicPartitionList,
    };
    pub use consumer_factory::ConsumerFactory;
    pub use consumer_fast::{Consumer as FastConsumer, TieredConsumer};
    pub use consumer_legacy::{ConsumerBuilder, KafkaConsumer};
    pub use rdkafka::Offset;

    #[cfg(feature = "otel")]
    pub use consumer_api::otel::MessageTraceExt;
}

/// The README's code blocks, compiled as doctests so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

/// The configuration guide's code blocks, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../docs/configuration.md")]
pub struct ConfigurationGuideDoctests;

/// The migration guide's code blocks, compiled as doctests.
#[cfg(doctest)]
#[doc = include_str!("../docs/migration-guide.md")]
pub struct MigrationGuideDoctests;

/// The FAQ's code blocks, compiled as doctests.
#[cfg(doctest)]
#[doc = include_str!("../docs/faq.md")]
pub struct FaqDoctests;

/// The concurrent processing guide's code blocks, compiled as doctests.
#[cfg(doctest)]
#[doc = include_str!("../docs/concurrent-processing.md")]
pub struct ConcurrentProcessingGuideDoctests;
