//! An owned librdkafka mock cluster whose raw handle we keep.
//!
//! rdkafka's [`MockCluster`](rdkafka::mocking::MockCluster) does not expose its
//! `rd_kafka_mock_cluster_t` pointer, and it is neither `Send` nor `Sync` (it
//! holds a raw pointer). We need the pointer for
//! `rd_kafka_mock_group_initial_rebalance_delay_ms`, which has no rdkafka
//! wrapper, so this module creates the cluster exactly as
//! `MockCluster::new` does (a producer-type client handle plus
//! `rd_kafka_mock_cluster_new`) and keeps both.

use std::ffi::{CStr, CString};
use std::ptr::NonNull;

use rdkafka::bindings as rdsys;
use rdkafka::client::{Client, DefaultClientContext};
use rdkafka::config::ClientConfig;
use rdkafka::types::{RDKafkaRespErr, RDKafkaType};

use crate::TestEnvError;

/// librdkafka's default `group.initial.rebalance.delay.ms` on the mock is
/// 3000 ms (like a real broker); tests want the first join to finish at once.
const INITIAL_REBALANCE_DELAY_MS: i32 = 0;

/// A running mock cluster. Dropping it stops the mock brokers.
pub(crate) struct MockBroker {
    cluster: NonNull<rdsys::rd_kafka_mock_cluster_t>,
    bootstrap: String,
    /// The client handle the cluster was created on: its logging, timers and
    /// internal broker belong to this handle, so it must outlive the cluster.
    /// Fields drop after `Drop::drop` runs, so the cluster goes first.
    _handle: Client<DefaultClientContext>,
}

// SAFETY: `MockBroker` only holds a librdkafka client handle (already `Send +
// Sync` in rdkafka: `rd_kafka_t` is thread-safe) and a mock cluster pointer.
// librdkafka controls the mock cluster from its own thread through an op queue
// "in a thread-safe manner without locking" (rdkafka_mock.c,
// `rd_kafka_mock_cluster_new`): every control function we call from `&self`
// (`rd_kafka_mock_topic_create`) enqueues an op on that thread-safe queue and
// waits for the reply, and `rd_kafka_mock_group_initial_rebalance_delay_ms`
// takes the cluster's mutex. The bootstrap string is copied once at creation.
// The only non-thread-safe call, `rd_kafka_mock_cluster_destroy`, runs in
// `Drop`, which has exclusive access. So sharing and sending the handle across
// threads is sound.
unsafe impl Send for MockBroker {}
// SAFETY: see the `Send` impl above: all `&self` methods are thread-safe.
unsafe impl Sync for MockBroker {}

impl MockBroker {
    /// Starts a mock cluster with `brokers` brokers and no initial rebalance
    /// delay.
    pub(crate) fn start(brokers: i32) -> Result<Self, TestEnvError> {
        let start_error = |detail: String| TestEnvError::MockStart { detail };
        let config = ClientConfig::new();
        let native_config = config
            .create_native_config()
            .map_err(|error| start_error(error.to_string()))?;
        let handle = Client::new(
            &config,
            native_config,
            RDKafkaType::RD_KAFKA_PRODUCER,
            DefaultClientContext,
        )
        .map_err(|error| start_error(error.to_string()))?;

        // SAFETY: `handle` is a valid client handle and outlives the cluster
        // (see the field order note on `MockBroker`).
        let raw = unsafe { rdsys::rd_kafka_mock_cluster_new(handle.native_ptr(), brokers) };
        let cluster = NonNull::new(raw)
            .ok_or_else(|| start_error("rd_kafka_mock_cluster_new returned NULL".to_owned()))?;

        // SAFETY: `cluster` is a live mock cluster; the setter takes the
        // cluster's lock.
        unsafe {
            rdsys::rd_kafka_mock_group_initial_rebalance_delay_ms(
                cluster.as_ptr(),
                INITIAL_REBALANCE_DELAY_MS,
            );
        }

        // SAFETY: the cluster owns a NUL-terminated bootstrap string that lives
        // as long as the cluster; we copy it right away.
        let bootstrap = unsafe {
            CStr::from_ptr(rdsys::rd_kafka_mock_cluster_bootstraps(cluster.as_ptr()))
                .to_string_lossy()
                .into_owned()
        };

        let broker = Self {
            cluster,
            bootstrap,
            _handle: handle,
        };
        tracing::info!(
            bootstrap = %broker.bootstrap,
            brokers,
            "started librdkafka mock cluster (initial rebalance delay {INITIAL_REBALANCE_DELAY_MS} ms)"
        );
        Ok(broker)
    }

    /// The cluster's bootstrap list.
    pub(crate) fn bootstrap(&self) -> &str {
        &self.bootstrap
    }

    /// Creates a topic with replication factor 1; returns whether it already
    /// existed (not an error).
    pub(crate) fn create_topic(&self, topic: &str, partitions: i32) -> Result<bool, TestEnvError> {
        let create_error = |reason: String| TestEnvError::CreateTopic {
            topic: topic.to_owned(),
            partitions,
            reason,
        };
        let topic_c = CString::new(topic).map_err(|error| create_error(error.to_string()))?;
        // SAFETY: live cluster, valid C string; the call is a synchronous
        // request to the mock cluster's thread.
        let code = unsafe {
            rdsys::rd_kafka_mock_topic_create(
                self.cluster.as_ptr(),
                topic_c.as_ptr(),
                partitions,
                1,
            )
        };
        match code {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR => Ok(false),
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS => {
                tracing::debug!(topic, "mock topic already exists");
                Ok(true)
            }
            other => Err(create_error(format!(
                "the mock cluster answered {}",
                rdkafka::error::RDKafkaErrorCode::from(other)
            ))),
        }
    }
}

impl MockBroker {
    /// Takes the cluster's broker down (closing and refusing connections) or
    /// brings it back.
    /// Makes the next `errors.len()` requests of `api` fail, in order, with
    /// these errors.
    pub(crate) fn fail_requests(
        &self,
        api: rdkafka::types::RDKafkaApiKey,
        errors: &[RDKafkaRespErr],
    ) {
        // SAFETY: the cluster is alive for `&self`; librdkafka copies the
        // array under the cluster's lock.
        unsafe {
            rdsys::rd_kafka_mock_push_request_errors_array(
                self.cluster.as_ptr(),
                api as i16,
                errors.len(),
                errors.as_ptr(),
            );
        }
    }

    /// Delays every answer of broker 1 by `delay` (`ZERO`: none): with a
    /// long delay the broker keeps its connections but answers nothing, as
    /// a frozen process does.
    pub(crate) fn set_round_trip_time(&self, delay: std::time::Duration) {
        let millis = i32::try_from(delay.as_millis()).unwrap_or(i32::MAX);
        // SAFETY: as in `set_up`.
        let code = unsafe { rdsys::rd_kafka_mock_broker_set_rtt(self.cluster.as_ptr(), 1, millis) };
        if code != RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR {
            tracing::error!(
                millis,
                "the mock cluster refused to change broker 1's round-trip time: {code:?}"
            );
        }
    }

    pub(crate) fn set_up(&self, up: bool) {
        // SAFETY: live cluster; broker 1 exists (the cluster has at least
        // one broker, numbered from 1); the call is a request to the mock
        // cluster's thread.
        let code = unsafe {
            if up {
                rdsys::rd_kafka_mock_broker_set_up(self.cluster.as_ptr(), 1)
            } else {
                rdsys::rd_kafka_mock_broker_set_down(self.cluster.as_ptr(), 1)
            }
        };
        if code != RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR {
            tracing::error!(
                up,
                "the mock cluster refused to change broker 1's state: {code:?}"
            );
        }
    }
}

impl Drop for MockBroker {
    fn drop(&mut self) {
        tracing::debug!(bootstrap = %self.bootstrap, "stopping librdkafka mock cluster");
        // SAFETY: we created the cluster with `rd_kafka_mock_cluster_new` and
        // destroy it exactly once, before its client handle is dropped.
        unsafe { rdsys::rd_kafka_mock_cluster_destroy(self.cluster.as_ptr()) };
    }
}
