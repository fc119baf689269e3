//! A Kafka broker and helpers for tiered-kafka's tests.
//!
//! [`KafkaTestEnv`] gives a test a broker, chosen by the environment variable
//! `KAFKA_TEST_BROKER`, plus what every test needs around it: unique topic
//! and group names, topic creation that waits until the topic is usable,
//! synchronous producing that checks every delivery report, and client
//! configurations pointing at the broker.
//!
//! # Tour
//!
//! - [`KafkaTestEnv::from_env`] picks the broker; [`KafkaTestEnv::mock`] and
//!   [`KafkaTestEnv::external`] pick one in code.
//! - [`KafkaTestEnv::create_topic`], [`KafkaTestEnv::unique_topic`] and
//!   [`KafkaTestEnv::unique_group`] prepare a test's own topic and group.
//! - [`KafkaTestEnv::produce_test_messages`] and [`KafkaTestEnv::produce`]
//!   (with [`TestRecord`]) write records and return a [`ProducedRecord`]
//!   (partition and offset) per record.
//! - [`KafkaTestEnv::consumer_config`] and [`KafkaTestEnv::client_config`]
//!   give rdkafka configurations for the client under test.
//! - [`SecuredBroker`] (from [`SecuredBroker::from_env`] or
//!   [`KafkaTestEnv::secured`]) gives the TLS, SASL and mTLS listeners of
//!   the local broker started with `cargo xtask kafka start --secure`, with
//!   ready librdkafka properties per [`SaslMechanism`] and user.
//! - [`KafkaCluster`] (from [`KafkaTestEnv::cluster`]) controls the nodes of
//!   the three-node cluster of `cargo xtask kafka start --nodes 3`: who leads
//!   a partition, who coordinates a group, a node killed or stopped and
//!   started again with its data, waiting until the cluster is healthy.
//!
//! # Brokers (`KAFKA_TEST_BROKER`)
//!
//! | value | broker |
//! | --- | --- |
//! | unset, empty or `mock` | librdkafka's in-process mock cluster, one broker (the default) |
//! | `local` | the Apache Kafka started by `cargo xtask kafka start`; its address is read from `target/kafka/bootstrap.txt` |
//! | `cluster` | the three-node Apache Kafka cluster started by `cargo xtask kafka start --nodes 3`, described by `target/kafka-cluster/cluster.json`; topics are created with replication factor 3, the env's producer is idempotent |
//! | `docker` | Kafka in Docker via testcontainers; needs the `docker` feature and a Docker engine |
//! | `host:port[,host:port…]` | an external broker |
//!
//! Anything else is an error naming the value ([`BrokerChoice::parse`]). A
//! broker that was asked for but is not there is an error too, never a
//! silent skip.
//!
//! # Secured listeners
//!
//! Only the `local` broker has them, and only when started with
//! `cargo xtask kafka start --secure` (as `cargo xtask test` does): see
//! [`SecuredBroker`] for the listeners, users and ACLs. Its topics are
//! created and filled over the PLAINTEXT listener
//! ([`SecuredBroker::plaintext_env`]) and consumed over the secured ones.
//! [`SecuredBroker::from_env`] is `None` for the other brokers, so such
//! tests return early in the mock phase.
//!
//! # The mock cluster's limits
//!
//! - It has no admin API (CreateTopics, DeleteTopics): [`create_topic`]
//!   uses the mock's own topic creation, and [`delete_topic`] returns
//!   [`TestEnvError::Unsupported`].
//! - It keeps only about **5 MB per partition** (and at most 100,000 message
//!   sets): older data is dropped silently and the log start offset moves. Keep
//!   a test's data per partition well below that, or use a real broker.
//! - Its group coordinator normally delays the first rebalance of a group by
//!   3 s (`group.initial.rebalance.delay.ms`); this crate sets that delay to
//!   0 through `rd_kafka_mock_group_initial_rebalance_delay_ms`.
//! - Dropping the env stops the mock brokers. Clients still connected then
//!   do not crash, but they log connection errors and a consumer's close may
//!   wait for its timeouts: drop consumers and producers before the env.
//!
//! # Threads and blocking
//!
//! [`KafkaTestEnv`] is `Send + Sync`: share it with `Arc` to run consumers on
//! other threads. All its methods block the calling thread and need no async
//! runtime, so they work in plain `#[test]`s and in `#[tokio::test]`s alike
//! (inside a current-thread runtime they hold up that runtime while they run).
//!
//! # Features
//!
//! - `docker`: enables `KAFKA_TEST_BROKER=docker` (pulls in
//!   `testcontainers-modules`).
//!
//! # Examples
//!
//! ```
//! use std::time::{Duration, Instant};
//!
//! use kafka_test_env::KafkaTestEnv;
//! use rdkafka::Message;
//! use rdkafka::consumer::{BaseConsumer, Consumer};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let env = KafkaTestEnv::from_env()?; // the mock cluster unless KAFKA_TEST_BROKER says otherwise
//! let topic = env.unique_topic("doc-example");
//! env.create_topic(&topic, 2)?;
//! let produced = env.produce_test_messages(&topic, 10)?;
//! assert_eq!(produced.len(), 10);
//!
//! let consumer: BaseConsumer = env.consumer_config(&env.unique_group("doc-example")).create()?;
//! consumer.subscribe(&[&topic])?;
//! let deadline = Instant::now() + Duration::from_secs(30);
//! let mut received = 0;
//! while received < produced.len() && Instant::now() < deadline {
//!     if let Some(message) = consumer.poll(Duration::from_millis(100)) {
//!         assert!(message?.payload().is_some());
//!         received += 1;
//!     }
//! }
//! assert_eq!(received, produced.len());
//! drop(consumer); // clients before the env
//! # Ok(())
//! # }
//! ```
//!
//! [`create_topic`]: KafkaTestEnv::create_topic
//! [`delete_topic`]: KafkaTestEnv::delete_topic

mod choice;
mod cluster;
#[cfg(feature = "docker")]
mod docker;
mod error;
mod local;
mod mock;
mod outage;
mod produce;
mod record;
mod secured;
mod topics;

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rdkafka::admin::TopicReplication;
use rdkafka::config::ClientConfig;

pub use crate::choice::{BROKER_ENV_VAR, BrokerChoice, BrokerKind};
pub use crate::cluster::{KafkaCluster, NodeOutage, OFFSETS_TOPIC, offsets_partition};
pub use crate::error::TestEnvError;
pub use crate::outage::{BrokerFreeze, BrokerOutage, BrokerSlowdown};
pub use crate::record::{ProducedRecord, TestRecord};
pub use crate::secured::{SaslMechanism, SecuredBroker, SecuredUser, client_config};

use crate::mock::MockBroker;
use crate::produce::EnvProducer;
use crate::topics::TopicAdmin;

/// Longest topic name Kafka accepts.
const MAX_TOPIC_NAME_LEN: usize = 249;

/// The broker process or object an env owns, if any.
enum Backend {
    /// The env owns the mock cluster.
    Mock(MockBroker),
    /// The env owns the container; held only to be dropped with the env.
    #[cfg(feature = "docker")]
    Docker {
        _container: Box<docker::DockerBroker>,
    },
    /// Somebody else runs the broker (`local` or external).
    Remote,
    /// The three-node cluster of `cargo xtask kafka start --nodes 3`, as its
    /// `cluster.json` describes it.
    Cluster(cluster::ClusterSpec),
}

/// A broker for one test (or several) and helpers around it.
///
/// Create one per test with [`from_env`](Self::from_env) (or share one
/// through `Arc`); the producer and admin client it uses are created on first
/// use and kept. Dropping the env drops them, then the broker if the env owns
/// it (mock cluster, Docker container). Drop your own clients first.
///
/// See the [crate docs](crate) for the broker choices and the mock cluster's
/// limits.
pub struct KafkaTestEnv {
    // Field order is drop order: clients before the broker they talk to.
    producer: OnceLock<EnvProducer>,
    admin: OnceLock<TopicAdmin>,
    kind: BrokerKind,
    backend: Backend,
}

impl std::fmt::Debug for KafkaTestEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaTestEnv")
            .field("kind", &self.kind)
            .field("producer_started", &self.producer.get().is_some())
            .field("admin_started", &self.admin.get().is_some())
            .finish_non_exhaustive()
    }
}

impl KafkaTestEnv {
    /// The broker named by `KAFKA_TEST_BROKER` (the mock cluster when unset).
    ///
    /// # Panics
    ///
    /// With the error's text when [`from_env`](Self::from_env) fails, so a
    /// test that cannot get its broker fails and says why.
    #[expect(
        clippy::new_without_default,
        reason = "construction starts or probes a broker and may panic; not a default value"
    )]
    #[track_caller]
    pub fn new() -> Self {
        match Self::from_env() {
            Ok(env) => env,
            Err(error) => panic!("{error}"),
        }
    }

    /// The broker named by `KAFKA_TEST_BROKER`; see the [crate docs](crate)
    /// for the accepted values.
    ///
    /// # Errors
    ///
    /// An unknown value, or the named broker not being available (no local
    /// Kafka running, no Docker, the mock cluster failing to start).
    pub fn from_env() -> Result<Self, TestEnvError> {
        Self::from_choice(&choice_from_env()?)
    }

    /// The broker for an already parsed choice.
    ///
    /// # Errors
    ///
    /// As [`from_env`](Self::from_env), for the named broker.
    pub fn from_choice(choice: &BrokerChoice) -> Result<Self, TestEnvError> {
        match choice {
            BrokerChoice::Mock => Self::mock(),
            BrokerChoice::Local => Self::local(),
            BrokerChoice::Cluster => Self::cluster_env(),
            BrokerChoice::Docker => Self::docker(),
            BrokerChoice::External(bootstrap) => Self::external(bootstrap),
        }
    }

    /// A new librdkafka mock cluster with one broker, owned by the env.
    ///
    /// # Errors
    ///
    /// [`TestEnvError::MockStart`] when librdkafka cannot start it.
    pub fn mock() -> Result<Self, TestEnvError> {
        let broker = MockBroker::start(1)?;
        let kind = BrokerKind::Mock {
            bootstrap: broker.bootstrap().to_owned(),
        };
        Ok(Self::with_backend(kind, Backend::Mock(broker)))
    }

    /// Makes the mock cluster fail the next `errors.len()` requests of `api`,
    /// in order, with these errors (librdkafka's per-request fault
    /// injection), e.g. `OffsetCommit` during a revocation.
    ///
    /// # Errors
    ///
    /// [`TestEnvError::Unsupported`] for any broker but the mock cluster.
    pub fn fail_requests(
        &self,
        api: rdkafka::types::RDKafkaApiKey,
        errors: &[rdkafka::types::RDKafkaRespErr],
    ) -> Result<(), TestEnvError> {
        match &self.backend {
            Backend::Mock(mock) => {
                mock.fail_requests(api, errors);
                Ok(())
            }
            _ => Err(TestEnvError::Unsupported {
                operation: "fail_requests",
                broker: self.kind.to_string(),
            }),
        }
    }

    /// The Apache Kafka started by `cargo xtask kafka start`.
    ///
    /// # Errors
    ///
    /// [`TestEnvError::LocalBrokerNotRunning`] when its bootstrap file is
    /// missing or nothing accepts connections at the address it names.
    pub fn local() -> Result<Self, TestEnvError> {
        let bootstrap = local::discover()?;
        Ok(Self::with_backend(
            BrokerKind::Local { bootstrap },
            Backend::Remote,
        ))
    }

    /// The three-node Apache Kafka cluster started by `cargo xtask kafka
    /// start --nodes 3`; [`cluster`](Self::cluster) then controls its nodes.
    ///
    /// # Errors
    ///
    /// [`TestEnvError::ClusterNotRunning`] when its `cluster.json` is missing
    /// or unreadable, or no node accepts connections.
    pub fn cluster_env() -> Result<Self, TestEnvError> {
        let spec = cluster::discover()?;
        Ok(Self::with_backend(
            BrokerKind::Cluster {
                bootstrap: spec.bootstrap.clone(),
            },
            Backend::Cluster(spec),
        ))
    }

    /// Control over the nodes of the three-node cluster, when this env is
    /// on it (`KAFKA_TEST_BROKER=cluster`); `None` for every other broker,
    /// so that a cluster test can say so and return.
    pub fn cluster(&self) -> Option<KafkaCluster<'_>> {
        match &self.backend {
            Backend::Cluster(spec) => Some(KafkaCluster::new(self, spec)),
            _ => None,
        }
    }

    /// The secured listeners of this env's broker: only the local Apache
    /// Kafka has them, when started with `cargo xtask kafka start --secure`.
    /// See [`SecuredBroker`].
    ///
    /// # Errors
    ///
    /// [`TestEnvError::Unsupported`] for any broker but the local one;
    /// [`TestEnvError::SecuredBrokerNotRunning`] when the local broker has no
    /// secured listeners, or its `secure.json` describes another broker than
    /// this env's.
    pub fn secured(&self) -> Result<SecuredBroker, TestEnvError> {
        let BrokerKind::Local { bootstrap } = &self.kind else {
            return Err(TestEnvError::Unsupported {
                operation: "secured",
                broker: self.kind.to_string(),
            });
        };
        let secured = SecuredBroker::local()?;
        if secured.plaintext_bootstrap() != bootstrap {
            return Err(TestEnvError::SecuredBrokerNotRunning {
                detail: format!(
                    "{} describes the broker at {}, but this env uses the one at {bootstrap} \
                     (restarted since?)",
                    secured.file().display(),
                    secured.plaintext_bootstrap()
                ),
            });
        }
        Ok(secured)
    }

    /// A new Kafka container (testcontainers' `apache/kafka-native`), owned
    /// by the env. Needs the `docker` feature and a Docker engine.
    ///
    /// # Errors
    ///
    /// [`TestEnvError::DockerFeatureDisabled`] without the feature,
    /// [`TestEnvError::DockerUnavailable`] when the container cannot start.
    pub fn docker() -> Result<Self, TestEnvError> {
        #[cfg(feature = "docker")]
        {
            let (broker, bootstrap) = docker::DockerBroker::start()?;
            Ok(Self::with_backend(
                BrokerKind::Docker { bootstrap },
                Backend::Docker {
                    _container: Box::new(broker),
                },
            ))
        }
        #[cfg(not(feature = "docker"))]
        {
            Err(TestEnvError::DockerFeatureDisabled)
        }
    }

    /// An external broker at `bootstrap` (`host:port` or a comma-separated
    /// list). Nothing is checked until the first request.
    ///
    /// # Errors
    ///
    /// [`TestEnvError::InvalidArgument`] for an empty bootstrap list.
    pub fn external(bootstrap: &str) -> Result<Self, TestEnvError> {
        let bootstrap = bootstrap.trim();
        if bootstrap.is_empty() {
            return Err(TestEnvError::InvalidArgument {
                message: "the external broker's bootstrap list is empty".to_owned(),
            });
        }
        Ok(Self::with_backend(
            BrokerKind::External {
                bootstrap: bootstrap.to_owned(),
            },
            Backend::Remote,
        ))
    }

    fn with_backend(kind: BrokerKind, backend: Backend) -> Self {
        tracing::info!(broker = %kind, "Kafka test environment ready");
        Self {
            producer: OnceLock::new(),
            admin: OnceLock::new(),
            kind,
            backend,
        }
    }

    /// Which broker this env uses, with its address. Its `Display` is meant
    /// for test output.
    pub fn kind(&self) -> &BrokerKind {
        &self.kind
    }

    /// The broker's bootstrap servers, for `bootstrap.servers`.
    pub fn bootstrap_servers(&self) -> String {
        self.kind.bootstrap().to_owned()
    }

    /// A topic name unique in this process and across runs:
    /// `{prefix}-{pid}-{time}-{counter}`, with characters Kafka does not
    /// allow in topic names replaced by `-`.
    pub fn unique_topic(&self, prefix: &str) -> String {
        unique_name(prefix)
    }

    /// A consumer group id, unique like [`unique_topic`](Self::unique_topic).
    pub fn unique_group(&self, prefix: &str) -> String {
        unique_name(prefix)
    }

    /// Creates a topic with replication factor 1 (3 on the cluster) and waits
    /// (up to 30 s) until the broker's metadata shows all its partitions with
    /// a leader.
    ///
    /// A topic that already exists with the same partition count is fine. On
    /// the mock cluster, which has no CreateTopics API, the topic is created
    /// through the mock's own API.
    ///
    /// # Errors
    ///
    /// [`TestEnvError::InvalidArgument`] for fewer than 1 partition or an
    /// illegal name, [`TestEnvError::CreateTopic`] when the broker refuses,
    /// [`TestEnvError::PartitionCountMismatch`] when it exists with another
    /// partition count, [`TestEnvError::TopicNotReady`] after the wait.
    pub fn create_topic(&self, name: &str, partitions: i32) -> Result<(), TestEnvError> {
        let replication = match &self.backend {
            Backend::Cluster(spec) => spec.replication_factor(),
            _ => 1,
        };
        self.create_topic_replicated(name, partitions, TopicReplication::Fixed(replication))
    }

    /// [`create_topic`](Self::create_topic) with `replication`.
    pub(crate) fn create_topic_replicated(
        &self,
        name: &str,
        partitions: i32,
        replication: TopicReplication<'_>,
    ) -> Result<(), TestEnvError> {
        validate_topic_name(name)?;
        if partitions < 1 {
            return Err(TestEnvError::InvalidArgument {
                message: format!("topic {name:?} needs at least 1 partition, not {partitions}"),
            });
        }
        let already_existed = match &self.backend {
            Backend::Mock(mock) => mock.create_topic(name, partitions)?,
            _ => self.admin()?.create(name, partitions, replication)?,
        };
        self.admin()?
            .wait_until_ready(name, partitions, already_existed)?;
        tracing::info!(topic = name, partitions, broker = %self.kind, "topic ready");
        Ok(())
    }

    /// Deletes a topic on a real broker and waits (up to 30 s) until the
    /// broker no longer lists it. A missing topic is fine.
    ///
    /// # Errors
    ///
    /// [`TestEnvError::Unsupported`] on the mock cluster (it has no
    /// DeleteTopics API), [`TestEnvError::DeleteTopic`] when the broker
    /// refuses, [`TestEnvError::TopicNotReady`] after the wait.
    pub fn delete_topic(&self, name: &str) -> Result<(), TestEnvError> {
        validate_topic_name(name)?;
        if self.kind.is_mock() {
            return Err(TestEnvError::Unsupported {
                operation: "delete_topic",
                broker: self.kind.to_string(),
            });
        }
        let admin = self.admin()?;
        admin.delete(name)?;
        admin.wait_until_gone(name)?;
        tracing::info!(topic = name, broker = %self.kind, "topic deleted");
        Ok(())
    }

    /// Produces `count` records `key-{i}` → `message-{i}` (no headers, default
    /// partitioner) and waits for every delivery report.
    ///
    /// # Errors
    ///
    /// As [`produce`](Self::produce).
    pub fn produce_test_messages(
        &self,
        topic: &str,
        count: usize,
    ) -> Result<Vec<ProducedRecord>, TestEnvError> {
        self.produce(
            topic,
            (0..count).map(|i| TestRecord::new(format!("key-{i}"), format!("message-{i}"))),
        )
    }

    /// Produces the records in order and waits (up to 45 s) for every
    /// delivery report. Returns one [`ProducedRecord`] per input record, in
    /// input order.
    ///
    /// The env's producer uses `acks=all`, `linger.ms=5`, no idempotence and
    /// `message.timeout.ms=30000`. On the cluster it is idempotent, so that
    /// a retry across a leader change writes no duplicate; a retried record
    /// the broker had already written is then reported delivered at offset
    /// -1 (librdkafka's `DUPLICATE_SEQUENCE_NUMBER` handling). Records
    /// without an explicit partition go through librdkafka's default
    /// partitioner (key hash). Create the topic first
    /// ([`create_topic`](Self::create_topic)).
    ///
    /// # Errors
    ///
    /// [`TestEnvError::Enqueue`] or [`TestEnvError::Delivery`] naming the
    /// topic and the first failing record's index,
    /// [`TestEnvError::DeliveryTimeout`], [`TestEnvError::InvalidArgument`]
    /// for a header key with a NUL byte, [`TestEnvError::Client`] when the
    /// producer cannot be created.
    pub fn produce(
        &self,
        topic: &str,
        records: impl IntoIterator<Item = TestRecord>,
    ) -> Result<Vec<ProducedRecord>, TestEnvError> {
        produce::produce(self.producer()?, topic, records)
    }

    /// Takes the broker away until the returned guard is dropped: the mock's
    /// broker is set down; the local Apache Kafka is stopped and started
    /// again with its data. Other tests using the same broker at the
    /// same time suffer too: run outage tests alone in their test binary.
    ///
    /// # Errors
    ///
    /// [`TestEnvError::Unsupported`] for Docker and external brokers, or when
    /// the local broker cannot be signalled.
    pub fn broker_outage(&self) -> Result<BrokerOutage<'_>, TestEnvError> {
        match (&self.kind, &self.backend) {
            (_, Backend::Mock(mock)) => Ok(BrokerOutage::mock(mock)),
            (BrokerKind::Local { .. }, _) => BrokerOutage::stop_local(local::broker_pid()?),
            (kind, _) => Err(TestEnvError::Unsupported {
                operation: "broker_outage",
                broker: kind.to_string(),
            }),
        }
    }

    /// Freezes the broker until the returned guard is dropped: it keeps its
    /// connections but answers nothing (see [`BrokerFreeze`]).
    ///
    /// # Errors
    ///
    /// [`TestEnvError::Unsupported`] for a Docker or external broker;
    /// [`TestEnvError::LocalBrokerNotRunning`] when the local broker cannot
    /// be stopped.
    pub fn broker_freeze(&self) -> Result<BrokerFreeze<'_>, TestEnvError> {
        match (&self.kind, &self.backend) {
            (_, Backend::Mock(mock)) => Ok(BrokerFreeze::mock(mock)),
            (BrokerKind::Local { .. }, _) => BrokerFreeze::stop_local(local::broker_pid()?),
            (kind, _) => Err(TestEnvError::Unsupported {
                operation: "broker_freeze",
                broker: kind.to_string(),
            }),
        }
    }

    /// Delays every answer of the broker by `delay` until the returned guard
    /// is dropped: a slow network, or a loaded broker. Only the embedded
    /// mock cluster can be slowed down.
    ///
    /// # Errors
    ///
    /// [`TestEnvError::Unsupported`] for any other broker.
    pub fn broker_slowdown(&self, delay: Duration) -> Result<BrokerSlowdown<'_>, TestEnvError> {
        match (&self.kind, &self.backend) {
            (_, Backend::Mock(mock)) => Ok(BrokerSlowdown::mock(mock, delay)),
            (kind, _) => Err(TestEnvError::Unsupported {
                operation: "broker_slowdown",
                broker: kind.to_string(),
            }),
        }
    }

    /// A client configuration for this broker: `bootstrap.servers`, plus
    /// `broker.address.family=v4` for the brokers this crate starts or finds
    /// on loopback. Add `group.id` and the rest in the test.
    pub fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", self.kind.bootstrap());
        if !matches!(self.kind, BrokerKind::External { .. }) {
            config.set("broker.address.family", "v4");
        }
        config
    }

    /// A consumer configuration: [`client_config`](Self::client_config) plus
    /// `group.id`, `auto.offset.reset=earliest`, `enable.auto.commit=false`,
    /// and `session.timeout.ms=10000` with `heartbeat.interval.ms=500` so
    /// that group changes settle quickly (the mock cluster's initial
    /// rebalance delay is already 0).
    pub fn consumer_config(&self, group_id: &str) -> ClientConfig {
        let mut config = self.client_config();
        config
            .set("group.id", group_id)
            .set("auto.offset.reset", "earliest")
            .set("enable.auto.commit", "false")
            .set("session.timeout.ms", "10000")
            .set("heartbeat.interval.ms", "500");
        config
    }

    fn producer(&self) -> Result<&EnvProducer, TestEnvError> {
        if let Some(producer) = self.producer.get() {
            return Ok(producer);
        }
        let mut config = self.client_config();
        let idempotence = matches!(self.backend, Backend::Cluster(_));
        config
            .set("acks", "all")
            .set("enable.idempotence", idempotence.to_string())
            .set("linger.ms", "5")
            .set(
                "message.timeout.ms",
                produce::MESSAGE_TIMEOUT.as_millis().to_string(),
            );
        let producer = config
            .create_with_context(produce::EnvProducerContext)
            .map_err(|error| TestEnvError::Client {
                client: "producer",
                bootstrap: self.bootstrap_servers(),
                error: Box::new(error),
            })?;
        // A racing thread may have set it first; then ours is dropped unused.
        Ok(self.producer.get_or_init(move || producer))
    }

    pub(crate) fn admin(&self) -> Result<&TopicAdmin, TestEnvError> {
        if let Some(admin) = self.admin.get() {
            return Ok(admin);
        }
        let mut config = self.client_config();
        config.set("allow.auto.create.topics", "false");
        let admin = TopicAdmin::new(&config).map_err(|error| TestEnvError::Client {
            client: "admin client",
            bootstrap: self.bootstrap_servers(),
            error: Box::new(error),
        })?;
        Ok(self.admin.get_or_init(move || admin))
    }
}

/// The broker choice of `KAFKA_TEST_BROKER` (the mock cluster when unset).
fn choice_from_env() -> Result<BrokerChoice, TestEnvError> {
    match std::env::var(BROKER_ENV_VAR) {
        Ok(value) => BrokerChoice::parse(&value),
        Err(std::env::VarError::NotPresent) => Ok(BrokerChoice::Mock),
        Err(std::env::VarError::NotUnicode(value)) => Err(TestEnvError::UnknownBrokerChoice {
            value: value.to_string_lossy().into_owned(),
        }),
    }
}

/// `{prefix}-{pid}-{millis since epoch, hex}-{counter}`, sanitized for Kafka.
fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let counter = COUNTER.fetch_add(1, Ordering::Relaxed);
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis())
        .unwrap_or(0);
    let mut prefix: String = prefix
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .take(MAX_TOPIC_NAME_LEN - 64)
        .collect();
    if prefix.is_empty() || prefix == "." || prefix == ".." {
        prefix = "test".to_owned();
    }
    format!("{prefix}-{}-{millis:x}-{counter}", std::process::id())
}

/// Kafka's rules for topic names.
fn validate_topic_name(name: &str) -> Result<(), TestEnvError> {
    let legal = !name.is_empty()
        && name.len() <= MAX_TOPIC_NAME_LEN
        && name != "."
        && name != ".."
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if legal {
        Ok(())
    } else {
        Err(TestEnvError::InvalidArgument {
            message: format!(
                "{name:?} is not a legal topic name (1 to {MAX_TOPIC_NAME_LEN} characters \
                 of [a-zA-Z0-9._-], not \".\" or \"..\")"
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn public_types_are_send_and_sync() {
        assert_send_sync::<KafkaTestEnv>();
        assert_send_sync::<BrokerChoice>();
        assert_send_sync::<BrokerKind>();
        assert_send_sync::<TestEnvError>();
        assert_send_sync::<TestRecord>();
        assert_send_sync::<ProducedRecord>();
        assert_send_sync::<SecuredBroker>();
        assert_send_sync::<KafkaCluster<'static>>();
        assert_send_sync::<NodeOutage<'static>>();
    }

    #[test]
    fn unique_names_differ_and_are_legal_topic_names() {
        let first = unique_name("my test/topic");
        let second = unique_name("my test/topic");
        assert_ne!(first, second);
        assert!(first.starts_with("my-test-topic-"), "{first}");
        validate_topic_name(&first).expect("sanitized name is legal");
        validate_topic_name(&unique_name("")).expect("empty prefix is replaced");
        validate_topic_name(&unique_name(&"x".repeat(400))).expect("long prefix is cut");
    }

    #[test]
    fn illegal_topic_names_and_partition_counts_are_caller_errors() {
        let env = KafkaTestEnv::external("127.0.0.1:1").expect("external env needs no broker");
        for name in ["", ".", "a b", "ü"] {
            assert!(matches!(
                env.create_topic(name, 1),
                Err(TestEnvError::InvalidArgument { .. })
            ));
        }
        assert!(matches!(
            env.create_topic("ok", 0),
            Err(TestEnvError::InvalidArgument { .. })
        ));
    }

    #[test]
    fn external_env_uses_the_given_bootstrap_list() {
        let env = KafkaTestEnv::external(" h1:9092,h2:9092 ").expect("list accepted");
        assert_eq!(env.bootstrap_servers(), "h1:9092,h2:9092");
        assert_eq!(
            env.kind(),
            &BrokerKind::External {
                bootstrap: "h1:9092,h2:9092".to_owned()
            }
        );
        let config = env.consumer_config("g");
        assert_eq!(config.get("bootstrap.servers"), Some("h1:9092,h2:9092"));
        assert_eq!(config.get("group.id"), Some("g"));
        assert_eq!(config.get("enable.auto.commit"), Some("false"));
        assert!(KafkaTestEnv::external("  ").is_err());
    }

    #[test]
    fn only_the_local_broker_has_secured_listeners() {
        let env = KafkaTestEnv::external("127.0.0.1:1").expect("external env needs no broker");
        let error = env.secured().expect_err("external brokers have none");
        assert!(
            matches!(
                error,
                TestEnvError::Unsupported {
                    operation: "secured",
                    ..
                }
            ),
            "{error}"
        );
    }

    #[test]
    fn only_the_cluster_env_controls_nodes() {
        let env = KafkaTestEnv::external("127.0.0.1:1").expect("external env needs no broker");
        assert!(env.cluster().is_none());
        let env = KafkaTestEnv::mock().expect("mock cluster starts");
        assert!(env.cluster().is_none());
        assert_eq!(
            BrokerChoice::parse("cluster").expect("a keyword"),
            BrokerChoice::Cluster
        );
    }

    #[cfg(not(feature = "docker"))]
    #[test]
    fn docker_without_the_feature_says_how_to_enable_it() {
        let error =
            KafkaTestEnv::from_choice(&BrokerChoice::Docker).expect_err("docker needs the feature");
        assert!(
            error
                .to_string()
                .contains("--features kafka-test-env/docker"),
            "{error}"
        );
    }

    #[test]
    fn mock_creates_topics_produces_and_refuses_deletion() {
        let env = KafkaTestEnv::mock().expect("mock cluster starts");
        assert!(env.kind().is_mock());
        let topic = env.unique_topic("mock-unit");
        env.create_topic(&topic, 3).expect("topic created");
        env.create_topic(&topic, 3).expect("creating again is fine");
        let produced = env
            .produce(
                &topic,
                [
                    TestRecord::new("a", "1").partition(2),
                    TestRecord::tombstone("b").partition(2),
                    TestRecord::keyless("c").partition(0),
                ],
            )
            .expect("records delivered");
        let placed: Vec<(usize, i32, i64)> = produced
            .iter()
            .map(|p| (p.index, p.partition, p.offset))
            .collect();
        assert_eq!(placed, [(0, 2, 0), (1, 2, 1), (2, 0, 0)]);
        assert_eq!(produced[1].key.as_deref(), Some(&b"b"[..]));

        let error = env.delete_topic(&topic).expect_err("mock cannot delete");
        assert!(matches!(error, TestEnvError::Unsupported { .. }), "{error}");
    }

    #[test]
    fn producing_to_a_missing_partition_names_topic_and_index() {
        let env = KafkaTestEnv::mock().expect("mock cluster starts");
        let topic = env.unique_topic("mock-bad-partition");
        env.create_topic(&topic, 1).expect("topic created");
        let error = env
            .produce(
                &topic,
                [
                    TestRecord::new("k", "v"),
                    TestRecord::new("k", "v").partition(5),
                ],
            )
            .expect_err("partition 5 does not exist");
        let text = error.to_string();
        assert!(text.contains("record 1"), "{text}");
        assert!(text.contains(&topic), "{text}");
    }

    #[test]
    fn header_keys_with_nul_are_rejected() {
        let env = KafkaTestEnv::mock().expect("mock cluster starts");
        let topic = env.unique_topic("mock-nul");
        env.create_topic(&topic, 1).expect("topic created");
        let error = env
            .produce(&topic, [TestRecord::new("k", "v").header("a\0b", "x")])
            .expect_err("NUL in header key");
        assert!(
            matches!(error, TestEnvError::InvalidArgument { .. }),
            "{error}"
        );
    }
}

#[cfg(test)]
mod drop_order_tests {
    use std::time::{Duration, Instant};

    use rdkafka::consumer::{BaseConsumer, Consumer};

    use super::*;

    #[test]
    fn a_consumer_outliving_the_mock_does_not_crash() {
        let env = KafkaTestEnv::mock().expect("mock cluster starts");
        let topic = env.unique_topic("outlive");
        env.create_topic(&topic, 1).expect("topic created");
        env.produce_test_messages(&topic, 3).expect("delivered");
        let consumer: BaseConsumer = env
            .consumer_config(&env.unique_group("outlive"))
            .create()
            .expect("consumer created");
        consumer.subscribe(&[&topic]).expect("subscribed");
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut received = 0;
        while received < 3 && Instant::now() < deadline {
            if let Some(Ok(_)) = consumer.poll(Duration::from_millis(100)) {
                received += 1;
            }
        }
        assert_eq!(received, 3);
        // The documented order is the other way round; this checks that
        // getting it wrong costs log noise, not a crash or a hang.
        drop(env);
        for _ in 0..5 {
            let _ = consumer.poll(Duration::from_millis(100));
        }
        let closing = Instant::now();
        drop(consumer);
        assert!(
            closing.elapsed() < Duration::from_secs(30),
            "closing a consumer after its mock cluster took {:?}",
            closing.elapsed()
        );
    }
}
