//! [`FastContext`]: the rdkafka context that keeps commits honest across rebalances.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, TopicPartitionList};

use crate::offsets::OffsetBook;
use crate::reason::ErrorReasons;
use crate::revocation::RevocationPolicy;

/// The consumer context every fast [`Consumer`](crate::Consumer) runs with.
///
/// When partitions are revoked it commits, before the revocation completes,
/// the offsets of the messages the application was handed from them, and it
/// marks them so that messages of theirs still buffered are not handed out
/// afterwards (the partition's new owner reads them instead). That is the
/// [`RevocationPolicy`] over the consumer's [`OffsetBook`].
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
    revocation: RevocationPolicy,
    /// What librdkafka said about the error being polled.
    pub(crate) reasons: ErrorReasons,
}

impl FastContext {
    /// A fresh context; the commit on revocation waits up to 45 s (librdkafka's
    /// default `session.timeout.ms`).
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets how long the commit on revocation may wait for the broker before
    /// the revocation goes ahead without it (the partition's next owner then
    /// reads the uncommitted messages again). This also bounds how long
    /// dropping a consumer of an unresponsive broker takes.
    /// [`Consumer::with_config`](crate::Consumer::with_config) uses the
    /// configuration's `session_timeout_ms`.
    pub fn with_commit_timeout(mut self, timeout: Duration) -> Self {
        self.revocation = self.revocation.with_commit_timeout(timeout);
        self
    }
}

impl ClientContext for FastContext {
    fn error(&self, error: KafkaError, reason: &str) {
        // Called while polling, just before the poll returns the same error:
        // the consumer attaches this description to it.
        self.reasons.note(&error, reason);
        tracing::error!("librdkafka: {error}: {reason}");
    }
}

impl ConsumerContext for FastContext {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        error: RDKafkaRespErr,
        partitions: &mut TopicPartitionList,
    ) {
        self.revocation
            .rebalance(consumer, &self.book, error, partitions, |_| {}, |_| {});
    }
}
