//! The one error type of this crate.

use std::time::Duration;

use rdkafka::error::KafkaError;

/// Everything that can go wrong while choosing, starting or using a test broker.
///
/// Every message is written for a person reading a failed test: it names the
/// broker choice, topic, record index or file involved and, where there is
/// one, the fix.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum TestEnvError {
    /// `KAFKA_TEST_BROKER` holds a value that is none of the accepted forms.
    #[error(
        "KAFKA_TEST_BROKER={value:?} is not a broker choice; accepted: unset or `mock` \
         (librdkafka's in-process mock cluster), `local` (Apache Kafka started by \
         `cargo xtask kafka start`), `cluster` (the three-node Apache Kafka cluster started \
         by `cargo xtask kafka start --nodes 3`), `docker` (Kafka in Docker through testcontainers, \
         needs `--features kafka-test-env/docker`), or a bootstrap list such as \
         `host:port` or `host1:port,host2:port` (an external broker)"
    )]
    UnknownBrokerChoice {
        /// The value as found in the environment.
        value: String,
    },

    /// `KAFKA_TEST_BROKER=local`, but the broker's bootstrap file is missing or
    /// nothing accepts connections at the address it names.
    #[error(
        "KAFKA_TEST_BROKER=local but no Apache Kafka is running: start it with \
         `cargo xtask kafka start` (needs Java 17 and Maven) [{detail}]"
    )]
    LocalBrokerNotRunning {
        /// What exactly was missing: the file, its content or the listener.
        detail: String,
    },

    /// The secured listeners of `cargo xtask kafka start --secure` are not
    /// there: their `secure.json` is missing (no broker, or one started
    /// without `--secure`) or unreadable, or they do not accept connections.
    #[error(
        "no Apache Kafka with secured listeners is running: start it with \
         `cargo xtask kafka start --secure` (needs Java 17 and Maven; `cargo xtask test` \
         does it for its `local` phase) [{detail}]"
    )]
    SecuredBrokerNotRunning {
        /// What exactly was wrong, naming `secure.json`.
        detail: String,
    },

    /// `KAFKA_TEST_BROKER=cluster`, but the cluster's `cluster.json` is
    /// missing or unreadable, or none of its nodes accepts connections.
    #[error(
        "KAFKA_TEST_BROKER=cluster but no Apache Kafka cluster is running: start it with \
         `cargo xtask kafka start --nodes 3` (needs Java 17 and Maven; `cargo xtask test` \
         does it for its `cluster` phase) [{detail}]"
    )]
    ClusterNotRunning {
        /// What exactly was missing: the file, its content or the listeners.
        detail: String,
    },

    /// Killing, stopping or restarting a node of the cluster failed.
    #[error("could not {operation} node {node} of the Kafka cluster: {detail}")]
    ClusterNode {
        /// The node id.
        node: i32,
        /// `kill`, `stop` or `restart`.
        operation: &'static str,
        /// Why not.
        detail: String,
    },

    /// The cluster did not become healthy (every node a live broker, every
    /// partition led and fully in sync) in time, or its metadata could not
    /// be read.
    #[error("the Kafka cluster is not healthy after {waited:?}: {last_seen}")]
    ClusterNotHealthy {
        /// How long it was waited for.
        waited: Duration,
        /// What was wrong when last seen.
        last_seen: String,
    },

    /// `KAFKA_TEST_BROKER=docker` in a build without the `docker` feature.
    #[error(
        "KAFKA_TEST_BROKER=docker but this build has no Docker support: build with \
         `--features kafka-test-env/docker`"
    )]
    DockerFeatureDisabled,

    /// `KAFKA_TEST_BROKER=docker`, but the container could not be started,
    /// most often because no Docker engine is installed or running.
    #[error(
        "KAFKA_TEST_BROKER=docker but Kafka could not be started in Docker; Docker is \
         missing or unusable (install and start a Docker engine, or use \
         KAFKA_TEST_BROKER=mock or local): {detail}"
    )]
    DockerUnavailable {
        /// The error reported by testcontainers.
        detail: String,
    },

    /// The librdkafka mock cluster could not be started.
    #[error("the librdkafka mock cluster could not be started: {detail}")]
    MockStart {
        /// Why not.
        detail: String,
    },

    /// The operation does not exist for this kind of broker.
    #[error("{operation} is not supported by the {broker} broker")]
    Unsupported {
        /// The operation that was asked for, e.g. `delete_topic`.
        operation: &'static str,
        /// The broker kind, as displayed by [`BrokerKind`](crate::BrokerKind).
        broker: String,
    },

    /// The caller passed a value that can never work (caller misuse), such as
    /// zero partitions or a header key containing a NUL byte.
    #[error("invalid argument: {message}")]
    InvalidArgument {
        /// What was wrong.
        message: String,
    },

    /// An rdkafka client (producer or admin client) could not be created.
    #[error("could not create the {client} for {bootstrap}: {error}")]
    Client {
        /// Which client: `producer` or `admin client`.
        client: &'static str,
        /// The bootstrap servers it was meant for.
        bootstrap: String,
        /// The rdkafka error.
        error: Box<KafkaError>,
    },

    /// The broker refused to create the topic.
    #[error("could not create topic {topic:?} with {partitions} partition(s): {reason}")]
    CreateTopic {
        /// The topic.
        topic: String,
        /// The partition count asked for.
        partitions: i32,
        /// The broker's or client's reason.
        reason: String,
    },

    /// The topic already exists with another partition count.
    #[error(
        "topic {topic:?} already exists with {actual} partition(s), not the {expected} asked for"
    )]
    PartitionCountMismatch {
        /// The topic.
        topic: String,
        /// The partition count asked for.
        expected: i32,
        /// The partition count the broker reports.
        actual: usize,
    },

    /// The topic's metadata did not reach the wanted state in time (after a
    /// creation: every partition has a leader; after a deletion: the topic is
    /// gone).
    #[error("topic {topic:?} did not become {wanted} within {waited:?}; last seen: {last_seen}")]
    TopicNotReady {
        /// The topic.
        topic: String,
        /// The state waited for, in words.
        wanted: String,
        /// How long it was waited for.
        waited: Duration,
        /// The last metadata (or metadata error) seen.
        last_seen: String,
    },

    /// The broker refused to delete the topic.
    #[error("could not delete topic {topic:?}: {reason}")]
    DeleteTopic {
        /// The topic.
        topic: String,
        /// The broker's or client's reason.
        reason: String,
    },

    /// A record could not even be queued in the producer.
    #[error("record {index} for topic {topic:?} could not be queued for sending: {error}")]
    Enqueue {
        /// The topic.
        topic: String,
        /// The record's position in the input, counting from 0.
        index: usize,
        /// The rdkafka error.
        error: Box<KafkaError>,
    },

    /// A delivery report came back with an error. This names the first failed
    /// record by input position; `failed` counts all of them.
    #[error(
        "record {index} for topic {topic:?} was not delivered: {error} \
         ({failed} of {count} record(s) failed)"
    )]
    Delivery {
        /// The topic.
        topic: String,
        /// The first failed record's position in the input, counting from 0.
        index: usize,
        /// The rdkafka error of that record.
        error: Box<KafkaError>,
        /// How many records failed.
        failed: usize,
        /// How many records were sent.
        count: usize,
    },

    /// Not every delivery report arrived in time.
    #[error(
        "only {delivered} of {count} delivery report(s) for topic {topic:?} arrived within \
         {waited:?}; the first missing is record {first_missing}"
    )]
    DeliveryTimeout {
        /// The topic.
        topic: String,
        /// Reports received.
        delivered: usize,
        /// Records sent.
        count: usize,
        /// Input position of the first record without a report.
        first_missing: usize,
        /// How long it was waited for.
        waited: Duration,
    },
}
