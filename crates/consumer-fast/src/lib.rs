//! A Kafka consumer on rdkafka's `BaseConsumer`, in three performance tiers.
//!
//! [`Consumer`] hands out deserialized [`Message`](consumer_api::Message)s
//! through one of three streams, each a `futures_core::Stream`:
//!
//! - [`Consumer::stream`] → [`KafkaStream`] (Standard): one message per
//!   wake-up, lowest latency.
//! - [`Consumer::buffered_stream`] → [`BufferedKafkaStream`] (Buffered): up to
//!   `batch_size` ready messages per wake-up, fewer wake-ups under load.
//! - [`Consumer::dedicated_stream`] → [`DedicatedKafkaStream`] (Dedicated): a
//!   polling thread deserializes ahead of the application, into a bounded
//!   channel.
//!
//! Each also hands out batches, `Vec`s of up to `max` ready messages with
//! their offsets recorded together: [`Consumer::batches`] →
//! [`KafkaBatches`] (as Standard and Buffered read), and
//! [`Consumer::dedicated_batches`] → [`DedicatedKafkaBatches`].
//!
//! Whatever the tier:
//!
//! - **No busy waiting.** Streams are woken by librdkafka's queue non-empty
//!   callback (every waiting stream of the consumer); `poll_next` never
//!   waits for messages, never waits for the broker (a revocation sends its
//!   commit and goes on: librdkafka holds the rejoin until the commit is
//!   answered) and never wakes itself in a loop.
//! - **At-least-once.** An offset is recorded only when its message is handed
//!   to the application; [`Consumer::commit_async`] commits exactly those. On
//!   revocation they are committed before the partition goes, and messages
//!   of it still buffered are dropped (the new owner reads them).
//! - **Bad data is per message.** A key or value that cannot be deserialized
//!   comes out as [`ConsumerError::Deserialize`](consumer_api::ConsumerError::Deserialize)
//!   for that message, and the stream goes on.
//!
//! This crate depends only on `consumer-api`: use it alone, or through
//! `consumer-factory` to pick the tier by configuration.
//!
//! # Building blocks
//!
//! The offset bookkeeping behind that promise is public, and shared with
//! `consumer-legacy`'s `KafkaConsumer`: an [`OffsetBook`] records what was
//! handed out, and a [`RevocationPolicy`] serves rebalances over it (a
//! bounded commit on revocation, resuming partitions that come back after a
//! failed commit). [`FastContext`] is the two together.
//!
//! # Example
//!
//! ```no_run
//! use std::sync::Arc;
//! use consumer_api::{BytesSerde, ConsumerConfig, StringSerde};
//! use consumer_fast::Consumer;
//! use futures_util::StreamExt;
//!
//! # async fn run() -> Result<(), consumer_api::ConsumerError> {
//! let consumer = Arc::new(Consumer::<String, Vec<u8>>::with_config(
//!     ConsumerConfig::new("localhost:9092", "ingest"),
//!     StringSerde,
//!     BytesSerde,
//! )?);
//! consumer.subscribe(&["events"])?;
//! let mut messages = consumer.dedicated_stream()?;
//! while let Some(message) = messages.next().await.transpose()? {
//!     println!("{message}");
//! }
//! # Ok(()) }
//! ```

mod close;
mod commit;
mod consumer;
mod context;
mod dedicated;
mod gate;
mod liveness;
mod offsets;
mod polling_thread;
mod process;
mod queue;
mod reason;
mod revocation;
mod stream;
mod sync;
mod telemetry;
mod tiered;
mod wakers;
mod watermarks;

pub use crate::close::{CloseOutcome, close_within};
pub use crate::commit::CommitFuture;
pub use crate::consumer::Consumer;
pub use crate::context::FastContext;
pub use crate::dedicated::{DedicatedKafkaBatches, DedicatedKafkaStream};
pub use crate::offsets::{Delivery, OffsetBook};
pub(crate) use crate::polling_thread::{PollingThread, PollingThreadSlot};
pub use crate::process::{
    Ack, BoxError, DeadLetter, DeadLetterHook, DeadLetterLimit, DeadLetterTopic, HEADER_ATTEMPTS,
    HEADER_ERROR, HEADER_ORIGINAL_OFFSET, HEADER_ORIGINAL_PARTITION, HEADER_ORIGINAL_TOPIC,
    ProcessError, ProcessOptions, ProcessingOrder, ProcessingStream, Processor, RetryPolicy, Work,
};
pub use crate::reason::ErrorReasons;
pub use crate::revocation::{RevocationPolicy, commit_within, serve_queued_before_close};
pub use crate::stream::{BufferedKafkaStream, KafkaBatches, KafkaStream};
pub use crate::telemetry::{MessageMeter, RebalanceEvent, Telemetry, names as metric_names};
pub use crate::tiered::TieredConsumer;
pub use crate::watermarks::{health, offsets_at_timestamp, partition_lag};
