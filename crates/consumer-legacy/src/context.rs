//! Consumer contexts: the one the application supplies ([`LegacyConsumerContext`],
//! [`LegacyContext`] by default) and the one the `StreamConsumer` runs with
//! ([`TrackingContext`]), which keeps commits honest across rebalances and
//! forwards every callback to the application's.

use std::error::Error;

use std::sync::Arc;

use consumer_fast::{ErrorReasons, OffsetBook, RebalanceEvent, RevocationPolicy, Telemetry};
use rdkafka::client::OAuthToken;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer as _, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::statistics::Statistics;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, TopicPartitionList};

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
/// - When partitions are revoked it commits the offsets of the messages the
///   application was handed from them, and forgets them, so that a later
///   commit never covers a partition this consumer no longer owns. Then it
///   calls `C::pre_rebalance`. The commit is sent without waiting for the
///   answer, so the thread polling the stream (an executor's) is not held;
///   librdkafka holds the rejoin until it is answered, so the offsets land
///   before another member takes the partitions. It is skipped when the
///   assignment was lost, and for a
///   [transactional](crate::ConsumerBuilder::transactional) consumer.
/// - If that commit fails (the group may refuse commits while it
///   rebalances) and a partition comes straight back to this consumer, it
///   resumes after the messages already handed out rather than at the stale
///   committed offset, and its position goes back into the book.
/// - That bookkeeping is `consumer-fast`'s, shared with the fast consumer:
///   an [`OffsetBook`](consumer_fast::OffsetBook) served by a
///   [`RevocationPolicy`](consumer_fast::RevocationPolicy).
/// - Every other callback goes straight to `C`: `log`, `stats`, `stats_raw`,
///   `error`, `generate_oauth_token` (and `ENABLE_REFRESH_OAUTH_TOKEN`),
///   `post_rebalance` and `commit_callback` (which also sees the answer to
///   the commit on revocation).
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
    revocation: RevocationPolicy,
    /// What librdkafka said about the error being polled.
    pub(crate) reasons: ErrorReasons,
    /// Metrics and health: statistics, rebalances and commit answers go
    /// here.
    pub(crate) telemetry: Arc<Telemetry>,
}

impl<C> TrackingContext<C> {
    /// Wraps the application's context; `revocation` is built by the
    /// consumer (its commit timeout, and no commit when transactional).
    pub(crate) fn new(inner: C, revocation: RevocationPolicy, telemetry: Telemetry) -> Self {
        TrackingContext {
            inner,
            book: OffsetBook::new(),
            revocation,
            reasons: ErrorReasons::new(),
            telemetry: Arc::new(telemetry),
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
        if self.telemetry.metrics_on() {
            match serde_json::from_slice::<Statistics>(statistics) {
                Ok(parsed) => self.telemetry.statistics(&parsed, &self.book),
                Err(error) => tracing::warn!(%error, "cannot parse librdkafka's statistics"),
            }
        }
        self.inner.stats_raw(statistics);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        // Called while polling, just before the poll returns the same error:
        // the stream attaches this description to it.
        self.reasons.note(&error, reason);
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
    /// post-rebalance callback), served by `consumer-fast`'s
    /// [`RevocationPolicy`] over this consumer's offset book: before the
    /// pre-rebalance callback, a revocation commits what was handed out (with
    /// a bounded wait), and an assignment resumes a partition whose commit on
    /// revocation failed after the messages already handed out.
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        partitions: &mut TopicPartitionList,
    ) {
        let event = RebalanceEvent::of(err, consumer);
        self.revocation.rebalance(
            consumer,
            &self.book,
            err,
            partitions,
            |rebalance| self.pre_rebalance(consumer, rebalance),
            |rebalance| self.post_rebalance(consumer, rebalance),
        );
        let assignment = consumer.assignment().unwrap_or_default();
        self.telemetry.rebalanced(event, &assignment);
    }

    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        self.inner.pre_rebalance(consumer, rebalance);
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        self.inner.post_rebalance(consumer, rebalance);
    }

    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        self.telemetry.commit_answered(result.is_ok());
        self.revocation.commit_answered(&result, offsets);
        self.inner.commit_callback(result, offsets);
    }
}
