//! `cargo xtask`: the task runner of tiered-kafka.
//!
//! Each command lives in its own module: [`kafka`] runs a local Apache Kafka
//! broker, [`test`](mod@test) runs every test phase and sums the results (with
//! [`stall`] watching for a hung test binary),
//! [`bench`](mod@bench) runs the benchmarks. The command line is declared
//! once, with its help, in [`flags`].

mod bench;
mod flags;
mod kafka;
mod stall;
mod test;

use std::{
    path::{Path, PathBuf},
    process::ExitCode,
};

fn main() -> ExitCode {
    let flags = flags::Xtask::from_env_or_exit();
    let result = match flags.subcommand {
        flags::XtaskCmd::Kafka(cmd) => kafka::run(cmd),
        flags::XtaskCmd::Test(cmd) => test::run(cmd),
        flags::XtaskCmd::Bench(cmd) => bench::run(cmd),
    };
    result.unwrap_or_else(|err| {
        eprintln!("error: {err:#}");
        ExitCode::FAILURE
    })
}

/// The workspace root: the parent of the `xtask` directory.
pub(crate) fn project_root() -> PathBuf {
    let xtask_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    xtask_dir.parent().unwrap_or(xtask_dir).to_path_buf()
}

/// Cargo's target directory: `CARGO_TARGET_DIR` when set (relative to the
/// current directory, as Cargo reads it), else `<workspace>/target`.
pub(crate) fn target_dir() -> anyhow::Result<PathBuf> {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => Ok(std::path::absolute(dir)?),
        _ => Ok(project_root().join("target")),
    }
}
