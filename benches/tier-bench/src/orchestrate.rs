//! The parent process: broker, topics, one child process per run, report.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use indicatif::{ProgressBar, ProgressStyle};
use kafka_test_env::KafkaTestEnv;

use crate::child::{ChildSpec, Handler, Measured, Task};
use crate::cli::Options;
use crate::contender::Contender;
use crate::plan::{self, Case, Scenario, Sizes, TopicSpec, ValueKind};
use crate::produce;
use crate::report::{self, Meta, Outcome};
use crate::sys;

/// Runs the whole benchmark.
pub(crate) fn run(options: Options) -> Result<()> {
    let started = Instant::now();
    let load_before = sys::load_average();
    let env = match &options.brokers {
        Some(brokers) => KafkaTestEnv::external(brokers)?,
        None => KafkaTestEnv::mock()?,
    };
    let mock = env.kind().is_mock();
    let brokers = env.bootstrap_servers();
    let broker = match (&options.brokers, &options.broker_name) {
        (None, _) => env.kind().to_string(),
        (Some(brokers), Some(name)) => format!("{name} at {brokers}"),
        (Some(brokers), None) => format!("external Kafka at {brokers}"),
    };
    let mut properties: Vec<(String, String)> = Vec::new();
    if is_loopback(&brokers) {
        properties.push(("broker.address.family".to_owned(), "v4".to_owned()));
    }
    let baseline = plan::BASELINE_PROPERTIES
        .iter()
        .map(|(p, v)| ((*p).to_owned(), (*v).to_owned()));
    // Later settings replace earlier ones: `--set` wins over the baseline.
    for (property, value) in baseline.chain(options.properties.iter().cloned()) {
        match properties.iter_mut().find(|(p, _)| *p == property) {
            Some(slot) => slot.1 = value,
            None => properties.push((property, value)),
        }
    }

    let sizes = Sizes::new(mock, options.quick);
    let calibration = [
        crate::work::calibrate(100, Duration::from_micros(1)),
        crate::work::calibrate(100, Duration::from_micros(10)),
    ];
    let rounds = calibration.map(|(rounds, took)| (rounds, took.as_secs_f64() * 1e6));
    let concurrent_work = options
        .scenarios
        .contains(&Scenario::Concurrent)
        .then(|| crate::work::calibrate(100, plan::CONCURRENT_WORK))
        .map(|(rounds, took)| (rounds, took.as_secs_f64() * 1e6));
    let cases = plan::cases(
        &options.scenarios,
        &sizes,
        mock,
        options.reps,
        rounds,
        concurrent_work,
    );
    let mut contenders = options.contenders.clone();
    let java_unavailable = match (&options.java_classpath, mock) {
        (_, true) => Some("they need a real broker"),
        (None, false) => Some(
            "no --java-classpath (cargo xtask bench compiles benches/java-consumer when javac and the broker's jars are there)",
        ),
        (Some(_), false) => None,
    };
    if let Some(reason) = java_unavailable
        && contenders
            .iter()
            .any(|c| matches!(c, Contender::Java { .. }))
    {
        println!("note: the Java contenders are skipped: {reason}");
        contenders.retain(|c| !matches!(c, Contender::Java { .. }));
    }
    if contenders.contains(&Contender::Kcat) && !crate::sys::on_path("kcat") {
        println!("note: kcat is skipped: it is not installed (Debian package kcat)");
        contenders.retain(|c| *c != Contender::Kcat);
    }

    let meta = Meta::new(
        &broker,
        mock,
        &options,
        &sizes,
        rounds,
        concurrent_work,
        &properties,
        load_before,
    );
    println!("{}", meta.header());

    let topics = prepare_topics(&env, &brokers, &cases)?;
    let latency_producer = produce::producer(&brokers, 0)?;
    let idle_topic = if options.scenarios.contains(&Scenario::Idle) {
        let topic = env.unique_topic("bench-idle");
        env.create_topic(&topic, 8)?;
        Some(topic)
    } else {
        None
    };
    let runner = Runner {
        env: &env,
        brokers: &brokers,
        properties: &properties,
        topics: &topics,
        latency_producer: &latency_producer,
        idle_topic: idle_topic.as_deref(),
        sizes: &sizes,
        quick: options.quick,
        java_classpath: options.java_classpath.as_deref(),
    };

    let mut outcomes: Vec<Outcome> = Vec::new();
    let mut failures: Vec<String> = Vec::new();
    for scenario in &options.scenarios {
        let scenario_cases: Vec<&Case> = cases.iter().filter(|c| c.scenario == *scenario).collect();
        let first = outcomes.len();
        let in_scenario: Vec<Contender> = contenders
            .iter()
            .copied()
            .filter(|c| c.runs_in(*scenario))
            .collect();
        for case in &scenario_cases {
            for contender in &in_scenario {
                outcomes.push(Outcome::new((*case).clone(), *contender));
            }
        }
        let bar = scenario_bar(*scenario, &scenario_cases, in_scenario.len());
        let scenario_started = Instant::now();
        if *scenario == Scenario::Idle {
            runner.idle(&mut outcomes[first..], &bar, &mut failures);
        } else {
            let reps = scenario_cases.iter().map(|c| c.reps).max().unwrap_or(1);
            for rep in 0..reps {
                for outcome in outcomes[first..].iter_mut() {
                    if rep >= outcome.case.reps {
                        continue;
                    }
                    bar.set_message(format!(
                        "{} | {} | run {}/{}",
                        outcome.case.label,
                        outcome.contender.label(),
                        rep + 1,
                        outcome.case.reps
                    ));
                    match runner.run(&outcome.case, outcome.contender) {
                        Ok(measured) => outcome.runs.push(measured),
                        Err(error) => {
                            let text = format!(
                                "{} / {}: {error:#}",
                                outcome.case.id,
                                outcome.contender.label()
                            );
                            bar.println(format!("FAILED {text}"));
                            failures.push(text);
                        }
                    }
                    bar.inc(1);
                }
            }
        }
        bar.finish_and_clear();
        println!(
            "{} finished in {:.1} s",
            scenario.name(),
            scenario_started.elapsed().as_secs_f64()
        );
        report::print_scenario(*scenario, &outcomes[first..]);
    }

    let meta = meta.finish(sys::load_average(), started.elapsed());
    let written = report::write_all(&options.out, &meta, &outcomes)?;
    report::print_summary(&meta, &outcomes);
    println!();
    for path in written {
        println!("wrote {}", path.display());
    }
    println!(
        "total {:.1} s; load average {} before, {} after",
        started.elapsed().as_secs_f64(),
        load_text(load_before),
        load_text(sys::load_average())
    );
    drop(latency_producer);
    if !failures.is_empty() {
        bail!(
            "{} run(s) failed:\n  {}",
            failures.len(),
            failures.join("\n  ")
        );
    }
    Ok(())
}

fn load_text(load: Option<f64>) -> String {
    load.map_or_else(|| "?".to_owned(), |l| format!("{l:.2}"))
}

/// Whether every bootstrap address is on this machine.
fn is_loopback(brokers: &str) -> bool {
    brokers.split(',').all(|address| {
        let host = address.trim().rsplit_once(':').map_or(address, |(h, _)| h);
        host.starts_with("127.") || host == "localhost"
    })
}

/// A progress bar for one scenario: one step per run.
fn scenario_bar(scenario: Scenario, cases: &[&Case], contenders: usize) -> ProgressBar {
    let runs: usize = if scenario == Scenario::Idle {
        contenders
    } else {
        cases.iter().map(|c| c.reps * contenders).sum()
    };
    let bar = ProgressBar::new(runs as u64);
    bar.set_style(
        ProgressStyle::with_template(
            "{prefix:>10.bold} [{bar:30.cyan/blue}] {pos}/{len} {elapsed:>4} {wide_msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar.set_prefix(scenario.name());
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// The topics the cases read, by key, with their unique names.
struct Topics(Vec<(TopicSpec, String)>);

impl Topics {
    fn name(&self, spec: &TopicSpec) -> Result<&str> {
        self.0
            .iter()
            .find(|(s, _)| s.key == spec.key)
            .map(|(_, name)| name.as_str())
            .with_context(|| format!("topic {} was not prepared", spec.key))
    }
}

/// Creates and fills every topic the cases read, with one progress bar.
fn prepare_topics(env: &KafkaTestEnv, brokers: &str, cases: &[Case]) -> Result<Topics> {
    let mut specs: Vec<TopicSpec> = Vec::new();
    for spec in cases.iter().filter_map(|c| c.topic.as_ref()) {
        if !specs.iter().any(|s| s.key == spec.key) {
            specs.push(spec.clone());
        }
    }
    let total: u64 = specs.iter().map(|s| s.count).sum();
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template(
            "{prefix:>10.bold} [{bar:30.cyan/blue}] {human_pos}/{human_len} records {elapsed:>4} {wide_msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar.set_prefix("topics");
    let producer = produce::producer(brokers, 20)?;
    let started = Instant::now();
    let mut topics = Vec::new();
    let mut done = 0;
    for spec in specs {
        let name = env.unique_topic(&format!("bench-{}", spec.key));
        bar.set_message(format!("{} ({} partitions)", spec.key, spec.partitions));
        env.create_topic(&name, spec.partitions)?;
        produce::fill(&producer, brokers, &name, &spec, &|n| {
            bar.set_position(done + n);
        })?;
        done += spec.count;
        topics.push((spec, name));
    }
    bar.finish_and_clear();
    println!(
        "topics ready: {} records in {} topic(s) in {:.1} s",
        total,
        topics.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(Topics(topics))
}

/// Runs children.
struct Runner<'a> {
    env: &'a KafkaTestEnv,
    brokers: &'a str,
    properties: &'a [(String, String)],
    topics: &'a Topics,
    latency_producer: &'a produce::BenchProducer,
    idle_topic: Option<&'a str>,
    sizes: &'a Sizes,
    quick: bool,
    /// Where the Java contender's class and its jars are.
    java_classpath: Option<&'a str>,
}

impl Runner<'_> {
    fn spec(&self, case: &Case, contender: Contender, task: Task) -> ChildSpec {
        let mut properties = case.properties.clone();
        properties.extend(self.properties.iter().cloned());
        ChildSpec {
            brokers: self.brokers.to_owned(),
            group: self
                .env
                .unique_group(&format!("bench-{}-{:?}", case.id, contender)),
            contender,
            task,
            properties,
            timeout_s: if self.quick { 120 } else { 300 },
        }
    }

    /// One run of a throughput or latency case.
    fn run(&self, case: &Case, contender: Contender) -> Result<Measured> {
        match case.scenario {
            Scenario::Drain => {
                let spec = case.topic.as_ref().context("drain needs a topic")?;
                let task = Task::Drain {
                    topic: self.topics.name(spec)?.to_owned(),
                    partitions: spec.partitions,
                    count: case.count,
                    json: spec.value == ValueKind::Json,
                };
                ChildRun::start(&self.spec(case, contender, task))?.finish(|| {})
            }
            Scenario::Backlog => {
                let spec = case.topic.as_ref().context("backlog needs a topic")?;
                let task = Task::Backlog {
                    topic: self.topics.name(spec)?.to_owned(),
                    count: case.count,
                };
                let spec = self.spec(case, contender, task);
                match (contender, self.java_classpath) {
                    (Contender::Java { warm }, Some(classpath)) => {
                        ChildRun::start_java(&spec, classpath, warm)?.finish(|| {})
                    }
                    _ => ChildRun::start(&spec)?.finish(|| {}),
                }
            }
            Scenario::Processing => {
                let spec = case.topic.as_ref().context("processing needs a topic")?;
                let task = Task::Processing {
                    topic: self.topics.name(spec)?.to_owned(),
                    count: case.count,
                    rounds: case.rounds.unwrap_or(1),
                };
                ChildRun::start(&self.spec(case, contender, task))?.finish(|| {})
            }
            Scenario::Latency => self.latency(case, contender),
            Scenario::Concurrent => {
                let spec = case.topic.as_ref().context("concurrent needs a topic")?;
                let handler = match (case.sleep_ms, case.rounds) {
                    (Some(ms), _) => Handler::Sleep { us: ms * 1_000 },
                    (None, Some(rounds)) => Handler::Hash { rounds },
                    (None, None) => bail!("concurrent case {} has no handler", case.id),
                };
                let task = Task::Concurrent {
                    topic: self.topics.name(spec)?.to_owned(),
                    // The baseline reads fewer records in the I/O case.
                    count: plan::reads(case, contender),
                    handler,
                };
                ChildRun::start(&self.spec(case, contender, task))?.finish(|| {})
            }
            Scenario::Idle => bail!("idle runs all contenders at once"),
        }
    }

    /// A latency run: a fresh topic, the child subscribes, the parent sends
    /// warm-up records until the child is `READY`, then stamped ones at the
    /// case's rate.
    fn latency(&self, case: &Case, contender: Contender) -> Result<Measured> {
        let rate = case.rate.context("latency needs a rate")?;
        let topic = self.env.unique_topic(&format!("bench-{}", case.id));
        self.env.create_topic(&topic, 1)?;
        let task = Task::Latency {
            topic: topic.clone(),
            count: case.count,
            wait_s: self.sizes.latency_run.as_secs_f64() + 10.0,
        };
        let child = ChildRun::start(&self.spec(case, contender, task))?;
        let ready = AtomicBool::new(false);
        let stop = AtomicBool::new(false);
        std::thread::scope(|scope| {
            let producer = scope.spawn(|| {
                produce::steady(
                    self.latency_producer,
                    &topic,
                    rate,
                    case.count,
                    case.value_bytes,
                    &ready,
                    &stop,
                )
            });
            let measured = child.finish(|| ready.store(true, Ordering::Release));
            stop.store(true, Ordering::Release);
            let sent = match producer.join() {
                Ok(sent) => sent?,
                Err(_) => bail!("the latency producer panicked"),
            };
            let measured = measured?;
            if sent < case.count {
                bail!("the producer sent only {sent} of {} records", case.count);
            }
            Ok(measured)
        })
    }

    /// Every contender idles at once, each in its own process measuring its
    /// own CPU time: idle consumers do not disturb each other's figures.
    fn idle(&self, outcomes: &mut [Outcome], bar: &ProgressBar, failures: &mut Vec<String>) {
        let Some(topic) = self.idle_topic else {
            return;
        };
        bar.set_message(format!(
            "all contenders at once: {:.1} s to settle, {:.1} s measured",
            self.sizes.idle_settle.as_secs_f64(),
            self.sizes.idle_window.as_secs_f64()
        ));
        let started: Vec<Result<ChildRun>> = outcomes
            .iter()
            .map(|outcome| {
                let task = Task::Idle {
                    topic: topic.to_owned(),
                    settle_ms: self.sizes.idle_settle.as_millis() as u64,
                    window_ms: self.sizes.idle_window.as_millis() as u64,
                };
                ChildRun::start(&self.spec(&outcome.case, outcome.contender, task))
            })
            .collect();
        for (outcome, child) in outcomes.iter_mut().zip(started) {
            match child.and_then(|child| child.finish(|| {})) {
                Ok(measured) => outcome.runs.push(measured),
                Err(error) => {
                    let text = format!("idle / {}: {error:#}", outcome.contender.label());
                    bar.println(format!("FAILED {text}"));
                    failures.push(text);
                }
            }
            bar.inc(1);
        }
    }
}

/// A running child process.
struct ChildRun {
    child: Child,
    stdout: BufReader<ChildStdout>,
    stderr: JoinHandle<String>,
    what: String,
}

impl ChildRun {
    /// Starts `tier-bench child <spec>`.
    fn start(spec: &ChildSpec) -> Result<ChildRun> {
        let exe = std::env::current_exe().context("finding this program")?;
        let mut command = Command::new(exe);
        command.arg("child").arg(serde_json::to_string(spec)?);
        ChildRun::spawn(command, spec)
    }

    /// Starts the Java contender (`benches/java-consumer`) on a backlog
    /// task: it prints the same `RESULT` line as a `tier-bench child`.
    fn start_java(spec: &ChildSpec, classpath: &str, warm: bool) -> Result<ChildRun> {
        let Task::Backlog { topic, count } = &spec.task else {
            bail!("the Java contender runs backlog tasks only");
        };
        let mut command = Command::new("java");
        command
            .args(["-cp", classpath, "ConsumerBench"])
            .args([&spec.brokers, &spec.group, topic])
            .arg(count.to_string())
            .arg(if warm { "1" } else { "0" });
        ChildRun::spawn(command, spec)
    }

    fn spawn(mut command: Command, spec: &ChildSpec) -> Result<ChildRun> {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting a child process for {:?}", spec.contender))?;
        let stdout = BufReader::new(child.stdout.take().context("child stdout")?);
        let mut stderr = child.stderr.take().context("child stderr")?;
        let stderr = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text);
            text
        });
        Ok(ChildRun {
            child,
            stdout,
            stderr,
            what: format!("{:?}", spec.contender),
        })
    }

    /// Reads the child's output until it exits: `READY` calls `on_ready`,
    /// `RESULT` is the measurement.
    fn finish(mut self, mut on_ready: impl FnMut()) -> Result<Measured> {
        let mut result = None;
        let mut line = String::new();
        loop {
            line.clear();
            if self.stdout.read_line(&mut line)? == 0 {
                break;
            }
            let text = line.trim_end();
            if text == "READY" {
                on_ready();
            } else if let Some(json) = text.strip_prefix("RESULT ") {
                result = Some(serde_json::from_str::<Measured>(json).context("child result")?);
            }
        }
        let status = self.child.wait()?;
        let stderr = self.stderr.join().unwrap_or_default();
        match result {
            Some(measured) if status.success() => Ok(measured),
            _ => {
                let tail: Vec<&str> = stderr.lines().rev().take(15).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                bail!(
                    "child for {} exited with {status}:\n{}",
                    self.what,
                    tail.join("\n")
                )
            }
        }
    }
}
