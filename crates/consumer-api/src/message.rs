//! Deserialized Kafka records: [`Message`], its [`Timestamp`] and its [`Headers`].

use std::ffi::{CStr, c_char, c_void};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::ptr;
use std::str::Utf8Error;

use rdkafka::bindings as rdsys;
use rdkafka::message::{BorrowedHeaders, OwnedHeaders};

use crate::error::{ConsumerError, PayloadPart};
use crate::serde::{Decode, SerdeError};

/// One Kafka record, with its key and value deserialized.
///
/// A record without a value (a *tombstone*, as written by compacted topics to
/// delete a key) is a `Message` whose `value` is `None`; it is never an error.
///
/// # Examples
///
/// ```
/// use consumer_api::{Headers, Message, Timestamp};
///
/// let message: Message<String, String> = Message {
///     topic: "orders".to_owned(),
///     partition: 2,
///     offset: 41,
///     timestamp: Timestamp::CreateTime(1_700_000_000_000),
///     key: Some("order-7".to_owned()),
///     value: None, // a tombstone
///     headers: Headers::new(),
/// };
/// assert!(message.is_tombstone());
/// assert_eq!(message.to_string(), "orders/2@41");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message<K, V> {
    /// The topic the record was read from.
    pub topic: String,
    /// The partition the record was read from.
    pub partition: i32,
    /// The record's offset within its partition.
    pub offset: i64,
    /// When the record was created or appended to the log, if the broker says.
    pub timestamp: Timestamp,
    /// The deserialized key; `None` when the record has no key.
    pub key: Option<K>,
    /// The deserialized value; `None` for a tombstone.
    pub value: Option<V>,
    /// The record's headers, in the order they were written.
    pub headers: Headers,
}

impl<K, V> Message<K, V> {
    /// Decodes a record handed out by rdkafka, deserializing its key and value.
    ///
    /// A missing key or value stays `None`; a present one (even empty) goes
    /// through its serde. Header keys are read as librdkafka's bytes, not
    /// through rdkafka's header iterator (which panics on a key that is not
    /// UTF-8).
    ///
    /// Nothing about the record can make this panic: a serde that panics is
    /// caught and reported like one that fails.
    ///
    /// # Errors
    ///
    /// [`ConsumerError::Deserialize`], naming the record and keeping the
    /// bytes at fault, when the key or the value cannot be deserialized (or
    /// its serde panicked), or when a header key is not UTF-8
    /// ([`PayloadPart::HeaderKey`]).
    pub fn from_kafka<M, KS, VS>(
        record: &M,
        key_serde: &KS,
        value_serde: &VS,
    ) -> Result<Self, ConsumerError>
    where
        M: rdkafka::Message,
        M::Headers: RawHeaders,
        KS: Decode<K> + ?Sized,
        VS: Decode<V> + ?Sized,
    {
        Self::decode(record, key_serde, value_serde, true)
    }

    /// [`from_kafka`](Self::from_kafka) without the record's headers: the
    /// message's [`headers`](Self::headers) are empty, and librdkafka does
    /// not parse them (which costs an allocation per record, headers or
    /// not). For services that never read headers
    /// ([`ConsumerConfig::read_headers`](crate::ConsumerConfig::read_headers)).
    ///
    /// # Errors
    ///
    /// As [`from_kafka`](Self::from_kafka), except that header keys are not
    /// looked at.
    pub fn from_kafka_without_headers<M, KS, VS>(
        record: &M,
        key_serde: &KS,
        value_serde: &VS,
    ) -> Result<Self, ConsumerError>
    where
        M: rdkafka::Message,
        M::Headers: RawHeaders,
        KS: Decode<K> + ?Sized,
        VS: Decode<V> + ?Sized,
    {
        Self::decode(record, key_serde, value_serde, false)
    }

    /// [`from_kafka`](Self::from_kafka), reading the headers or not.
    ///
    /// # Errors
    ///
    /// As [`from_kafka`](Self::from_kafka).
    pub fn decode<M, KS, VS>(
        record: &M,
        key_serde: &KS,
        value_serde: &VS,
        read_headers: bool,
    ) -> Result<Self, ConsumerError>
    where
        M: rdkafka::Message,
        M::Headers: RawHeaders,
        KS: Decode<K> + ?Sized,
        VS: Decode<V> + ?Sized,
    {
        let key = match record.key() {
            Some(bytes) => Some(
                deserialize_contained(key_serde, bytes)
                    .map_err(|source| deserialize_error(record, PayloadPart::Key, bytes, source))?,
            ),
            None => None,
        };
        let value = match record.payload() {
            Some(bytes) => {
                Some(deserialize_contained(value_serde, bytes).map_err(|source| {
                    deserialize_error(record, PayloadPart::Value, bytes, source)
                })?)
            }
            None => None,
        };
        // Asking is what costs (librdkafka parses the section), so ask only
        // when the headers are wanted.
        let headers = match read_headers.then(|| record.headers()).flatten() {
            Some(headers) => Headers::from_raw(headers).map_err(|(key, source)| {
                deserialize_error(record, PayloadPart::HeaderKey, key, SerdeError::new(source))
            })?,
            None => Headers::new(),
        };
        Ok(Message {
            topic: record.topic().to_owned(),
            partition: record.partition(),
            offset: record.offset(),
            timestamp: record.timestamp().into(),
            key,
            value,
            headers,
        })
    }

    /// Whether this record is a tombstone: it has no value.
    pub fn is_tombstone(&self) -> bool {
        self.value.is_none()
    }
}

/// A record as Kafka's bytes, owned: what a message is before its key and
/// value are decoded. Concurrent processing keeps one beside each message,
/// to decode it again for a retry and to hand a dead-letter hook the bytes
/// exactly as they were read.
///
/// ```
/// use consumer_api::{Headers, OwnedRecord, StringSerde, Timestamp};
///
/// let record = OwnedRecord {
///     topic: "orders".to_owned(),
///     partition: 3,
///     offset: 42,
///     timestamp: Timestamp::NotAvailable,
///     key: Some(b"k".to_vec()),
///     value: Some(b"v".to_vec()),
///     headers: Headers::new(),
/// };
/// let message = record.decode::<String, String, _, _>(&StringSerde, &StringSerde)?;
/// assert_eq!(message.value.as_deref(), Some("v"));
/// # Ok::<(), consumer_api::ConsumerError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedRecord {
    /// The topic the record was read from.
    pub topic: String,
    /// The partition the record was read from.
    pub partition: i32,
    /// The record's offset within its partition.
    pub offset: i64,
    /// When the record was created or appended to the log, if the broker says.
    pub timestamp: Timestamp,
    /// The key's bytes; `None` when the record has no key.
    pub key: Option<Vec<u8>>,
    /// The value's bytes; `None` for a tombstone.
    pub value: Option<Vec<u8>>,
    /// The record's headers, in the order they were written.
    pub headers: Headers,
}

impl OwnedRecord {
    /// Copies a record handed out by rdkafka.
    ///
    /// # Errors
    ///
    /// [`ConsumerError::Deserialize`] (part [`PayloadPart::HeaderKey`]) for a
    /// header key that is not UTF-8.
    pub fn from_kafka<M>(record: &M) -> Result<Self, ConsumerError>
    where
        M: rdkafka::Message,
        M::Headers: RawHeaders,
    {
        let headers = match record.headers() {
            Some(headers) => Headers::from_raw(headers).map_err(|(key, source)| {
                deserialize_error(record, PayloadPart::HeaderKey, key, SerdeError::new(source))
            })?,
            None => Headers::new(),
        };
        Ok(OwnedRecord {
            topic: record.topic().to_owned(),
            partition: record.partition(),
            offset: record.offset(),
            timestamp: record.timestamp().into(),
            key: record.key().map(<[u8]>::to_vec),
            value: record.payload().map(<[u8]>::to_vec),
            headers,
        })
    }

    /// Decodes the key and value, as [`Message::from_kafka`] does (a codec
    /// that panics is reported like one that fails).
    ///
    /// # Errors
    ///
    /// [`ConsumerError::Deserialize`], naming the record and keeping the
    /// bytes that failed.
    pub fn decode<K, V, KS, VS>(
        &self,
        key_serde: &KS,
        value_serde: &VS,
    ) -> Result<Message<K, V>, ConsumerError>
    where
        KS: Decode<K> + ?Sized,
        VS: Decode<V> + ?Sized,
    {
        let failed = |part, bytes: &[u8], source| ConsumerError::Deserialize {
            topic: self.topic.clone(),
            partition: self.partition,
            offset: self.offset,
            part,
            raw: bytes.to_vec(),
            source,
        };
        let key = match &self.key {
            Some(bytes) => Some(
                deserialize_contained(key_serde, bytes)
                    .map_err(|source| failed(PayloadPart::Key, bytes, source))?,
            ),
            None => None,
        };
        let value = match &self.value {
            Some(bytes) => Some(
                deserialize_contained(value_serde, bytes)
                    .map_err(|source| failed(PayloadPart::Value, bytes, source))?,
            ),
            None => None,
        };
        Ok(Message {
            topic: self.topic.clone(),
            partition: self.partition,
            offset: self.offset,
            timestamp: self.timestamp,
            key,
            value,
            headers: self.headers.clone(),
        })
    }
}

/// Runs a serde, turning a panic into an error about this record: a panic
/// would otherwise unwind through the consumer with the record already taken
/// from librdkafka, and lose it.
fn deserialize_contained<T, S: Decode<T> + ?Sized>(
    serde: &S,
    bytes: &[u8],
) -> Result<T, SerdeError> {
    match catch_unwind(AssertUnwindSafe(|| serde.decode(bytes))) {
        Ok(result) => result,
        Err(panic) => {
            let message = panic
                .downcast_ref::<&str>()
                .copied()
                .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
                .unwrap_or("a non-string payload");
            Err(SerdeError::msg(format!("the serde panicked: {message}")))
        }
    }
}

fn deserialize_error<M: rdkafka::Message>(
    record: &M,
    part: PayloadPart,
    bytes: &[u8],
    source: SerdeError,
) -> ConsumerError {
    ConsumerError::Deserialize {
        topic: record.topic().to_owned(),
        partition: record.partition(),
        offset: record.offset(),
        part,
        raw: bytes.to_vec(),
        source,
    }
}

impl<K, V> std::fmt::Display for Message<K, V> {
    /// Formats the record's coordinates as `topic/partition@offset`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}@{}", self.topic, self.partition, self.offset)
    }
}

/// A record's timestamp and what it means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Timestamp {
    /// The broker gave no timestamp.
    NotAvailable,
    /// Milliseconds since the Unix epoch, set by the producer.
    CreateTime(i64),
    /// Milliseconds since the Unix epoch, set by the broker when it appended the record.
    LogAppendTime(i64),
}

impl Timestamp {
    /// The timestamp in milliseconds since the Unix epoch, whatever its kind.
    pub fn millis(self) -> Option<i64> {
        match self {
            Timestamp::NotAvailable => None,
            Timestamp::CreateTime(ms) | Timestamp::LogAppendTime(ms) => Some(ms),
        }
    }
}

impl From<rdkafka::Timestamp> for Timestamp {
    fn from(timestamp: rdkafka::Timestamp) -> Self {
        match timestamp {
            rdkafka::Timestamp::NotAvailable => Timestamp::NotAvailable,
            rdkafka::Timestamp::CreateTime(ms) => Timestamp::CreateTime(ms),
            rdkafka::Timestamp::LogAppendTime(ms) => Timestamp::LogAppendTime(ms),
        }
    }
}

/// One record header: a key and an optional byte value.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Header {
    key: String,
    value: Option<Vec<u8>>,
}

impl Header {
    /// A header with the given key and value (`None` is a null value).
    pub fn new(key: impl Into<String>, value: Option<impl Into<Vec<u8>>>) -> Self {
        Header {
            key: key.into(),
            value: value.map(Into::into),
        }
    }

    /// The header's key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The header's value as the bytes that were written; `None` for a null value.
    pub fn value(&self) -> Option<&[u8]> {
        self.value.as_deref()
    }

    /// The header's value as UTF-8 text; `Ok(None)` for a null value.
    ///
    /// # Errors
    ///
    /// The [`Utf8Error`] when the value is not valid UTF-8; [`Header::value`]
    /// still has the bytes.
    pub fn value_str(&self) -> Result<Option<&str>, Utf8Error> {
        self.value.as_deref().map(std::str::from_utf8).transpose()
    }
}

/// rdkafka header sets whose keys [`Headers::from_raw`] can read as bytes:
/// the headers of a consumed [`BorrowedMessage`](rdkafka::message::BorrowedMessage)
/// and of an [`OwnedMessage`](rdkafka::message::OwnedMessage).
///
/// rdkafka's own [`Headers::iter`](rdkafka::message::Headers::iter) panics on
/// a key that is not UTF-8, which any producer can write; this reads the
/// keys from librdkafka instead.
pub trait RawHeaders {
    /// The librdkafka header list behind these headers.
    fn native(&self) -> *const rdsys::rd_kafka_headers_t;
}

impl RawHeaders for BorrowedHeaders {
    fn native(&self) -> *const rdsys::rd_kafka_headers_t {
        // rdkafka makes a `&BorrowedHeaders` by casting the native pointer
        // (`BorrowedHeaders::from_native_ptr`, `OwnedHeaders::as_borrowed`),
        // so its address is the header list; rdkafka's private
        // `as_native_ptr` is this same cast. A unit test checks it.
        ptr::from_ref(self).cast()
    }
}

impl RawHeaders for OwnedHeaders {
    fn native(&self) -> *const rdsys::rd_kafka_headers_t {
        self.as_borrowed().native()
    }
}

/// A record's headers: ordered, with duplicate keys and byte values kept as written.
///
/// # Examples
///
/// ```
/// use consumer_api::{Header, Headers};
///
/// let headers: Headers = [
///     Header::new("trace", Some("a")),
///     Header::new("retry", Some(vec![0xff])),
///     Header::new("trace", Some("b")),
/// ]
/// .into_iter()
/// .collect();
///
/// let traces: Vec<_> = headers.get_all("trace").map(|h| h.value_str().unwrap()).collect();
/// assert_eq!(traces, [Some("a"), Some("b")]);
/// assert_eq!(headers.get("retry").unwrap().value(), Some(&[0xff][..]));
/// assert!(headers.get("retry").unwrap().value_str().is_err());
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Headers(Vec<Header>);

impl Headers {
    /// No headers.
    pub fn new() -> Self {
        Headers(Vec::new())
    }

    /// Copies the headers of a record handed out by rdkafka.
    ///
    /// # Errors
    ///
    /// The first header key that is not UTF-8, as its bytes, with why.
    pub fn from_raw<H: RawHeaders + ?Sized>(headers: &H) -> Result<Self, (&[u8], Utf8Error)> {
        let native = headers.native();
        // SAFETY: `native` is the live `rd_kafka_headers_t` behind `headers`
        // (see `RawHeaders::native`), borrowed for this call.
        let count = unsafe { rdsys::rd_kafka_header_cnt(native) };
        let mut copied = Vec::with_capacity(count);
        for index in 0..count {
            let mut name: *const c_char = ptr::null();
            let mut value: *const c_void = ptr::null();
            let mut size = 0usize;
            // SAFETY: as above; librdkafka fills the out-pointers with memory
            // owned by the headers, valid while `headers` is borrowed.
            let error = unsafe {
                rdsys::rd_kafka_header_get_all(native, index, &mut name, &mut value, &mut size)
            };
            if error != rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR || name.is_null() {
                break;
            }
            // SAFETY: librdkafka stores each header name NUL-terminated.
            let key = unsafe { CStr::from_ptr(name) }.to_bytes();
            let key = std::str::from_utf8(key).map_err(|error| (key, error))?;
            let value = (!value.is_null()).then(|| {
                // SAFETY: `value` points to `size` bytes owned by the headers.
                unsafe { std::slice::from_raw_parts(value.cast::<u8>(), size) }.to_vec()
            });
            copied.push(Header {
                key: key.to_owned(),
                value,
            });
        }
        Ok(Headers(copied))
    }

    /// Appends a header after the existing ones.
    pub fn push(&mut self, header: Header) {
        self.0.push(header);
    }

    /// The first header with this key.
    pub fn get(&self, key: &str) -> Option<&Header> {
        self.0.iter().find(|header| header.key == key)
    }

    /// Every header with this key, in order.
    pub fn get_all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a Header> + 'a {
        self.0.iter().filter(move |header| header.key == key)
    }

    /// All headers, in order.
    pub fn iter(&self) -> std::slice::Iter<'_, Header> {
        self.0.iter()
    }

    /// The number of headers, duplicates included.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no headers.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl FromIterator<Header> for Headers {
    fn from_iter<I: IntoIterator<Item = Header>>(iter: I) -> Self {
        Headers(iter.into_iter().collect())
    }
}

impl<'a> IntoIterator for &'a Headers {
    type Item = &'a Header;
    type IntoIter = std::slice::Iter<'a, Header>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl IntoIterator for Headers {
    type Item = Header;
    type IntoIter = std::vec::IntoIter<Header>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

#[cfg(test)]
mod tests {
    use rdkafka::message::{Header as KafkaHeader, OwnedHeaders, OwnedMessage};

    use super::*;
    use crate::serde::{JsonSerde, StringSerde};

    fn record(
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: Option<OwnedHeaders>,
    ) -> OwnedMessage {
        OwnedMessage::new(
            value.map(<[u8]>::to_vec),
            key.map(<[u8]>::to_vec),
            "orders".to_owned(),
            rdkafka::Timestamp::LogAppendTime(17),
            3,
            99,
            headers,
        )
    }

    #[test]
    fn decodes_key_value_headers_and_coordinates() {
        let headers = OwnedHeaders::new()
            .insert(KafkaHeader {
                key: "a",
                value: Some(&[0xff, 0x00][..]),
            })
            .insert(KafkaHeader {
                key: "a",
                value: None::<&[u8]>,
            })
            .insert(KafkaHeader {
                key: "b",
                value: Some("text"),
            });
        let message: Message<String, u32> = Message::from_kafka(
            &record(Some(b"k"), Some(b"42"), Some(headers)),
            &StringSerde,
            &JsonSerde,
        )
        .expect("valid record");
        assert_eq!(
            (message.topic.as_str(), message.partition, message.offset),
            ("orders", 3, 99)
        );
        assert_eq!(message.timestamp, Timestamp::LogAppendTime(17));
        assert_eq!(message.key.as_deref(), Some("k"));
        assert_eq!(message.value, Some(42));
        let keys: Vec<_> = message.headers.iter().map(Header::key).collect();
        assert_eq!(keys, ["a", "a", "b"]);
        assert_eq!(
            message.headers.get("a").and_then(Header::value),
            Some(&[0xff, 0x00][..])
        );
        assert!(
            message
                .headers
                .get("a")
                .map(Header::value_str)
                .is_some_and(|r| r.is_err())
        );
        assert_eq!(
            message.headers.get_all("a").nth(1).map(Header::value),
            Some(None)
        );
        assert_eq!(
            message.headers.get("b").map(Header::value_str),
            Some(Ok(Some("text")))
        );
    }

    /// A header list with a key that is not UTF-8, as another client may
    /// write it (rdkafka's `OwnedHeaders::insert` only takes `&str` keys).
    fn headers_with_raw_key(key: &[u8]) -> OwnedHeaders {
        let headers = OwnedHeaders::new().insert(KafkaHeader {
            key: "first",
            value: Some("1"),
        });
        // SAFETY: the native list of a live `OwnedHeaders`; librdkafka copies
        // the name and value.
        let error = unsafe {
            rdsys::rd_kafka_header_add(
                headers.native().cast_mut(),
                key.as_ptr().cast(),
                key.len() as isize,
                b"v".as_ptr().cast(),
                1,
            )
        };
        assert_eq!(
            error,
            rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR
        );
        headers
    }

    #[test]
    fn the_native_header_list_is_the_one_rdkafka_reads() {
        use rdkafka::message::Headers as _;
        let headers = headers_with_raw_key(b"second");
        // SAFETY: the native list of a live `OwnedHeaders`.
        let native_count = unsafe { rdsys::rd_kafka_header_cnt(headers.native()) };
        assert_eq!(native_count, 2);
        assert_eq!(native_count, headers.count());
        let read = Headers::from_raw(&headers).expect("UTF-8 keys");
        let keys: Vec<_> = read.iter().map(Header::key).collect();
        assert_eq!(keys, ["first", "second"]);
    }

    #[test]
    fn a_header_key_that_is_not_utf8_is_an_error_naming_the_record() {
        let record = record(
            Some(b"k"),
            Some(b"1"),
            Some(headers_with_raw_key(b"\xff\xfe")),
        );
        let error = Message::<String, u32>::from_kafka(&record, &StringSerde, &JsonSerde)
            .expect_err("a non-UTF-8 header key");
        let text = error.to_string();
        assert!(
            text.contains("header key of the record at orders/3@99"),
            "{text}"
        );
        match error {
            ConsumerError::Deserialize { part, raw, .. } => {
                assert_eq!(
                    (part, raw.as_slice()),
                    (PayloadPart::HeaderKey, &b"\xff\xfe"[..])
                );
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    struct PanickingSerde;

    impl crate::Serde<u32> for PanickingSerde {
        fn serialize(&self, _: &u32) -> Result<Vec<u8>, SerdeError> {
            Ok(Vec::new())
        }

        fn deserialize(&self, _: &[u8]) -> Result<u32, SerdeError> {
            panic!("codec bug")
        }
    }

    #[test]
    fn a_panicking_serde_is_an_error_for_its_record() {
        let error = Message::<String, u32>::from_kafka(
            &record(Some(b"k"), Some(b"1"), None),
            &StringSerde,
            &PanickingSerde,
        )
        .expect_err("the serde panicked");
        let text = error.to_string();
        assert!(
            text.contains("value of the record at orders/3@99"),
            "{text}"
        );
        assert!(text.contains("the serde panicked: codec bug"), "{text}");
    }

    #[test]
    fn missing_value_is_a_tombstone_not_an_error() {
        let message: Message<String, u32> =
            Message::from_kafka(&record(Some(b"k"), None, None), &StringSerde, &JsonSerde)
                .expect("tombstone");
        assert!(message.is_tombstone());
        assert!(message.headers.is_empty());
    }

    #[test]
    fn bad_value_names_the_record_and_keeps_the_bytes() {
        let error = Message::<String, u32>::from_kafka(
            &record(Some(b"k"), Some(b"{oops"), None),
            &StringSerde,
            &JsonSerde,
        )
        .unwrap_err();
        let text = error.to_string();
        assert!(
            text.contains("value of the record at orders/3@99"),
            "{text}"
        );
        match error {
            ConsumerError::Deserialize {
                part, raw, offset, ..
            } => {
                assert_eq!(
                    (part, raw.as_slice(), offset),
                    (PayloadPart::Value, &b"{oops"[..], 99)
                );
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn bad_key_is_reported_as_the_key() {
        let error = Message::<String, u32>::from_kafka(
            &record(Some(&[0xc3, 0x28]), Some(b"1"), None),
            &StringSerde,
            &JsonSerde,
        )
        .unwrap_err();
        assert!(matches!(
            error,
            ConsumerError::Deserialize {
                part: PayloadPart::Key,
                ..
            }
        ));
    }
}
