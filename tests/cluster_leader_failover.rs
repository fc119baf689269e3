//! Cluster, leader failover: on the three-node Apache Kafka cluster, the
//! node leading half the partitions of a topic is killed with `SIGKILL`
//! mid-stream, while a steady producer (`acks=all`) writes and every
//! implementation reads. Each consumer goes on from the new leaders: it
//! reads every message, reads again only what it had not committed
//! (nothing, in practice), and the stall is reported and bounded.
//!
//! The four implementations read side by side, each in its own group (none
//! coordinated by the killed node, so that only leadership moves), through
//! the one failure. The stall is measured twice: the longest gap between
//! two messages of the whole stream, and the longest gap within a
//! partition that lost its leader (the failover as the application sees
//! it). Every partition stalls for a while, not only those the killed node
//! led: it follows all of them (replication factor 3 on three nodes), and
//! a record becomes readable only once every in-sync replica has it, so
//! nothing new is readable until the cluster fences the dead node
//! (`broker.session.timeout.ms`, 4 s here) and drops it from the in-sync
//! replicas; the partitions it led also wait for librdkafka to find their
//! new leaders. Needs `KAFKA_TEST_BROKER=cluster`; on the other brokers it
//! says so and returns.

#[path = "common/cluster.rs"]
mod cluster;
mod common;

use std::time::{Duration, Instant};

use cluster::{
    Reader, SteadyProducer, cluster_or_say_why, group_coordinated, ms, name, wait_until,
};
use common::{Implementation, env};

const PARTITIONS: usize = 4;
/// Records a second from the steady producer.
const RATE: u64 = 1_000;
/// Each consumer commits after this many messages.
const COMMIT_EVERY: usize = 500;
/// How long the node stays down once every consumer has read on.
const DOWN_AFTER_RECOVERY: Duration = Duration::from_secs(2);
/// The bound on either stall; about 5 s is expected.
const MAX_STALL: Duration = Duration::from_secs(30);
/// The cluster fences a dead node after this long
/// (`broker.session.timeout.ms`): what a consumer reads of a partition
/// after it comes from the partition's new leader.
const FENCED_AFTER: Duration = Duration::from_secs(4);
/// Patience for each wait on the consumers.
const PATIENCE: Duration = Duration::from_secs(90);

#[test]
fn every_implementation_reads_on_from_the_new_leaders_when_a_leader_is_killed() {
    let env = env();
    let Some(cluster) = cluster_or_say_why(&env) else {
        return;
    };
    let healthy_in = cluster
        .wait_healthy(&[], Duration::from_secs(120))
        .expect("a healthy cluster to start with");
    let nodes = cluster.nodes();
    let victim = nodes[0];
    let (a, b) = (nodes[1], nodes[2]);
    // The victim leads partitions 0 and 1; a and b one each.
    let replicas: [&[i32]; PARTITIONS] = [
        &[victim, a, b],
        &[victim, b, a],
        &[a, victim, b],
        &[b, a, victim],
    ];
    let topic = env.unique_topic("cluster-leader");
    cluster
        .create_topic_with_replicas(&topic, &replicas, Duration::from_secs(60))
        .expect("topic");
    let leaders = cluster.leaders(&topic).expect("leaders");
    let victim_partitions: Vec<i32> = leaders
        .iter()
        .filter(|&(_, &leader)| leader == victim)
        .map(|(&partition, _)| partition)
        .collect();
    assert_eq!(
        victim_partitions.len(),
        PARTITIONS / 2,
        "node {victim} leads half the partitions: {leaders:?}"
    );
    println!(
        "cluster healthy after {healthy_in:?}; topic {topic} leaders {leaders:?}; killing node {victim}"
    );

    let started = Instant::now();
    let readers: Vec<Reader> = Implementation::ALL
        .iter()
        .map(|&implementation| {
            let group = group_coordinated(&env, &cluster, "cluster-leader", victim, false);
            Reader::start(&env, implementation, &group, &topic, COMMIT_EVERY)
        })
        .collect();
    let producer = SteadyProducer::start(&env, &topic, RATE);
    // Mid-stream: every consumer reads every partition and has committed.
    assert!(
        wait_until(PATIENCE, || readers.iter().all(|reader| {
            let log = reader.log();
            log.position.len() == PARTITIONS && !log.commits_ok_after(started).is_empty()
        })),
        "the consumers did not all read every partition and commit within {PATIENCE:?}"
    );

    let killed_at = Instant::now();
    let outage = cluster.kill(victim).expect("kill the leader");
    let killed_in = killed_at.elapsed();
    // Every consumer reads every partition again, from the new leaders.
    let recovered = wait_until(PATIENCE, || {
        readers.iter().all(|reader| {
            let log = reader.log();
            (0..PARTITIONS as i32)
                .all(|p| log.first_read_after(p, killed_at + FENCED_AFTER).is_some())
        })
    });
    let recovered_in = killed_at.elapsed();
    let new_leaders = cluster.leaders(&topic).expect("leaders after the kill");
    std::thread::sleep(DOWN_AFTER_RECOVERY);
    let restart_took = outage.restart().expect("restart the killed node");
    let produced = producer.finish();
    let producer_stall = produced.longest_gap(killed_at);
    let all_read = wait_until(PATIENCE, || {
        readers.iter().all(|reader| {
            let log = reader.log();
            log.missing(&produced.keys) == 0
        })
    });
    let logs: Vec<_> = readers
        .into_iter()
        .map(|reader| (reader.implementation, reader.finish()))
        .collect();
    let healthy_again = cluster
        .wait_healthy(&[&topic], Duration::from_secs(120))
        .expect("the cluster healthy again");
    println!(
        "node {victim} killed (gone in {killed_in:?}); every consumer read every partition again after {recovered_in:?}; leaders then {new_leaders:?}; restarted and live in {restart_took:?}, healthy (in sync) {healthy_again:?} later; {} records produced ({} delivered at an unknown offset: a retry already written), the producer's longest gap between deliveries {} ms",
        produced.keys.len(),
        produced.offset_unknown,
        ms(producer_stall)
    );

    let mut failures = Vec::new();
    for (implementation, log) in &logs {
        let name = name(*implementation);
        let (stall, stall_at) = log.longest_gap(killed_at, None);
        let partition_gaps: Vec<(Duration, Option<Instant>)> = victim_partitions
            .iter()
            .map(|&p| log.longest_partition_gap(p, killed_at, None))
            .collect();
        let partition_stall = partition_gaps
            .iter()
            .map(|&(gap, _)| gap)
            .max()
            .unwrap_or_default();
        // When each failed-over partition's reads resumed: the end of its
        // longest gap, counted from the kill.
        let resumed_after: Vec<u128> = partition_gaps
            .iter()
            .map(|&(gap, start)| start.map_or(u128::MAX, |start| ms(start + gap - killed_at)))
            .collect();
        let missing = log.missing(&produced.keys);
        let failed_commits = log
            .commits
            .iter()
            .filter(|commit| commit.at > killed_at && commit.outcome.is_err())
            .count();
        println!(
            "{name}: read {} messages ({} distinct) of {}; missing {missing}; duplicates {} (uncommitted window at most {}, below a commit {}); stall of the stream {} ms (from {:?} after the kill), of a failed-over partition {} ms; reads of the failed-over partitions resumed {resumed_after:?} ms after the kill; {} errors on the stream (first {:?}); {failed_commits} failed commits after the kill",
            log.reads.len(),
            log.distinct().len(),
            produced.keys.len(),
            log.duplicates,
            log.max_window,
            log.below_commit.len(),
            ms(stall),
            stall_at.map(|at| at.saturating_duration_since(killed_at)),
            ms(partition_stall),
            log.errors.len(),
            log.errors.first().map(|(_, error)| error),
        );
        if log.ended {
            failures.push(format!("{name}: the stream ended"));
        }
        if missing > 0 {
            failures.push(format!(
                "{name}: {missing} of {} messages never read",
                produced.keys.len()
            ));
        }
        if !log.below_commit.is_empty() {
            failures.push(format!(
                "{name}: read again below a successful commit: {:?}",
                &log.below_commit[..log.below_commit.len().min(5)]
            ));
        }
        if log.duplicates > log.max_window {
            failures.push(format!(
                "{name}: {} duplicates, more than its largest uncommitted window {}",
                log.duplicates, log.max_window
            ));
        }
        if stall > MAX_STALL || partition_stall > MAX_STALL {
            failures.push(format!(
                "{name}: stalled {} ms (stream) / {} ms (failed-over partition), over {MAX_STALL:?}",
                ms(stall),
                ms(partition_stall)
            ));
        }
    }
    assert!(
        recovered,
        "not every consumer read on within {PATIENCE:?} of the kill"
    );
    assert!(
        all_read,
        "not every consumer read everything within {PATIENCE:?}"
    );
    assert!(failures.is_empty(), "{failures:#?}");
}
