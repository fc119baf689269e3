//! [`FastContext`]: the rdkafka context that keeps commits honest across rebalances.

use std::sync::Arc;

use rdkafka::ClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer as _, ConsumerContext, Rebalance};

use crate::offsets::OffsetBook;

/// The consumer context every fast [`Consumer`](crate::Consumer) runs with.
///
/// When partitions are revoked it commits, before the revocation completes,
/// the offsets of the messages the application was handed from them, and it
/// marks them so that messages of theirs still buffered are not handed out
/// afterwards (the partition's new owner reads them instead).
///
/// Build a `BaseConsumer` with it to pass to [`Consumer::new`](crate::Consumer::new):
///
/// ```no_run
/// use consumer_fast::{Consumer, FastContext};
/// use consumer_api::{BytesSerde, StringSerde};
/// use rdkafka::ClientConfig;
/// use rdkafka::consumer::BaseConsumer;
///
/// let base: BaseConsumer<FastContext> = ClientConfig::new()
///     .set("bootstrap.servers", "localhost:9092")
///     .set("group.id", "billing")
///     .set("enable.auto.offset.store", "false")
///     .create_with_context(FastContext::new())?;
/// let consumer = Consumer::new(base, Box::new(StringSerde), Box::new(BytesSerde));
/// # Ok::<(), rdkafka::error::KafkaError>(())
/// ```
#[derive(Debug, Default)]
pub struct FastContext {
    pub(crate) book: Arc<OffsetBook>,
}

impl FastContext {
    /// A fresh context.
    pub fn new() -> Self {
        Self::default()
    }
}

impl ClientContext for FastContext {}

impl ConsumerContext for FastContext {
    fn pre_rebalance(&self, base_consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(revoked) => {
                let elements = revoked.elements();
                let partitions = elements.iter().map(|e| (e.topic(), e.partition()));
                let to_commit = self.book.invalidate(partitions, true);
                tracing::info!(
                    revoked = elements.len(),
                    committing = to_commit.count(),
                    "partitions revoked"
                );
                if to_commit.count() > 0
                    && let Err(error) = base_consumer.commit(&to_commit, CommitMode::Sync)
                {
                    tracing::warn!(%error, offsets = ?to_commit, "commit on revocation failed; the new owner may read these messages again");
                }
            }
            Rebalance::Assign(assigned) => {
                tracing::info!(assigned = assigned.count(), "partitions assigned");
            }
            Rebalance::Error(error) => tracing::warn!(%error, "rebalance error"),
        }
    }
}
