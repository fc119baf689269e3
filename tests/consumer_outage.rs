//! With the broker killed just before the close, or while it runs,
//! dropping a consumer (or closing it with `close_blocking`) returns within
//! its close timeout (`ConsumerConfig::close_timeout_ms`) plus half a
//! second, whatever librdkafka's close is waiting for: the group
//! coordinator to answer `LeaveGroup`, or a commit it queued for the
//! coordinator. The close then finishes in the background once the broker
//! is back.
//!
//! One test runs the implementations in turn, since an outage disturbs
//! anything else using the broker.

mod common;

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use common::{Implementation, build, consumer_config, env, next_within, take};
use tiered_kafka::api::{ConsumerTier, StringSerde};

/// The smallest session timeout Apache Kafka accepts by default
/// (`group.min.session.timeout.ms`): librdkafka keeps a commit for an absent
/// coordinator up to this long, longer than the close timeout.
const SESSION_TIMEOUT: Duration = Duration::from_secs(6);
/// The close timeout under test.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);
/// What the drop or close may take beyond its timeout.
const MARGIN: Duration = Duration::from_millis(500);

/// When the broker is killed.
#[derive(Debug, Clone, Copy)]
enum Kill {
    /// Before the close starts, after the stream saw the outage.
    BeforeClose,
    /// At the same moment the close starts (released by one barrier): the
    /// kill lands somewhere in the close's commit or `LeaveGroup`, or just
    /// after.
    DuringClose,
}

#[test]
fn dropping_a_consumer_of_a_vanished_broker_returns_within_its_close_timeout() {
    let env = env();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let topic = env.unique_topic("outage");
    env.create_topic(&topic, 2).expect("topic");
    env.produce_test_messages(&topic, 20).expect("produce");

    for kill in [Kill::BeforeClose, Kill::DuringClose] {
        for implementation in Implementation::ALL {
            let mut config = consumer_config(&env, &env.unique_group("outage"));
            config.session_timeout_ms = Some(SESSION_TIMEOUT.as_millis() as u64);
            config.close_timeout_ms = Some(CLOSE_TIMEOUT.as_millis() as u64);
            let _guard = runtime.enter();
            let consumer = build(implementation, config, StringSerde, StringSerde);
            consumer.subscribe(&[&topic]).expect("subscribe");
            let mut stream = consumer.stream();
            runtime.block_on(async {
                take(&mut stream, 20, Duration::from_secs(60)).await;
            });
            let early_outage = match kill {
                Kill::BeforeClose => {
                    let outage = env.broker_outage().expect("outage");
                    runtime.block_on(async {
                        let item = next_within(&mut stream, Duration::from_secs(3)).await;
                        println!("{implementation:?}: during the outage the stream gave {item:?}");
                    });
                    Some(outage)
                }
                Kill::DuringClose => None,
            };
            drop(stream);
            // Half the implementations are dropped, the other half closed
            // with `close_blocking(CLOSE_TIMEOUT)`: both end the same way,
            // and the close also commits, which with the broker gone waits
            // its timeout.
            let close = matches!(
                implementation,
                Implementation::Fast(ConsumerTier::Buffered { .. }) | Implementation::Legacy
            );
            // Dropped on a thread of its own, so that a drop that outlasts
            // the bound is reported, and the broker brought back, instead of
            // hanging the whole run.
            let start = Arc::new(Barrier::new(2));
            let start_closing = Arc::clone(&start);
            let (dropped, dropped_signal) = std::sync::mpsc::channel();
            let dropper = std::thread::spawn(move || {
                start_closing.wait();
                let started = Instant::now();
                let report = if close {
                    Some(consumer.close_blocking(CLOSE_TIMEOUT))
                } else {
                    drop(consumer);
                    None
                };
                let _ = dropped.send(started.elapsed());
                report
            });
            start.wait();
            let started = Instant::now();
            let outage = match early_outage {
                Some(outage) => outage,
                None => env.broker_outage().expect("outage"),
            };
            let drop_time = dropped_signal
                .recv_timeout((CLOSE_TIMEOUT + MARGIN).saturating_sub(started.elapsed()));
            drop(outage);
            let drop_time = match drop_time {
                Ok(took) => took,
                Err(_) => {
                    // Let the drop finish with the broker back before
                    // failing, so that the tests after this one find a
                    // broker.
                    let finished = dropped_signal
                        .recv_timeout(Duration::from_secs(180))
                        .is_ok();
                    panic!(
                        "{implementation:?}, broker killed {kill:?}: not dropped within its close timeout ({CLOSE_TIMEOUT:?}) + {MARGIN:?}; with the broker back it {} after {:?}",
                        if finished {
                            "finished"
                        } else {
                            "still had not finished"
                        },
                        started.elapsed()
                    );
                }
            };
            println!("{implementation:?}, broker killed {kill:?}: dropped in {drop_time:?}");
            if let Some(report) = dropper.join().expect("the dropping thread") {
                println!(
                    "{implementation:?}, broker killed {kill:?}: close_blocking reported {report:?}"
                );
                if matches!(kill, Kill::BeforeClose) {
                    assert!(
                        report.commit.is_err(),
                        "{implementation:?}: a commit with the broker gone cannot be confirmed: {report:?}"
                    );
                }
            }
        }
    }
}
