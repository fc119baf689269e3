//! Topic creation, deletion and metadata waits through rdkafka's `AdminClient`.
//!
//! rdkafka's admin futures are plain `futures-channel` oneshots fed by the
//! admin client's own polling thread: they need no async runtime, so
//! [`block_on`] parks the calling thread until they resolve. That works from
//! sync tests and from inside a Tokio runtime alike (it blocks that thread for
//! the duration of the call, like any other blocking call).

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::metadata::Metadata;
use rdkafka::types::RDKafkaRespErr;

use crate::TestEnvError;

/// Bound of every wait on topic metadata.
pub(crate) const TOPIC_WAIT: Duration = Duration::from_secs(30);

/// Timeout of one metadata request inside such a wait.
const METADATA_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Pause between two metadata requests.
const METADATA_RETRY_PAUSE: Duration = Duration::from_millis(100);

/// Broker-side timeout of admin operations.
const ADMIN_OPERATION_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs a runtime-free future to completion on the current thread.
fn block_on<F: Future>(future: F) -> F::Output {
    struct Unparker(Thread);
    impl Wake for Unparker {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
        fn wake_by_ref(self: &Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unparker(thread::current())));
    let mut context = Context::from_waker(&waker);
    let mut future = pin!(future);
    loop {
        match future.as_mut().poll(&mut context) {
            Poll::Ready(output) => return output,
            Poll::Pending => thread::park(),
        }
    }
}

/// What a topic's metadata looks like, for waits and error messages.
enum TopicState {
    /// The topic has `partitions` partitions and every one has a leader.
    Ready { partitions: usize },
    /// The broker does not know the topic.
    Missing,
    /// Anything in between, described for an error message.
    Pending(String),
}

fn topic_state(metadata: &Metadata, topic: &str) -> TopicState {
    let Some(found) = metadata.topics().iter().find(|t| t.name() == topic) else {
        return TopicState::Missing;
    };
    match found.error() {
        None => {}
        Some(RDKafkaRespErr::RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART) => {
            return TopicState::Missing;
        }
        Some(error) => {
            return TopicState::Pending(format!("topic error {}", RDKafkaErrorCode::from(error)));
        }
    }
    let partitions = found.partitions();
    if partitions.is_empty() {
        return TopicState::Pending("no partitions yet".to_owned());
    }
    let leaderless: Vec<i32> = partitions
        .iter()
        .filter(|p| p.leader() < 0 || p.error().is_some())
        .map(|p| p.id())
        .collect();
    if leaderless.is_empty() {
        TopicState::Ready {
            partitions: partitions.len(),
        }
    } else {
        TopicState::Pending(format!(
            "{} partition(s), without leader: {leaderless:?}",
            partitions.len()
        ))
    }
}

/// Admin client for one env; also used for metadata on the mock cluster.
pub(crate) struct TopicAdmin {
    client: AdminClient<DefaultClientContext>,
}

impl TopicAdmin {
    /// Creates the admin client. `config` must not allow topic auto-creation,
    /// or metadata requests could re-create a deleted topic.
    pub(crate) fn new(config: &ClientConfig) -> Result<Self, KafkaError> {
        Ok(Self {
            client: config.create()?,
        })
    }

    fn options() -> AdminOptions {
        AdminOptions::new()
            .operation_timeout(Some(ADMIN_OPERATION_TIMEOUT))
            .request_timeout(Some(ADMIN_OPERATION_TIMEOUT))
    }

    /// Creates a topic with `replication`; returns whether it already
    /// existed.
    pub(crate) fn create(
        &self,
        topic: &str,
        partitions: i32,
        replication: TopicReplication<'_>,
    ) -> Result<bool, TestEnvError> {
        let create_error = |reason: String| TestEnvError::CreateTopic {
            topic: topic.to_owned(),
            partitions,
            reason,
        };
        let new_topic = NewTopic::new(topic, partitions, replication);
        let results = block_on(self.client.create_topics([&new_topic], &Self::options()))
            .map_err(|error| create_error(error.to_string()))?;
        match results.into_iter().next() {
            Some(Ok(_)) => Ok(false),
            Some(Err((_, RDKafkaErrorCode::TopicAlreadyExists))) => {
                tracing::debug!(topic, "topic already exists");
                Ok(true)
            }
            Some(Err((_, code))) => Err(create_error(format!("the broker answered {code}"))),
            None => Err(create_error("the broker sent no result".to_owned())),
        }
    }

    /// A metadata request for `topic` (or every topic), through the admin
    /// client's connections.
    pub(crate) fn metadata(
        &self,
        topic: Option<&str>,
        timeout: Duration,
    ) -> Result<Metadata, KafkaError> {
        self.client.inner().fetch_metadata(topic, timeout)
    }

    /// Deletes a topic; a topic that does not exist is not an error.
    pub(crate) fn delete(&self, topic: &str) -> Result<(), TestEnvError> {
        let delete_error = |reason: String| TestEnvError::DeleteTopic {
            topic: topic.to_owned(),
            reason,
        };
        let results = block_on(self.client.delete_topics(&[topic], &Self::options()))
            .map_err(|error| delete_error(error.to_string()))?;
        match results.into_iter().next() {
            Some(Ok(_)) => Ok(()),
            Some(Err((_, RDKafkaErrorCode::UnknownTopicOrPartition))) => {
                tracing::debug!(topic, "topic to delete does not exist");
                Ok(())
            }
            Some(Err((_, code))) => Err(delete_error(format!("the broker answered {code}"))),
            None => Err(delete_error("the broker sent no result".to_owned())),
        }
    }

    /// Waits until the topic has `partitions` partitions, each with a leader.
    /// When the topic `already_existed`, a different partition count is an
    /// error rather than something to wait out.
    pub(crate) fn wait_until_ready(
        &self,
        topic: &str,
        partitions: i32,
        already_existed: bool,
    ) -> Result<(), TestEnvError> {
        let expected = usize::try_from(partitions).unwrap_or(0);
        self.wait(
            topic,
            &format!("ready with {partitions} led partition(s)"),
            |state| match state {
                TopicState::Ready { partitions: actual } if *actual == expected => Ok(true),
                TopicState::Ready { partitions: actual } if already_existed => {
                    Err(TestEnvError::PartitionCountMismatch {
                        topic: topic.to_owned(),
                        expected: partitions,
                        actual: *actual,
                    })
                }
                _ => Ok(false),
            },
        )
    }

    /// Waits until the broker no longer knows the topic.
    pub(crate) fn wait_until_gone(&self, topic: &str) -> Result<(), TestEnvError> {
        self.wait(topic, "deleted", |state| {
            Ok(matches!(state, TopicState::Missing))
        })
    }

    /// Polls metadata until `done` says yes, fails, or [`TOPIC_WAIT`] passes.
    fn wait(
        &self,
        topic: &str,
        wanted: &str,
        mut done: impl FnMut(&TopicState) -> Result<bool, TestEnvError>,
    ) -> Result<(), TestEnvError> {
        let started = Instant::now();
        loop {
            let last_seen = match self
                .client
                .inner()
                .fetch_metadata(Some(topic), METADATA_REQUEST_TIMEOUT)
            {
                Ok(metadata) => {
                    let state = topic_state(&metadata, topic);
                    if done(&state)? {
                        tracing::debug!(topic, wanted, elapsed = ?started.elapsed(), "topic metadata settled");
                        return Ok(());
                    }
                    match state {
                        TopicState::Ready { partitions } => {
                            format!("{partitions} partition(s), all with a leader")
                        }
                        TopicState::Missing => "the broker does not know the topic".to_owned(),
                        TopicState::Pending(description) => description,
                    }
                }
                Err(error) => format!("metadata request failed: {error}"),
            };
            if started.elapsed() >= TOPIC_WAIT {
                return Err(TestEnvError::TopicNotReady {
                    topic: topic.to_owned(),
                    wanted: wanted.to_owned(),
                    waited: started.elapsed(),
                    last_seen,
                });
            }
            thread::sleep(METADATA_RETRY_PAUSE);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_on_completes_a_future_woken_from_another_thread() {
        let (sender, receiver) = std::sync::mpsc::channel::<Waker>();
        let mut polled = false;
        let future = std::future::poll_fn(|context| {
            if polled {
                Poll::Ready(7)
            } else {
                polled = true;
                let _ = sender.send(context.waker().clone());
                Poll::Pending
            }
        });
        let waker_thread = thread::spawn(move || {
            if let Ok(waker) = receiver.recv() {
                thread::sleep(Duration::from_millis(20));
                waker.wake();
            }
        });
        assert_eq!(block_on(future), 7);
        waker_thread.join().expect("waker thread finishes");
    }
}
