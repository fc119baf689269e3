//! The shared vocabulary of `tiered-kafka`: what every consumer implementation
//! speaks, and no implementation.
//!
//! - [`KafkaStreamConsumer`]: the trait services program against.
//! - [`Message`], [`Headers`], [`Timestamp`]: deserialized records.
//! - [`Serde`] with [`JsonSerde`], [`StringSerde`], [`BytesSerde`]: codecs.
//! - [`ConsumerError`], [`ConfigError`]: errors as data.
//! - [`ConsumerConfig`], [`ConsumerTier`]: configuration, and which consumer it picks.
//! - [`is_secret_property`], [`SECRET_PROPERTIES`], [`REDACTED`]: which
//!   librdkafka properties hold secrets, never printed by `Debug` or errors.
//!
//! # Features
//!
//! - `yaml`: [`ConsumerConfig::from_yaml_str`] and
//!   [`ConsumerConfig::from_yaml_file`] (pulls in `serde-saphyr`).
//! - `otel`: the `otel` module, W3C trace context from message headers and
//!   a `tracing` span per message whose OpenTelemetry parent is the
//!   producer's span (pulls in `tracing`, `opentelemetry`, `opentelemetry_sdk`
//!   and `tracing-opentelemetry`).
//!
//! # Example
//!
//! ```
//! use consumer_api::{ConsumerConfig, ConsumerTier};
//!
//! let config = ConsumerConfig::new("localhost:9092", "my-group")
//!     .with_tier(ConsumerTier::Standard)
//!     .with_extra("statistics.interval.ms", "0");
//! assert!(config.client_config().is_ok());
//! ```
#![cfg_attr(docsrs, feature(doc_cfg))]

mod batch;
mod closing;
mod config;
mod consumer;
mod error;
mod health;
mod message;
#[cfg(feature = "otel")]
#[cfg_attr(docsrs, doc(cfg(feature = "otel")))]
pub mod otel;
mod owned;
mod processing;
mod serde;
#[cfg(feature = "yaml")]
mod yaml;

pub use crate::batch::{BatchStream, ReadyBatches};
pub use crate::closing::Closing;
pub use crate::config::{
    AutoOffsetReset, ConsumerConfig, ConsumerTier, DEFAULT_CLOSE_TIMEOUT,
    DEFAULT_STATISTICS_INTERVAL_MS, IsolationLevel, MetricsConfig, REDACTED, SECRET_PROPERTIES,
    is_secret_property,
};
pub use crate::consumer::{
    CloseReport, CommitAsync, KafkaStreamConsumer, MessageStream, PartitionLag,
};
pub use crate::error::{ConfigError, ConsumerError, Misuse, PayloadPart};
pub use crate::health::{Health, HealthStatus, HealthThresholds, Unhealthy};
pub use crate::message::{Header, Headers, Message, OwnedRecord, RawHeaders, Timestamp};
pub use crate::owned::OwnedStream;
pub use crate::processing::{
    DeadLetterConfig, DeadLetterLimitConfig, ProcessingConfig, ProcessingOrder, RetryConfig,
};
pub use crate::serde::{BytesSerde, Decode, Json, JsonSerde, Serde, SerdeError, StringSerde};
/// librdkafka's error codes, as [`ConsumerError::code`] gives them.
pub use rdkafka::error::RDKafkaErrorCode as ErrorCode;
pub use rdkafka::{Offset, TopicPartitionList};
