//! The fast consumer in the Dedicated tier: a polling thread deserializes
//! ahead of the application into a bounded channel. The stream owns the
//! thread: dropping it stops and joins the thread.
//!
//! `cargo run --example dedicated` (embedded mock broker), or with
//! `KAFKA_BROKERS=host:port` for your own.

mod support;

use std::sync::Arc;

use futures_util::StreamExt;
use tiered_kafka::prelude::*;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let demo = support::Demo::start("dedicated")?;

    // The polling thread shares the consumer, hence the `Arc`.
    let consumer: Arc<FastConsumer<String, String>> = Arc::new(FastConsumer::with_config(
        demo.config(),
        StringSerde,
        StringSerde,
    )?);
    consumer.subscribe(&[&demo.topic])?;

    let mut messages = consumer.dedicated_stream()?.take(demo.messages);
    while let Some(item) = messages.next().await {
        match item {
            Ok(message) => println!("{message}: {:?} = {:?}", message.key, message.value),
            Err(error) if error.is_fatal() => return Err(error.into()),
            // A record that does not decode, a broker restarting: log, go on.
            Err(error) => eprintln!("skipping: {error}"),
        }
    }
    drop(messages); // stops and joins the polling thread
    consumer.commit_async().await?; // exactly the messages handed out above
    println!(
        "committed; next offsets: {}",
        support::offsets(&consumer.current_offsets()?)
    );
    Ok(())
}
