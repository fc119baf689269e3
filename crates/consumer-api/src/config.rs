//! [`ConsumerConfig`]: what a service says about its consumer, and which one it gets.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::config::FromClientConfigAndContext;
use rdkafka::error::KafkaError;
use rdkafka::{ClientConfig, ClientContext};
use serde::{Deserialize, Deserializer, Serialize};

use crate::error::{ConfigError, ConsumerError};

/// How long a consumer's drop waits for librdkafka's close unless
/// [`ConsumerConfig::close_timeout_ms`] says otherwise: 30 s, the default of
/// the Java `KafkaConsumer`'s `close()`.
pub const DEFAULT_CLOSE_TIMEOUT: Duration = Duration::from_secs(30);

/// What `Debug` of a [`ConsumerConfig`] and every configuration error show in
/// place of a secret property's value.
pub const REDACTED: &str = "[redacted]";

/// The librdkafka properties whose values are secrets, by their librdkafka
/// names: the properties librdkafka 2.12 itself marks sensitive
/// (`_RK_SENSITIVE` in `rdkafka_conf.c`, whose values its own debug logs
/// print as `[redacted]`), the alias librdkafka keeps for one of them, and
/// `ssl.truststore.password`, which librdkafka does not know but which a
/// configuration carried over from the Java client may hold.
///
/// Some of them are not secret in every deployment (`sasl.username`, the
/// paths `ssl.key.location` and `sasl.oauthbearer.assertion.private.key.file`,
/// the CA certificate `ssl.ca.pem`); they are redacted anyway so that what
/// tiered-kafka prints agrees with what librdkafka prints. Use
/// [`is_secret_property`], which also applies the name rule, rather than
/// this list alone.
pub const SECRET_PROPERTIES: &[&str] = &[
    "sasl.username",
    "sasl.password",
    "sasl.oauthbearer.config",
    "sasl.oauthbearer.client.secret",
    "sasl.oauthbearer.client.credentials.client.secret",
    "sasl.oauthbearer.assertion.private.key.file",
    "sasl.oauthbearer.assertion.private.key.passphrase",
    "sasl.oauthbearer.assertion.private.key.pem",
    "ssl.key.location",
    "ssl.key.password",
    "ssl.key.pem",
    "ssl_key",
    "ssl.ca.pem",
    "ssl.keystore.password",
    "ssl.truststore.password",
    // The Java client's, which librdkafka refuses: carried over in a
    // migration, they hold a password and a private key.
    "sasl.jaas.config",
    "ssl.keystore.key",
];

/// Endings that make any property name secret, so that a property this
/// library has never heard of (a newer librdkafka's, a plugin's) is redacted
/// when its name says what it holds.
const SECRET_NAME_ENDINGS: &[&str] = &["password", "secret", "passphrase"];

/// Whether the librdkafka property `name` holds a secret: it is one of
/// [`SECRET_PROPERTIES`], or its name ends in `password`, `secret` or
/// `passphrase` (ignoring ASCII case).
///
/// The value of such a property never appears in `Debug` of a
/// [`ConsumerConfig`] nor in a [`ConfigError`] or [`ConsumerError`] built
/// from one: [`REDACTED`] stands in its place.
///
/// ```
/// use consumer_api::is_secret_property;
///
/// assert!(is_secret_property("sasl.password"));
/// assert!(is_secret_property("ssl.key.pem"));
/// assert!(is_secret_property("my.plugin.client.secret"));
/// assert!(!is_secret_property("ssl.certificate.pem"));
/// assert!(!is_secret_property("sasl.kerberos.keytab")); // a path
/// ```
pub fn is_secret_property(name: &str) -> bool {
    let name = name.trim();
    SECRET_PROPERTIES
        .iter()
        .any(|secret| secret.eq_ignore_ascii_case(name))
        || SECRET_NAME_ENDINGS.iter().any(|ending| {
            name.len() >= ending.len()
                && name.as_bytes()[name.len() - ending.len()..]
                    .eq_ignore_ascii_case(ending.as_bytes())
        })
}

/// Which consumer implementation, and in which performance tier.
///
/// In YAML: `performance_tier: "standard"`, `performance_tier: "dedicated"`,
/// or `performance_tier: {buffered: {batch_size: 32}}`; leave the field out
/// for the legacy `StreamConsumer`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConsumerTier {
    /// One message per wake-up: lowest latency.
    Standard,
    /// Up to `batch_size` ready messages per wake-up: higher throughput at the
    /// same latency under light traffic.
    Buffered {
        /// The most messages taken from librdkafka per wake-up; at least 1.
        #[serde(deserialize_with = "batch_size_at_least_one")]
        batch_size: usize,
    },
    /// A dedicated polling thread feeding a bounded channel: highest throughput.
    Dedicated,
}

impl std::fmt::Display for ConsumerTier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConsumerTier::Standard => f.write_str("standard"),
            ConsumerTier::Buffered { batch_size } => write!(f, "buffered(batch_size={batch_size})"),
            ConsumerTier::Dedicated => f.write_str("dedicated"),
        }
    }
}

fn batch_size_at_least_one<'de, D: Deserializer<'de>>(deserializer: D) -> Result<usize, D::Error> {
    let batch_size = usize::deserialize(deserializer)?;
    if batch_size == 0 {
        return Err(serde::de::Error::invalid_value(
            serde::de::Unexpected::Unsigned(0),
            &"a batch_size of at least 1",
        ));
    }
    Ok(batch_size)
}

/// Where a consumer group without a committed offset starts reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AutoOffsetReset {
    /// From the oldest record still in the partition.
    Earliest,
    /// From the next record written after the consumer joins.
    Latest,
    /// Fail with an error instead of guessing.
    Error,
}

impl AutoOffsetReset {
    fn as_property(self) -> &'static str {
        match self {
            AutoOffsetReset::Earliest => "earliest",
            AutoOffsetReset::Latest => "latest",
            AutoOffsetReset::Error => "error",
        }
    }
}

/// Whether records of open and aborted transactions are delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IsolationLevel {
    /// Only records of committed transactions (librdkafka's default).
    ReadCommitted,
    /// Every record, including those of aborted transactions.
    ReadUncommitted,
}

impl IsolationLevel {
    fn as_property(self) -> &'static str {
        match self {
            IsolationLevel::ReadCommitted => "read_committed",
            IsolationLevel::ReadUncommitted => "read_uncommitted",
        }
    }
}

/// Everything needed to build a consumer, and which implementation to build.
///
/// Typed fields left at `None` keep librdkafka's default. Properties without
/// a typed field go in [`extra`](Self::extra); a property set both ways is an
/// error rather than one silently winning.
///
/// # Examples
///
/// ```
/// use consumer_api::{ConsumerConfig, ConsumerTier};
///
/// let mut config = ConsumerConfig::new("localhost:9092", "billing");
/// config.performance_tier = Some(ConsumerTier::Buffered { batch_size: 64 });
/// config.session_timeout_ms = Some(10_000);
/// config.extra.insert("statistics.interval.ms".into(), "5000".into());
///
/// let client = config.client_config().unwrap();
/// assert_eq!(client.get("session.timeout.ms"), Some("10000"));
///
/// // The same property twice is refused, naming both places.
/// config.extra.insert("session.timeout.ms".into(), "45000".into());
/// let error = config.client_config().unwrap_err();
/// assert!(error.to_string().contains("`session_timeout_ms` and extra property `session.timeout.ms`"));
/// ```
///
/// # Secrets
///
/// `Debug` shows the value of every `extra` property that
/// [`is_secret_property`] names as [`REDACTED`], and so do the errors built
/// from a configuration (see [`ConfigError`]). `Serialize` writes the real
/// values: serializing a configuration is an explicit act, e.g. to hand it
/// to another process, so treat its output as a secret.
///
/// ```
/// use consumer_api::ConsumerConfig;
///
/// let config = ConsumerConfig::new("localhost:9092", "billing")
///     .with_extra("sasl.password", "hunter2");
/// let shown = format!("{config:?}");
/// assert!(shown.contains(r#""sasl.password": "[redacted]""#));
/// assert!(!shown.contains("hunter2"));
/// ```
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct ConsumerConfig {
    /// Bootstrap brokers, `host:port[,host:port...]` (`bootstrap.servers`).
    pub brokers: String,
    /// The consumer group (`group.id`).
    pub group_id: String,
    /// Which implementation: `None` is the legacy `StreamConsumer`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub performance_tier: Option<ConsumerTier>,
    /// `client.id`, shown in broker logs and metrics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// `auto.offset.reset`: where to start without a committed offset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_offset_reset: Option<AutoOffsetReset>,
    /// `enable.auto.commit`: commit stored offsets in the background. Only
    /// offsets of messages the application has received are ever stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable_auto_commit: Option<bool>,
    /// `auto.commit.interval.ms`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_commit_interval_ms: Option<u64>,
    /// `session.timeout.ms`: how long the group waits for a silent member.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_timeout_ms: Option<u64>,
    /// `heartbeat.interval.ms`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heartbeat_interval_ms: Option<u64>,
    /// `max.poll.interval.ms`: the longest the application may go between reads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_poll_interval_ms: Option<u64>,
    /// `fetch.min.bytes`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fetch_min_bytes: Option<u64>,
    /// `fetch.max.bytes`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fetch_max_bytes: Option<u64>,
    /// `fetch.wait.max.ms`: how long the broker may hold a fetch for `fetch.min.bytes`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fetch_wait_max_ms: Option<u64>,
    /// `max.partition.fetch.bytes` (alias `fetch.message.max.bytes`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_partition_fetch_bytes: Option<u64>,
    /// `isolation.level`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub isolation_level: Option<IsolationLevel>,
    /// Whether messages carry their records' headers (`None`: yes). `false`
    /// leaves [`Message::headers`](crate::Message::headers) empty for a
    /// service that never reads them: librdkafka parses a record's header
    /// section on every access, allocating even when the record has no
    /// headers, and that is about a third of the conversion to a `Message`
    /// (see the performance guide). Not a librdkafka property.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_headers: Option<bool>,
    /// The longest a consumer's drop waits for librdkafka's close (leaving
    /// the group, the commit on the last revocation), in milliseconds
    /// (`None`: [`DEFAULT_CLOSE_TIMEOUT`], as the Java `KafkaConsumer`'s
    /// `close()`). When it passes, the drop returns and the close goes on
    /// in the background; see [`close_timeout`](Self::close_timeout). Not a
    /// librdkafka property.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub close_timeout_ms: Option<u64>,
    /// Concurrent processing's settings, for the fast consumer's
    /// `process` (built by `ConsumerFactory::processor`). Not librdkafka
    /// properties.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub processing: Option<crate::ProcessingConfig>,
    /// Metrics through the `metrics` crate facade (the `metrics:` YAML
    /// section); off when `None`. See [`MetricsConfig`]. Not librdkafka
    /// properties, apart from the `statistics.interval.ms` it sets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<MetricsConfig>,
    /// Any other librdkafka property, by its librdkafka name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[serde(deserialize_with = "scalar_map")]
    pub extra: BTreeMap<String, String>,
}

/// Written by hand so that secret `extra` values are shown as [`REDACTED`];
/// the destructuring makes a new field a compile error here until it is shown.
impl std::fmt::Debug for ConsumerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ConsumerConfig {
            brokers,
            group_id,
            performance_tier,
            client_id,
            auto_offset_reset,
            enable_auto_commit,
            auto_commit_interval_ms,
            session_timeout_ms,
            heartbeat_interval_ms,
            max_poll_interval_ms,
            fetch_min_bytes,
            fetch_max_bytes,
            fetch_wait_max_ms,
            max_partition_fetch_bytes,
            isolation_level,
            read_headers,
            close_timeout_ms,
            processing,
            metrics,
            extra,
        } = self;
        let extra: BTreeMap<&str, &str> = extra
            .iter()
            .map(|(property, value)| (property.as_str(), shown_value(property, value)))
            .collect();
        f.debug_struct("ConsumerConfig")
            .field("brokers", brokers)
            .field("group_id", group_id)
            .field("performance_tier", performance_tier)
            .field("client_id", client_id)
            .field("auto_offset_reset", auto_offset_reset)
            .field("enable_auto_commit", enable_auto_commit)
            .field("auto_commit_interval_ms", auto_commit_interval_ms)
            .field("session_timeout_ms", session_timeout_ms)
            .field("heartbeat_interval_ms", heartbeat_interval_ms)
            .field("max_poll_interval_ms", max_poll_interval_ms)
            .field("fetch_min_bytes", fetch_min_bytes)
            .field("fetch_max_bytes", fetch_max_bytes)
            .field("fetch_wait_max_ms", fetch_wait_max_ms)
            .field("max_partition_fetch_bytes", max_partition_fetch_bytes)
            .field("isolation_level", isolation_level)
            .field("read_headers", read_headers)
            .field("close_timeout_ms", close_timeout_ms)
            .field("processing", processing)
            .field("metrics", metrics)
            .field("extra", &extra)
            .finish()
    }
}

/// `value` as it may be printed: [`REDACTED`] when `property` is secret.
pub(crate) fn shown_value<'a>(property: &str, value: &'a str) -> &'a str {
    if is_secret_property(property) {
        REDACTED
    } else {
        value
    }
}

/// librdkafka's property for how often it reports statistics, which the
/// lag gauges are computed from.
const STATISTICS_INTERVAL: &str = "statistics.interval.ms";

/// How often librdkafka reports statistics when metrics are on and neither
/// the `metrics` section nor `extra` say: every 5 s.
pub const DEFAULT_STATISTICS_INTERVAL_MS: u64 = 5_000;

/// The `metrics:` section of a configuration: whether the consumer records
/// metrics through the [`metrics`](https://docs.rs/metrics) crate facade, and
/// how often its lag gauges are refreshed.
///
/// Recording goes to whatever recorder the application installed (a
/// Prometheus exporter, StatsD, OpenTelemetry); with none installed, nothing
/// is kept. The metric names and labels are listed in the observability
/// guide (`docs/observability.md`).
///
/// ```yaml
/// metrics:
///   enabled: true                # the default once the section is present
///   statistics_interval_ms: 5000 # librdkafka's statistics.interval.ms
/// ```
///
/// ```
/// use consumer_api::MetricsConfig;
///
/// let metrics = MetricsConfig::default();
/// assert!(metrics.enabled);
/// assert_eq!(metrics.statistics_interval_ms, None); // 5 s
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct MetricsConfig {
    /// Record metrics (`true` unless set otherwise).
    #[serde(default = "enabled_by_default")]
    pub enabled: bool,
    /// librdkafka's `statistics.interval.ms`: how often the lag gauges are
    /// refreshed (`None`: [`DEFAULT_STATISTICS_INTERVAL_MS`]). An `extra`
    /// `statistics.interval.ms` wins over it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub statistics_interval_ms: Option<u64>,
}

fn enabled_by_default() -> bool {
    true
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            enabled: true,
            statistics_interval_ms: None,
        }
    }
}

impl MetricsConfig {
    /// Metrics with the lag gauges refreshed every `interval` (builder
    /// style).
    #[must_use]
    pub fn with_statistics_interval(mut self, interval: Duration) -> Self {
        self.statistics_interval_ms = Some(u64::try_from(interval.as_millis()).unwrap_or(u64::MAX));
        self
    }

    fn validate(&self, config: &ConsumerConfig) -> Result<(), ConfigError> {
        if self.statistics_interval_ms == Some(0) && self.enabled {
            return Err(ConfigError::Invalid {
                field: "metrics.statistics_interval_ms".to_owned(),
                value: "0".to_owned(),
                reason: "0 turns librdkafka's statistics off, and with them the lag gauges"
                    .to_owned(),
            });
        }
        if self.enabled
            && let Some(value) = config.extra.get(STATISTICS_INTERVAL)
            && value.parse::<u64>().map_or(true, |ms| ms == 0)
        {
            return Err(ConfigError::Invalid {
                field: STATISTICS_INTERVAL.to_owned(),
                value: value.clone(),
                reason: "with metrics on it must be a positive number of milliseconds (the lag gauges are computed from librdkafka's statistics)".to_owned(),
            });
        }
        Ok(())
    }
}

/// librdkafka properties that mean the same thing under two names.
const ALIASES: &[(&str, &str)] = &[
    ("bootstrap.servers", "metadata.broker.list"),
    ("max.partition.fetch.bytes", "fetch.message.max.bytes"),
];

/// librdkafka pauses fetching for this long once its local queue holds
/// `queued.min.messages`; its default (1 s) starves a consumer that does real
/// work per message (measured by `cargo xtask bench`: backlog throughput drops
/// to about a fifth). Overridable through `extra`.
const FETCH_QUEUE_BACKOFF: &str = "fetch.queue.backoff.ms";
const DEFAULT_FETCH_QUEUE_BACKOFF_MS: &str = "10";

/// Properties tiered-kafka sets itself, and why.
const RESERVED: &[(&str, &str)] = &[(
    "enable.auto.offset.store",
    "tiered-kafka stores an offset only after the application has received its message",
)];

impl ConsumerConfig {
    /// A configuration with the given brokers and group and librdkafka's
    /// defaults for everything else; the legacy consumer unless
    /// [`performance_tier`](Self::performance_tier) is set.
    pub fn new(brokers: impl Into<String>, group_id: impl Into<String>) -> Self {
        ConsumerConfig {
            brokers: brokers.into(),
            group_id: group_id.into(),
            performance_tier: None,
            client_id: None,
            auto_offset_reset: None,
            enable_auto_commit: None,
            auto_commit_interval_ms: None,
            session_timeout_ms: None,
            heartbeat_interval_ms: None,
            max_poll_interval_ms: None,
            fetch_min_bytes: None,
            fetch_max_bytes: None,
            fetch_wait_max_ms: None,
            max_partition_fetch_bytes: None,
            isolation_level: None,
            read_headers: None,
            close_timeout_ms: None,
            processing: None,
            metrics: None,
            extra: BTreeMap::new(),
        }
    }

    /// Whether messages carry their records' headers: unless
    /// [`read_headers`](Self::read_headers) is `Some(false)`.
    pub fn reads_headers(&self) -> bool {
        self.read_headers != Some(false)
    }

    /// How long a consumer's drop waits for librdkafka's close:
    /// [`close_timeout_ms`](Self::close_timeout_ms), or
    /// [`DEFAULT_CLOSE_TIMEOUT`].
    ///
    /// Dropping a consumer leaves its group: librdkafka serves the last
    /// revocation (the revoked partitions' commit) and sends `LeaveGroup`,
    /// which takes milliseconds with a healthy broker. With the coordinator
    /// gone or frozen it could take until it answers; after this long the
    /// drop returns, and the close finishes on a thread of its own (named
    /// `kafka-close`), which ends when librdkafka's close does. Its group
    /// then sees this member leave by `session.timeout.ms` at the latest.
    ///
    /// ```
    /// use std::time::Duration;
    /// use consumer_api::{ConsumerConfig, DEFAULT_CLOSE_TIMEOUT};
    ///
    /// let mut config = ConsumerConfig::new("localhost:9092", "billing");
    /// assert_eq!(config.close_timeout(), DEFAULT_CLOSE_TIMEOUT);
    /// config.close_timeout_ms = Some(5_000);
    /// assert_eq!(config.close_timeout(), Duration::from_secs(5));
    /// ```
    pub fn close_timeout(&self) -> Duration {
        self.close_timeout_ms
            .map_or(DEFAULT_CLOSE_TIMEOUT, Duration::from_millis)
    }

    /// Sets the performance tier (builder style).
    pub fn with_tier(mut self, tier: ConsumerTier) -> Self {
        self.performance_tier = Some(tier);
        self
    }

    /// Adds an extra librdkafka property (builder style).
    pub fn with_extra(mut self, property: impl Into<String>, value: impl Into<String>) -> Self {
        self.extra.insert(property.into(), value.into());
        self
    }

    /// Turns metrics on with these settings (builder style): see
    /// [`MetricsConfig`].
    ///
    /// ```
    /// use consumer_api::{ConsumerConfig, MetricsConfig};
    ///
    /// let config = ConsumerConfig::new("localhost:9092", "billing")
    ///     .with_metrics(MetricsConfig::default());
    /// let client = config.client_config()?;
    /// assert_eq!(client.get("statistics.interval.ms"), Some("5000"));
    /// # Ok::<(), consumer_api::ConfigError>(())
    /// ```
    #[must_use]
    pub fn with_metrics(mut self, metrics: MetricsConfig) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Whether the consumer records metrics: a [`metrics`](Self::metrics)
    /// section that is `enabled`.
    pub fn metrics_enabled(&self) -> bool {
        self.metrics.as_ref().is_some_and(|metrics| metrics.enabled)
    }

    /// librdkafka's `statistics.interval.ms` for this consumer: an `extra`
    /// `statistics.interval.ms` wins, then the `metrics` section's, then
    /// [`DEFAULT_STATISTICS_INTERVAL_MS`].
    fn statistics_interval_ms(&self) -> u64 {
        self.extra
            .get(STATISTICS_INTERVAL)
            .and_then(|value| value.parse().ok())
            .or_else(|| self.metrics.as_ref()?.statistics_interval_ms)
            .unwrap_or(DEFAULT_STATISTICS_INTERVAL_MS)
    }

    /// The typed fields as librdkafka properties: `(field, property, value)`.
    fn typed_properties(&self) -> Vec<(&'static str, &'static str, String)> {
        let mut properties = vec![
            ("brokers", "bootstrap.servers", self.brokers.clone()),
            ("group_id", "group.id", self.group_id.clone()),
        ];
        let mut set = |field, property, value: Option<String>| {
            if let Some(value) = value {
                properties.push((field, property, value));
            }
        };
        set("client_id", "client.id", self.client_id.clone());
        set(
            "auto_offset_reset",
            "auto.offset.reset",
            self.auto_offset_reset.map(|v| v.as_property().to_owned()),
        );
        set(
            "enable_auto_commit",
            "enable.auto.commit",
            self.enable_auto_commit.map(|v| v.to_string()),
        );
        let numbers = [
            (
                "auto_commit_interval_ms",
                "auto.commit.interval.ms",
                self.auto_commit_interval_ms,
            ),
            (
                "session_timeout_ms",
                "session.timeout.ms",
                self.session_timeout_ms,
            ),
            (
                "heartbeat_interval_ms",
                "heartbeat.interval.ms",
                self.heartbeat_interval_ms,
            ),
            (
                "max_poll_interval_ms",
                "max.poll.interval.ms",
                self.max_poll_interval_ms,
            ),
            ("fetch_min_bytes", "fetch.min.bytes", self.fetch_min_bytes),
            ("fetch_max_bytes", "fetch.max.bytes", self.fetch_max_bytes),
            (
                "fetch_wait_max_ms",
                "fetch.wait.max.ms",
                self.fetch_wait_max_ms,
            ),
            (
                "max_partition_fetch_bytes",
                "max.partition.fetch.bytes",
                self.max_partition_fetch_bytes,
            ),
        ];
        for (field, property, value) in numbers {
            set(field, property, value.map(|v| v.to_string()));
        }
        set(
            "isolation_level",
            "isolation.level",
            self.isolation_level.map(|v| v.as_property().to_owned()),
        );
        properties
    }

    /// Checks what can be checked without a broker.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the first field at fault: empty `brokers` or
    /// `group_id`, a `batch_size` of 0, a typed field and an `extra` property
    /// setting the same librdkafka property, or an `extra` property that
    /// tiered-kafka manages itself. Unknown librdkafka properties are reported
    /// by librdkafka when the consumer is created.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (field, value) in [("brokers", &self.brokers), ("group_id", &self.group_id)] {
            if value.trim().is_empty() {
                return Err(ConfigError::Invalid {
                    field: field.to_owned(),
                    value: value.clone(),
                    reason: "must not be empty".to_owned(),
                });
            }
        }
        if let Some(processing) = &self.processing {
            processing.validate()?;
        }
        if let Some(metrics) = &self.metrics {
            metrics.validate(self)?;
        }
        if let Some(ConsumerTier::Buffered { batch_size: 0 }) = self.performance_tier {
            return Err(ConfigError::Invalid {
                field: "performance_tier.buffered.batch_size".to_owned(),
                value: "0".to_owned(),
                reason: "a batch holds at least 1 message".to_owned(),
            });
        }
        for (property, reason) in RESERVED {
            if self.extra.contains_key(*property) {
                return Err(ConfigError::Reserved {
                    property: (*property).to_owned(),
                    reason: (*reason).to_owned(),
                });
            }
        }
        for (field, property, field_value) in self.typed_properties() {
            let names = ALIASES
                .iter()
                .find(|(name, alias)| *name == property || *alias == property)
                .map_or_else(|| vec![property], |(name, alias)| vec![*name, *alias]);
            for name in names {
                if let Some(extra_value) = self.extra.get(name) {
                    return Err(ConfigError::Conflict {
                        field: field.to_owned(),
                        property: name.to_owned(),
                        field_value,
                        extra_value: extra_value.clone(),
                    });
                }
            }
        }
        Ok(())
    }

    /// The librdkafka client configuration for this consumer: the typed
    /// fields, the `extra` properties, `enable.auto.offset.store=false`
    /// (offsets are stored only for messages the application has received),
    /// and `fetch.queue.backoff.ms=10` unless `extra` sets it (librdkafka's
    /// 1 s default pauses fetching whenever the local queue is full, which
    /// costs a typed consumer most of its backlog throughput).
    ///
    /// # Errors
    ///
    /// What [`validate`](Self::validate) finds.
    pub fn client_config(&self) -> Result<ClientConfig, ConfigError> {
        self.validate()?;
        let mut client = ClientConfig::new();
        for (_, property, value) in self.typed_properties() {
            client.set(property, value);
        }
        for (property, value) in &self.extra {
            client.set(property, value);
        }
        client.set("enable.auto.offset.store", "false");
        if !self.extra.contains_key(FETCH_QUEUE_BACKOFF) {
            client.set(FETCH_QUEUE_BACKOFF, DEFAULT_FETCH_QUEUE_BACKOFF_MS);
        }
        if let Some(interval) = self
            .metrics_enabled()
            .then(|| self.statistics_interval_ms())
        {
            client.set(STATISTICS_INTERVAL, interval.to_string());
        }
        Ok(client)
    }
}

impl ConsumerConfig {
    /// Creates an rdkafka client (a `BaseConsumer` or `StreamConsumer`) with
    /// this configuration and the given context.
    ///
    /// # Errors
    ///
    /// What [`validate`](Self::validate) finds; a property librdkafka rejects
    /// (unknown name, bad value) as [`ConfigError::Invalid`] naming it; any
    /// other failure to create the client as [`ConsumerError::Kafka`]. The
    /// value of a secret property appears in neither: see
    /// [`redact`](Self::redact).
    pub fn create_with_context<C, T>(&self, context: C) -> Result<T, ConsumerError>
    where
        C: ClientContext,
        T: FromClientConfigAndContext<C>,
    {
        self.client_config()?
            .create_with_context(context)
            .map_err(|error| self.client_error(error))
    }

    /// The error librdkafka gave when creating a client from this
    /// configuration (or from properties taken from it, such as a
    /// dead-letter producer's), as [`create_with_context`](Self::create_with_context)
    /// reports it: a refused property as [`ConfigError::Invalid`] naming it,
    /// anything else as [`ConsumerError::Kafka`], the value of every secret
    /// property redacted (see [`redact`](Self::redact)).
    ///
    /// ```
    /// use consumer_api::{ConsumerConfig, REDACTED};
    /// use rdkafka::ClientConfig;
    /// use rdkafka::producer::FutureProducer;
    ///
    /// let config = ConsumerConfig::new("localhost:9092", "billing")
    ///     .with_extra("ssl.my.secret", "hunter2");
    /// let refused = ClientConfig::new()
    ///     .set("ssl.my.secret", "hunter2")
    ///     .create::<FutureProducer>()
    ///     .err()
    ///     .expect("librdkafka does not know the property");
    /// let error = config.client_error(refused);
    /// assert!(error.to_string().contains(REDACTED));
    /// assert!(!error.to_string().contains("hunter2"));
    /// ```
    pub fn client_error(&self, error: KafkaError) -> ConsumerError {
        match self.redact_kafka_error(error) {
            KafkaError::ClientConfig(_, reason, property, value) => {
                ConsumerError::Config(ConfigError::Invalid {
                    field: property,
                    value,
                    reason,
                })
            }
            other => ConsumerError::from(other),
        }
    }

    /// `text` with the value of every secret `extra` property of this
    /// configuration (see [`is_secret_property`]) replaced by [`REDACTED`]:
    /// for a message from librdkafka or the operating system about this
    /// configuration, before it is logged or returned.
    ///
    /// ```
    /// use consumer_api::ConsumerConfig;
    ///
    /// let config = ConsumerConfig::new("localhost:9092", "billing")
    ///     .with_extra("ssl.key.password", "hunter2");
    /// assert_eq!(
    ///     config.redact("cannot decrypt the key with hunter2"),
    ///     "cannot decrypt the key with [redacted]"
    /// );
    /// ```
    pub fn redact(&self, text: &str) -> String {
        let mut secrets: Vec<&str> = self
            .extra
            .iter()
            .filter(|(property, value)| is_secret_property(property) && !value.is_empty())
            .map(|(_, value)| value.as_str())
            .collect();
        // The longest first, so that a secret containing another is
        // replaced whole.
        secrets.sort_by_key(|secret| std::cmp::Reverse(secret.len()));
        secrets.into_iter().fold(text.to_owned(), |text, secret| {
            text.replace(secret, REDACTED)
        })
    }

    /// `error` with what it quotes of this configuration's secrets redacted:
    /// the value (and its echo in the description) of a secret property
    /// librdkafka rejected, and any secret value in a configuration or
    /// client-creation error's text.
    fn redact_kafka_error(&self, error: KafkaError) -> KafkaError {
        match crate::error::redact_kafka_error(error) {
            KafkaError::ClientConfig(code, reason, property, value) => {
                // A property librdkafka does not know may be a misspelt
                // secret (`sasl.pasword`) or another client's (the Java
                // client's `sasl.jaas.config`): its value is shown only when
                // its name says nothing of credentials (`fetch.tunrbo=1`).
                let value = if code == rdkafka::types::RDKafkaConfRes::RD_KAFKA_CONF_UNKNOWN
                    && may_name_a_credential(&property)
                {
                    REDACTED.to_owned()
                } else {
                    self.redact(&value)
                };
                KafkaError::ClientConfig(code, self.redact(&reason), property, value)
            }
            KafkaError::ClientCreation(reason) => KafkaError::ClientCreation(self.redact(&reason)),
            other => other,
        }
    }
}

/// Whether an unknown property's name may be a credential's, misspelt or
/// another client's: it mentions SASL, a password, a secret, a key, a token,
/// a credential or authentication (ignoring ASCII case).
fn may_name_a_credential(property: &str) -> bool {
    let name = property.to_ascii_lowercase();
    [
        "sasl", "pass", "secret", "key", "jaas", "token", "cred", "auth",
    ]
    .iter()
    .any(|word| name.contains(word))
}

/// `text` with every occurrence of the secret `value` replaced by
/// [`REDACTED`] (an empty value occurs nowhere).
pub(crate) fn redact_value_in(text: &str, value: &str) -> String {
    if value.is_empty() {
        text.to_owned()
    } else {
        text.replace(value, REDACTED)
    }
}

/// `extra` values may be written as YAML strings, numbers or booleans.
fn scalar_map<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<BTreeMap<String, String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Scalar {
        Text(String),
        Integer(i64),
        Float(f64),
        Bool(bool),
    }
    let map = BTreeMap::<String, Scalar>::deserialize(deserializer)?;
    Ok(map
        .into_iter()
        .map(|(key, value)| {
            let value = match value {
                Scalar::Text(text) => text,
                Scalar::Integer(n) => n.to_string(),
                Scalar::Float(x) => x.to_string(),
                Scalar::Bool(b) => b.to_string(),
            };
            (key, value)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use rdkafka::consumer::{BaseConsumer, DefaultConsumerContext};

    use super::*;

    const SECRET: &str = "s3cr3t-Zq81-never-print";

    #[test]
    fn secret_properties_are_the_list_and_the_name_rule() {
        for name in SECRET_PROPERTIES {
            assert!(is_secret_property(name), "{name}");
        }
        for name in [
            "SASL.PASSWORD",
            " sasl.password ",
            "my.plugin.password",
            "x.client.SECRET",
            "key.passphrase",
        ] {
            assert!(is_secret_property(name), "{name}");
        }
        for name in [
            "ssl.certificate.pem",
            "ssl.certificate.location",
            "sasl.kerberos.keytab",
            "sasl.mechanisms",
            "bootstrap.servers",
            "sasl.password_file",
            "",
        ] {
            assert!(!is_secret_property(name), "{name}");
        }
    }

    #[test]
    fn debug_redacts_secret_values_and_keeps_the_rest() {
        let config = ConsumerConfig::new("b:9092", "g")
            .with_extra("sasl.password", SECRET)
            .with_extra("ssl.key.pem", SECRET)
            .with_extra("sasl.mechanisms", "PLAIN");
        for shown in [format!("{config:?}"), format!("{config:#?}")] {
            assert!(!shown.contains(SECRET), "{shown}");
            assert!(shown.contains("sasl.password"), "{shown}");
            assert!(shown.contains("\"PLAIN\""), "{shown}");
            assert!(shown.contains("group_id: \"g\""), "{shown}");
        }
    }

    #[test]
    fn redact_replaces_every_secret_value_longest_first() {
        let config = ConsumerConfig::new("b:9092", "g")
            .with_extra("sasl.password", "abc")
            .with_extra("ssl.key.password", "abcdef")
            .with_extra("sasl.mechanisms", "PLAIN")
            .with_extra("ssl.keystore.password", "");
        assert_eq!(
            config.redact("abcdef, abc, PLAIN"),
            "[redacted], [redacted], PLAIN"
        );
    }

    #[test]
    fn a_refused_secret_property_is_named_and_redacted() {
        let config =
            ConsumerConfig::new("127.0.0.1:1", "g").with_extra("my.plugin.password", SECRET);
        let error = config
            .create_with_context::<_, BaseConsumer>(DefaultConsumerContext)
            .err()
            .expect("librdkafka does not know the property");
        let ConsumerError::Config(ConfigError::Invalid { field, value, .. }) = &error else {
            panic!("expected ConfigError::Invalid, got {error:?}");
        };
        assert_eq!(
            (field.as_str(), value.as_str()),
            ("my.plugin.password", REDACTED)
        );
        for shown in [error.to_string(), format!("{error:?}")] {
            assert!(!shown.contains(SECRET), "{shown}");
            assert!(shown.contains("my.plugin.password"), "{shown}");
        }
    }

    /// Found by the review of the secrets change: librdkafka quoted the
    /// value of a property it does not know, and these names are not
    /// secret by the list or the name rule (a typo such as `fetch.tunrbo`
    /// still shows its value: `reliability_bad_input`). Before the fix:
    /// `Invalid value "x sasl.pasword=hunter2 x" for sasl.pasword`.
    #[test]
    fn an_unknown_property_never_shows_its_value() {
        for property in ["sasl.jaas.config", "ssl.keystore.key", "sasl.pasword"] {
            let config = ConsumerConfig::new("127.0.0.1:1", "g")
                .with_extra(property, format!("password=\"{SECRET}\";"));
            let error = config
                .create_with_context::<_, BaseConsumer>(DefaultConsumerContext)
                .err()
                .expect("librdkafka does not know the property");
            for shown in [error.to_string(), format!("{error:?}")] {
                assert!(!shown.contains(SECRET), "{property}: {shown}");
                assert!(shown.contains(property), "{property}: {shown}");
            }
        }
    }
}
