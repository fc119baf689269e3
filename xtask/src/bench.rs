//! `cargo xtask bench`: the consumer benchmark of issue 6.
//!
//! The measuring lives in its own workspace member, `benches/tier-bench`, so
//! that this task runner stays lean: this module builds and runs it in release
//! mode (`cargo run --release -p tier-bench -- ...`), choosing the broker:
//!
//! - `--kafka mock` (the default): librdkafka's embedded mock cluster, started
//!   inside the benchmark process;
//! - `--kafka local`: real Apache Kafka from [`crate::kafka::start`] (reused
//!   when it already runs, and left running afterwards);
//! - `--brokers host:port`: an external broker.
//!
//! On a real broker, the Java `KafkaConsumer` runs beside our consumers:
//! `benches/java-consumer` is compiled with `javac` against the
//! `kafka-clients` 4.4.0 jar that `cargo xtask kafka start` resolves
//! (whatever version an external broker runs) into `<target>/java-bench/`;
//! when `javac` or the jars are missing, or it does not compile, it is left
//! out, with a note.
//!
//! Results land in `<target>/bench/`: `bench.json` (every figure),
//! `bench.md` (the tables) and `throughput.svg` / `latency.svg`.

use std::{
    ffi::OsString,
    process::{Command, ExitCode, Stdio},
};

use anyhow::{Context, Result, bail};

use crate::{flags, kafka, project_root, target_dir};

/// Runs `cargo xtask bench`.
pub(crate) fn run(flags: flags::Bench) -> Result<ExitCode> {
    let mut args: Vec<OsString> = Vec::new();
    let real_broker =
        matches!(flags.kafka, Some(flags::BenchKafka::Local)) || flags.brokers.is_some();
    match (flags.kafka, &flags.brokers) {
        (Some(_), Some(_)) => bail!("give either --kafka or --brokers, not both"),
        (None | Some(flags::BenchKafka::Mock), None) => {}
        (Some(flags::BenchKafka::Local), None) => {
            let bootstrap = kafka::start().context("starting real Apache Kafka")?;
            args.extend([
                "--brokers".into(),
                bootstrap.into(),
                "--broker-name".into(),
                format!("local Apache Kafka {}", kafka::KAFKA_VERSION).into(),
            ]);
        }
        (None, Some(brokers)) => args.extend(["--brokers".into(), brokers.into()]),
    }
    if flags.quick {
        args.push("--quick".into());
    }
    if let Some(only) = &flags.only {
        args.extend(["--only".into(), only.into()]);
    }
    if let Some(contenders) = &flags.contenders {
        args.extend(["--contenders".into(), contenders.into()]);
    }
    if let Some(reps) = flags.reps {
        args.extend(["--reps".into(), reps.to_string().into()]);
    }
    for property in &flags.set {
        args.extend(["--set".into(), property.into()]);
    }
    // Compiled only when a run can use it: backlog, with a Java contender.
    let wants_java = flags
        .only
        .as_deref()
        .is_none_or(|only| only.contains("backlog"))
        && flags
            .contenders
            .as_deref()
            .is_none_or(|contenders| contenders.contains("java"));
    if real_broker && wants_java {
        match java_contender()? {
            Ok(classpath) => args.extend(["--java-classpath".into(), classpath]),
            Err(reason) => eprintln!("xtask: no Java contender: {reason}"),
        }
    }
    args.extend(["--out".into(), target_dir()?.join("bench").into()]);

    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(project_root())
        .args(["run", "--release", "--package", "tier-bench", "--"])
        .args(&args);
    let shown: Vec<String> = args
        .iter()
        .map(|arg| arg.to_string_lossy().into_owned())
        .collect();
    eprintln!(
        "xtask: cargo run --release --package tier-bench -- {}",
        shown.join(" ")
    );
    let status = cmd.status().context("running `cargo run -p tier-bench`")?;
    Ok(if status.success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Compiles the Java contender: its classpath for `tier-bench
/// --java-classpath`, or why there is none.
fn java_contender() -> Result<Result<OsString, String>> {
    let Some(libs) = kafka::resolved_libs()? else {
        return Ok(Err(
            "the Kafka jars are not resolved yet (`cargo xtask kafka start` resolves them)".into(),
        ));
    };
    let classes = target_dir()?.join("java-bench");
    let jars = libs.join("*");
    let source = project_root().join("benches/java-consumer/ConsumerBench.java");
    let compiled = Command::new("javac")
        .arg("-d")
        .arg(&classes)
        .arg("-cp")
        .arg(&jars)
        .arg(&source)
        .stdin(Stdio::null())
        .status();
    match compiled {
        Ok(status) if status.success() => {
            let mut classpath = classes.into_os_string();
            classpath.push(":");
            classpath.push(jars);
            Ok(Ok(classpath))
        }
        Ok(status) => Ok(Err(format!(
            "javac failed on {} ({status})",
            source.display()
        ))),
        Err(error) => Ok(Err(format!("cannot run javac: {error}"))),
    }
}
