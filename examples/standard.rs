//! The fast consumer (rdkafka's `BaseConsumer`) in the Standard tier: one
//! message per wake-up, lowest latency. The fast `Consumer` (`FastConsumer` in the prelude) built directly, no factory.
//!
//! `cargo run --example standard` (embedded mock broker), or with
//! `KAFKA_BROKERS=host:port` for your own.

mod support;

use futures_util::StreamExt;
use tiered_kafka::prelude::*;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let demo = support::Demo::start("standard")?;

    let consumer: FastConsumer<String, String> =
        FastConsumer::with_config(demo.config(), StringSerde, StringSerde)?;
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
