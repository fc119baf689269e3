//! Lag and timestamps: [`partition_lag`] and [`offsets_at_timestamp`],
//! shared with `consumer-legacy`.

use std::ffi::CString;
use std::time::Duration;

use consumer_api::{ConsumerError, PartitionLag};
use rdkafka::bindings as rdsys;
use rdkafka::consumer::{Consumer, ConsumerContext};
use rdkafka::{Offset, TopicPartitionList};

use crate::offsets::OffsetBook;

/// The lag of each partition assigned to `consumer`: positions from `book`
/// (what the application was handed), high watermarks from librdkafka's
/// cache (updated by every fetch response; no broker round trip).
///
/// # Errors
///
/// [`ConsumerError::Kafka`] when librdkafka cannot list the assignment.
pub fn partition_lag<C: ConsumerContext>(
    consumer: &impl Consumer<C>,
    book: &OffsetBook,
) -> Result<Vec<PartitionLag>, ConsumerError> {
    let assignment = consumer.assignment()?;
    Ok(assignment
        .elements()
        .iter()
        .map(|element| {
            PartitionLag::new(
                element.topic(),
                element.partition(),
                book.position(element.topic(), element.partition()),
                cached_high_watermark(consumer, element.topic(), element.partition()),
            )
        })
        .collect())
}

/// The health of a consumer: `telemetry`'s facts with the assignment and
/// its lag (from `book` and librdkafka's cached watermarks).
pub fn health<C: ConsumerContext>(
    consumer: &impl Consumer<C>,
    book: &OffsetBook,
    telemetry: &crate::Telemetry,
    max_poll_interval: Duration,
) -> consumer_api::Health {
    let (assigned, lag) = match partition_lag(consumer, book) {
        Ok(partitions) => {
            let known: Vec<i64> = partitions.iter().filter_map(PartitionLag::lag).collect();
            (
                partitions.len(),
                (!known.is_empty()).then(|| known.iter().sum()),
            )
        }
        Err(_) => (0, None),
    };
    telemetry.health(assigned, lag, max_poll_interval)
}

/// librdkafka's last known high watermark of a partition, if it has one.
fn cached_high_watermark<C: ConsumerContext>(
    consumer: &impl Consumer<C>,
    topic: &str,
    partition: i32,
) -> Option<i64> {
    let topic = CString::new(topic).ok()?;
    let (mut low, mut high) = (
        i64::from(rdsys::RD_KAFKA_OFFSET_INVALID),
        i64::from(rdsys::RD_KAFKA_OFFSET_INVALID),
    );
    // SAFETY: the client pointer is valid while `consumer` lives; `topic` is
    // a NUL-terminated string that outlives the call; `low` and `high` are
    // written by it. It reads librdkafka's cache under its own lock.
    let error = unsafe {
        rdsys::rd_kafka_get_watermark_offsets(
            consumer.client().native_ptr(),
            topic.as_ptr(),
            partition,
            &mut low,
            &mut high,
        )
    };
    (error == rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR && high >= 0).then_some(high)
}

/// For each partition assigned to `consumer`, the offset of its first record
/// with a timestamp at or after `timestamp_ms`, or `Offset::End` where there
/// is none, asked of the broker (blocks up to `timeout`).
///
/// # Errors
///
/// [`ConsumerError::Kafka`] when librdkafka cannot list the assignment, the
/// broker does not answer in time, or the lookup failed for a partition
/// (its `reason` names it): librdkafka then leaves that partition's offset
/// at "the end", and seeking there would skip its unread messages.
pub fn offsets_at_timestamp<C: ConsumerContext>(
    consumer: &impl Consumer<C>,
    timestamp_ms: i64,
    timeout: Duration,
) -> Result<TopicPartitionList, ConsumerError> {
    let assignment = consumer.assignment()?;
    let mut query = TopicPartitionList::with_capacity(assignment.count());
    for element in assignment.elements() {
        query.add_partition_offset(
            element.topic(),
            element.partition(),
            Offset::Offset(timestamp_ms),
        )?;
    }
    if query.count() == 0 {
        return Ok(query);
    }
    let offsets = consumer.offsets_for_times(query, timeout)?;
    for element in offsets.elements() {
        if let Err(error) = element.error() {
            return Err(ConsumerError::reported(
                error,
                Some(format!(
                    "cannot find the offset of {}/{} at timestamp {timestamp_ms}",
                    element.topic(),
                    element.partition()
                )),
            ));
        }
    }
    Ok(offsets)
}
