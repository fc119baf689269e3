//! [`ErrorReasons`]: librdkafka's description of the error a poll returns.

use std::sync::{Mutex, PoisonError};

use consumer_api::ConsumerError;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};

/// Keeps librdkafka's description of the last error it reported, so that the
/// error a poll returns can name what it is about.
///
/// rdkafka hands an error event's description (`Subscribed topic not
/// available: orders: ...`, `127.0.0.1:1/bootstrap: Connect to ... failed`)
/// only to the context's `ClientContext::error`, and then returns the same
/// event from the poll as a bare `KafkaError` code. A context
/// [`note`](Self::note)s the description there; the consumer
/// [`attach`](Self::attach)es it to the error the poll returned, on the same
/// thread, right after.
#[derive(Debug, Default)]
pub struct ErrorReasons {
    last: Mutex<Option<(Option<RDKafkaErrorCode>, String)>>,
}

impl ErrorReasons {
    /// An empty slot.
    pub fn new() -> Self {
        Self::default()
    }

    /// Remembers the description of an error librdkafka is reporting (call
    /// from `ClientContext::error`).
    pub fn note(&self, error: &KafkaError, reason: &str) {
        *self.lock() = Some((error.rdkafka_error_code(), reason.to_owned()));
    }

    /// The error a poll returned, as a [`ConsumerError::Kafka`] with the
    /// description noted for it (same error code) as its `reason`.
    pub fn attach(&self, error: KafkaError) -> ConsumerError {
        let noted = self.lock().take();
        let reason = noted
            .filter(|(code, _)| code.is_some() && *code == error.rdkafka_error_code())
            .map(|(_, reason)| reason);
        ConsumerError::reported(error, reason)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<(Option<RDKafkaErrorCode>, String)>> {
        // A single assignment or take: always consistent.
        self.last.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_noted_description_goes_with_the_same_code_only() {
        let reasons = ErrorReasons::new();
        reasons.note(
            &KafkaError::Global(RDKafkaErrorCode::UnknownTopicOrPartition),
            "Subscribed topic not available: orders: Broker: Unknown topic or partition",
        );
        let error = reasons.attach(KafkaError::MessageConsumption(
            RDKafkaErrorCode::UnknownTopicOrPartition,
        ));
        assert!(
            matches!(&error, ConsumerError::Kafka { reason: Some(reason), .. } if reason.contains("orders")),
            "{error:?}"
        );
        assert!(error.to_string().contains("orders"), "{error}");
        // Taken: the next error of the same code has no description.
        let again = reasons.attach(KafkaError::MessageConsumption(
            RDKafkaErrorCode::UnknownTopicOrPartition,
        ));
        assert!(
            matches!(again, ConsumerError::Kafka { reason: None, .. }),
            "{again:?}"
        );

        reasons.note(
            &KafkaError::Global(RDKafkaErrorCode::AllBrokersDown),
            "1/1 brokers are down",
        );
        let other = reasons.attach(KafkaError::MessageConsumption(
            RDKafkaErrorCode::BrokerTransportFailure,
        ));
        assert!(
            matches!(other, ConsumerError::Kafka { reason: None, .. }),
            "{other:?}"
        );
    }
}
