//! Concurrent processing whose handlers all wait: the consumer idles
//! instead of spinning. Alone in its test binary, so that the process's CPU
//! time is the consumer's (and the mock broker's) only.

mod common;

use std::sync::Arc;
use std::time::Duration;

use kafka_test_env::KafkaTestEnv;
use tiered_kafka::api::StringSerde;
use tiered_kafka::fast::{BoxError, Consumer, ProcessOptions, ProcessingOrder};
use tokio::sync::Notify;

use common::{consumer_config, env};

fn fast_consumer(env: &KafkaTestEnv, group: &str, topic: &str) -> Arc<Consumer<String, String>> {
    let consumer = Consumer::with_config(consumer_config(env, group), StringSerde, StringSerde)
        .expect("consumer builds");
    consumer.subscribe(&[topic]).expect("subscribe");
    Arc::new(consumer)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handlers_that_take_long_leave_the_consumer_idle_not_spinning() {
    let env = env();
    let topic = env.unique_topic("process-slow");
    env.create_topic(&topic, 4).expect("topic");
    env.produce_test_messages(&topic, 2_000).expect("produce");
    let group = env.unique_group("process-slow");
    let consumer = fast_consumer(&env, &group, &topic);
    let release = Arc::new(tokio::sync::Semaphore::new(0));
    let handler = {
        let release = Arc::clone(&release);
        move |_message: tiered_kafka::api::Message<String, String>| {
            let release = Arc::clone(&release);
            async move {
                release.acquire().await.expect("open").forget();
                Ok::<(), BoxError>(())
            }
        }
    };
    let stop = Arc::new(Notify::new());
    let stopped = Arc::clone(&stop);
    let run = tokio::spawn({
        let consumer = Arc::clone(&consumer);
        async move {
            consumer
                .processor(ProcessOptions::new(ProcessingOrder::Unordered).max_in_flight(10))
                .run_until(handler, async move { stopped.notified().await })
                .await
        }
    });
    // Past the second after which a full consumer pauses fetching and polls
    // only for events.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let meter = common::process::CpuMeter::start();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let share = meter.share();
    println!("while every handler waits: {:.1}% of a core", share * 100.0);
    assert!(
        share < 0.3,
        "a consumer whose handlers wait spins at {:.0}% of a core",
        share * 100.0
    );
    release.add_permits(10_000);
    stop.notify_one();
    tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("processing stops in time")
        .expect("the task")
        .expect("processing succeeds");
}
