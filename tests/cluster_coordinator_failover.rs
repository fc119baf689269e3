//! Cluster, coordinator failover: on the three-node Apache Kafka cluster,
//! the node coordinating the consumers' groups is killed with `SIGKILL`
//! while each consumer reads under a steady producer (`acks=all`) and
//! commits every 500 messages. The commits fail for a while, then succeed
//! against the new coordinator; a consumer started again in the same group,
//! while the old coordinator is still down, resumes exactly from the
//! committed offsets: nothing is lost, nothing committed is read again.
//!
//! The four implementations read side by side, each in its own group; every
//! group is coordinated by the killed node (its group name is picked so),
//! and the topic's partitions are led by the two other nodes, so that only
//! the coordinator moves. Needs `KAFKA_TEST_BROKER=cluster`; on the other
//! brokers it says so and returns.

#[path = "common/cluster.rs"]
mod cluster;
mod common;

use std::time::{Duration, Instant};

use cluster::{
    Reader, SteadyProducer, cluster_or_say_why, group_coordinated, ms, name, wait_until,
};
use common::{Implementation, env};
use kafka_test_env::TestRecord;

const PARTITIONS: usize = 3;
/// Records a second from the steady producer.
const RATE: u64 = 1_000;
/// Each consumer commits after this many messages.
const COMMIT_EVERY: usize = 500;
/// Records produced for the restarted consumers.
const AFTER_RESTART: usize = 1_000;
/// The bound on the time from the kill to the first successful commit;
/// about 5 s is expected.
const MAX_RECOVERY: Duration = Duration::from_secs(45);
/// Patience for each wait on the consumers.
const PATIENCE: Duration = Duration::from_secs(90);

#[test]
fn commits_resume_against_a_new_coordinator_and_a_restart_loses_nothing() {
    let env = env();
    let Some(cluster) = cluster_or_say_why(&env) else {
        return;
    };
    cluster
        .wait_healthy(&[], Duration::from_secs(120))
        .expect("a healthy cluster to start with");
    let nodes = cluster.nodes();
    let victim = nodes[nodes.len() - 1];
    let (a, b) = (nodes[0], nodes[1]);
    // The victim is a follower of every partition, and leads none.
    let replicas: [&[i32]; PARTITIONS] = [&[a, b, victim], &[b, a, victim], &[a, victim, b]];
    let topic = env.unique_topic("cluster-coordinator");
    cluster
        .create_topic_with_replicas(&topic, &replicas, Duration::from_secs(60))
        .expect("topic");
    let groups: Vec<String> = Implementation::ALL
        .iter()
        .map(|_| group_coordinated(&env, &cluster, "cluster-coordinator", victim, true))
        .collect();
    println!(
        "topic {topic} leaders {:?}; groups {groups:?} coordinated by node {victim}, which will be killed",
        cluster.leaders(&topic).expect("leaders")
    );

    let started = Instant::now();
    let readers: Vec<Reader> = Implementation::ALL
        .iter()
        .zip(&groups)
        .map(|(&implementation, group)| {
            Reader::start(&env, implementation, group, &topic, COMMIT_EVERY)
        })
        .collect();
    let producer = SteadyProducer::start(&env, &topic, RATE);
    assert!(
        wait_until(PATIENCE, || readers.iter().all(|reader| {
            reader.log().commits_ok_after(started).len() >= 2
        })),
        "the consumers did not all commit twice within {PATIENCE:?}"
    );

    let killed_at = Instant::now();
    let outage = cluster.kill(victim).expect("kill the coordinator");
    // Two successful commits after the kill: the second was sent to, and
    // answered by, the new coordinator.
    let resumed = wait_until(PATIENCE, || {
        readers
            .iter()
            .all(|reader| reader.log().commits_ok_after(killed_at).len() >= 2)
    });
    let resumed_in = killed_at.elapsed();
    let new_coordinators: Vec<i32> = groups
        .iter()
        .map(|group| {
            cluster
                .group_coordinator(group)
                .expect("the new coordinator")
        })
        .collect();
    let produced = producer.finish();
    let all_read = wait_until(PATIENCE, || {
        readers.iter().all(|reader| {
            let log = reader.log();
            log.missing(&produced.keys) == 0
        })
    });
    // Each consumer is closed (committing what it handed out), and a new one
    // starts in its group while the old coordinator is still down.
    let first_runs: Vec<_> = readers
        .into_iter()
        .map(|reader| (reader.implementation, reader.group.clone(), reader.finish()))
        .collect();
    let after: Vec<String> = (0..AFTER_RESTART).map(|i| format!("after-{i}")).collect();
    env.produce(
        &topic,
        after
            .iter()
            .map(|key| TestRecord::new(key.as_str(), key.as_str())),
    )
    .expect("produce for the restarted consumers");
    let restarted_at = Instant::now();
    let restarted: Vec<Reader> = first_runs
        .iter()
        .map(|(implementation, group, _)| {
            Reader::start(&env, *implementation, group, &topic, COMMIT_EVERY)
        })
        .collect();
    let restarted_read = wait_until(PATIENCE, || {
        restarted.iter().all(|reader| {
            let log = reader.log();
            log.missing(&after) == 0
        })
    });
    // Whatever the restarted consumers would still read arrives by now.
    std::thread::sleep(Duration::from_secs(1));
    let second_runs: Vec<_> = restarted.into_iter().map(Reader::finish).collect();
    let restart_took = outage.restart().expect("restart the killed node");
    let healthy_again = cluster
        .wait_healthy(&[&topic], Duration::from_secs(120))
        .expect("the cluster healthy again");
    println!(
        "node {victim} killed; every consumer committed twice again after {resumed_in:?}; coordinators then {new_coordinators:?}; {} records before the restart of the consumers, {} after; node {victim} live again in {restart_took:?}, healthy {healthy_again:?} later",
        produced.keys.len(),
        after.len()
    );

    let mut failures = Vec::new();
    for ((implementation, _, first), second) in first_runs.iter().zip(&second_runs) {
        let name = name(*implementation);
        let failed_commits: Vec<&String> = first
            .commits
            .iter()
            .filter(|commit| commit.at > killed_at)
            .filter_map(|commit| commit.outcome.as_ref().err())
            .collect();
        let recovery = first
            .commits_ok_after(killed_at)
            .first()
            .map(|commit| commit.at - killed_at);
        let close_commit = first.commits.last().map(|commit| commit.outcome.clone());
        let missing = first.missing(&produced.keys);
        // What the restarted consumer read again of the first run's messages,
        // and whether any of it was below what the first run committed.
        let again: Vec<(i32, i64)> = second
            .distinct()
            .into_iter()
            .filter(|c| first.has(c))
            .collect();
        let again_below_commit: Vec<&(i32, i64)> = again
            .iter()
            .filter(|(p, o)| {
                first
                    .committed
                    .get(p)
                    .is_some_and(|&committed| *o < committed)
            })
            .collect();
        let missing_after = second.missing(&after);
        let first_read_after_restart = second.reads.first().map(|&(_, _, at)| at - restarted_at);
        println!(
            "{name}: before the kill {} commits; after it {} failed (first {:?}) until the first success {:?} after the kill; the close's commit {close_commit:?}; read {} of {} (missing {missing}, duplicates {}); restarted from the committed offsets {:?}: first message {:?} after the start, read again {} (below a commit {}), missing {missing_after} of {}",
            first
                .commits
                .iter()
                .filter(|commit| commit.at <= killed_at && commit.outcome.is_ok())
                .count(),
            failed_commits.len(),
            failed_commits.first(),
            recovery.map(ms),
            first.distinct().len(),
            produced.keys.len(),
            first.duplicates,
            first.committed,
            first_read_after_restart,
            again.len(),
            again_below_commit.len(),
            after.len(),
        );
        if first.ended || second.ended {
            failures.push(format!("{name}: a stream ended"));
        }
        match recovery {
            Some(recovery) if recovery <= MAX_RECOVERY => {}
            other => failures.push(format!(
                "{name}: no successful commit within {MAX_RECOVERY:?} of the kill ({other:?})"
            )),
        }
        if missing > 0 || missing_after > 0 {
            failures.push(format!(
                "{name}: lost messages: {missing} before the consumer's restart, {missing_after} after"
            ));
        }
        if !first.below_commit.is_empty() || !again_below_commit.is_empty() {
            failures.push(format!(
                "{name}: read again below a successful commit: {:?} {:?}",
                &first.below_commit[..first.below_commit.len().min(5)],
                &again_below_commit[..again_below_commit.len().min(5)]
            ));
        }
        if first.duplicates > first.max_window || again.len() > first.max_window {
            failures.push(format!(
                "{name}: {} duplicates and {} read again after the restart, more than its largest uncommitted window {}",
                first.duplicates,
                again.len(),
                first.max_window
            ));
        }
    }
    assert!(
        resumed,
        "commits did not resume within {PATIENCE:?} of the kill"
    );
    assert!(
        all_read,
        "not every consumer read everything within {PATIENCE:?}"
    );
    assert!(
        restarted_read,
        "not every restarted consumer read the new records within {PATIENCE:?}"
    );
    for coordinator in &new_coordinators {
        assert_ne!(
            *coordinator, victim,
            "the coordinator moved away from the killed node"
        );
    }
    assert!(failures.is_empty(), "{failures:#?}");
}
