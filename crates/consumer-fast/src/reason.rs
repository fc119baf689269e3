//! [`ErrorReasons`]: librdkafka's description of the error a poll returns.

use std::sync::{Mutex, OnceLock, PoisonError};

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
///
/// A group authorization failure comes from librdkafka as
/// `FindCoordinator response error: Group authorization failed.`, without
/// the group: once the consumer's group is [named](Self::name_group), such an
/// error names it.
#[derive(Debug, Default)]
pub struct ErrorReasons {
    last: Mutex<Option<(Option<RDKafkaErrorCode>, String)>>,
    group: OnceLock<String>,
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

    /// The consumer's group (`group.id`), named in the errors about it;
    /// the first name given stays.
    pub fn name_group(&self, group: &str) {
        let _ = self.group.set(group.to_owned());
    }

    /// The error a poll returned, as a [`ConsumerError::Kafka`] with the
    /// description noted for it (same error code) as its `reason`, naming
    /// the group when the group is what the error is about.
    pub fn attach(&self, error: KafkaError) -> ConsumerError {
        let noted = self.lock().take();
        let mut reason = noted
            .filter(|(code, _)| code.is_some() && *code == error.rdkafka_error_code())
            .map(|(_, reason)| reason);
        if let (Some(RDKafkaErrorCode::GroupAuthorizationFailed), Some(group)) =
            (error.rdkafka_error_code(), self.group.get())
        {
            let named = format!("group `{group}`");
            reason = match reason {
                Some(reason) if reason.contains(&named) => Some(reason),
                Some(reason) => Some(format!("{reason} ({named})")),
                None => Some(named),
            };
        }
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

    #[test]
    fn a_group_authorization_failure_names_the_group() {
        let reasons = ErrorReasons::new();
        let failure = || KafkaError::MessageConsumption(RDKafkaErrorCode::GroupAuthorizationFailed);
        // Without a named group, as librdkafka says it.
        reasons.note(
            &failure(),
            "FindCoordinator response error: Group authorization failed.",
        );
        let unnamed = reasons.attach(failure());
        assert!(!unnamed.to_string().contains("group `"), "{unnamed}");

        reasons.name_group("billing");
        reasons.note(
            &failure(),
            "FindCoordinator response error: Group authorization failed.",
        );
        let error = reasons.attach(failure());
        assert!(
            error
                .to_string()
                .contains("Group authorization failed. (group `billing`)"),
            "{error}"
        );
        // Without a description too.
        assert!(
            reasons
                .attach(failure())
                .to_string()
                .contains("group `billing`")
        );
        // Other errors are left alone.
        let other = reasons.attach(KafkaError::MessageConsumption(
            RDKafkaErrorCode::TopicAuthorizationFailed,
        ));
        assert!(!other.to_string().contains("billing"), "{other}");
    }
}
