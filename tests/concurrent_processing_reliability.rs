//! Concurrent processing under crashes and group changes.
//!
//! - **Crash:** a child process (this test binary again, in the child role)
//!   processes a 6-partition topic with `Consumer::process` in key order,
//!   logging each handler's start (`S`) and end (`D`) with the time, one
//!   `write` per line. The parent SIGKILLs it three times and starts it
//!   again; the fourth child runs until every message is done. Checked: every
//!   message done at least once; what a restarted child handles again is no
//!   more than what the killed children had in flight or finished within a
//!   commit interval (plus a margin for the commit's round trip) of their
//!   kill; within one child, each key's messages started in offset order,
//!   one at a time.
//! - **Churn:** three members of one group join one after another and leave
//!   one after another (gracefully) while the topic is processed. Checked:
//!   every message done at least once, key order within each member's run,
//!   and on Apache Kafka no message done twice (each revocation commits
//!   what is done); the mock refuses commits during rebalances, so there
//!   the duplicates are reported only.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use kafka_test_env::TestRecord;
use tiered_kafka::api::{AutoOffsetReset, BytesSerde, ConsumerConfig, Message};
use tiered_kafka::fast::{BoxError, Consumer, ProcessOptions, ProcessingOrder};
use tokio::sync::Notify;

use common::{consumer_config, env, produced_coordinates};

const MESSAGES: usize = 20_000;
const PARTITIONS: i32 = 6;
const KEYS: usize = 400;
const KILLS: usize = 3;
const MAX_IN_FLIGHT: usize = 100;
const COMMIT_INTERVAL: Duration = Duration::from_millis(200);
/// Beyond the commit interval: the commit's round trip to the broker.
const COMMIT_MARGIN: Duration = Duration::from_millis(500);
const RUN_DEADLINE: Duration = Duration::from_secs(120);
/// Set in the child's environment: `bootstrap|topic|group|log`.
const CHILD_ROLE: &str = "TIERED_KAFKA_PROCESS_CRASH_CHILD";
const TEST_NAME: &str = "a_killed_processor_loses_nothing_and_repeats_only_its_unfinished_work";

fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_millis()
}

fn records() -> impl Iterator<Item = TestRecord> {
    (0..MESSAGES).map(|i| TestRecord::new(format!("key-{}", i % KEYS), format!("{i}")))
}

/// A pseudo-random 0-2 ms of work per message.
fn work_for(partition: i32, offset: i64) -> Duration {
    let mixed = (offset as u64 ^ ((partition as u64) << 32)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    Duration::from_micros((mixed >> 40) % 2_001)
}

/// One handler event from a log: `S`tart or `D`one of `(partition, offset)`
/// with its key, at a time in ms.
#[derive(Debug, Clone)]
struct Event {
    start: bool,
    at_ms: u128,
    partition: i32,
    offset: i64,
    key: String,
}

fn parse_log(text: &str) -> Vec<Event> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            let [kind @ ("S" | "D"), at, partition, offset, key] = fields[..] else {
                return None;
            };
            Some(Event {
                start: kind == "S",
                at_ms: at.parse().ok()?,
                partition: partition.parse().ok()?,
                offset: offset.parse().ok()?,
                key: key.to_owned(),
            })
        })
        .collect()
}

/// Per key (and partition): starts in offset order, each after the one
/// before was done. Returns the violations.
fn order_violations(events: &[Event]) -> Vec<String> {
    let mut groups: HashMap<(i32, &str), (bool, i64)> = HashMap::new();
    let mut violations = Vec::new();
    for event in events {
        let state = groups
            .entry((event.partition, event.key.as_str()))
            .or_insert((false, -1));
        if event.start {
            if state.0 {
                violations.push(format!(
                    "{}@{} started while its key was busy",
                    event.partition, event.offset
                ));
            }
            if event.offset <= state.1 {
                violations.push(format!(
                    "{}@{} started after offset {} of its key",
                    event.partition, event.offset, state.1
                ));
            }
            *state = (true, event.offset);
        } else {
            state.0 = false;
        }
    }
    violations
}

/// The most messages a log shows being handled at once.
fn most_at_once(events: &[Event]) -> usize {
    let (mut now, mut most) = (0_usize, 0);
    for event in events {
        if event.start {
            now += 1;
            most = most.max(now);
        } else {
            now = now.saturating_sub(1);
        }
    }
    most
}

fn done(events: &[Event]) -> HashSet<(i32, i64)> {
    events
        .iter()
        .filter(|e| !e.start)
        .map(|e| (e.partition, e.offset))
        .collect()
}

/// What [`logging_handler`] returns for each message.
type HandlerFuture =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), BoxError>> + Send>>;

/// The handler every member and child runs: logs its start and end, works
/// 0-2 ms.
fn logging_handler(
    log: Arc<Mutex<File>>,
    on_done: Arc<dyn Fn(i32, i64) + Send + Sync>,
) -> impl Fn(Message<Vec<u8>, Vec<u8>>) -> HandlerFuture + Send + Sync + 'static {
    move |message| {
        let log = Arc::clone(&log);
        let on_done = Arc::clone(&on_done);
        Box::pin(async move {
            let key =
                String::from_utf8_lossy(message.key.as_deref().unwrap_or_default()).into_owned();
            let line = |kind: &str| {
                format!(
                    "{kind} {} {} {} {key}\n",
                    now_ms(),
                    message.partition,
                    message.offset
                )
            };
            // One write per line: a kill never loses a line written.
            log.lock().expect("log").write_all(line("S").as_bytes())?;
            tokio::time::sleep(work_for(message.partition, message.offset)).await;
            log.lock().expect("log").write_all(line("D").as_bytes())?;
            on_done(message.partition, message.offset);
            Ok(())
        })
    }
}

#[test]
fn a_killed_processor_loses_nothing_and_repeats_only_its_unfinished_work() {
    if let Ok(role) = std::env::var(CHILD_ROLE) {
        child(&role);
    }
    let env = env();
    let seed = fastrand::u64(..);
    println!("random seed {seed}");
    let mut random = fastrand::Rng::with_seed(seed);
    let topic = env.unique_topic("process-crash");
    env.create_topic(&topic, PARTITIONS).expect("topic");
    let produced = produced_coordinates(&env.produce(&topic, records()).expect("produce"));
    let group = env.unique_group("process-crash");
    let mut logs = tempfile::Builder::new()
        .prefix("process-crash-")
        .tempdir()
        .expect("a directory for the child logs");
    logs.disable_cleanup(true);
    let mut done_so_far: HashSet<(i32, i64)> = HashSet::new();
    // When each message was first done, in ms before its run's kill.
    let mut done_before_kill: HashMap<(i32, i64), u128> = HashMap::new();
    // What the killed children may have left uncommitted: started and not
    // done at the kill, or done within a commit interval (and margin) of it.
    let mut may_repeat = 0;
    let mut repeated = 0;
    let mut report = Vec::new();
    for run in 0..=KILLS {
        let log_path = logs.path().join(format!("run-{run}.log"));
        let spec = format!(
            "{}|{topic}|{group}|{}",
            env.bootstrap_servers(),
            log_path.display()
        );
        let output =
            File::create(logs.path().join(format!("run-{run}.out"))).expect("child output");
        let mut child = Command::new(std::env::current_exe().expect("this test binary"))
            .args(["--exact", TEST_NAME, "--nocapture", "--test-threads=1"])
            .env(CHILD_ROLE, spec)
            .stdin(Stdio::null())
            .stdout(output.try_clone().expect("child output"))
            .stderr(output)
            .spawn()
            .expect("start the child");
        let remaining = produced.len() - done_so_far.len();
        let target = if run < KILLS {
            (remaining * random.usize(100..=400) / 1000).max(1)
        } else {
            remaining
        };
        let deadline = Instant::now() + RUN_DEADLINE;
        let events = loop {
            let events = parse_log(&std::fs::read_to_string(&log_path).unwrap_or_default());
            let fresh = done(&events).difference(&done_so_far).count();
            if fresh >= target {
                break events;
            }
            check_alive(&mut child, &log_path, deadline, fresh);
            std::thread::sleep(Duration::from_millis(5));
        };
        // SIGKILL: no last commit, no leaving the group.
        let killed_at = now_ms();
        child.kill().expect("kill the child");
        child.wait().expect("reap the child");
        let events = {
            // Lines written between the last look and the kill count too.
            let all = parse_log(&std::fs::read_to_string(&log_path).unwrap_or_default());
            if all.len() >= events.len() {
                all
            } else {
                events
            }
        };
        let violations = order_violations(&events);
        assert!(
            violations.is_empty(),
            "run {run}: key order broken: {:?}",
            &violations[..violations.len().min(5)]
        );
        let run_done = done(&events);
        let again = run_done.intersection(&done_so_far).count();
        // How long before their kill the messages done again had been done:
        // what the last commit had not yet covered.
        let oldest_repeat = run_done
            .iter()
            .filter_map(|c| done_before_kill.get(c))
            .max()
            .copied()
            .unwrap_or(0);
        for event in events.iter().filter(|e| !e.start) {
            done_before_kill
                .entry((event.partition, event.offset))
                .or_insert_with(|| killed_at.saturating_sub(event.at_ms));
        }
        let started: HashSet<(i32, i64)> = events
            .iter()
            .filter(|e| e.start)
            .map(|e| (e.partition, e.offset))
            .collect();
        let unfinished = started.difference(&run_done).count();
        let window = (COMMIT_INTERVAL + COMMIT_MARGIN).as_millis();
        let recent = events
            .iter()
            .filter(|e| !e.start && killed_at.saturating_sub(e.at_ms) <= window)
            .count();
        repeated += again;
        assert!(
            repeated <= may_repeat,
            "runs up to {run} handled {repeated} done messages again, more than the {may_repeat} the killed runs had unfinished or finished within {window} ms of their kill (logs in {})",
            logs.path().display()
        );
        may_repeat += unfinished + recent;
        report.push(format!(
            "run {run}: {} done ({} at most at once), {again} again (done up to {oldest_repeat} ms before their kill), {unfinished} unfinished and {recent} recently done at the kill",
            run_done.len(),
            most_at_once(&events)
        ));
        done_so_far.extend(run_done);
    }
    let missing: BTreeSet<_> = produced
        .iter()
        .filter(|c| !done_so_far.contains(c))
        .collect();
    assert!(
        missing.is_empty(),
        "{} messages never done, e.g. {:?}",
        missing.len(),
        missing.iter().take(5).collect::<Vec<_>>()
    );
    println!(
        "{MESSAGES} messages, all done across {} runs ({KILLS} killed); {repeated} done again\n  {}",
        KILLS + 1,
        report.join("\n  ")
    );
    std::fs::remove_dir_all(logs.path()).expect("remove the child logs");
}

fn check_alive(child: &mut Child, log_path: &Path, deadline: Instant, fresh: usize) {
    let output = || {
        let text = std::fs::read_to_string(log_path.with_extension("out")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    };
    if let Some(status) = child.try_wait().expect("child status") {
        panic!(
            "the child exited ({status}) after {fresh} new messages:\n{}",
            output()
        );
    }
    if Instant::now() > deadline {
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "the child did only {fresh} new messages within {RUN_DEADLINE:?}:\n{}",
            output()
        );
    }
}

/// The child role: process in key order, logging, until killed.
fn child(role: &str) -> ! {
    let fields: Vec<&str> = role.split('|').collect();
    let [bootstrap, topic, group, log_path] = fields[..] else {
        panic!("bad {CHILD_ROLE}: {role:?}");
    };
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
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_path)
        .expect("the child log");
    let runtime = common::runtime();
    let outcome = runtime.block_on(async {
        let consumer =
            Arc::new(Consumer::with_config(config, BytesSerde, BytesSerde).expect("consumer"));
        consumer.subscribe(&[topic]).expect("subscribe");
        let options = ProcessOptions::new(ProcessingOrder::Key)
            .max_in_flight(MAX_IN_FLIGHT)
            .commit_interval(COMMIT_INTERVAL);
        consumer
            .process(
                options,
                logging_handler(Arc::new(Mutex::new(log)), Arc::new(|_, _| {})),
            )
            .await
    });
    panic!("processing ended: {outcome:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_joining_and_leaving_lose_nothing_and_keep_key_order() {
    let env = env();
    let topic = env.unique_topic("process-churn");
    env.create_topic(&topic, PARTITIONS).expect("topic");
    let produced = produced_coordinates(&env.produce(&topic, records()).expect("produce"));
    let group = env.unique_group("process-churn");
    let logs = tempfile::tempdir().expect("a directory for the logs");
    let done_anywhere: Arc<Mutex<HashSet<(i32, i64)>>> = Arc::default();
    let everything_done = Arc::new(Notify::new());

    /// A running member: its stop signal and its task.
    struct Member {
        stop: Arc<Notify>,
        task: tokio::task::JoinHandle<Result<(), tiered_kafka::fast::ProcessError>>,
    }
    let start_member = |name: usize| {
        let mut config = consumer_config(&env, &group);
        config.session_timeout_ms = Some(10_000);
        let consumer =
            Arc::new(Consumer::with_config(config, BytesSerde, BytesSerde).expect("consumer"));
        consumer.subscribe(&[&topic]).expect("subscribe");
        let log = File::create(logs.path().join(format!("member-{name}.log"))).expect("log");
        let done_anywhere = Arc::clone(&done_anywhere);
        let everything_done = Arc::clone(&everything_done);
        let total = produced.len();
        let on_done: Arc<dyn Fn(i32, i64) + Send + Sync> = Arc::new(move |partition, offset| {
            let mut done = done_anywhere.lock().expect("done");
            done.insert((partition, offset));
            if done.len() == total {
                everything_done.notify_waiters();
            }
        });
        let stop = Arc::new(Notify::new());
        let stopped = Arc::clone(&stop);
        let options = ProcessOptions::new(ProcessingOrder::Key)
            .max_in_flight(MAX_IN_FLIGHT)
            .commit_interval(COMMIT_INTERVAL)
            .revocation_timeout(Duration::from_secs(5));
        let task = tokio::spawn(async move {
            consumer
                .processor(options)
                .run_until(
                    logging_handler(Arc::new(Mutex::new(log)), on_done),
                    async move {
                        stopped.notified().await;
                    },
                )
                .await
        });
        Member { stop, task }
    };
    let progress = |share: usize| {
        let done_anywhere = Arc::clone(&done_anywhere);
        let wanted = produced.len() * share / 100;
        async move {
            let deadline = Instant::now() + RUN_DEADLINE;
            while done_anywhere.lock().expect("done").len() < wanted {
                assert!(
                    Instant::now() < deadline,
                    "no progress to {wanted} messages"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    let first = start_member(0);
    progress(10).await;
    let second = start_member(1);
    progress(25).await;
    let third = start_member(2);
    progress(45).await;
    for (member, share) in [(first, 65), (second, 80)] {
        member.stop.notify_one();
        member
            .task
            .await
            .expect("member task")
            .expect("member processing");
        progress(share).await;
    }
    let all = everything_done.notified();
    if done_anywhere.lock().expect("done").len() < produced.len() {
        tokio::time::timeout(RUN_DEADLINE, all)
            .await
            .expect("every message done in time");
    }
    third.stop.notify_one();
    third
        .task
        .await
        .expect("member task")
        .expect("member processing");

    let mut done_count = BTreeMap::new();
    for name in 0..3 {
        let events = parse_log(
            &std::fs::read_to_string(logs.path().join(format!("member-{name}.log"))).expect("log"),
        );
        let violations = order_violations(&events);
        assert!(
            violations.is_empty(),
            "member {name}: key order broken: {:?}",
            &violations[..violations.len().min(5)]
        );
        for event in events.iter().filter(|e| !e.start) {
            *done_count
                .entry((event.partition, event.offset))
                .or_insert(0_usize) += 1;
        }
    }
    let missing: Vec<_> = produced
        .iter()
        .filter(|c| !done_count.contains_key(c))
        .take(5)
        .collect();
    assert!(missing.is_empty(), "messages never done, e.g. {missing:?}");
    let duplicates: usize = done_count.values().map(|n| n - 1).sum();
    println!("{MESSAGES} messages done by 3 members joining and leaving; {duplicates} done twice");
    if env.kind().is_mock() {
        // The mock refuses the commit on revocation while the group
        // rebalances (REBALANCE_IN_PROGRESS; see reliability_group_churn):
        // the moved partitions' new owners start from the last periodic
        // commit. Only the properties above hold there.
        println!("on the mock, duplicates allowed (commits refused during rebalances)");
    } else {
        // Apache Kafka accepts the commit on revocation, which comes after
        // the revoked partitions' work finished (well within the
        // revocation timeout here), with the messages done out of order
        // in its metadata: nothing is done twice.
        assert_eq!(duplicates, 0, "every revocation commits what is done");
    }
}
