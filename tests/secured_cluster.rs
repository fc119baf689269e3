//! Every implementation against a secured Apache Kafka: TLS with each SASL
//! mechanism, mutual TLS, and the authorization errors of a user that may
//! not read the topic or the group.
//!
//! The broker is the local Apache Kafka 4.4 started with
//! `cargo xtask kafka start --secure` (as `cargo xtask test` starts it for
//! its `local` phase): a `SASL_SSL` listener (SCRAM-SHA-256, SCRAM-SHA-512,
//! PLAIN, OAUTHBEARER), an `SSL` listener that requires a client certificate,
//! `StandardAuthorizer` with ACLs on the prefix `secure-` (see
//! `kafka_test_env::SecuredBroker`). Topics are created and filled through
//! its PLAINTEXT listener; the consumers read through the secured ones.
//!
//! The embedded mock cluster speaks PLAINTEXT only, so on it each test says
//! so and returns; `tests/secured_cluster_failures.rs` has the check that
//! runs on both brokers (TLS against a PLAINTEXT listener).

mod common;

use std::time::Duration;

use common::{
    Implementation, build, consumer_config, group_committed, next_within, take,
    with_client_properties,
};
use kafka_test_env::{KafkaTestEnv, SaslMechanism, SecuredBroker};
use tiered_kafka::api::{ConsumerConfig, ConsumerError, ErrorCode, StringSerde};
use tiered_kafka::factory::ConsumerFactory;

const RECORDS: usize = 200;
const PATIENCE: Duration = Duration::from_secs(60);
/// How long a refused consumer may take to say so.
const ERROR_WITHIN: Duration = Duration::from_secs(20);

contract_tests!(
    every_sasl_mechanism_reads_and_commits_over_tls,
    mutual_tls_reads_and_commits,
    a_user_without_read_on_the_topic_gets_an_error_naming_the_topic,
    a_user_without_read_on_the_group_gets_an_error_naming_the_group,
);

/// For SCRAM-SHA-256, SCRAM-SHA-512, PLAIN and OAUTHBEARER in turn: read
/// every record over `SASL_SSL`, commit, and the commit is the group's
/// committed offset as the PLAINTEXT listener sees it.
async fn every_sasl_mechanism_reads_and_commits_over_tls(implementation: Implementation) {
    let Some(secured) = secured_broker() else {
        return;
    };
    for mechanism in SaslMechanism::ALL {
        let properties = secured
            .sasl_properties(mechanism, SecuredBroker::ALICE)
            .expect("alice");
        read_and_commit(implementation, &secured, &properties, mechanism.name()).await;
    }
}

/// With the client certificate (and no SASL): read, commit.
async fn mutual_tls_reads_and_commits(implementation: Implementation) {
    let Some(secured) = secured_broker() else {
        return;
    };
    read_and_commit(
        implementation,
        &secured,
        &secured.mtls_properties(),
        "mTLS (PKCS#12 keystore)",
    )
    .await;
    if let Some(pem) = secured.mtls_pem_properties() {
        read_and_commit(implementation, &secured, &pem, "mTLS (PEM files)").await;
    }
}

/// `no-topic-read` may join `secure-*` groups but not read `secure-*`
/// topics: the stream reports a topic authorization error that names the
/// topic, soon, and the consumer commits nothing.
async fn a_user_without_read_on_the_topic_gets_an_error_naming_the_topic(
    implementation: Implementation,
) {
    let Some(secured) = secured_broker() else {
        return;
    };
    let (env, topic) = filled_topic(&secured, "no-topic-read");
    let group = secured.unique_group("no-topic-read");
    let properties = secured
        .sasl_properties(SaslMechanism::ScramSha512, SecuredBroker::NO_TOPIC_READ)
        .expect("no-topic-read");
    let error = first_error(implementation, &env, &group, &topic, &properties).await;
    assert_eq!(
        error.code(),
        Some(ErrorCode::TopicAuthorizationFailed),
        "{implementation:?}: {error}"
    );
    assert!(error.is_fatal(), "{implementation:?}: {error}");
    assert!(
        error.to_string().contains(&topic),
        "{implementation:?}: the error does not name the topic {topic}: {error}"
    );
    assert_eq!(group_committed(&env, &group, &topic).await, None);
}

/// `no-group-read` may read `secure-*` topics but not join `secure-*`
/// groups: the stream reports a group authorization error that names the
/// group, soon, and nothing is committed.
async fn a_user_without_read_on_the_group_gets_an_error_naming_the_group(
    implementation: Implementation,
) {
    let Some(secured) = secured_broker() else {
        return;
    };
    let (env, topic) = filled_topic(&secured, "no-group-read");
    let group = secured.unique_group("no-group-read");
    let properties = secured
        .sasl_properties(SaslMechanism::ScramSha512, SecuredBroker::NO_GROUP_READ)
        .expect("no-group-read");
    let error = first_error(implementation, &env, &group, &topic, &properties).await;
    assert_eq!(
        error.code(),
        Some(ErrorCode::GroupAuthorizationFailed),
        "{implementation:?}: {error}"
    );
    assert!(error.is_fatal(), "{implementation:?}: {error}");
    assert!(
        error.to_string().contains(&group),
        "{implementation:?}: the error does not name the group {group}: {error}"
    );
    assert_eq!(group_committed(&env, &group, &topic).await, None);
}

/// The YAML of the configuration guide's "Connecting to a secured cluster",
/// with its variables and `/etc/kafka/` paths replaced by the secured
/// broker's: each block reads and commits (the OIDC one, which needs an
/// identity provider, is loaded and validated).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_configuration_guides_secured_yaml_connects() {
    let Some(secured) = secured_broker() else {
        return;
    };
    let guide = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/docs/configuration.md"
    ))
    .expect("docs/configuration.md");
    let blocks = yaml_blocks(&guide, "## Connecting to a secured cluster");
    assert_eq!(blocks.len(), 4, "SCRAM, mTLS, OIDC, unsecured OAUTHBEARER");
    let alice = secured.user(SecuredBroker::ALICE).expect("alice");
    for block in blocks {
        let (env, topic) = filled_topic(&secured, "guide");
        let group = secured.unique_group("guide");
        let bootstrap = if block.contains("security.protocol: SSL") {
            secured.mtls_bootstrap()
        } else {
            secured.sasl_ssl_bootstrap()
        };
        let yaml = block
            .replace("${KAFKA_BOOTSTRAP}", bootstrap)
            .replace("${KAFKA_USERNAME}", alice.name())
            .replace("${KAFKA_PASSWORD}", alice.password())
            .replace(
                "${KAFKA_KEYSTORE_PASSWORD}",
                secured.client_keystore_password(),
            )
            .replace("${OIDC_CLIENT_SECRET}", "not-used")
            .replace(
                "/etc/kafka/ca.pem",
                &secured.ca_location().to_string_lossy(),
            )
            .replace(
                "/etc/kafka/client.p12",
                &secured.client_keystore_location().to_string_lossy(),
            )
            // The records are there before the consumer: read from the start.
            .replace(
                "group_id: billing",
                &format!("group_id: {group}\n  auto_offset_reset: earliest"),
            )
            // The test broker listens on 127.0.0.1 only; `localhost` may
            // resolve to ::1 first.
            .replace("  extra:\n", "  extra:\n    broker.address.family: v4\n");
        let first_line = block
            .lines()
            .find(|line| line.contains("security.protocol"));
        if block.contains("sasl.oauthbearer.method: oidc") {
            let config = ConsumerConfig::from_yaml_str(&yaml).expect("the OIDC block loads");
            config.validate().expect("the OIDC block is valid");
            continue;
        }
        let consumer = ConsumerFactory::from_yaml_str(&yaml, StringSerde, StringSerde)
            .unwrap_or_else(|error| panic!("{first_line:?}: {error}"));
        consumer.subscribe(&[&topic]).expect("subscribe");
        let mut stream = consumer.stream();
        take(&mut stream, RECORDS, PATIENCE).await;
        tokio::task::block_in_place(|| consumer.commit_blocking())
            .unwrap_or_else(|error| panic!("{first_line:?}: commit: {error}"));
        drop(stream);
        tokio::task::block_in_place(move || drop(consumer));
        assert_eq!(
            group_committed(&env, &group, &topic).await,
            Some(RECORDS as i64),
            "{yaml}"
        );
    }
}

/// The ```` ```yaml ```` blocks of `document`'s section `heading`.
fn yaml_blocks(document: &str, heading: &str) -> Vec<String> {
    let start = document.find(heading).expect("the section");
    let section = &document[start + heading.len()..];
    let section = &section[..section.find("\n## ").unwrap_or(section.len())];
    section
        .split("```yaml\n")
        .skip(1)
        .map(|rest| rest[..rest.find("```").expect("a closed block")].to_owned())
        .collect()
}

/// The secured broker, or `None` on the mock cluster (after saying so).
fn secured_broker() -> Option<SecuredBroker> {
    match SecuredBroker::from_env() {
        Ok(Some(secured)) => Some(secured),
        Ok(None) => {
            println!(
                "the embedded mock cluster has no TLS or SASL listener: this test runs against Apache Kafka (cargo xtask test, local phase)"
            );
            None
        }
        Err(error) => panic!("the secured broker: {error}"),
    }
}

/// A topic with the ACL prefix, filled with [`RECORDS`] records through the
/// PLAINTEXT listener, and that listener's env.
fn filled_topic(secured: &SecuredBroker, name: &str) -> (KafkaTestEnv, String) {
    let env = secured.plaintext_env().expect("the PLAINTEXT listener");
    let topic = secured.unique_topic(name);
    env.create_topic(&topic, 1).expect("topic");
    env.produce_test_messages(&topic, RECORDS).expect("produce");
    (env, topic)
}

async fn read_and_commit(
    implementation: Implementation,
    secured: &SecuredBroker,
    properties: &[(String, String)],
    how: &str,
) {
    let (env, topic) = filled_topic(secured, "read");
    let group = secured.unique_group("read");
    let consumer = build(
        implementation,
        with_client_properties(consumer_config(&env, &group), properties),
        StringSerde,
        StringSerde,
    );
    consumer.subscribe(&[&topic]).expect("subscribe");
    let mut stream = consumer.stream();
    let messages = take(&mut stream, RECORDS, PATIENCE).await;
    let offsets: Vec<i64> = messages.iter().map(|m| m.offset).collect();
    assert_eq!(
        offsets,
        (0..RECORDS as i64).collect::<Vec<_>>(),
        "{implementation:?} over {how}"
    );
    tokio::task::block_in_place(|| consumer.commit_blocking())
        .unwrap_or_else(|error| panic!("{implementation:?} over {how}: commit: {error}"));
    drop(stream);
    tokio::task::block_in_place(move || drop(consumer));
    assert_eq!(
        group_committed(&env, &group, &topic).await,
        Some(RECORDS as i64),
        "{implementation:?} over {how}"
    );
    println!("{implementation:?} over {how}: read {RECORDS}, committed");
}

/// Subscribes with `properties` and returns the first error on the stream,
/// failing if a message comes first or nothing comes within
/// [`ERROR_WITHIN`].
async fn first_error(
    implementation: Implementation,
    env: &KafkaTestEnv,
    group: &str,
    topic: &str,
    properties: &[(String, String)],
) -> ConsumerError {
    let consumer = build(
        implementation,
        with_client_properties(consumer_config(env, group), properties),
        StringSerde,
        StringSerde,
    );
    let subscribed = consumer.subscribe(&[topic]);
    let error = match subscribed {
        Err(error) => error,
        Ok(()) => {
            let mut stream = consumer.stream();
            match next_within(&mut stream, ERROR_WITHIN).await {
                Some(Err(error)) => error,
                Some(Ok(message)) => panic!(
                    "{implementation:?}: read {}/{} without the right to",
                    message.partition, message.offset
                ),
                None => panic!("{implementation:?}: no error within {ERROR_WITHIN:?}"),
            }
        }
    };
    println!("{implementation:?}: {error} (code {:?})", error.code());
    tokio::task::block_in_place(move || drop(consumer));
    error
}
