//! [`FastContext`]: the rdkafka context that keeps commits honest across rebalances.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::bindings as rdsys;
use std::sync::Mutex;

use rdkafka::consumer::{BaseConsumer, Consumer as _, ConsumerContext, RebalanceProtocol};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Offset, TopicPartitionList};

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
#[derive(Debug)]
pub struct FastContext {
    pub(crate) book: Arc<OffsetBook>,
    commit_timeout: Duration,
    /// Positions of revoked partitions whose commit failed: if one comes
    /// back to this consumer, reading resumes there rather than at the
    /// older committed offset, so this consumer does not repeat itself.
    uncommitted: Mutex<Vec<(String, i32, i64)>>,
}

/// librdkafka's default `session.timeout.ms`.
const DEFAULT_COMMIT_TIMEOUT: Duration = Duration::from_secs(45);

impl Default for FastContext {
    fn default() -> Self {
        FastContext {
            book: Arc::default(),
            commit_timeout: DEFAULT_COMMIT_TIMEOUT,
            uncommitted: Mutex::default(),
        }
    }
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
        self.commit_timeout = timeout;
        self
    }
}

/// Commits `offsets` and waits up to `timeout` for the broker's answer.
///
/// rdkafka's synchronous commit waits without limit, and a broker that
/// accepts connections but does not answer (a network partition, a frozen
/// process) would hold the revocation, and with it `poll_next` or `drop`,
/// forever.
fn commit_within(
    consumer: &BaseConsumer<FastContext>,
    offsets: &TopicPartitionList,
    timeout: Duration,
) -> Result<(), KafkaError> {
    let timeout_ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
    // SAFETY: the client pointer is valid while `consumer` lives. The reply
    // queue is ours: created here and destroyed before returning; a reply
    // arriving after that is discarded by librdkafka (the op holds its own
    // reference to the queue). `offsets` outlives the call, which copies it.
    unsafe {
        let client = consumer.client().native_ptr();
        let reply = rdsys::rd_kafka_queue_new(client);
        let error =
            rdsys::rd_kafka_commit_queue(client, offsets.ptr(), reply, None, std::ptr::null_mut());
        let result = if error != rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
            Err(KafkaError::ConsumerCommit(error.into()))
        } else {
            let event = rdsys::rd_kafka_queue_poll(reply, timeout_ms);
            if event.is_null() {
                Err(KafkaError::ConsumerCommit(
                    RDKafkaErrorCode::OperationTimedOut,
                ))
            } else {
                let error = rdsys::rd_kafka_event_error(event);
                rdsys::rd_kafka_event_destroy(event);
                if error == rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
                    Ok(())
                } else {
                    Err(KafkaError::ConsumerCommit(error.into()))
                }
            }
        };
        rdsys::rd_kafka_queue_destroy(reply);
        result
    }
}

impl ClientContext for FastContext {}

impl FastContext {
    /// Starts re-assigned partitions whose last commit failed at this
    /// consumer's own position.
    fn resume_uncommitted(&self, assigned: &mut TopicPartitionList) {
        let mut uncommitted = self
            .uncommitted
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if uncommitted.is_empty() {
            return;
        }
        uncommitted.retain(|(topic, partition, next)| {
            let Some(mut element) = assigned.find_partition(topic, *partition) else {
                return true;
            };
            if let Err(error) = element.set_offset(Offset::Offset(*next)) {
                tracing::warn!(%topic, partition, %error, "cannot resume at the uncommitted position");
            }
            false
        });
    }

    fn revoke(&self, consumer: &BaseConsumer<Self>, revoked: &TopicPartitionList) {
        let elements = revoked.elements();
        let to_commit = self
            .book
            .invalidate(elements.iter().map(|e| (e.topic(), e.partition())), true);
        tracing::info!(
            revoked = elements.len(),
            committing = to_commit.count(),
            "partitions revoked"
        );
        if to_commit.count() == 0 {
            return;
        }
        if consumer.assignment_lost() {
            tracing::warn!(offsets = ?to_commit, "assignment lost: cannot commit; the new owner may read these messages again");
        } else if let Err(error) = commit_within(consumer, &to_commit, self.commit_timeout) {
            tracing::warn!(%error, offsets = ?to_commit, "commit on revocation failed; the new owner may read these messages again");
            let mut uncommitted = self
                .uncommitted
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            for element in to_commit.elements() {
                if let Offset::Offset(next) = element.offset() {
                    uncommitted
                        .retain(|(t, p, _)| !(p == &element.partition() && t == element.topic()));
                    uncommitted.push((element.topic().to_owned(), element.partition(), next));
                }
            }
        }
    }
}

impl ConsumerContext for FastContext {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        error: RDKafkaRespErr,
        partitions: &mut TopicPartitionList,
    ) {
        let cooperative = matches!(
            consumer.rebalance_protocol(),
            RebalanceProtocol::Cooperative
        );
        let applied = match error {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                self.resume_uncommitted(partitions);
                tracing::info!(assigned = partitions.count(), "partitions assigned");
                if cooperative {
                    consumer.incremental_assign(partitions)
                } else {
                    consumer.assign(partitions)
                }
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                // Commit what the application was handed before the
                // partitions go.
                self.revoke(consumer, partitions);
                if cooperative {
                    consumer.incremental_unassign(partitions)
                } else {
                    consumer.unassign()
                }
            }
            other => {
                let error = RDKafkaErrorCode::from(other);
                tracing::warn!(%error, "rebalance error: dropping the assignment");
                if cooperative {
                    consumer.incremental_unassign(partitions)
                } else {
                    consumer.unassign()
                }
            }
        };
        if let Err(error) = applied {
            tracing::warn!(%error, "cannot apply the rebalance");
        }
    }
}
