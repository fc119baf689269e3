//! What can go wrong, as data a handler can act on.

use std::time::Duration;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};

use crate::config::{REDACTED, is_secret_property, redact_value_in};
use crate::serde::SerdeError;

/// Everything a consumer can report.
///
/// Each variant's message names what went wrong and where, so that a log line
/// alone is enough to act on. To act in code, ask the error:
/// [`is_fatal`](Self::is_fatal) (stop: nothing more will come without a
/// change), [`is_retriable`](Self::is_retriable) (the same call may succeed
/// later), [`code`](Self::code) (librdkafka's code, to match on), or match
/// the variant: a [`ConsumerError::Deserialize`] carries what a dead-letter
/// handler needs.
///
/// Neither `Display` nor `Debug` shows the value of a secret property (see
/// [`is_secret_property`](crate::is_secret_property)): a librdkafka
/// configuration error about one shows [`REDACTED`](crate::REDACTED), and
/// `From<KafkaError>` and [`reported`](Self::reported) redact it as they
/// build the error, so that its [`source`](std::error::Error::source) does
/// not show it either.
///
/// A stream goes on after every error but a fatal one, so a reading loop
/// logs the others and carries on:
///
/// ```
/// use consumer_api::{ConsumerError, KafkaStreamConsumer};
/// use futures_util::StreamExt;
///
/// async fn run(consumer: &dyn KafkaStreamConsumer<String, String>) -> Result<(), ConsumerError> {
///     let mut messages = consumer.stream();
///     while let Some(item) = messages.next().await {
///         match item {
///             Ok(message) => println!("{message}"),
///             Err(error) if error.is_fatal() => return Err(error),
///             // A broker restarting, a record that does not decode: log, go on.
///             Err(error) => eprintln!("skipping: {error}"),
///         }
///     }
///     Ok(())
/// }
/// ```
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum ConsumerError {
    /// librdkafka or the broker reported an error, with librdkafka's own
    /// account of what it concerns when it gave one while consuming: the
    /// topic that does not exist or was deleted, the broker address that
    /// cannot be reached, the partition whose fetch failed. A stream goes on
    /// after it unless it [is fatal](Self::is_fatal).
    ///
    /// Fatal when librdkafka says so (code `Fatal`, or a fatal transactional
    /// error); retriable for the codes of a broker, coordinator or leader
    /// that is away or busy (see [`is_retriable`](Self::is_retriable)).
    #[error("Kafka error: {}{}", ShownKafkaError(error), reason.as_deref().map(|reason| format!(": {reason}")).unwrap_or_default())]
    Kafka {
        /// The error, with its code.
        #[source]
        error: KafkaError,
        /// librdkafka's description, e.g. `Subscribed topic not available:
        /// orders: Broker: Unknown topic or partition`.
        reason: Option<String>,
    },

    /// A record's key or value could not be deserialized. The record counts as
    /// delivered: the stream goes on with the next one.
    ///
    /// Neither fatal nor retriable: the same bytes fail again.
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

    /// The configuration is invalid. Fatal: nothing works until it changes.
    #[error(transparent)]
    Config(#[from] ConfigError),

    /// Nothing arrived within the time the caller allowed. Retriable.
    #[error("no message arrived within {0:?}")]
    Timeout(Duration),

    /// Another thread asked a blocking poll to return (the fast
    /// consumer's `wakeup()`, as the Java consumer's): nothing was taken.
    /// Retriable: polling again waits again.
    #[error("woken up by wakeup() before a message arrived")]
    WokenUp,

    /// The caller used the API in a way it does not allow; the consumer is
    /// unharmed. Neither fatal nor retriable: the same call fails again.
    #[error("misuse: {0}")]
    Misuse(#[from] Misuse),

    /// A thread or file operation failed. Neither fatal nor retriable.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),

    /// The consumer was closed; it delivers nothing more. Fatal.
    #[error("the consumer is closed")]
    Closed,
}

/// Redacts a librdkafka configuration error about a secret property.
impl From<KafkaError> for ConsumerError {
    fn from(error: KafkaError) -> Self {
        ConsumerError::Kafka {
            error: redact_kafka_error(error),
            reason: None,
        }
    }
}

/// Written by hand, as the derived one would be, for the librdkafka error to
/// be shown with secret values redacted even when the error was built
/// without [`From`] or [`reported`](ConsumerError::reported).
impl std::fmt::Debug for ConsumerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConsumerError::Kafka { error, reason } => f
                .debug_struct("Kafka")
                .field("error", &ShownKafkaError(error))
                .field("reason", reason)
                .finish(),
            ConsumerError::Deserialize {
                topic,
                partition,
                offset,
                part,
                raw,
                source,
            } => f
                .debug_struct("Deserialize")
                .field("topic", topic)
                .field("partition", partition)
                .field("offset", offset)
                .field("part", part)
                .field("raw", raw)
                .field("source", source)
                .finish(),
            ConsumerError::Config(error) => f.debug_tuple("Config").field(error).finish(),
            ConsumerError::Timeout(timeout) => f.debug_tuple("Timeout").field(timeout).finish(),
            ConsumerError::WokenUp => f.write_str("WokenUp"),
            ConsumerError::Misuse(misuse) => f.debug_tuple("Misuse").field(misuse).finish(),
            ConsumerError::Io(error) => f.debug_tuple("Io").field(error).finish(),
            ConsumerError::Closed => f.write_str("Closed"),
        }
    }
}

/// A librdkafka configuration error about a secret property (see
/// [`is_secret_property`]) with its value, and the value's echo in
/// librdkafka's description, replaced by [`REDACTED`]; any other error as it
/// is.
pub(crate) fn redact_kafka_error(error: KafkaError) -> KafkaError {
    match error {
        KafkaError::ClientConfig(code, reason, property, value)
            if is_secret_property(&property) =>
        {
            KafkaError::ClientConfig(
                code,
                redact_value_in(&reason, &value),
                property,
                REDACTED.to_owned(),
            )
        }
        other => other,
    }
}

/// Shows a [`KafkaError`] (`Display` and `Debug`) as
/// [`redact_kafka_error`] would leave it.
struct ShownKafkaError<'a>(&'a KafkaError);

impl ShownKafkaError<'_> {
    /// The error to show: a redacted copy when it is a configuration error
    /// about a secret property.
    fn redacted(&self) -> std::borrow::Cow<'_, KafkaError> {
        match self.0 {
            KafkaError::ClientConfig(_, _, property, _) if is_secret_property(property) => {
                std::borrow::Cow::Owned(redact_kafka_error(self.0.clone()))
            }
            other => std::borrow::Cow::Borrowed(other),
        }
    }
}

impl std::fmt::Display for ShownKafkaError<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(&*self.redacted(), f)
    }
}

impl std::fmt::Debug for ShownKafkaError<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&*self.redacted(), f)
    }
}

impl ConsumerError {
    /// The librdkafka error of a [`ConsumerError::Kafka`]; `None` for every
    /// other variant.
    pub fn kafka_error(&self) -> Option<&KafkaError> {
        match self {
            ConsumerError::Kafka { error, .. } => Some(error),
            _ => None,
        }
    }

    /// librdkafka's error code of a [`ConsumerError::Kafka`], when it has
    /// one, to match on:
    ///
    /// ```
    /// use consumer_api::{ConsumerError, ErrorCode};
    ///
    /// fn is_missing_topic(error: &ConsumerError) -> bool {
    ///     error.code() == Some(ErrorCode::UnknownTopicOrPartition)
    /// }
    /// ```
    pub fn code(&self) -> Option<RDKafkaErrorCode> {
        self.kafka_error().and_then(KafkaError::rdkafka_error_code)
    }

    /// Whether this consumer can deliver nothing more without a change: a
    /// fatal librdkafka error (a fatal consumption error, code `Fatal`, or a
    /// fatal transactional error); a refusal only an operator can lift
    /// (authentication failed, a TLS handshake that failed to verify a
    /// certificate, not authorized for the topic, group or
    /// cluster, an invalid group id, `auto_offset_reset: error` with no
    /// offset to start from), which librdkafka would otherwise retry
    /// forever; an invalid configuration; or a closed consumer. After any
    /// other error the stream goes on.
    pub fn is_fatal(&self) -> bool {
        match self {
            ConsumerError::Kafka { error, reason } => {
                matches!(error, KafkaError::MessageConsumptionFatal(_))
                    || matches!(error, KafkaError::Transaction(inner) if inner.is_fatal())
                    || error.rdkafka_error_code().is_some_and(is_permanent)
                    || (error.rdkafka_error_code() == Some(RDKafkaErrorCode::SSL)
                        && reason.as_deref().is_some_and(is_certificate_failure))
            }
            ConsumerError::Config(_) | ConsumerError::Closed => true,
            ConsumerError::Deserialize { .. }
            | ConsumerError::Timeout(_)
            | ConsumerError::WokenUp
            | ConsumerError::Misuse(_)
            | ConsumerError::Io(_) => false,
        }
    }

    /// Whether the same call may succeed later without a change: a
    /// [`Timeout`](Self::Timeout), a [`WokenUp`](Self::WokenUp) poll, or a
    /// Kafka error of a broker, coordinator or partition leader that is away
    /// or busy (all brokers down, a transport failure, a timed-out request,
    /// a coordinator moving or loading, a rebalance in progress, a leader
    /// election, an unknown topic that may yet be created), or one
    /// librdkafka marks retriable.
    pub fn is_retriable(&self) -> bool {
        match self {
            ConsumerError::Kafka { error, .. } => {
                matches!(error, KafkaError::Transaction(inner) if inner.is_retriable())
                    || error.rdkafka_error_code().is_some_and(is_transient)
            }
            ConsumerError::Timeout(_) | ConsumerError::WokenUp => true,
            ConsumerError::Deserialize { .. }
            | ConsumerError::Config(_)
            | ConsumerError::Misuse(_)
            | ConsumerError::Io(_)
            | ConsumerError::Closed => false,
        }
    }

    /// An error librdkafka reported, with the description it gave for it
    /// (an empty one counts as none). A configuration error about a secret
    /// property is redacted, as by `From<KafkaError>`.
    pub fn reported(error: KafkaError, reason: Option<String>) -> Self {
        ConsumerError::Kafka {
            error: redact_kafka_error(error),
            reason: reason.filter(|reason| !reason.is_empty()),
        }
    }
}

/// The codes of a refusal that only a change of configuration or of the
/// cluster (credentials, ACLs) can lift.
fn is_permanent(code: RDKafkaErrorCode) -> bool {
    use RDKafkaErrorCode as Code;
    matches!(
        code,
        Code::Fatal
            | Code::Authentication
            | Code::SaslAuthenticationFailed
            | Code::TopicAuthorizationFailed
            | Code::GroupAuthorizationFailed
            | Code::ClusterAuthorizationFailed
            | Code::InvalidGroupId
            | Code::AutoOffsetReset
    )
}

/// Whether librdkafka's description of an `SSL` error says a certificate
/// check failed. Other TLS errors (a handshake cut short by a restarting
/// broker) may pass.
fn is_certificate_failure(reason: &str) -> bool {
    [
        "certificate verify failed",
        "Failed to verify broker certificate",
        "did not provide a certificate",
    ]
    .iter()
    .any(|words| reason.contains(words))
}

/// The codes of a broker, coordinator or leader that is away or busy: the
/// same request may succeed later.
fn is_transient(code: RDKafkaErrorCode) -> bool {
    use RDKafkaErrorCode as Code;
    matches!(
        code,
        Code::AllBrokersDown
            | Code::BrokerTransportFailure
            | Code::Resolve
            | Code::OperationTimedOut
            | Code::RequestTimedOut
            | Code::WaitingForCoordinator
            | Code::NotCoordinator
            | Code::CoordinatorNotAvailable
            | Code::CoordinatorLoadInProgress
            | Code::RebalanceInProgress
            | Code::NetworkException
            | Code::LeaderNotAvailable
            | Code::NotLeaderForPartition
            | Code::UnknownTopicOrPartition
            | Code::UnknownTopic
            | Code::UnknownPartition
            | Code::BrokerNotAvailable
            | Code::NotEnoughReplicas
            | Code::QueueFull
            | Code::Retry
    )
}

/// A call the API does not allow, from [`ConsumerError::Misuse`]: what was
/// asked, so that a handler can tell one from another.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Misuse {
    /// A transactional consumer was asked to commit: its offsets are
    /// committed with the producer's `send_offsets_to_transaction` (see
    /// `current_offsets`).
    #[error(
        "a transactional consumer's offsets are committed with the producer's \
         send_offsets_to_transaction (see current_offsets), not by the consumer"
    )]
    CommitOnTransactionalConsumer,
    /// A transactional consumer was asked to become a fast consumer, whose
    /// offsets it would commit itself.
    #[error(
        "a transactional consumer cannot become a fast consumer: its offsets are committed \
         by the producer's transactions"
    )]
    TransactionalIntoFast,
    /// A second Dedicated stream was opened while one is open: each has
    /// its polling thread, and two would share the messages.
    #[error("a dedicated stream of this consumer is already open; drop it before opening another")]
    DedicatedStreamAlreadyOpen,
    /// A Dedicated stream or concurrent processing was started while
    /// concurrent processing runs on the consumer: two polling threads would
    /// share the messages. (While a Dedicated stream is open, the error is
    /// [`DedicatedStreamAlreadyOpen`](Self::DedicatedStreamAlreadyOpen).)
    #[error(
        "concurrent processing runs on this consumer; stop it before opening a dedicated \
         stream or starting processing again"
    )]
    PollingThreadRunning,
    /// A call that needs a Tokio runtime (with timers) was made outside one.
    #[error("{call} needs a Tokio runtime with timers")]
    NoTokioRuntime {
        /// The call, e.g. `KafkaConsumer::poll`.
        call: &'static str,
    },
    /// A future was polled again after it completed.
    #[error("{0} was polled after it completed")]
    PolledAfterCompletion(&'static str),
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
///
/// An error about a secret property (see
/// [`is_secret_property`](crate::is_secret_property); an `extra` property
/// may be named `extra.<property>`) shows [`REDACTED`](crate::REDACTED) in
/// place of its value, in `Display` and `Debug` alike, and never quotes the
/// value of an environment variable or the contents of a file. The fields
/// keep what they were built with: tiered-kafka builds them redacted
/// already.
#[derive(Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A field has a value that cannot work.
    #[error("invalid `{field}` = {}: {}", Shown { name: field, value }, shown_reason(field, value, reason))]
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
         ({} vs {}): set it in one place only",
        Shown { name: property, value: field_value },
        Shown { name: property, value: extra_value }
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
        /// What is wrong, with the line and column where the parser knows
        /// them. The source lines it quotes show secret values as
        /// `"[redacted]"`.
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

    /// A `${NAME}` in a YAML document names an environment variable that
    /// cannot be read.
    #[error("{origin}: `{field}` refers to environment variable `{variable}`, which {reason}")]
    Variable {
        /// Where the document came from: a file path, or `<string>`.
        origin: String,
        /// The field, e.g. `brokers` or `extra.sasl.password`.
        field: String,
        /// The environment variable.
        variable: String,
        /// What is wrong with it: `is not set` or `is not valid UTF-8`.
        reason: String,
    },

    /// A `${` in a YAML value that does not start a `${NAME}` reference. The
    /// value is not quoted: it may be a secret that happens to contain `${`.
    #[error(
        "{origin}: `{field}` has a `${{` that does not start a `${{NAME}}` reference \
         (NAME: ASCII letters, digits and `_`, ended by `}}`); write `$${{` for a literal `${{`"
    )]
    Reference {
        /// Where the document came from: a file path, or `<string>`.
        origin: String,
        /// The field, e.g. `brokers` or `extra.sasl.password`.
        field: String,
    },

    /// The file an `extra` property `<property>_file` names cannot be read.
    #[error("{origin}: `{field}` is read from file {path}, which cannot be read: {reason}")]
    ValueFile {
        /// Where the document came from: a file path, or `<string>`.
        origin: String,
        /// The property being set, e.g. `extra.sasl.password`.
        field: String,
        /// The file.
        path: String,
        /// What the operating system said.
        reason: String,
    },

    /// An `extra` property given both inline and as `<property>_file`.
    #[error(
        "{origin}: extra properties `{property}` and `{property}_file` both set `{property}`: \
         set it in one place only"
    )]
    ValueAndFile {
        /// Where the document came from: a file path, or `<string>`.
        origin: String,
        /// The property, e.g. `sasl.password`.
        property: String,
    },
}

/// Whether the value of `field` (a `ConsumerConfig` field, a librdkafka
/// property, or `extra.<property>`) is a secret.
fn field_is_secret(field: &str) -> bool {
    is_secret_property(field) || field.strip_prefix("extra.").is_some_and(is_secret_property)
}

/// A field's value as an error shows it: quoted, or [`REDACTED`] (unquoted,
/// so that it cannot be mistaken for the value).
struct Shown<'a> {
    name: &'a str,
    value: &'a str,
}

impl std::fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if field_is_secret(self.name) {
            f.write_str(REDACTED)
        } else {
            write!(f, "{:?}", self.value)
        }
    }
}

impl std::fmt::Debug for Shown<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if field_is_secret(self.name) {
            write!(f, "{REDACTED:?}")
        } else {
            write!(f, "{:?}", self.value)
        }
    }
}

/// `reason` without the value of a secret `field` (librdkafka's
/// descriptions may quote the value they refuse).
fn shown_reason(field: &str, value: &str, reason: &str) -> String {
    if field_is_secret(field) {
        redact_value_in(reason, value)
    } else {
        reason.to_owned()
    }
}

/// Written by hand, as the derived one would be, with the values of secret
/// fields shown as [`REDACTED`].
impl std::fmt::Debug for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConfigError::Invalid {
                field,
                value,
                reason,
            } => f
                .debug_struct("Invalid")
                .field("field", field)
                .field("value", &Shown { name: field, value })
                .field("reason", &shown_reason(field, value, reason))
                .finish(),
            ConfigError::Conflict {
                field,
                property,
                field_value,
                extra_value,
            } => f
                .debug_struct("Conflict")
                .field("field", field)
                .field("property", property)
                .field(
                    "field_value",
                    &Shown {
                        name: property,
                        value: field_value,
                    },
                )
                .field(
                    "extra_value",
                    &Shown {
                        name: property,
                        value: extra_value,
                    },
                )
                .finish(),
            ConfigError::Reserved { property, reason } => f
                .debug_struct("Reserved")
                .field("property", property)
                .field("reason", reason)
                .finish(),
            ConfigError::Yaml {
                origin,
                message,
                line,
            } => f
                .debug_struct("Yaml")
                .field("origin", origin)
                .field("message", message)
                .field("line", line)
                .finish(),
            ConfigError::Io { path, reason } => f
                .debug_struct("Io")
                .field("path", path)
                .field("reason", reason)
                .finish(),
            ConfigError::Variable {
                origin,
                field,
                variable,
                reason,
            } => f
                .debug_struct("Variable")
                .field("origin", origin)
                .field("field", field)
                .field("variable", variable)
                .field("reason", reason)
                .finish(),
            ConfigError::Reference { origin, field } => f
                .debug_struct("Reference")
                .field("origin", origin)
                .field("field", field)
                .finish(),
            ConfigError::ValueFile {
                origin,
                field,
                path,
                reason,
            } => f
                .debug_struct("ValueFile")
                .field("origin", origin)
                .field("field", field)
                .field("path", path)
                .field("reason", reason)
                .finish(),
            ConfigError::ValueAndFile { origin, property } => f
                .debug_struct("ValueAndFile")
                .field("origin", origin)
                .field("property", property)
                .finish(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kafka(error: KafkaError) -> ConsumerError {
        ConsumerError::from(error)
    }

    /// `(error, fatal, retriable)` for every variant, and the Kafka codes
    /// that matter most.
    fn cases() -> Vec<(ConsumerError, bool, bool)> {
        vec![
            (
                kafka(KafkaError::MessageConsumption(
                    RDKafkaErrorCode::AllBrokersDown,
                )),
                false,
                true,
            ),
            (
                ConsumerError::reported(
                    KafkaError::MessageConsumption(RDKafkaErrorCode::BrokerTransportFailure),
                    Some("127.0.0.1:1/bootstrap: Connect failed".to_owned()),
                ),
                false,
                true,
            ),
            (
                kafka(KafkaError::ConsumerCommit(
                    RDKafkaErrorCode::RebalanceInProgress,
                )),
                false,
                true,
            ),
            (
                kafka(KafkaError::MessageConsumption(
                    RDKafkaErrorCode::TopicAuthorizationFailed,
                )),
                true,
                false,
            ),
            (
                kafka(KafkaError::MessageConsumption(
                    RDKafkaErrorCode::MessageSizeTooLarge,
                )),
                false,
                false,
            ),
            (
                kafka(KafkaError::MessageConsumption(RDKafkaErrorCode::Fatal)),
                true,
                false,
            ),
            (
                kafka(KafkaError::MessageConsumptionFatal(RDKafkaErrorCode::Fatal)),
                true,
                false,
            ),
            (
                ConsumerError::Deserialize {
                    topic: "orders".to_owned(),
                    partition: 0,
                    offset: 7,
                    part: PayloadPart::Value,
                    raw: b"{".to_vec(),
                    source: SerdeError::new("EOF"),
                },
                false,
                false,
            ),
            (
                ConsumerError::Config(ConfigError::Invalid {
                    field: "group_id".to_owned(),
                    value: String::new(),
                    reason: "empty".to_owned(),
                }),
                true,
                false,
            ),
            (ConsumerError::Timeout(Duration::from_secs(1)), false, true),
            (ConsumerError::WokenUp, false, true),
            (
                ConsumerError::Misuse(Misuse::DedicatedStreamAlreadyOpen),
                false,
                false,
            ),
            (
                ConsumerError::Io(std::io::Error::other("no threads")),
                false,
                false,
            ),
            (ConsumerError::Closed, true, false),
        ]
    }

    #[test]
    fn every_variant_says_whether_it_is_fatal_or_retriable() {
        for (error, fatal, retriable) in cases() {
            assert_eq!(error.is_fatal(), fatal, "is_fatal of {error:?}");
            assert_eq!(error.is_retriable(), retriable, "is_retriable of {error:?}");
            assert!(
                !(error.is_fatal() && error.is_retriable()),
                "{error:?} is both"
            );
        }
    }

    #[test]
    fn the_code_is_librdkafkas_and_only_kafka_errors_have_one() {
        let error = kafka(KafkaError::MessageConsumption(
            RDKafkaErrorCode::UnknownTopicOrPartition,
        ));
        assert_eq!(
            error.code(),
            Some(RDKafkaErrorCode::UnknownTopicOrPartition)
        );
        assert_eq!(ConsumerError::Closed.code(), None);
        assert_eq!(ConsumerError::Timeout(Duration::ZERO).code(), None);
    }

    const SECRET: &str = "s3cr3t-Zq81-never-print";

    fn assert_hidden(error: &dyn std::error::Error) {
        for shown in [
            error.to_string(),
            format!("{error:?}"),
            format!("{error:#?}"),
        ] {
            assert!(!shown.contains(SECRET), "{shown}");
            assert!(shown.contains(REDACTED), "{shown}");
        }
    }

    #[test]
    fn config_errors_about_a_secret_show_it_redacted_and_name_it() {
        let invalid = ConfigError::Invalid {
            field: "extra.sasl.password".to_owned(),
            value: SECRET.to_owned(),
            reason: format!("{SECRET} is too short"),
        };
        assert_hidden(&invalid);
        assert_eq!(
            invalid.to_string(),
            "invalid `extra.sasl.password` = [redacted]: [redacted] is too short"
        );
        let conflict = ConfigError::Conflict {
            field: "a_field".to_owned(),
            property: "ssl.key.pem".to_owned(),
            field_value: SECRET.to_owned(),
            extra_value: SECRET.to_owned(),
        };
        assert_hidden(&conflict);
        assert!(conflict.to_string().contains("`ssl.key.pem`"));
        // Not secret: shown as before.
        let plain = ConfigError::Invalid {
            field: "group_id".to_owned(),
            value: String::new(),
            reason: "must not be empty".to_owned(),
        };
        assert_eq!(
            plain.to_string(),
            "invalid `group_id` = \"\": must not be empty"
        );
        assert_eq!(
            format!("{plain:?}"),
            "Invalid { field: \"group_id\", value: \"\", reason: \"must not be empty\" }"
        );
    }

    #[test]
    fn a_librdkafka_configuration_error_about_a_secret_is_redacted() {
        let refused = || {
            KafkaError::ClientConfig(
                rdkafka::types::RDKafkaConfRes::RD_KAFKA_CONF_INVALID,
                format!("Invalid value \"{SECRET}\""),
                "sasl.password".to_owned(),
                SECRET.to_owned(),
            )
        };
        for error in [
            ConsumerError::from(refused()),
            ConsumerError::reported(refused(), None),
            ConsumerError::Config(ConfigError::Invalid {
                field: "sasl.password".to_owned(),
                value: SECRET.to_owned(),
                reason: String::new(),
            }),
        ] {
            assert_hidden(&error);
            assert!(error.to_string().contains("sasl.password"), "{error}");
            if let Some(source) = std::error::Error::source(&error) {
                assert!(!source.to_string().contains(SECRET), "{source}");
            }
        }
        // Built by hand, the error still shows redacted.
        let by_hand = ConsumerError::Kafka {
            error: refused(),
            reason: None,
        };
        assert!(!by_hand.to_string().contains(SECRET), "{by_hand}");
        assert!(!format!("{by_hand:?}").contains(SECRET), "{by_hand:?}");
    }

    #[test]
    fn a_reason_is_kept_and_shown_and_an_empty_one_is_none() {
        let reported = ConsumerError::reported(
            KafkaError::MessageConsumption(RDKafkaErrorCode::UnknownTopicOrPartition),
            Some("Subscribed topic not available: orders".to_owned()),
        );
        assert!(
            reported
                .to_string()
                .ends_with(": Subscribed topic not available: orders"),
            "{reported}"
        );
        assert!(matches!(
            ConsumerError::reported(KafkaError::Canceled, Some(String::new())),
            ConsumerError::Kafka { reason: None, .. }
        ));
        // The librdkafka error stays reachable as the source.
        let source = std::error::Error::source(&reported).map(ToString::to_string);
        assert!(
            source.is_some_and(|source| source.contains("UnknownTopicOrPartition")),
            "{reported:?}"
        );
    }
}
