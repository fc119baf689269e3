//! [`ConsumerBuilder`]: a [`KafkaConsumer`] assembled step by step.

use consumer_api::{ConsumerConfig, ConsumerError, Decode};

use crate::consumer::KafkaConsumer;
use crate::context::{LegacyConsumerContext, LegacyContext};

/// Builds a [`KafkaConsumer`], for what [`KafkaConsumer::with_config`] cannot
/// say: a custom [context](LegacyConsumerContext), or a
/// [transactional](Self::transactional) consumer.
///
/// The decisions, in order:
///
/// 1. **Where**: [`brokers`](Self::brokers) and [`group_id`](Self::group_id),
///    or a whole [`config`](Self::config) (`brokers` and `group_id` given
///    here override the config's). Required: an empty brokers list or group
///    is a [`ConsumerError::Config`] from [`build`](Self::build).
/// 2. **How to read keys and values**: [`key_serde`](Self::key_serde) and
///    [`value_serde`](Self::value_serde). Required: without them `build`
///    does not compile.
/// 3. Optionally, **the application's context**: [`context`](Self::context)
///    ([`LegacyContext`] otherwise). It really is used: the consumer runs
///    with a [`TrackingContext`](crate::TrackingContext) that forwards every
///    callback to it.
/// 4. Optionally, **who commits**: [`transactional`](Self::transactional).
///
/// # Examples
///
/// ```no_run
/// use consumer_api::{ConsumerConfig, IsolationLevel, JsonSerde, StringSerde};
/// use consumer_legacy::{ConsumerBuilder, KafkaConsumer, LegacyContext};
///
/// let mut config = ConsumerConfig::new("localhost:9092", "payments");
/// config.isolation_level = Some(IsolationLevel::ReadCommitted);
/// let consumer: KafkaConsumer<String, serde_json::Value, _, _> = ConsumerBuilder::new()
///     .config(config)
///     .key_serde(StringSerde)
///     .value_serde(JsonSerde)
///     .context(LegacyContext)
///     .build()?;
/// # Ok::<(), consumer_api::ConsumerError>(())
/// ```
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until `build` is called"]
pub struct ConsumerBuilder<KS = (), VS = (), C = LegacyContext> {
    config: Option<ConsumerConfig>,
    brokers: Option<String>,
    group_id: Option<String>,
    key_serde: KS,
    value_serde: VS,
    context: C,
    transactional: bool,
}

impl ConsumerBuilder {
    /// A builder with nothing decided yet.
    pub fn new() -> Self {
        ConsumerBuilder {
            config: None,
            brokers: None,
            group_id: None,
            key_serde: (),
            value_serde: (),
            context: LegacyContext,
            transactional: false,
        }
    }
}

impl Default for ConsumerBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl<KS, VS, C> ConsumerBuilder<KS, VS, C> {
    /// Bootstrap brokers, `host:port[,host:port...]`.
    pub fn brokers(mut self, brokers: impl Into<String>) -> Self {
        self.brokers = Some(brokers.into());
        self
    }

    /// The consumer group.
    pub fn group_id(mut self, group_id: impl Into<String>) -> Self {
        self.group_id = Some(group_id.into());
        self
    }

    /// Everything else about the consumer. Its `performance_tier` is not used
    /// by the legacy consumer (see [`KafkaConsumer::with_config`]).
    pub fn config(mut self, config: ConsumerConfig) -> Self {
        self.config = Some(config);
        self
    }

    /// How keys are deserialized.
    pub fn key_serde<KS2>(self, key_serde: KS2) -> ConsumerBuilder<KS2, VS, C> {
        ConsumerBuilder {
            config: self.config,
            brokers: self.brokers,
            group_id: self.group_id,
            key_serde,
            value_serde: self.value_serde,
            context: self.context,
            transactional: self.transactional,
        }
    }

    /// How values are deserialized.
    pub fn value_serde<VS2>(self, value_serde: VS2) -> ConsumerBuilder<KS, VS2, C> {
        ConsumerBuilder {
            config: self.config,
            brokers: self.brokers,
            group_id: self.group_id,
            key_serde: self.key_serde,
            value_serde,
            context: self.context,
            transactional: self.transactional,
        }
    }

    /// The application's context: it receives every rdkafka callback (logs,
    /// statistics, errors, OAuth token refresh, rebalances, commit results).
    /// Reach it later with [`KafkaConsumer::context`].
    pub fn context<C2: LegacyConsumerContext>(self, context: C2) -> ConsumerBuilder<KS, VS, C2> {
        ConsumerBuilder {
            config: self.config,
            brokers: self.brokers,
            group_id: self.group_id,
            key_serde: self.key_serde,
            value_serde: self.value_serde,
            context,
            transactional: self.transactional,
        }
    }

    /// The consumer's offsets are committed by a transactional producer
    /// (`send_offsets_to_transaction` with
    /// [`current_offsets`](KafkaConsumer::current_offsets) and
    /// [`group_metadata`](KafkaConsumer::group_metadata)), never by the
    /// consumer itself: no commit on revocation or close, no automatic
    /// commits (`enable.auto.commit` is turned off, and setting it on is an
    /// error), and [`commit`](KafkaConsumer::commit) is refused.
    ///
    /// Otherwise a revocation would commit offsets of messages whose
    /// transaction may still abort. Commit the open transaction in your
    /// context's [`pre_rebalance`](LegacyConsumerContext::pre_rebalance)
    /// to hand partitions over cleanly; usually also set
    /// `isolation_level: read_committed`.
    pub fn transactional(mut self) -> Self {
        self.transactional = true;
        self
    }

    /// Creates the consumer.
    ///
    /// # Errors
    ///
    /// [`ConsumerError::Config`] for a missing brokers list or group, an
    /// invalid configuration, or automatic commits on a transactional
    /// consumer; [`ConsumerError::Kafka`] when librdkafka cannot create the
    /// client.
    pub fn build<K, V>(self) -> Result<KafkaConsumer<K, V, KS, VS, C>, ConsumerError>
    where
        KS: Decode<K> + 'static,
        VS: Decode<V> + 'static,
        C: LegacyConsumerContext,
    {
        let mut config = self
            .config
            .unwrap_or_else(|| ConsumerConfig::new(String::new(), String::new()));
        if let Some(brokers) = self.brokers {
            config.brokers = brokers;
        }
        if let Some(group_id) = self.group_id {
            config.group_id = group_id;
        }
        KafkaConsumer::create(
            config,
            Box::new(self.key_serde),
            Box::new(self.value_serde),
            self.context,
            self.transactional,
        )
    }
}
