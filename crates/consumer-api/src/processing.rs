//! [`ProcessingConfig`]: concurrent processing as a configuration describes
//! it (the `processing:` section of a consumer's YAML).

use serde::{Deserialize, Serialize};

use crate::error::ConfigError;

/// Which messages concurrent processing may handle at the same time.
///
/// In YAML: `ordering: key`, `partition` or `unordered`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProcessingOrder {
    /// Messages with the same key (in the same partition) are handled one at
    /// a time, in offset order; different keys at once. The messages without
    /// a key of a partition form one group of their own, handled in order.
    #[default]
    Key,
    /// The messages of a partition are handled one at a time, in offset
    /// order; different partitions at once.
    Partition,
    /// Any message may be handled at the same time as any other.
    Unordered,
}

/// Concurrent processing's settings, as the `processing:` section of a
/// consumer's configuration gives them; each field left out keeps its
/// default (see `consumer_fast::ProcessOptions`).
///
/// ```
/// use consumer_api::{ConsumerConfig, ProcessingOrder};
///
/// let config = ConsumerConfig::from_yaml_str(r#"
/// consumer:
///   brokers: "localhost:9092"
///   group_id: "billing"
///   processing:
///     ordering: key
///     max_in_flight: 1000
///     retry: { attempts: 5, initial_backoff_ms: 100, max_backoff_ms: 10000 }
///     dead_letter: { topic_suffix: ".DLT" }
///     dead_letter_limit: { max_share_percent: 5, min_messages: 1000, max_consecutive: 50 }
/// "#)?;
/// let processing = config.processing.expect("a processing section");
/// assert_eq!(processing.ordering, Some(ProcessingOrder::Key));
/// assert_eq!(processing.max_in_flight, Some(1000));
/// # Ok::<(), consumer_api::ConfigError>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct ProcessingConfig {
    /// Which messages may be handled at the same time (`key` unless set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ordering: Option<ProcessingOrder>,
    /// The most messages handled at once, across partitions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_in_flight: Option<usize>,
    /// The most messages of one partition handled at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_in_flight_per_partition: Option<usize>,
    /// The most messages held before fetching pauses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_buffered: Option<usize>,
    /// How often completed work is committed, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit_interval_ms: Option<u64>,
    /// On revocation, how long the revoked partitions' messages may take to
    /// finish, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revocation_timeout_ms: Option<u64>,
    /// On stop, how long the messages being handled may take to finish, in
    /// milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shutdown_timeout_ms: Option<u64>,
    /// The longest commit metadata written: the broker's
    /// `offset.metadata.max.bytes`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_metadata_bytes: Option<usize>,
    /// How a failed handler is retried.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryConfig>,
    /// Where messages go that cannot be handled: a dead-letter topic. Left
    /// out, such a message stops processing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_letter: Option<DeadLetterConfig>,
    /// When dead-lettering stops being an answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_letter_limit: Option<DeadLetterLimitConfig>,
}

/// How a failed handler is retried: `attempts` in all, waiting from
/// `initial_backoff_ms`, doubling up to `max_backoff_ms`, jittered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct RetryConfig {
    /// Attempts in all, the first included (at least 1).
    pub attempts: u32,
    /// The wait before the second attempt, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_backoff_ms: Option<u64>,
    /// The longest wait between attempts, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_backoff_ms: Option<u64>,
}

/// A dead-letter topic: each record's is its topic's name plus
/// `topic_suffix` (`.DLT` unless set).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct DeadLetterConfig {
    /// Appended to a record's topic to name its dead-letter topic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic_suffix: Option<String>,
}

impl DeadLetterConfig {
    /// The suffix: [`topic_suffix`](Self::topic_suffix) or `.DLT`.
    pub fn suffix(&self) -> &str {
        self.topic_suffix.as_deref().unwrap_or(".DLT")
    }
}

/// When dead-lettering stops being an answer (see
/// `consumer_fast::DeadLetterLimit`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct DeadLetterLimitConfig {
    /// The largest share of finished messages that may be dead-lettered,
    /// in percent (0 to 100).
    pub max_share_percent: u8,
    /// How many messages must have finished before the share applies.
    pub min_messages: u64,
    /// The most messages dead-lettered in a row.
    pub max_consecutive: u64,
}

impl ProcessingConfig {
    /// Checks the values that cannot work, naming the field
    /// (`processing.max_in_flight` and the like).
    ///
    /// # Errors
    ///
    /// [`ConfigError::Invalid`] for a bound of 0, 0 retry attempts, a share
    /// above 100 % or an empty dead-letter suffix.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |field: &str, value: String, reason: &str| ConfigError::Invalid {
            field: format!("processing.{field}"),
            value,
            reason: reason.to_owned(),
        };
        for (field, value) in [
            ("max_in_flight", self.max_in_flight),
            (
                "max_in_flight_per_partition",
                self.max_in_flight_per_partition,
            ),
            ("max_buffered", self.max_buffered),
        ] {
            if value == Some(0) {
                return Err(invalid(field, "0".to_owned(), "at least 1 message"));
            }
        }
        if self.commit_interval_ms == Some(0) {
            return Err(invalid(
                "commit_interval_ms",
                "0".to_owned(),
                "at least 1 ms",
            ));
        }
        if let Some(retry) = &self.retry
            && retry.attempts == 0
        {
            return Err(invalid(
                "retry.attempts",
                "0".to_owned(),
                "at least 1 (the first attempt)",
            ));
        }
        if let Some(limit) = &self.dead_letter_limit
            && limit.max_share_percent > 100
        {
            return Err(invalid(
                "dead_letter_limit.max_share_percent",
                limit.max_share_percent.to_string(),
                "a percentage, 0 to 100",
            ));
        }
        if let Some(dead_letter) = &self.dead_letter
            && dead_letter.topic_suffix.as_deref() == Some("")
        {
            return Err(invalid(
                "dead_letter.topic_suffix",
                String::new(),
                "an empty suffix would dead-letter into the topic itself",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_values_name_their_field() {
        let config = ProcessingConfig {
            max_in_flight: Some(0),
            ..ProcessingConfig::default()
        };
        let error = config.validate().expect_err("0 in flight");
        assert!(
            error.to_string().contains("processing.max_in_flight"),
            "{error}"
        );

        let config = ProcessingConfig {
            dead_letter: Some(DeadLetterConfig {
                topic_suffix: Some(String::new()),
            }),
            ..ProcessingConfig::default()
        };
        let error = config.validate().expect_err("empty suffix");
        assert!(
            error
                .to_string()
                .contains("processing.dead_letter.topic_suffix"),
            "{error}"
        );

        let config = ProcessingConfig {
            dead_letter_limit: Some(DeadLetterLimitConfig {
                max_share_percent: 101,
                min_messages: 0,
                max_consecutive: 1,
            }),
            ..ProcessingConfig::default()
        };
        let error = config.validate().expect_err("101 %");
        assert!(error.to_string().contains("101"), "{error}");
    }

    #[test]
    fn the_defaults_are_valid() {
        assert!(ProcessingConfig::default().validate().is_ok());
        assert_eq!(DeadLetterConfig::default().suffix(), ".DLT");
    }
}
