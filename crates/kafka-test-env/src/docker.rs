//! Kafka in Docker through testcontainers-modules (feature `docker`).
//!
//! testcontainers' blocking API drives its own Tokio runtime with
//! `Runtime::block_on`, which panics when called from inside another runtime
//! (for example a `#[tokio::test]`). Starting and dropping the container
//! therefore happen on a short-lived plain thread.

use std::sync::Mutex;
use std::thread;

use testcontainers_modules::kafka::apache;
use testcontainers_modules::testcontainers::Container;
use testcontainers_modules::testcontainers::runners::SyncRunner;

use crate::TestEnvError;

/// A running Kafka container; dropping it removes the container.
pub(crate) struct DockerBroker {
    /// `Mutex` only to make the type `Sync` whatever testcontainers' own
    /// auto traits are; it is never locked while the env is in use.
    container: Mutex<Option<Container<apache::Kafka>>>,
}

impl DockerBroker {
    /// Starts `apache/kafka-native` (KRaft, one node) and returns it with its
    /// bootstrap address.
    pub(crate) fn start() -> Result<(Self, String), TestEnvError> {
        let unavailable = |detail: String| TestEnvError::DockerUnavailable { detail };
        let joined = thread::Builder::new()
            .name("kafka-test-env-docker".to_owned())
            .spawn(|| -> Result<(Container<apache::Kafka>, u16), String> {
                let container = apache::Kafka::default()
                    .start()
                    .map_err(|error| error.to_string())?;
                let port = container
                    .get_host_port_ipv4(apache::KAFKA_PORT)
                    .map_err(|error| error.to_string())?;
                Ok((container, port))
            })
            .map_err(|error| unavailable(format!("could not spawn a thread: {error}")))?
            .join();
        match joined {
            Ok(Ok((container, port))) => {
                let bootstrap = format!("127.0.0.1:{port}");
                tracing::info!(%bootstrap, "started Kafka in Docker");
                Ok((
                    Self {
                        container: Mutex::new(Some(container)),
                    },
                    bootstrap,
                ))
            }
            Ok(Err(detail)) => Err(unavailable(detail)),
            Err(panic) => Err(unavailable(panic_text(&*panic))),
        }
    }
}

/// The message of a panic payload, for error text.
fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        format!("testcontainers panicked: {text}")
    } else if let Some(text) = payload.downcast_ref::<String>() {
        format!("testcontainers panicked: {text}")
    } else {
        "testcontainers panicked".to_owned()
    }
}

impl Drop for DockerBroker {
    fn drop(&mut self) {
        let container = match self.container.get_mut() {
            Ok(slot) => slot.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        };
        if let Some(container) = container {
            // Off-runtime drop: see the module docs.
            let stopped = thread::Builder::new()
                .name("kafka-test-env-docker-stop".to_owned())
                .spawn(move || drop(container))
                .map(|handle| handle.join());
            if !matches!(stopped, Ok(Ok(()))) {
                tracing::warn!("could not remove the Kafka container cleanly");
            }
        }
    }
}
