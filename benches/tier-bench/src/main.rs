//! `tier-bench`: the program behind `cargo xtask bench`.
//!
//! It compares every way to consume Kafka in this workspace, side by side,
//! against the ceiling of a raw rdkafka `BaseConsumer` poll loop.
//!
//! # How it runs
//!
//! The parent process ([`orchestrate`]) owns the broker (librdkafka's
//! embedded mock cluster unless `--brokers` names one), fills the topics once,
//! then runs every (case, contender) pair in a **child process** of this same
//! binary (`tier-bench child <spec>`, see [`child`]). A child builds one
//! consumer, runs one task, measures itself (wall clock, CPU time, peak RSS,
//! latency histogram) and prints one `RESULT {json}` line. Child processes
//! keep contenders from disturbing each other (memory, threads, librdkafka
//! state) and give each its own peak RSS and CPU time; they also keep the
//! mock cluster's CPU out of the consumer's figures.
//!
//! The parent then prints the tables ([`report`]) and writes JSON, Markdown
//! and SVG charts under `target/bench/`.
//!
//! # Usage
//!
//! ```text
//! tier-bench [--quick] [--brokers HOST:PORT [--broker-name TEXT]]
//!            [--reps N] [--only SCENARIO,...] [--set PROPERTY=VALUE]... [--out DIR]
//! ```
//!
//! Run it through `cargo xtask bench`, which builds it in release mode and can
//! start real Apache Kafka for it (`--kafka local`).

mod child;
mod cli;
mod concurrent;
mod contender;
mod orchestrate;
mod payload;
mod plan;
mod produce;
mod report;
mod sys;
mod work;

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("child") => child::main(&args[1..]),
        _ => cli::Options::parse(&args).and_then(orchestrate::run),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("tier-bench: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
