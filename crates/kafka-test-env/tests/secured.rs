//! The secured listeners of `cargo xtask kafka start --secure`, end to end
//! with librdkafka: every SASL mechanism and mTLS authenticate and read; the
//! ACLs refuse what they should; a wrong password, a missing CA and an IP
//! bootstrap fail with their own errors.
//!
//! The tests need `KAFKA_TEST_BROKER=local` and a broker started with
//! `--secure` (`cargo xtask test` does both in its `local` phase); with any
//! other broker choice they return at once, and with `local` but no secured
//! listeners they fail saying how to start them. Run them alone with:
//!
//! ```sh
//! cargo xtask kafka start --secure
//! KAFKA_TEST_BROKER=local cargo test -p kafka-test-env --test secured -- --nocapture
//! ```

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use kafka_test_env::{SaslMechanism, SecuredBroker, client_config};
use rdkafka::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;

/// How long a negative test waits for librdkafka's error.
const ERROR_WAIT: Duration = Duration::from_secs(20);

/// The secured broker, or `None` (with a note) when the tests run against
/// another broker. Panics with the reason when `KAFKA_TEST_BROKER=local` but
/// the secured listeners are not there.
fn secured() -> Option<SecuredBroker> {
    match SecuredBroker::from_env() {
        Ok(Some(secured)) => Some(secured),
        Ok(None) => {
            eprintln!(
                "not run: the secured listeners need KAFKA_TEST_BROKER=local and \
                 `cargo xtask kafka start --secure`"
            );
            None
        }
        Err(error) => panic!("{error}"),
    }
}

/// One error event librdkafka reported through the client context.
#[derive(Debug, Clone)]
struct Reported {
    /// Its code, if it has one.
    code: Option<RDKafkaErrorCode>,
    /// `KafkaError`'s `Display`.
    error: String,
    /// librdkafka's reason string.
    reason: String,
    /// When it arrived.
    at: Instant,
}

/// A client context that keeps every error event.
#[derive(Clone, Default)]
struct Recorder {
    errors: Arc<Mutex<Vec<Reported>>>,
}

impl Recorder {
    fn errors(&self) -> Vec<Reported> {
        self.errors
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl ClientContext for Recorder {
    fn error(&self, error: KafkaError, reason: &str) {
        self.errors
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Reported {
                code: error.rdkafka_error_code(),
                error: error.to_string(),
                reason: reason.to_owned(),
                at: Instant::now(),
            });
    }
}

impl ConsumerContext for Recorder {}

/// A consumer from `properties` (later entries win) plus `extra`.
fn consumer(
    properties: &[(String, String)],
    extra: &[(&str, &str)],
) -> (BaseConsumer<Recorder>, Recorder) {
    let mut config: ClientConfig = client_config(properties);
    for (key, value) in extra {
        config.set(*key, *value);
    }
    let recorder = Recorder::default();
    let consumer = config
        .create_with_context(recorder.clone())
        .expect("consumer created");
    (consumer, recorder)
}

/// Asks for metadata (which makes librdkafka connect) and polls until an
/// error event with `code` arrives; returns it and how long it took, and
/// prints everything reported, for the record.
fn first_error(
    what: &str,
    properties: &[(String, String)],
    extra: &[(&str, &str)],
    code: RDKafkaErrorCode,
) -> (Reported, Duration) {
    let (consumer, recorder) = consumer(properties, extra);
    let started = Instant::now();
    let metadata = std::thread::scope(|scope| {
        let fetch = scope.spawn(|| consumer.fetch_metadata(None, Duration::from_secs(2)));
        let deadline = Instant::now() + ERROR_WAIT;
        while Instant::now() < deadline && !recorder.errors().iter().any(|e| e.code == Some(code)) {
            if let Some(Err(error)) = consumer.poll(Duration::from_millis(50)) {
                eprintln!("{what}: poll error: {error}");
            }
        }
        fetch.join().expect("metadata thread")
    });
    let errors = recorder.errors();
    for error in &errors {
        eprintln!(
            "{what}: error event: code {:?}; error: {}; reason: {}",
            error.code, error.error, error.reason
        );
    }
    match &metadata {
        Ok(_) => eprintln!("{what}: fetch_metadata succeeded"),
        Err(error) => eprintln!("{what}: fetch_metadata failed: {error}"),
    }
    assert!(metadata.is_err(), "{what}: metadata must not be served");
    let Some(found) = errors.iter().find(|e| e.code == Some(code)).cloned() else {
        panic!("{what}: no {code:?} error within {ERROR_WAIT:?}; got {errors:#?}");
    };
    let elapsed = found.at.saturating_duration_since(started);
    (found, elapsed)
}

/// Metadata for `topic` through a client made of `properties`; panics with
/// every error librdkafka reported.
fn assert_metadata(what: &str, properties: &[(String, String)], topic: &str) {
    let (consumer, recorder) = consumer(properties, &[]);
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(20))
        .unwrap_or_else(|error| {
            panic!(
                "{what}: metadata failed: {error}; reported: {:#?}",
                recorder.errors()
            )
        });
    let found = metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .unwrap_or_else(|| panic!("{what}: {topic} missing from the metadata"));
    assert_eq!(found.error(), None, "{what}: topic error");
    assert_eq!(found.partitions().len(), 1, "{what}");
    assert_eq!(metadata.brokers().len(), 1, "{what}: one broker");
}

#[test]
fn every_mechanism_and_mtls_fetch_metadata() {
    let Some(secured) = secured() else { return };
    let env = secured.plaintext_env().expect("plaintext env");
    let topic = secured.unique_topic("metadata");
    env.create_topic(&topic, 1).expect("topic created");
    for mechanism in SaslMechanism::ALL {
        for user in [SecuredBroker::ALICE, SecuredBroker::ADMIN] {
            let properties = secured
                .sasl_properties(mechanism, user)
                .expect("known user");
            assert_metadata(&format!("{mechanism} as {user}"), &properties, &topic);
        }
    }
    assert_metadata("mTLS (keystore)", &secured.mtls_properties(), &topic);
    match secured.mtls_pem_properties() {
        Some(properties) => assert_metadata("mTLS (PEM)", &properties, &topic),
        None => eprintln!("mTLS with PEM files not checked: no client key PEM (no openssl)"),
    }
}

/// Consumes `count` records of `topic` in a new group; returns them.
fn consume(
    what: &str,
    properties: &[(String, String)],
    topic: &str,
    group: &str,
    count: usize,
) -> Vec<String> {
    let (consumer, recorder) = consumer(
        properties,
        &[
            ("group.id", group),
            ("auto.offset.reset", "earliest"),
            ("enable.auto.commit", "false"),
        ],
    );
    consumer.subscribe(&[topic]).expect("subscribed");
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut payloads = Vec::new();
    while payloads.len() < count && Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(message)) => payloads
                .push(String::from_utf8_lossy(message.payload().unwrap_or_default()).into_owned()),
            Some(Err(error)) => panic!(
                "{what}: consumer error: {error}; reported: {:#?}",
                recorder.errors()
            ),
            None => {}
        }
    }
    consumer
        .commit_consumer_state(rdkafka::consumer::CommitMode::Sync)
        .unwrap_or_else(|error| panic!("{what}: commit failed: {error}"));
    payloads
}

#[test]
fn alice_and_the_mtls_client_consume_with_a_group() {
    let Some(secured) = secured() else { return };
    let env = secured.plaintext_env().expect("plaintext env");
    let topic = secured.unique_topic("consume");
    env.create_topic(&topic, 1).expect("topic created");
    env.produce_test_messages(&topic, 3).expect("produced");
    let expected = ["message-0", "message-1", "message-2"];
    for mechanism in [SaslMechanism::ScramSha512, SaslMechanism::OAuthBearer] {
        let properties = secured
            .sasl_properties(mechanism, SecuredBroker::ALICE)
            .expect("alice");
        let group = secured.unique_group("consume");
        let got = consume(&format!("{mechanism}"), &properties, &topic, &group, 3);
        assert_eq!(got, expected, "{mechanism}");
    }
    let group = secured.unique_group("consume-mtls");
    let got = consume("mTLS", &secured.mtls_properties(), &topic, &group, 3);
    assert_eq!(got, expected, "mTLS");
}

/// Subscribes as `user` and returns the first consumer error.
fn first_consumer_error(secured: &SecuredBroker, user: &str, topic: &str) -> KafkaError {
    let properties = secured
        .sasl_properties(SaslMechanism::ScramSha256, user)
        .expect("known user");
    let group = secured.unique_group("acl");
    let (consumer, recorder) = consumer(
        &properties,
        &[("group.id", &group), ("auto.offset.reset", "earliest")],
    );
    consumer.subscribe(&[topic]).expect("subscribed");
    let deadline = Instant::now() + ERROR_WAIT;
    while Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Err(error)) => {
                eprintln!(
                    "{user}: consumer error: {error}; error events: {:?}",
                    recorder.errors()
                );
                return error;
            }
            Some(Ok(_)) => panic!("{user} read a record of {topic}"),
            None => {}
        }
    }
    panic!(
        "{user}: no consumer error within {ERROR_WAIT:?}; error events: {:#?}",
        recorder.errors()
    );
}

#[test]
fn acls_refuse_topic_and_group_reads() {
    let Some(secured) = secured() else { return };
    let env = secured.plaintext_env().expect("plaintext env");
    let topic = secured.unique_topic("acl");
    env.create_topic(&topic, 1).expect("topic created");
    env.produce_test_messages(&topic, 1).expect("produced");

    let error = first_consumer_error(&secured, SecuredBroker::NO_TOPIC_READ, &topic);
    assert_eq!(
        error.rdkafka_error_code(),
        Some(RDKafkaErrorCode::TopicAuthorizationFailed),
        "{error}"
    );
    let error = first_consumer_error(&secured, SecuredBroker::NO_GROUP_READ, &topic);
    assert_eq!(
        error.rdkafka_error_code(),
        Some(RDKafkaErrorCode::GroupAuthorizationFailed),
        "{error}"
    );
}

#[test]
fn a_wrong_password_or_unknown_user_fails_authentication_quickly() {
    let Some(secured) = secured() else { return };
    for mechanism in [
        SaslMechanism::ScramSha256,
        SaslMechanism::ScramSha512,
        SaslMechanism::Plain,
    ] {
        let mut properties = secured
            .sasl_properties(mechanism, SecuredBroker::ALICE)
            .expect("alice");
        let password = secured.password(SecuredBroker::ALICE).expect("alice");
        properties.push(("sasl.password".into(), "not-the-password".into()));
        let (error, elapsed) = first_error(
            &format!("{mechanism} wrong password"),
            &properties,
            &[],
            RDKafkaErrorCode::Authentication,
        );
        eprintln!("{mechanism} wrong password: authentication error after {elapsed:?}");
        assert!(elapsed < Duration::from_secs(10), "{elapsed:?}");
        assert!(!error.reason.contains(password) && !error.error.contains(password));

        let mut properties = secured
            .sasl_properties(mechanism, SecuredBroker::ALICE)
            .expect("alice");
        properties.push(("sasl.username".into(), "mallory".into()));
        let (_, elapsed) = first_error(
            &format!("{mechanism} unknown user"),
            &properties,
            &[],
            RDKafkaErrorCode::Authentication,
        );
        assert!(elapsed < Duration::from_secs(10), "{elapsed:?}");
    }
}

#[test]
fn without_the_ca_the_broker_is_not_trusted() {
    let Some(secured) = secured() else { return };
    let properties: Vec<(String, String)> = secured
        .sasl_properties(SaslMechanism::ScramSha256, SecuredBroker::ALICE)
        .expect("alice")
        .into_iter()
        .filter(|(key, _)| key != "ssl.ca.location")
        .collect();
    let (error, elapsed) = first_error("no CA", &properties, &[], RDKafkaErrorCode::SSL);
    eprintln!("no CA: SSL error after {elapsed:?}");
    assert!(
        error.reason.contains("certificate verify failed"),
        "{error:?}"
    );
}

#[test]
fn bootstrapping_at_the_ip_fails_hostname_verification() {
    let Some(secured) = secured() else { return };
    let mut properties = secured
        .sasl_properties(SaslMechanism::ScramSha256, SecuredBroker::ALICE)
        .expect("alice");
    let ip_bootstrap = format!("127.0.0.1:{}", secured.sasl_ssl_port());
    properties.push(("bootstrap.servers".into(), ip_bootstrap));
    let (error, elapsed) = first_error(
        "127.0.0.1 bootstrap",
        &properties,
        &[],
        RDKafkaErrorCode::SSL,
    );
    eprintln!("127.0.0.1 bootstrap: SSL error after {elapsed:?}");
    // librdkafka words a hostname mismatch as it words an unknown CA.
    assert!(
        error.reason.contains("certificate verify failed"),
        "{error:?}"
    );

    // Without hostname verification the same bootstrap works (the broker
    // then advertises `localhost`), so it was the hostname that failed.
    let topic = secured.unique_topic("ip-bootstrap");
    secured
        .plaintext_env()
        .expect("plaintext env")
        .create_topic(&topic, 1)
        .expect("topic created");
    properties.push((
        "ssl.endpoint.identification.algorithm".into(),
        "none".into(),
    ));
    assert_metadata(
        "127.0.0.1 bootstrap without hostname verification",
        &properties,
        &topic,
    );
}

#[test]
fn mtls_without_a_client_certificate_is_refused() {
    let Some(secured) = secured() else { return };
    let properties: Vec<(String, String)> = secured
        .mtls_properties()
        .into_iter()
        .filter(|(key, _)| !key.starts_with("ssl.keystore."))
        .collect();
    // With TLS 1.3 the broker refuses the missing certificate after the
    // handshake, so librdkafka sees it on its first read.
    let (error, elapsed) = first_error(
        "mTLS without certificate",
        &properties,
        &[],
        RDKafkaErrorCode::BrokerTransportFailure,
    );
    eprintln!("mTLS without certificate: transport error after {elapsed:?}");
    assert!(error.reason.contains("bad certificate"), "{error:?}");
}
