//! Metrics and health, for every implementation, on the mock and on Apache
//! Kafka: 1,000 records produced, 400 read, and the lag gauge says 600
//! within a few statistics intervals; the message, byte, commit and
//! rebalance counters match what happened; `health()` says live and ready.
//!
//! The recorder is metrics-util's registry with atomic storage, installed
//! once for the test binary: reading it does not reset anything, so the
//! tests of the four implementations (each with its own group, hence its
//! own `group` label) run side by side.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use common::{Implementation, consumer_config, env, next_within, take};
use kafka_test_env::TestRecord;
use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use metrics_util::registry::{AtomicStorage, Registry};
use tiered_kafka::api::{
    ConsumerError, ConsumerTier, HealthThresholds, MetricsConfig, StringSerde, TopicPartitionList,
};
use tiered_kafka::fast::metric_names;

contract_tests!(
    lag_counters_and_health_follow_what_was_read,
    deserialization_errors_are_counted
);

const PRODUCED: usize = 1_000;
const READ: usize = 400;
const STATISTICS_INTERVAL: Duration = Duration::from_millis(100);
const PATIENCE: Duration = Duration::from_secs(30);

/// The process's recorder: every metric any consumer of this binary
/// records.
fn registry() -> &'static Arc<Registry<Key, AtomicStorage>> {
    static REGISTRY: OnceLock<Arc<Registry<Key, AtomicStorage>>> = OnceLock::new();
    REGISTRY.get_or_init(|| {
        let registry = Arc::new(Registry::atomic());
        metrics::set_global_recorder(TestRecorder(Arc::clone(&registry)))
            .expect("the only recorder of this test binary");
        registry
    })
}

struct TestRecorder(Arc<Registry<Key, AtomicStorage>>);

impl Recorder for TestRecorder {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        self.0
            .get_or_create_counter(key, |counter| Counter::from_arc(Arc::clone(counter)))
    }

    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        self.0
            .get_or_create_gauge(key, |gauge| Gauge::from_arc(Arc::clone(gauge)))
    }

    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        self.0
            .get_or_create_histogram(key, |histogram| Histogram::from_arc(Arc::clone(histogram)))
    }
}

/// One metric's value, with its labels.
#[derive(Debug, Clone)]
struct Sample {
    name: String,
    labels: HashMap<String, String>,
    value: f64,
}

/// Every counter, gauge and histogram (its count of values) recorded for
/// `group`.
fn samples(group: &str) -> Vec<Sample> {
    let registry = registry();
    let mut samples = Vec::new();
    let mut add = |key: &Key, value: f64| {
        let labels: HashMap<String, String> = key
            .labels()
            .map(|label| (label.key().to_owned(), label.value().to_owned()))
            .collect();
        if labels.get("group").map(String::as_str) == Some(group) {
            samples.push(Sample {
                name: key.name().to_owned(),
                labels,
                value,
            });
        }
    };
    for (key, counter) in registry.get_counter_handles() {
        add(
            &key,
            counter.load(std::sync::atomic::Ordering::Relaxed) as f64,
        );
    }
    for (key, gauge) in registry.get_gauge_handles() {
        add(
            &key,
            f64::from_bits(gauge.load(std::sync::atomic::Ordering::Relaxed)),
        );
    }
    for (key, histogram) in registry.get_histogram_handles() {
        add(&key, histogram.data().len() as f64);
    }
    samples
}

/// The sum of `name` over the samples whose labels include `labels`.
fn sum(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|sample| sample.name == name)
        .filter(|sample| {
            labels
                .iter()
                .all(|(key, value)| sample.labels.get(*key).map(String::as_str) == Some(*value))
        })
        .map(|sample| sample.value)
        .sum()
}

fn tier_label(implementation: Implementation) -> &'static str {
    match implementation {
        Implementation::Legacy => "legacy",
        Implementation::Fast(ConsumerTier::Standard) => "standard",
        Implementation::Fast(ConsumerTier::Buffered { .. }) => "buffered",
        Implementation::Fast(ConsumerTier::Dedicated) => "dedicated",
    }
}

fn metrics_config(
    env: &kafka_test_env::KafkaTestEnv,
    group: &str,
) -> tiered_kafka::api::ConsumerConfig {
    consumer_config(env, group)
        .with_metrics(MetricsConfig::default().with_statistics_interval(STATISTICS_INTERVAL))
}

/// 1,000 records on one partition; 400 read and committed. Then the
/// partition is paused (librdkafka keeps the high watermark it fetched) and
/// the consumer keeps polling, as a service does, so that librdkafka's
/// statistics are served: the lag gauge must come to 600 less whatever the
/// stream still handed out from its own buffer (Buffered's batch; none for
/// Standard and legacy). The Dedicated tier's thread polls by itself: its
/// stream is not polled at all.
async fn lag_counters_and_health_follow_what_was_read(implementation: Implementation) {
    registry();
    let env = env();
    let topic = env.unique_topic("metrics");
    env.create_topic(&topic, 1).expect("topic");
    let produced = env
        .produce_test_messages(&topic, PRODUCED)
        .expect("produce");
    assert_eq!(produced.len(), PRODUCED);
    let group = env.unique_group("metrics");
    let consumer = common::build(
        implementation,
        metrics_config(&env, &group),
        StringSerde,
        StringSerde,
    );
    let fresh = consumer.health();
    assert!(
        !fresh.subscribed && fresh.readiness().is_err(),
        "{implementation:?}: before subscribing: {fresh:?}"
    );
    consumer.subscribe(&[&topic]).expect("subscribe");
    let mut stream = consumer.stream();
    let messages = take(&mut stream, READ, PATIENCE).await;
    let mut bytes: usize = messages
        .iter()
        .map(|message| {
            message.key.as_ref().map_or(0, String::len)
                + message.value.as_ref().map_or(0, String::len)
        })
        .sum();
    consumer.commit_async().await.expect("commit");

    let mut paused = TopicPartitionList::new();
    paused.add_partition(&topic, 0);
    consumer.pause(&paused).expect("pause");
    let mut handed_out = READ;
    let expected_lag = |handed_out: usize| (PRODUCED - handed_out) as f64;
    let deadline = Instant::now() + PATIENCE;
    loop {
        if implementation != Implementation::Fast(ConsumerTier::Dedicated) {
            // Polls librdkafka (serving its statistics); what the stream
            // still held is handed out and counted.
            while let Some(item) = next_within(&mut stream, STATISTICS_INTERVAL).await {
                let message = item.expect("no error while paused");
                bytes += message.key.as_ref().map_or(0, String::len)
                    + message.value.as_ref().map_or(0, String::len);
                handed_out += 1;
            }
        } else {
            tokio::time::sleep(STATISTICS_INTERVAL).await;
        }
        let samples = samples(&group);
        let lag = sum(&samples, metric_names::LAG, &[("topic", &topic)]);
        let committed_lag = sum(&samples, metric_names::COMMITTED_LAG, &[("topic", &topic)]);
        if lag == expected_lag(handed_out) && committed_lag == expected_lag(READ) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{implementation:?}: after {handed_out} handed out, lag {lag} (expected {}), \
             committed lag {committed_lag} (expected {}) after {PATIENCE:?}; samples: {samples:#?}",
            expected_lag(handed_out),
            expected_lag(READ)
        );
    }
    match implementation {
        Implementation::Fast(ConsumerTier::Buffered { batch_size }) => {
            assert!(handed_out < READ + batch_size, "{handed_out} handed out");
        }
        _ => assert_eq!(
            handed_out, READ,
            "{implementation:?}: handed out while paused"
        ),
    }

    let health = consumer.health();
    assert!(
        health.subscribed && health.joined && health.assigned_partitions == 1,
        "{implementation:?}: {health:?}"
    );
    assert_eq!(
        health.lag,
        Some(PRODUCED as i64 - handed_out as i64),
        "{health:?}"
    );
    assert!(
        health
            .since_last_message
            .is_some_and(|since| since < PATIENCE),
        "{health:?}"
    );
    assert!(
        health.since_last_poll.is_some_and(|since| since < PATIENCE),
        "{health:?}"
    );
    assert_eq!(health.liveness(), Ok(()), "{implementation:?}: {health:?}");
    assert_eq!(health.readiness(), Ok(()), "{implementation:?}: {health:?}");
    if implementation != Implementation::Fast(ConsumerTier::Dedicated) {
        // The stream is no longer polled: a tight probe sees it stop. The
        // Dedicated tier's thread goes on polling by itself.
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        let stopped = consumer.health();
        let status = stopped.check(&HealthThresholds::new(
            Duration::from_secs(1),
            Duration::from_secs(3_600),
        ));
        assert!(
            !status.live,
            "{implementation:?}: not polled for 1.5 s: {stopped:?} {status:?}"
        );
    }
    // Dropped: its meter hands the message and byte counts over (a busy
    // stream hands them over every 256 messages and whenever it waits).
    drop(stream);
    let samples = samples(&group);
    let tier = tier_label(implementation);
    // Every sample carries the common labels, and only known names.
    for sample in &samples {
        assert!(
            metric_names::ALL.contains(&sample.name.as_str()),
            "{implementation:?}: unknown metric {sample:?}"
        );
        assert_eq!(
            sample.labels.get("tier").map(String::as_str),
            Some(tier),
            "{sample:?}"
        );
        assert!(
            sample
                .labels
                .get("client")
                .is_some_and(|client| client.contains("#consumer-")),
            "{sample:?}"
        );
    }
    let partition0 = [("topic", topic.as_str()), ("partition", "0")];
    assert_eq!(
        sum(&samples, metric_names::MESSAGES, &partition0),
        handed_out as f64,
        "{implementation:?}: messages"
    );
    assert_eq!(
        sum(&samples, metric_names::BYTES, &partition0),
        bytes as f64,
        "{implementation:?}: bytes"
    );
    assert_eq!(
        sum(&samples, metric_names::COMMITS, &[("result", "ok")]),
        1.0,
        "{implementation:?}: commits"
    );
    assert_eq!(
        sum(&samples, metric_names::COMMITS, &[("result", "error")]),
        0.0
    );
    assert!(
        sum(&samples, metric_names::REBALANCES, &[("event", "assigned")]) >= 1.0,
        "{implementation:?}: the assignment is counted: {samples:#?}"
    );
    assert_eq!(
        sum(&samples, metric_names::ASSIGNED_PARTITIONS, &[]),
        1.0,
        "{implementation:?}: assigned partitions"
    );
    assert_eq!(
        sum(&samples, metric_names::DESERIALIZE_ERRORS, &[]),
        0.0,
        "{implementation:?}"
    );
    if implementation == Implementation::Fast(ConsumerTier::Dedicated) {
        assert_eq!(
            sum(&samples, metric_names::DEDICATED_CHANNEL_CAPACITY, &[]),
            4.0,
            "the Dedicated channel's capacity in batches"
        );
    }

    let report = consumer.close(Duration::from_secs(10)).await;
    assert!(report.commit.is_ok(), "{implementation:?}: {report:?}");
}

/// A record whose value is not UTF-8 is handed out as an error and counted
/// both as a message and as a deserialization error of its value.
async fn deserialization_errors_are_counted(implementation: Implementation) {
    registry();
    let env = env();
    let topic = env.unique_topic("metrics-bad");
    env.create_topic(&topic, 1).expect("topic");
    env.produce(
        &topic,
        [
            TestRecord::new("a", "fine"),
            TestRecord::new("b", vec![0xff, 0xfe]),
            TestRecord::new("c", "fine"),
        ],
    )
    .expect("produce");
    let group = env.unique_group("metrics-bad");
    let consumer = common::build(
        implementation,
        metrics_config(&env, &group),
        StringSerde,
        StringSerde,
    );
    consumer.subscribe(&[&topic]).expect("subscribe");
    let mut stream = consumer.stream();
    let mut errors = 0;
    for _ in 0..3 {
        match next_within(&mut stream, PATIENCE).await {
            Some(Ok(_)) => {}
            Some(Err(ConsumerError::Deserialize { offset: 1, .. })) => errors += 1,
            other => panic!("{implementation:?}: {other:?}"),
        }
    }
    assert_eq!(errors, 1);
    drop(stream);
    let samples = samples(&group);
    assert_eq!(
        sum(&samples, metric_names::MESSAGES, &[("topic", &topic)]),
        3.0
    );
    assert_eq!(
        sum(&samples, metric_names::BYTES, &[("topic", &topic)]),
        (1 + 4 + 1 + 2 + 1 + 4) as f64
    );
    assert_eq!(
        sum(
            &samples,
            metric_names::DESERIALIZE_ERRORS,
            &[("topic", &topic), ("part", "value")]
        ),
        1.0,
        "{implementation:?}: {samples:#?}"
    );
    let report = consumer.close(Duration::from_secs(10)).await;
    assert!(report.commit.is_ok(), "{implementation:?}: {report:?}");
}
