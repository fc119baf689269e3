//! Reliability, crash: a consumer process killed with `SIGKILL` at random
//! points loses nothing, and repeats at most what it had processed since its
//! last commit.
//!
//! The test runs a child process (this test binary again, in the child role)
//! that consumes a 6-partition topic of 50,000 messages through the
//! `KafkaStreamConsumer` trait, writes each message's coordinates to a log
//! file as it processes it (one `write` per message, so a kill loses no
//! line), and commits every [`COMMIT_EVERY`] messages, logging each
//! successful commit. The parent kills the child three times, each after a
//! random share of what is left, and starts it again; the fourth child runs
//! until every message has been processed.
//!
//! Checked, from the logs: every produced message was processed at least
//! once; and what the restarted children processed again is no more than
//! the uncommitted windows of the children killed before them (each one's
//! messages after its last successful commit).

mod common;

use std::collections::{BTreeSet, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Implementation, build, env, produced_coordinates};
use futures_util::StreamExt;
use tiered_kafka::api::{AutoOffsetReset, BytesSerde, ConsumerConfig, ConsumerTier};

const MESSAGES: usize = 50_000;
const PARTITIONS: i32 = 6;
/// The child commits after this many messages.
const COMMIT_EVERY: usize = 500;
const KILLS: usize = 3;
/// Each kill comes after the child processed a random share, in this range
/// of per-mille, of the messages no child has processed yet (plus what it
/// reads again), so that every killed child still has work when it dies.
const KILL_AFTER_PER_MILLE: std::ops::RangeInclusive<usize> = 100..=500;
/// Generous: a child needs a group join (up to `session.timeout.ms` while the
/// killed member is still in the group) and reads thousands of messages a
/// second.
const RUN_DEADLINE: Duration = Duration::from_secs(120);
/// Set in the child's environment: `implementation|bootstrap|topic|group|log`.
const CHILD_ROLE: &str = "TIERED_KAFKA_CRASH_CHILD";
/// This test's name, for the child's `--exact` filter.
const TEST_NAME: &str =
    "a_killed_consumer_loses_nothing_and_repeats_at_most_its_uncommitted_window";

#[test]
fn a_killed_consumer_loses_nothing_and_repeats_at_most_its_uncommitted_window() {
    if let Ok(role) = std::env::var(CHILD_ROLE) {
        child(&role);
    }
    let env = env();
    let seed = fastrand::u64(..);
    println!("random seed {seed}");
    let mut random = fastrand::Rng::with_seed(seed);
    for implementation in Implementation::ALL {
        let topic = env.unique_topic("crash");
        env.create_topic(&topic, PARTITIONS).expect("topic");
        let produced = produced_coordinates(
            &env.produce_test_messages(&topic, MESSAGES)
                .expect("produce"),
        );
        let group = env.unique_group("crash");
        // Kept when the test fails (its path is in the failure), for the
        // post-mortem; removed when the implementation passes.
        let mut logs = tempfile::Builder::new()
            .prefix("reliability-crash-")
            .tempdir()
            .expect("a directory for the child logs");
        logs.disable_cleanup(true);
        let started = Instant::now();
        let mut runs: Vec<RunLog> = Vec::new();
        for run in 0..=KILLS {
            let log_path = logs.path().join(format!("run-{run}.log"));
            let spec = format!(
                "{}|{}|{topic}|{group}|{}",
                implementation_name(implementation),
                env.bootstrap_servers(),
                log_path.display()
            );
            let mut child = spawn_child(&spec, logs.path(), run);
            let deadline = Instant::now() + RUN_DEADLINE;
            let seen_before: HashSet<(i32, i64)> = runs
                .iter()
                .flat_map(|r| r.processed.iter().copied())
                .collect();
            let remaining: Vec<_> = produced
                .iter()
                .filter(|c| !seen_before.contains(c))
                .copied()
                .collect();
            if run < KILLS {
                let fresh_before_kill =
                    (remaining.len() * random.usize(KILL_AFTER_PER_MILLE) / 1000).max(1);
                // A fast child may have read everything before its
                // predecessor's kill: then this one dies as it starts.
                let mut fresh = FreshCount::new(&seen_before);
                wait_for(&mut child, &log_path, deadline, |log| {
                    let fresh = fresh.update(log);
                    fresh >= fresh_before_kill || fresh == remaining.len()
                });
            } else {
                let mut fresh = FreshCount::new(&seen_before);
                wait_for(&mut child, &log_path, deadline, |log| {
                    fresh.update(log) == remaining.len()
                });
            }
            // SIGKILL: no drop, no commit, no leaving the group.
            child.kill().expect("kill the child");
            child.wait().expect("reap the child");
            runs.push(RunLog::read(&log_path));
        }

        let mut seen: HashSet<(i32, i64)> = HashSet::new();
        let mut report = Vec::new();
        // A killed child's uncommitted messages are read again by whichever
        // later child gets their partitions first (not always the next one:
        // a child may be killed before the group gave it every partition).
        // So what runs 1..=r repeat together is bounded by the windows of the
        // runs killed before r.
        let (mut repeated_so_far, mut windows_so_far) = (0, 0);
        for (run, log) in runs.iter().enumerate() {
            let repeated = log.processed.iter().filter(|c| seen.contains(c)).count();
            repeated_so_far += repeated;
            assert!(
                repeated_so_far <= windows_so_far,
                "{implementation:?}: runs up to {run} processed {repeated_so_far} messages again, more than the {windows_so_far} the killed runs before it processed after their last commits (logs in {})",
                logs.path().display()
            );
            windows_so_far += log.uncommitted_window();
            report.push(format!(
                "run {run}: {} processed, {} commits, {repeated} again, uncommitted at the kill {}",
                log.processed.len(),
                log.commits,
                log.uncommitted_window()
            ));
            seen.extend(log.processed.iter().copied());
        }
        let missing: BTreeSet<_> = produced.iter().filter(|c| !seen.contains(c)).collect();
        assert!(
            missing.is_empty(),
            "{implementation:?}: {} of {MESSAGES} messages never processed, e.g. {:?}",
            missing.len(),
            missing.iter().take(5).collect::<Vec<_>>()
        );
        let total: usize = runs.iter().map(|r| r.processed.len()).sum();
        println!(
            "{implementation:?}: {MESSAGES} produced, all processed across {} runs ({KILLS} killed) in {:?}; {} duplicates in total\n  {}",
            runs.len(),
            started.elapsed(),
            total - seen.len(),
            report.join("\n  ")
        );
        std::fs::remove_dir_all(logs.path()).expect("remove the child logs");
    }
}

/// What one child wrote: the coordinates it processed, in order, and where
/// its last successful commit came.
struct RunLog {
    processed: Vec<(i32, i64)>,
    commits: usize,
    /// How many of `processed` came before the last successful commit.
    committed_prefix: usize,
    errors: Vec<String>,
}

impl RunLog {
    fn read(path: &Path) -> RunLog {
        let mut tail = LogTail::new(path);
        tail.refresh();
        tail.log
    }

    fn parse(&mut self, line: &str, path: &Path) {
        let mut fields = line.split(' ');
        match fields.next() {
            Some("P") => {
                let partition = fields.next().and_then(|p| p.parse().ok());
                let offset = fields.next().and_then(|o| o.parse().ok());
                let (Some(partition), Some(offset)) = (partition, offset) else {
                    panic!("bad log line {line:?} in {}", path.display());
                };
                self.processed.push((partition, offset));
            }
            Some("C") => {
                self.commits += 1;
                self.committed_prefix = self.processed.len();
            }
            Some("E") => self.errors.push(line.to_owned()),
            _ => panic!("bad log line {line:?} in {}", path.display()),
        }
    }

    /// Messages processed after the last successful commit: what a restart
    /// may process again.
    fn uncommitted_window(&self) -> usize {
        self.processed.len() - self.committed_prefix
    }
}

/// Reads a child's log as it grows, whole lines only (a kill can cut the
/// last one short), so that the parent's checks stay cheap and its kills land
/// where it meant them to.
struct LogTail<'a> {
    path: &'a Path,
    read_bytes: u64,
    log: RunLog,
}

impl<'a> LogTail<'a> {
    fn new(path: &'a Path) -> Self {
        LogTail {
            path,
            read_bytes: 0,
            log: RunLog {
                processed: Vec::new(),
                commits: 0,
                committed_prefix: 0,
                errors: Vec::new(),
            },
        }
    }

    fn refresh(&mut self) -> &RunLog {
        let Ok(mut file) = File::open(self.path) else {
            return &self.log;
        };
        let mut text = String::new();
        file.seek(SeekFrom::Start(self.read_bytes))
            .and_then(|_| file.read_to_string(&mut text))
            .expect("read the child log");
        if let Some((whole, _)) = text.rsplit_once('\n') {
            self.read_bytes += whole.len() as u64 + 1;
            for line in whole.lines() {
                self.log.parse(line, self.path);
            }
        }
        &self.log
    }
}

/// How many distinct messages a child processed that no earlier child had,
/// counted as its log grows.
struct FreshCount<'a> {
    seen_before: &'a HashSet<(i32, i64)>,
    fresh: HashSet<(i32, i64)>,
    checked: usize,
}

impl<'a> FreshCount<'a> {
    fn new(seen_before: &'a HashSet<(i32, i64)>) -> Self {
        FreshCount {
            seen_before,
            fresh: HashSet::new(),
            checked: 0,
        }
    }

    fn update(&mut self, log: &RunLog) -> usize {
        for coordinates in &log.processed[self.checked..] {
            if !self.seen_before.contains(coordinates) {
                self.fresh.insert(*coordinates);
            }
        }
        self.checked = log.processed.len();
        self.fresh.len()
    }
}

/// Starts this test binary in the child role.
fn spawn_child(spec: &str, dir: &Path, run: usize) -> Child {
    let output = File::create(dir.join(format!("run-{run}.out"))).expect("child output file");
    Command::new(std::env::current_exe().expect("this test binary"))
        .args(["--exact", TEST_NAME, "--nocapture", "--test-threads=1"])
        .env(CHILD_ROLE, spec)
        .stdin(Stdio::null())
        .stdout(output.try_clone().expect("child output file"))
        .stderr(output)
        .spawn()
        .expect("start the child")
}

/// Waits until the child's log satisfies `done`, failing (with the child's
/// output) when the child exits or `deadline` passes.
fn wait_for(
    child: &mut Child,
    log_path: &Path,
    deadline: Instant,
    mut done: impl FnMut(&RunLog) -> bool,
) {
    let mut tail = LogTail::new(log_path);
    loop {
        let log = tail.refresh();
        if done(log) {
            return;
        }
        // The end of the child's output: where it stood.
        let output = || {
            let text = std::fs::read_to_string(log_path.with_extension("out")).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(40)..].join("\n")
        };
        if let Some(status) = child.try_wait().expect("child status") {
            panic!(
                "the child exited ({status}) after {} messages:\n{}",
                log.processed.len(),
                output()
            );
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "the child (log {}) processed only {} messages within {RUN_DEADLINE:?} (errors: {:?}):\n{}",
                log_path.display(),
                log.processed.len(),
                log.errors,
                output()
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn implementation_name(implementation: Implementation) -> &'static str {
    match implementation {
        Implementation::Fast(ConsumerTier::Standard) => "standard",
        Implementation::Fast(ConsumerTier::Buffered { .. }) => "buffered",
        Implementation::Fast(ConsumerTier::Dedicated) => "dedicated",
        Implementation::Legacy => "legacy",
    }
}

/// The child role: consume, log, commit, until killed.
fn child(role: &str) -> ! {
    let fields: Vec<&str> = role.split('|').collect();
    let [name, bootstrap, topic, group, log_path] = fields[..] else {
        panic!("bad {CHILD_ROLE}: {role:?}");
    };
    let implementation = Implementation::ALL
        .into_iter()
        .find(|i| implementation_name(*i) == name)
        .unwrap_or_else(|| panic!("unknown implementation {name:?}"));
    // Its logs (when RUST_LOG asks) go to the output the parent shows on failure.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .try_init();
    let mut config = ConsumerConfig::new(bootstrap, group);
    config.auto_offset_reset = Some(AutoOffsetReset::Earliest);
    config.enable_auto_commit = Some(false);
    // Apache Kafka's smallest: the killed member leaves the group soonest.
    config.session_timeout_ms = Some(6_000);
    config.heartbeat_interval_ms = Some(500);
    config
        .extra
        .insert("broker.address.family".into(), "v4".into());
    let mut log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_path)
        .expect("the child log");
    let runtime = common::runtime();
    runtime.block_on(async {
        let consumer = build(implementation, config, BytesSerde, BytesSerde);
        consumer.subscribe(&[topic]).expect("subscribe");
        let mut stream = consumer.stream();
        let mut since_commit = 0;
        while let Some(item) = stream.next().await {
            // One write per line: a kill never loses a processed message's line.
            let line = match item {
                Ok(message) => format!("P {} {}\n", message.partition, message.offset),
                Err(error) => format!("E {}\n", error.to_string().replace('\n', " ")),
            };
            log.write_all(line.as_bytes()).expect("write the child log");
            since_commit += 1;
            if since_commit >= COMMIT_EVERY {
                since_commit = 0;
                match consumer.commit_blocking() {
                    Ok(()) => log.write_all(b"C\n").expect("write the child log"),
                    Err(error) => {
                        let line = format!("E commit: {}\n", error.to_string().replace('\n', " "));
                        log.write_all(line.as_bytes()).expect("write the child log");
                    }
                }
            }
        }
    });
    panic!("the stream ended");
}
