//! Loading [`ConsumerConfig`] from the YAML documents of the migration plan.

use std::path::Path;

use serde::Deserialize;

use crate::config::ConsumerConfig;
use crate::error::ConfigError;

/// The document: everything lives under a top-level `consumer:` key.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Document {
    consumer: ConsumerConfig,
}

#[cfg_attr(docsrs, doc(cfg(feature = "yaml")))]
impl ConsumerConfig {
    /// Reads a configuration from a YAML document with a top-level `consumer:` key.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Yaml`] naming the field, the value and the line for a
    /// misspelt or missing field, a wrong type, an unknown tier or a
    /// `batch_size` of 0; then what [`validate`](Self::validate) finds.
    ///
    /// # Examples
    ///
    /// ```
    /// use consumer_api::{ConsumerConfig, ConsumerTier};
    ///
    /// let config = ConsumerConfig::from_yaml_str(r#"
    /// consumer:
    ///   brokers: "localhost:9092"
    ///   group_id: "my-group"
    ///   performance_tier:
    ///     buffered:
    ///       batch_size: 32
    /// "#).unwrap();
    /// assert_eq!(config.performance_tier, Some(ConsumerTier::Buffered { batch_size: 32 }));
    ///
    /// let error = ConsumerConfig::from_yaml_str("consumer:\n  brokers: b:9092\n  group_idd: g\n")
    ///     .unwrap_err();
    /// assert!(error.to_string().contains("group_idd"));
    /// ```
    pub fn from_yaml_str(yaml: &str) -> Result<Self, ConfigError> {
        parse(yaml, "<string>")
    }

    /// Reads a configuration from a YAML file; see [`from_yaml_str`](Self::from_yaml_str).
    ///
    /// # Errors
    ///
    /// [`ConfigError::Io`] when the file cannot be read, otherwise as
    /// [`from_yaml_str`](Self::from_yaml_str), naming the file.
    pub fn from_yaml_file(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        let path = path.as_ref();
        let yaml = std::fs::read_to_string(path).map_err(|error| ConfigError::Io {
            path: path.display().to_string(),
            reason: error.to_string(),
        })?;
        parse(&yaml, &path.display().to_string())
    }
}

fn parse(yaml: &str, origin: &str) -> Result<ConsumerConfig, ConfigError> {
    let document: Document = serde_saphyr::from_str(yaml).map_err(|error| ConfigError::Yaml {
        origin: origin.to_owned(),
        line: error.location().map(|location| location.line()),
        message: error.to_string(),
    })?;
    document.consumer.validate()?;
    Ok(document.consumer)
}
