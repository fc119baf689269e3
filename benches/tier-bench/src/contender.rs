//! The contenders: every way to consume Kafka that the benchmark compares.
//!
//! To add one: a variant here, its label, its place in [`Contender::all`], and
//! its arm in [`crate::child`]'s `run_typed` (build the consumer, hand its
//! rdkafka client and its stream to `execute`).

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
    /// `consumer_fast::Consumer::buffered_stream(n)`: the Buffered tier.
    Buffered(usize),
    /// `consumer_fast::Consumer::dedicated_stream()`: the Dedicated tier.
    Dedicated,
    /// The Standard tier as `ConsumerFactory::create` returns it, a
    /// `Box<dyn KafkaStreamConsumer>`: what dynamic dispatch costs.
    DynStandard,
}

impl Contender {
    /// Every contender, in report order.
    pub(crate) fn all() -> Vec<Contender> {
        vec![
            Contender::Raw,
            Contender::RawFromKafka,
            Contender::RdStream,
            Contender::Legacy,
            Contender::Standard,
            Contender::StandardNoHeaders,
            Contender::Buffered(32),
            Contender::Buffered(128),
            Contender::Dedicated,
            Contender::DynStandard,
        ]
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
            Contender::Buffered(n) => format!("buffered{n}"),
            Contender::Dedicated => "dedicated".to_owned(),
            Contender::DynStandard => "dyn".to_owned(),
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
            Contender::Buffered(n) => format!("fast Buffered({n})"),
            Contender::Dedicated => "fast Dedicated".to_owned(),
            Contender::DynStandard => "dyn Standard (factory)".to_owned(),
        }
    }

    /// Whether this is one of our own consumers (the idle CPU target applies).
    pub(crate) fn is_ours(self) -> bool {
        !matches!(
            self,
            Contender::Raw | Contender::RawFromKafka | Contender::RdStream
        )
    }

    /// Whether this contender runs in `scenario`.
    pub(crate) fn runs_in(self, scenario: Scenario) -> bool {
        match self {
            Contender::RawFromKafka => scenario == Scenario::Drain,
            Contender::Legacy => scenario != Scenario::Drain,
            Contender::StandardNoHeaders => {
                matches!(scenario, Scenario::Drain | Scenario::Backlog)
            }
            _ => true,
        }
    }
}
