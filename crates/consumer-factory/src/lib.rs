//! Configuration picks the consumer.
//!
//! [`ConsumerFactory::create`] reads [`ConsumerConfig::performance_tier`] and
//! returns a `Box<dyn KafkaStreamConsumer<K, V>>`:
//!
//! | `performance_tier` | implementation |
//! |---|---|
//! | absent | the legacy `StreamConsumer`-based `consumer_legacy::KafkaConsumer` |
//! | `"standard"` | `consumer_fast::Consumer`, [`KafkaStream`](consumer_fast::KafkaStream) |
//! | `{buffered: {batch_size: N}}` | `consumer_fast::Consumer`, [`BufferedKafkaStream`](consumer_fast::BufferedKafkaStream) |
//! | `"dedicated"` | `consumer_fast::Consumer`, [`DedicatedKafkaStream`](consumer_fast::DedicatedKafkaStream) |
//!
//! Existing configurations (no `performance_tier`) keep the legacy consumer.
//! The fast tiers are served by one adapter type,
//! [`TieredConsumer`]: the tiers differ only in
//! which stream `stream()` opens, so one type with the tier as data replaces
//! the plan's three adapters without three copies of the same delegation.
//!
//! # Example
//!
//! ```no_run
//! use consumer_api::{Json, StringSerde};
//! use consumer_factory::ConsumerFactory;
//! use futures_util::StreamExt;
//!
//! # async fn run() -> Result<(), consumer_api::ConsumerError> {
//! let consumer = ConsumerFactory::from_yaml_str(
//!     r#"
//! consumer:
//!   brokers: "localhost:9092"
//!   group_id: "my-group"
//!   performance_tier: "standard"
//! "#,
//!     StringSerde,
//!     Json::<serde_json::Value>::new(),
//! )?;
//! consumer.subscribe(&["events"])?;
//! let mut messages = consumer.stream();
//! while let Some(item) = messages.next().await {
//!     match item {
//!         Ok(message) => println!("{message}"),
//!         Err(error) if error.is_fatal() => return Err(error),
//!         Err(error) => eprintln!("skipping: {error}"),
//!     }
//! }
//! # Ok(()) }
//! ```

#![cfg_attr(docsrs, feature(doc_cfg))]
use std::sync::Arc;

use consumer_api::{ConsumerConfig, ConsumerError, Decode, KafkaStreamConsumer};
use consumer_fast::{Consumer, DeadLetterTopic, ProcessOptions, Processor, TieredConsumer};
use consumer_legacy::KafkaConsumer;

/// Builds the consumer a [`ConsumerConfig`] asks for. Not constructible: its
/// functions are the API.
#[derive(Debug)]
pub enum ConsumerFactory {}

impl ConsumerFactory {
    /// Builds the implementation `config.performance_tier` names (the legacy
    /// consumer when it is absent) and logs the choice once at info level.
    ///
    /// The serdes' types carry no bounds beyond `Serde` and `'static`: no tier
    /// asks for `Unpin` or `Clone`.
    ///
    /// # Errors
    ///
    /// [`ConsumerError::Config`] naming the field or librdkafka property for an
    /// invalid configuration (an unknown `extra` property, a typed field and an
    /// `extra` property setting the same thing, a `batch_size` of 0);
    /// [`ConsumerError::Kafka`] when librdkafka cannot create the client. An
    /// unreachable broker is not an error here: the stream reports it.
    pub fn create<K, V, KS, VS>(
        config: ConsumerConfig,
        key_serde: KS,
        value_serde: VS,
    ) -> Result<Box<dyn KafkaStreamConsumer<K, V>>, ConsumerError>
    where
        K: Send + 'static,
        V: Send + 'static,
        KS: Decode<K> + 'static,
        VS: Decode<V> + 'static,
    {
        config.validate()?;
        let brokers = config.brokers.clone();
        let group_id = config.group_id.clone();
        let consumer: Box<dyn KafkaStreamConsumer<K, V>> = match config.performance_tier {
            None => Box::new(KafkaConsumer::with_config(config, key_serde, value_serde)?),
            Some(tier) => Box::new(TieredConsumer::with_config(
                config,
                tier,
                key_serde,
                value_serde,
            )?),
        };
        tracing::info!(
            implementation = %describe(consumer.as_ref()),
            %brokers,
            %group_id,
            "Kafka consumer created"
        );
        Ok(consumer)
    }

    /// Concurrent processing as `config` describes it: a fast consumer (its
    /// `performance_tier` does not matter: processing polls on a thread of
    /// its own) and the options of its `processing:` section (the defaults
    /// without one), with a [`DeadLetterTopic`] when the section has
    /// `dead_letter:`. Subscribe [`Processor::consumer`], then run it.
    ///
    /// ```no_run
    /// use consumer_api::StringSerde;
    /// use consumer_factory::ConsumerFactory;
    /// use consumer_fast::BoxError;
    ///
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// let processor = ConsumerFactory::processor_from_yaml_str(
    ///     r#"
    /// consumer:
    ///   brokers: "localhost:9092"
    ///   group_id: "billing"
    ///   processing:
    ///     ordering: key
    ///     max_in_flight: 1000
    ///     retry: { attempts: 5 }
    ///     dead_letter: {}
    /// "#,
    ///     StringSerde,
    ///     StringSerde,
    /// )?;
    /// processor.consumer().subscribe(&["orders"])?;
    /// processor
    ///     .run(|order| async move {
    ///         println!("{order}");
    ///         Ok::<(), BoxError>(())
    ///     })
    ///     .await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`create`](Self::create), and [`ConsumerError::Kafka`] when the
    /// dead-letter producer cannot be created.
    pub fn processor<K, V>(
        config: ConsumerConfig,
        key_serde: impl Decode<K> + 'static,
        value_serde: impl Decode<V> + 'static,
    ) -> Result<Processor<K, V>, ConsumerError>
    where
        K: Send + 'static,
        V: Send + 'static,
    {
        config.validate()?;
        let processing = config.processing.clone().unwrap_or_default();
        let options = ProcessOptions::from_config(&processing);
        let dead_letter = match &processing.dead_letter {
            Some(_) => Some(DeadLetterTopic::for_consumer(&config)?),
            None => None,
        };
        let brokers = config.brokers.clone();
        let group_id = config.group_id.clone();
        let consumer = Arc::new(Consumer::with_config(config, key_serde, value_serde)?);
        tracing::info!(
            ordering = ?options.ordering,
            max_in_flight = options.max_in_flight,
            dead_letter = dead_letter.is_some(),
            %brokers,
            %group_id,
            "Kafka concurrent processing created"
        );
        let processor = consumer.processor(options);
        Ok(match dead_letter {
            Some(hook) => processor.dead_letter(hook),
            None => processor,
        })
    }

    /// [`processor`](Self::processor) from a YAML document.
    ///
    /// # Errors
    ///
    /// As [`from_yaml_str`](Self::from_yaml_str) and
    /// [`processor`](Self::processor).
    #[cfg(feature = "yaml")]
    #[cfg_attr(docsrs, doc(cfg(feature = "yaml")))]
    pub fn processor_from_yaml_str<K, V>(
        yaml: &str,
        key_serde: impl Decode<K> + 'static,
        value_serde: impl Decode<V> + 'static,
    ) -> Result<Processor<K, V>, ConsumerError>
    where
        K: Send + 'static,
        V: Send + 'static,
    {
        Self::processor(ConsumerConfig::from_yaml_str(yaml)?, key_serde, value_serde)
    }

    /// [`processor`](Self::processor) from a YAML file.
    ///
    /// # Errors
    ///
    /// As [`from_yaml_file`](Self::from_yaml_file) and
    /// [`processor`](Self::processor).
    #[cfg(feature = "yaml")]
    #[cfg_attr(docsrs, doc(cfg(feature = "yaml")))]
    pub fn processor_from_yaml_file<K, V>(
        path: impl AsRef<std::path::Path>,
        key_serde: impl Decode<K> + 'static,
        value_serde: impl Decode<V> + 'static,
    ) -> Result<Processor<K, V>, ConsumerError>
    where
        K: Send + 'static,
        V: Send + 'static,
    {
        Self::processor(
            ConsumerConfig::from_yaml_file(path)?,
            key_serde,
            value_serde,
        )
    }

    /// Reads a YAML document (top-level `consumer:`, as in the migration plan)
    /// and builds the consumer it describes.
    ///
    /// # Errors
    ///
    /// [`ConsumerError::Config`] naming the field, value and line of a bad
    /// document; then as [`create`](Self::create).
    #[cfg(feature = "yaml")]
    #[cfg_attr(docsrs, doc(cfg(feature = "yaml")))]
    pub fn from_yaml_str<K, V, KS, VS>(
        yaml: &str,
        key_serde: KS,
        value_serde: VS,
    ) -> Result<Box<dyn KafkaStreamConsumer<K, V>>, ConsumerError>
    where
        K: Send + 'static,
        V: Send + 'static,
        KS: Decode<K> + 'static,
        VS: Decode<V> + 'static,
    {
        Self::create(ConsumerConfig::from_yaml_str(yaml)?, key_serde, value_serde)
    }

    /// Reads a YAML file and builds the consumer it describes; see
    /// [`from_yaml_str`](Self::from_yaml_str).
    ///
    /// # Errors
    ///
    /// [`ConsumerError::Config`] when the file cannot be read or is invalid
    /// (naming the file); then as [`create`](Self::create).
    #[cfg(feature = "yaml")]
    #[cfg_attr(docsrs, doc(cfg(feature = "yaml")))]
    pub fn from_yaml_file<K, V, KS, VS>(
        path: impl AsRef<std::path::Path>,
        key_serde: KS,
        value_serde: VS,
    ) -> Result<Box<dyn KafkaStreamConsumer<K, V>>, ConsumerError>
    where
        K: Send + 'static,
        V: Send + 'static,
        KS: Decode<K> + 'static,
        VS: Decode<V> + 'static,
    {
        Self::create(
            ConsumerConfig::from_yaml_file(path)?,
            key_serde,
            value_serde,
        )
    }
}

/// A one-line description of the implementation behind a consumer, for logs:
/// `legacy StreamConsumer` or `fast consumer, <tier> tier`.
pub fn describe<K, V>(consumer: &dyn KafkaStreamConsumer<K, V>) -> String {
    match consumer.tier() {
        None => "legacy StreamConsumer".to_owned(),
        Some(tier) => format!("fast consumer, {tier} tier"),
    }
}
