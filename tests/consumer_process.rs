//! Process-level guarantees of every consumer implementation, measured on the
//! whole test process: an idle consumer costs (almost) no CPU, and dropping a
//! stream and its consumer is quick and leaves no thread behind.
//!
//! One test runs the implementations one after another, so that nothing else
//! in this process disturbs the CPU and thread counts.

mod common;

use std::time::{Duration, Instant};

use common::process::{CpuMeter, thread_count};
use common::{Implementation, build, consumer_config, env, next_within};
use tiered_kafka::api::StringSerde;

/// Generous: an idle consumer should be near 0%; a busy-spinning one is at 100%.
const MAX_IDLE_CPU_SHARE: f64 = 0.02;
const IDLE_WINDOW: Duration = Duration::from_secs(3);
const MAX_DROP_TIME: Duration = Duration::from_secs(1);

#[test]
fn idle_consumers_sleep_and_dropped_consumers_leave_nothing_behind() {
    let env = env();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let topic = env.unique_topic("idle");
    env.create_topic(&topic, 2).expect("topic");

    // The broker's own idle cost (the mock cluster runs in this process).
    let meter = CpuMeter::start();
    std::thread::sleep(IDLE_WINDOW);
    let baseline = meter.share();
    println!(
        "broker and test process idle: {:.2}% of a core",
        baseline * 100.0
    );

    for implementation in Implementation::ALL {
        let threads_before = thread_count();
        let consumer = build(
            implementation,
            consumer_config(&env, &env.unique_group("idle")),
            StringSerde,
            StringSerde,
        );
        consumer.subscribe(&[&topic]).expect("subscribe");
        let mut stream = consumer.stream();
        runtime.block_on(async {
            // Let the group settle: joining and fetching offsets is not idling.
            assert!(next_within(&mut stream, Duration::from_secs(2)).await.is_none(), "the topic is empty");
            let meter = CpuMeter::start();
            assert!(next_within(&mut stream, IDLE_WINDOW).await.is_none(), "the topic is empty");
            let share = meter.share();
            let consumer_share = share - baseline;
            println!(
                "{implementation:?}: idle process {:.2}% of a core, consumer {:.2}% over {IDLE_WINDOW:?}",
                share * 100.0,
                consumer_share * 100.0
            );
            assert!(
                consumer_share < MAX_IDLE_CPU_SHARE,
                "{implementation:?} idles at {:.1}% of a core",
                consumer_share * 100.0
            );
        });

        let threads_running = thread_count();
        let started = Instant::now();
        drop(stream);
        drop(consumer);
        let drop_time = started.elapsed();
        // A thread the drop joined (the close runs on one) can stay listed
        // in /proc for a moment after the join returns: the kernel releases
        // it just after it wakes the joiner. Give that a second.
        let settle = Instant::now() + Duration::from_secs(1);
        let mut threads_after = thread_count();
        while threads_after > threads_before && Instant::now() < settle {
            std::thread::sleep(Duration::from_millis(10));
            threads_after = thread_count();
        }
        println!(
            "{implementation:?}: dropped in {drop_time:?}; threads {threads_before} before, {threads_running} running, {threads_after} after"
        );
        assert!(
            drop_time < MAX_DROP_TIME,
            "{implementation:?} took {drop_time:?} to drop"
        );
        assert!(
            threads_running > threads_before,
            "the consumer runs librdkafka threads"
        );
        assert_eq!(
            threads_after, threads_before,
            "{implementation:?} left threads behind"
        );
    }
}
