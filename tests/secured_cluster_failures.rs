//! A consumer that cannot connect securely says so on its stream within
//! seconds, with an error that names the cause, keeps trying without
//! spinning, and commits nothing: wrong password, unknown user, a broker
//! certificate from a CA the client does not trust, a broker name that is
//! not in the certificate, and TLS spoken to a PLAINTEXT listener.
//!
//! The last case runs on both brokers (the embedded mock cluster has only
//! PLAINTEXT listeners); the others need the secured Apache Kafka of
//! `cargo xtask kafka start --secure` (see `tests/secured_cluster.rs`).
//!
//! One `#[test]` runs every case for every implementation, one after
//! another, because the CPU share is measured for the whole process.

mod common;

use std::time::{Duration, Instant};

use common::process::CpuMeter;
use common::{
    Implementation, build, consumer_config, group_committed, next_within, runtime,
    with_client_properties,
};
use kafka_test_env::{KafkaTestEnv, SaslMechanism, SecuredBroker};
use tiered_kafka::api::{ConsumerConfig, ConsumerError, ErrorCode, StringSerde};

/// How long a refused consumer may take to say so.
const ERROR_WITHIN: Duration = Duration::from_secs(20);
/// How long the consumer goes on failing while its CPU share is measured.
const FAILING_FOR: Duration = Duration::from_secs(2);
/// A consumer that fails to connect retries with librdkafka's backoff; a
/// busy retry loop would take a whole core.
const MAX_CPU_SHARE: f64 = 0.25;

/// What a case connects with and what its error must say.
struct Case {
    name: &'static str,
    properties: Vec<(String, String)>,
    /// The error code expected.
    code: ErrorCode,
    /// Words the error's text must contain (any one of them).
    says: &'static [&'static str],
    /// Whether `is_fatal()`: only a change of configuration or of the
    /// cluster can help.
    fatal: bool,
}

#[test]
fn a_consumer_refused_by_tls_or_sasl_reports_it_soon_quietly_and_commits_nothing() {
    let runtime = runtime();
    let env = common::env();
    let secured = SecuredBroker::from_env().expect("the secured broker");
    let cases = cases(&env, secured.as_ref());
    let env = match &secured {
        Some(secured) => secured.plaintext_env().expect("the PLAINTEXT listener"),
        None => env,
    };
    let topic = match &secured {
        Some(secured) => secured.unique_topic("refused"),
        None => env.unique_topic("refused"),
    };
    env.create_topic(&topic, 1).expect("topic");
    env.produce_test_messages(&topic, 10).expect("produce");

    let mut report = Vec::new();
    for implementation in Implementation::ALL {
        for case in &cases {
            let group = match &secured {
                Some(secured) => secured.unique_group("refused"),
                None => env.unique_group("refused"),
            };
            let config = with_client_properties(consumer_config(&env, &group), &case.properties);
            let outcome =
                runtime.block_on(refused(implementation, case, config, &env, &group, &topic));
            report.push(format!(
                "{implementation:?} / {}: error after {:?}, {} more errors in {FAILING_FOR:?}, CPU {:.1}% of a core: {}",
                case.name,
                outcome.first_after,
                outcome.more_errors,
                outcome.cpu_share * 100.0,
                outcome.error
            ));
        }
    }
    for line in &report {
        println!("{line}");
    }
}

/// What a refused consumer did.
struct Outcome {
    error: ConsumerError,
    first_after: Duration,
    more_errors: usize,
    cpu_share: f64,
}

async fn refused(
    implementation: Implementation,
    case: &Case,
    config: ConsumerConfig,
    env: &KafkaTestEnv,
    group: &str,
    topic: &str,
) -> Outcome {
    let label = format!("{implementation:?} / {}", case.name);
    let started = Instant::now();
    let consumer = build(implementation, config, StringSerde, StringSerde);
    consumer.subscribe(&[topic]).expect("subscribe");
    let mut stream = consumer.stream();
    let error = match next_within(&mut stream, ERROR_WITHIN).await {
        Some(Err(error)) => error,
        Some(Ok(message)) => panic!(
            "{label}: read {}/{} although refused",
            message.partition, message.offset
        ),
        None => panic!("{label}: no error within {ERROR_WITHIN:?}"),
    };
    let first_after = started.elapsed();
    assert_eq!(error.code(), Some(case.code), "{label}: {error}");
    assert_eq!(
        error.is_fatal(),
        case.fatal,
        "{label}: is_fatal() of {error}"
    );
    let text = error.to_string();
    assert!(
        case.says.iter().any(|word| text.contains(word)),
        "{label}: the error names none of {:?}: {text}",
        case.says
    );

    // It goes on trying, quietly.
    let meter = CpuMeter::start();
    let until = Instant::now() + FAILING_FOR;
    let mut more_errors = 0;
    while Instant::now() < until {
        match next_within(&mut stream, until.saturating_duration_since(Instant::now())).await {
            Some(Err(_)) => more_errors += 1,
            Some(Ok(message)) => panic!(
                "{label}: read {}/{} although refused",
                message.partition, message.offset
            ),
            None => {}
        }
    }
    let cpu_share = meter.share();
    assert!(
        cpu_share < MAX_CPU_SHARE,
        "{label}: {:.1}% of a core while refused ({more_errors} errors): a busy retry loop",
        cpu_share * 100.0
    );
    drop(stream);
    tokio::task::block_in_place(move || drop(consumer));
    assert_eq!(
        group_committed(env, group, topic).await,
        None,
        "{label}: committed although refused"
    );
    Outcome {
        error,
        first_after,
        more_errors,
        cpu_share,
    }
}

/// The cases for this broker: on the mock, TLS to its PLAINTEXT listener
/// only.
fn cases(env: &KafkaTestEnv, secured: Option<&SecuredBroker>) -> Vec<Case> {
    let Some(secured) = secured else {
        println!(
            "the embedded mock cluster has no TLS or SASL listener: only TLS against a PLAINTEXT listener here; the other cases run against Apache Kafka (cargo xtask test, local phase)"
        );
        return vec![tls_to_plaintext(env.bootstrap_servers(), None)];
    };
    let alice = |mechanism| {
        secured
            .sasl_properties(mechanism, SecuredBroker::ALICE)
            .expect("alice")
    };
    let with = |mut properties: Vec<(String, String)>, changes: &[(&str, &str)]| {
        for (property, value) in changes {
            properties.retain(|(p, _)| p != property);
            if !value.is_empty() {
                properties.push((property.to_string(), value.to_string()));
            }
        }
        properties
    };
    let mismatched_bootstrap = format!("127.0.0.1:{}", secured.sasl_ssl_port());
    vec![
        Case {
            name: "wrong password (SCRAM-SHA-512)",
            properties: with(
                alice(SaslMechanism::ScramSha512),
                &[("sasl.password", "not-alices-password")],
            ),
            code: ErrorCode::Authentication,
            says: &["invalid credentials", "Authentication failed"],
            fatal: true,
        },
        Case {
            name: "wrong password (PLAIN)",
            properties: with(
                alice(SaslMechanism::Plain),
                &[("sasl.password", "not-alices-password")],
            ),
            code: ErrorCode::Authentication,
            says: &["invalid credentials", "Authentication failed"],
            fatal: true,
        },
        Case {
            name: "unknown user (SCRAM-SHA-256)",
            properties: with(
                alice(SaslMechanism::ScramSha256),
                &[("sasl.username", "mallory")],
            ),
            code: ErrorCode::Authentication,
            says: &["invalid credentials", "Authentication failed"],
            fatal: true,
        },
        Case {
            name: "untrusted CA",
            // Without ssl.ca.location, OpenSSL's default trust store, which
            // does not hold the test CA.
            properties: with(
                alice(SaslMechanism::ScramSha512),
                &[("ssl.ca.location", "")],
            ),
            code: ErrorCode::SSL,
            says: &["certificate verify failed", "could not be verified"],
            fatal: true,
        },
        Case {
            name: "hostname mismatch",
            properties: with(
                alice(SaslMechanism::ScramSha512),
                &[("bootstrap.servers", &mismatched_bootstrap)],
            ),
            code: ErrorCode::SSL,
            // librdkafka does not say that the name is what failed.
            says: &["certificate verify failed"],
            fatal: true,
        },
        tls_to_plaintext(
            secured.plaintext_bootstrap().to_owned(),
            Some(secured.ca_location().to_string_lossy().into_owned()),
        ),
    ]
}

/// `SASL_SSL` spoken to a PLAINTEXT listener: the TLS handshake fails.
fn tls_to_plaintext(bootstrap: String, ca: Option<String>) -> Case {
    let mut properties = vec![
        ("bootstrap.servers".to_owned(), bootstrap),
        ("security.protocol".to_owned(), "SASL_SSL".to_owned()),
        ("sasl.mechanism".to_owned(), "SCRAM-SHA-512".to_owned()),
        ("sasl.username".to_owned(), "alice".to_owned()),
        ("sasl.password".to_owned(), "any".to_owned()),
    ];
    if let Some(ca) = ca {
        properties.push(("ssl.ca.location".to_owned(), ca));
    }
    Case {
        name: "TLS to a PLAINTEXT listener",
        properties,
        // The listener closes the connection: a transport failure whose
        // description says why.
        code: ErrorCode::BrokerTransportFailure,
        // Usually `SSL handshake failed: ...: connecting to a PLAINTEXT
        // broker listener?`; when the peer resets the connection first, only
        // `Disconnected: connection reset by peer (after 0ms in state
        // SSL_HANDSHAKE)`.
        says: &["in state SSL_HANDSHAKE"],
        // The same code as a broker that is away.
        fatal: false,
    }
}
