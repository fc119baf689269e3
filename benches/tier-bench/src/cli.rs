//! The parent's command line (the child's is one JSON argument, see [`crate::child`]).

use std::path::PathBuf;

use anyhow::{Context, Result, bail};

use crate::contender::Contender;
use crate::plan::Scenario;

const USAGE: &str = "\
usage: tier-bench [--quick] [--brokers HOST:PORT [--broker-name TEXT]] [--reps N]
                  [--only SCENARIO,...] [--contenders NAME,...] [--set PROPERTY=VALUE]...
                  [--java-classpath CLASSPATH] [--out DIR]

  --quick               small sizes, one repetition: every scenario well under a minute
  --brokers HOST:PORT   use this Kafka instead of librdkafka's embedded mock cluster
  --broker-name TEXT    how to name that broker in the report (default: external)
  --reps N              repetitions of each throughput run; the median is reported
                        (default 3, 1 with --quick)
  --only LIST           run only these scenarios: drain, backlog, processing, latency, idle,
                        concurrent
  --contenders LIST     run only these contenders: raw, rawconvert, rdstream, legacy,
                        standard, standard-noheaders, standard-metrics, buffered32,
                        buffered128, dedicated, batches256, dedicated-batches256, dyn,
                        java-cold, java-warm, kcat, process-{partition,key,unordered}-{100,1000}
                        (the default is all of them; the Java ones need
                        --java-classpath and a real broker; the process ones run in
                        concurrent only, where standard is their baseline)
  --set PROPERTY=VALUE  an extra librdkafka property for every contender (repeatable)
  --java-classpath CP   the compiled benches/java-consumer and the kafka-clients
                        jars (cargo xtask bench builds it)
  --out DIR             where to write bench.json, bench.md and the SVG charts
                        (default: <workspace>/target/bench)";

/// What the parent was asked to do.
#[derive(Debug, Clone)]
pub(crate) struct Options {
    /// An external broker; `None` starts the embedded mock cluster.
    pub(crate) brokers: Option<String>,
    /// How to name the external broker in the report.
    pub(crate) broker_name: Option<String>,
    /// Small sizes and one repetition.
    pub(crate) quick: bool,
    /// Repetitions of each throughput run.
    pub(crate) reps: usize,
    /// The scenarios to run, in the order of [`Scenario::ALL`].
    pub(crate) scenarios: Vec<Scenario>,
    /// The contenders to run, in report order.
    pub(crate) contenders: Vec<Contender>,
    /// Extra librdkafka properties for every contender.
    pub(crate) properties: Vec<(String, String)>,
    /// Where the Java contender's class and the kafka-clients jars are.
    pub(crate) java_classpath: Option<String>,
    /// The output directory.
    pub(crate) out: PathBuf,
}

impl Options {
    /// Parses the parent's arguments (without the program name).
    pub(crate) fn parse(args: &[String]) -> Result<Options> {
        let mut options = Options {
            brokers: None,
            broker_name: None,
            quick: false,
            reps: 0,
            scenarios: Scenario::ALL.to_vec(),
            contenders: Contender::all(),
            properties: Vec::new(),
            java_classpath: None,
            out: default_out_dir(),
        };
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            let mut value = |name: &str| {
                args.next()
                    .cloned()
                    .with_context(|| format!("{name} needs a value\n{USAGE}"))
            };
            match arg.as_str() {
                "--quick" => options.quick = true,
                "--brokers" => options.brokers = Some(value("--brokers")?),
                "--broker-name" => options.broker_name = Some(value("--broker-name")?),
                "--reps" => {
                    options.reps = value("--reps")?
                        .parse()
                        .context("--reps needs a positive number")?;
                    if options.reps == 0 {
                        bail!("--reps needs a positive number");
                    }
                }
                "--only" => {
                    let list = value("--only")?;
                    let mut wanted = Vec::new();
                    for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
                        wanted.push(Scenario::parse(name).with_context(|| USAGE.to_owned())?);
                    }
                    options.scenarios = Scenario::ALL
                        .into_iter()
                        .filter(|s| wanted.contains(s))
                        .collect();
                }
                "--contenders" => {
                    let list = value("--contenders")?;
                    let mut wanted = Vec::new();
                    for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
                        wanted.push(Contender::parse(name).with_context(|| USAGE.to_owned())?);
                    }
                    options.contenders = Contender::all()
                        .into_iter()
                        .filter(|c| wanted.contains(c))
                        .collect();
                    if options.contenders.is_empty() {
                        bail!("--contenders selected no contender\n{USAGE}");
                    }
                }
                "--set" => {
                    let pair = value("--set")?;
                    let Some((property, setting)) = pair.split_once('=') else {
                        bail!("--set needs PROPERTY=VALUE, not {pair:?}");
                    };
                    options
                        .properties
                        .push((property.trim().to_owned(), setting.trim().to_owned()));
                }
                "--java-classpath" => {
                    options.java_classpath = Some(value("--java-classpath")?);
                }
                "--out" => options.out = PathBuf::from(value("--out")?),
                "-h" | "--help" => {
                    println!("{USAGE}");
                    std::process::exit(0);
                }
                other => bail!("unknown argument {other:?}\n{USAGE}"),
            }
        }
        if options.reps == 0 {
            options.reps = if options.quick { 1 } else { 3 };
        }
        if options.scenarios.is_empty() {
            bail!("--only selected no scenario\n{USAGE}");
        }
        Ok(options)
    }
}

/// `<workspace>/target/bench`, or `$CARGO_TARGET_DIR/bench`.
fn default_out_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir).join("bench"),
        _ => {
            let manifest = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
            manifest
                .ancestors()
                .nth(2)
                .unwrap_or(manifest)
                .join("target")
                .join("bench")
        }
    }
}
