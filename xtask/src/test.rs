//! `cargo xtask test`: every test phase, one after the other, with a summary.
//!
//! 1. `unit`: unit tests and doctests of the whole workspace;
//! 2. `mock`: the integration tests (`--test '*'`) with
//!    `KAFKA_TEST_BROKER=mock`, against librdkafka's embedded mock cluster;
//! 3. `local`: the same integration tests with `KAFKA_TEST_BROKER=local`,
//!    against real Apache Kafka from [`crate::kafka::start_with`], with the
//!    secured listeners of `cargo xtask kafka start --secure` for the tests
//!    that need them. When Kafka cannot start, this phase fails if
//!    `KAFKA_REQUIRED=1` and is skipped with a loud warning otherwise;
//! 4. `cluster`: the `cluster_*` integration tests with
//!    `KAFKA_TEST_BROKER=cluster`, against the three-node cluster of
//!    [`crate::kafka::cluster`], started for the phase and stopped after it
//!    (the same rule when it cannot start).
//!
//! With both `mock` and `local`, the mock phase runs beside the local one
//! (its output goes to `target/xtask-test-mock.log` and is shown after the
//! local phase's): their test binaries mostly wait, so the two take little
//! longer than one.
//!
//! Cargo's output streams to the terminal while the `test result:` lines are
//! summed per phase; the run ends with the line `N passed, M failed` and exits
//! non-zero when any phase failed.

use std::{
    ffi::OsString,
    io::{self, Read, Write},
    ops::AddAssign,
    path::Path,
    process::{Command, ExitCode, Stdio},
};

use anyhow::{Context, Result};

use crate::{flags, kafka, project_root, stall};

/// Runs `cargo xtask test`.
/// What `cargo test` covers in most steps.
const WORKSPACE: &[&str] = &["--workspace"];

pub(crate) fn run(flags: flags::Test) -> Result<ExitCode> {
    let broker = flags.broker.unwrap_or(flags::Broker::All);
    let kafka_required = std::env::var("KAFKA_REQUIRED").is_ok_and(|value| value == "1");
    let mut phases = Vec::new();

    let mut unit = Phase::new("unit");
    header("unit tests");
    unit.cargo_test(WORKSPACE, &["--lib", "--bins"], None, &flags.args)?;
    header("doctests");
    unit.cargo_test(WORKSPACE, &["--doc"], None, &flags.args)?;
    // consumer-fast's offset book and poll gate on loom's primitives; only
    // its `loom_` tests can run in that build. A name filter of the user's
    // picks its own tests instead.
    if flags.args.is_empty() {
        header("model checks of the generation protocol (loom)");
        unit.cargo_test(
            &["--package", "consumer-fast", "--features", "loom"],
            &["--lib"],
            None,
            &[OsString::from("loom_")],
        )?;
    }
    phases.push(unit);

    let integration_tests = has_integration_tests()?;
    // With both, the mock phase runs beside the local one: each test binary
    // mostly waits (for brokers, rebalances, timeouts), so two at a time
    // take little more than one, and the mock's clusters live inside the
    // test processes, out of reach of the local phase's broker outages.
    let mock_beside_local = broker.mock() && broker.local() && integration_tests;
    let mut background_mock = None;
    if mock_beside_local {
        header("building the integration tests once for both phases");
        prebuild_integration_tests()?;
        let log = project_root().join("target").join("xtask-test-mock.log");
        header(&format!(
            "integration tests against the embedded mock cluster (KAFKA_TEST_BROKER=mock), beside the local phase; \
             output to {} and shown after the local phase",
            log.display()
        ));
        let args = flags.args.clone();
        background_mock = Some((
            log.clone(),
            std::thread::spawn(move || -> Result<Phase> {
                let mut mock = Phase::new("mock");
                mock.integration_tests_to(true, "mock", &args, Some(&log))?;
                Ok(mock)
            }),
        ));
    } else if broker.mock() {
        let mut mock = Phase::new("mock");
        header("integration tests against the embedded mock cluster (KAFKA_TEST_BROKER=mock)");
        mock.integration_tests(integration_tests, "mock", &flags.args)?;
        phases.push(mock);
    }

    if broker.local() {
        let mut local = Phase::new("local");
        header("starting real Apache Kafka (cargo xtask kafka start --secure)");
        match kafka::start_with(kafka::Listeners::Secure) {
            Ok(bootstrap) => {
                header(&format!(
                    "integration tests against real Apache Kafka at {bootstrap} (KAFKA_TEST_BROKER=local)"
                ));
                local.integration_tests(integration_tests, "local", &flags.args)?;
            }
            Err(err) => local.broker_not_started("real Apache Kafka", &err, kafka_required),
        }
        if let Some((log, mock)) = background_mock.take() {
            let mock = mock
                .join()
                .map_err(|_| anyhow::anyhow!("the thread running the mock phase panicked"))??;
            header(&format!(
                "the mock phase's output (KAFKA_TEST_BROKER=mock, ran beside the local phase; {})",
                log.display()
            ));
            let shown = std::fs::read_to_string(&log)
                .with_context(|| format!("reading {}", log.display()))?;
            print!("{shown}");
            phases.push(mock);
        }
        phases.push(local);
    }

    if broker.cluster() {
        phases.push(cluster_phase(kafka_required, &flags.args)?);
    }

    if flags.stop_kafka {
        header("stopping real Apache Kafka (--stop-kafka)");
        kafka::stop()?;
    }

    header("summary");
    let mut total = Counts::default();
    let mut ok = true;
    for phase in &phases {
        println!("{}", phase.summary());
        total += phase.counts;
        ok &= phase.errors.is_empty() && phase.counts.failed == 0;
    }
    for phase in &phases {
        for error in &phase.errors {
            println!("FAILED ({}): {error}", phase.name);
        }
    }
    // The closing line, alone and in this exact form, is what CI reads.
    println!("{} passed, {} failed", total.passed, total.failed);
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The `cluster` phase: starts the three-node cluster, runs the `cluster_*`
/// integration tests against it with `KAFKA_TEST_BROKER=cluster`, and stops
/// it again (it is not worth its memory between runs). Like the `local`
/// phase, a cluster that cannot start fails the phase under
/// `KAFKA_REQUIRED=1` and is skipped with a loud warning otherwise.
fn cluster_phase(kafka_required: bool, args: &[OsString]) -> Result<Phase> {
    let started = std::time::Instant::now();
    let mut phase = Phase::new("cluster");
    header(&format!(
        "starting a {}-node Apache Kafka cluster (cargo xtask kafka start --nodes {})",
        kafka::cluster::NODES,
        kafka::cluster::NODES
    ));
    match kafka::cluster::start() {
        Ok(bootstrap) => {
            header(&format!(
                "cluster tests against the {}-node Apache Kafka cluster at {bootstrap} (KAFKA_TEST_BROKER=cluster)",
                kafka::cluster::NODES
            ));
            phase.cargo_test(WORKSPACE, &["--test", "cluster_*"], Some("cluster"), args)?;
        }
        Err(err) => phase.broker_not_started("the Apache Kafka cluster", &err, kafka_required),
    }
    header("stopping the Apache Kafka cluster (cargo xtask kafka stop --nodes 3)");
    if let Err(err) = kafka::cluster::stop() {
        phase.errors.push(format!(
            "the Apache Kafka cluster could not be stopped: {err:#}"
        ));
    }
    println!(
        "cluster phase: {:.0} s, the cluster's start and stop included",
        started.elapsed().as_secs_f64()
    );
    Ok(phase)
}

/// One phase of the run and what it found.
struct Phase {
    /// `unit`, `mock`, `local` or `cluster`.
    name: &'static str,
    /// Test counts summed over every `test result:` line.
    counts: Counts,
    /// Commands that failed, and other reasons the phase failed.
    errors: Vec<String>,
    /// Why the phase did not run, when that is not a failure.
    skipped: Option<String>,
}

impl Phase {
    /// `broker` could not be started: the phase fails under
    /// `KAFKA_REQUIRED=1`, and is skipped with a loud warning otherwise.
    fn broker_not_started(&mut self, broker: &str, err: &anyhow::Error, kafka_required: bool) {
        if kafka_required {
            eprintln!("error: KAFKA_REQUIRED=1 but {broker} could not be started: {err:#}");
            self.errors
                .push(format!("{broker} could not be started: {err:#}"));
        } else {
            let reason = format!("{err:#}");
            eprintln!();
            eprintln!("{}", "!".repeat(78));
            eprintln!("WARNING: {broker} was NOT tested: {reason}");
            eprintln!("(set KAFKA_REQUIRED=1 to make this an error)");
            eprintln!("{}", "!".repeat(78));
            self.skipped = Some(reason);
        }
    }

    fn new(name: &'static str) -> Phase {
        Phase {
            name,
            counts: Counts::default(),
            errors: Vec::new(),
            skipped: None,
        }
    }

    /// Runs the integration tests, if the workspace has any, with
    /// `KAFKA_TEST_BROKER=broker`.
    fn integration_tests(&mut self, present: bool, broker: &str, args: &[OsString]) -> Result<()> {
        self.integration_tests_to(present, broker, args, None)
    }

    /// [`integration_tests`](Self::integration_tests), the output going to
    /// `log` instead of the terminal when given.
    fn integration_tests_to(
        &mut self,
        present: bool,
        broker: &str,
        args: &[OsString],
        log: Option<&Path>,
    ) -> Result<()> {
        if present {
            self.cargo_test_to(WORKSPACE, &["--test", "*"], Some(broker), args, log)
        } else {
            println!("no integration test targets in the workspace yet; nothing to run");
            Ok(())
        }
    }

    /// Runs `cargo test <scope> --no-fail-fast <targets> [-- <args>]`,
    /// streaming its output and adding its `test result:` lines to this
    /// phase.
    fn cargo_test(
        &mut self,
        scope: &[&str],
        targets: &[&str],
        broker: Option<&str>,
        args: &[OsString],
    ) -> Result<()> {
        self.cargo_test_to(scope, targets, broker, args, None)
    }

    /// [`cargo_test`](Self::cargo_test), its output (stdout and stderr)
    /// going to `log` instead of the terminal when given.
    fn cargo_test_to(
        &mut self,
        scope: &[&str],
        targets: &[&str],
        broker: Option<&str>,
        args: &[OsString],
        log: Option<&Path>,
    ) -> Result<()> {
        let mut cmd = Command::new(cargo());
        cmd.current_dir(project_root())
            // Every test binary runs even when an earlier one fails, so the
            // summary covers them all.
            .arg("test")
            .args(scope)
            .arg("--no-fail-fast")
            .args(targets);
        if !args.is_empty() {
            cmd.arg("--").args(args);
        }
        let mut shown = String::from("cargo test");
        for arg in scope.iter().chain(&["--no-fail-fast"]).chain(targets) {
            shown.push(' ');
            shown.push_str(&shell_quote(arg));
        }
        if !args.is_empty() {
            shown.push_str(" --");
            for arg in args {
                shown.push(' ');
                shown.push_str(&shell_quote(&arg.to_string_lossy()));
            }
        }
        if let Some(broker) = broker {
            cmd.env("KAFKA_TEST_BROKER", broker);
            shown = format!("KAFKA_TEST_BROKER={broker} {shown}");
        }
        println!("$ {shown}");

        let log = match log {
            Some(path) => Some(
                std::fs::File::create(path)
                    .with_context(|| format!("creating {}", path.display()))?,
            ),
            None => None,
        };
        if let Some(file) = &log {
            cmd.stderr(file.try_clone().context("the log file for stderr")?);
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .spawn()
            .with_context(|| format!("running `{shown}`"))?;
        let last_output = stall::LastOutput::new();
        let reader = child.stdout.take().map(|stdout| {
            let last_output = last_output.clone();
            std::thread::spawn(move || match log {
                Some(file) => tee_and_count(stdout, file, &last_output),
                None => tee_and_count(stdout, io::stdout(), &last_output),
            })
        });
        // On this thread: cargo's exit, and any test binary that hangs.
        let stalls = stall::watch(
            &mut child,
            &last_output,
            stall::STALL_LIMIT,
            stall::is_cargo_test_binary,
        )
        .with_context(|| format!("waiting for `{shown}`"))?;
        let status = child
            .wait()
            .with_context(|| format!("waiting for `{shown}`"))?;
        let counts = match reader {
            Some(reader) => reader
                .join()
                .map_err(|_| anyhow::anyhow!("the thread reading `{shown}` panicked"))?
                .with_context(|| format!("reading the output of `{shown}`"))?,
            None => Counts::default(),
        };
        self.counts += counts;
        for stalled in &stalls {
            self.errors.push(format!(
                "{} printed nothing for {} s and was killed as hung (its stacks are above)",
                stalled.program.display(),
                stall::STALL_LIMIT.as_secs()
            ));
        }
        if !status.success() {
            // A test binary that crashed or was killed prints no `test
            // result:` line: count it as a failure all the same.
            if counts.failed == 0 {
                self.counts.failed += 1;
            }
            self.errors.push(format!("`{shown}` failed ({status})"));
        }
        Ok(())
    }

    /// One line for the summary.
    fn summary(&self) -> String {
        let Counts {
            passed,
            failed,
            ignored,
        } = self.counts;
        let mut line = format!(
            "{:<6} {passed} passed; {failed} failed; {ignored} ignored",
            format!("{}:", self.name)
        );
        if let Some(reason) = &self.skipped {
            line.push_str(&format!(" (NOT RUN: {reason})"));
        } else if !self.errors.is_empty() {
            line.push_str(" (FAILED)");
        }
        line
    }
}

/// Test counts, as cargo's test harness reports them.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Counts {
    passed: u64,
    failed: u64,
    ignored: u64,
}

impl AddAssign for Counts {
    fn add_assign(&mut self, other: Counts) {
        self.passed += other.passed;
        self.failed += other.failed;
        self.ignored += other.ignored;
    }
}

/// Parses a harness line such as
/// `test result: ok. 5 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.01s`.
fn parse_test_result(line: &str) -> Option<Counts> {
    let rest = line.trim().strip_prefix("test result: ")?;
    let (_outcome, rest) = rest.split_once(". ")?;
    let mut counts = Counts::default();
    for part in rest.split(';') {
        let Some((number, what)) = part.trim().split_once(' ') else {
            continue;
        };
        let Ok(number) = number.parse() else {
            continue;
        };
        match what {
            "passed" => counts.passed = number,
            "failed" => counts.failed = number,
            "ignored" => counts.ignored = number,
            _ => {}
        }
    }
    Some(counts)
}

/// Copies `input` to `output` as it arrives, and sums the `test result:`
/// lines in it.
fn tee_and_count(
    mut input: impl Read,
    mut output: impl Write,
    last_output: &stall::LastOutput,
) -> io::Result<Counts> {
    let mut counts = Counts::default();
    let mut buf = [0; 8192];
    let mut line = Vec::new();
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(err),
        };
        last_output.touch();
        output.write_all(&buf[..n])?;
        output.flush()?;
        for &byte in &buf[..n] {
            if byte == b'\n' {
                counts += parse_test_result(&String::from_utf8_lossy(&line)).unwrap_or_default();
                line.clear();
            } else {
                line.push(byte);
            }
        }
    }
    counts += parse_test_result(&String::from_utf8_lossy(&line)).unwrap_or_default();
    Ok(counts)
}

/// Builds every integration test target (`cargo test --workspace --test '*'
/// --no-run`), so that two phases started side by side do not both build.
fn prebuild_integration_tests() -> Result<()> {
    let status = Command::new(cargo())
        .current_dir(project_root())
        .args(["test", "--workspace", "--test", "*", "--no-run"])
        .status()
        .context("running `cargo test --workspace --test '*' --no-run`")?;
    anyhow::ensure!(
        status.success(),
        "`cargo test --workspace --test '*' --no-run` failed ({status})"
    );
    Ok(())
}

/// Whether any workspace member has an integration test target
/// (`cargo test --test '*'` fails when none has).
fn has_integration_tests() -> Result<bool> {
    let output = Command::new(cargo())
        .current_dir(project_root())
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .stderr(Stdio::inherit())
        .output()
        .context("running `cargo metadata`")?;
    anyhow::ensure!(
        output.status.success(),
        "`cargo metadata` failed ({})",
        output.status
    );
    // Compact JSON: a test target reads `"kind":["test"]`.
    Ok(String::from_utf8_lossy(&output.stdout).contains(r#""kind":["test"]"#))
}

/// The cargo that runs this xtask, or `cargo` from `PATH`.
fn cargo() -> OsString {
    std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into())
}

/// `arg` as a shell would need it typed, for the commands we echo.
fn shell_quote(arg: &str) -> String {
    let plain = !arg.is_empty()
        && arg
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c));
    if plain {
        arg.to_owned()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}

/// Prints a phase header.
fn header(title: &str) {
    println!("\n==> {title}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_passing_and_failing_results() {
        assert_eq!(
            parse_test_result(
                "test result: ok. 5 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.01s"
            ),
            Some(Counts {
                passed: 5,
                failed: 0,
                ignored: 1
            })
        );
        assert_eq!(
            parse_test_result(
                "test result: FAILED. 3 passed; 2 failed; 0 ignored; 0 measured; 4 filtered out; finished in 1.20s"
            ),
            Some(Counts {
                passed: 3,
                failed: 2,
                ignored: 0
            })
        );
        assert_eq!(parse_test_result("test foo ... ok"), None);
        assert_eq!(parse_test_result("running 5 tests"), None);
    }

    #[test]
    fn tee_copies_everything_and_sums_results() {
        let input = "running 1 test\ntest a ... ok\n\n\
                     test result: ok. 1 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.00s\n\
                     test result: FAILED. 2 passed; 1 failed; 3 ignored; 0 measured; 0 filtered out; finished in 0.00s";
        let mut output = Vec::new();
        let counts = tee_and_count(input.as_bytes(), &mut output, &stall::LastOutput::new())
            .expect("in-memory I/O");
        assert_eq!(output, input.as_bytes());
        assert_eq!(
            counts,
            Counts {
                passed: 3,
                failed: 1,
                ignored: 3
            }
        );
    }

    #[test]
    fn shell_quote_quotes_only_what_needs_it() {
        assert_eq!(shell_quote("--lib"), "--lib");
        assert_eq!(shell_quote("*"), "'*'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
    }

    #[test]
    fn summary_marks_skipped_and_failed_phases() {
        let mut phase = Phase::new("local");
        phase.skipped = Some("no java".into());
        assert_eq!(
            phase.summary(),
            "local: 0 passed; 0 failed; 0 ignored (NOT RUN: no java)"
        );
        let mut phase = Phase::new("unit");
        phase.errors.push("boom".into());
        assert_eq!(
            phase.summary(),
            "unit:  0 passed; 0 failed; 0 ignored (FAILED)"
        );
    }
}
