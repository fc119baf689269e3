//! The contenders: every way to consume Kafka that the benchmark compares.
//!
//! To add one: a variant here, its label, its place in [`Contender::all`], and
//! its arm in [`crate::child`]'s `run_typed` (build the consumer, hand its
//! rdkafka client and its stream to `execute`). The Java contender is the
//! exception: a JVM runs it, started by [`crate::orchestrate`]; so are the
//! `Process` contenders of the concurrent scenario, which
//! [`crate::concurrent`] runs.

use serde::{Deserialize, Serialize};

use crate::plan::Scenario;

/// One way to consume.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Contender {
    /// rdkafka's `BaseConsumer` in a `poll(timeout)` loop, taking the length of
    /// each borrowed payload and converting nothing: the ceiling.
    Raw,
    /// The raw poll loop plus `Message::from_kafka` on each borrowed record:
    /// the conversion every typed consumer must do, without any stream,
    /// offset book or waker. Drain only: it splits the gap between the raw
    /// ceiling and the fast tiers into conversion and machinery.
    RawFromKafka,
    /// rdkafka's own `StreamConsumer::stream()`, borrowed messages, no conversion.
    RdStream,
    /// `consumer_legacy::KafkaConsumer::stream()`: the StreamConsumer-based
    /// consumer the migration starts from. Not in drain: it exposes no rdkafka
    /// client to assign partitions and watch the queue through.
    Legacy,
    /// `consumer_fast::Consumer::stream()`: the Standard tier.
    Standard,
    /// The Standard tier with `read_headers: false`: what reading headers
    /// costs (librdkafka parses each record's header section, allocating
    /// even when it is empty). Drain and backlog only.
    StandardNoHeaders,
    /// The Standard tier with metrics on (`ConsumerConfig::with_metrics`),
    /// recording into `metrics-exporter-prometheus`'s recorder, installed
    /// in the child before the consumer is built and rendered once after
    /// the clock stops: what metrics cost. Drain and backlog only.
    StandardMetrics,
    /// `consumer_fast::Consumer::buffered_stream(n)`: the Buffered tier.
    Buffered(usize),
    /// `consumer_fast::Consumer::dedicated_stream()`: the Dedicated tier.
    Dedicated,
    /// `consumer_fast::Consumer::batches(n)`: the batch API on the
    /// Standard and Buffered tiers, `Vec`s of up to `n` messages.
    Batches(usize),
    /// `consumer_fast::Consumer::dedicated_batches(n)`: the batch API on the
    /// Dedicated tier.
    DedicatedBatches(usize),
    /// The Standard tier as `ConsumerFactory::create` returns it, a
    /// `Box<dyn KafkaStreamConsumer>`: what dynamic dispatch costs.
    DynStandard,
    /// The Java `KafkaConsumer` (String keys, byte[] values), from
    /// `benches/java-consumer`: the peer to beat. `warm`: the JVM first
    /// reads the topic once unmeasured, as a long-running service's JIT
    /// would be warm; cold: the first read of a fresh JVM. Backlog only, on a
    /// real broker, when `--java-classpath` is given.
    Java {
        /// A measured read after one unmeasured read in the same JVM.
        warm: bool,
    },
    /// `kcat -C -G` (the librdkafka command-line consumer, Debian package
    /// `kcat`, linked to the system's librdkafka) writing each value to
    /// `/dev/null`: the clock runs from its start to its exit. Backlog
    /// only, when `kcat` is on the `PATH`.
    Kcat,
    /// `consumer_fast::Consumer::processor(options).run_until(handler, ..)`:
    /// concurrent processing, each message a Tokio task, in `order`, at most
    /// `in_flight` at once. Concurrent scenario only.
    Process {
        /// Which messages may be handled at the same time.
        order: Order,
        /// `ProcessOptions::max_in_flight`.
        in_flight: usize,
    },
}

/// [`consumer_fast::ProcessingOrder`], as a contender names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Order {
    /// One at a time per partition.
    Partition,
    /// One at a time per key.
    Key,
    /// Any message beside any other.
    Unordered,
}

impl Order {
    /// Every order, from the strictest.
    pub(crate) const ALL: [Order; 3] = [Order::Partition, Order::Key, Order::Unordered];

    /// The library's value.
    pub(crate) fn processing_order(self) -> consumer_fast::ProcessingOrder {
        match self {
            Order::Partition => consumer_fast::ProcessingOrder::Partition,
            Order::Key => consumer_fast::ProcessingOrder::Key,
            Order::Unordered => consumer_fast::ProcessingOrder::Unordered,
        }
    }

    /// As the library spells it, for labels.
    fn label(self) -> &'static str {
        match self {
            Order::Partition => "Partition",
            Order::Key => "Key",
            Order::Unordered => "Unordered",
        }
    }
}

/// The `max_in_flight` bounds the concurrent scenario compares.
pub(crate) const PROCESS_IN_FLIGHT: [usize; 2] = [100, 1_000];

impl Contender {
    /// Every contender, in report order.
    pub(crate) fn all() -> Vec<Contender> {
        let mut all = vec![
            Contender::Raw,
            Contender::RawFromKafka,
            Contender::RdStream,
            Contender::Legacy,
            Contender::Standard,
            Contender::StandardNoHeaders,
            Contender::StandardMetrics,
            Contender::Buffered(32),
            Contender::Buffered(128),
            Contender::Dedicated,
            Contender::Batches(256),
            Contender::DedicatedBatches(256),
            Contender::DynStandard,
            Contender::Java { warm: false },
            Contender::Java { warm: true },
            Contender::Kcat,
        ];
        for order in Order::ALL {
            for in_flight in PROCESS_IN_FLIGHT {
                all.push(Contender::Process { order, in_flight });
            }
        }
        all
    }

    /// The reference every ratio is taken against.
    pub(crate) const CEILING: Contender = Contender::Raw;

    /// The legacy consumer the second ratio is taken against, when it exists.
    pub(crate) const LEGACY: Option<Contender> = Some(Contender::Legacy);

    /// The contender's name on the command line.
    pub(crate) fn name(self) -> String {
        match self {
            Contender::Raw => "raw".to_owned(),
            Contender::RawFromKafka => "rawconvert".to_owned(),
            Contender::RdStream => "rdstream".to_owned(),
            Contender::Legacy => "legacy".to_owned(),
            Contender::Standard => "standard".to_owned(),
            Contender::StandardNoHeaders => "standard-noheaders".to_owned(),
            Contender::StandardMetrics => "standard-metrics".to_owned(),
            Contender::Buffered(n) => format!("buffered{n}"),
            Contender::Dedicated => "dedicated".to_owned(),
            Contender::Batches(n) => format!("batches{n}"),
            Contender::DedicatedBatches(n) => format!("dedicated-batches{n}"),
            Contender::DynStandard => "dyn".to_owned(),
            Contender::Java { warm: false } => "java-cold".to_owned(),
            Contender::Java { warm: true } => "java-warm".to_owned(),
            Contender::Kcat => "kcat".to_owned(),
            Contender::Process { order, in_flight } => {
                format!("process-{}-{in_flight}", order.label().to_lowercase())
            }
        }
    }

    /// Parses a contender's name on the command line.
    pub(crate) fn parse(name: &str) -> anyhow::Result<Contender> {
        match Contender::all().into_iter().find(|c| c.name() == name) {
            Some(contender) => Ok(contender),
            None => anyhow::bail!("unknown contender {name:?}"),
        }
    }

    /// The name in tables and charts.
    pub(crate) fn label(self) -> String {
        match self {
            Contender::Raw => "raw BaseConsumer".to_owned(),
            Contender::RawFromKafka => "raw + from_kafka".to_owned(),
            Contender::RdStream => "rdkafka StreamConsumer".to_owned(),
            Contender::Legacy => "legacy KafkaConsumer".to_owned(),
            Contender::Standard => "fast Standard".to_owned(),
            Contender::StandardNoHeaders => "fast Standard, no headers".to_owned(),
            Contender::StandardMetrics => "fast Standard, metrics on".to_owned(),
            Contender::Buffered(n) => format!("fast Buffered({n})"),
            Contender::Dedicated => "fast Dedicated".to_owned(),
            Contender::Batches(n) => format!("fast batches({n})"),
            Contender::DedicatedBatches(n) => format!("fast Dedicated batches({n})"),
            Contender::DynStandard => "dyn Standard (factory)".to_owned(),
            Contender::Java { warm: false } => "Java KafkaConsumer, cold JVM".to_owned(),
            Contender::Java { warm: true } => "Java KafkaConsumer, warm JVM".to_owned(),
            Contender::Kcat => "kcat -G".to_owned(),
            Contender::Process { order, in_flight } => format!(
                "process {}, {} in flight",
                order.label(),
                thousands(in_flight)
            ),
        }
    }

    /// Whether this is one of our own consumers (the idle CPU target applies).
    pub(crate) fn is_ours(self) -> bool {
        !matches!(
            self,
            Contender::Raw
                | Contender::RawFromKafka
                | Contender::RdStream
                | Contender::Java { .. }
                | Contender::Kcat
        )
    }

    /// Whether this contender runs in `scenario`. The concurrent scenario
    /// runs only the Standard tier (its baseline: one message at a time)
    /// and the `Process` contenders, which run nowhere else.
    pub(crate) fn runs_in(self, scenario: Scenario) -> bool {
        if scenario == Scenario::Concurrent {
            return matches!(self, Contender::Standard | Contender::Process { .. });
        }
        match self {
            Contender::Process { .. } => false,
            Contender::RawFromKafka => scenario == Scenario::Drain,
            Contender::Legacy => scenario != Scenario::Drain,
            Contender::StandardNoHeaders | Contender::StandardMetrics => {
                matches!(scenario, Scenario::Drain | Scenario::Backlog)
            }
            Contender::Java { .. } | Contender::Kcat => scenario == Scenario::Backlog,
            _ => true,
        }
    }
}

/// `1000` as `1,000`.
fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_parses_back_to_its_contender() {
        for contender in Contender::all() {
            assert_eq!(Contender::parse(&contender.name()).ok(), Some(contender));
        }
        assert!(Contender::parse("java").is_err());
        assert!(Contender::parse("process-key").is_err());
    }

    #[test]
    fn process_contenders_are_named_by_order_and_bound() {
        let key = Contender::Process {
            order: Order::Key,
            in_flight: 1_000,
        };
        assert_eq!(key.name(), "process-key-1000");
        assert_eq!(key.label(), "process Key, 1,000 in flight");
        assert_eq!(
            Contender::parse("process-unordered-100").ok(),
            Some(Contender::Process {
                order: Order::Unordered,
                in_flight: 100
            })
        );
        let process: Vec<Contender> = Contender::all()
            .into_iter()
            .filter(|c| matches!(c, Contender::Process { .. }))
            .collect();
        assert_eq!(process.len(), 6);
        assert!(process.iter().all(|c| c.is_ours()));
    }

    #[test]
    fn concurrent_runs_the_standard_baseline_and_the_process_contenders_only() {
        let in_concurrent: Vec<Contender> = Contender::all()
            .into_iter()
            .filter(|c| c.runs_in(Scenario::Concurrent))
            .collect();
        assert_eq!(in_concurrent.len(), 7);
        assert_eq!(in_concurrent[0], Contender::Standard);
        for contender in Contender::all() {
            if let Contender::Process { .. } = contender {
                for scenario in Scenario::ALL {
                    assert_eq!(
                        contender.runs_in(scenario),
                        scenario == Scenario::Concurrent
                    );
                }
            }
        }
        assert!(Contender::Standard.runs_in(Scenario::Backlog));
    }

    #[test]
    fn the_metrics_contender_runs_in_drain_and_backlog_only() {
        let metrics = Contender::parse("standard-metrics").ok();
        assert_eq!(metrics, Some(Contender::StandardMetrics));
        assert!(Contender::StandardMetrics.is_ours());
        for scenario in Scenario::ALL {
            assert_eq!(
                Contender::StandardMetrics.runs_in(scenario),
                matches!(scenario, Scenario::Drain | Scenario::Backlog)
            );
        }
    }

    #[test]
    fn java_and_kcat_run_only_in_backlog_and_are_not_ours() {
        for peer in [
            Contender::Java { warm: false },
            Contender::Java { warm: true },
            Contender::Kcat,
        ] {
            assert!(!peer.is_ours());
            for scenario in Scenario::ALL {
                assert_eq!(peer.runs_in(scenario), scenario == Scenario::Backlog);
            }
        }
    }
}
