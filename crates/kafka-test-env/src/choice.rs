//! Which broker a test asked for (`KAFKA_TEST_BROKER`) and which one it got.

use std::fmt;

use crate::TestEnvError;

/// The environment variable that picks the broker for a test run.
pub const BROKER_ENV_VAR: &str = "KAFKA_TEST_BROKER";

/// A broker choice as written in [`KAFKA_TEST_BROKER`](BROKER_ENV_VAR),
/// before anything is started or probed.
///
/// Parsing is a pure function so it can be tested without touching the
/// process environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BrokerChoice {
    /// Unset, empty or `mock`: librdkafka's in-process mock cluster.
    Mock,
    /// `local`: the Apache Kafka started by `cargo xtask kafka start`.
    Local,
    /// `cluster`: the three-node Apache Kafka cluster started by
    /// `cargo xtask kafka start --nodes 3`.
    Cluster,
    /// `docker`: Kafka in Docker through testcontainers (feature `docker`).
    Docker,
    /// Anything containing `:`: a bootstrap list of an external broker, kept
    /// as written (trimmed).
    External(String),
}

impl BrokerChoice {
    /// Parses a value of `KAFKA_TEST_BROKER`.
    ///
    /// The keywords `mock`, `local`, `cluster` and `docker` are matched case-insensitively
    /// after trimming whitespace; an empty value means `mock`; any value with a
    /// `:` is an external bootstrap list (`host:port` or `host1:port,host2:port`).
    ///
    /// # Errors
    ///
    /// [`TestEnvError::UnknownBrokerChoice`] naming the value for anything else.
    ///
    /// # Examples
    ///
    /// ```
    /// use kafka_test_env::BrokerChoice;
    ///
    /// assert_eq!(BrokerChoice::parse("mock")?, BrokerChoice::Mock);
    /// assert_eq!(
    ///     BrokerChoice::parse("127.0.0.1:9092")?,
    ///     BrokerChoice::External("127.0.0.1:9092".to_owned())
    /// );
    /// assert!(BrokerChoice::parse("kafka").is_err());
    /// # Ok::<(), kafka_test_env::TestEnvError>(())
    /// ```
    pub fn parse(value: &str) -> Result<Self, TestEnvError> {
        let trimmed = value.trim();
        if trimmed.is_empty() || trimmed.eq_ignore_ascii_case("mock") {
            Ok(Self::Mock)
        } else if trimmed.eq_ignore_ascii_case("local") {
            Ok(Self::Local)
        } else if trimmed.eq_ignore_ascii_case("cluster") {
            Ok(Self::Cluster)
        } else if trimmed.eq_ignore_ascii_case("docker") {
            Ok(Self::Docker)
        } else if trimmed.contains(':') && !trimmed.chars().any(char::is_whitespace) {
            Ok(Self::External(trimmed.to_owned()))
        } else {
            Err(TestEnvError::UnknownBrokerChoice {
                value: value.to_owned(),
            })
        }
    }
}

/// The broker a [`KafkaTestEnv`](crate::KafkaTestEnv) is connected to, with its
/// bootstrap address.
///
/// `Display` gives a one-line description for test output, for example
/// `local (Apache Kafka at 127.0.0.1:19092)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BrokerKind {
    /// librdkafka's in-process mock cluster.
    Mock {
        /// The mock cluster's bootstrap list (loopback, ephemeral port).
        bootstrap: String,
    },
    /// The Apache Kafka started by `cargo xtask kafka start`.
    Local {
        /// The address read from `target/kafka/bootstrap.txt`.
        bootstrap: String,
    },
    /// The three-node Apache Kafka cluster started by
    /// `cargo xtask kafka start --nodes 3`.
    Cluster {
        /// The three nodes' addresses, from `target/kafka-cluster/cluster.json`.
        bootstrap: String,
    },
    /// Kafka in a Docker container started by testcontainers.
    Docker {
        /// The container's mapped address.
        bootstrap: String,
    },
    /// A broker somebody else runs.
    External {
        /// The bootstrap list as given.
        bootstrap: String,
    },
}

impl BrokerKind {
    /// The bootstrap servers of this broker.
    pub fn bootstrap(&self) -> &str {
        match self {
            Self::Mock { bootstrap }
            | Self::Local { bootstrap }
            | Self::Cluster { bootstrap }
            | Self::Docker { bootstrap }
            | Self::External { bootstrap } => bootstrap,
        }
    }

    /// Whether this is the librdkafka mock cluster (no admin API, no topic
    /// deletion, about 5 MB kept per partition).
    pub fn is_mock(&self) -> bool {
        matches!(self, Self::Mock { .. })
    }
}

impl fmt::Display for BrokerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Mock { bootstrap } => write!(f, "mock (librdkafka mock cluster at {bootstrap})"),
            Self::Local { bootstrap } => write!(f, "local (Apache Kafka at {bootstrap})"),
            Self::Cluster { bootstrap } => {
                write!(f, "cluster (three-node Apache Kafka at {bootstrap})")
            }
            Self::Docker { bootstrap } => write!(f, "docker (Kafka container at {bootstrap})"),
            Self::External { bootstrap } => write!(f, "external (Kafka at {bootstrap})"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keywords_parse_case_insensitively_and_trimmed() {
        for (input, expected) in [
            ("", BrokerChoice::Mock),
            ("  ", BrokerChoice::Mock),
            ("mock", BrokerChoice::Mock),
            ("MOCK", BrokerChoice::Mock),
            ("local", BrokerChoice::Local),
            (" Local\n", BrokerChoice::Local),
            ("docker", BrokerChoice::Docker),
            ("Cluster", BrokerChoice::Cluster),
        ] {
            assert_eq!(
                BrokerChoice::parse(input).expect("keyword parses"),
                expected,
                "input {input:?}"
            );
        }
    }

    #[test]
    fn values_with_a_colon_are_external_bootstrap_lists() {
        assert_eq!(
            BrokerChoice::parse(" 127.0.0.1:19092 ").expect("address parses"),
            BrokerChoice::External("127.0.0.1:19092".to_owned())
        );
        assert_eq!(
            BrokerChoice::parse("a:1,b:2").expect("list parses"),
            BrokerChoice::External("a:1,b:2".to_owned())
        );
    }

    #[test]
    fn unknown_value_is_an_error_naming_it_and_the_accepted_forms() {
        let error = BrokerChoice::parse("kafka-please").expect_err("unknown value is rejected");
        assert_eq!(
            error,
            TestEnvError::UnknownBrokerChoice {
                value: "kafka-please".to_owned()
            }
        );
        let text = error.to_string();
        assert!(text.contains("\"kafka-please\""), "{text}");
        for form in ["`mock`", "`local`", "`cluster`", "`docker`", "host:port"] {
            assert!(text.contains(form), "{text} lacks {form}");
        }
        assert!(BrokerChoice::parse("host with spaces:1").is_err());
    }

    #[test]
    fn kind_display_names_kind_and_address() {
        let kind = BrokerKind::Local {
            bootstrap: "127.0.0.1:1234".to_owned(),
        };
        assert_eq!(kind.to_string(), "local (Apache Kafka at 127.0.0.1:1234)");
        assert_eq!(kind.bootstrap(), "127.0.0.1:1234");
        assert!(!kind.is_mock());
    }
}
