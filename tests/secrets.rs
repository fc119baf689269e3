//! Secrets are never printed (issue 19, item 5): the value of a secret
//! librdkafka property (`consumer_api::is_secret_property`) appears in no
//! `Debug` of a configuration, in no error built from one (`Display`,
//! `Debug` and every `source()`), and in no log line of building and
//! reading a consumer of each implementation, at TRACE level with
//! librdkafka's own debug logs on (`debug=all`). Most tests need no broker:
//! the consumers point at `127.0.0.1:1`, where nothing listens. One runs a
//! real SCRAM session (right and wrong password) against the secured Apache
//! Kafka of `cargo xtask kafka start --secure`.

use std::io::Write as _;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use futures_util::StreamExt as _;
use tiered_kafka::api::{REDACTED, SECRET_PROPERTIES, is_secret_property};
use tiered_kafka::prelude::*;
use tiered_kafka::rdkafka::consumer::{BaseConsumer, DefaultConsumerContext};
use tiered_kafka::rdkafka::error::KafkaError;
use tiered_kafka::rdkafka::types::RDKafkaConfRes;

/// The secret every test hides. Each property gets its own value starting
/// with it, `<SECRET>/<property>`, so that a leak says whose value it is.
const SECRET: &str = "s3cr3t-Zq81-never-print";

/// Where nothing listens: consumers are built and read, and only fail to connect.
const UNREACHABLE: &str = "127.0.0.1:1";

/// The value a test gives the secret property `property`.
fn secret_of(property: &str) -> String {
    format!("{SECRET}/{property}")
}

/// Properties whose names make them secret without being on the list.
const SECRET_BY_NAME: &[&str] = &["my.plugin.password", "my.plugin.client.secret"];

/// Properties that are not secret, with values that must stay visible.
const NOT_SECRET: &[(&str, &str)] = &[
    ("ssl.certificate.pem", "visible-certificate"),
    ("sasl.kerberos.keytab", "/etc/visible.keytab"),
    ("statistics.interval.ms", "0"),
];

/// A configuration holding every secret property, and some that are not.
fn config_holding_every_secret() -> ConsumerConfig {
    let mut config = ConsumerConfig::new(UNREACHABLE, "secrets");
    for property in SECRET_PROPERTIES.iter().chain(SECRET_BY_NAME) {
        config
            .extra
            .insert((*property).to_owned(), secret_of(property));
    }
    for (property, value) in NOT_SECRET {
        config
            .extra
            .insert((*property).to_owned(), (*value).to_owned());
    }
    config
}

/// Panics, naming the text and the lines, if `shown` holds the secret (or
/// a good part of it).
#[track_caller]
fn assert_no_secret(what: &str, shown: &str) {
    let leaks: Vec<&str> = shown
        .lines()
        .filter(|line| line.contains(SECRET) || line.contains("Zq81"))
        .collect();
    assert!(
        leaks.is_empty(),
        "{what} shows a secret in {} line(s):\n{}",
        leaks.len(),
        leaks.join("\n")
    );
}

/// `error`'s `Display`, `Debug`, pretty `Debug`, and the `Display` and
/// `Debug` of each of its sources, checked for the secret.
#[track_caller]
fn assert_error_hides_secret(what: &str, error: &(dyn std::error::Error + 'static)) {
    let mut level: Option<&(dyn std::error::Error + 'static)> = Some(error);
    let mut depth = 0;
    while let Some(error) = level {
        assert_no_secret(
            &format!("{what} (source {depth}, Display)"),
            &error.to_string(),
        );
        assert_no_secret(
            &format!("{what} (source {depth}, Debug)"),
            &format!("{error:?}"),
        );
        assert_no_secret(
            &format!("{what} (source {depth}, Debug)"),
            &format!("{error:#?}"),
        );
        level = error.source();
        depth += 1;
    }
}

#[test]
fn the_debug_of_a_configuration_shows_no_secret() {
    let config = config_holding_every_secret();
    for shown in [format!("{config:?}"), format!("{config:#?}")] {
        assert_no_secret("Debug of ConsumerConfig", &shown);
        for property in SECRET_PROPERTIES.iter().chain(SECRET_BY_NAME) {
            assert!(
                shown.contains(&format!("{property:?}: {REDACTED:?}")),
                "{property} is named, its value redacted: {shown}"
            );
        }
        for (property, value) in NOT_SECRET {
            assert!(
                shown.contains(&format!("{property:?}: {value:?}")),
                "{shown}"
            );
        }
    }
    // What holds a configuration shows it as the configuration does.
    let builder = ConsumerBuilder::new().config(config);
    assert_no_secret("Debug of ConsumerBuilder", &format!("{builder:?}"));
}

#[test]
fn the_secret_list_agrees_with_is_secret_property() {
    for property in SECRET_PROPERTIES.iter().chain(SECRET_BY_NAME) {
        assert!(is_secret_property(property), "{property}");
    }
    for (property, _) in NOT_SECRET {
        assert!(!is_secret_property(property), "{property}");
    }
}

/// Serializing is explicit: it keeps the values (documented on
/// `ConsumerConfig`), so that a configuration can be handed on whole.
#[test]
fn serializing_keeps_the_secret_values() {
    let config = config_holding_every_secret();
    let json = serde_json::to_string(&config).expect("a configuration serializes");
    assert!(json.contains(&secret_of("sasl.password")), "{json}");
}

#[test]
fn errors_of_an_invalid_configuration_show_no_secret() {
    let mut empty_group = config_holding_every_secret();
    empty_group.group_id = String::new();
    let mut reserved = config_holding_every_secret();
    reserved
        .extra
        .insert("enable.auto.offset.store".to_owned(), "true".to_owned());
    for (what, config) in [("empty group", empty_group), ("reserved", reserved)] {
        let error = config.validate().expect_err("invalid");
        assert_error_hides_secret(what, &error);
        let error = config.client_config().expect_err("invalid");
        assert_error_hides_secret(what, &error);
        for tier in tiers() {
            let error = ConsumerFactory::create::<String, String, _, _>(
                config.clone().with_tier_option(tier),
                StringSerde,
                StringSerde,
            )
            .err()
            .expect("invalid");
            assert_error_hides_secret(what, &error);
        }
    }
}

/// A secret property librdkafka does not know is refused when the client
/// is created, with its name and value: the value is redacted, the name is
/// kept. `ssl.truststore.password` is the Java client's; a configuration
/// carried over may hold it.
#[test]
fn a_secret_property_librdkafka_refuses_is_named_without_its_value() {
    for property in ["ssl.truststore.password", "my.plugin.password"] {
        let value = secret_of(property);
        for tier in tiers() {
            let config = ConsumerConfig::new(UNREACHABLE, "secrets")
                .with_extra(property, value.as_str())
                .with_tier_option(tier);
            let error =
                ConsumerFactory::create::<String, String, _, _>(config, StringSerde, StringSerde)
                    .err()
                    .expect("librdkafka refuses an unknown property");
            assert_error_hides_secret(property, &error);
            assert!(
                matches!(&error, ConsumerError::Config(ConfigError::Invalid { field, .. }) if field == property),
                "{error:?}"
            );
            let shown = error.to_string();
            assert!(
                shown.contains(property) && shown.contains(REDACTED),
                "{shown}"
            );
        }
        // The dead-letter producer of concurrent processing is created
        // first, with the consumer's `sasl.`/`ssl.` properties.
        let mut config =
            ConsumerConfig::new(UNREACHABLE, "secrets").with_extra(property, value.as_str());
        config.processing = ConsumerConfig::from_yaml_str(
            "consumer:\n  brokers: b:9092\n  group_id: g\n  processing:\n    dead_letter: {}\n",
        )
        .expect("a processing section")
        .processing;
        let error = ConsumerFactory::processor::<String, String>(config, StringSerde, StringSerde)
            .expect_err("librdkafka refuses an unknown property");
        assert_error_hides_secret(property, &error);
        assert!(error.to_string().contains(property), "{error}");
    }
}

/// Errors built by hand, as an application or another crate may, are shown
/// redacted too.
#[test]
fn errors_built_by_hand_show_no_secret() {
    let value = secret_of("sasl.password");
    let errors: Vec<ConsumerError> = vec![
        ConsumerError::Config(ConfigError::Invalid {
            field: "sasl.password".to_owned(),
            value: value.clone(),
            reason: format!("cannot use {value}"),
        }),
        ConsumerError::Config(ConfigError::Invalid {
            field: "extra.ssl.key.pem".to_owned(),
            value: value.clone(),
            reason: "not PEM".to_owned(),
        }),
        ConsumerError::Config(ConfigError::Conflict {
            field: "some_field".to_owned(),
            property: "sasl.oauthbearer.client.secret".to_owned(),
            field_value: value.clone(),
            extra_value: value.clone(),
        }),
        ConsumerError::from(KafkaError::ClientConfig(
            RDKafkaConfRes::RD_KAFKA_CONF_INVALID,
            format!("Invalid value \"{value}\""),
            "sasl.password".to_owned(),
            value.clone(),
        )),
        ConsumerError::reported(
            KafkaError::ClientConfig(
                RDKafkaConfRes::RD_KAFKA_CONF_INVALID,
                String::new(),
                "ssl.key.password".to_owned(),
                value.clone(),
            ),
            None,
        ),
        ConsumerError::Kafka {
            error: KafkaError::ClientConfig(
                RDKafkaConfRes::RD_KAFKA_CONF_INVALID,
                String::new(),
                "sasl.password".to_owned(),
                value.clone(),
            ),
            reason: None,
        },
    ];
    for error in &errors {
        // All but the last were built through the API; the last one's
        // source is the unredacted `KafkaError` it was built with, so only
        // its own `Display` and `Debug` are checked.
        assert_no_secret("ConsumerError", &error.to_string());
        assert_no_secret("ConsumerError", &format!("{error:?}"));
        assert_no_secret("ConsumerError", &format!("{error:#?}"));
    }
    for error in &errors[..errors.len() - 1] {
        assert_error_hides_secret("ConsumerError", error);
    }
}

#[test]
fn yaml_errors_show_no_secret() {
    let secret = secret_of("sasl.password");
    let documents = [
        // A misspelt field; the parser quotes the lines around it.
        (
            format!("consumer:\n  brokers: b:9092\n  group_idd: g\n  extra:\n    sasl.password: \"{secret}\"\n"),
            "group_idd",
        ),
        // A wrong type below a PEM key.
        (
            format!(
                "consumer:\n  brokers: b:9092\n  group_id: g\n  extra:\n    ssl.key.pem: |\n      -----BEGIN PRIVATE KEY-----\n      {secret}\n      -----END PRIVATE KEY-----\n    sasl.password: {secret}\n  session_timeout_ms: soon\n"
            ),
            "session_timeout_ms",
        ),
        // The secret itself is malformed.
        (
            format!("consumer:\n  brokers: b:9092\n  group_id: g\n  extra:\n    sasl.password: [{secret}]\n"),
            "line 5",
        ),
        // A valid document with an invalid configuration.
        (
            format!("consumer:\n  brokers: \"\"\n  group_id: g\n  extra:\n    sasl.password: {secret}\n"),
            "brokers",
        ),
        // References: a variable that is not set, a malformed reference
        // in a secret, a missing file.
        (
            "consumer:\n  brokers: b:9092\n  group_id: g\n  extra:\n    sasl.password: ${TIERED_KAFKA_SECRETS_TEST_UNSET}\n"
                .to_owned(),
            "TIERED_KAFKA_SECRETS_TEST_UNSET",
        ),
        (
            format!("consumer:\n  brokers: b:9092\n  group_id: g\n  extra:\n    sasl.password: \"{secret}${{\"\n"),
            "extra.sasl.password",
        ),
        (
            format!(
                "consumer:\n  brokers: b:9092\n  group_id: g\n  extra:\n    sasl.username: {secret}\n    sasl.password_file: /nonexistent/secret\n"
            ),
            "/nonexistent/secret",
        ),
    ];
    for (yaml, named) in &documents {
        let error = ConsumerConfig::from_yaml_str(yaml).expect_err("a bad document");
        assert_error_hides_secret(named, &error);
        assert!(error.to_string().contains(named), "{error}");
        let error =
            ConsumerFactory::from_yaml_str::<String, String, _, _>(yaml, StringSerde, StringSerde)
                .err()
                .expect("a bad document");
        assert_error_hides_secret(named, &error);
        let file = tempfile::NamedTempFile::new().expect("a temporary file");
        std::fs::write(file.path(), yaml).expect("the temporary file is writable");
        let error = ConsumerConfig::from_yaml_file(file.path()).expect_err("a bad document");
        assert_error_hides_secret(named, &error);
    }
}

#[test]
fn a_secret_from_a_file_is_loaded_and_not_shown() {
    let mut file = tempfile::NamedTempFile::new().expect("a temporary file");
    writeln!(file, "{}", secret_of("sasl.password")).expect("the temporary file is writable");
    let yaml = format!(
        "consumer:\n  brokers: b:9092\n  group_id: g\n  extra:\n    sasl.password_file: \"{}\"\n",
        file.path().display()
    );
    let config = ConsumerConfig::from_yaml_str(&yaml).expect("the file exists");
    assert_eq!(config.extra["sasl.password"], secret_of("sasl.password"));
    assert_no_secret("Debug of a loaded ConsumerConfig", &format!("{config:?}"));
}

/// Building, subscribing, reading for a second and dropping each
/// implementation (and concurrent processing with its dead-letter
/// producer), with librdkafka's debug logs on and every line at TRACE
/// captured: no line holds a secret, and librdkafka's own dump of its
/// configuration was among them, its secret values redacted by librdkafka.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_log_line_of_any_consumer_shows_a_secret() {
    let log = captured_log();
    let mut config = config_holding_every_secret();
    // SASL over plaintext: librdkafka takes the SASL properties (and would
    // send the password once connected) without the TLS ones being real
    // keys.
    for (property, value) in [
        ("security.protocol", "SASL_PLAINTEXT"),
        ("sasl.mechanisms", "PLAIN"),
        ("debug", "all"),
    ] {
        config.extra.insert(property.to_owned(), value.to_owned());
    }
    // Only the properties this build of librdkafka takes: not those it does
    // not know (refused, as tested above), sets only through its C API
    // (`ssl_key`), or leaves out of this build (the OIDC ones without the
    // `oidc` feature).
    let refused: Vec<String> = config
        .extra
        .keys()
        .filter(|property| is_secret_property(property))
        .filter(|property| !librdkafka_takes(property))
        .cloned()
        .collect();
    for property in &refused {
        config.extra.remove(property);
    }
    assert!(
        config.extra.contains_key("sasl.password") && config.extra.contains_key("ssl.key.password"),
        "left out: {refused:?}"
    );
    config.close_timeout_ms = Some(2_000);
    // As a service logging its configuration would.
    tracing::info!(?config, "configuration");

    for tier in tiers() {
        let config = config.clone().with_tier_option(tier);
        let consumer =
            ConsumerFactory::create::<String, String, _, _>(config, StringSerde, StringSerde)
                .unwrap_or_else(|error| panic!("{tier:?}: {error}"));
        consumer
            .subscribe(&["secrets"])
            .unwrap_or_else(|error| panic!("{tier:?}: {error}"));
        let mut stream = consumer.stream();
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            while let Some(item) = stream.next().await {
                // What the stream reports is logged, and so checked, too.
                tracing::trace!(?item, "read");
                if let Err(error) = item {
                    tracing::trace!(%error, "read error");
                }
            }
        })
        .await;
        drop(stream);
        drop(consumer);
    }

    // The implementations' own `Debug`, and concurrent processing with its
    // dead-letter producer (built with the consumer's `sasl.` properties).
    let legacy = KafkaConsumer::with_config(config.clone(), StringSerde, StringSerde)
        .expect("a legacy consumer");
    tracing::trace!(?legacy, "legacy consumer");
    drop(legacy);
    let fast =
        FastConsumer::<String, String>::with_config(config.clone(), StringSerde, StringSerde)
            .expect("a fast consumer");
    tracing::trace!(?fast, "fast consumer");
    drop(fast);
    let mut processing = config.clone();
    processing.processing = ConsumerConfig::from_yaml_str(
        "consumer:\n  brokers: b:9092\n  group_id: g\n  processing:\n    dead_letter: {}\n",
    )
    .expect("a processing section")
    .processing;
    let processor =
        ConsumerFactory::processor::<String, String>(processing, StringSerde, StringSerde)
            .expect("concurrent processing");
    processor
        .consumer()
        .subscribe(&["secrets"])
        .expect("a subscription");
    tracing::trace!(?processor, "processor");
    drop(processor);

    let text = log.text();
    assert_no_secret("the TRACE log", &text);
    // The capture worked: librdkafka's debug lines are there, with its dump
    // of the configuration, which names the secret properties it knows.
    assert!(
        text.contains("librdkafka"),
        "librdkafka's lines were captured: {} bytes",
        text.len()
    );
    assert!(
        text.contains("sasl.password = [redacted]"),
        "librdkafka dumped its configuration, redacted"
    );
    // At least: the log is shared with the other tests of this binary.
    assert!(
        text.matches("Kafka consumer created").count() >= tiers().len(),
        "every implementation was built"
    );
}

/// A real SASL session: every implementation authenticates with SCRAM-SHA-512
/// to the secured Apache Kafka of `cargo xtask kafka start --secure` and
/// reads, then tries a wrong password, with librdkafka's debug logs on and
/// every line at TRACE captured: neither password appears. (The mock
/// cluster has no SASL listener: there this test says so and returns.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_log_line_of_a_sasl_session_shows_the_password() {
    let secured = match kafka_test_env::SecuredBroker::from_env() {
        Ok(Some(secured)) => secured,
        Ok(None) => {
            println!(
                "the embedded mock cluster has no SASL listener: this test runs against Apache Kafka (cargo xtask test, local phase)"
            );
            return;
        }
        Err(error) => panic!("the secured broker: {error}"),
    };
    let log = captured_log();
    let env = secured.plaintext_env().expect("the PLAINTEXT listener");
    let topic = secured.unique_topic("secrets");
    env.create_topic(&topic, 1).expect("topic");
    env.produce_test_messages(&topic, 20).expect("produce");
    let properties = secured
        .sasl_properties(
            kafka_test_env::SaslMechanism::ScramSha512,
            kafka_test_env::SecuredBroker::ALICE,
        )
        .expect("alice");
    let password = secured
        .password(kafka_test_env::SecuredBroker::ALICE)
        .expect("alice's password")
        .to_owned();
    let wrong_password = format!("{SECRET}/wrong-sasl-password");

    for tier in tiers() {
        for attempt_password in [&password, &wrong_password] {
            let mut config = ConsumerConfig::new("", secured.unique_group("secrets"))
                .with_tier_option(tier)
                .with_extra("debug", "all");
            config.auto_offset_reset = Some(AutoOffsetReset::Earliest);
            config.close_timeout_ms = Some(2_000);
            for (property, value) in &properties {
                if property == "bootstrap.servers" {
                    config.brokers = value.clone();
                } else {
                    config.extra.insert(property.clone(), value.clone());
                }
            }
            config
                .extra
                .insert("sasl.password".to_owned(), attempt_password.clone());
            tracing::info!(?config, "configuration");
            let consumer =
                ConsumerFactory::create::<String, String, _, _>(config, StringSerde, StringSerde)
                    .unwrap_or_else(|error| panic!("{tier:?}: {error}"));
            consumer
                .subscribe(&[&topic])
                .unwrap_or_else(|error| panic!("{tier:?}: {error}"));
            let mut stream = consumer.stream();
            let mut read = 0;
            let mut errors = 0;
            let _ = tokio::time::timeout(Duration::from_secs(20), async {
                while let Some(item) = stream.next().await {
                    tracing::trace!(?item, "read");
                    match item {
                        Ok(_) => read += 1,
                        Err(error) => {
                            tracing::trace!(%error, "read error");
                            errors += 1;
                        }
                    }
                    if read == 20 || errors == 2 {
                        break;
                    }
                }
            })
            .await;
            if *attempt_password == password {
                assert_eq!(read, 20, "{tier:?}: alice reads");
            } else {
                assert!(
                    errors > 0 && read == 0,
                    "{tier:?}: a wrong password is refused"
                );
            }
            drop(stream);
            tokio::task::block_in_place(move || drop(consumer));
        }
    }

    let text = log.text();
    for (what, secret) in [
        ("alice's password", &password),
        ("the wrong password", &wrong_password),
    ] {
        let lines: Vec<&str> = text
            .lines()
            .filter(|line| line.contains(secret.as_str()))
            .collect();
        assert!(
            lines.is_empty(),
            "the TRACE log shows {what} in {} line(s): {:?}",
            lines.len(),
            &lines[..lines.len().min(3)]
        );
    }
    assert!(
        text.contains("SASL authentication error"),
        "the refusal was logged (the capture worked)"
    );
    assert!(
        text.contains("sasl.password = [redacted]"),
        "librdkafka dumped its configuration, redacted"
    );
}

/// Whether librdkafka creates a SASL/PLAIN consumer with the secret
/// property `property` set (to a value of this test's, so that its
/// refusal is checked by the TRACE log's test too).
fn librdkafka_takes(property: &str) -> bool {
    let config = ConsumerConfig::new(UNREACHABLE, "secrets-probe")
        .with_extra("security.protocol", "SASL_PLAINTEXT")
        .with_extra("sasl.mechanisms", "PLAIN")
        .with_extra("sasl.username", "probe")
        .with_extra("sasl.password", "probe")
        .with_extra(property, secret_of(property));
    config
        .create_with_context::<_, BaseConsumer>(DefaultConsumerContext)
        .inspect_err(|error| tracing::trace!(%error, ?error, "librdkafka refuses"))
        .is_ok()
}

/// The implementations, by `performance_tier`.
fn tiers() -> [Option<ConsumerTier>; 4] {
    [
        None,
        Some(ConsumerTier::Standard),
        Some(ConsumerTier::Buffered { batch_size: 8 }),
        Some(ConsumerTier::Dedicated),
    ]
}

/// `ConsumerConfig::with_tier`, for a tier that may be the legacy consumer's `None`.
trait WithTierOption {
    fn with_tier_option(self, tier: Option<ConsumerTier>) -> Self;
}

impl WithTierOption for ConsumerConfig {
    fn with_tier_option(mut self, tier: Option<ConsumerTier>) -> Self {
        self.performance_tier = tier;
        self
    }
}

/// Every line logged in this test binary, at TRACE, from any thread
/// (librdkafka logs from its own): a global subscriber, installed once.
#[derive(Clone)]
struct CapturedLog(Arc<Mutex<Vec<u8>>>);

impl CapturedLog {
    fn text(&self) -> String {
        let bytes = self.0.lock().map(|bytes| bytes.clone()).unwrap_or_default();
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

impl std::io::Write for CapturedLog {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut bytes) = self.0.lock() {
            bytes.extend_from_slice(buf);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn captured_log() -> CapturedLog {
    static LOG: OnceLock<CapturedLog> = OnceLock::new();
    LOG.get_or_init(|| {
        let log = CapturedLog(Arc::new(Mutex::new(Vec::new())));
        let writer = log.clone();
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .init();
        log
    })
    .clone()
}
