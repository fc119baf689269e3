//! `cargo xtask bench`: the benchmarks (a placeholder until issue 6 builds them).

use std::process::ExitCode;

use crate::flags;

/// Runs `cargo xtask bench`.
pub(crate) fn run(flags: flags::Bench) -> anyhow::Result<ExitCode> {
    let which = if flags.quick { "quick " } else { "" };
    println!("cargo xtask bench: the {which}benchmark is not built yet (issue 6); nothing to run.");
    Ok(ExitCode::SUCCESS)
}
