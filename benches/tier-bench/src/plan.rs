//! What runs: the scenarios, their cases and the topics they read, sized for
//! the broker and the mode.

use std::time::Duration;

use anyhow::{Result, bail};
use serde::Serialize;

use crate::contender::Contender;

/// The five scenarios of issue 6, then concurrent processing, in the order
/// they run.
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
    /// Concurrent processing (`Consumer::processor`) against reading one
    /// message at a time, with an I/O-bound and a CPU-bound handler.
    Concurrent,
}

impl Scenario {
    /// Every scenario, in running order.
    pub(crate) const ALL: [Scenario; 6] = [
        Scenario::Drain,
        Scenario::Backlog,
        Scenario::Processing,
        Scenario::Latency,
        Scenario::Idle,
        Scenario::Concurrent,
    ];

    /// The scenario's name on the command line and in the report.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Scenario::Drain => "drain",
            Scenario::Backlog => "backlog",
            Scenario::Processing => "processing",
            Scenario::Latency => "latency",
            Scenario::Idle => "idle",
            Scenario::Concurrent => "concurrent",
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
    /// The keys cycle over this many distinct values (record `i` gets key
    /// `i % keys`); `None`: every record has a key of its own.
    pub(crate) keys: Option<u64>,
}

impl TopicSpec {
    /// The index [`crate::payload::key`] turns into the key of record `index`.
    pub(crate) fn key_index(&self, index: u64) -> u64 {
        match self.keys {
            Some(keys) => index % keys.max(1),
            None => index,
        }
    }
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
    /// Concurrent: the handler awaits a timer of this many milliseconds
    /// (else it hashes `rounds` times).
    pub(crate) sleep_ms: Option<u64>,
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
    /// 100-byte values over 10,000 keys, 8 partitions: the concurrent topic.
    pub(crate) concurrent: u64,
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
    /// 4,000 1 KB records per partition. The concurrent topic is smaller
    /// still on the mock: its quick run must stay well under 30 s in CI.
    pub(crate) fn new(mock: bool, quick: bool) -> Sizes {
        match (mock, quick) {
            (true, true) => Sizes {
                small_1p: 10_000,
                small_8p: 64_000,
                large_1p: 2_000,
                large_8p: 16_000,
                json_8p: 64_000,
                processing: [40_000, 8_000],
                concurrent: 4_000,
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
                concurrent: 40_000,
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
                concurrent: 20_000,
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
                concurrent: 100_000,
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

/// Distinct keys in the concurrent topic.
pub(crate) const CONCURRENT_KEYS: u64 = 10_000;

/// CPU time per message of the concurrent scenario's CPU-bound handler.
pub(crate) const CONCURRENT_WORK: Duration = Duration::from_micros(20);

/// The concurrent scenario's I/O-bound handler awaits a timer this long.
pub(crate) const CONCURRENT_SLEEP_MS: u64 = 1;

/// Messages the one-at-a-time baseline reads in the concurrent I/O case.
///
/// At 1 ms (or more: Tokio's timer has millisecond resolution) per message,
/// reading all 100,000 would take over 100 s; the rate is what the report
/// compares, and 3,000 messages (3 s and more) measure it well.
pub(crate) const BASELINE_IO_READS: u64 = 3_000;

/// How many messages `contender` reads in `case`: the case's count, except
/// for the baseline in the concurrent I/O case ([`BASELINE_IO_READS`]).
pub(crate) fn reads(case: &Case, contender: Contender) -> u64 {
    let io_baseline = case.scenario == Scenario::Concurrent
        && case.sleep_ms.is_some()
        && !matches!(contender, Contender::Process { .. });
    if io_baseline {
        case.count.min(BASELINE_IO_READS)
    } else {
        case.count
    }
}

/// Every case of the selected scenarios.
///
/// `rounds` are the calibrated hashing rounds for 1 µs and 10 µs per message,
/// `concurrent_work` those for [`CONCURRENT_WORK`] (calibrated only when the
/// concurrent scenario runs).
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
    concurrent_work: Option<(u32, f64)>,
) -> Vec<Case> {
    let small_1p = TopicSpec {
        key: "bytes100-1p",
        partitions: 1,
        count: sizes.small_1p,
        value: ValueKind::Bytes(100),
        keys: None,
    };
    let small_8p = TopicSpec {
        key: "bytes100-8p",
        partitions: 8,
        count: sizes.small_8p,
        value: ValueKind::Bytes(100),
        keys: None,
    };
    let large_1p = TopicSpec {
        key: "bytes1k-1p",
        partitions: 1,
        count: sizes.large_1p,
        value: ValueKind::Bytes(1_000),
        keys: None,
    };
    let large_8p = TopicSpec {
        key: "bytes1k-8p",
        partitions: 8,
        count: sizes.large_8p,
        value: ValueKind::Bytes(1_000),
        keys: None,
    };
    let json_8p = TopicSpec {
        key: "json-8p",
        partitions: 8,
        count: sizes.json_8p,
        value: ValueKind::Json,
        keys: None,
    };
    // Keys cycle over 10,000 and records go round-robin over 8 partitions:
    // as 10,000 is a multiple of 8, each key stays in one partition (1,250
    // keys per partition), as a keyed producer would place it.
    let keyed_8p = TopicSpec {
        key: "bytes100-8p-10kkeys",
        partitions: 8,
        count: sizes.concurrent,
        value: ValueKind::Bytes(100),
        keys: Some(CONCURRENT_KEYS),
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
        sleep_ms: None,
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
            Scenario::Concurrent => {
                let count = keyed_8p.count;
                cases.push(Case {
                    sleep_ms: Some(CONCURRENT_SLEEP_MS),
                    ..case(
                        "concurrent-io-1ms",
                        "concurrent I/O 1 ms",
                        Scenario::Concurrent,
                        Some(&keyed_8p),
                        count,
                    )
                });
                let (rounds, us) = concurrent_work.unwrap_or_else(|| {
                    let (rounds, took) = crate::work::calibrate(100, CONCURRENT_WORK);
                    (rounds, took.as_secs_f64() * 1e6)
                });
                cases.push(Case {
                    rounds: Some(rounds),
                    work_us: Some(us),
                    ..case(
                        "concurrent-cpu-20us",
                        "concurrent CPU 20 us",
                        Scenario::Concurrent,
                        Some(&keyed_8p),
                        count,
                    )
                });
            }
        }
    }
    cases
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contender::Order;

    #[test]
    fn every_scenario_name_parses_back() {
        for scenario in Scenario::ALL {
            assert_eq!(Scenario::parse(scenario.name()).ok(), Some(scenario));
        }
        assert_eq!(Scenario::ALL.last(), Some(&Scenario::Concurrent));
        assert!(Scenario::parse("concurrency").is_err());
    }

    fn concurrent_cases(mock: bool, quick: bool) -> Vec<Case> {
        cases(
            &[Scenario::Concurrent],
            &Sizes::new(mock, quick),
            mock,
            1,
            [(1, 1.0), (10, 10.0)],
            Some((20, 20.0)),
        )
    }

    #[test]
    fn the_concurrent_scenario_has_an_io_and_a_cpu_case_over_10k_keys() {
        let cases = concurrent_cases(false, false);
        let ids: Vec<&str> = cases.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(ids, ["concurrent-io-1ms", "concurrent-cpu-20us"]);
        for case in &cases {
            let topic = case.topic.as_ref().expect("a topic");
            assert_eq!((topic.partitions, topic.count), (8, 100_000));
            assert_eq!(topic.keys, Some(10_000));
            assert_eq!(case.value_bytes, 100);
        }
        assert_eq!(cases[0].sleep_ms, Some(1));
        assert_eq!(cases[1].rounds, Some(20));
        for (mock, quick, count) in [
            (false, true, 20_000),
            (true, false, 40_000),
            (true, true, 4_000),
        ] {
            assert_eq!(concurrent_cases(mock, quick)[0].count, count);
        }
    }

    #[test]
    fn keys_cycle_and_each_key_stays_in_one_partition() {
        let topic = &concurrent_cases(false, false)[0]
            .topic
            .clone()
            .expect("a topic");
        assert_eq!(topic.key_index(10_007), 7);
        let partitions = topic.partitions as u64;
        for index in 0..30_000 {
            let key = topic.key_index(index);
            assert!(key < 10_000);
            // produce.rs writes record `index` to partition `index % partitions`.
            assert_eq!(index % partitions, key % partitions);
        }
        let unkeyed = TopicSpec {
            keys: None,
            ..topic.clone()
        };
        assert_eq!(unkeyed.key_index(10_007), 10_007);
    }

    #[test]
    fn the_baseline_reads_3000_messages_with_the_1ms_handler_only() {
        let cases = concurrent_cases(false, false);
        let process = Contender::Process {
            order: Order::Key,
            in_flight: 1_000,
        };
        assert_eq!(reads(&cases[0], Contender::Standard), 3_000);
        assert_eq!(reads(&cases[0], process), 100_000);
        assert_eq!(reads(&cases[1], Contender::Standard), 100_000);
        let small = concurrent_cases(true, true);
        assert_eq!(reads(&small[0], Contender::Standard), 3_000);
        let backlog = cases_for_backlog();
        assert_eq!(reads(&backlog, Contender::Standard), backlog.count);
    }

    fn cases_for_backlog() -> Case {
        cases(
            &[Scenario::Backlog],
            &Sizes::new(true, true),
            true,
            1,
            [(1, 1.0), (10, 10.0)],
            None,
        )
        .remove(0)
    }
}
