//! Records going in ([`TestRecord`]) and what the broker said about them
//! ([`ProducedRecord`]).

/// A record to produce with [`KafkaTestEnv::produce`](crate::KafkaTestEnv::produce).
///
/// Fields have no invariants and are public; the methods are shortcuts.
/// `None` key means no key, `None` value is a tombstone, headers keep their
/// order and may repeat a key, and a header value of `None` is a null header.
///
/// # Examples
///
/// ```
/// use kafka_test_env::TestRecord;
///
/// let record = TestRecord::new("key-1", "value-1")
///     .header("trace", "abc")
///     .header("trace", vec![0xff, 0x00]) // duplicate key, non-UTF-8 bytes
///     .null_header("empty")
///     .partition(2)
///     .timestamp_ms(1_700_000_000_000);
/// assert_eq!(record.headers.len(), 3);
/// assert_eq!(TestRecord::tombstone("key-1").value, None);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct TestRecord {
    /// The key, or `None` for a keyless record.
    pub key: Option<Vec<u8>>,
    /// The value, or `None` for a tombstone.
    pub value: Option<Vec<u8>>,
    /// Headers in order; keys may repeat; `None` is a null value. Keys are
    /// bytes, as on the wire: a key need not be UTF-8 (other clients can
    /// write such keys), but it cannot hold a NUL byte.
    pub headers: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    /// An explicit partition, or `None` for librdkafka's default partitioner
    /// (`consistent_random`: hash of the key, random when there is no key).
    pub partition: Option<i32>,
    /// The record's create time in milliseconds since the Unix epoch, or
    /// `None` for the producer's clock.
    pub timestamp_ms: Option<i64>,
}

impl TestRecord {
    /// A record with a key and a value.
    pub fn new(key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> Self {
        Self {
            key: Some(key.into()),
            value: Some(value.into()),
            ..Self::default()
        }
    }

    /// A record with a value and no key.
    pub fn keyless(value: impl Into<Vec<u8>>) -> Self {
        Self {
            value: Some(value.into()),
            ..Self::default()
        }
    }

    /// A tombstone: a key with no value.
    pub fn tombstone(key: impl Into<Vec<u8>>) -> Self {
        Self {
            key: Some(key.into()),
            ..Self::default()
        }
    }

    /// Appends a header with a value (keys may repeat).
    #[must_use]
    pub fn header(mut self, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> Self {
        self.headers.push((key.into(), Some(value.into())));
        self
    }

    /// Appends a header whose value is null.
    #[must_use]
    pub fn null_header(mut self, key: impl Into<Vec<u8>>) -> Self {
        self.headers.push((key.into(), None));
        self
    }

    /// Sends the record to this partition instead of using the partitioner.
    #[must_use]
    pub fn partition(mut self, partition: i32) -> Self {
        self.partition = Some(partition);
        self
    }

    /// Sets the record's create time, in milliseconds since the Unix epoch.
    #[must_use]
    pub fn timestamp_ms(mut self, timestamp_ms: i64) -> Self {
        self.timestamp_ms = Some(timestamp_ms);
        self
    }
}

/// Where the broker stored one produced record, from its delivery report.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ProducedRecord {
    /// The record's position in the input, counting from 0. The returned
    /// `Vec` is ordered by this field, so `produced[i].index == i`.
    pub index: usize,
    /// The record's key, as sent.
    pub key: Option<Vec<u8>>,
    /// The partition the record went to.
    pub partition: i32,
    /// The record's offset in that partition.
    pub offset: i64,
}
