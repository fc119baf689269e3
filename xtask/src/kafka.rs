//! `cargo xtask kafka start|stop|status`: a single-node Apache Kafka broker
//! (KRaft, broker and controller in one JVM) run from Maven Central jars.
//!
//! Everything lives in `<target>/kafka/`, and other crates rely on this
//! layout:
//!
//! - `bootstrap.txt`: `127.0.0.1:PORT` of the running broker (trim it when
//!   reading);
//! - `broker.pid`: the broker's process id;
//! - `broker.log`: the broker's log (log4j2 at INFO, and anything else the JVM
//!   prints);
//! - `data/`: the broker's log directory, formatted afresh on every start;
//! - `libs-4.4.0/`: the jars, resolved once with Maven (`.complete` marks a
//!   finished download).
//!
//! The broker runs in its own process group, so it outlives the `xtask` that
//! started it, and `start` reuses it while it answers.

use std::{
    ffi::OsString,
    fs,
    io::ErrorKind,
    net::{SocketAddr, TcpListener, TcpStream},
    os::unix::{ffi::OsStrExt, process::CommandExt},
    path::{Path, PathBuf},
    process::{Child, Command, ExitCode, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

use crate::flags;

/// The Apache Kafka release we run.
pub(crate) const KAFKA_VERSION: &str = "4.4.0";
/// The log4j2 release that `kafka_2.13` 4.4.0 resolves to; the SLF4J binding
/// we add is pinned to it (through log4j's BOM).
const LOG4J_VERSION: &str = "2.25.5";
/// The line Kafka 4.4 logs once the broker and controller are both up.
const READY_LINE: &str = "[KafkaRaftServer nodeId=1] Kafka Server started";
/// How long `start` waits for the broker to come up.
const START_TIMEOUT: Duration = Duration::from_secs(90);
/// How long `stop` waits after SIGTERM before it sends SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// What to install when `java` or `mvn` is missing.
const INSTALL_HINT: &str = "Install them, e.g. `apt-get install openjdk-17-jre-headless maven`";

/// Runs `cargo xtask kafka ...`.
pub(crate) fn run(flags: flags::Kafka) -> Result<ExitCode> {
    match flags.subcommand {
        flags::KafkaCmd::Start(flags::Start) => {
            let bootstrap = start()?;
            println!("{bootstrap}");
        }
        flags::KafkaCmd::Stop(flags::Stop) => stop()?,
        flags::KafkaCmd::Status(flags::Status) => {
            let state = State::new()?;
            match state.status() {
                Status::Running { pid, bootstrap } => {
                    println!("Kafka broker running at {bootstrap} (pid {pid})");
                }
                Status::Unresponsive { pid } => println!(
                    "Kafka broker process {pid} is alive but does not answer \
                     (starting, or stuck: `cargo xtask kafka stop`)"
                ),
                Status::Stopped => println!("Kafka broker not running"),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Starts the broker, or reuses the one the state files describe while it
/// answers, and returns its bootstrap address (`127.0.0.1:PORT`).
///
/// Waits until the broker has logged [`READY_LINE`] and accepts TCP
/// connections; on failure it prints the end of `broker.log` and stops the
/// broker again.
pub(crate) fn start() -> Result<String> {
    let state = State::new()?;
    fs::create_dir_all(&state.dir).with_context(|| format!("creating {}", state.dir.display()))?;
    let _lock = state.lock()?;
    match state.status() {
        Status::Running { pid, bootstrap } => {
            eprintln!("xtask: Kafka broker already running at {bootstrap} (pid {pid}); reusing it");
            return Ok(bootstrap);
        }
        Status::Unresponsive { pid } => {
            eprintln!("xtask: Kafka broker pid {pid} does not answer; restarting it");
            state.terminate(pid)?;
        }
        Status::Stopped => {}
    }
    state.remove_run_files()?;

    require_on_path(&["java"])?;
    state.resolve_jars()?;
    let (port, controller_port) = free_port_pair()?;
    let bootstrap = format!("127.0.0.1:{port}");
    write(
        &state.server_properties(),
        &server_properties(port, controller_port, &state.data()),
    )?;
    write(&state.log4j_config(), LOG4J_CONFIG)?;
    state.format_storage()?;

    eprintln!("xtask: starting Apache Kafka {KAFKA_VERSION} at {bootstrap}");
    let mut broker = state.spawn_broker()?;
    let pid = broker.id();
    write(&state.pid_file(), &pid.to_string())?;
    write(&state.bootstrap_file(), &bootstrap)?;
    let started = Instant::now();
    if let Err(err) = state.wait_until_ready(&mut broker, &bootstrap) {
        eprintln!("xtask: last lines of {}:", state.log().display());
        eprintln!("{}", last_lines(&state.log(), 30));
        // A broker that failed to start holds nothing worth a clean shutdown.
        let _ = broker.kill();
        let _ = broker.wait();
        state.remove_run_files()?;
        return Err(err);
    }
    // Reap the broker if it exits while this xtask still runs (`test
    // --stop-kafka`); otherwise the thread simply ends with the process.
    thread::spawn(move || broker.wait());
    eprintln!(
        "xtask: Kafka broker ready at {bootstrap} (pid {pid}) after {:.1} s; log in {}",
        started.elapsed().as_secs_f64(),
        state.log().display()
    );
    Ok(bootstrap)
}

/// Stops the broker the state files describe (SIGTERM, then SIGKILL after
/// [`STOP_TIMEOUT`]) and removes its pid and bootstrap files. Does nothing
/// when no broker runs.
pub(crate) fn stop() -> Result<()> {
    let state = State::new()?;
    if !state.dir.exists() {
        eprintln!("xtask: Kafka broker not running");
        return Ok(());
    }
    let _lock = state.lock()?;
    match state.read_pid() {
        Some(pid) if state.is_broker(pid) => {
            eprintln!("xtask: stopping Kafka broker (pid {pid})");
            state.terminate(pid)?;
            eprintln!("xtask: Kafka broker stopped");
        }
        _ => eprintln!("xtask: Kafka broker not running"),
    }
    state.remove_run_files()
}

/// What the state files say about the broker.
enum Status {
    /// The broker process is alive and its port accepts connections.
    Running {
        /// Its process id.
        pid: u32,
        /// Its bootstrap address.
        bootstrap: String,
    },
    /// The broker process is alive but its port does not answer.
    Unresponsive {
        /// Its process id.
        pid: u32,
    },
    /// No broker process runs.
    Stopped,
}

/// The directory of the Apache Kafka jars, when `start` has resolved them
/// (the Java benchmark contender compiles against its `kafka-clients`).
pub(crate) fn resolved_libs() -> Result<Option<PathBuf>> {
    let libs = State::new()?.libs();
    Ok(libs.join(".complete").exists().then_some(libs))
}

/// The state directory `<target>/kafka/` and the files in it.
struct State {
    /// The directory itself.
    dir: PathBuf,
}

impl State {
    fn new() -> Result<State> {
        Ok(State {
            dir: crate::target_dir()?.join("kafka"),
        })
    }

    fn libs(&self) -> PathBuf {
        self.dir.join(format!("libs-{KAFKA_VERSION}"))
    }

    fn pid_file(&self) -> PathBuf {
        self.dir.join("broker.pid")
    }

    fn bootstrap_file(&self) -> PathBuf {
        self.dir.join("bootstrap.txt")
    }

    fn log(&self) -> PathBuf {
        self.dir.join("broker.log")
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn server_properties(&self) -> PathBuf {
        self.dir.join("server.properties")
    }

    fn log4j_config(&self) -> PathBuf {
        self.dir.join("log4j2.properties")
    }

    /// The `-cp` argument: every jar in [`State::libs`] (Java expands `*`).
    fn classpath(&self) -> PathBuf {
        self.libs().join("*")
    }

    /// Takes the lock that serialises `start` and `stop` across processes;
    /// it is released when the returned file is dropped.
    fn lock(&self) -> Result<fs::File> {
        let path = self.dir.join(".lock");
        let file = fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(false)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        if file.try_lock().is_err() {
            eprintln!("xtask: waiting for another xtask to finish with the Kafka broker");
            file.lock()
                .with_context(|| format!("locking {}", path.display()))?;
        }
        Ok(file)
    }

    fn status(&self) -> Status {
        let Some(pid) = self.read_pid().filter(|&pid| self.is_broker(pid)) else {
            return Status::Stopped;
        };
        match fs::read_to_string(self.bootstrap_file()) {
            Ok(bootstrap) if accepts_tcp(bootstrap.trim()) => Status::Running {
                pid,
                bootstrap: bootstrap.trim().to_owned(),
            },
            _ => Status::Unresponsive { pid },
        }
    }

    fn read_pid(&self) -> Option<u32> {
        fs::read_to_string(self.pid_file())
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// Whether `pid` is alive and is the broker started with our
    /// `server.properties` (not a recycled pid, nor another checkout's
    /// broker). Reads Linux's `/proc`.
    fn is_broker(&self, pid: u32) -> bool {
        // A zombie's cmdline reads empty, so an exited broker never matches.
        let Ok(cmdline) = fs::read(format!("/proc/{pid}/cmdline")) else {
            return false;
        };
        let props = self.server_properties();
        let mut args = cmdline.split(|&byte| byte == 0);
        args.clone().any(|arg| arg == b"kafka.Kafka")
            && args.any(|arg| arg == props.as_os_str().as_bytes())
    }

    fn remove_run_files(&self) -> Result<()> {
        for path in [self.pid_file(), self.bootstrap_file()] {
            match fs::remove_file(&path) {
                Err(err) if err.kind() != ErrorKind::NotFound => {
                    return Err(err).with_context(|| format!("removing {}", path.display()));
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Downloads the broker's jars into [`State::libs`] with Maven, unless a
    /// previous run completed that already.
    fn resolve_jars(&self) -> Result<()> {
        let libs = self.libs();
        let marker = libs.join(".complete");
        if marker.is_file() {
            return Ok(());
        }
        require_on_path(&["mvn"])?;
        eprintln!(
            "xtask: resolving the Apache Kafka {KAFKA_VERSION} jars with Maven into {} (first run only)",
            libs.display()
        );
        if libs.exists() {
            fs::remove_dir_all(&libs).with_context(|| format!("removing {}", libs.display()))?;
        }
        let maven_dir = self.dir.join("maven");
        fs::create_dir_all(&maven_dir)
            .with_context(|| format!("creating {}", maven_dir.display()))?;
        let pom = maven_dir.join("pom.xml");
        write(&pom, &pom_xml())?;
        let mut output_dir = OsString::from("-DoutputDirectory=");
        output_dir.push(&libs);
        let output = Command::new("mvn")
            .args(["-B", "-q", "-Dstyle.color=never", "-f"])
            .arg(&pom)
            .arg("dependency:copy-dependencies")
            .arg(output_dir)
            .arg("-DincludeScope=runtime")
            .current_dir(&maven_dir)
            .stdin(Stdio::null())
            .output()
            .context("running `mvn`")?;
        if !output.status.success() {
            bail!(
                "`mvn dependency:copy-dependencies` failed ({}):\n{}{}",
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        for jar in [
            format!("kafka_2.13-{KAFKA_VERSION}.jar"),
            format!("log4j-core-{LOG4J_VERSION}.jar"),
            format!("log4j-slf4j-impl-{LOG4J_VERSION}.jar"),
        ] {
            if !libs.join(&jar).is_file() {
                bail!("Maven finished but {jar} is not in {}", libs.display());
            }
        }
        write(&marker, "")
    }

    /// Formats a fresh [`State::data`] directory with a new cluster id.
    fn format_storage(&self) -> Result<()> {
        let data = self.data();
        if data.exists() {
            fs::remove_dir_all(&data).with_context(|| format!("removing {}", data.display()))?;
        }
        let random_uuid = self.storage_tool(&["random-uuid".into()])?;
        let Some(cluster_id) = random_uuid.lines().map(str::trim).rfind(|l| !l.is_empty()) else {
            bail!("`kafka.tools.StorageTool random-uuid` printed no cluster id");
        };
        self.storage_tool(&[
            "format".into(),
            "-t".into(),
            cluster_id.into(),
            "-c".into(),
            self.server_properties().into(),
        ])?;
        Ok(())
    }

    /// Runs `kafka.tools.StorageTool` and returns what it printed on stdout.
    fn storage_tool(&self, args: &[OsString]) -> Result<String> {
        let output = Command::new("java")
            .arg("-cp")
            .arg(self.classpath())
            .arg("kafka.tools.StorageTool")
            .args(args)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .output()
            .context("running `java`")?;
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        if !output.status.success() {
            bail!(
                "`kafka.tools.StorageTool {}` failed ({}):\n{stdout}{}",
                args.join(" ".as_ref()).to_string_lossy(),
                output.status,
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(stdout)
    }

    /// Spawns the broker in its own process group, with stdout and stderr in
    /// [`State::log`].
    fn spawn_broker(&self) -> Result<Child> {
        let log_path = self.log();
        let log = fs::File::create(&log_path)
            .with_context(|| format!("creating {}", log_path.display()))?;
        let mut log4j = OsString::from("-Dlog4j2.configurationFile=");
        log4j.push(self.log4j_config());
        Command::new("java")
            .arg("-Xmx1g")
            .arg(log4j)
            .arg("-cp")
            .arg(self.classpath())
            .arg("kafka.Kafka")
            .arg(self.server_properties())
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0)
            .spawn()
            .context("spawning the Kafka broker (`java ... kafka.Kafka`)")
    }

    /// Polls until the broker has logged [`READY_LINE`] and its port accepts
    /// TCP connections.
    fn wait_until_ready(&self, broker: &mut Child, bootstrap: &str) -> Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = broker.try_wait()? {
                bail!("the Kafka broker exited during start-up ({status})");
            }
            let logged = fs::read(self.log())
                .is_ok_and(|log| String::from_utf8_lossy(&log).contains(READY_LINE));
            if logged && accepts_tcp(bootstrap) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "the Kafka broker (pid {}) was not ready after {} s",
                    broker.id(),
                    START_TIMEOUT.as_secs()
                );
            }
            thread::sleep(Duration::from_millis(250));
        }
    }

    /// Sends SIGTERM to the broker, waits up to [`STOP_TIMEOUT`], then sends
    /// SIGKILL.
    fn terminate(&self, pid: u32) -> Result<()> {
        for (signal, timeout) in [("TERM", STOP_TIMEOUT), ("KILL", Duration::from_secs(10))] {
            if !self.is_broker(pid) {
                return Ok(());
            }
            if signal == "KILL" {
                eprintln!("xtask: Kafka broker (pid {pid}) ignored SIGTERM; sending SIGKILL");
            }
            // `kill` fails when the process has just exited; the wait below
            // sees that either way, so its exit status does not matter.
            Command::new("kill")
                .args([format!("-{signal}"), pid.to_string()])
                .stderr(Stdio::null())
                .status()
                .context("running `kill`")?;
            let deadline = Instant::now() + timeout;
            while self.is_broker(pid) && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(100));
            }
        }
        if self.is_broker(pid) {
            bail!("the Kafka broker (pid {pid}) survived SIGKILL");
        }
        Ok(())
    }
}

/// The broker's configuration: one KRaft node that is broker and controller,
/// listening on 127.0.0.1 only.
fn server_properties(port: u16, controller_port: u16, data: &Path) -> String {
    format!(
        "\
# Written by `cargo xtask kafka start`.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:{controller_port}
listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}
advertised.listeners=PLAINTEXT://127.0.0.1:{port}
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs={}
num.partitions=1
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=true
",
        data.display()
    )
}

/// log4j2 configuration for the broker: INFO and above to standard output,
/// which [`State::spawn_broker`] sends to `broker.log` together with anything
/// else the JVM prints.
const LOG4J_CONFIG: &str = "\
# Written by `cargo xtask kafka start`.
status = warn
appender.out.type = Console
appender.out.name = STDOUT
appender.out.target = SYSTEM_OUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = STDOUT
";

/// A Maven project whose runtime dependencies are the broker's jars, plus the
/// log4j2 binding for SLF4J 1.x (Kafka 4.4 logs through `slf4j-api` 1.7) so
/// the broker logs at all.
fn pom_xml() -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<!-- Written by `cargo xtask kafka start`: the jars of one Apache Kafka broker. -->
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.tiered-kafka</groupId>
  <artifactId>kafka-broker-jars</artifactId>
  <version>0</version>
  <packaging>pom</packaging>
  <dependencyManagement>
    <dependencies>
      <dependency>
        <groupId>org.apache.logging.log4j</groupId>
        <artifactId>log4j-bom</artifactId>
        <version>{LOG4J_VERSION}</version>
        <type>pom</type>
        <scope>import</scope>
      </dependency>
    </dependencies>
  </dependencyManagement>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka_2.13</artifactId>
      <version>{KAFKA_VERSION}</version>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-slf4j-impl</artifactId>
    </dependency>
  </dependencies>
</project>
"#
    )
}

/// Fails with an install hint unless every program in `programs` is on `PATH`.
fn require_on_path(programs: &[&str]) -> Result<()> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let missing: Vec<&str> = programs
        .iter()
        .copied()
        .filter(|program| !std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
        .collect();
    if !missing.is_empty() {
        bail!(
            "Apache Kafka needs `java` (17 or later) and `mvn`; not on PATH: {}. {INSTALL_HINT}",
            missing.join(", ")
        );
    }
    Ok(())
}

/// Two distinct free TCP ports on 127.0.0.1: the client port and the
/// controller port.
fn free_port_pair() -> Result<(u16, u16)> {
    let first = TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    let second = TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok((first.local_addr()?.port(), second.local_addr()?.port()))
}

/// Whether `addr` (`host:port`) accepts a TCP connection within a second.
fn accepts_tcp(addr: &str) -> bool {
    addr.parse::<SocketAddr>()
        .is_ok_and(|addr| TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok())
}

/// Writes `contents` to `path`, naming the path on failure.
fn write(path: &Path, contents: &str) -> Result<()> {
    fs::write(path, contents).with_context(|| format!("writing {}", path.display()))
}

/// The last `n` lines of the file at `path`, or why it could not be read.
fn last_lines(path: &Path, n: usize) -> String {
    match fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(n)..].join("\n")
        }
        Err(err) => format!("({err})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_properties_use_both_ports_and_the_data_dir() {
        let props = server_properties(9092, 9093, Path::new("/tmp/kafka/data"));
        assert!(props.contains("controller.quorum.voters=1@127.0.0.1:9093\n"));
        assert!(
            props.contains("listeners=PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093\n")
        );
        assert!(props.contains("advertised.listeners=PLAINTEXT://127.0.0.1:9092\n"));
        assert!(props.contains("log.dirs=/tmp/kafka/data\n"));
    }

    #[test]
    fn free_port_pair_gives_two_ports() {
        let (port, controller_port) = free_port_pair().expect("free ports");
        assert_ne!(port, controller_port);
    }

    #[test]
    fn last_lines_keeps_the_tail() {
        let dir = std::env::temp_dir().join(format!("xtask-last-lines-{}", std::process::id()));
        fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("log");
        fs::write(&path, "a\nb\nc\n").expect("write");
        assert_eq!(last_lines(&path, 2), "b\nc");
        assert_eq!(last_lines(&path, 10), "a\nb\nc");
        fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn pom_pins_kafka_and_log4j() {
        let pom = pom_xml();
        assert!(
            pom.contains("<artifactId>kafka_2.13</artifactId>\n      <version>4.4.0</version>")
        );
        assert!(pom.contains("<version>2.25.5</version>"));
        assert!(pom.contains("log4j-slf4j-impl"));
    }
}
