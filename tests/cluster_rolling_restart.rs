//! Cluster, rolling restart: the three nodes of the Apache Kafka cluster are
//! restarted one by one, as for an upgrade (a graceful stop, the node
//! started again with its data, the cluster healthy again: every broker
//! live and every partition fully in sync, then the next node), while a
//! steady producer (`acks=all`) writes and a group of three consumers of
//! each implementation reads. Nothing is lost; duplicates are reported and
//! bounded by the uncommitted windows of the group's members.
//!
//! The four groups (one per implementation, three members each) read the
//! same topic side by side through the one rolling restart. Every node is
//! stopped once, so every group loses its coordinator once and every
//! partition its leader. Needs `KAFKA_TEST_BROKER=cluster`; on the other
//! brokers it says so and returns.

#[path = "common/cluster.rs"]
mod cluster;
mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use cluster::{ReadLog, Reader, SteadyProducer, cluster_or_say_why, ms, name, wait_until};
use common::{Implementation, env};

const PARTITIONS: i32 = 6;
/// Members of each group.
const MEMBERS: usize = 3;
/// Records a second from the steady producer.
const RATE: u64 = 500;
/// Each consumer commits after this many messages.
const COMMIT_EVERY: usize = 500;
/// The bound on the longest gap between two messages of a group; a
/// graceful stop moves leaders before the node goes, so well under a
/// second is expected.
const MAX_STALL: Duration = Duration::from_secs(30);
/// Patience for each wait on the consumers and the cluster.
const PATIENCE: Duration = Duration::from_secs(120);

#[test]
fn a_rolling_restart_of_every_node_loses_nothing_under_a_steady_producer() {
    let env = env();
    let Some(cluster) = cluster_or_say_why(&env) else {
        return;
    };
    cluster
        .wait_healthy(&[], PATIENCE)
        .expect("a healthy cluster to start with");
    let topic = env.unique_topic("cluster-rolling");
    env.create_topic(&topic, PARTITIONS).expect("topic");
    cluster
        .wait_healthy(&[&topic], PATIENCE)
        .expect("topic in sync");
    println!(
        "topic {topic} leaders {:?}",
        cluster.leaders(&topic).expect("leaders")
    );

    let groups: Vec<(Implementation, Vec<Reader>)> = Implementation::ALL
        .iter()
        .map(|&implementation| {
            let group = env.unique_group("cluster-rolling");
            let members = (0..MEMBERS)
                .map(|_| Reader::start(&env, implementation, &group, &topic, COMMIT_EVERY))
                .collect();
            (implementation, members)
        })
        .collect();
    let producer = SteadyProducer::start(&env, &topic, RATE);
    // Every member has partitions and reads.
    assert!(
        wait_until(PATIENCE, || groups
            .iter()
            .flat_map(|(_, members)| members)
            .all(|member| !member.log().reads.is_empty())),
        "not every member of every group read within {PATIENCE:?}"
    );

    let rolling_started = Instant::now();
    let mut steps = Vec::new();
    for node in cluster.nodes() {
        let step_started = Instant::now();
        let outage = cluster.stop(node).expect("stop the node gracefully");
        let down_in = outage.down_in();
        let up_in = outage.restart().expect("restart the node");
        let healthy_in = cluster
            .wait_healthy(&[&topic], PATIENCE)
            .expect("the cluster healthy again");
        steps.push(format!(
            "node {node}: stopped in {} ms, live again in {} ms, in sync {} ms later ({} ms in all)",
            ms(down_in),
            ms(up_in),
            ms(healthy_in),
            ms(step_started.elapsed())
        ));
    }
    let rolling_took = rolling_started.elapsed();
    let produced = producer.finish();
    let producer_stall = produced.longest_gap(rolling_started);
    let all_read = wait_until(PATIENCE, || {
        groups.iter().all(|(_, members)| {
            let logs: Vec<_> = members.iter().map(|member| member.log()).collect();
            produced
                .keys
                .iter()
                .all(|key| logs.iter().any(|log| log.has_key(key)))
        })
    });
    let groups: Vec<(Implementation, Vec<ReadLog>)> = groups
        .into_iter()
        .map(|(implementation, members)| {
            (
                implementation,
                members.into_iter().map(Reader::finish).collect(),
            )
        })
        .collect();
    println!(
        "rolling restart in {rolling_took:?}: {steps:#?}; {} records produced ({} delivered at an unknown offset: a retry already written), the producer's longest gap between deliveries {} ms",
        produced.keys.len(),
        produced.offset_unknown,
        ms(producer_stall)
    );

    let mut failures = Vec::new();
    for (implementation, members) in &groups {
        let name = name(*implementation);
        let mut reads: HashMap<(i32, i64), usize> = HashMap::new();
        for member in members {
            for &(partition, offset, _) in &member.reads {
                *reads.entry((partition, offset)).or_default() += 1;
            }
        }
        let duplicates: usize = reads.values().map(|count| count - 1).sum();
        let windows: usize = members.iter().map(|member| member.max_window).sum();
        let missing = produced
            .keys
            .iter()
            .filter(|key| !members.iter().any(|member| member.has_key(key)))
            .count();
        let mut times: Vec<Instant> = members
            .iter()
            .flat_map(|member| member.reads.iter().map(|&(_, _, at)| at))
            .collect();
        times.sort_unstable();
        let stall = times
            .windows(2)
            .filter(|pair| pair[1] > rolling_started)
            .map(|pair| pair[1].duration_since(pair[0].max(rolling_started)))
            .max()
            .unwrap_or_default();
        let failed_commits: Vec<&String> = members
            .iter()
            .flat_map(|member| &member.commits)
            .filter_map(|commit| commit.outcome.as_ref().err())
            .collect();
        let errors: usize = members.iter().map(|member| member.errors.len()).sum();
        println!(
            "{name}: the group read {} messages ({} distinct) of {}; missing {missing}; duplicates {duplicates} (members' largest uncommitted windows {windows}, read by a member below its own commit {}); longest gap between two messages of the group {} ms; per member {:?} messages; {} failed commits (first {:?}); {errors} errors on the streams",
            reads.values().sum::<usize>(),
            reads.len(),
            produced.keys.len(),
            members
                .iter()
                .map(|member| member.below_commit.len())
                .sum::<usize>(),
            ms(stall),
            members
                .iter()
                .map(|member| member.reads.len())
                .collect::<Vec<_>>(),
            failed_commits.len(),
            failed_commits.first(),
        );
        if members.iter().any(|member| member.ended) {
            failures.push(format!("{name}: a stream ended"));
        }
        if missing > 0 {
            failures.push(format!(
                "{name}: {missing} of {} messages never read",
                produced.keys.len()
            ));
        }
        if duplicates > windows {
            failures.push(format!(
                "{name}: {duplicates} duplicates, more than the members' uncommitted windows ({windows})"
            ));
        }
        if members.iter().any(|member| !member.below_commit.is_empty()) {
            failures.push(format!(
                "{name}: a member read again below its own successful commit"
            ));
        }
        if stall > MAX_STALL {
            failures.push(format!(
                "{name}: the group stalled {} ms, over {MAX_STALL:?}",
                ms(stall)
            ));
        }
    }
    assert!(
        all_read,
        "not every group read everything within {PATIENCE:?}"
    );
    assert!(failures.is_empty(), "{failures:#?}");
}
