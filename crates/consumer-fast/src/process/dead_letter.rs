//! [`DeadLetterTopic`]: the ready [`DeadLetterHook`], producing to a
//! dead-letter topic and waiting for the broker's acknowledgement.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use consumer_api::{ConsumerConfig, ConsumerError};
use rdkafka::ClientConfig;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};

use crate::process::runner::{BoxError, DeadLetter, DeadLetterHook};

/// The header naming the topic the record was read from.
pub const HEADER_ORIGINAL_TOPIC: &str = "dlt-original-topic";
/// The header naming the partition the record was read from (decimal text).
pub const HEADER_ORIGINAL_PARTITION: &str = "dlt-original-partition";
/// The header naming the record's offset (decimal text).
pub const HEADER_ORIGINAL_OFFSET: &str = "dlt-original-offset";
/// The header holding the last error's message.
pub const HEADER_ERROR: &str = "dlt-error";
/// The header holding how many times the handler ran (decimal text; 0: the
/// record could not be decoded).
pub const HEADER_ATTEMPTS: &str = "dlt-attempts";

/// The consumer properties (by prefix) a dead-letter producer needs too:
/// how to reach and authenticate to the cluster.
const CONNECTION_PROPERTIES: &[&str] = &[
    "security.",
    "sasl.",
    "ssl.",
    "ssl_",
    "enable.ssl.",
    "enable.sasl.",
    "https.",
    "socket.",
    "broker.address.",
    "client.dns.",
];

/// Names a record's dead-letter topic after its topic.
type TopicNamer = dyn Fn(&str) -> String + Send + Sync;

/// A [`DeadLetterHook`] that produces each message it is given to a
/// dead-letter topic (`<topic>.DLT` unless [`named`](Self::named)
/// otherwise, as Spring Kafka names them), and reports it done only once the
/// broker has acknowledged it (`acks=all`, idempotent).
///
/// The dead-letter record has the original's key, value and headers, plus
/// [`HEADER_ORIGINAL_TOPIC`], [`HEADER_ORIGINAL_PARTITION`],
/// [`HEADER_ORIGINAL_OFFSET`], [`HEADER_ERROR`] and [`HEADER_ATTEMPTS`], all
/// UTF-8 text. Its timestamp is the original's, when it has one.
///
/// ```no_run
/// use consumer_fast::DeadLetterTopic;
///
/// let hook = DeadLetterTopic::new("localhost:9092")?.named(|topic| format!("{topic}-failed"));
/// # Ok::<(), consumer_api::ConsumerError>(())
/// ```
#[derive(Clone)]
pub struct DeadLetterTopic {
    producer: FutureProducer,
    topic_for: Arc<TopicNamer>,
    queue_timeout: Duration,
}

impl std::fmt::Debug for DeadLetterTopic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeadLetterTopic")
            .field("queue_timeout", &self.queue_timeout)
            .finish_non_exhaustive()
    }
}

impl DeadLetterTopic {
    /// A producer to `brokers` with `acks=all` and idempotence on.
    ///
    /// # Errors
    ///
    /// [`ConsumerError::Kafka`] when librdkafka cannot create the producer.
    pub fn new(brokers: &str) -> Result<Self, ConsumerError> {
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("acks", "all")
            .set("enable.idempotence", "true")
            .create()?;
        Ok(Self::with_producer(producer))
    }

    /// A producer to the brokers `config` names, with the connection
    /// properties among its `extra` (`security.protocol`, `sasl.*`, `ssl.*`,
    /// `enable.ssl.*`, `enable.sasl.*`, `https.*`, `socket.*`,
    /// `broker.address.family`, `client.dns.lookup`), so that it
    /// reaches the cluster the consumer reads; `acks=all`, idempotent. The
    /// topic names follow `config.processing.dead_letter` (`<topic>.DLT`
    /// unless it names another suffix).
    ///
    /// ```
    /// use consumer_api::ConsumerConfig;
    /// use consumer_fast::DeadLetterTopic;
    ///
    /// let config = ConsumerConfig::new("localhost:9092", "billing");
    /// let hook = DeadLetterTopic::for_consumer(&config)?;
    /// assert_eq!(hook.topic_for("orders"), "orders.DLT");
    /// # Ok::<(), consumer_api::ConsumerError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`ConsumerError::Kafka`] when librdkafka cannot create the producer.
    pub fn for_consumer(config: &ConsumerConfig) -> Result<Self, ConsumerError> {
        let mut client = ClientConfig::new();
        client
            .set("bootstrap.servers", &config.brokers)
            .set("acks", "all")
            .set("enable.idempotence", "true");
        for (property, value) in &config.extra {
            if CONNECTION_PROPERTIES
                .iter()
                .any(|prefix| property.starts_with(prefix))
            {
                client.set(property, value);
            }
        }
        let producer: FutureProducer = client
            .create()
            .map_err(|error| config.client_error(error))?;
        let suffix = config
            .processing
            .as_ref()
            .and_then(|processing| processing.dead_letter.as_ref())
            .map_or(".DLT", consumer_api::DeadLetterConfig::suffix)
            .to_owned();
        Ok(Self::with_producer(producer).named(move |topic| format!("{topic}{suffix}")))
    }

    /// Produces with `producer`, configured as the application wants
    /// (security settings, say); keep `acks=all` for nothing to be lost.
    pub fn with_producer(producer: FutureProducer) -> Self {
        DeadLetterTopic {
            producer,
            topic_for: Arc::new(|topic: &str| format!("{topic}.DLT")),
            queue_timeout: Duration::from_secs(30),
        }
    }

    /// Names each record's dead-letter topic after its topic.
    #[must_use]
    pub fn named(mut self, topic_for: impl Fn(&str) -> String + Send + Sync + 'static) -> Self {
        self.topic_for = Arc::new(topic_for);
        self
    }

    /// How long a dead letter may wait in the producer's queue for the
    /// broker's acknowledgement before the hook fails (30 s unless set).
    #[must_use]
    pub fn queue_timeout(mut self, timeout: Duration) -> Self {
        self.queue_timeout = timeout;
        self
    }

    /// The dead-letter topic of records of `topic`.
    pub fn topic_for(&self, topic: &str) -> String {
        (self.topic_for)(topic)
    }
}

impl DeadLetterHook for DeadLetterTopic {
    fn dead_letter(
        &self,
        letter: DeadLetter,
    ) -> Pin<Box<dyn Future<Output = Result<(), BoxError>> + Send + 'static>> {
        let producer = self.producer.clone();
        let topic = self.topic_for(&letter.record.topic);
        let queue_timeout = self.queue_timeout;
        Box::pin(async move {
            let record = &letter.record;
            let mut headers = OwnedHeaders::new_with_capacity(record.headers.len() + 5);
            for header in record.headers.iter() {
                headers = headers.insert(Header {
                    key: header.key(),
                    value: header.value(),
                });
            }
            let partition = record.partition.to_string();
            let offset = record.offset.to_string();
            let error = letter.error.to_string();
            let attempts = letter.attempts.to_string();
            for (key, value) in [
                (HEADER_ORIGINAL_TOPIC, record.topic.as_str()),
                (HEADER_ORIGINAL_PARTITION, partition.as_str()),
                (HEADER_ORIGINAL_OFFSET, offset.as_str()),
                (HEADER_ERROR, error.as_str()),
                (HEADER_ATTEMPTS, attempts.as_str()),
            ] {
                headers = headers.insert(Header {
                    key,
                    value: Some(value),
                });
            }
            let mut dead = FutureRecord::<[u8], [u8]>::to(&topic).headers(headers);
            if let Some(key) = &record.key {
                dead = dead.key(key.as_slice());
            }
            if let Some(value) = &record.value {
                dead = dead.payload(value.as_slice());
            }
            if let Some(millis) = record.timestamp.millis() {
                dead = dead.timestamp(millis);
            }
            match producer.send(dead, queue_timeout).await {
                Ok(_) => Ok(()),
                Err((error, _)) => Err(format!(
                    "cannot produce {}/{}@{} to {topic}: {error}",
                    record.topic, record.partition, record.offset
                )
                .into()),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by the review of the secrets change: the dead-letter producer's
    /// creation error was converted as librdkafka wrote it, without the
    /// consumer configuration's redaction, so a secret value quoted under
    /// another property (a password pasted into the wrong one) showed.
    /// Before the fix: `Client config error: No such configuration property:
    /// "ssl.bogus.location" ssl.bogus.location s3cr3t-dead-letter`.
    #[test]
    fn a_refused_producer_property_never_shows_a_secret() {
        const SECRET: &str = "s3cr3t-dead-letter";
        let config = ConsumerConfig::new("127.0.0.1:1", "g")
            .with_extra("sasl.password", SECRET)
            .with_extra("ssl.bogus.location", SECRET);
        let Err(error) = DeadLetterTopic::for_consumer(&config) else {
            panic!("librdkafka does not know the property");
        };
        for shown in [error.to_string(), format!("{error:?}")] {
            assert!(!shown.contains(SECRET), "{shown}");
            assert!(shown.contains("ssl.bogus.location"), "{shown}");
        }
    }
}
