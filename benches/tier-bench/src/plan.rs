//! What runs: the scenarios, their cases and the topics they read, sized for
//! the broker and the mode.

use std::time::Duration;

use anyhow::{Result, bail};
use serde::Serialize;

/// The five scenarios of issue 6, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Scenario {
    /// The whole topic sits in librdkafka's queue before the clock starts.
    Drain,
    /// A pre-filled topic; the clock runs from subscribe to the last message.
    Backlog,
    /// A fixed amount of hashing per message.
    Processing,
    /// A steady producer stamps each message; produce-to-yield latency.
    Latency,
    /// CPU used by a subscribed consumer on an idle topic.
    Idle,
}

impl Scenario {
    /// Every scenario, in running order.
    pub(crate) const ALL: [Scenario; 5] = [
        Scenario::Drain,
        Scenario::Backlog,
        Scenario::Processing,
        Scenario::Latency,
        Scenario::Idle,
    ];

    /// The scenario's name on the command line and in the report.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Scenario::Drain => "drain",
            Scenario::Backlog => "backlog",
            Scenario::Processing => "processing",
            Scenario::Latency => "latency",
            Scenario::Idle => "idle",
        }
    }

    /// Parses a scenario name.
    pub(crate) fn parse(name: &str) -> Result<Scenario> {
        match Scenario::ALL.into_iter().find(|s| s.name() == name) {
            Some(scenario) => Ok(scenario),
            None => bail!("unknown scenario {name:?}"),
        }
    }
}

/// What the values of a topic are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum ValueKind {
    /// Opaque bytes of this size.
    Bytes(usize),
    /// A small JSON object ([`crate::payload::Order`]), about 110 bytes.
    Json,
}

/// A pre-filled topic shared by the cases that read it (each contender reads
/// it with a fresh consumer group).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct TopicSpec {
    /// Short name, also the prefix of the topic's unique name.
    pub(crate) key: &'static str,
    /// Partition count.
    pub(crate) partitions: i32,
    /// Messages in the topic.
    pub(crate) count: u64,
    /// What the values are.
    pub(crate) value: ValueKind,
}

/// One measured configuration of a scenario; every contender runs it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Case {
    /// Stable id, e.g. `backlog-100b-8p`.
    pub(crate) id: String,
    /// Short label for tables and charts, e.g. `backlog 100 B x8`.
    pub(crate) label: String,
    /// Its scenario.
    pub(crate) scenario: Scenario,
    /// The topic it reads; `None` for latency (a fresh topic per run) and idle.
    pub(crate) topic: Option<TopicSpec>,
    /// Messages each contender reads (latency: stamped messages).
    pub(crate) count: u64,
    /// Bytes per value, for MB/s.
    pub(crate) value_bytes: usize,
    /// Processing: hashing rounds per message (calibrated).
    pub(crate) rounds: Option<u32>,
    /// Processing: the CPU time per message those rounds stand for.
    pub(crate) work_us: Option<f64>,
    /// Latency: messages per second.
    pub(crate) rate: Option<u64>,
    /// librdkafka properties this case sets for every contender.
    pub(crate) properties: Vec<(String, String)>,
    /// Repetitions of this case (the median is reported).
    pub(crate) reps: usize,
}

/// Message counts and durations for one broker and mode.
#[derive(Debug, Clone, Copy, Serialize)]
pub(crate) struct Sizes {
    /// 100-byte values, 1 partition.
    pub(crate) small_1p: u64,
    /// 100-byte values, 8 partitions (also read by drain and processing).
    pub(crate) small_8p: u64,
    /// 1 KB values, 1 partition.
    pub(crate) large_1p: u64,
    /// 1 KB values, 8 partitions.
    pub(crate) large_8p: u64,
    /// JSON values, 8 partitions.
    pub(crate) json_8p: u64,
    /// Messages read in the 1 µs and 10 µs processing cases.
    pub(crate) processing: [u64; 2],
    /// How long the latency producer runs per contender.
    pub(crate) latency_run: Duration,
    /// How long an idle consumer settles (joins, finds nothing) before measuring.
    pub(crate) idle_settle: Duration,
    /// How long idle CPU is measured.
    pub(crate) idle_window: Duration,
}

impl Sizes {
    /// The sizes for the mock cluster or a real broker, full or quick.
    ///
    /// The mock cluster keeps only 5 MB per partition (older message sets are
    /// dropped), so its topics stay under that: about 35,000 100-byte or
    /// 4,000 1 KB records per partition.
    pub(crate) fn new(mock: bool, quick: bool) -> Sizes {
        match (mock, quick) {
            (true, true) => Sizes {
                small_1p: 10_000,
                small_8p: 64_000,
                large_1p: 2_000,
                large_8p: 16_000,
                json_8p: 64_000,
                processing: [40_000, 8_000],
                latency_run: Duration::from_secs(1),
                idle_settle: Duration::from_millis(1_500),
                idle_window: Duration::from_secs(2),
            },
            (true, false) => Sizes {
                small_1p: 35_000,
                small_8p: 280_000,
                large_1p: 4_000,
                large_8p: 32_000,
                json_8p: 280_000,
                processing: [200_000, 40_000],
                latency_run: Duration::from_secs(5),
                idle_settle: Duration::from_secs(3),
                idle_window: Duration::from_secs(5),
            },
            (false, true) => Sizes {
                small_1p: 100_000,
                small_8p: 200_000,
                large_1p: 20_000,
                large_8p: 40_000,
                json_8p: 200_000,
                processing: [100_000, 20_000],
                latency_run: Duration::from_secs(1),
                idle_settle: Duration::from_secs(3),
                idle_window: Duration::from_secs(2),
            },
            (false, false) => Sizes {
                small_1p: 1_000_000,
                small_8p: 1_000_000,
                large_1p: 200_000,
                large_8p: 400_000,
                json_8p: 1_000_000,
                processing: [1_000_000, 200_000],
                latency_run: Duration::from_secs(5),
                idle_settle: Duration::from_secs(3),
                idle_window: Duration::from_secs(5),
            },
        }
    }
}

/// librdkafka properties every contender gets in every case (before `--set`,
/// which overrides them).
///
/// `fetch.queue.backoff.ms`: when the consumer's queue holds more than
/// `queued.min.messages` (100,000 by default, compared with the length of
/// the whole consumer queue, all partitions together), librdkafka stops
/// fetching for `fetch.queue.backoff.ms`, 1 s by default. Any consumer that
/// falls 100,000 records behind the fetcher then idles for most of a second:
/// backlog figures become a lottery (0.25x to 0.9x of raw between two runs of
/// the same consumer). 10 ms keeps the fetcher going; it costs nothing while
/// the queue is under the threshold. Measure the default with
/// `--set fetch.queue.backoff.ms=1000`.
pub(crate) const BASELINE_PROPERTIES: [(&str, &str); 1] = [("fetch.queue.backoff.ms", "10")];

/// librdkafka properties that let the whole topic sit in the local queue:
/// fetching stops only at these limits (`queued.min.messages` is per
/// partition, `queued.max.messages.kbytes` for the consumer's whole queue).
pub(crate) const DRAIN_PROPERTIES: [(&str, &str); 2] = [
    ("queued.min.messages", "10000000"),
    ("queued.max.messages.kbytes", "2097151"),
];

/// Every case of the selected scenarios.
///
/// `rounds` are the calibrated hashing rounds for 1 µs and 10 µs per message.
/// On the mock cluster the latency cases lower `fetch.wait.max.ms`: the mock
/// answers an empty fetch only after that wait even when data arrives in the
/// meantime (a real broker answers as soon as data arrives), so librdkafka's
/// default of 500 ms would be what the latency cases measure.
pub(crate) fn cases(
    scenarios: &[Scenario],
    sizes: &Sizes,
    mock: bool,
    reps: usize,
    rounds: [(u32, f64); 2],
) -> Vec<Case> {
    let small_1p = TopicSpec {
        key: "bytes100-1p",
        partitions: 1,
        count: sizes.small_1p,
        value: ValueKind::Bytes(100),
    };
    let small_8p = TopicSpec {
        key: "bytes100-8p",
        partitions: 8,
        count: sizes.small_8p,
        value: ValueKind::Bytes(100),
    };
    let large_1p = TopicSpec {
        key: "bytes1k-1p",
        partitions: 1,
        count: sizes.large_1p,
        value: ValueKind::Bytes(1_000),
    };
    let large_8p = TopicSpec {
        key: "bytes1k-8p",
        partitions: 8,
        count: sizes.large_8p,
        value: ValueKind::Bytes(1_000),
    };
    let json_8p = TopicSpec {
        key: "json-8p",
        partitions: 8,
        count: sizes.json_8p,
        value: ValueKind::Json,
    };
    let drain_properties: Vec<(String, String)> = DRAIN_PROPERTIES
        .iter()
        .map(|(p, v)| ((*p).to_owned(), (*v).to_owned()))
        .collect();
    let case = |id: &str, label: &str, scenario, topic: Option<&TopicSpec>, count| Case {
        id: id.to_owned(),
        label: label.to_owned(),
        scenario,
        topic: topic.cloned(),
        count,
        value_bytes: match topic.map(|t| t.value) {
            Some(ValueKind::Bytes(size)) => size,
            Some(ValueKind::Json) => crate::payload::JSON_VALUE_BYTES,
            None => 100,
        },
        rounds: None,
        work_us: None,
        rate: None,
        properties: Vec::new(),
        reps,
    };

    let mut cases = Vec::new();
    for scenario in scenarios {
        match scenario {
            Scenario::Drain => {
                for (id, label, topic) in [
                    ("drain-bytes", "drain bytes", &small_8p),
                    ("drain-json", "drain JSON", &json_8p),
                ] {
                    cases.push(Case {
                        properties: drain_properties.clone(),
                        // A drain takes a tenth of a second on the mock: more
                        // repetitions steady its median.
                        reps: if mock && reps >= 3 { reps.max(5) } else { reps },
                        ..case(id, label, Scenario::Drain, Some(topic), topic.count)
                    });
                }
            }
            Scenario::Backlog => {
                for (id, label, topic) in [
                    ("backlog-100b-1p", "backlog 100 B x1", &small_1p),
                    ("backlog-100b-8p", "backlog 100 B x8", &small_8p),
                    ("backlog-1kb-1p", "backlog 1 KB x1", &large_1p),
                    ("backlog-1kb-8p", "backlog 1 KB x8", &large_8p),
                ] {
                    cases.push(case(id, label, Scenario::Backlog, Some(topic), topic.count));
                }
            }
            Scenario::Processing => {
                for ((id, label), ((rounds, us), count)) in [
                    ("processing-1us", "processing 1 us"),
                    ("processing-10us", "processing 10 us"),
                ]
                .into_iter()
                .zip(rounds.into_iter().zip(sizes.processing))
                {
                    cases.push(Case {
                        rounds: Some(rounds),
                        work_us: Some(us),
                        ..case(id, label, Scenario::Processing, Some(&small_8p), count)
                    });
                }
            }
            Scenario::Latency => {
                for (id, label, rate) in [
                    ("latency-1k", "latency 1k/s", 1_000u64),
                    ("latency-20k", "latency 20k/s", 20_000),
                ] {
                    let count = (rate as f64 * sizes.latency_run.as_secs_f64()) as u64;
                    let mut properties = Vec::new();
                    if mock {
                        properties.push(("fetch.wait.max.ms".to_owned(), "5".to_owned()));
                    }
                    cases.push(Case {
                        rate: Some(rate),
                        properties,
                        ..case(id, label, Scenario::Latency, None, count)
                    });
                }
            }
            Scenario::Idle => cases.push(Case {
                reps: 1,
                ..case("idle", "idle", Scenario::Idle, None, 0)
            }),
        }
    }
    cases
}
