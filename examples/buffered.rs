//! The fast consumer in the Buffered tier: up to `batch_size` ready messages
//! taken from librdkafka per wake-up. It never waits for a batch to fill, so
//! latency under light traffic is the Standard tier's.
//!
//! `cargo run --example buffered` (embedded mock broker), or with
//! `KAFKA_BROKERS=host:port` for your own.

mod support;

use futures_util::StreamExt;
use tiered_kafka::prelude::*;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let demo = support::Demo::start("buffered")?;

    let consumer: FastConsumer<String, String> =
        FastConsumer::with_config(demo.config(), StringSerde, StringSerde)?;
    consumer.subscribe(&[&demo.topic])?;

    let mut messages = consumer.buffered_stream(32).take(demo.messages);
    while let Some(item) = messages.next().await {
        match item {
            Ok(message) => println!("{message}: {:?} = {:?}", message.key, message.value),
            Err(error) if error.is_fatal() => return Err(error.into()),
            // A record that does not decode, a broker restarting: log, go on.
            Err(error) => eprintln!("skipping: {error}"),
        }
    }
    // Dropping the stream hands messages it buffered but never yielded back
    // to librdkafka: the next stream (or the group's next owner) reads them.
    drop(messages);
    consumer.commit_async().await?; // exactly the messages handed out above
    println!(
        "committed; next offsets: {}",
        support::offsets(&consumer.current_offsets()?)
    );
    Ok(())
}
