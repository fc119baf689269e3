//! What only the fast consumer offers, against each of its tiers: `seek`
//! under a running stream, and the Dedicated tier's backpressure when the
//! application resumes a partition.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{consumer_config, env, take};
use futures_util::StreamExt;
use rdkafka::Offset;
use rdkafka::consumer::Consumer as _;
use tiered_kafka::api::{ConsumerTier, KafkaStreamConsumer, MessageStream, StringSerde};
use tiered_kafka::fast::TieredConsumer;

const PATIENCE: Duration = Duration::from_secs(60);

macro_rules! fast_tier_tests {
    ($($body:ident),* $(,)?) => {
        mod standard {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $body() {
                super::$body(tiered_kafka::api::ConsumerTier::Standard).await
            })*
        }
        mod buffered {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $body() {
                super::$body(tiered_kafka::api::ConsumerTier::Buffered { batch_size: 32 }).await
            })*
        }
        mod dedicated {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $body() {
                super::$body(tiered_kafka::api::ConsumerTier::Dedicated).await
            })*
        }
    };
}

fast_tier_tests!(
    a_seek_is_never_overtaken_by_an_earlier_poll,
    a_seek_is_never_overtaken_by_an_earlier_poll_in_batches,
    tier_is_the_tier_read
);

/// 200 seeks back to offset 0 while the stream (for Dedicated: its polling
/// thread) keeps reading a backlog: after each `seek` returns, the next
/// message is offset 0, never one polled before the seek.
async fn a_seek_is_never_overtaken_by_an_earlier_poll(tier: ConsumerTier) {
    const SEEKS: usize = 200;
    let env = env();
    let topic = env.unique_topic("seek-race");
    env.create_topic(&topic, 1).expect("topic");
    env.produce_test_messages(&topic, 2_000).expect("produce");
    let mut config = consumer_config(&env, &env.unique_group("seek-race"));
    // The backlog is fetched at once; after that each seek waits for the
    // fetch in flight at the end of the log, which the broker holds for up
    // to fetch.wait.max.ms (500 ms by default).
    config.fetch_wait_max_ms = Some(10);
    let consumer =
        TieredConsumer::with_config(config, tier, Box::new(StringSerde), Box::new(StringSerde))
            .expect("consumer");
    consumer.subscribe(&[&topic]).expect("subscribe");
    let mut stream = consumer.stream();
    take(&mut stream, 1, PATIENCE).await;
    let mut wrong = Vec::new();
    for seek in 0..SEEKS {
        // Read a varying amount, so the seek lands at different points of
        // the polling thread's batch and of the channel.
        take(&mut stream, 1 + seek % 37, PATIENCE).await;
        consumer
            .consumer()
            .seek(&topic, 0, Offset::Offset(0), Duration::from_secs(10))
            .expect("seek");
        let next = take(&mut stream, 1, PATIENCE).await;
        if next[0].offset != 0 {
            wrong.push((seek, next[0].offset));
        }
    }
    assert!(
        wrong.is_empty(),
        "{tier:?}: after {} of {SEEKS} seeks to 0 the next message was another \
         (seek number, offset): {wrong:?}",
        wrong.len()
    );
}

/// The same through `batches(20)`: after each `seek` to 0 returns, the next
/// batch starts at offset 0. What the tier had polled before the seek (for
/// Dedicated, up to 256 records of the polling thread's batch) is dropped as
/// stale inside the batch hand-out, never handed out.
async fn a_seek_is_never_overtaken_by_an_earlier_poll_in_batches(tier: ConsumerTier) {
    const SEEKS: usize = 50;
    let env = env();
    let topic = env.unique_topic("seek-batches");
    env.create_topic(&topic, 1).expect("topic");
    env.produce_test_messages(&topic, 2_000).expect("produce");
    let mut config = consumer_config(&env, &env.unique_group("seek-batches"));
    config.fetch_wait_max_ms = Some(10);
    let consumer =
        TieredConsumer::with_config(config, tier, Box::new(StringSerde), Box::new(StringSerde))
            .expect("consumer");
    consumer.subscribe(&[&topic]).expect("subscribe");
    let mut batches = consumer.batches(20);
    let mut next_batch = async || match tokio::time::timeout(PATIENCE, batches.next()).await {
        Ok(Some(Ok(batch))) => batch,
        other => panic!("{tier:?}: expected a batch, got {other:?}"),
    };
    let mut wrong = Vec::new();
    for seek in 0..SEEKS {
        for _ in 0..=seek % 5 {
            next_batch().await;
        }
        consumer
            .consumer()
            .seek(&topic, 0, Offset::Offset(0), Duration::from_secs(10))
            .expect("seek");
        let first = next_batch().await[0].offset;
        if first != 0 {
            wrong.push((seek, first));
        }
    }
    assert!(
        wrong.is_empty(),
        "{tier:?}: after {} of {SEEKS} seeks to 0 the next batch began elsewhere \
         (seek number, offset): {wrong:?}",
        wrong.len()
    );
}

/// The bare `Consumer` behind the trait reports the tier of the stream it
/// reads, and `TieredConsumer` the tier it was made with.
async fn tier_is_the_tier_read(tier: ConsumerTier) {
    let env = env();
    let consumer = TieredConsumer::with_config(
        consumer_config(&env, &env.unique_group("tier")),
        tier,
        Box::new(StringSerde),
        Box::new(StringSerde),
    )
    .expect("consumer");
    let fast = Arc::clone(consumer.consumer());
    let stream: MessageStream<'_, String, String> = match tier {
        ConsumerTier::Standard => Box::pin(fast.stream()),
        ConsumerTier::Buffered { batch_size } => Box::pin(fast.buffered_stream(batch_size)),
        ConsumerTier::Dedicated => Box::pin(fast.dedicated_stream().expect("dedicated stream")),
    };
    assert_eq!(KafkaStreamConsumer::tier(&*fast), Some(tier));
    drop(stream);
    let boxed: Box<dyn KafkaStreamConsumer<String, String>> = Box::new(consumer);
    assert_eq!(boxed.tier(), Some(tier));
}

/// The Dedicated tier's backpressure pauses the partitions of a slow
/// application. If the application resumes one of them meanwhile, it is
/// paused again: otherwise each wait slice polls one more message into
/// memory for as long as the application stays slow.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backpressure_pauses_again_a_partition_the_application_resumed() {
    let env = env();
    let topic = env.unique_topic("repause");
    env.create_topic(&topic, 1).expect("topic");
    env.produce_test_messages(&topic, 6_000).expect("produce");
    let consumer = TieredConsumer::with_config(
        consumer_config(&env, &env.unique_group("repause")),
        ConsumerTier::Dedicated,
        Box::new(StringSerde),
        Box::new(StringSerde),
    )
    .expect("consumer");
    consumer.subscribe(&[&topic]).expect("subscribe");
    let fast = Arc::clone(consumer.consumer());
    let mut stream: MessageStream<'_, String, String> =
        Box::pin(fast.dedicated_stream().expect("dedicated stream"));
    take(&mut stream, 1, PATIENCE).await;
    // Slow: the channel fills, and after a second of waiting for room the
    // polling thread pauses the partition.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let assignment = fast.assignment().expect("assignment");
    fast.resume(&assignment).expect("resume");
    let position = || {
        fast.base()
            .position()
            .ok()
            .and_then(|p| {
                p.find_partition(&topic, 0)
                    .and_then(|e| e.offset().to_raw())
            })
            .unwrap_or(-1)
    };
    let before = position();
    // Still slow, but taking a message now and then (so the thread keeps
    // polling for it instead of leaving it to librdkafka's liveness check).
    for _ in 0..6 {
        take(&mut stream, 1, PATIENCE).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let after = position();
    println!("polled ahead while the application was slow: {before} -> {after}");
    assert!(
        after - before < 20,
        "the polling thread went on polling a partition it had paused: \
         position {before} -> {after} in 3 s"
    );
    drop(stream);
}

/// `wakeup()` makes a `poll_blocking` waiting on another thread return
/// `WokenUp` at once (well before its 60 s timeout); with no poll waiting,
/// the next one returns it; after that, polls read as before.
#[test]
fn wakeup_returns_a_waiting_blocking_poll() {
    let env = env();
    let topic = env.unique_topic("wakeup");
    env.create_topic(&topic, 1).expect("topic");
    let consumer = Arc::new(
        tiered_kafka::fast::Consumer::<String, String>::with_config(
            consumer_config(&env, &env.unique_group("wakeup")),
            Box::new(StringSerde),
            Box::new(StringSerde),
        )
        .expect("consumer"),
    );
    consumer.subscribe(&[&topic]).expect("subscribe");
    let poller = {
        let consumer = Arc::clone(&consumer);
        std::thread::spawn(move || {
            let started = std::time::Instant::now();
            let result = consumer.poll_blocking(Duration::from_secs(60));
            (result.map(|m| m.offset), started.elapsed())
        })
    };
    std::thread::sleep(Duration::from_millis(500));
    consumer.wakeup();
    let (result, waited) = poller.join().expect("the polling thread");
    assert!(
        matches!(result, Err(tiered_kafka::api::ConsumerError::WokenUp)),
        "{result:?}"
    );
    assert!(
        waited < Duration::from_secs(10),
        "returned after {waited:?}"
    );

    consumer.wakeup();
    let started = std::time::Instant::now();
    let result = consumer.poll_blocking(Duration::from_secs(60));
    assert!(
        matches!(result, Err(tiered_kafka::api::ConsumerError::WokenUp)),
        "{result:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));

    env.produce_test_messages(&topic, 1).expect("produce");
    let message = consumer
        .poll_blocking(PATIENCE)
        .expect("the message produced after the wakeups");
    assert_eq!(message.offset, 0);
    println!("a waiting poll returned {waited:?} after it started, woken at 500 ms");
}
