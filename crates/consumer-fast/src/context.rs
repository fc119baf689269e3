//! [`FastContext`]: the rdkafka context that keeps commits honest across rebalances.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex, PoisonError};

use rdkafka::consumer::{BaseConsumer, Consumer as _, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, TopicPartitionList};

use crate::offsets::OffsetBook;
use crate::process::RebalanceHook;
use crate::reason::ErrorReasons;
use crate::revocation::RevocationPolicy;
use crate::telemetry::{RebalanceEvent, Telemetry};

/// The consumer context every fast [`Consumer`](crate::Consumer) runs with.
///
/// When partitions are revoked it commits, before they go to another member,
/// the offsets of the messages the application was handed from them (without
/// holding the thread that polls: librdkafka holds the rejoin until the
/// commit is answered), and it
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
/// let consumer = Consumer::new(base, StringSerde, BytesSerde);
/// # Ok::<(), rdkafka::error::KafkaError>(())
/// ```
#[derive(Debug, Default)]
pub struct FastContext {
    pub(crate) book: Arc<OffsetBook>,
    revocation: RevocationPolicy,
    /// What librdkafka said about the error being polled.
    pub(crate) reasons: ErrorReasons,
    /// Concurrent processing, while it runs: it finishes the revoked
    /// partitions' work before their commit, and reads the committed
    /// metadata of assigned ones.
    pub(crate) processing: Mutex<Option<Arc<dyn RebalanceHook>>>,
    /// Metrics and health: statistics, rebalances and commit answers go
    /// here.
    pub(crate) telemetry: Arc<Telemetry>,
}

impl FastContext {
    /// A fresh context.
    pub fn new() -> Self {
        Self::default()
    }

    /// A fresh context reporting to `telemetry` (see
    /// [`Telemetry::for_config`]): how [`Consumer::with_config`](crate::Consumer::with_config)
    /// turns metrics on.
    pub fn with_telemetry(telemetry: Telemetry) -> Self {
        FastContext {
            telemetry: Arc::new(telemetry),
            ..Self::default()
        }
    }
}

impl ClientContext for FastContext {
    fn error(&self, error: KafkaError, reason: &str) {
        // Called while polling, just before the poll returns the same error:
        // the consumer attaches this description to it.
        self.reasons.note(&error, reason);
        tracing::error!("librdkafka: {error}: {reason}");
    }

    fn stats(&self, statistics: rdkafka::Statistics) {
        self.telemetry.statistics(&statistics, &self.book);
    }
}

impl ConsumerContext for FastContext {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        error: RDKafkaRespErr,
        partitions: &mut TopicPartitionList,
    ) {
        let event = RebalanceEvent::of(error, consumer);
        self.rebalance_served(consumer, error, partitions);
        let assignment = consumer.assignment().unwrap_or_default();
        self.telemetry.rebalanced(event, &assignment);
    }

    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        self.telemetry.commit_answered(result.is_ok());
        self.revocation.commit_answered(&result, offsets);
    }
}

impl FastContext {
    /// A rebalance, served by concurrent processing (while it runs) and the
    /// revocation policy.
    fn rebalance_served(
        &self,
        consumer: &BaseConsumer<Self>,
        error: RDKafkaRespErr,
        partitions: &mut TopicPartitionList,
    ) {
        let processing = self
            .processing
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let Some(processing) = processing else {
            self.revocation
                .rebalance(consumer, &self.book, error, partitions, |_| {}, |_| {});
            return;
        };
        if error != RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS
            && error != RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS
        {
            // A rebalance error: the revocation policy drops the assignment.
            if catch_unwind(AssertUnwindSafe(|| processing.lost_all())).is_err() {
                tracing::error!("concurrent processing panicked on a rebalance error");
            }
        }
        if error == RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS {
            // Before the revocation policy takes the revoked partitions'
            // positions from the book: this puts them there. A panic must not
            // keep the assignment from being applied.
            let revoking = catch_unwind(AssertUnwindSafe(|| {
                processing.revoking(consumer, partitions);
            }));
            if revoking.is_err() {
                tracing::error!("concurrent processing panicked while partitions were revoked");
            }
        }
        self.revocation.rebalance(
            consumer,
            &self.book,
            error,
            partitions,
            |_| {},
            |rebalance| {
                if let Rebalance::Assign(assigned) = rebalance {
                    processing.assigned(consumer, assigned);
                }
            },
        );
    }
}
