//! Staying in the group while the application waits: librdkafka's liveness
//! check (KIP-62, `max.poll.interval.ms`) counts time since the last poll of
//! the consumer queue, and a stream waiting on an empty queue does not poll.

use std::ffi::{CStr, c_char};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use rdkafka::bindings as rdsys;
use rdkafka::consumer::{BaseConsumer, Consumer as _, ConsumerContext};

use crate::wakers::StreamWakers;

/// librdkafka's default `max.poll.interval.ms`.
const DEFAULT_MAX_POLL_INTERVAL: Duration = Duration::from_secs(300);

/// The consumer's `max.poll.interval.ms`, as librdkafka holds it.
pub(crate) fn max_poll_interval<C: ConsumerContext>(consumer: &BaseConsumer<C>) -> Duration {
    configured(consumer, c"max.poll.interval.ms")
        .and_then(|millis| millis.parse().ok())
        .map_or(DEFAULT_MAX_POLL_INTERVAL, Duration::from_millis)
}

/// Whether librdkafka commits stored offsets in the background
/// (`enable.auto.commit`, on by default).
pub(crate) fn auto_commit<C: ConsumerContext>(consumer: &BaseConsumer<C>) -> bool {
    configured(consumer, c"enable.auto.commit").is_none_or(|value| value != "false")
}

/// Whether the consumer rebalances with the cooperative protocol: its
/// `partition.assignment.strategy` is `cooperative-sticky` (librdkafka
/// refuses to mix cooperative and eager assignors).
///
/// Read from the configuration, not with `rd_kafka_rebalance_protocol`: that
/// asks the group thread and can wait forever when called from the rebalance
/// callback of a closing consumer (librdkafka #4041; seen here as a Dedicated
/// consumer's drop that never returned in `reliability_group_churn`).
pub(crate) fn cooperative<C: ConsumerContext>(consumer: &BaseConsumer<C>) -> bool {
    configured(consumer, c"partition.assignment.strategy")
        .is_some_and(|strategy| strategy.contains("cooperative-sticky"))
}

/// A property of the consumer's configuration, as librdkafka holds it.
fn configured<C: ConsumerContext>(consumer: &BaseConsumer<C>, name: &CStr) -> Option<String> {
    let mut value = [0 as c_char; 256];
    let mut size = value.len();
    // SAFETY: the client pointer is valid while `consumer` lives, and
    // `rd_kafka_conf` returns the client's own configuration, which lives as
    // long; `value` has `size` writable bytes and librdkafka NUL-terminates
    // what it writes.
    let status = unsafe {
        let conf = rdsys::rd_kafka_conf(consumer.client().native_ptr());
        rdsys::rd_kafka_conf_get(conf, name.as_ptr(), value.as_mut_ptr(), &mut size)
    };
    if status != rdsys::rd_kafka_conf_res_t::RD_KAFKA_CONF_OK {
        return None;
    }
    // SAFETY: librdkafka wrote a NUL-terminated string into `value`.
    let text = unsafe { CStr::from_ptr(value.as_ptr()) };
    text.to_str().ok().map(str::to_owned)
}

/// A thread that wakes a waiting stream every half `max.poll.interval.ms`,
/// so that the stream polls librdkafka and the consumer stays in its group
/// however long the topic stays empty.
///
/// A task that waits for the stream is woken and polls; a task that is stuck
/// elsewhere does not poll, and librdkafka's liveness check removes the
/// consumer from the group as it should. Dropping the keeper stops and joins
/// the thread.
#[derive(Debug)]
pub(crate) struct PollKeeper {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

impl PollKeeper {
    /// Starts the thread, waking every waiting reader every `max_poll_interval / 2`.
    pub(crate) fn start(
        wakers: Arc<StreamWakers>,
        max_poll_interval: Duration,
    ) -> std::io::Result<Self> {
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let every = max_poll_interval / 2;
        let thread = {
            let stop = Arc::clone(&stop);
            std::thread::Builder::new()
                .name("kafka-poll-keeper".to_owned())
                .spawn(move || {
                    let (stopped, signal) = &*stop;
                    let mut stopped = stopped.lock().unwrap_or_else(PoisonError::into_inner);
                    while !*stopped {
                        let (guard, timeout) = signal
                            .wait_timeout(stopped, every)
                            .unwrap_or_else(PoisonError::into_inner);
                        stopped = guard;
                        if timeout.timed_out() {
                            wakers.wake_all();
                        }
                    }
                })?
        };
        Ok(PollKeeper {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for PollKeeper {
    fn drop(&mut self) {
        let (stopped, signal) = &*self.stop;
        *stopped.lock().unwrap_or_else(PoisonError::into_inner) = true;
        signal.notify_all();
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!("the poll keeper thread panicked");
        }
    }
}

#[cfg(test)]
mod tests {
    use rdkafka::ClientConfig;
    use rdkafka::consumer::DefaultConsumerContext;

    use super::*;

    fn consumer(strategy: Option<&str>) -> BaseConsumer<DefaultConsumerContext> {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", "127.0.0.1:1")
            .set("group.id", "protocol");
        if let Some(strategy) = strategy {
            config.set("partition.assignment.strategy", strategy);
        }
        config.create().expect("a consumer (nothing is contacted)")
    }

    #[test]
    fn the_rebalance_protocol_follows_the_configured_assignor() {
        assert!(
            !cooperative(&consumer(None)),
            "librdkafka's default: range,roundrobin"
        );
        assert!(!cooperative(&consumer(Some("roundrobin"))));
        assert!(cooperative(&consumer(Some("cooperative-sticky"))));
    }
}
