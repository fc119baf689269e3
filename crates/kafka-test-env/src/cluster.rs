//! The three-node Apache Kafka cluster of `cargo xtask kafka start --nodes 3`
//! (`KAFKA_TEST_BROKER=cluster`), and control over its nodes:
//! [`KafkaCluster`].
//!
//! Contract with `xtask`: `<target dir>/kafka-cluster/cluster.json`
//! describes the nodes: id, address, pid file, log, `server.properties`,
//! and the command line that starts a node in its directory (see
//! `xtask/src/kafka/cluster.rs`). A node is restarted by running that
//! command again in a process group of its own, its output appended to its
//! log and its pid written to its pid file, so that `cargo xtask kafka stop`
//! finds it.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::admin::TopicReplication;
use rdkafka::metadata::Metadata;

use crate::{KafkaTestEnv, TestEnvError, local};

/// The topic holding the groups' commits; its partition leaders are the
/// group coordinators.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

/// How long a node may take to stop gracefully before it is killed.
const GRACEFUL_STOP_PATIENCE: Duration = Duration::from_secs(60);
/// How long a node may take to die after `SIGKILL`.
const KILL_PATIENCE: Duration = Duration::from_secs(10);
/// How long a restarted node may take to be registered again.
const RESTART_PATIENCE: Duration = Duration::from_secs(120);
/// Timeout of one metadata request.
const METADATA_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause between two looks at the cluster in a wait.
const POLL_PAUSE: Duration = Duration::from_millis(200);

/// One node as `cluster.json` describes it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub(crate) struct NodeSpec {
    id: i32,
    address: String,
    dir: PathBuf,
    pid_file: PathBuf,
    log: PathBuf,
    server_properties: PathBuf,
    command: Vec<String>,
}

/// `cluster.json`, as far as the tests need it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub(crate) struct ClusterSpec {
    pub(crate) bootstrap: String,
    replication_factor: i32,
    min_insync_replicas: i32,
    nodes: Vec<NodeSpec>,
}

impl ClusterSpec {
    /// The replication factor of new topics.
    pub(crate) fn replication_factor(&self) -> i32 {
        self.replication_factor
    }
}

/// Where `cargo xtask kafka start --nodes 3` describes the cluster.
pub(crate) fn cluster_file() -> PathBuf {
    let bootstrap = local::bootstrap_file();
    let target = bootstrap
        .parent()
        .and_then(Path::parent)
        .unwrap_or(Path::new("target"));
    target.join("kafka-cluster").join("cluster.json")
}

/// Reads `cluster.json` and checks that some node accepts connections.
pub(crate) fn discover() -> Result<ClusterSpec, TestEnvError> {
    let path = cluster_file();
    let not_running = |detail: String| TestEnvError::ClusterNotRunning { detail };
    let text = std::fs::read_to_string(&path)
        .map_err(|error| not_running(format!("cannot read {}: {error}", path.display())))?;
    let spec: ClusterSpec = serde_json::from_str(&text)
        .map_err(|error| not_running(format!("{} does not read: {error}", path.display())))?;
    if spec.nodes.is_empty() {
        return Err(not_running(format!("{} lists no node", path.display())));
    }
    let answering = spec
        .nodes
        .iter()
        .any(|node| local::probe(&node.address).is_ok());
    if !answering {
        return Err(not_running(format!(
            "{} names {}, but no node accepts connections",
            path.display(),
            spec.bootstrap
        )));
    }
    Ok(spec)
}

/// Kafka's `Utils.abs(group.hashCode()) % partitions`: the partition of
/// `__consumer_offsets` whose leader coordinates `group`.
///
/// # Examples
///
/// ```
/// // Java: "my-group".hashCode() == -1_906_497_762
/// assert_eq!(kafka_test_env::offsets_partition("my-group", 50), 1_906_497_762 % 50);
/// ```
pub fn offsets_partition(group: &str, partitions: i32) -> i32 {
    // Java's String.hashCode, over UTF-16 code units.
    let hash = group.encode_utf16().fold(0i32, |hash, unit| {
        hash.wrapping_mul(31).wrapping_add(i32::from(unit))
    });
    // Kafka's Utils.abs maps i32::MIN to 0.
    let abs = if hash == i32::MIN { 0 } else { hash.abs() };
    abs % partitions.max(1)
}

/// The cluster behind a [`KafkaTestEnv`] with `KAFKA_TEST_BROKER=cluster`,
/// from [`KafkaTestEnv::cluster`]: its nodes, who leads what, and outages
/// of one node at a time.
///
/// Every node is a broker and a KRaft controller. Topics created through the
/// env ([`KafkaTestEnv::create_topic`]) have replication factor 3 on it;
/// `min.insync.replicas` is 2, so `acks=all` producers go on with one node
/// away. An outage disturbs every test using the cluster: the cluster tests
/// run one scenario per test binary.
pub struct KafkaCluster<'env> {
    env: &'env KafkaTestEnv,
    spec: &'env ClusterSpec,
}

impl std::fmt::Debug for KafkaCluster<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaCluster")
            .field("bootstrap", &self.spec.bootstrap)
            .field("nodes", &self.nodes())
            .finish()
    }
}

impl<'env> KafkaCluster<'env> {
    pub(crate) fn new(env: &'env KafkaTestEnv, spec: &'env ClusterSpec) -> Self {
        KafkaCluster { env, spec }
    }

    /// The node ids, in order (`[1, 2, 3]`).
    pub fn nodes(&self) -> Vec<i32> {
        self.spec.nodes.iter().map(|node| node.id).collect()
    }

    /// The replication factor of new topics (3).
    pub fn replication_factor(&self) -> i32 {
        self.spec.replication_factor
    }

    /// The cluster's `min.insync.replicas` (2).
    pub fn min_insync_replicas(&self) -> i32 {
        self.spec.min_insync_replicas
    }

    /// Creates `topic` with one partition per entry of `replicas`, each
    /// with those replicas in that order (the first is the preferred
    /// leader, and the leader while it is up), and waits until every
    /// partition has a leader and all its replicas in sync.
    ///
    /// # Errors
    ///
    /// As [`KafkaTestEnv::create_topic`], and
    /// [`TestEnvError::ClusterNotHealthy`] when the replicas do not get in
    /// sync within `timeout`.
    pub fn create_topic_with_replicas(
        &self,
        topic: &str,
        replicas: &[&[i32]],
        timeout: Duration,
    ) -> Result<(), TestEnvError> {
        let partitions = i32::try_from(replicas.len()).unwrap_or(i32::MAX);
        self.env.create_topic_replicated(
            topic,
            partitions,
            TopicReplication::Variable(replicas),
        )?;
        self.wait_healthy(&[topic], timeout)?;
        Ok(())
    }

    /// The leader of each partition of `topic`, by partition (`-1` for a
    /// partition without one), as the metadata says now.
    ///
    /// # Errors
    ///
    /// [`TestEnvError::ClusterNotHealthy`] when no metadata comes back, or
    /// the topic is not in it.
    pub fn leaders(&self, topic: &str) -> Result<BTreeMap<i32, i32>, TestEnvError> {
        let metadata = self.metadata(topic)?;
        let found = metadata
            .topics()
            .iter()
            .find(|t| t.name() == topic && t.error().is_none())
            .ok_or_else(|| TestEnvError::ClusterNotHealthy {
                waited: Duration::ZERO,
                last_seen: format!("topic {topic:?} is not in the metadata"),
            })?;
        Ok(found
            .partitions()
            .iter()
            .map(|partition| (partition.id(), partition.leader()))
            .collect())
    }

    /// The leader of `topic`'s `partition`.
    ///
    /// # Errors
    ///
    /// As [`leaders`](Self::leaders), and when the partition has no leader.
    pub fn leader(&self, topic: &str, partition: i32) -> Result<i32, TestEnvError> {
        match self.leaders(topic)?.get(&partition) {
            Some(&leader) if leader >= 0 => Ok(leader),
            other => Err(TestEnvError::ClusterNotHealthy {
                waited: Duration::ZERO,
                last_seen: format!("{topic}/{partition} has no leader ({other:?})"),
            }),
        }
    }

    /// The node coordinating consumer group `group`: the leader of its
    /// partition of `__consumer_offsets` ([`offsets_partition`]). The
    /// offsets topic exists once the cluster is ready.
    ///
    /// # Errors
    ///
    /// As [`leader`](Self::leader), for `__consumer_offsets`.
    pub fn group_coordinator(&self, group: &str) -> Result<i32, TestEnvError> {
        let leaders = self.leaders(OFFSETS_TOPIC)?;
        let partitions = i32::try_from(leaders.len()).unwrap_or(i32::MAX);
        self.leader(OFFSETS_TOPIC, offsets_partition(group, partitions))
    }

    /// The node ids the metadata lists as live brokers (registered and not
    /// fenced), sorted.
    ///
    /// # Errors
    ///
    /// [`TestEnvError::ClusterNotHealthy`] when no metadata comes back.
    pub fn live_brokers(&self) -> Result<Vec<i32>, TestEnvError> {
        let metadata = self.metadata(OFFSETS_TOPIC)?;
        let mut ids: Vec<i32> = metadata.brokers().iter().map(|b| b.id()).collect();
        ids.sort_unstable();
        Ok(ids)
    }

    /// Waits until the cluster is healthy: every node is a live broker, and
    /// every partition of `__consumer_offsets` and of each of `topics` has a
    /// leader and all its replicas in sync. Returns how long it waited.
    ///
    /// # Errors
    ///
    /// [`TestEnvError::ClusterNotHealthy`] with what was last seen after
    /// `timeout`.
    pub fn wait_healthy(
        &self,
        topics: &[&str],
        timeout: Duration,
    ) -> Result<Duration, TestEnvError> {
        let started = Instant::now();
        loop {
            let last_seen = match self.health(topics) {
                Ok(None) => return Ok(started.elapsed()),
                Ok(Some(problem)) => problem,
                Err(error) => error.to_string(),
            };
            if started.elapsed() >= timeout {
                return Err(TestEnvError::ClusterNotHealthy {
                    waited: started.elapsed(),
                    last_seen,
                });
            }
            std::thread::sleep(POLL_PAUSE);
        }
    }

    /// `None` when healthy, else what is wrong.
    fn health(&self, topics: &[&str]) -> Result<Option<String>, TestEnvError> {
        let live = self.live_brokers()?;
        let nodes = {
            let mut nodes = self.nodes();
            nodes.sort_unstable();
            nodes
        };
        if live != nodes {
            return Ok(Some(format!("live brokers {live:?}, not {nodes:?}")));
        }
        for topic in std::iter::once(OFFSETS_TOPIC).chain(topics.iter().copied()) {
            let metadata = self.metadata(topic)?;
            let Some(found) = metadata.topics().iter().find(|t| t.name() == topic) else {
                return Ok(Some(format!("topic {topic:?} is not in the metadata")));
            };
            if let Some(error) = found.error() {
                return Ok(Some(format!("topic {topic:?}: {error:?}")));
            }
            if found.partitions().is_empty() {
                return Ok(Some(format!("topic {topic:?} has no partitions yet")));
            }
            for partition in found.partitions() {
                if partition.leader() < 0 || partition.isr().len() < partition.replicas().len() {
                    return Ok(Some(format!(
                        "{topic}/{}: leader {}, replicas {:?}, in sync {:?}",
                        partition.id(),
                        partition.leader(),
                        partition.replicas(),
                        partition.isr()
                    )));
                }
            }
        }
        Ok(None)
    }

    /// Kills node `node` with `SIGKILL`, as in a crash, and waits until its
    /// process is gone. The node starts again, with its data, when the
    /// returned guard is dropped or [`restart`](NodeOutage::restart)ed.
    ///
    /// # Errors
    ///
    /// [`TestEnvError::ClusterNode`] for an unknown node, one not running,
    /// or one that survives the signal.
    pub fn kill(&self, node: i32) -> Result<NodeOutage<'env>, TestEnvError> {
        self.take_down(node, Signal::Kill)
    }

    /// Stops node `node` gracefully (`SIGTERM`: the broker moves its
    /// leaderships away in a controlled shutdown) and waits until its
    /// process is gone (if it takes over a minute, it is killed). The node
    /// starts again, with its data, when the returned guard is dropped or
    /// [`restart`](NodeOutage::restart)ed.
    ///
    /// # Errors
    ///
    /// [`TestEnvError::ClusterNode`] for an unknown node or one not running.
    pub fn stop(&self, node: i32) -> Result<NodeOutage<'env>, TestEnvError> {
        self.take_down(node, Signal::Term)
    }

    fn take_down(&self, node: i32, signal: Signal) -> Result<NodeOutage<'env>, TestEnvError> {
        let operation = signal.operation();
        let spec = self.node(node, operation)?;
        let failed = |detail: String| TestEnvError::ClusterNode {
            node,
            operation,
            detail,
        };
        let pid = running_pid(spec).ok_or_else(|| failed("the node is not running".to_owned()))?;
        let started = Instant::now();
        send_signal(pid, signal.name()).map_err(failed)?;
        let patience = match signal {
            Signal::Term => GRACEFUL_STOP_PATIENCE,
            Signal::Kill => KILL_PATIENCE,
        };
        if !wait_for_exit(pid, patience) {
            if signal == Signal::Kill {
                return Err(failed(format!(
                    "pid {pid} still runs {patience:?} after SIGKILL"
                )));
            }
            tracing::warn!(
                node,
                pid,
                "node did not stop within {patience:?}; killing it"
            );
            send_signal(pid, "-KILL").map_err(failed)?;
            if !wait_for_exit(pid, KILL_PATIENCE) {
                return Err(failed(format!("pid {pid} survived SIGKILL")));
            }
        }
        let took = started.elapsed();
        tracing::info!(node, pid, ?took, "{operation}: node down");
        Ok(NodeOutage {
            spec: spec.clone(),
            admin_env: self.env,
            down_in: took,
            restarted: false,
        })
    }

    fn node(&self, node: i32, operation: &'static str) -> Result<&'env NodeSpec, TestEnvError> {
        let spec: &'env ClusterSpec = self.spec;
        spec.nodes
            .iter()
            .find(|spec| spec.id == node)
            .ok_or_else(|| TestEnvError::ClusterNode {
                node,
                operation,
                detail: format!("no such node; the nodes are {:?}", self.nodes()),
            })
    }

    fn metadata(&self, topic: &str) -> Result<Metadata, TestEnvError> {
        self.env
            .admin()?
            .metadata(Some(topic), METADATA_TIMEOUT)
            .map_err(|error| TestEnvError::ClusterNotHealthy {
                waited: Duration::ZERO,
                last_seen: format!("metadata request failed: {error}"),
            })
    }
}

/// How a node is taken down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Signal {
    Kill,
    Term,
}

impl Signal {
    fn name(self) -> &'static str {
        match self {
            Signal::Kill => "-KILL",
            Signal::Term => "-TERM",
        }
    }

    fn operation(self) -> &'static str {
        match self {
            Signal::Kill => "kill",
            Signal::Term => "stop",
        }
    }
}

/// A node of the cluster taken down by [`KafkaCluster::kill`] or
/// [`KafkaCluster::stop`]: it starts again, with its data, when this guard
/// is dropped (so a failing test never leaves it down) or when
/// [`restart`](Self::restart) is called.
#[must_use = "the node starts again when this value is dropped"]
pub struct NodeOutage<'env> {
    spec: NodeSpec,
    admin_env: &'env KafkaTestEnv,
    down_in: Duration,
    restarted: bool,
}

impl std::fmt::Debug for NodeOutage<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeOutage")
            .field("node", &self.spec.id)
            .field("down_in", &self.down_in)
            .finish_non_exhaustive()
    }
}

impl NodeOutage<'_> {
    /// The node taken down.
    pub fn node(&self) -> i32 {
        self.spec.id
    }

    /// How long taking it down took: from the signal until its process was
    /// gone (a graceful stop's controlled shutdown included).
    pub fn down_in(&self) -> Duration {
        self.down_in
    }

    /// Starts the node again with its data and waits until it is a live
    /// broker again (registered and unfenced; its replicas may still be
    /// catching up: [`KafkaCluster::wait_healthy`] waits for that). Returns
    /// how long that took.
    ///
    /// # Errors
    ///
    /// [`TestEnvError::ClusterNode`] when it cannot be started or is not
    /// back within two minutes.
    pub fn restart(mut self) -> Result<Duration, TestEnvError> {
        self.restarted = true;
        self.start_again()
    }

    fn start_again(&self) -> Result<Duration, TestEnvError> {
        let node = self.spec.id;
        let failed = |detail: String| TestEnvError::ClusterNode {
            node,
            operation: "restart",
            detail,
        };
        let started = Instant::now();
        let Some((program, args)) = self.spec.command.split_first() else {
            return Err(failed("cluster.json has no command line for it".to_owned()));
        };
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.spec.log)
            .map_err(|error| failed(format!("{}: {error}", self.spec.log.display())))?;
        // What this start logs comes after what earlier runs logged.
        let log_start = log
            .metadata()
            .map_err(|error| failed(format!("{}: {error}", self.spec.log.display())))?
            .len();
        let ready_line = format!("[KafkaRaftServer nodeId={node}] Kafka Server started");
        let log_err = log.try_clone().map_err(|error| failed(error.to_string()))?;
        let child = Command::new(program)
            .args(args)
            .current_dir(&self.spec.dir)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .process_group(0)
            .spawn()
            .map_err(|error| failed(format!("spawning {program}: {error}")))?;
        std::fs::write(&self.spec.pid_file, child.id().to_string())
            .map_err(|error| failed(format!("{}: {error}", self.spec.pid_file.display())))?;
        let admin = self.admin_env.admin()?;
        loop {
            // Started (a node restarted within its session is still listed
            // as a broker, and its port accepts connections before it
            // serves), and listed as a live broker.
            let started_up = logged_since(&self.spec.log, log_start, &ready_line);
            let live = started_up
                && admin
                    .metadata(Some(OFFSETS_TOPIC), METADATA_TIMEOUT)
                    .is_ok_and(|metadata| metadata.brokers().iter().any(|b| b.id() == node));
            if live && local::probe(&self.spec.address).is_ok() {
                break;
            }
            if !is_running(child.id()) {
                return Err(failed(format!(
                    "pid {} exited during start-up; see {}",
                    child.id(),
                    self.spec.log.display()
                )));
            }
            if started.elapsed() > RESTART_PATIENCE {
                return Err(failed(format!(
                    "not a live broker {RESTART_PATIENCE:?} after the restart; see {}",
                    self.spec.log.display()
                )));
            }
            std::thread::sleep(POLL_PAUSE);
        }
        let took = started.elapsed();
        tracing::info!(node, pid = child.id(), ?took, "node started again");
        Ok(took)
    }
}

impl Drop for NodeOutage<'_> {
    fn drop(&mut self) {
        if !self.restarted {
            self.restarted = true;
            if let Err(error) = self.start_again() {
                tracing::error!(%error, "cannot restart the node; run `cargo xtask kafka start --nodes 3`");
            }
        }
    }
}

/// Whether the file at `path` holds `line` after its first `start` bytes.
fn logged_since(path: &Path, start: u64, line: &str) -> bool {
    let skip = usize::try_from(start).unwrap_or(usize::MAX);
    std::fs::read(path).is_ok_and(|log| {
        log.get(skip..)
            .is_some_and(|new| String::from_utf8_lossy(new).contains(line))
    })
}

/// The pid of the node's process, when it runs.
fn running_pid(spec: &NodeSpec) -> Option<u32> {
    let pid: u32 = std::fs::read_to_string(&spec.pid_file)
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let props = spec.server_properties.to_string_lossy();
    let mut args = cmdline.split(|&byte| byte == 0);
    let is_node =
        args.clone().any(|arg| arg == b"kafka.Kafka") && args.any(|arg| arg == props.as_bytes());
    (is_node && is_running(pid)).then_some(pid)
}

/// Whether process `pid` still runs. A node this process restarted earlier
/// stays a zombie (state `Z`) until the test process exits: it counts as
/// gone.
fn is_running(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

/// Waits up to `patience` for `pid` to be gone; whether it is.
fn wait_for_exit(pid: u32, patience: Duration) -> bool {
    let deadline = Instant::now() + patience;
    while is_running(pid) {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    true
}

fn send_signal(pid: u32, signal: &str) -> Result<(), String> {
    let status = Command::new("kill")
        .arg(signal)
        .arg(pid.to_string())
        .status()
        .map_err(|error| format!("running kill: {error}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("kill {signal} {pid}: {status}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_partition_follows_javas_string_hash() {
        // Values of Java's "...".hashCode().
        assert_eq!(offsets_partition("", 50), 0);
        assert_eq!(offsets_partition("a", 50), 97 % 50);
        // "my-group".hashCode() == -1906497762 (negative: abs)
        assert_eq!(offsets_partition("my-group", 50), 1_906_497_762 % 50);
        // "consumer-group-1".hashCode() == 147483020
        assert_eq!(offsets_partition("consumer-group-1", 10), 147_483_020 % 10);
        // UTF-16 code units, not bytes: "é".hashCode() == 233
        assert_eq!(offsets_partition("é", 50), 233 % 50);
        assert_eq!(offsets_partition("x", 0), 0);
    }

    #[test]
    fn logged_since_looks_only_past_the_start() {
        let dir = std::env::temp_dir().join(format!("kte-logged-since-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("broker.log");
        std::fs::write(&path, "old: Kafka Server started\nnew: starting\n").expect("write");
        let start = "old: Kafka Server started\n".len() as u64;
        assert!(logged_since(&path, 0, "Kafka Server started"));
        assert!(!logged_since(&path, start, "Kafka Server started"));
        assert!(logged_since(&path, start, "starting"));
        assert!(!logged_since(&path, 10_000, "starting"));
        assert!(!logged_since(&dir.join("missing"), 0, "starting"));
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn cluster_json_from_xtask_reads() {
        let text = r#"{
          "format": 1,
          "kafka_version": "4.4.0",
          "bootstrap": "127.0.0.1:1,127.0.0.1:2,127.0.0.1:3",
          "replication_factor": 3,
          "min_insync_replicas": 2,
          "offsets_topic_partitions": 10,
          "nodes": [
            {"id": 1, "address": "127.0.0.1:1", "controller_address": "127.0.0.1:4",
             "dir": "/t/node-1", "pid_file": "/t/node-1/broker.pid", "log": "/t/node-1/broker.log",
             "server_properties": "/t/node-1/server.properties",
             "command": ["java", "kafka.Kafka", "/t/node-1/server.properties"]}
          ]
        }"#;
        let spec: ClusterSpec = serde_json::from_str(text).expect("reads");
        assert_eq!(spec.nodes[0].id, 1);
        assert_eq!(spec.nodes[0].command[1], "kafka.Kafka");
        assert!(cluster_file().ends_with("kafka-cluster/cluster.json"));
    }
}
