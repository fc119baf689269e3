//! Micro-benchmarks of the per-message hot path: turning a record handed out
//! by rdkafka into a [`Message<K, V>`], and copying its headers.
//!
//! Run with `cargo bench -p consumer-api`. The input is an rdkafka
//! `OwnedMessage` (no broker needed); a `BorrowedMessage` from a consumer
//! costs a little more, because its topic name is read through librdkafka and
//! checked as UTF-8 on every call.
//!
//! `touch_payload` is the floor: what the raw `BaseConsumer` contender of
//! `cargo xtask bench` does with each record.

use consumer_api::{BytesSerde, Headers, JsonSerde, Message, StringSerde};
use divan::{Bencher, black_box};
use rdkafka::Timestamp;
use rdkafka::message::{Header, OwnedHeaders, OwnedMessage};
use serde::{Deserialize, Serialize};

fn main() {
    divan::main();
}

/// The JSON value of `cargo xtask bench`: a small order, about 110 bytes.
#[derive(Debug, Serialize, Deserialize)]
struct Order {
    id: u64,
    customer: String,
    amount_cents: i64,
    currency: String,
    express: bool,
    tags: Vec<String>,
}

/// A record as the benchmark topics hold it: an 8-byte key, `value`, no headers.
fn record(value: Vec<u8>, headers: Option<OwnedHeaders>) -> OwnedMessage {
    OwnedMessage::new(
        Some(value),
        Some(b"k0001234".to_vec()),
        "bench-bytes100-8p-4242-19abcdef012-0".to_owned(),
        Timestamp::CreateTime(1_700_000_000_000),
        3,
        123_456,
        headers,
    )
}

fn order_json() -> Vec<u8> {
    serde_json::to_vec(&Order {
        id: 1_234,
        customer: "customer-01234".to_owned(),
        amount_cents: 8_737,
        currency: "EUR".to_owned(),
        express: false,
        tags: vec!["web".to_owned(), "promo-2025".to_owned()],
    })
    .unwrap_or_default()
}

fn headers(count: usize) -> OwnedHeaders {
    (0..count).fold(OwnedHeaders::new_with_capacity(count), |headers, i| {
        headers.insert(Header {
            key: ["trace-id", "source", "retry", "tenant"][i % 4],
            value: Some(&b"0123456789abcdef"[..]),
        })
    })
}

/// The floor: borrow the payload and take its length, converting nothing.
#[divan::bench(args = [100, 1_000])]
fn touch_payload(bencher: Bencher, value_bytes: usize) {
    let record = record(vec![7; value_bytes], None);
    bencher.bench_local(|| {
        let record = black_box(&record);
        rdkafka::Message::payload(record).map(<[u8]>::len)
    });
}

/// `Message<String, Vec<u8>>`: a String key and the value copied as bytes.
#[divan::bench(args = [100, 1_000])]
fn from_kafka_bytes(bencher: Bencher, value_bytes: usize) {
    let record = record(vec![7; value_bytes], None);
    bencher
        .counter(divan::counter::BytesCount::new(value_bytes))
        .bench_local(|| {
            Message::<String, Vec<u8>>::from_kafka(black_box(&record), &StringSerde, &BytesSerde)
        });
}

/// `Message<String, String>`: the value checked as UTF-8 and copied.
#[divan::bench(args = [100, 1_000])]
fn from_kafka_string(bencher: Bencher, value_bytes: usize) {
    let record = record(vec![b'x'; value_bytes], None);
    bencher
        .counter(divan::counter::BytesCount::new(value_bytes))
        .bench_local(|| {
            Message::<String, String>::from_kafka(black_box(&record), &StringSerde, &StringSerde)
        });
}

/// `Message<String, Order>`: the value parsed as JSON by `serde_json`.
#[divan::bench]
fn from_kafka_json(bencher: Bencher) {
    let record = record(order_json(), None);
    bencher.bench_local(|| {
        Message::<String, Order>::from_kafka(black_box(&record), &StringSerde, &JsonSerde)
    });
}

/// `Message<String, serde_json::Value>`: the same JSON into a dynamic value.
#[divan::bench]
fn from_kafka_json_value(bencher: Bencher) {
    let record = record(order_json(), None);
    bencher.bench_local(|| {
        Message::<String, serde_json::Value>::from_kafka(
            black_box(&record),
            &StringSerde,
            &JsonSerde,
        )
    });
}

/// Copying a record's headers into [`Headers`] (16-byte values).
#[divan::bench(args = [0, 1, 4, 16])]
fn headers_from_raw(bencher: Bencher, count: usize) {
    let headers = headers(count);
    bencher.bench_local(|| Headers::from_raw(black_box(&headers)).is_ok());
}

/// A whole bytes record with headers, as `from_kafka` converts it.
#[divan::bench(args = [1, 4])]
fn from_kafka_bytes_with_headers(bencher: Bencher, count: usize) {
    let record = record(vec![7; 100], Some(headers(count)));
    bencher.bench_local(|| {
        Message::<String, Vec<u8>>::from_kafka(black_box(&record), &StringSerde, &BytesSerde)
    });
}
