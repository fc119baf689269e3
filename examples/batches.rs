//! The batch API: `batches(max)` hands out up to `max` ready messages at
//! once, for a handler that writes them in one go (a multi-row insert, a bulk
//! request). It never waits for a batch to fill. A batch's offsets are
//! recorded when it is handed out, so a commit after the write covers exactly
//! the batches written. Every implementation offers it through
//! `KafkaStreamConsumer::batches`; here it is the fast consumer's.
//!
//! `cargo run --example batches` (embedded mock broker), or with
//! `KAFKA_BROKERS=host:port` for your own.

mod support;

use futures_util::StreamExt;
use tiered_kafka::prelude::*;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let demo = support::Demo::start("batches")?;

    let consumer: FastConsumer<String, String> =
        FastConsumer::with_config(demo.config(), StringSerde, StringSerde)?;
    consumer.subscribe(&[&demo.topic])?;

    let mut batches = consumer.batches(4);
    let mut written = 0;
    while written < demo.messages {
        match batches.next().await {
            Some(Ok(batch)) => {
                let rows: Vec<String> = batch.iter().map(ToString::to_string).collect();
                println!("writing {} rows at once: {}", batch.len(), rows.join(", "));
                written += batch.len();
                consumer.commit_async().await?; // the batches written so far, nothing buffered
            }
            Some(Err(error)) if error.is_fatal() => return Err(error.into()),
            // One record that cannot be decoded, or a broker restarting: the
            // batches go on.
            Some(Err(error)) => eprintln!("skipping: {error}"),
            None => break,
        }
    }
    drop(batches);
    println!(
        "committed; next offsets: {}",
        support::offsets(&consumer.current_offsets()?)
    );
    Ok(())
}
