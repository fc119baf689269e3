//! Turning runs into figures: medians, ratios, tables, the targets of issue 6,
//! and the files under `target/bench/` (JSON, Markdown, SVG charts).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use plotters::prelude::*;
use serde::Serialize;

use crate::child::Measured;
use crate::cli::Options;
use crate::contender::{Contender, Order};
use crate::plan::{
    BASELINE_IO_READS, CONCURRENT_KEYS, CONCURRENT_SLEEP_MS, Case, DRAIN_PROPERTIES, Scenario,
    Sizes,
};

/// Everything said about the run besides the figures.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Meta {
    /// When the run started (UTC).
    pub(crate) date_utc: String,
    /// The commit measured (`git describe --always --dirty`), so that a
    /// regression can be traced to its change; `None` outside a git work tree.
    pub(crate) commit: Option<String>,
    /// The broker, as a sentence.
    pub(crate) broker: String,
    /// Whether it is librdkafka's mock cluster.
    pub(crate) mock: bool,
    /// librdkafka's version string.
    pub(crate) librdkafka: String,
    /// CPUs available to the benchmark.
    pub(crate) cores: usize,
    /// The CPU model.
    pub(crate) cpu_model: Option<String>,
    /// Whether `--quick` was given.
    pub(crate) quick: bool,
    /// Repetitions of each throughput run.
    pub(crate) reps: usize,
    /// Message counts and durations.
    pub(crate) sizes: Sizes,
    /// Processing work: (rounds, measured µs) for the 1 µs and 10 µs cases.
    pub(crate) calibration: [(u32, f64); 2],
    /// The concurrent scenario's CPU-bound handler: (rounds, measured µs),
    /// when that scenario runs.
    pub(crate) concurrent_work: Option<(u32, f64)>,
    /// librdkafka properties given to every contender.
    pub(crate) properties: Vec<(String, String)>,
    /// The extra properties of the drain cases.
    pub(crate) drain_properties: Vec<(String, String)>,
    /// 1-minute load average before the run.
    pub(crate) load_before: Option<f64>,
    /// 1-minute load average after the run.
    pub(crate) load_after: Option<f64>,
    /// How long the run took, in seconds.
    pub(crate) duration_s: f64,
}

impl Meta {
    /// The facts known before the run.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        broker: &str,
        mock: bool,
        options: &Options,
        sizes: &Sizes,
        calibration: [(u32, f64); 2],
        concurrent_work: Option<(u32, f64)>,
        properties: &[(String, String)],
        load_before: Option<f64>,
    ) -> Meta {
        Meta {
            date_utc: utc_now(),
            commit: crate::sys::git_commit(),
            broker: broker.to_owned(),
            mock,
            librdkafka: rdkafka::util::get_rdkafka_version().1,
            cores: crate::sys::cores(),
            cpu_model: crate::sys::cpu_model(),
            quick: options.quick,
            reps: options.reps,
            sizes: *sizes,
            calibration,
            concurrent_work,
            properties: properties.to_vec(),
            drain_properties: DRAIN_PROPERTIES
                .iter()
                .map(|(p, v)| ((*p).to_owned(), (*v).to_owned()))
                .collect(),
            load_before,
            load_after: None,
            duration_s: 0.0,
        }
    }

    /// Adds what is known after the run.
    pub(crate) fn finish(mut self, load_after: Option<f64>, took: Duration) -> Meta {
        self.load_after = load_after;
        self.duration_s = took.as_secs_f64();
        self
    }

    /// The lines printed before the run and above the summary.
    pub(crate) fn header(&self) -> String {
        let mut text = String::new();
        let _ = writeln!(text, "tier-bench {}", self.date_utc);
        let _ = writeln!(
            text,
            "  commit:      {}",
            self.commit
                .as_deref()
                .unwrap_or("unknown (not a git work tree)")
        );
        let _ = writeln!(text, "  broker:      {}", self.broker);
        let _ = writeln!(text, "  librdkafka:  {} (rdkafka 0.39)", self.librdkafka);
        let _ = writeln!(
            text,
            "  machine:     {} core(s), {}; load average {}",
            self.cores,
            self.cpu_model.as_deref().unwrap_or("unknown CPU"),
            self.load_before
                .map_or_else(|| "?".to_owned(), |l| format!("{l:.2}"))
        );
        let s = &self.sizes;
        let _ = writeln!(
            text,
            "  records:     100 B x {} (1 partition), x {} (8 partitions); 1 KB x {} (1 p), x {} (8 p); JSON (~110 B) x {} (8 p)",
            s.small_1p, s.small_8p, s.large_1p, s.large_8p, s.json_8p
        );
        let _ = writeln!(
            text,
            "  processing:  {} rounds of FNV-1a over 100 B = {:.2} us, {} rounds = {:.2} us; {} and {} records",
            self.calibration[0].0,
            self.calibration[0].1,
            self.calibration[1].0,
            self.calibration[1].1,
            s.processing[0],
            s.processing[1]
        );
        if let Some((rounds, us)) = self.concurrent_work {
            let _ = writeln!(
                text,
                "  concurrent:  100 B x {} over {} keys (8 p); handlers: a {CONCURRENT_SLEEP_MS} ms timer, {rounds} rounds = {us:.2} us; \
                 Tokio multi-thread runtime, {} worker(s); the baseline reads {} with the timer",
                s.concurrent,
                count(Some(CONCURRENT_KEYS as f64)),
                self.cores,
                count(Some(s.concurrent.min(BASELINE_IO_READS) as f64)),
            );
        }
        let _ = write!(
            text,
            "  mode:        {}, {} repetition(s) per throughput run (median reported); each run in its own process",
            if self.quick { "quick" } else { "full" },
            self.reps
        );
        if !self.properties.is_empty() {
            let list: Vec<String> = self
                .properties
                .iter()
                .map(|(p, v)| format!("{p}={v}"))
                .collect();
            let _ = write!(
                text,
                "\n  properties:  {} (every contender)",
                list.join(" ")
            );
        }
        let drain: Vec<String> = self
            .drain_properties
            .iter()
            .map(|(p, v)| format!("{p}={v}"))
            .collect();
        let _ = write!(text, "\n               drain also {}", drain.join(" "));
        if self.mock {
            let _ = write!(
                text,
                "; latency also fetch.wait.max.ms=5 (the mock answers an empty fetch only after it)"
            );
        }
        text
    }
}

/// All runs of one case by one contender.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Outcome {
    /// The case.
    pub(crate) case: Case,
    /// The contender.
    pub(crate) contender: Contender,
    /// Every run, in order.
    pub(crate) runs: Vec<Measured>,
}

impl Outcome {
    /// No runs yet.
    pub(crate) fn new(case: Case, contender: Contender) -> Outcome {
        Outcome {
            case,
            contender,
            runs: Vec::new(),
        }
    }

    /// Messages per second of one run, as the scenario defines it: drain and
    /// backlog over the whole clocked interval (backlog: from subscribe);
    /// processing from the first record to the last (the group join is not
    /// what processing measures); concurrent as backlog, from subscribe to
    /// the last record handled.
    fn rate_of(&self, run: &Measured) -> Option<f64> {
        match self.case.scenario {
            Scenario::Drain | Scenario::Backlog | Scenario::Concurrent => {
                (run.seconds > 0.0).then(|| run.messages as f64 / run.seconds)
            }
            Scenario::Processing => {
                let span = run.seconds - run.first_message_s.unwrap_or(0.0);
                (span > 0.0 && run.messages > 1).then(|| (run.messages - 1) as f64 / span)
            }
            Scenario::Latency | Scenario::Idle => None,
        }
    }

    /// The median run: by rate for throughput, by p99 for latency.
    fn median(&self) -> Option<&Measured> {
        let mut runs: Vec<&Measured> = self.runs.iter().collect();
        match self.case.scenario {
            Scenario::Latency => runs.sort_by(|a, b| {
                let p99 = |m: &Measured| m.latency.as_ref().map_or(f64::MAX, |l| l.p99_us);
                p99(a).total_cmp(&p99(b))
            }),
            _ => runs.sort_by(|a, b| {
                let rate = |m: &Measured| self.rate_of(m).unwrap_or(0.0);
                rate(a).total_cmp(&rate(b))
            }),
        }
        runs.get(runs.len() / 2).copied()
    }

    /// The median rate.
    fn rate(&self) -> Option<f64> {
        self.median().and_then(|run| self.rate_of(run))
    }

    /// The spread of the rates over the runs, as (max - min) / median.
    fn spread(&self) -> Option<f64> {
        let rates: Vec<f64> = self.runs.iter().filter_map(|r| self.rate_of(r)).collect();
        if rates.len() < 2 {
            return None;
        }
        let max = rates.iter().copied().fold(f64::MIN, f64::max);
        let min = rates.iter().copied().fold(f64::MAX, f64::min);
        self.rate().map(|median| (max - min) / median)
    }
}

/// The figures derived for one outcome, as written to JSON.
#[derive(Debug, Clone, Serialize)]
struct Figures {
    case: String,
    contender: String,
    msgs_per_s: Option<f64>,
    mb_per_s: Option<f64>,
    ratio_to_raw: Option<f64>,
    ratio_to_legacy: Option<f64>,
    /// Concurrent: msgs/s over the Standard baseline's in the same case.
    ratio_to_baseline: Option<f64>,
    /// Concurrent: process CPU time over wall time, from the first record
    /// handled to the last.
    cores_used: Option<f64>,
    /// Concurrent: the runtime's worker threads.
    workers: Option<usize>,
    /// Concurrent: msgs/s from the first record handled to the last (the
    /// group join left out).
    msgs_per_s_after_join: Option<f64>,
    cpu_us_per_msg: Option<f64>,
    peak_rss_mib: Option<f64>,
    first_message_ms: Option<f64>,
    spread: Option<f64>,
    p50_ms: Option<f64>,
    p99_ms: Option<f64>,
    p999_ms: Option<f64>,
    max_ms: Option<f64>,
    idle_cpu_percent: Option<f64>,
}

/// The outcomes of the same case by another contender.
fn rate_of_contender(outcomes: &[Outcome], case: &str, contender: Contender) -> Option<f64> {
    outcomes
        .iter()
        .find(|o| o.case.id == case && o.contender == contender)
        .and_then(Outcome::rate)
}

fn figures(outcomes: &[Outcome], outcome: &Outcome) -> Figures {
    let median = outcome.median();
    let rate = outcome.rate();
    let ratio = |reference: Option<Contender>| {
        let reference = rate_of_contender(outcomes, &outcome.case.id, reference?)?;
        Some(rate? / reference)
    };
    let latency = median.and_then(|m| m.latency.as_ref());
    Figures {
        case: outcome.case.id.clone(),
        contender: outcome.contender.label(),
        msgs_per_s: rate,
        mb_per_s: rate.map(|r| r * outcome.case.value_bytes as f64 / 1e6),
        ratio_to_raw: ratio(Some(Contender::CEILING)),
        ratio_to_legacy: ratio(Contender::LEGACY),
        ratio_to_baseline: (outcome.case.scenario == Scenario::Concurrent)
            .then(|| ratio(Some(Contender::Standard)))
            .flatten(),
        cores_used: median.and_then(cores_used),
        workers: median.and_then(|m| m.workers),
        msgs_per_s_after_join: median
            .filter(|_| outcome.case.scenario == Scenario::Concurrent)
            .and_then(|m| {
                let span = m.seconds - m.first_message_s?;
                (span > 0.0 && m.messages > 1).then(|| (m.messages - 1) as f64 / span)
            }),
        cpu_us_per_msg: median
            .filter(|m| m.messages > 0 && outcome.case.scenario != Scenario::Idle)
            .map(|m| m.cpu_s * 1e6 / m.messages as f64),
        peak_rss_mib: median.map(|m| m.peak_rss_kib as f64 / 1024.0),
        first_message_ms: median.and_then(|m| m.first_message_s).map(|s| s * 1e3),
        spread: outcome.spread(),
        p50_ms: latency.map(|l| l.p50_us / 1e3),
        p99_ms: latency.map(|l| l.p99_us / 1e3),
        p999_ms: latency.map(|l| l.p999_us / 1e3),
        max_ms: latency.map(|l| l.max_us / 1e3),
        idle_cpu_percent: median.and_then(|m| m.idle_cpu_share).map(|s| s * 100.0),
    }
}

/// CPU time over wall time from the first record handled to the last
/// (concurrent runs, which record the CPU time of that span).
fn cores_used(run: &Measured) -> Option<f64> {
    let span = run.seconds - run.first_message_s?;
    Some(run.span_cpu_s? / span).filter(|_| span > 0.0)
}

/// A text table, printed aligned or as Markdown.
struct Table {
    head: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    fn new(head: &[&str]) -> Table {
        Table {
            head: head.iter().map(|h| (*h).to_owned()).collect(),
            rows: Vec::new(),
        }
    }

    fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    fn widths(&self) -> Vec<usize> {
        let mut widths: Vec<usize> = self.head.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        widths
    }

    fn text(&self) -> String {
        let widths = self.widths();
        let line = |cells: &[String]| {
            let mut out = String::new();
            for (i, (cell, width)) in cells.iter().zip(&widths).enumerate() {
                let pad = width - cell.chars().count();
                if i == 0 {
                    out.push_str(cell);
                    out.push_str(&" ".repeat(pad));
                } else {
                    out.push_str("  ");
                    out.push_str(&" ".repeat(pad));
                    out.push_str(cell);
                }
            }
            out.trim_end().to_owned()
        };
        let mut text = line(&self.head);
        text.push('\n');
        text.push_str(&"-".repeat(widths.iter().sum::<usize>() + 2 * (widths.len() - 1)));
        for row in &self.rows {
            text.push('\n');
            text.push_str(&line(row));
        }
        text
    }

    fn markdown(&self) -> String {
        let mut text = format!("| {} |\n", self.head.join(" | "));
        let align: Vec<&str> = (0..self.head.len())
            .map(|i| if i == 0 { "---" } else { "---:" })
            .collect();
        let _ = writeln!(text, "| {} |", align.join(" | "));
        for row in &self.rows {
            let _ = writeln!(text, "| {} |", row.join(" | "));
        }
        text
    }
}

fn num(value: Option<f64>, decimals: usize) -> String {
    value.map_or_else(|| "-".to_owned(), |v| format!("{v:.decimals$}"))
}

fn count(value: Option<f64>) -> String {
    match value {
        None => "-".to_owned(),
        Some(v) => {
            let digits = format!("{:.0}", v.max(0.0));
            let mut out = String::new();
            for (i, c) in digits.chars().enumerate() {
                if i > 0 && (digits.len() - i) % 3 == 0 {
                    out.push(',');
                }
                out.push(c);
            }
            out
        }
    }
}

fn ratio(value: Option<f64>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| format!("{v:.2}x"))
}

/// The table of one case (throughput cases), of one latency case, or idle.
fn case_table(outcomes: &[Outcome], case: &Case) -> Table {
    let of_case: Vec<&Outcome> = outcomes.iter().filter(|o| o.case.id == case.id).collect();
    match case.scenario {
        Scenario::Drain | Scenario::Backlog | Scenario::Processing => {
            let mut head = vec!["contender", "msgs/s", "MB/s", "x raw", "x legacy"];
            if case.scenario == Scenario::Processing {
                head.push("x Standard");
            }
            head.extend(["CPU us/msg", "peak RSS MiB", "1st msg ms", "spread"]);
            let mut table = Table::new(&head);
            let standard = rate_of_contender(outcomes, &case.id, Contender::Standard);
            for outcome in of_case {
                let f = figures(outcomes, outcome);
                let mut row = vec![
                    f.contender.clone(),
                    count(f.msgs_per_s),
                    num(f.mb_per_s, 1),
                    ratio(f.ratio_to_raw),
                    ratio(f.ratio_to_legacy),
                ];
                if case.scenario == Scenario::Processing {
                    row.push(ratio(f.msgs_per_s.zip(standard).map(|(r, s)| r / s)));
                }
                row.extend([
                    num(f.cpu_us_per_msg, 2),
                    num(f.peak_rss_mib, 0),
                    num(f.first_message_ms, 0),
                    f.spread
                        .map_or_else(|| "-".to_owned(), |s| format!("{:.0}%", s * 100.0)),
                ]);
                table.row(row);
            }
            table
        }
        Scenario::Latency => {
            let mut table = Table::new(&[
                "contender",
                "p50 ms",
                "p99 ms",
                "p99.9 ms",
                "max ms",
                "received",
                "CPU %",
            ]);
            for outcome in of_case {
                let f = figures(outcomes, outcome);
                let median = outcome.median();
                let latency = median.and_then(|m| m.latency.as_ref());
                table.row(vec![
                    f.contender,
                    num(f.p50_ms, 2),
                    num(f.p99_ms, 2),
                    num(f.p999_ms, 2),
                    num(f.max_ms, 1),
                    latency.map_or_else(
                        || "-".to_owned(),
                        |l| format!("{}/{}", l.samples, l.expected),
                    ),
                    num(
                        median
                            .filter(|m| m.seconds > 0.0)
                            .map(|m| m.cpu_s / m.seconds * 100.0),
                        1,
                    ),
                ]);
            }
            table
        }
        Scenario::Concurrent => {
            let mut table = Table::new(&[
                "contender",
                "records",
                "msgs/s",
                "x baseline",
                "msgs/s after 1st",
                "cores used",
                "CPU us/msg",
                "peak RSS MiB",
                "1st msg ms",
                "spread",
            ]);
            for outcome in of_case {
                let f = figures(outcomes, outcome);
                table.row(vec![
                    f.contender.clone(),
                    count(outcome.median().map(|m| m.messages as f64)),
                    count(f.msgs_per_s),
                    ratio(f.ratio_to_baseline),
                    count(f.msgs_per_s_after_join),
                    cores_text(&f),
                    num(f.cpu_us_per_msg, 2),
                    num(f.peak_rss_mib, 0),
                    num(f.first_message_ms, 0),
                    f.spread
                        .map_or_else(|| "-".to_owned(), |s| format!("{:.0}%", s * 100.0)),
                ]);
            }
            table
        }
        Scenario::Idle => {
            let mut table = Table::new(&["contender", "idle CPU % of a core", "peak RSS MiB"]);
            for outcome in of_case {
                let f = figures(outcomes, outcome);
                table.row(vec![
                    f.contender,
                    num(f.idle_cpu_percent, 2),
                    num(f.peak_rss_mib, 0),
                ]);
            }
            table
        }
    }
}

fn case_title(case: &Case) -> String {
    let what = match (&case.topic, case.scenario) {
        (Some(topic), _) => format!(
            "{} records of {} B, {} partition(s){}",
            case.count,
            case.value_bytes,
            topic.partitions,
            topic
                .keys
                .map(|keys| format!(", {} keys", count(Some(keys as f64))))
                .unwrap_or_default()
        ),
        (None, Scenario::Latency) => format!(
            "{} stamped 100 B records at {}/s, 1 partition",
            case.count,
            case.rate.unwrap_or(0)
        ),
        (None, _) => "an empty 8-partition topic".to_owned(),
    };
    let how = match case.scenario {
        Scenario::Drain => "all in librdkafka's queue before the clock starts",
        Scenario::Backlog => "clock from subscribe to the last record",
        Scenario::Processing => "clock from the first record to the last",
        Scenario::Latency => "produce-to-yield latency",
        Scenario::Idle => "subscribed, nothing to read",
        Scenario::Concurrent => "clock from subscribe to the last record handled",
    };
    let work = match (case.sleep_ms, case.work_us) {
        (Some(ms), _) => format!(", a {ms} ms timer awaited per record"),
        (None, Some(us)) => format!(", {us:.2} us of hashing per record"),
        (None, None) => String::new(),
    };
    format!("{}: {what}{work}; {how}", case.label)
}

/// "1.93 of 2" cores.
fn cores_text(f: &Figures) -> String {
    match (f.cores_used, f.workers) {
        (Some(cores), Some(workers)) => format!("{cores:.2} of {workers}"),
        (cores, _) => num(cores, 2),
    }
}

/// What a reader needs to know to read a case's table (concurrent only).
fn case_notes(case: &Case) -> Vec<String> {
    if case.scenario != Scenario::Concurrent {
        return Vec::new();
    }
    let mut notes = vec![
        "x baseline: msgs/s over fast Standard's, which reads one record at a time and awaits \
         the handler before reading the next"
            .to_owned(),
    ];
    if case.sleep_ms.is_some() && case.count > BASELINE_IO_READS {
        notes.push(format!(
            "the baseline reads only {} of the {} records here (at 1 ms and more each, all of \
             them would take {:.0} s and more): the rate is what counts",
            count(Some(BASELINE_IO_READS as f64)),
            count(Some(case.count as f64)),
            case.count as f64 * 1e-3
        ));
    }
    notes.push(
        "msgs/s (and x baseline) include the group join, 1st msg ms; msgs/s after 1st and \
         cores used leave it out: they run from the first record handed to the handler to the \
         last one handled (cores used: the process's CPU time, handlers, polling thread and \
         librdkafka, over that wall time, of the runtime's worker threads)"
            .to_owned(),
    );
    notes
}

/// Prints the tables of one scenario, right after it ran.
pub(crate) fn print_scenario(_scenario: Scenario, outcomes: &[Outcome]) {
    let mut seen: Vec<&str> = Vec::new();
    for outcome in outcomes {
        if seen.contains(&outcome.case.id.as_str()) {
            continue;
        }
        seen.push(&outcome.case.id);
        println!("\n{}", case_title(&outcome.case));
        println!("{}", case_table(outcomes, &outcome.case).text());
        for note in case_notes(&outcome.case) {
            println!("  note: {note}");
        }
        println!();
    }
}

/// The contenders that ran, in report order.
fn contenders_in(outcomes: &[Outcome]) -> Vec<Contender> {
    Contender::all()
        .into_iter()
        .filter(|c| outcomes.iter().any(|o| o.contender == *c))
        .collect()
}

/// The headline: one row per contender.
fn summary_table(outcomes: &[Outcome]) -> Table {
    let mut table = Table::new(&[
        "contender",
        "drain bytes msgs/s",
        "x raw",
        "drain JSON x raw",
        "backlog 100 B x8 msgs/s",
        "MB/s",
        "x raw",
        "x legacy",
        "proc 1 us x Standard",
        "p99 @1k/s ms",
        "p99 @20k/s ms",
        "idle CPU %",
        "peak RSS MiB",
    ]);
    let find = |case: &str, contender: Contender| {
        outcomes
            .iter()
            .find(|o| o.case.id == case && o.contender == contender)
            .map(|o| figures(outcomes, o))
    };
    // The process contenders run only in the concurrent scenario, which has
    // its own summary.
    let contenders: Vec<Contender> = contenders_in(outcomes)
        .into_iter()
        .filter(|c| !matches!(c, Contender::Process { .. }))
        .collect();
    let standard_proc = rate_of_contender(outcomes, "processing-1us", Contender::Standard);
    for contender in contenders {
        let drain = find("drain-bytes", contender);
        let json = find("drain-json", contender);
        let backlog = find("backlog-100b-8p", contender);
        let proc1 = find("processing-1us", contender);
        let lat1 = find("latency-1k", contender);
        let lat20 = find("latency-20k", contender);
        let idle = find("idle", contender);
        table.row(vec![
            contender.label(),
            count(drain.as_ref().and_then(|f| f.msgs_per_s)),
            ratio(drain.as_ref().and_then(|f| f.ratio_to_raw)),
            ratio(json.as_ref().and_then(|f| f.ratio_to_raw)),
            count(backlog.as_ref().and_then(|f| f.msgs_per_s)),
            num(backlog.as_ref().and_then(|f| f.mb_per_s), 1),
            ratio(backlog.as_ref().and_then(|f| f.ratio_to_raw)),
            ratio(backlog.as_ref().and_then(|f| f.ratio_to_legacy)),
            ratio(
                proc1
                    .as_ref()
                    .and_then(|f| f.msgs_per_s)
                    .zip(standard_proc)
                    .map(|(r, s)| r / s),
            ),
            num(lat1.as_ref().and_then(|f| f.p99_ms), 2),
            num(lat20.as_ref().and_then(|f| f.p99_ms), 2),
            num(idle.as_ref().and_then(|f| f.idle_cpu_percent), 2),
            num(backlog.as_ref().and_then(|f| f.peak_rss_mib), 0),
        ]);
    }
    table
}

/// Whether every outcome is of the concurrent scenario (the main summary
/// would have nothing to show).
fn only_concurrent(outcomes: &[Outcome]) -> bool {
    outcomes
        .iter()
        .all(|o| o.case.scenario == Scenario::Concurrent)
}

/// The concurrent scenario's headline: one row per contender, both cases.
fn concurrent_summary_table(outcomes: &[Outcome]) -> Option<Table> {
    let concurrent: Vec<Outcome> = outcomes
        .iter()
        .filter(|o| o.case.scenario == Scenario::Concurrent)
        .cloned()
        .collect();
    if concurrent.is_empty() {
        return None;
    }
    let mut table = Table::new(&[
        "contender",
        "I/O 1 ms msgs/s",
        "x baseline",
        "CPU 20 us msgs/s",
        "x baseline",
        "cores used",
    ]);
    let find = |case: &str, contender: Contender| {
        concurrent
            .iter()
            .find(|o| o.case.id == case && o.contender == contender)
            .map(|o| figures(&concurrent, o))
    };
    for contender in contenders_in(&concurrent) {
        let io = find("concurrent-io-1ms", contender);
        let cpu = find("concurrent-cpu-20us", contender);
        table.row(vec![
            contender.label(),
            count(io.as_ref().and_then(|f| f.msgs_per_s)),
            ratio(io.as_ref().and_then(|f| f.ratio_to_baseline)),
            count(cpu.as_ref().and_then(|f| f.msgs_per_s)),
            ratio(cpu.as_ref().and_then(|f| f.ratio_to_baseline)),
            cpu.as_ref().map_or_else(|| "-".to_owned(), cores_text),
        ]);
    }
    Some(table)
}

/// One target of issue 6, checked.
#[derive(Debug, Clone, Serialize)]
struct Target {
    target: String,
    measured: String,
    met: Option<bool>,
}

/// The targets of issue 6, checked against this run (they are stated for
/// real Kafka over loopback; on the mock cluster they are indicative).
fn targets(outcomes: &[Outcome]) -> Vec<Target> {
    let find = |case: &str, contender: Contender| {
        outcomes
            .iter()
            .find(|o| o.case.id == case && o.contender == contender)
            .map(|o| figures(outcomes, o))
    };
    let fast = [
        Contender::Standard,
        Contender::Buffered(32),
        Contender::Buffered(128),
        Contender::Dedicated,
    ];
    let mut targets = Vec::new();
    for contender in fast {
        let measured = find("drain-bytes", contender).and_then(|f| f.ratio_to_raw);
        targets.push(Target {
            target: format!("drain bytes: {} >= 0.9x raw", contender.label()),
            measured: ratio(measured),
            met: measured.map(|r| r >= 0.9),
        });
    }
    for (contender, floor) in [
        (Contender::Standard, 100_000.0),
        (Contender::Buffered(32), 500_000.0),
        (Contender::Buffered(128), 500_000.0),
        (Contender::Dedicated, 1_000_000.0),
    ] {
        for case in ["backlog-100b-1p", "backlog-100b-8p"] {
            let measured = find(case, contender).and_then(|f| f.msgs_per_s);
            targets.push(Target {
                target: format!(
                    "{case}: {} >= {} msgs/s",
                    contender.label(),
                    count(Some(floor))
                ),
                measured: count(measured),
                met: measured.map(|r| r >= floor),
            });
        }
    }
    let dedicated = find("processing-1us", Contender::Dedicated).and_then(|f| f.msgs_per_s);
    let standard = find("processing-1us", Contender::Standard).and_then(|f| f.msgs_per_s);
    let speedup = dedicated.zip(standard).map(|(d, s)| d / s);
    targets.push(Target {
        target: "processing 1 us: Dedicated >= 1.5x Standard".to_owned(),
        measured: ratio(speedup),
        met: speedup.map(|r| r >= 1.5),
    });
    let idle: Vec<Outcome> = outcomes
        .iter()
        .filter(|o| o.case.id == "idle")
        .cloned()
        .collect();
    for contender in contenders_in(&idle).into_iter().filter(|c| c.is_ours()) {
        let measured = find("idle", contender).and_then(|f| f.idle_cpu_percent);
        targets.push(Target {
            target: format!("idle: {} < 2% of a core", contender.label()),
            measured: measured.map_or_else(|| "-".to_owned(), |p| format!("{p:.2}%")),
            met: measured.map(|p| p < 2.0),
        });
    }
    let p99 = find("latency-1k", Contender::Standard).and_then(|f| f.p99_ms);
    targets.push(Target {
        target: "latency 1k/s: Standard p99 < 5 ms".to_owned(),
        measured: p99.map_or_else(|| "-".to_owned(), |p| format!("{p:.2} ms")),
        met: p99.map(|p| p < 5.0),
    });
    // The concurrent scenario's targets, only when it ran (they are not
    // issue 6's).
    if outcomes
        .iter()
        .any(|o| o.case.scenario == Scenario::Concurrent)
    {
        let key = Contender::Process {
            order: Order::Key,
            in_flight: 1_000,
        };
        let speedup = find("concurrent-io-1ms", key).and_then(|f| f.ratio_to_baseline);
        targets.push(Target {
            target: format!(
                "concurrent I/O 1 ms: {} >= {CONCURRENT_IO_TARGET:.0}x baseline",
                key.label()
            ),
            measured: ratio(speedup),
            met: speedup.map(|r| r >= CONCURRENT_IO_TARGET),
        });
        let cpu = find("concurrent-cpu-20us", key);
        let cores = cpu.as_ref().and_then(|f| f.cores_used.zip(f.workers));
        targets.push(Target {
            target: format!(
                "concurrent CPU 20 us: {} uses every core of the runtime (>= {:.0}%)",
                key.label(),
                CONCURRENT_CORES_SHARE * 100.0
            ),
            measured: cpu.as_ref().map_or_else(|| "-".to_owned(), cores_text),
            met: cores.map(|(used, workers)| used >= CONCURRENT_CORES_SHARE * workers as f64),
        });
    }
    targets
}

/// Concurrent I/O 1 ms: `Key` at 1,000 in flight against the baseline.
const CONCURRENT_IO_TARGET: f64 = 100.0;

/// Concurrent CPU 20 µs: the share of the runtime's workers that counts as
/// "every core" (the rest is measuring noise and the hand-out).
const CONCURRENT_CORES_SHARE: f64 = 0.9;

fn targets_table(targets: &[Target]) -> Table {
    let mut table = Table::new(&["target (issue 6)", "measured", "met"]);
    for target in targets {
        table.row(vec![
            target.target.clone(),
            target.measured.clone(),
            match target.met {
                Some(true) => "yes".to_owned(),
                Some(false) => "NO".to_owned(),
                None => "not run".to_owned(),
            },
        ]);
    }
    table
}

/// Prints the headline table and the targets.
pub(crate) fn print_summary(meta: &Meta, outcomes: &[Outcome]) {
    println!("\n{}", "=".repeat(100));
    println!("{}", meta.header());
    println!(
        "\nsummary (ratios are the headline: they hold across machines, absolute numbers don't)\n"
    );
    // The concurrent scenario has a summary of its own.
    if !only_concurrent(outcomes) {
        println!("{}", summary_table(outcomes).text());
        println!();
    }
    if let Some(table) = concurrent_summary_table(outcomes) {
        println!("concurrent processing (x baseline: over fast Standard reading one at a time)\n");
        println!("{}", table.text());
        println!();
    }
    if meta.mock {
        println!(
            "targets (stated for real Kafka over loopback; on the mock cluster they are only indicative):"
        );
    } else {
        println!("targets:");
    }
    println!("{}", targets_table(&targets(outcomes)).text());
}

/// The JSON document.
#[derive(Serialize)]
struct Document<'a> {
    meta: &'a Meta,
    figures: Vec<Figures>,
    targets: Vec<Target>,
    outcomes: &'a [Outcome],
}

/// Writes `bench.json`, `bench.md`, `throughput.svg` and `latency.svg` to
/// `out`; returns the paths written.
pub(crate) fn write_all(out: &Path, meta: &Meta, outcomes: &[Outcome]) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let mut written = Vec::new();

    let document = Document {
        meta,
        figures: outcomes.iter().map(|o| figures(outcomes, o)).collect(),
        targets: targets(outcomes),
        outcomes,
    };
    let json = out.join("bench.json");
    std::fs::write(&json, serde_json::to_string_pretty(&document)?)
        .with_context(|| format!("writing {}", json.display()))?;
    written.push(json);

    let markdown = out.join("bench.md");
    std::fs::write(&markdown, markdown_report(meta, outcomes))
        .with_context(|| format!("writing {}", markdown.display()))?;
    written.push(markdown);

    let throughput = out.join("throughput.svg");
    if throughput_chart(&throughput, meta, outcomes)? {
        written.push(throughput);
    }
    let latency = out.join("latency.svg");
    if latency_chart(&latency, meta, outcomes)? {
        written.push(latency);
    }
    Ok(written)
}

fn markdown_report(meta: &Meta, outcomes: &[Outcome]) -> String {
    let mut text = String::new();
    let _ = writeln!(text, "# tier-bench results\n");
    let _ = writeln!(text, "```text\n{}\n```\n", meta.header());
    if !only_concurrent(outcomes) {
        let _ = writeln!(text, "## Summary\n\n{}", summary_table(outcomes).markdown());
    }
    if let Some(table) = concurrent_summary_table(outcomes) {
        let _ = writeln!(
            text,
            "## Concurrent processing\n\nx baseline: over fast Standard reading one at a time.\n\n{}",
            table.markdown()
        );
    }
    let _ = writeln!(
        text,
        "## Targets of issue 6\n\n{}",
        targets_table(&targets(outcomes)).markdown()
    );
    let mut seen: Vec<&str> = Vec::new();
    for outcome in outcomes {
        if seen.contains(&outcome.case.id.as_str()) {
            continue;
        }
        seen.push(&outcome.case.id);
        let _ = writeln!(
            text,
            "## {}\n\n{}",
            case_title(&outcome.case),
            case_table(outcomes, &outcome.case).markdown()
        );
        let notes = case_notes(&outcome.case);
        if !notes.is_empty() {
            for note in notes {
                let _ = writeln!(text, "- {note}");
            }
            text.push('\n');
        }
    }
    text
}

/// Colours for the contenders, in report order.
fn colour(index: usize) -> RGBColor {
    const PALETTE: [RGBColor; 9] = [
        RGBColor(90, 90, 90),
        RGBColor(166, 118, 29),
        RGBColor(31, 119, 180),
        RGBColor(44, 160, 44),
        RGBColor(23, 190, 207),
        RGBColor(214, 39, 40),
        RGBColor(148, 103, 189),
        RGBColor(227, 119, 194),
        RGBColor(188, 189, 34),
    ];
    PALETTE[index % PALETTE.len()]
}

/// Width of one group of bars in chart units (integer units, because
/// plotters formats custom key points only on integer axes).
const SLOT: i32 = 1_000;

fn plot_error(error: impl std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!("drawing a chart: {error}")
}

/// Grouped bars: one group per throughput case, one bar per contender, the
/// height its ratio to the raw BaseConsumer. Returns whether anything was drawn.
fn throughput_chart(path: &Path, meta: &Meta, outcomes: &[Outcome]) -> Result<bool> {
    let throughput: Vec<Outcome> = outcomes
        .iter()
        .filter(|o| {
            matches!(
                o.case.scenario,
                Scenario::Drain | Scenario::Backlog | Scenario::Processing
            )
        })
        .cloned()
        .collect();
    let mut cases: Vec<&Case> = Vec::new();
    for outcome in &throughput {
        if !cases.iter().any(|c| c.id == outcome.case.id) {
            cases.push(&outcome.case);
        }
    }
    let contenders = contenders_in(&throughput);
    if cases.is_empty() {
        return Ok(false);
    }
    let value = |case: &Case, contender: Contender| {
        outcomes
            .iter()
            .find(|o| o.case.id == case.id && o.contender == contender)
            .and_then(|o| figures(outcomes, o).ratio_to_raw)
    };
    let top = cases
        .iter()
        .flat_map(|case| contenders.iter().filter_map(|c| value(case, *c)))
        .fold(1.0_f64, f64::max)
        * 1.45;

    let root = SVGBackend::new(path, (1400, 640)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_error)?;
    let labels: Vec<String> = cases.iter().map(|c| c.label.clone()).collect();
    let centres: Vec<i32> = (0..cases.len() as i32)
        .map(|i| i * SLOT + SLOT / 2)
        .collect();
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!(
                "Throughput relative to the raw BaseConsumer (1.0 = ceiling) | {} | {}",
                short_broker(meta),
                meta.date_utc
            ),
            ("sans-serif", 20),
        )
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(
            (0..cases.len() as i32 * SLOT).with_key_points(centres),
            0.0..top,
        )
        .map_err(plot_error)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_label_formatter(&|x| {
            labels
                .get((*x / SLOT).max(0) as usize)
                .cloned()
                .unwrap_or_default()
        })
        .y_desc("msgs/s relative to raw BaseConsumer")
        .draw()
        .map_err(plot_error)?;
    // Each group shows the contenders that ran in its case, side by side.
    let present = |case: &Case| -> Vec<Contender> {
        contenders
            .iter()
            .copied()
            .filter(|c| value(case, *c).is_some())
            .collect()
    };
    for (index, contender) in contenders.iter().enumerate() {
        let style = colour(index).filled();
        let bars: Vec<Rectangle<(i32, f64)>> = cases
            .iter()
            .enumerate()
            .filter_map(|(group, case)| {
                let in_group = present(case);
                let slot = in_group.iter().position(|c| c == contender)? as i32;
                let width = SLOT * 8 / 10 / in_group.len() as i32;
                let left = group as i32 * SLOT + SLOT / 10 + slot * width;
                value(case, *contender)
                    .map(|v| Rectangle::new([(left, 0.0), (left + width * 9 / 10, v)], style))
            })
            .collect();
        chart
            .draw_series(bars)
            .map_err(plot_error)?
            .label(contender.label())
            .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 12, y + 6)], style));
    }
    chart
        .draw_series(std::iter::once(PathElement::new(
            vec![(0, 1.0), (cases.len() as i32 * SLOT, 1.0)],
            BLACK.stroke_width(1),
        )))
        .map_err(plot_error)?;
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(plot_error)?;
    root.present().map_err(plot_error)?;
    Ok(true)
}

/// Grouped bars on a log scale: one group per contender, bars for p50, p99
/// and p99.9 at each rate.
fn latency_chart(path: &Path, meta: &Meta, outcomes: &[Outcome]) -> Result<bool> {
    let latency: Vec<&Outcome> = outcomes
        .iter()
        .filter(|o| o.case.scenario == Scenario::Latency)
        .collect();
    if latency.is_empty() {
        return Ok(false);
    }
    let contenders: Vec<Contender> = Contender::all()
        .into_iter()
        .filter(|c| latency.iter().any(|o| o.contender == *c))
        .collect();
    let mut cases: Vec<&Case> = Vec::new();
    for outcome in &latency {
        if !cases.iter().any(|c| c.id == outcome.case.id) {
            cases.push(&outcome.case);
        }
    }
    // (case, percentile name, value in ms) per bar series.
    let mut series: Vec<(String, Vec<Option<f64>>)> = Vec::new();
    for case in &cases {
        for (name, pick) in [("p50", 0usize), ("p99", 1), ("p99.9", 2)] {
            let values = contenders
                .iter()
                .map(|contender| {
                    latency
                        .iter()
                        .find(|o| o.case.id == case.id && o.contender == *contender)
                        .map(|o| figures(outcomes, o))
                        .and_then(|f| [f.p50_ms, f.p99_ms, f.p999_ms][pick])
                })
                .collect();
            series.push((format!("{} {name}", case.label), values));
        }
    }
    let all = series.iter().flat_map(|(_, v)| v.iter().flatten().copied());
    let (low, high) = all.fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if low > high {
        return Ok(false);
    }
    let bottom = (low / 2.0).max(0.001);
    let top = high * 3.0;

    let root = SVGBackend::new(path, (1400, 640)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_error)?;
    let labels: Vec<String> = contenders.iter().map(|c| c.label()).collect();
    let centres: Vec<i32> = (0..contenders.len() as i32)
        .map(|i| i * SLOT + SLOT / 2)
        .collect();
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!(
                "Produce-to-yield latency (ms, log scale) | {} | {}",
                short_broker(meta),
                meta.date_utc
            ),
            ("sans-serif", 20),
        )
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(
            (0..contenders.len() as i32 * SLOT).with_key_points(centres),
            (bottom..top).log_scale(),
        )
        .map_err(plot_error)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_label_formatter(&|x| {
            labels
                .get((*x / SLOT).max(0) as usize)
                .cloned()
                .unwrap_or_default()
        })
        .y_desc("latency, ms")
        .draw()
        .map_err(plot_error)?;
    let width = SLOT * 8 / 10 / series.len() as i32;
    for (index, (name, values)) in series.iter().enumerate() {
        let style = colour(index + 2).filled();
        let bars: Vec<Rectangle<(i32, f64)>> = values
            .iter()
            .enumerate()
            .filter_map(|(group, value)| {
                let left = group as i32 * SLOT + SLOT / 10 + index as i32 * width;
                value.map(|v| Rectangle::new([(left, bottom), (left + width * 9 / 10, v)], style))
            })
            .collect();
        chart
            .draw_series(bars)
            .map_err(plot_error)?
            .label(name.clone())
            .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 12, y + 6)], style));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(plot_error)?;
    root.present().map_err(plot_error)?;
    Ok(true)
}

fn short_broker(meta: &Meta) -> &str {
    if meta.mock {
        "librdkafka mock cluster"
    } else {
        meta.broker.split(" at ").next().unwrap_or(&meta.broker)
    }
}

/// The current UTC time as `YYYY-MM-DD HH:MM UTC`.
fn utc_now() -> String {
    let seconds = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let days = (seconds / 86_400) as i64;
    let rest = seconds % 86_400;
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02} UTC",
        rest / 3_600,
        rest % 3_600 / 60
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
        assert_eq!(civil_from_days(20_513), (2026, 3, 1));
    }

    #[test]
    fn counts_get_thousands_separators() {
        assert_eq!(count(Some(1_234_567.4)), "1,234,567");
        assert_eq!(count(Some(999.0)), "999");
        assert_eq!(count(None), "-");
    }

    #[test]
    fn concurrent_ratios_are_against_the_standard_baseline_of_the_same_case() {
        let cases = crate::plan::cases(
            &[Scenario::Concurrent],
            &Sizes::new(true, true),
            true,
            1,
            [(1, 1.0), (10, 10.0)],
            Some((20, 20.0)),
        );
        let key = Contender::Process {
            order: Order::Key,
            in_flight: 1_000,
        };
        let run = |messages: u64, seconds: f64| Measured {
            messages,
            seconds,
            first_message_s: Some(0.5),
            cpu_s: seconds,
            span_cpu_s: Some(2.0 * (seconds - 0.5)),
            workers: Some(2),
            ..Measured::default()
        };
        let mut outcomes = Vec::new();
        for (case, baseline_s) in cases.iter().zip([3.5, 1.5]) {
            let mut standard = Outcome::new(case.clone(), Contender::Standard);
            standard.runs.push(run(3_000, baseline_s));
            let mut process = Outcome::new(case.clone(), key);
            process.runs.push(run(3_000, 1.0));
            outcomes.extend([standard, process]);
        }
        let io = figures(&outcomes, &outcomes[1]);
        assert_eq!(io.ratio_to_baseline, Some(3.5));
        assert_eq!(io.ratio_to_raw, None);
        assert_eq!(io.cores_used, Some(2.0));
        let cpu = figures(&outcomes, &outcomes[3]);
        assert_eq!(cpu.ratio_to_baseline, Some(1.5));
        let table = case_table(&outcomes, &cases[0]).text();
        assert!(table.contains("x baseline"), "{table}");
        assert!(table.contains("2.00 of 2"), "{table}");
        assert!(!table.contains("x raw"), "{table}");
        assert!(only_concurrent(&outcomes));
        let summary = concurrent_summary_table(&outcomes).expect("a summary");
        assert_eq!(summary.rows.len(), 2);
        let checked = targets(&outcomes);
        let io_target = checked
            .iter()
            .find(|t| t.target.starts_with("concurrent I/O"))
            .expect("the I/O target");
        assert_eq!(io_target.met, Some(false));
        let cpu_target = checked
            .iter()
            .find(|t| t.target.starts_with("concurrent CPU"))
            .expect("the CPU target");
        assert_eq!(cpu_target.met, Some(true));
    }

    #[test]
    fn tables_align_and_render_markdown() {
        let mut table = Table::new(&["a", "bb"]);
        table.row(vec!["long name".to_owned(), "1".to_owned()]);
        assert_eq!(table.text(), "a          bb\n-------------\nlong name   1");
        assert!(table.markdown().starts_with("| a | bb |\n| --- | ---: |\n"));
    }
}
