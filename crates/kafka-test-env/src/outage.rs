//! Taking the broker away for a while: [`BrokerOutage`].

use std::fs::OpenOptions;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::TestEnvError;
use crate::local;
use crate::mock::MockBroker;

/// How long a local broker may take to stop or to start again.
const BROKER_PATIENCE: Duration = Duration::from_secs(90);

/// While this value lives the broker does not answer; dropping it brings the
/// broker back, so a failing test never leaves it down.
///
/// - mock cluster: the broker is set down (connections are closed and
///   refused);
/// - local Apache Kafka: the broker process is killed (`SIGKILL`, as in a
///   crash: a clean shutdown of a just-restarted KRaft node can take minutes)
///   and started again with the same command line and data; what it wrote is
///   in the operating system's page cache, so nothing is lost.
#[must_use = "the outage ends when this value is dropped"]
pub struct BrokerOutage<'a> {
    kind: OutageKind<'a>,
}

enum OutageKind<'a> {
    Mock(&'a MockBroker),
    Stopped(StoppedBroker),
}

/// What it takes to start a stopped local broker again.
struct StoppedBroker {
    command_line: Vec<String>,
    working_dir: PathBuf,
}

impl std::fmt::Debug for BrokerOutage<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.kind {
            OutageKind::Mock(_) => f.write_str("BrokerOutage(mock broker down)"),
            OutageKind::Stopped(_) => f.write_str("BrokerOutage(local broker stopped)"),
        }
    }
}

impl<'a> BrokerOutage<'a> {
    pub(crate) fn mock(broker: &'a MockBroker) -> Self {
        broker.set_up(false);
        BrokerOutage {
            kind: OutageKind::Mock(broker),
        }
    }

    /// Stops the local broker `pid`, remembering how to start it again.
    pub(crate) fn stop_local(pid: u32) -> Result<Self, TestEnvError> {
        let failed = |reason: String| TestEnvError::LocalBrokerNotRunning {
            detail: format!("cannot stop the broker (pid {pid}) for an outage: {reason}"),
        };
        let proc_dir = PathBuf::from(format!("/proc/{pid}"));
        let command_line: Vec<String> = std::fs::read(proc_dir.join("cmdline"))
            .map_err(|error| failed(error.to_string()))?
            .split(|byte| *byte == 0)
            .filter(|arg| !arg.is_empty())
            .map(|arg| String::from_utf8_lossy(arg).into_owned())
            .collect();
        let working_dir =
            std::fs::read_link(proc_dir.join("cwd")).map_err(|error| failed(error.to_string()))?;
        if command_line.is_empty() {
            return Err(failed("empty command line".to_owned()));
        }
        run_kill(pid, "-KILL").map_err(failed)?;
        let deadline = Instant::now() + BROKER_PATIENCE;
        while is_running(&proc_dir) {
            if Instant::now() > deadline {
                return Err(failed(format!("still running after {BROKER_PATIENCE:?}")));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        tracing::info!(pid, "local broker stopped for an outage");
        Ok(BrokerOutage {
            kind: OutageKind::Stopped(StoppedBroker {
                command_line,
                working_dir,
            }),
        })
    }
}

impl StoppedBroker {
    /// Starts the broker again as `cargo xtask kafka start` did, and waits
    /// until it accepts connections.
    fn restart(&self) -> Result<(), String> {
        let bootstrap_file = local::bootstrap_file();
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(bootstrap_file.with_file_name("broker.log"))
            .map_err(|error| error.to_string())?;
        let log_err = log.try_clone().map_err(|error| error.to_string())?;
        let child = Command::new(&self.command_line[0])
            .args(&self.command_line[1..])
            .current_dir(&self.working_dir)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .process_group(0)
            .spawn()
            .map_err(|error| error.to_string())?;
        std::fs::write(
            bootstrap_file.with_file_name("broker.pid"),
            child.id().to_string(),
        )
        .map_err(|error| error.to_string())?;
        let deadline = Instant::now() + BROKER_PATIENCE;
        while local::discover().is_err() {
            if Instant::now() > deadline {
                return Err(format!(
                    "not answering {BROKER_PATIENCE:?} after the restart"
                ));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        tracing::info!(
            pid = child.id(),
            "local broker started again after the outage"
        );
        Ok(())
    }
}

impl Drop for BrokerOutage<'_> {
    fn drop(&mut self) {
        match &self.kind {
            OutageKind::Mock(broker) => broker.set_up(true),
            OutageKind::Stopped(stopped) => {
                if let Err(error) = stopped.restart() {
                    tracing::error!(%error, "cannot restart the local broker; run `cargo xtask kafka start`");
                }
            }
        }
    }
}

/// Whether the process of this `/proc` entry still runs. A broker this
/// process restarted earlier stays a zombie (state `Z`) until the test
/// process exits: it counts as gone.
fn is_running(proc_dir: &std::path::Path) -> bool {
    match std::fs::read_to_string(proc_dir.join("stat")) {
        // The state follows the parenthesised command name.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

fn run_kill(pid: u32, signal: &str) -> Result<(), String> {
    let status = Command::new("kill")
        .arg(signal)
        .arg(pid.to_string())
        .status()
        .map_err(|error| error.to_string())?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("kill {signal} {pid}: {status}"))
    }
}

/// While this value lives the broker is frozen: it keeps its connections
/// open but answers nothing, as a process stopped with `SIGSTOP` or a
/// network partition that drops packets. Dropping it thaws the broker.
///
/// - mock cluster: every answer of the broker is delayed by an hour;
/// - local Apache Kafka: the broker process gets `SIGSTOP`, then `SIGCONT`.
#[must_use = "the freeze ends when this value is dropped"]
pub struct BrokerFreeze<'a> {
    kind: FreezeKind<'a>,
}

enum FreezeKind<'a> {
    Mock(&'a MockBroker),
    Stopped(u32),
}

impl std::fmt::Debug for BrokerFreeze<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.kind {
            FreezeKind::Mock(_) => f.write_str("BrokerFreeze(mock broker answers in an hour)"),
            FreezeKind::Stopped(pid) => write!(f, "BrokerFreeze(local broker {pid} stopped)"),
        }
    }
}

impl<'a> BrokerFreeze<'a> {
    pub(crate) fn mock(broker: &'a MockBroker) -> Self {
        broker.set_round_trip_time(Duration::from_secs(3_600));
        BrokerFreeze {
            kind: FreezeKind::Mock(broker),
        }
    }

    /// Stops (`SIGSTOP`) the local broker `pid`.
    pub(crate) fn stop_local(pid: u32) -> Result<Self, TestEnvError> {
        run_kill(pid, "-STOP").map_err(|reason| TestEnvError::LocalBrokerNotRunning {
            detail: format!("cannot freeze the broker (pid {pid}): {reason}"),
        })?;
        tracing::info!(pid, "local broker frozen (SIGSTOP)");
        Ok(BrokerFreeze {
            kind: FreezeKind::Stopped(pid),
        })
    }
}

impl Drop for BrokerFreeze<'_> {
    fn drop(&mut self) {
        match self.kind {
            FreezeKind::Mock(broker) => broker.set_round_trip_time(Duration::ZERO),
            FreezeKind::Stopped(pid) => match run_kill(pid, "-CONT") {
                Ok(()) => tracing::info!(pid, "local broker thawed (SIGCONT)"),
                Err(error) => {
                    tracing::error!(%error, "cannot thaw the local broker; run `kill -CONT {pid}`");
                }
            },
        }
    }
}

/// While this value lives every answer of the mock cluster's broker is
/// delayed (as by a slow network or a loaded broker); dropping it ends the
/// delay. From [`KafkaTestEnv::broker_slowdown`](crate::KafkaTestEnv::broker_slowdown).
#[must_use = "the slowdown ends when this value is dropped"]
pub struct BrokerSlowdown<'a> {
    broker: &'a MockBroker,
}

impl std::fmt::Debug for BrokerSlowdown<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BrokerSlowdown(mock broker answers late)")
    }
}

impl<'a> BrokerSlowdown<'a> {
    pub(crate) fn mock(broker: &'a MockBroker, delay: Duration) -> Self {
        broker.set_round_trip_time(delay);
        BrokerSlowdown { broker }
    }
}

impl Drop for BrokerSlowdown<'_> {
    fn drop(&mut self) {
        self.broker.set_round_trip_time(Duration::ZERO);
    }
}
