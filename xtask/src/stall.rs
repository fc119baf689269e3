//! The hang watchdog of `cargo xtask test`: a test binary that prints nothing
//! on stdout (where libtest reports) for [`STALL_LIMIT`] is taken for hung. Its threads' stacks are printed
//! (with `gdb` when it is installed, else each thread's name and kernel wait
//! channel) and it is killed, so the run goes on to the next binary and ends
//! with a failure that says where the hang was, instead of running until CI's
//! own time limit kills everything without a word.
//!
//! Linux only: processes are found through `/proc`. Elsewhere nothing is
//! ever taken for hung.

use std::{
    collections::{HashMap, HashSet},
    fs,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

/// How long a running test binary may print nothing. The slowest single test
/// takes about two minutes on real Kafka, and libtest itself reports a test
/// that runs for over a minute: ten minutes of silence is a hang, not a slow
/// test.
pub(crate) const STALL_LIMIT: Duration = Duration::from_secs(600);
/// How often the watchdog looks.
const TICK: Duration = Duration::from_secs(2);
/// How long `gdb` may take to print the stacks.
const GDB_PATIENCE: Duration = Duration::from_secs(60);

/// When output was last seen, shared between the thread that reads the
/// output and the watchdog.
#[derive(Debug, Clone)]
pub(crate) struct LastOutput {
    start: Instant,
    millis: Arc<AtomicU64>,
}

impl LastOutput {
    /// No output yet: the clock starts now.
    pub(crate) fn new() -> Self {
        LastOutput {
            start: Instant::now(),
            millis: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Output arrived now.
    pub(crate) fn touch(&self) {
        let now = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.millis.store(now, Ordering::Relaxed);
    }

    fn at(&self) -> Instant {
        self.start + Duration::from_millis(self.millis.load(Ordering::Relaxed))
    }
}

/// A test process killed for printing nothing for too long.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Stall {
    /// Its process id.
    pub(crate) pid: u32,
    /// The test binary it ran.
    pub(crate) program: PathBuf,
}

/// Waits for `child` to exit. Meanwhile, a descendant of it whose program
/// `is_test` accepts, and that has run with no output for `limit` (counted
/// from its start or the last output, whichever is later), has its stacks
/// printed and is killed. Returns what was killed.
pub(crate) fn watch(
    child: &mut Child,
    output: &LastOutput,
    limit: Duration,
    is_test: impl Fn(&Path) -> bool,
) -> std::io::Result<Vec<Stall>> {
    let mut first_seen: HashMap<u32, Instant> = HashMap::new();
    let mut killed = Vec::new();
    while child.try_wait()?.is_none() {
        thread::sleep(TICK);
        let tests: Vec<(u32, PathBuf)> = descendants(child.id())
            .into_iter()
            .filter_map(|pid| Some((pid, program(pid)?)))
            .filter(|(_, program)| is_test(program))
            .collect();
        let running: HashSet<u32> = tests.iter().map(|(pid, _)| *pid).collect();
        first_seen.retain(|pid, _| running.contains(pid));
        for (pid, program) in tests {
            let since = *first_seen.entry(pid).or_insert_with(Instant::now);
            if since.max(output.at()).elapsed() < limit {
                continue;
            }
            println!(
                "\n!!! {} (pid {pid}) printed nothing for {} s: taken for hung. Its threads:",
                program.display(),
                limit.as_secs()
            );
            let started = start_time(pid);
            print_stacks(pid);
            // Killed only if it is still the same process (its pid not
            // reused by another since it was found).
            if started.is_some() && start_time(pid) == started {
                let _ = Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .status();
                println!("!!! killed pid {pid}; the run goes on\n");
            }
            first_seen.remove(&pid);
            killed.push(Stall { pid, program });
        }
    }
    Ok(killed)
}

/// Prints every thread's stack of `pid` with `gdb` when it is installed, then
/// each thread's name and what it waits on in the kernel.
fn print_stacks(pid: u32) {
    let gdb = Command::new("gdb")
        .args(["--batch", "--quiet", "-p", &pid.to_string()])
        .args(["-ex", "thread apply all bt"])
        .stdin(Stdio::null())
        .spawn();
    if let Ok(mut gdb) = gdb {
        let deadline = Instant::now() + GDB_PATIENCE;
        let finished = loop {
            match gdb.try_wait() {
                Ok(Some(_)) => break true,
                Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(200)),
                Ok(None) | Err(_) => break false,
            }
        };
        if !finished {
            let _ = gdb.kill();
            let _ = gdb.wait();
            println!("(gdb did not finish within {} s)", GDB_PATIENCE.as_secs());
        }
    } else {
        println!("(gdb is not installed)");
    }
    // Also when gdb could not attach (no ptrace permission): names and
    // kernel wait channels at least.
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return;
    };
    for task in tasks.flatten() {
        let path = task.path();
        let read = |name: &str| {
            fs::read_to_string(path.join(name))
                .map(|text| text.trim().to_owned())
                .unwrap_or_default()
        };
        println!(
            "  thread {} {:?} waiting in {:?}",
            task.file_name().to_string_lossy(),
            read("comm"),
            read("wchan")
        );
    }
}

/// Every process below `root`, from `/proc`.
fn descendants(root: u32) -> Vec<u32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|name| name.parse().ok())
        else {
            continue;
        };
        let Some(parent) = fs::read_to_string(entry.path().join("stat"))
            .ok()
            .and_then(|stat| parent_pid(&stat))
        else {
            continue;
        };
        children.entry(parent).or_default().push(pid);
    }
    let mut found = Vec::new();
    let mut next = vec![root];
    while let Some(pid) = next.pop() {
        for &child in children.get(&pid).into_iter().flatten() {
            found.push(child);
            next.push(child);
        }
    }
    found
}

/// When `pid` started (`/proc/PID/stat` field 22, in clock ticks since boot),
/// which tells a process from a later one that reuses its pid.
fn start_time(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    // `rest` starts at field 3 (the state).
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// The parent pid in a `/proc/PID/stat` line: the second field after the
/// program name, which is in parentheses and may itself hold spaces and
/// parentheses.
fn parent_pid(stat: &str) -> Option<u32> {
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// The program `pid` runs.
fn program(pid: u32) -> Option<PathBuf> {
    fs::read_link(format!("/proc/{pid}/exe")).ok()
}

/// Whether `program` is a test binary Cargo built: `<target>/<profile>/deps/<name>-<hash>`.
pub(crate) fn is_cargo_test_binary(program: &Path) -> bool {
    program
        .parent()
        .and_then(Path::file_name)
        .is_some_and(|dir| dir == "deps")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parent_pid_reads_past_a_name_with_spaces_and_parentheses() {
        assert_eq!(parent_pid("42 (cargo) S 7 42 42 0"), Some(7));
        assert_eq!(parent_pid("43 (a b) c)) R 9 43 43 0"), Some(9));
        assert_eq!(parent_pid("garbage"), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_process_has_a_start_time() {
        let me = std::process::id();
        assert!(start_time(me).is_some());
        assert_eq!(start_time(me), start_time(me));
    }

    #[test]
    fn test_binaries_are_the_ones_in_deps() {
        assert!(is_cargo_test_binary(Path::new(
            "/w/target/debug/deps/consumer_contract-07f45a553ef0fb0a"
        )));
        assert!(!is_cargo_test_binary(Path::new("/usr/bin/cargo")));
        assert!(!is_cargo_test_binary(Path::new("/w/target/debug/xtask")));
    }

    /// A silent grandchild is found, reported and killed; its parent then
    /// exits and `watch` returns.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_silent_descendant_is_killed() {
        let mut child = Command::new("sh")
            .args(["-c", "sleep 120; exit 0"])
            .spawn()
            .expect("sh runs");
        let started = Instant::now();
        let killed = watch(
            &mut child,
            &LastOutput::new(),
            Duration::from_secs(1),
            |program| program.file_name().is_some_and(|name| name == "sleep"),
        )
        .expect("watch");
        assert_eq!(killed.len(), 1, "{killed:?}");
        assert!(killed[0].program.ends_with("sleep"));
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "took {:?}",
            started.elapsed()
        );
    }

    /// A descendant that keeps printing is left alone.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_descendant_that_prints_is_left_alone() {
        let output = LastOutput::new();
        let mut child = Command::new("sh")
            .args(["-c", "sleep 5"])
            .spawn()
            .expect("sh runs");
        let toucher = {
            let output = output.clone();
            thread::spawn(move || {
                for _ in 0..30 {
                    output.touch();
                    thread::sleep(Duration::from_millis(200));
                }
            })
        };
        let killed = watch(&mut child, &output, Duration::from_secs(3), |program| {
            program.file_name().is_some_and(|name| name == "sleep")
        })
        .expect("watch");
        toucher.join().expect("toucher");
        assert_eq!(killed, Vec::new());
    }
}
