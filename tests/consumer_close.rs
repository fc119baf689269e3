//! Dropping a consumer whose group is in the middle of a rebalance returns,
//! and its close never answers a rebalance that the close made moot.
//!
//! librdkafka's close unsubscribes, so a rebalance event still queued when it
//! starts becomes moot: the group stops waiting for the answer and
//! terminates as soon as the broker answers its LeaveGroup. An answer
//! (`rd_kafka_assign`) that reaches the group thread in that instant is
//! dropped without a reply, and the drop waits forever (librdkafka #4884).
//! That instant is microseconds wide, so a hang is rare; what this test
//! checks is its precondition, which is not rare: with `debug=cgrp`,
//! librdkafka logs each answer the group receives together with its join
//! state, and a moot answer is one received in join state `init` after
//! `Terminating group`. Before the consumers served their queue ahead of the
//! close, 10 to 21 of about 40 closes per run of this scenario answered a
//! moot event.

mod common;

use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::Duration;

use common::{Implementation, build, consumer_config, drop_within};
use tiered_kafka::api::StringSerde;
use tracing_subscriber::Layer as _;
use tracing_subscriber::layer::{Context, SubscriberExt as _};
use tracing_subscriber::util::SubscriberInitExt as _;

contract_tests!(dropping_a_consumer_with_a_rebalance_pending_answers_nothing_moot,);

/// Consumers dropped per implementation.
const ROUNDS: u32 = 10;
/// Between subscribing and dropping, this much longer each round: the
/// group's assignment reaches the queue after about 50 ms on the mock and a
/// few hundred on real Kafka, and nothing polls it.
const STEP: Duration = Duration::from_millis(150);
/// Far more than a close takes (well under a second).
const BOUND: Duration = Duration::from_secs(30);

async fn dropping_a_consumer_with_a_rebalance_pending_answers_nothing_moot(
    implementation: Implementation,
) {
    capture_librdkafka_logs();
    let env = common::env();
    let topic = env.unique_topic("close-pending");
    env.create_topic(&topic, 2).expect("topic");
    let mut answered_in_close = 0;
    for round in 0..ROUNDS {
        let group = env.unique_group("close-pending");
        let mut config = consumer_config(&env, &group);
        config.extra.insert("debug".into(), "cgrp".into());
        let consumer = build(implementation, config, StringSerde, StringSerde);
        consumer.subscribe(&[&topic]).expect("subscribe");
        tokio::time::sleep(STEP * round).await;
        let dropped = drop_within(consumer, BOUND);
        assert!(
            dropped.is_some(),
            "{implementation:?}, round {round}: dropping the consumer did not finish within {BOUND:?}"
        );
        let (moot, answered) = answers_in_close(&group);
        answered_in_close += answered;
        assert_eq!(
            moot, 0,
            "{implementation:?}, round {round}: the close answered a rebalance it had made moot"
        );
    }
    println!(
        "{implementation:?}: {answered_in_close} rebalances answered inside a close, none moot"
    );
}

/// librdkafka's log lines, each `fac message` as rdkafka logs them.
static LOG: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Keeps every librdkafka log line from here on, beside the usual test
/// output (`RUST_LOG`); once per process: the tests of this file share it and
/// filter by group. Installed before `common::env()` installs the usual one.
fn capture_librdkafka_logs() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        tracing_subscriber::registry()
            .with(
                tracing_subscriber::fmt::layer()
                    .with_test_writer()
                    .with_filter(tracing_subscriber::EnvFilter::from_default_env()),
            )
            .with(
                Capture.with_filter(
                    tracing_subscriber::filter::Targets::new()
                        .with_target("librdkafka", tracing::Level::DEBUG),
                ),
            )
            .try_init()
            .expect("the first subscriber of this test process");
    });
}

/// For `group`'s close: how many rebalance answers the group received after
/// it started terminating, and how many of those in join state `init`
/// (moot).
fn answers_in_close(group: &str) -> (usize, usize) {
    let log = LOG.lock().unwrap_or_else(PoisonError::into_inner);
    let quoted = format!("\"{group}\"");
    let mut terminating = false;
    let (mut moot, mut answered) = (0, 0);
    for line in log.iter().filter(|line| line.contains(&quoted)) {
        if line.contains("Terminating group") {
            terminating = true;
        } else if terminating && line.contains("received op ASSIGN") {
            answered += 1;
            if line.contains("(join-state init)") {
                moot += 1;
            }
        }
    }
    (moot, answered)
}

/// A tracing layer that keeps librdkafka's messages in [`LOG`].
struct Capture;

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Capture {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        struct Message(String);
        impl tracing::field::Visit for Message {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                if field.name() == "message" {
                    self.0 = format!("{value:?}");
                }
            }
        }
        let mut message = Message(String::new());
        event.record(&mut message);
        LOG.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(message.0);
    }
}
