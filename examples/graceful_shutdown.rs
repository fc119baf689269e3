//! Graceful shutdown: consume until Ctrl-C, then stop reading, commit what
//! was handed out (`commit_async`) and close the consumer with a deadline
//! (`close`): it commits again whatever came since, leaves the group, and
//! reports how that went. Nothing here blocks the executor.
//!
//! `cargo run --example graceful_shutdown` (embedded mock broker), or with
//! `KAFKA_BROKERS=host:port` for your own. So that it also ends by itself
//! (in CI), it stops after 3 s without a message as well.

mod support;

use std::time::Duration;

use futures_util::StreamExt;
use tiered_kafka::prelude::*;

const IDLE: Duration = Duration::from_secs(3);

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let demo = support::Demo::start("graceful-shutdown")?;

    let mut config = demo.config();
    config.performance_tier = Some(ConsumerTier::Dedicated); // a polling thread to stop, too
    let consumer = ConsumerFactory::create(config, StringSerde, StringSerde)?;
    consumer.subscribe(&[&demo.topic])?;

    // A service would also listen for SIGTERM (`tokio::signal::unix`).
    let mut ctrl_c = std::pin::pin!(tokio::signal::ctrl_c());
    let mut messages = consumer.stream();
    let mut consumed = 0;
    println!("consuming; press Ctrl-C to stop");
    loop {
        // `next()` is cancel safe: when Ctrl-C wins, no message is lost.
        tokio::select! {
            signal = &mut ctrl_c => {
                signal?;
                println!("Ctrl-C: stopping");
                break;
            }
            next = tokio::time::timeout(IDLE, messages.next()) => match next {
                Ok(Some(Ok(message))) => {
                    consumed += 1;
                    println!("{message}: {:?} = {:?}", message.key, message.value);
                }
                Ok(Some(Err(error))) if error.is_fatal() => return Err(error.into()),
                Ok(Some(Err(error))) => eprintln!("skipping: {error}"),
                Ok(None) => break, // the consumer was closed
                Err(_) => {
                    println!("no message for {IDLE:?}: stopping");
                    break;
                }
            },
        }
    }
    // The stream first: it stops and joins the polling thread, and hands the
    // messages it read ahead back to librdkafka. Then commit exactly what
    // was handed out, and close: leave the group, within 10 s whatever the
    // broker does (on a thread of its own: the executor stays free).
    drop(messages);
    if let Err(error) = consumer.commit_async().await {
        eprintln!("the last commit failed; close tries again: {error}");
    }
    let report = consumer.close(Duration::from_secs(10)).await;
    report.commit?;
    match report.left_group_in {
        Some(took) => {
            println!("stopped cleanly after {consumed} messages; left the group in {took:?}")
        }
        None => println!(
            "stopped after {consumed} messages; leaving the group goes on in the background"
        ),
    }
    Ok(())
}
