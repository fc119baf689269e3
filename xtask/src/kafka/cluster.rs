//! `cargo xtask kafka start|stop|status --nodes 3`: a three-node Apache Kafka
//! cluster on loopback, from the same Maven-resolved jars as the single node
//! ([`crate::kafka`]).
//!
//! Each node is one JVM that is both broker and KRaft controller, so the
//! three form the controller quorum too (a node killed is a broker and a
//! voter gone; two voters of three keep the quorum). Topics are created
//! with replication factor 3 by default, `min.insync.replicas` is 2, and
//! `__consumer_offsets` has [`OFFSETS_PARTITIONS`] partitions, each
//! replicated 3 times: with `acks=all` a record survives one node lost, and
//! producers keep writing while one node is away.
//!
//! Sized for a 2-core machine running the tests beside it: 512 MiB of heap
//! per node, the serial collector, few broker threads, and only the C1 JIT
//! (a broker that lives a few minutes starts faster without C2 than it
//! would ever gain from it).
//!
//! Everything lives in `<target>/kafka-cluster/`, apart from the single
//! node's `<target>/kafka/`, so both can run side by side. Other crates rely
//! on this layout (`kafka-test-env` reads `cluster.json` and restarts nodes
//! from it):
//!
//! - `bootstrap.txt`: the three PLAINTEXT addresses, comma-separated;
//! - `cluster.json`: the nodes, their ports, files and command lines (see
//!   [`cluster_json`]), written once every node runs;
//! - `node-N/`: `server.properties`, `broker.pid`, `broker.log` (log4j2 at
//!   INFO and anything else the JVM prints) and `data/` (formatted afresh by
//!   every start of the whole cluster; kept when one node restarts);
//! - `log4j2.properties`.
//!
//! `start` reuses a running cluster, and starts again, with their data, the
//! nodes of a cluster that is partly down. Readiness: every node logged that
//! it started and accepts connections, every broker is registered (in the
//! metadata), the group coordinator answers, and every partition of
//! `__consumer_offsets` has a leader. The nodes run in process groups of
//! their own, so they outlive the `xtask` that started them.

use std::{
    fs,
    io::ErrorKind,
    os::unix::{ffi::OsStrExt, process::CommandExt},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

use super::wire as kafka_wire;
use crate::kafka::{self, KAFKA_VERSION};

/// The number of nodes.
pub(crate) const NODES: usize = 3;
/// The partitions of `__consumer_offsets` (Kafka's default is 50: fewer
/// make the cluster start and fail over faster, and change nothing else).
/// A group's coordinator leads partition
/// `abs(java_string_hash(group)) % OFFSETS_PARTITIONS`.
pub(crate) const OFFSETS_PARTITIONS: usize = 10;
/// `default.replication.factor` (and that of the internal topics).
const REPLICATION_FACTOR: usize = 3;
/// `min.insync.replicas` (and that of the transaction log).
const MIN_INSYNC_REPLICAS: usize = 2;
/// JVM options of every node.
const JVM_OPTIONS: [&str; 6] = [
    "-Xms512m",
    "-Xmx512m",
    "-XX:+UseSerialGC",
    "-XX:TieredStopAtLevel=1",
    "-XX:+ExitOnOutOfMemoryError",
    "-Djava.awt.headless=true",
];
/// How long `start` waits for the cluster to be ready.
const START_TIMEOUT: Duration = Duration::from_secs(150);
/// How long `stop` waits after SIGTERM before it sends SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(20);
/// The group whose coordinator `start` asks for, which makes the brokers
/// create `__consumer_offsets`.
const PROBE_GROUP: &str = "tiered-kafka-xtask-probe";

/// Starts the cluster, or reuses the running one (starting again, with their
/// data, the nodes of a cluster partly down), and returns its bootstrap list.
pub(crate) fn start() -> Result<String> {
    let state = ClusterState::new()?;
    fs::create_dir_all(&state.dir).with_context(|| format!("creating {}", state.dir.display()))?;
    let _lock = state.lock()?;
    let started = Instant::now();

    let described = fs::read_to_string(state.cluster_json())
        .ok()
        .and_then(|text| Described::from_json(&text));
    let running: Vec<Option<u32>> = (1..=NODES).map(|id| state.running_pid(id)).collect();
    if let Some(described) = described.filter(|_| running.iter().any(Option::is_some)) {
        let missing: Vec<usize> = (1..=NODES)
            .filter(|&id| running[id - 1].is_none())
            .collect();
        if missing.is_empty() && health(&described.bootstrap).is_ok_and(|health| health.ready()) {
            eprintln!(
                "xtask: Kafka cluster already running at {}; reusing it",
                described.bootstrap
            );
            return Ok(described.bootstrap);
        }
        eprintln!(
            "xtask: Kafka cluster at {} is partly down (nodes {missing:?}); starting them again with their data",
            described.bootstrap
        );
        let mut children = Vec::new();
        for &id in &missing {
            children.push(state.spawn_node(id, &described.command(id))?);
        }
        return state.finish_start(described.bootstrap, children, started);
    }
    for (id, pid) in (1..=NODES).zip(&running) {
        if let Some(pid) = pid {
            eprintln!("xtask: node {id} (pid {pid}) runs without a cluster.json; stopping it");
            state.terminate(&[(id, *pid)])?;
        }
    }
    state.remove_run_files()?;

    kafka::require_on_path(&["java"])?;
    let libs = kafka::resolve_jars()?;
    let ports = kafka::free_ports(2 * NODES)?;
    let nodes: Vec<NodePorts> = (1..=NODES)
        .map(|id| NodePorts {
            id,
            port: ports[2 * (id - 1)],
            controller_port: ports[2 * (id - 1) + 1],
        })
        .collect();
    let bootstrap = bootstrap_list(&nodes);
    kafka::write(&state.log4j_config(), kafka::LOG4J_CONFIG)?;
    let cluster_id = cluster_id()?;
    let mut commands = Vec::new();
    thread::scope(|scope| {
        let formats: Vec<_> = nodes
            .iter()
            .map(|node| {
                let state = &state;
                let (libs, cluster_id, nodes) = (&libs, &cluster_id, &nodes);
                scope.spawn(move || state.prepare_node(node, nodes, libs, cluster_id))
            })
            .collect();
        for format in formats {
            commands.push(
                format
                    .join()
                    .map_err(|_| anyhow::anyhow!("a thread formatting a node panicked"))??,
            );
        }
        Ok::<_, anyhow::Error>(())
    })?;
    kafka::write(
        &state.cluster_json(),
        &cluster_json(&state, &nodes, &bootstrap, &commands)?,
    )?;
    kafka::write(&state.bootstrap_file(), &bootstrap)?;

    eprintln!("xtask: starting a {NODES}-node Apache Kafka {KAFKA_VERSION} cluster at {bootstrap}");
    let mut children = Vec::new();
    for (node, command) in nodes.iter().zip(&commands) {
        children.push(state.spawn_node(node.id, command)?);
    }
    state.finish_start(bootstrap, children, started)
}

/// Stops every node of the cluster (SIGTERM to all at once, then SIGKILL
/// after [`STOP_TIMEOUT`]) and removes the pid and bootstrap files. Does
/// nothing when none runs.
pub(crate) fn stop() -> Result<()> {
    let state = ClusterState::new()?;
    if !state.dir.exists() {
        eprintln!("xtask: Kafka cluster not running");
        return Ok(());
    }
    let _lock = state.lock()?;
    let running: Vec<(usize, u32)> = (1..=NODES)
        .filter_map(|id| state.running_pid(id).map(|pid| (id, pid)))
        .collect();
    if running.is_empty() {
        eprintln!("xtask: Kafka cluster not running");
    } else {
        let started = Instant::now();
        eprintln!("xtask: stopping the Kafka cluster (nodes and pids {running:?})");
        state.terminate(&running)?;
        eprintln!(
            "xtask: Kafka cluster stopped in {:.1} s",
            started.elapsed().as_secs_f64()
        );
    }
    state.remove_run_files()
}

/// Prints each node's state and, when one answers, the cluster's health.
pub(crate) fn print_status() -> Result<()> {
    let state = ClusterState::new()?;
    let described = fs::read_to_string(state.cluster_json())
        .ok()
        .and_then(|text| Described::from_json(&text));
    let running: Vec<Option<u32>> = (1..=NODES).map(|id| state.running_pid(id)).collect();
    let Some(described) = described.filter(|_| running.iter().any(Option::is_some)) else {
        println!("Kafka cluster not running");
        return Ok(());
    };
    println!("Kafka cluster at {}", described.bootstrap);
    for (id, pid) in (1..=NODES).zip(&running) {
        let addr = described.address(id);
        match pid {
            Some(pid) if kafka::accepts_tcp(&addr) => {
                println!("  node {id}: running at {addr} (pid {pid})");
            }
            Some(pid) => println!("  node {id}: process {pid} alive, {addr} does not answer"),
            None => println!("  node {id}: not running ({addr})"),
        }
    }
    match health(&described.bootstrap) {
        Ok(health) => println!("  {}", health.describe()),
        Err(err) => println!("  no broker answers metadata requests: {err:#}"),
    }
    Ok(())
}

/// A node this `start` spawned.
struct Spawned {
    /// Its `node.id`.
    id: usize,
    /// Its process.
    child: Child,
    /// The length of its log before it started: what it logs comes after.
    log_start: u64,
}

/// The ports of one node.
struct NodePorts {
    /// `node.id`, 1 to [`NODES`].
    id: usize,
    /// The PLAINTEXT listener (clients and replication).
    port: u16,
    /// The CONTROLLER listener (the KRaft quorum).
    controller_port: u16,
}

/// `127.0.0.1:PORT` of every node, comma-separated.
fn bootstrap_list(nodes: &[NodePorts]) -> String {
    nodes
        .iter()
        .map(|node| format!("127.0.0.1:{}", node.port))
        .collect::<Vec<_>>()
        .join(",")
}

/// A new cluster id as Kafka's `Uuid.randomUuid()` writes one: 16 random
/// bytes in URL-safe base64 without padding, not starting with `-`.
fn cluster_id() -> Result<String> {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    loop {
        let hex = kafka::random_hex(16)?;
        let bytes: Vec<u8> = (0..16)
            .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16))
            .collect::<Result<_, _>>()
            .context("random bytes")?;
        let mut bits = 0u32;
        let mut held = 0;
        let mut id = String::new();
        for byte in bytes {
            bits = (bits << 8) | u32::from(byte);
            held += 8;
            while held >= 6 {
                held -= 6;
                id.push(char::from(ALPHABET[((bits >> held) & 63) as usize]));
            }
        }
        if held > 0 {
            id.push(char::from(ALPHABET[((bits << (6 - held)) & 63) as usize]));
        }
        if !id.starts_with('-') {
            return Ok(id);
        }
    }
}

/// One node's configuration: broker and controller of a three-voter quorum,
/// on 127.0.0.1 only.
fn server_properties(node: &NodePorts, nodes: &[NodePorts], data: &Path) -> String {
    let voters = nodes
        .iter()
        .map(|voter| format!("{}@127.0.0.1:{}", voter.id, voter.controller_port))
        .collect::<Vec<_>>()
        .join(",");
    format!(
        "\
# Written by `cargo xtask kafka start --nodes {NODES}`.
process.roles=broker,controller
node.id={id}
controller.quorum.voters={voters}
listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}
advertised.listeners=PLAINTEXT://127.0.0.1:{port}
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs={data}
num.partitions=3
default.replication.factor={REPLICATION_FACTOR}
min.insync.replicas={MIN_INSYNC_REPLICAS}
offsets.topic.replication.factor={REPLICATION_FACTOR}
offsets.topic.num.partitions={OFFSETS_PARTITIONS}
transaction.state.log.replication.factor={REPLICATION_FACTOR}
transaction.state.log.min.isr={MIN_INSYNC_REPLICAS}
unclean.leader.election.enable=false
# Leaders move only when a node goes: the tests see every move they cause.
auto.leader.rebalance.enable=false
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=true
# A killed node is fenced (its partitions' leadership moves) within 4 s.
broker.heartbeat.interval.ms=500
broker.session.timeout.ms=4000
# A small machine: few threads, a small cleaner buffer.
num.network.threads=2
num.io.threads=2
num.replica.fetchers=1
background.threads=2
num.recovery.threads.per.data.dir=1
log.cleaner.threads=1
log.cleaner.dedupe.buffer.size=16777216
",
        id = node.id,
        port = node.port,
        controller_port = node.controller_port,
        data = data.display(),
    )
}

/// `cluster.json`, which `kafka-test-env` reads to control the nodes:
///
/// ```json
/// {
///   "format": 1,
///   "kafka_version": "4.4.0",
///   "bootstrap": "127.0.0.1:P1,127.0.0.1:P2,127.0.0.1:P3",
///   "replication_factor": 3,
///   "min_insync_replicas": 2,
///   "offsets_topic_partitions": 10,
///   "nodes": [
///     {
///       "id": 1,
///       "address": "127.0.0.1:P1",
///       "controller_address": "127.0.0.1:C1",
///       "dir": "/abs/target/kafka-cluster/node-1",
///       "pid_file": ".../node-1/broker.pid",
///       "log": ".../node-1/broker.log",
///       "server_properties": ".../node-1/server.properties",
///       "command": ["java", "-Xms512m", …, "kafka.Kafka", ".../server.properties"]
///     },
///     …
///   ]
/// }
/// ```
///
/// A node is started by running `command` in `dir`, in a process group of
/// its own, with its output appended to `log`, and its pid written to
/// `pid_file`; it is the node while its command line holds `kafka.Kafka`
/// and `server_properties`.
fn cluster_json(
    state: &ClusterState,
    nodes: &[NodePorts],
    bootstrap: &str,
    commands: &[Vec<String>],
) -> Result<String> {
    let path = |path: PathBuf| path.to_string_lossy().into_owned();
    let described: Vec<serde_json::Value> = nodes
        .iter()
        .zip(commands)
        .map(|(node, command)| {
            serde_json::json!({
                "id": node.id,
                "address": format!("127.0.0.1:{}", node.port),
                "controller_address": format!("127.0.0.1:{}", node.controller_port),
                "dir": path(state.node_dir(node.id)),
                "pid_file": path(state.pid_file(node.id)),
                "log": path(state.log(node.id)),
                "server_properties": path(state.server_properties(node.id)),
                "command": command,
            })
        })
        .collect();
    let json = serde_json::json!({
        "format": 1,
        "kafka_version": KAFKA_VERSION,
        "bootstrap": bootstrap,
        "replication_factor": REPLICATION_FACTOR,
        "min_insync_replicas": MIN_INSYNC_REPLICAS,
        "offsets_topic_partitions": OFFSETS_PARTITIONS,
        "nodes": described,
    });
    let mut text = serde_json::to_string_pretty(&json).context("serialising cluster.json")?;
    text.push('\n');
    Ok(text)
}

/// What `cluster.json` says, as far as `start` and `status` need it.
struct Described {
    /// The bootstrap list.
    bootstrap: String,
    /// Each node's address and command line, by `id - 1`.
    nodes: Vec<(String, Vec<String>)>,
}

impl Described {
    fn from_json(text: &str) -> Option<Described> {
        let json: serde_json::Value = serde_json::from_str(text).ok()?;
        let bootstrap = json.get("bootstrap")?.as_str()?.to_owned();
        let nodes = json
            .get("nodes")?
            .as_array()?
            .iter()
            .map(|node| {
                let address = node.get("address")?.as_str()?.to_owned();
                let command = node
                    .get("command")?
                    .as_array()?
                    .iter()
                    .map(|arg| arg.as_str().map(str::to_owned))
                    .collect::<Option<Vec<_>>>()?;
                Some((address, command))
            })
            .collect::<Option<Vec<_>>>()?;
        (nodes.len() == NODES).then_some(Described { bootstrap, nodes })
    }

    fn address(&self, id: usize) -> String {
        self.nodes[id - 1].0.clone()
    }

    fn command(&self, id: usize) -> Vec<String> {
        self.nodes[id - 1].1.clone()
    }
}

/// The cluster as the metadata shows it.
struct Health {
    /// The registered brokers' ids.
    brokers: Vec<i32>,
    /// The controller the answer names.
    controller: i32,
    /// `__consumer_offsets`' partitions, and how many have a leader and a
    /// full ISR; `None` while the topic does not exist.
    offsets: Option<(usize, usize, usize)>,
}

impl Health {
    /// Every broker registered, every offsets partition led and fully in
    /// sync.
    fn ready(&self) -> bool {
        self.brokers.len() == NODES
            && self.offsets.is_some_and(|(partitions, led, in_sync)| {
                partitions == OFFSETS_PARTITIONS && led == partitions && in_sync == partitions
            })
    }

    fn describe(&self) -> String {
        let offsets = match self.offsets {
            Some((partitions, led, in_sync)) => format!(
                "__consumer_offsets: {partitions} partitions, {led} with a leader, {in_sync} fully in sync"
            ),
            None => "__consumer_offsets not created yet".to_owned(),
        };
        format!(
            "brokers registered: {:?}; controller: {}; {offsets}",
            self.brokers, self.controller
        )
    }
}

/// The cluster's health, from the first node of `bootstrap` that answers.
fn health(bootstrap: &str) -> Result<Health> {
    let mut last_error = None;
    for addr in bootstrap.split(',') {
        match kafka_wire::metadata(addr, &["__consumer_offsets"]) {
            Ok(metadata) => {
                let mut brokers: Vec<i32> = metadata.brokers.iter().map(|b| b.id).collect();
                brokers.sort_unstable();
                let offsets = metadata
                    .topics
                    .iter()
                    .find(|topic| topic.error == 0 && !topic.partitions.is_empty())
                    .map(|topic| {
                        let led = topic
                            .partitions
                            .iter()
                            .filter(|p| p.error == 0 && p.leader >= 0)
                            .count();
                        let in_sync = topic
                            .partitions
                            .iter()
                            .filter(|p| p.isr.len() == p.replicas.len())
                            .count();
                        (topic.partitions.len(), led, in_sync)
                    });
                return Ok(Health {
                    brokers,
                    controller: metadata.controller,
                    offsets,
                });
            }
            Err(err) => last_error = Some(err),
        }
    }
    Err(last_error.unwrap_or_else(|| anyhow::anyhow!("an empty bootstrap list")))
}

/// The state directory `<target>/kafka-cluster/` and the files in it.
struct ClusterState {
    dir: PathBuf,
}

impl ClusterState {
    fn new() -> Result<ClusterState> {
        Ok(ClusterState {
            dir: crate::target_dir()?.join("kafka-cluster"),
        })
    }

    fn node_dir(&self, id: usize) -> PathBuf {
        self.dir.join(format!("node-{id}"))
    }

    fn pid_file(&self, id: usize) -> PathBuf {
        self.node_dir(id).join("broker.pid")
    }

    fn log(&self, id: usize) -> PathBuf {
        self.node_dir(id).join("broker.log")
    }

    fn data(&self, id: usize) -> PathBuf {
        self.node_dir(id).join("data")
    }

    fn server_properties(&self, id: usize) -> PathBuf {
        self.node_dir(id).join("server.properties")
    }

    fn cluster_json(&self) -> PathBuf {
        self.dir.join("cluster.json")
    }

    fn bootstrap_file(&self) -> PathBuf {
        self.dir.join("bootstrap.txt")
    }

    fn log4j_config(&self) -> PathBuf {
        self.dir.join("log4j2.properties")
    }

    /// Takes the lock that serialises `start` and `stop` across processes;
    /// released when the returned file is dropped.
    fn lock(&self) -> Result<fs::File> {
        let path = self.dir.join(".lock");
        let file = fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(false)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        if file.try_lock().is_err() {
            eprintln!("xtask: waiting for another xtask to finish with the Kafka cluster");
            file.lock()
                .with_context(|| format!("locking {}", path.display()))?;
        }
        Ok(file)
    }

    /// The pid of node `id` when its process runs (whoever started it: this
    /// xtask, or a test that restarted it).
    fn running_pid(&self, id: usize) -> Option<u32> {
        let pid = fs::read_to_string(self.pid_file(id))
            .ok()?
            .trim()
            .parse()
            .ok()?;
        self.is_node(id, pid).then_some(pid)
    }

    /// Whether `pid` is alive and is node `id` of this checkout (its command
    /// line names `kafka.Kafka` and the node's `server.properties`).
    fn is_node(&self, id: usize, pid: u32) -> bool {
        // A zombie's cmdline reads empty, so an exited node never matches.
        let Ok(cmdline) = fs::read(format!("/proc/{pid}/cmdline")) else {
            return false;
        };
        let props = self.server_properties(id);
        let mut args = cmdline.split(|&byte| byte == 0);
        args.clone().any(|arg| arg == b"kafka.Kafka")
            && args.any(|arg| arg == props.as_os_str().as_bytes())
    }

    fn remove_run_files(&self) -> Result<()> {
        let mut files = vec![self.bootstrap_file()];
        files.extend((1..=NODES).map(|id| self.pid_file(id)));
        for path in files {
            match fs::remove_file(&path) {
                Err(err) if err.kind() != ErrorKind::NotFound => {
                    return Err(err).with_context(|| format!("removing {}", path.display()));
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Writes node `node`'s configuration, formats its fresh data directory,
    /// and returns the command line that starts it.
    fn prepare_node(
        &self,
        node: &NodePorts,
        nodes: &[NodePorts],
        libs: &Path,
        cluster_id: &str,
    ) -> Result<Vec<String>> {
        let dir = self.node_dir(node.id);
        if dir.exists() {
            fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
        }
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let props = self.server_properties(node.id);
        kafka::write(&props, &server_properties(node, nodes, &self.data(node.id)))?;
        let classpath = libs.join("*");
        let output = Command::new("java")
            .args(["-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC", "-cp"])
            .arg(&classpath)
            .args(["kafka.tools.StorageTool", "format", "-t", cluster_id, "-c"])
            .arg(&props)
            .current_dir(&dir)
            .stdin(Stdio::null())
            .output()
            .context("running `java`")?;
        kafka::checked_stdout(
            &format!("kafka.tools.StorageTool format (node {})", node.id),
            &output,
            &[],
        )?;
        let mut command = vec!["java".to_owned()];
        command.extend(JVM_OPTIONS.iter().map(|&option| option.to_owned()));
        command.push(format!(
            "-Dlog4j2.configurationFile={}",
            self.log4j_config().display()
        ));
        command.push("-cp".to_owned());
        command.push(classpath.to_string_lossy().into_owned());
        command.push("kafka.Kafka".to_owned());
        command.push(props.to_string_lossy().into_owned());
        Ok(command)
    }

    /// Spawns node `id` with `command` in its own process group, its output
    /// appended to its log, and writes its pid file.
    fn spawn_node(&self, id: usize, command: &[String]) -> Result<Spawned> {
        let Some((program, args)) = command.split_first() else {
            bail!("node {id} has an empty command line");
        };
        let log_path = self.log(id);
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("opening {}", log_path.display()))?;
        let log_start = log
            .metadata()
            .with_context(|| format!("reading {}", log_path.display()))?
            .len();
        let child = Command::new(program)
            .args(args)
            .current_dir(self.node_dir(id))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0)
            .spawn()
            .with_context(|| format!("spawning node {id} (`java ... kafka.Kafka`)"))?;
        kafka::write(&self.pid_file(id), &child.id().to_string())?;
        Ok(Spawned {
            id,
            child,
            log_start,
        })
    }

    /// Waits until the nodes just spawned are up and the cluster is ready
    /// ([`Health::ready`]); on failure prints the end of their logs and
    /// stops the whole cluster.
    fn finish_start(
        &self,
        bootstrap: String,
        mut children: Vec<Spawned>,
        started: Instant,
    ) -> Result<String> {
        if let Err(err) = self.wait_until_ready(&bootstrap, &mut children) {
            for spawned in &children {
                eprintln!("xtask: last lines of {}:", self.log(spawned.id).display());
                eprintln!("{}", kafka::last_lines(&self.log(spawned.id), 20));
            }
            for Spawned { child, .. } in &mut children {
                // A node that failed to start holds nothing worth a clean
                // shutdown.
                let _ = child.kill();
                let _ = child.wait();
            }
            let running: Vec<(usize, u32)> = (1..=NODES)
                .filter_map(|id| self.running_pid(id).map(|pid| (id, pid)))
                .collect();
            self.terminate(&running)?;
            self.remove_run_files()?;
            return Err(err);
        }
        for Spawned { mut child, .. } in children {
            // Reap the node if it exits while this xtask still runs (the
            // cluster phase of `cargo xtask test`).
            thread::spawn(move || child.wait());
        }
        eprintln!(
            "xtask: Kafka cluster ready at {bootstrap} after {:.1} s; logs in {}/node-*/broker.log",
            started.elapsed().as_secs_f64(),
            self.dir.display()
        );
        Ok(bootstrap)
    }

    /// Polls until every node spawned logged that it started and accepts
    /// connections, then until the cluster is ready.
    fn wait_until_ready(&self, bootstrap: &str, children: &mut [Spawned]) -> Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        let mut up = vec![false; children.len()];
        let mut last_seen;
        loop {
            for (index, spawned) in children.iter_mut().enumerate() {
                let id = spawned.id;
                if let Some(status) = spawned.child.try_wait()? {
                    bail!("Kafka node {id} exited during start-up ({status})");
                }
                if !up[index] {
                    // Only what this start wrote: a restarted node's log
                    // holds the lines of its earlier runs too.
                    let ready_line = format!("[KafkaRaftServer nodeId={id}] Kafka Server started");
                    let port = bootstrap.split(',').nth(id - 1).unwrap_or_default();
                    let skip = usize::try_from(spawned.log_start).unwrap_or(usize::MAX);
                    up[index] = fs::read(self.log(id)).is_ok_and(|log| {
                        log.get(skip..)
                            .is_some_and(|new| String::from_utf8_lossy(new).contains(&ready_line))
                    }) && kafka::accepts_tcp(port);
                }
            }
            if up.iter().all(|&up| up) {
                match health(bootstrap) {
                    Ok(health) if health.ready() => return Ok(()),
                    Ok(health) => {
                        last_seen = health.describe();
                        if health.brokers.len() == NODES && health.offsets.is_none() {
                            // Asking for a coordinator creates the offsets
                            // topic.
                            let first = bootstrap.split(',').next().unwrap_or_default();
                            let _ = kafka_wire::find_group_coordinator(first, PROBE_GROUP);
                        }
                    }
                    Err(err) => last_seen = format!("{err:#}"),
                }
            } else {
                last_seen =
                    format!("nodes up (logged that they started, accept connections): {up:?}");
            }
            if Instant::now() >= deadline {
                bail!(
                    "the Kafka cluster was not ready after {} s; last seen: {last_seen}",
                    START_TIMEOUT.as_secs()
                );
            }
            thread::sleep(Duration::from_millis(250));
        }
    }

    /// Sends SIGTERM to every node of `nodes` (`(id, pid)`) at once, waits
    /// up to [`STOP_TIMEOUT`], then sends SIGKILL to those still running.
    fn terminate(&self, nodes: &[(usize, u32)]) -> Result<()> {
        for (signal, timeout) in [("TERM", STOP_TIMEOUT), ("KILL", Duration::from_secs(10))] {
            let alive: Vec<&(usize, u32)> = nodes
                .iter()
                .filter(|(id, pid)| self.is_node(*id, *pid))
                .collect();
            if alive.is_empty() {
                return Ok(());
            }
            if signal == "KILL" {
                eprintln!(
                    "xtask: Kafka nodes {alive:?} still run {} s after SIGTERM; sending SIGKILL",
                    STOP_TIMEOUT.as_secs()
                );
            }
            for (_, pid) in &alive {
                // `kill` fails when the process has just exited; the wait
                // below sees that either way.
                Command::new("kill")
                    .args([format!("-{signal}"), pid.to_string()])
                    .stderr(Stdio::null())
                    .status()
                    .context("running `kill`")?;
            }
            let deadline = Instant::now() + timeout;
            while alive.iter().any(|(id, pid)| self.is_node(*id, *pid)) && Instant::now() < deadline
            {
                thread::sleep(Duration::from_millis(100));
            }
        }
        let survivors: Vec<&(usize, u32)> = nodes
            .iter()
            .filter(|(id, pid)| self.is_node(*id, *pid))
            .collect();
        if !survivors.is_empty() {
            bail!("Kafka nodes {survivors:?} survived SIGKILL");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes() -> Vec<NodePorts> {
        (1..=NODES)
            .map(|id| NodePorts {
                id,
                port: 9090 + id as u16,
                controller_port: 9190 + id as u16,
            })
            .collect()
    }

    #[test]
    fn server_properties_make_a_replicated_three_voter_cluster() {
        let nodes = nodes();
        let props = server_properties(&nodes[1], &nodes, Path::new("/tmp/c/node-2/data"));
        assert!(props.contains("node.id=2\n"));
        assert!(props.contains(
            "controller.quorum.voters=1@127.0.0.1:9191,2@127.0.0.1:9192,3@127.0.0.1:9193\n"
        ));
        assert!(
            props.contains("listeners=PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9192\n")
        );
        assert!(props.contains("default.replication.factor=3\n"));
        assert!(props.contains("min.insync.replicas=2\n"));
        assert!(props.contains("offsets.topic.replication.factor=3\n"));
        assert!(props.contains("offsets.topic.num.partitions=10\n"));
        assert!(props.contains("log.dirs=/tmp/c/node-2/data\n"));
        assert_eq!(
            bootstrap_list(&nodes),
            "127.0.0.1:9091,127.0.0.1:9092,127.0.0.1:9093"
        );
        // One value per key: Java's Properties keeps the last of duplicates.
        let mut keys: Vec<&str> = props
            .lines()
            .filter(|line| !line.starts_with('#'))
            .filter_map(|line| line.split_once('=').map(|(key, _)| key))
            .collect();
        let count = keys.len();
        keys.sort_unstable();
        keys.dedup();
        assert_eq!(keys.len(), count, "a key is set twice:\n{props}");
    }

    #[test]
    fn cluster_ids_look_like_kafka_uuids() {
        for _ in 0..20 {
            let id = cluster_id().expect("random bytes");
            assert_eq!(id.len(), 22, "{id}");
            assert!(!id.starts_with('-'));
            assert!(
                id.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
                "{id}"
            );
        }
    }

    #[test]
    fn cluster_json_reads_back() {
        let state = ClusterState {
            dir: PathBuf::from("/tmp/c"),
        };
        let nodes = nodes();
        let commands: Vec<Vec<String>> = nodes
            .iter()
            .map(|node| vec!["java".into(), format!("node-{}", node.id)])
            .collect();
        let text =
            cluster_json(&state, &nodes, &bootstrap_list(&nodes), &commands).expect("serialised");
        let described = Described::from_json(&text).expect("reads back");
        assert_eq!(described.address(3), "127.0.0.1:9093");
        assert_eq!(described.command(2), ["java", "node-2"]);
        let json: serde_json::Value = serde_json::from_str(&text).expect("JSON");
        assert_eq!(json["offsets_topic_partitions"], 10);
        assert_eq!(json["nodes"][0]["pid_file"], "/tmp/c/node-1/broker.pid");
    }
}
