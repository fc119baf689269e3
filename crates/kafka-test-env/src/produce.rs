//! Synchronous producing with a `BaseProducer` and a delivery report per record.
//!
//! Each call to [`produce`] gets its own channel; every record carries a boxed
//! tag (its input index and that channel's sender) as delivery opaque. Whoever
//! polls the shared producer runs the delivery callback, which sends the report
//! to the right call's channel, so concurrent calls from several threads each
//! get their own reports. No async runtime is involved: `produce` blocks the
//! calling thread while it polls.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use rdkafka::ClientContext;
use rdkafka::bindings as rdsys;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{DeliveryResult, Message, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, ProducerContext};

use crate::{ProducedRecord, TestEnvError, TestRecord};

/// The env's producer type.
pub(crate) type EnvProducer = BaseProducer<EnvProducerContext>;

/// librdkafka gives up on a record after this long (`message.timeout.ms`).
pub(crate) const MESSAGE_TIMEOUT: Duration = Duration::from_secs(30);

/// How long `produce` waits for all delivery reports; longer than
/// [`MESSAGE_TIMEOUT`] so librdkafka's own timeout normally reports first.
const DELIVERY_WAIT: Duration = Duration::from_secs(45);

/// One `poll` slice. `BaseProducer::poll` always waits for the whole slice.
const POLL_SLICE: Duration = Duration::from_millis(5);

/// The delivery opaque of one record.
pub(crate) struct DeliveryTag {
    index: usize,
    reports: mpsc::Sender<Report>,
}

/// A delivery report as sent back to the producing call.
struct Report {
    index: usize,
    outcome: Result<(i32, i64), KafkaError>,
}

/// Routes delivery reports to the channel of the call that sent the record.
pub(crate) struct EnvProducerContext;

impl ClientContext for EnvProducerContext {}

impl ProducerContext for EnvProducerContext {
    type DeliveryOpaque = Box<DeliveryTag>;

    fn delivery(&self, result: &DeliveryResult<'_>, tag: Self::DeliveryOpaque) {
        let outcome = match result {
            Ok(message) => Ok((message.partition(), message.offset())),
            Err((error, _)) => Err(error.clone()),
        };
        // The receiver is gone only when its call already failed and returned;
        // nobody waits for this report any more.
        let _ = tag.reports.send(Report {
            index: tag.index,
            outcome,
        });
    }
}

/// Builds librdkafka headers, keeping order, duplicates, null values and
/// keys that are not UTF-8.
fn owned_headers(
    topic: &str,
    index: usize,
    headers: &[(Vec<u8>, Option<Vec<u8>>)],
) -> Result<Option<OwnedHeaders>, TestEnvError> {
    if headers.is_empty() {
        return Ok(None);
    }
    let owned = OwnedHeaders::new_with_capacity(headers.len());
    // rdkafka makes a `&BorrowedHeaders` by casting the native pointer, so
    // its address is the `rd_kafka_headers_t` (rdkafka's private
    // `as_native_ptr` is this cast; consumer-api's `RawHeaders` tests it).
    let native = std::ptr::from_ref(owned.as_borrowed())
        .cast::<rdsys::rd_kafka_headers_t>()
        .cast_mut();
    for (key, value) in headers {
        if key.contains(&0) {
            return Err(TestEnvError::InvalidArgument {
                message: format!(
                    "record {index} for topic {topic:?} has a header key with a NUL byte \
                     ({:?}); librdkafka header keys are C strings",
                    String::from_utf8_lossy(key)
                ),
            });
        }
        let (value_ptr, value_len) = match value {
            Some(value) => (value.as_ptr().cast(), value.len() as isize),
            None => (std::ptr::null(), 0),
        };
        // SAFETY: `native` is the header list `owned` owns, alive for the
        // loop; librdkafka copies the name and the value. rdkafka's `insert`
        // takes `&str` keys only, hence the raw call.
        let error = unsafe {
            rdsys::rd_kafka_header_add(
                native,
                key.as_ptr().cast(),
                key.len() as isize,
                value_ptr,
                value_len,
            )
        };
        if error != rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
            return Err(TestEnvError::InvalidArgument {
                message: format!(
                    "record {index} for topic {topic:?}: librdkafka refused a header: {}",
                    rdkafka::error::RDKafkaErrorCode::from(error)
                ),
            });
        }
    }
    Ok(Some(owned))
}

/// Sends every record, waits for every delivery report and returns where each
/// record went, ordered by input index.
pub(crate) fn produce(
    producer: &EnvProducer,
    topic: &str,
    records: impl IntoIterator<Item = TestRecord>,
) -> Result<Vec<ProducedRecord>, TestEnvError> {
    let started = Instant::now();
    let deadline = started + DELIVERY_WAIT;
    let (sender, reports) = mpsc::channel();
    let mut keys: Vec<Option<Vec<u8>>> = Vec::new();

    for (index, record) in records.into_iter().enumerate() {
        let headers = owned_headers(topic, index, &record.headers)?;
        let tag = Box::new(DeliveryTag {
            index,
            reports: sender.clone(),
        });
        let mut base: BaseRecord<'_, [u8], [u8], Box<DeliveryTag>> =
            BaseRecord::with_opaque_to(topic, tag);
        if let Some(key) = record.key.as_deref() {
            base = base.key(key);
        }
        if let Some(value) = record.value.as_deref() {
            base = base.payload(value);
        }
        if let Some(headers) = headers {
            base = base.headers(headers);
        }
        if let Some(partition) = record.partition {
            base = base.partition(partition);
        }
        if let Some(timestamp_ms) = record.timestamp_ms {
            base = base.timestamp(timestamp_ms);
        }
        loop {
            match producer.send(base) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned))
                    if Instant::now() < deadline =>
                {
                    // The local queue is full: serve delivery reports, retry.
                    base = returned;
                    producer.poll(POLL_SLICE);
                }
                Err((error, _)) => {
                    return Err(TestEnvError::Enqueue {
                        topic: topic.to_owned(),
                        index,
                        error: Box::new(error),
                    });
                }
            }
        }
        keys.push(record.key);
    }
    drop(sender);

    let count = keys.len();
    let mut outcomes: Vec<Option<Result<(i32, i64), KafkaError>>> = vec![None; count];
    let mut received = 0;
    while received < count {
        producer.poll(POLL_SLICE);
        while let Ok(report) = reports.try_recv() {
            if let Some(slot) = outcomes.get_mut(report.index) {
                if slot.is_none() {
                    received += 1;
                }
                *slot = Some(report.outcome);
            }
        }
        if received < count && Instant::now() >= deadline {
            let first_missing = outcomes.iter().position(Option::is_none).unwrap_or(count);
            return Err(TestEnvError::DeliveryTimeout {
                topic: topic.to_owned(),
                delivered: received,
                count,
                first_missing,
                waited: started.elapsed(),
            });
        }
    }

    let failed = outcomes
        .iter()
        .filter(|outcome| matches!(outcome, Some(Err(_))))
        .count();
    let mut produced = Vec::with_capacity(count);
    for (index, (outcome, key)) in outcomes.into_iter().zip(keys).enumerate() {
        match outcome {
            Some(Ok((partition, offset))) => produced.push(ProducedRecord {
                index,
                key,
                partition,
                offset,
            }),
            Some(Err(error)) => {
                return Err(TestEnvError::Delivery {
                    topic: topic.to_owned(),
                    index,
                    error: Box::new(error),
                    failed,
                    count,
                });
            }
            // Unreachable: the loop above ran until every slot was filled.
            None => {
                return Err(TestEnvError::DeliveryTimeout {
                    topic: topic.to_owned(),
                    delivered: received,
                    count,
                    first_missing: index,
                    waited: started.elapsed(),
                });
            }
        }
    }
    tracing::debug!(topic, count, elapsed = ?started.elapsed(), "produced and delivered");
    Ok(produced)
}
