//! At-least-once processing: commit only what was processed, handle a bad
//! record and a tombstone without stopping, and see a restarted consumer
//! resume where the first one stopped.
//!
//! A consumer that stops cleanly commits every record it handed out: leaving
//! the group revokes its partitions, and revocation commits. After a crash,
//! the records processed since the last `commit()` come again (at most
//! `COMMIT_EVERY - 1` here), so processing must be idempotent.
//!
//! `cargo run --example at_least_once` (embedded mock broker), or with
//! `KAFKA_BROKERS=host:port` for your own.

mod support;

use futures_util::StreamExt;
use kafka_test_env::TestRecord;
use serde::{Deserialize, Serialize};
use tiered_kafka::prelude::*;

#[derive(Debug, Serialize, Deserialize)]
struct Order {
    id: u32,
    amount_cents: u64,
}

const COMMIT_EVERY: usize = 4;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // 14 orders as JSON; the 6th is not JSON, the 10th is a tombstone.
    let records = (0..14u32).map(|id| {
        let key = format!("order-{id}");
        match id {
            5 => TestRecord::new(key, "{not json"),
            9 => TestRecord::tombstone(key),
            _ => TestRecord::new(key, format!(r#"{{"id":{id},"amount_cents":{}}}"#, 100 * id)),
        }
    });
    let demo = support::Demo::start_with("at-least-once", records)?;

    let mut config = demo.config();
    config.performance_tier = Some(ConsumerTier::Standard); // any tier, or none, behaves alike
    config.enable_auto_commit = Some(false); // commit by hand, only what was processed

    println!("first run: 10 records, committing every {COMMIT_EVERY}; stopping commits the rest");
    process(config.clone(), &demo.topic, 10).await?;
    println!("second run, same group: resumes at offset 10");
    process(config, &demo.topic, demo.messages - 10).await?;
    Ok(())
}

/// Processes `limit` records, committing after every [`COMMIT_EVERY`].
async fn process(config: ConsumerConfig, topic: &str, limit: usize) -> anyhow::Result<()> {
    let consumer = ConsumerFactory::create(config, StringSerde, Json::<Order>::new())?;
    consumer.subscribe(&[topic])?;
    let mut records = consumer.stream().take(limit);
    let mut processed = 0;
    while let Some(record) = records.next().await {
        match record {
            Ok(message) => match &message.value {
                Some(order) => println!(
                    "  {message}: order {} of {} cents",
                    order.id, order.amount_cents
                ),
                None => println!("  {message}: tombstone, {:?} deleted", message.key),
            },
            // One bad record is one error; it counts as delivered and the
            // stream goes on. A real service would send `raw` to a dead-letter topic.
            Err(ConsumerError::Deserialize {
                topic,
                partition,
                offset,
                raw,
                source,
                ..
            }) => {
                println!(
                    "  {topic}/{partition}@{offset}: skipped {} bytes: {source}",
                    raw.len()
                );
            }
            Err(error) if error.is_fatal() => return Err(error.into()),
            // A broker restarting: log it; the stream goes on.
            Err(error) => eprintln!("  {error}"),
        }
        processed += 1;
        if processed % COMMIT_EVERY == 0 {
            consumer.commit_async().await?; // covers exactly the records handed out so far
            println!("  committed the first {processed}");
        }
    }
    Ok(())
}
