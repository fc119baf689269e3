//! Consume Apache Kafka through one API, and choose the consumer behind it by
//! configuration.
//!
//! `tiered-kafka` ties together:
//!
//! - [`api`] (`consumer-api`): the [`KafkaStreamConsumer`](api::KafkaStreamConsumer)
//!   trait, messages, serdes, errors and [`ConsumerConfig`](api::ConsumerConfig).
//! - [`fast`] (`consumer-fast`): the `BaseConsumer`-based consumer in three
//!   performance tiers: Standard, Buffered, Dedicated.
//!
//! `use tiered_kafka::prelude::*` brings in what a service needs.
//!
//! # Features
//!
//! - `yaml` (default): load [`ConsumerConfig`](api::ConsumerConfig) from YAML.
//!
//! # Example
//!
//! ```no_run
//! use tiered_kafka::prelude::*;
//! use futures_util::StreamExt;
//!
//! # async fn run() -> Result<(), ConsumerError> {
//! let consumer = TieredConsumer::<String, String>::with_config(
//!     ConsumerConfig::new("localhost:9092", "my-group"),
//!     ConsumerTier::Standard,
//!     Box::new(StringSerde),
//!     Box::new(StringSerde),
//! )?;
//! consumer.subscribe(&["events"])?;
//! let mut messages = consumer.stream();
//! while let Some(message) = messages.next().await {
//!     println!("{}", message?);
//! }
//! # Ok(()) }
//! ```

#[doc(inline)]
pub use consumer_api as api;
#[doc(inline)]
pub use consumer_fast as fast;

/// What a service consuming Kafka usually needs, in one import.
pub mod prelude {
    pub use consumer_api::{
        BytesSerde, ConsumerConfig, ConsumerError, ConsumerTier, Headers, JsonSerde,
        KafkaStreamConsumer, Message, Serde, StringSerde, Timestamp,
    };
    pub use consumer_fast::{Consumer, TieredConsumer};
}

/// The README's code blocks, compiled as doctests so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
