//! Writing the benchmark's records: bulk topic fills, checked against the
//! broker's watermarks, and the latency scenario's steady, stamped producer.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer as _, ThreadedProducer};

use crate::payload;
use crate::plan::{TopicSpec, ValueKind};

/// A producer that polls itself on a background thread.
pub(crate) type BenchProducer = ThreadedProducer<DefaultProducerContext>;

/// A producer for `brokers`: batching for bulk fills (`linger_ms` > 0) or
/// sending at once for latency runs (`linger_ms` = 0).
pub(crate) fn producer(brokers: &str, linger_ms: u32) -> Result<BenchProducer> {
    let producer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("acks", "1")
        .set("enable.idempotence", "false")
        .set("linger.ms", linger_ms.to_string())
        .set("batch.size", "900000")
        .set("batch.num.messages", "100000")
        .set("queue.buffering.max.messages", "1000000")
        .set("queue.buffering.max.kbytes", "1048576")
        .set("message.timeout.ms", "120000")
        .create()
        .with_context(|| format!("creating a producer for {brokers}"))?;
    Ok(producer)
}

/// Sends one record, waiting while librdkafka's queue is full.
fn send(producer: &BenchProducer, mut record: BaseRecord<'_, [u8], [u8]>) -> Result<()> {
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) => {
                record = returned;
                std::thread::sleep(Duration::from_millis(1));
            }
            Err((error, _)) => return Err(error).context("enqueueing a record"),
        }
    }
}

/// Writes `spec.count` records round-robin over the partitions of `topic`
/// (record `i` keyed by [`payload::key`] of [`TopicSpec::key_index`]),
/// waits until all are delivered, and checks the watermarks: every partition
/// starts at offset 0 and holds its share.
pub(crate) fn fill(
    producer: &BenchProducer,
    brokers: &str,
    topic: &str,
    spec: &TopicSpec,
    progress: &dyn Fn(u64),
) -> Result<()> {
    let partitions = u64::try_from(spec.partitions).context("partition count")?;
    for index in 0..spec.count {
        let key = payload::key(spec.key_index(index));
        let value = match spec.value {
            ValueKind::Bytes(size) => payload::bytes_value(index, size),
            ValueKind::Json => payload::json_value(index),
        };
        let partition = i32::try_from(index % partitions).context("partition")?;
        send(
            producer,
            BaseRecord::to(topic)
                .partition(partition)
                .key(&key[..])
                .payload(&value[..]),
        )?;
        if index.is_multiple_of(4096) {
            progress(index);
        }
    }
    producer
        .flush(Duration::from_secs(120))
        .with_context(|| format!("delivering {} records to {topic}", spec.count))?;
    progress(spec.count);
    verify(brokers, topic, spec)
}

/// Checks that each partition holds exactly its share of the records, from
/// offset 0 (the mock cluster silently drops old data past 5 MB).
fn verify(brokers: &str, topic: &str, spec: &TopicSpec) -> Result<()> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()?;
    let partitions = spec.partitions as u64;
    for partition in 0..spec.partitions {
        let p = partition as u64;
        let expected = spec.count / partitions + u64::from(p < spec.count % partitions);
        let (low, high) = consumer
            .fetch_watermarks(topic, partition, Duration::from_secs(30))
            .with_context(|| format!("watermarks of {topic}/{partition}"))?;
        if low != 0 || high as u64 != expected {
            bail!(
                "{topic}/{partition} holds offsets {low}..{high}, expected 0..{expected}; \
                 the mock cluster keeps only 5 MB per partition: lower the counts"
            );
        }
    }
    Ok(())
}

/// The latency producer: warm-up records (stamp 0) every 20 ms until `ready`,
/// then `count` records at `rate` per second, each stamped with
/// [`payload::stamped_value`] right before it is handed to librdkafka.
/// Sends what is due every millisecond, so it never spins. Returns how many
/// stamped records it sent; stops early when `stop` is set.
pub(crate) fn steady(
    producer: &BenchProducer,
    topic: &str,
    rate: u64,
    count: u64,
    value_bytes: usize,
    ready: &AtomicBool,
    stop: &AtomicBool,
) -> Result<u64> {
    while !ready.load(Ordering::Acquire) {
        if stop.load(Ordering::Acquire) {
            return Ok(0);
        }
        let value = payload::stamped_value(0, value_bytes);
        send(producer, BaseRecord::to(topic).payload(&value[..]))?;
        std::thread::sleep(Duration::from_millis(20));
    }
    let started = Instant::now();
    let mut sent = 0;
    while sent < count && !stop.load(Ordering::Acquire) {
        let due = ((started.elapsed().as_secs_f64() * rate as f64) as u64 + 1).min(count);
        while sent < due {
            let value = payload::stamped_value(crate::sys::monotonic_ns(), value_bytes);
            send(producer, BaseRecord::to(topic).payload(&value[..]))?;
            sent += 1;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    producer.flush(Duration::from_secs(30))?;
    Ok(sent)
}
