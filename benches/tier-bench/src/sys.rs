//! What the operating system tells about this process and the machine.

use std::time::Duration;

/// CPU time used by this process so far: all threads, user and system.
pub(crate) fn cpu_time() -> Duration {
    usage(libc::RUSAGE_SELF).map_or(Duration::ZERO, |(cpu, _)| cpu)
}

/// The CPU time (user + system) of this process's waited-for children, and
/// the largest peak resident set size among them in KiB.
pub(crate) fn children_usage() -> (Duration, u64) {
    usage(libc::RUSAGE_CHILDREN).unwrap_or((Duration::ZERO, 0))
}

fn usage(who: libc::c_int) -> Option<(Duration, u64)> {
    // SAFETY: an all-zero `rusage` is a valid value of this plain C struct.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `usage` is a valid, writable `rusage`.
    let status = unsafe { libc::getrusage(who, &mut usage) };
    if status != 0 {
        return None;
    }
    let micros = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
    let cpu = Duration::from_micros(micros(usage.ru_utime) + micros(usage.ru_stime));
    // Linux reports `ru_maxrss` in KiB.
    Some((cpu, u64::try_from(usage.ru_maxrss).unwrap_or(0)))
}

/// This process's peak resident set size in KiB (`VmHWM`), 0 if unknown.
pub(crate) fn peak_rss_kib() -> u64 {
    status_field("VmHWM:").unwrap_or(0)
}

fn status_field(name: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with(name))?;
    line[name.len()..].split_whitespace().next()?.parse().ok()
}

/// `CLOCK_MONOTONIC` in nanoseconds: one clock for every process on the
/// machine, so a stamp written by the producer process can be compared with
/// the time a consumer process reads it.
pub(crate) fn monotonic_ns() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid, writable timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    now.tv_sec as u64 * 1_000_000_000 + now.tv_nsec as u64
}

/// The 1-minute load average, if `/proc/loadavg` can be read.
pub(crate) fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The number of CPUs this process may run on.
pub(crate) fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// The CPU model, from `/proc/cpuinfo`.
pub(crate) fn cpu_model() -> Option<String> {
    let info = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    let line = info.lines().find(|line| line.starts_with("model name"))?;
    Some(line.split_once(':')?.1.trim().to_owned())
}

/// The workspace's commit, `git describe --always --dirty` (a `-dirty`
/// suffix when the work tree has changes); `None` without git or a work tree.
pub(crate) fn git_commit() -> Option<String> {
    let output = std::process::Command::new("git")
        .args(["describe", "--always", "--dirty", "--abbrev=12"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()?;
    if !output.status.success() {
        return None;
    }
    let commit = String::from_utf8(output.stdout).ok()?.trim().to_owned();
    (!commit.is_empty()).then_some(commit)
}

/// Whether `program` is an executable file in a directory of `PATH`.
pub(crate) fn on_path(program: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|dir| {
            std::fs::metadata(dir.join(program))
                .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clocks_and_memory_are_readable() {
        let before = monotonic_ns();
        let spent = cpu_time();
        let mut x = 0u64;
        for i in 0..1_000_000u64 {
            x = std::hint::black_box(x.wrapping_add(i));
        }
        assert!(monotonic_ns() > before);
        assert!(cpu_time() >= spent);
        assert!(peak_rss_kib() > 0);
        assert!(cores() >= 1);
    }
}
