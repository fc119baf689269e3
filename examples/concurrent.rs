//! Concurrent processing: many messages of a partition handled at once, one at
//! a time per key, only finished work committed. For handlers that wait on I/O
//! (a database write, an HTTP call), which one message at a time serializes.
//!
//! `cargo run --example concurrent` (embedded mock broker), or with
//! `KAFKA_BROKERS=host:port` for your own (which must create `<topic>.DLT`
//! on demand, as the mock does).

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use kafka_test_env::TestRecord;
use tiered_kafka::fast::{BoxError, DeadLetterTopic, ProcessOptions, ProcessingOrder, RetryPolicy};
use tiered_kafka::prelude::*;
use tokio::sync::Notify;

/// The order the handler always refuses, to show retries and the dead-letter topic.
const BAD_ORDER: &str = "order-13";

/// What the handlers share: counts for the summary, and the stop signal.
#[derive(Default)]
struct Counts {
    handled: AtomicUsize,
    in_flight: AtomicUsize,
    most_at_once: AtomicUsize,
    all_handled: Notify,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // 40 orders from 4 customers; each customer's orders must stay in order.
    let orders =
        (0..40).map(|i| TestRecord::new(format!("customer-{}", i % 4), format!("order-{i}")));
    let demo = support::Demo::start_with("concurrent", orders)?;
    let consumer: FastConsumer<String, String> =
        FastConsumer::with_config(demo.config(), StringSerde, StringSerde)?;
    consumer.subscribe(&[&demo.topic])?;
    let consumer = Arc::new(consumer); // processing runs a thread that shares it

    let counts = Arc::new(Counts::default());
    let expected = demo.messages - 1; // all but the bad order
    let handler = {
        let counts = Arc::clone(&counts);
        move |order: Message<String, String>| {
            let counts = Arc::clone(&counts);
            async move {
                let now = counts.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                counts.most_at_once.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(20)).await; // a database write, say
                counts.in_flight.fetch_sub(1, Ordering::SeqCst);
                let value = order.value.as_deref().unwrap_or_default();
                if value == BAD_ORDER {
                    return Err(BoxError::from(format!("{value} is refused")));
                }
                println!("{order}: {} {value}", order.key.as_deref().unwrap_or("-"));
                if counts.handled.fetch_add(1, Ordering::SeqCst) + 1 == expected {
                    counts.all_handled.notify_one();
                }
                Ok(())
            }
        }
    };
    // customer-1's later orders wait for the bad one, so once every other
    // order is handled it has been dead-lettered too.
    let stop = counts.all_handled.notified();

    let options = ProcessOptions::new(ProcessingOrder::Key)
        .max_in_flight(16)
        .retry(RetryPolicy::new(3).backoff(Duration::from_millis(50), Duration::from_secs(1)));
    consumer
        .processor(options)
        .dead_letter(DeadLetterTopic::new(&demo.brokers())?)
        .run_until(handler, stop)
        .await?;
    // At most one order per customer at a time: 4 at once here.
    println!(
        "handled {} orders, at most {} at once; {BAD_ORDER} went to {}.DLT",
        counts.handled.load(Ordering::SeqCst),
        counts.most_at_once.load(Ordering::SeqCst),
        demo.topic,
    );

    // The run's last commit is sent, not awaited: this waits for the broker.
    consumer.commit_async().await?;
    println!(
        "committed; next offsets: {}",
        support::offsets(&consumer.current_offsets()?)
    );
    Ok(())
}
