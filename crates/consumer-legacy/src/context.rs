//! Consumer contexts: the one the application supplies ([`LegacyConsumerContext`],
//! [`LegacyContext`] by default) and the one the `StreamConsumer` runs with
//! ([`TrackingContext`]), which keeps commits honest across rebalances and
//! forwards every callback to the application's.

use std::error::Error;
use std::sync::{Mutex, PoisonError};

use rdkafka::client::OAuthToken;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer as _, ConsumerContext, Rebalance, RebalanceProtocol,
};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::statistics::Statistics;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use crate::offsets::OffsetBook;

/// The callbacks a [`KafkaConsumer`](crate::KafkaConsumer) hands to the
/// application's context: rdkafka's `ConsumerContext` callbacks, with the
/// consumer typed as the [`TrackingContext`] it really runs with.
///
/// The client callbacks (`log`, `stats`, `error`, OAuth token refresh) are
/// rdkafka's own [`ClientContext`], forwarded unchanged.
///
/// # Why not `ConsumerContext` itself
///
/// rdkafka's `ConsumerContext::pre_rebalance` receives a
/// `&BaseConsumer<Self>`. The consumer must run with a context of its own
/// (it commits what the application was handed before a revocation
/// completes), so the `BaseConsumer` is a `BaseConsumer<TrackingContext<C>>`,
/// and a `ConsumerContext` implementation of `C` could not be called with it.
/// This trait has the same callbacks with that type. To port a context,
/// implement this trait instead of `ConsumerContext` and change the type of
/// the consumer argument.
///
/// # Examples
///
/// A context counting revocations, read back through
/// [`KafkaConsumer::context`](crate::KafkaConsumer::context):
///
/// ```no_run
/// use std::sync::atomic::{AtomicUsize, Ordering};
///
/// use consumer_api::StringSerde;
/// use consumer_legacy::{KafkaConsumer, LegacyConsumerContext, TrackingContext};
/// use rdkafka::ClientContext;
/// use rdkafka::consumer::{BaseConsumer, Rebalance};
///
/// #[derive(Default)]
/// struct Revocations(AtomicUsize);
///
/// impl ClientContext for Revocations {}
///
/// impl LegacyConsumerContext for Revocations {
///     fn pre_rebalance(&self, _: &BaseConsumer<TrackingContext<Self>>, rebalance: &Rebalance<'_>) {
///         if let Rebalance::Revoke(_) = rebalance {
///             self.0.fetch_add(1, Ordering::Relaxed);
///         }
///     }
/// }
///
/// let consumer: KafkaConsumer<String, String, _, _, Revocations> = KafkaConsumer::builder()
///     .brokers("localhost:9092")
///     .group_id("audit")
///     .key_serde(StringSerde)
///     .value_serde(StringSerde)
///     .context(Revocations::default())
///     .build()?;
/// println!("{} revocations", consumer.context().0.load(Ordering::Relaxed));
/// # Ok::<(), consumer_api::ConsumerError>(())
/// ```
pub trait LegacyConsumerContext: ClientContext + Sized + 'static {
    /// Runs before a rebalance is applied, on the task polling the consumer.
    /// For a revocation, the consumer has already committed the offsets of
    /// the messages it handed out from the revoked partitions (unless it is
    /// [transactional](crate::ConsumerBuilder::transactional)).
    ///
    /// Do not poll `consumer` here: messages polled there bypass the
    /// consumer's offset book.
    #[allow(unused_variables)]
    fn pre_rebalance(
        &self,
        consumer: &BaseConsumer<TrackingContext<Self>>,
        rebalance: &Rebalance<'_>,
    ) {
    }

    /// Runs after a rebalance was applied, on the task polling the consumer.
    #[allow(unused_variables)]
    fn post_rebalance(
        &self,
        consumer: &BaseConsumer<TrackingContext<Self>>,
        rebalance: &Rebalance<'_>,
    ) {
    }

    /// Runs with the result of an automatic (`enable.auto.commit`) or
    /// asynchronous commit, served by the stream like a message. The
    /// consumer's own commits ([`commit`](crate::KafkaConsumer::commit), on
    /// revocation) are synchronous: their result is their return value (or a
    /// warning in the log), not this callback.
    #[allow(unused_variables)]
    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {}
}

/// The default application context: no callbacks of its own, librdkafka's
/// logs, statistics and errors go to rdkafka's default handlers (`tracing`).
///
/// ```
/// use consumer_legacy::{KafkaConsumer, LegacyContext};
///
/// // `LegacyContext` is what `KafkaConsumer::new` and `with_config` use.
/// fn default_context<K, V, KS, VS>(consumer: &KafkaConsumer<K, V, KS, VS>) -> &LegacyContext {
///     consumer.context()
/// }
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LegacyContext;

impl ClientContext for LegacyContext {}

impl LegacyConsumerContext for LegacyContext {}

/// The context a [`KafkaConsumer`](crate::KafkaConsumer)'s `StreamConsumer`
/// runs with: it wraps the application's context `C`.
///
/// - When partitions are revoked it commits, before the revocation
///   completes, the offsets of the messages the application was handed from
///   them, and forgets them, so that a later commit never covers a partition
///   this consumer no longer owns. Then it calls `C::pre_rebalance`.
/// - If that commit fails (the group may refuse commits while it
///   rebalances) and a partition comes straight back to this consumer, it
///   resumes after the messages already handed out rather than at the stale
///   committed offset, and its position goes back into the book.
/// - Every other callback goes straight to `C`: `log`, `stats`, `stats_raw`,
///   `error`, `generate_oauth_token` (and `ENABLE_REFRESH_OAUTH_TOKEN`),
///   `post_rebalance` and `commit_callback`.
///
/// It is created by the consumer; [`inner`](Self::inner) reaches `C` from a
/// callback's `consumer` argument.
///
/// ```
/// use consumer_legacy::{LegacyConsumerContext, TrackingContext};
/// use rdkafka::consumer::{BaseConsumer, Consumer as _};
///
/// fn application_context<C: LegacyConsumerContext>(consumer: &BaseConsumer<TrackingContext<C>>) -> &C {
///     consumer.context().inner()
/// }
/// ```
#[derive(Debug)]
pub struct TrackingContext<C> {
    inner: C,
    pub(crate) book: OffsetBook,
    commit_on_revoke: bool,
    /// Positions whose commit on revocation failed, kept until the next
    /// assignment: `(topic, partition, next offset)`.
    uncommitted: Mutex<Vec<(String, i32, i64)>>,
}

impl<C> TrackingContext<C> {
    pub(crate) fn new(inner: C, commit_on_revoke: bool) -> Self {
        TrackingContext {
            inner,
            book: OffsetBook::default(),
            commit_on_revoke,
            uncommitted: Mutex::new(Vec::new()),
        }
    }

    /// Before an assignment is applied: a partition whose commit on
    /// revocation failed and that comes straight back to this consumer starts
    /// after the messages it already handed out, not at the stale committed
    /// offset; its position goes back into the book, so the next commit
    /// covers it. Positions of partitions not coming back are dropped.
    ///
    /// At-least-once holds either way: everything before such a position was
    /// handed out by this consumer.
    fn resume_uncommitted(&self, assignment: &mut TopicPartitionList) {
        let uncommitted = std::mem::take(
            &mut *self
                .uncommitted
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        for (topic, partition, next) in uncommitted {
            if assignment.find_partition(&topic, partition).is_none() {
                continue;
            }
            match assignment.set_partition_offset(&topic, partition, Offset::Offset(next)) {
                Ok(()) => {
                    tracing::info!(%topic, partition, next, "partition back after a failed commit: resuming after what was handed out");
                    self.book.resume(&topic, partition, next);
                }
                Err(error) => {
                    tracing::warn!(%topic, partition, next, %error, "cannot resume after a failed commit; messages may be read again");
                }
            }
        }
    }

    /// The application's context.
    pub fn inner(&self) -> &C {
        &self.inner
    }
}

impl<C: LegacyConsumerContext> ClientContext for TrackingContext<C> {
    const ENABLE_REFRESH_OAUTH_TOKEN: bool = C::ENABLE_REFRESH_OAUTH_TOKEN;

    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        self.inner.log(level, fac, log_message);
    }

    fn stats(&self, statistics: Statistics) {
        self.inner.stats(statistics);
    }

    fn stats_raw(&self, statistics: &[u8]) {
        self.inner.stats_raw(statistics);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.inner.error(error, reason);
    }

    fn generate_oauth_token(
        &self,
        oauthbearer_config: Option<&str>,
    ) -> Result<OAuthToken, Box<dyn Error>> {
        self.inner.generate_oauth_token(oauthbearer_config)
    }
}

impl<C: LegacyConsumerContext> ConsumerContext for TrackingContext<C> {
    /// rdkafka's default rebalance (pre-rebalance callback, assign or unassign,
    /// post-rebalance callback), with one addition before an assignment: a
    /// partition whose commit on revocation failed and that comes straight
    /// back resumes after the messages already handed out.
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        partitions: &mut TopicPartitionList,
    ) {
        let rebalance = match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                self.resume_uncommitted(partitions);
                Rebalance::Assign(partitions)
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => Rebalance::Revoke(partitions),
            other => Rebalance::Error(KafkaError::Rebalance(other.into())),
        };
        self.pre_rebalance(consumer, &rebalance);
        let cooperative = matches!(
            consumer.rebalance_protocol(),
            RebalanceProtocol::Cooperative
        );
        let applied = match (&rebalance, cooperative) {
            (Rebalance::Assign(assigned), true) => consumer.incremental_assign(assigned),
            (Rebalance::Assign(assigned), false) => consumer.assign(assigned),
            (_, true) => consumer.incremental_unassign(partitions),
            (_, false) => consumer.unassign(),
        };
        if let Err(error) = applied {
            tracing::warn!(%error, "cannot apply the rebalance");
        }
        self.post_rebalance(consumer, &rebalance);
    }

    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(revoked) => {
                let elements = revoked.elements();
                let to_commit = self
                    .book
                    .revoke(elements.iter().map(|e| (e.topic(), e.partition())));
                tracing::info!(
                    revoked = elements.len(),
                    handed_out = to_commit.count(),
                    "partitions revoked"
                );
                if !self.commit_on_revoke || to_commit.count() == 0 {
                    // Transactional: the producer's transaction commits them.
                } else if consumer.assignment_lost() {
                    tracing::warn!(offsets = ?to_commit, "assignment lost: cannot commit; the new owner may read these messages again");
                } else if let Err(error) = consumer.commit(&to_commit, CommitMode::Sync) {
                    tracing::warn!(%error, offsets = ?to_commit, "commit on revocation failed; the new owner may read these messages again");
                    let mut uncommitted = self
                        .uncommitted
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner);
                    for element in to_commit.elements() {
                        if let Offset::Offset(next) = element.offset() {
                            uncommitted.push((
                                element.topic().to_owned(),
                                element.partition(),
                                next,
                            ));
                        }
                    }
                }
            }
            Rebalance::Assign(assigned) => {
                tracing::info!(assigned = assigned.count(), "partitions assigned");
            }
            Rebalance::Error(error) => tracing::warn!(%error, "rebalance error"),
        }
        self.inner.pre_rebalance(consumer, rebalance);
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        self.inner.post_rebalance(consumer, rebalance);
    }

    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        self.inner.commit_callback(result, offsets);
    }
}
