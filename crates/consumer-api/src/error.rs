//! What can go wrong, as data a handler can act on.

use std::time::Duration;

use rdkafka::error::KafkaError;

use crate::serde::SerdeError;

/// Everything a consumer can report.
///
/// Each variant's message names what went wrong and where, so that a log line
/// alone is enough to act on. Match on the variant (and its fields) to act in
/// code: a [`ConsumerError::Deserialize`] carries what a dead-letter handler
/// needs.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConsumerError {
    /// librdkafka or the broker reported an error.
    #[error("Kafka error: {0}")]
    Kafka(#[from] KafkaError),

    /// A record's key or value could not be deserialized. The record counts as
    /// delivered: the stream goes on with the next one.
    #[error(
        "cannot deserialize the {part} of the record at {topic}/{partition}@{offset} ({} bytes): {source}",
        raw.len()
    )]
    Deserialize {
        /// The record's topic.
        topic: String,
        /// The record's partition.
        partition: i32,
        /// The record's offset.
        offset: i64,
        /// Whether the key or the value failed.
        part: PayloadPart,
        /// The bytes that failed, as read from Kafka.
        raw: Vec<u8>,
        /// What the codec said.
        #[source]
        source: SerdeError,
    },

    /// librdkafka reported an error while consuming, with its own account of
    /// what it concerns: the topic that does not exist or was deleted, the
    /// broker address that cannot be reached, the partition whose fetch
    /// failed. The stream goes on: it is not the end of it.
    ///
    /// [`kafka_error`](ConsumerError::kafka_error) gives the librdkafka error
    /// of this variant and of [`ConsumerError::Kafka`] alike.
    #[error("Kafka error: {error}: {reason}")]
    Reported {
        /// The error, with its code.
        error: KafkaError,
        /// librdkafka's description, e.g. `Subscribed topic not available:
        /// orders: Broker: Unknown topic or partition`.
        reason: String,
    },

    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),

    /// Nothing arrived within the time the caller allowed.
    #[error("no message arrived within {0:?}")]
    Timeout(Duration),

    /// Another thread asked a blocking poll to return (the fast
    /// consumer's `wakeup()`, as the Java consumer's): nothing was taken.
    #[error("woken up by wakeup() before a message arrived")]
    WokenUp,

    /// The caller used the API in a way it does not allow.
    #[error("misuse: {0}")]
    Misuse(String),

    /// A thread or file operation failed.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),

    /// The consumer was closed; it delivers nothing more.
    #[error("the consumer is closed")]
    Closed,
}

impl ConsumerError {
    /// The librdkafka error of a [`ConsumerError::Kafka`] or
    /// [`ConsumerError::Reported`]; `None` for every other variant.
    pub fn kafka_error(&self) -> Option<&KafkaError> {
        match self {
            ConsumerError::Kafka(error) | ConsumerError::Reported { error, .. } => Some(error),
            _ => None,
        }
    }

    /// An error librdkafka reported, with the description it gave for it
    /// when there is one: [`ConsumerError::Reported`], else
    /// [`ConsumerError::Kafka`].
    pub fn reported(error: KafkaError, reason: Option<String>) -> Self {
        match reason {
            Some(reason) if !reason.is_empty() => ConsumerError::Reported { error, reason },
            _ => ConsumerError::Kafka(error),
        }
    }
}

/// Which part of a record a [`ConsumerError::Deserialize`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PayloadPart {
    /// The record's key.
    Key,
    /// The record's value (payload).
    Value,
    /// The key of one of the record's headers: Kafka lets a producer write
    /// any bytes there, and a key that is not UTF-8 makes the record an
    /// error (the `raw` bytes are that key).
    HeaderKey,
}

impl std::fmt::Display for PayloadPart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PayloadPart::Key => "key",
            PayloadPart::Value => "value",
            PayloadPart::HeaderKey => "header key",
        })
    }
}

/// A configuration that cannot be used, naming the field at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A field has a value that cannot work.
    #[error("invalid `{field}` = {value:?}: {reason}")]
    Invalid {
        /// The field (`ConsumerConfig` name or librdkafka property).
        field: String,
        /// The value given.
        value: String,
        /// Why it cannot work.
        reason: String,
    },

    /// A typed field and an `extra` property set the same librdkafka property.
    #[error(
        "`{field}` and extra property `{property}` both set librdkafka's `{property}` \
         ({field_value:?} vs {extra_value:?}): set it in one place only"
    )]
    Conflict {
        /// The typed `ConsumerConfig` field.
        field: String,
        /// The `extra` property (possibly an alias of the field's property).
        property: String,
        /// The typed field's value.
        field_value: String,
        /// The `extra` property's value.
        extra_value: String,
    },

    /// An `extra` property that tiered-kafka manages itself.
    #[error("extra property `{property}` cannot be set: {reason}")]
    Reserved {
        /// The property.
        property: String,
        /// Why tiered-kafka owns it.
        reason: String,
    },

    /// A YAML document could not be read as a configuration.
    #[error("{origin}: {message}")]
    Yaml {
        /// Where the document came from: a file path, or `<string>`.
        origin: String,
        /// What is wrong, with the line and column where the parser knows them.
        message: String,
        /// The 1-based line of the problem, where known.
        line: Option<u64>,
    },

    /// A configuration file could not be read.
    #[error("cannot read configuration file {path}: {reason}")]
    Io {
        /// The file.
        path: String,
        /// What the operating system said.
        reason: String,
    },
}
