//! Configuration picks the consumer: each YAML file of `examples/config/`
//! builds its implementation through `ConsumerFactory`, and the service code
//! reads them all alike through `Box<dyn KafkaStreamConsumer>`.
//!
//! `cargo run --example factory_yaml` reads all four files;
//! `cargo run --example factory_yaml -- path/to/consumer.yaml` reads one.
//! The example reads its demo topic (on the embedded mock broker, or on
//! `KAFKA_BROKERS=host:port`), so it replaces each file's brokers and group.

mod support;

use std::path::PathBuf;

use futures_util::StreamExt;
use tiered_kafka::prelude::*;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let demo = support::Demo::start("factory")?;

    let files: Vec<PathBuf> = match std::env::args_os().nth(1) {
        Some(file) => vec![file.into()],
        None => ["legacy", "standard", "buffered", "dedicated"]
            .iter()
            .map(|name| {
                PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                    .join(format!("examples/config/{name}.yaml"))
            })
            .collect(),
    };
    for file in files {
        // In a service: `ConsumerFactory::from_yaml_file(&file, StringSerde, StringSerde)?`.
        // Here the file's `localhost:9092` and `my-group` give way to the
        // demo's broker and a fresh group, so that each file reads every record.
        let mut config = ConsumerConfig::from_yaml_file(&file)?;
        config.brokers = demo.brokers();
        config.group_id = demo.config_in_new_group().group_id;
        config.auto_offset_reset = demo.config().auto_offset_reset;

        let consumer = ConsumerFactory::create(config, StringSerde, StringSerde)?;
        println!(
            "{}: {}",
            file.display(),
            tiered_kafka::factory::describe(consumer.as_ref())
        );
        consumer.subscribe(&[&demo.topic])?;
        let mut messages = consumer.stream().take(demo.messages);
        let mut values = Vec::new();
        while let Some(item) = messages.next().await {
            match item {
                Ok(message) => values.extend(message.value),
                Err(error) if error.is_fatal() => return Err(error.into()),
                Err(error) => eprintln!("skipping: {error}"),
            }
        }
        drop(messages);
        consumer.commit_async().await?;
        println!(
            "  read and committed {} messages: {}",
            values.len(),
            values.join(" ")
        );
    }
    Ok(())
}
