//! The legacy consumer (rdkafka's `StreamConsumer`): what existing services
//! use, and what a configuration without `performance_tier` builds.
//!
//! `cargo run --example legacy` (embedded mock broker), or with
//! `KAFKA_BROKERS=host:port` for your own.

mod support;

use futures_util::StreamExt;
use tiered_kafka::prelude::*;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let demo = support::Demo::start("legacy")?;

    let consumer: KafkaConsumer<String, String, _, _> =
        KafkaConsumer::with_config(demo.config(), StringSerde, StringSerde)?;
    consumer.subscribe(&[&demo.topic])?;

    let mut messages = consumer.stream().take(demo.messages);
    while let Some(item) = messages.next().await {
        match item {
            Ok(message) => println!("{message}: {:?} = {:?}", message.key, message.value),
            Err(error) if error.is_fatal() => return Err(error.into()),
            // A record that does not decode, a broker restarting: log, go on.
            Err(error) => eprintln!("skipping: {error}"),
        }
    }
    drop(messages);
    consumer.commit_async().await?; // exactly the messages handed out above
    println!(
        "committed; next offsets: {}",
        support::offsets(&consumer.current_offsets()?)
    );
    Ok(())
}
