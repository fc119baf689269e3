//! The records the benchmark writes: keys, byte values, JSON values and
//! latency stamps.

use serde::{Deserialize, Serialize};

/// The JSON value: a small order, about [`JSON_VALUE_BYTES`] bytes as JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Order {
    /// Order number.
    pub(crate) id: u64,
    /// Who ordered.
    pub(crate) customer: String,
    /// Amount in cents.
    pub(crate) amount_cents: i64,
    /// ISO currency code.
    pub(crate) currency: String,
    /// Express delivery.
    pub(crate) express: bool,
    /// Free-form tags.
    pub(crate) tags: Vec<String>,
}

/// The typical size of an [`Order`] as JSON, for MB/s.
pub(crate) const JSON_VALUE_BYTES: usize = 110;

/// The key of record `index`: 8 ASCII bytes.
pub(crate) fn key(index: u64) -> [u8; 8] {
    let mut key = *b"k0000000";
    let mut n = index % 10_000_000;
    for slot in key[1..].iter_mut().rev() {
        *slot = b'0' + (n % 10) as u8;
        n /= 10;
    }
    key
}

/// A byte value of `size` bytes for record `index` (not all equal, so that no
/// layer can get away with a shortcut).
pub(crate) fn bytes_value(index: u64, size: usize) -> Vec<u8> {
    let mut state = index.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..size)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

/// The JSON value of record `index`.
pub(crate) fn json_value(index: u64) -> Vec<u8> {
    let order = Order {
        id: index,
        customer: format!("customer-{:05}", index % 100_000),
        amount_cents: (index % 100_000) as i64 * 7 + 99,
        currency: "EUR".to_owned(),
        express: index.is_multiple_of(3),
        tags: vec!["web".to_owned(), "promo-2025".to_owned()],
    };
    serde_json::to_vec(&order).unwrap_or_default()
}

/// A latency value: the send time (`CLOCK_MONOTONIC`, ns) in the first 8
/// bytes, big-endian, padded to `size`. A stamp of 0 marks a warm-up record.
pub(crate) fn stamped_value(stamp_ns: u64, size: usize) -> Vec<u8> {
    let mut value = vec![0u8; size.max(8)];
    value[..8].copy_from_slice(&stamp_ns.to_be_bytes());
    value
}

/// The stamp of a latency value; `None` when the value is too short.
pub(crate) fn stamp_of(value: &[u8]) -> Option<u64> {
    let bytes: [u8; 8] = value.get(..8)?.try_into().ok()?;
    Some(u64::from_be_bytes(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_eight_digits() {
        assert_eq!(&key(42), b"k0000042");
        assert_eq!(&key(12_345_678), b"k2345678");
    }

    #[test]
    fn json_values_are_about_the_announced_size_and_decode() {
        let value = json_value(123);
        assert!(
            value.len().abs_diff(JSON_VALUE_BYTES) < 15,
            "{}",
            value.len()
        );
        let order: Order = serde_json::from_slice(&value).expect("valid JSON");
        assert_eq!(order.id, 123);
    }

    #[test]
    fn stamps_round_trip() {
        let value = stamped_value(0x0102_0304_0506_0708, 100);
        assert_eq!(value.len(), 100);
        assert_eq!(stamp_of(&value), Some(0x0102_0304_0506_0708));
        assert_eq!(stamp_of(&[1, 2]), None);
    }

    #[test]
    fn byte_values_have_the_size_and_vary() {
        let a = bytes_value(1, 100);
        assert_eq!(a.len(), 100);
        assert_ne!(a, bytes_value(2, 100));
    }
}
