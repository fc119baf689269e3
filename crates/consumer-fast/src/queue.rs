//! A second handle on the consumer queue, to tell "empty" from "served an event".

use std::ptr::NonNull;

use rdkafka::bindings as rdsys;
use rdkafka::consumer::{Consumer, ConsumerContext};

/// Owns a reference to a consumer's librdkafka queue.
///
/// `BaseConsumer::poll` returns `None` both when the queue is empty and when
/// it served a non-message event (a rebalance, a commit result). librdkafka's
/// non-empty callback fires only when the queue goes from empty to non-empty,
/// so a stream may wait for it only when the queue really is empty: this
/// handle asks.
#[derive(Debug)]
pub(crate) struct QueueHandle(NonNull<rdsys::rd_kafka_queue_t>);

// SAFETY: librdkafka queue handles are reference counted and every queue
// operation takes the queue's own lock, so the handle may be used from any
// thread.
unsafe impl Send for QueueHandle {}
// SAFETY: as above; `length` only reads under librdkafka's lock.
unsafe impl Sync for QueueHandle {}

impl QueueHandle {
    /// A new reference to `consumer`'s queue (the consumer-group queue, to
    /// which partition queues and the main queue are forwarded), or `None`
    /// when the consumer has no group.
    pub(crate) fn of<C: ConsumerContext>(consumer: &impl Consumer<C>) -> Option<Self> {
        // SAFETY: the client pointer is valid while `consumer` lives; the
        // returned queue holds its own reference and is destroyed in `Drop`.
        // Callers drop the handle before the client: `Consumer::shut_down`
        // drops its handle before it hands the client to the closing thread,
        // and the closing thread's own handle is a local, dropped before the
        // client (also by an unwind); `serve_queued_before_close` drops its
        // handle before returning.
        let queue = unsafe { rdsys::rd_kafka_queue_get_consumer(consumer.client().native_ptr()) };
        NonNull::new(queue).map(QueueHandle)
    }

    /// The queue, for a librdkafka call; valid while `self` lives.
    pub(crate) fn as_ptr(&self) -> *mut rdsys::rd_kafka_queue_t {
        self.0.as_ptr()
    }

    /// How many operations wait in the queue, following forwarding.
    pub(crate) fn len(&self) -> usize {
        // SAFETY: the queue reference is valid until `Drop`.
        unsafe { rdsys::rd_kafka_queue_length(self.0.as_ptr()) }
    }
}

impl Drop for QueueHandle {
    fn drop(&mut self) {
        // SAFETY: we own this reference; it is not used after this.
        unsafe { rdsys::rd_kafka_queue_destroy(self.0.as_ptr()) }
    }
}
