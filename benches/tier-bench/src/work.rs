//! The processing scenario's per-message work: rounds of FNV-1a hashing over
//! the value, calibrated to a CPU time per message.

use std::hint::black_box;
use std::time::{Duration, Instant};

/// Hashes `bytes` `rounds` times (FNV-1a, chained); the result depends on
/// every byte and every round, so none of it can be skipped.
#[inline]
pub(crate) fn hash_rounds(bytes: &[u8], rounds: u32) -> u64 {
    let mut hash = 0xcbf2_9ce4_8422_2325_u64;
    for round in 0..rounds {
        for &byte in bytes {
            hash = (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3);
        }
        hash ^= u64::from(round);
    }
    hash
}

/// The rounds over a `value_bytes`-byte value that take about `target` of CPU
/// time on this machine, with the time they actually take.
///
/// Timed as the fastest of several tries, so that other processes on the
/// machine make the work longer rather than shorter.
pub(crate) fn calibrate(value_bytes: usize, target: Duration) -> (u32, Duration) {
    let value = crate::payload::bytes_value(7, value_bytes);
    let per_round = time_per_call(&value, 16) / 16;
    let rounds =
        ((target.as_nanos() as f64 / per_round.as_nanos().max(1) as f64).round() as u32).max(1);
    (rounds, time_per_call(&value, rounds))
}

/// The fastest time of one `hash_rounds(value, rounds)` call over 7 tries.
fn time_per_call(value: &[u8], rounds: u32) -> Duration {
    const CALLS: u32 = 2_000;
    (0..7)
        .map(|_| {
            let started = Instant::now();
            for _ in 0..CALLS {
                black_box(hash_rounds(black_box(value), rounds));
            }
            started.elapsed() / CALLS
        })
        .min()
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashing_depends_on_bytes_and_rounds() {
        assert_ne!(hash_rounds(b"abc", 1), hash_rounds(b"abd", 1));
        assert_ne!(hash_rounds(b"abc", 1), hash_rounds(b"abc", 2));
    }

    #[test]
    fn calibration_finds_at_least_one_round() {
        let (rounds, took) = calibrate(100, Duration::from_micros(1));
        assert!(rounds >= 1);
        assert!(took > Duration::ZERO);
    }
}
