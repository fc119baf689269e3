//! The concurrent scenario's child: a handler per record, awaited one at a
//! time (the Standard tier, the baseline) or run concurrently by
//! `Consumer::processor` (the `Process` contenders).
//!
//! The child runs a multi-thread Tokio runtime with a worker per core (see
//! [`crate::child::main`]): concurrent processing spawns each handler as a
//! task, so a CPU-bound handler can use every worker. The clock runs from
//! subscribe to the last record handled, as in backlog; CPU time is taken at
//! the start, when the first record reaches the handler and when the last one
//! is handled, so that the report can show the cores used over the
//! processing itself (the group join left out).

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use consumer_api::{BytesSerde, Message, StringSerde};
use consumer_fast::{BoxError, Consumer, ProcessOptions};
use futures_util::StreamExt;
use tokio::sync::Notify;

use crate::child::{ChildSpec, Handler, Measured, Task, consumer_config};
use crate::contender::Contender;
use crate::sys;

/// The consumer every contender of the scenario builds.
type BenchConsumer = Consumer<String, Vec<u8>>;

/// Runs a concurrent task for `spec.contender` on the current (multi-thread)
/// runtime of `workers` worker threads.
pub(crate) async fn run(spec: &ChildSpec, workers: usize) -> Result<Measured> {
    let Task::Concurrent {
        topic,
        count,
        handler,
    } = &spec.task
    else {
        bail!("not a concurrent task: {:?}", spec.task);
    };
    let consumer = Consumer::with_config(consumer_config(spec), StringSerde, BytesSerde)?;
    let progress = Arc::new(Progress::new(*count));
    let result = match spec.contender {
        Contender::Standard => one_at_a_time(&consumer, topic, *handler, &progress).await,
        Contender::Process { order, in_flight } => {
            let options = ProcessOptions::new(order.processing_order()).max_in_flight(in_flight);
            concurrently(Arc::new(consumer), topic, *handler, options, &progress).await
        }
        other => bail!("{other:?} does not run in the concurrent scenario"),
    };
    result.with_context(|| format!("{:?}, {handler:?}, on topic {topic}", spec.contender))?;
    progress.measured(workers)
}

/// The baseline: `stream()`, each record's handler awaited before the next
/// record is read.
async fn one_at_a_time(
    consumer: &BenchConsumer,
    topic: &str,
    handler: Handler,
    progress: &Progress,
) -> Result<()> {
    progress.start_clock();
    consumer.subscribe(&[topic])?;
    let mut stream = consumer.stream();
    loop {
        match stream.next().await {
            Some(Ok(message)) => {
                progress.begin();
                handle(handler, message).await;
                if progress.end() {
                    return Ok(());
                }
            }
            Some(Err(error)) => progress.error(&error),
            None => bail!("the stream ended"),
        }
    }
}

/// The `Process` contenders: `processor(options).run_until(..)`, stopped once
/// `count` records are handled.
async fn concurrently(
    consumer: Arc<BenchConsumer>,
    topic: &str,
    handler: Handler,
    options: ProcessOptions,
    progress: &Arc<Progress>,
) -> Result<()> {
    progress.start_clock();
    consumer.subscribe(&[topic])?;
    let shared = Arc::clone(progress);
    let stop = Arc::clone(progress);
    consumer
        .processor(options)
        .run_until(
            move |message: Message<String, Vec<u8>>| {
                let progress = Arc::clone(&shared);
                async move {
                    progress.begin();
                    handle(handler, message).await;
                    progress.end();
                    Ok::<(), BoxError>(())
                }
            },
            async move { stop.done.notified().await },
        )
        .await?;
    if progress.last.get().is_none() {
        bail!(
            "processing stopped after {} of {} records",
            progress.handled.load(Ordering::Acquire),
            progress.target
        );
    }
    Ok(())
}

/// What the handler does with one record.
async fn handle(handler: Handler, message: Message<String, Vec<u8>>) {
    match handler {
        Handler::Sleep { us } => tokio::time::sleep(Duration::from_micros(us)).await,
        Handler::Hash { rounds } => {
            // On the handler's task: CPU-bound work as an application would
            // (carelessly) write it, occupying its worker.
            let value = message.value.as_deref().unwrap_or_default();
            black_box(crate::work::hash_rounds(value, rounds));
        }
    }
    black_box(message.offset);
}

/// A wall-clock instant with the process CPU time at that instant.
type Stamp = (Instant, Duration);

fn stamp() -> Stamp {
    // CPU time first: the clock then does not count the system call.
    let cpu = sys::cpu_time();
    (Instant::now(), cpu)
}

/// The counters of one run, shared by the handlers.
struct Progress {
    target: u64,
    handled: AtomicU64,
    errors: AtomicU64,
    start: OnceLock<Stamp>,
    /// When the first record reached the handler.
    first: OnceLock<Stamp>,
    /// When the `target`-th record was handled.
    last: OnceLock<Stamp>,
    /// Notified once `target` records are handled.
    done: Notify,
}

impl Progress {
    fn new(target: u64) -> Progress {
        Progress {
            target,
            handled: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            start: OnceLock::new(),
            first: OnceLock::new(),
            last: OnceLock::new(),
            done: Notify::new(),
        }
    }

    fn start_clock(&self) {
        let _ = self.start.set(stamp());
    }

    /// A record reaches the handler.
    #[inline]
    fn begin(&self) {
        if self.first.get().is_none() {
            let _ = self.first.set(stamp());
        }
    }

    /// A record is handled; returns whether it is the last one.
    #[inline]
    fn end(&self) -> bool {
        let handled = self.handled.fetch_add(1, Ordering::AcqRel) + 1;
        if handled == self.target {
            let _ = self.last.set(stamp());
            // Stores a permit when nobody waits yet.
            self.done.notify_one();
            return true;
        }
        false
    }

    /// An error from the consumer: counted, the first few shown.
    fn error(&self, error: &dyn std::fmt::Display) {
        if self.errors.fetch_add(1, Ordering::Relaxed) < 5 {
            eprintln!("consumer error: {error}");
        }
    }

    fn measured(&self, workers: usize) -> Result<Measured> {
        let (start, first, last) = match (self.start.get(), self.first.get(), self.last.get()) {
            (Some(start), Some(first), Some(last)) => (start, first, last),
            _ => bail!("the run ended before its last record"),
        };
        Ok(Measured {
            // Records past the target (none: the topic holds the target,
            // or the baseline stops reading at it) fall outside the clock.
            messages: self.target,
            errors: self.errors.load(Ordering::Acquire),
            seconds: last.0.duration_since(start.0).as_secs_f64(),
            first_message_s: Some(first.0.duration_since(start.0).as_secs_f64()),
            cpu_s: last.1.saturating_sub(start.1).as_secs_f64(),
            peak_rss_kib: sys::peak_rss_kib(),
            span_cpu_s: Some(last.1.saturating_sub(first.1).as_secs_f64()),
            workers: Some(workers),
            ..Measured::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_completes_exactly_once_at_its_target() {
        let progress = Progress::new(3);
        progress.start_clock();
        progress.begin();
        assert!(!progress.end());
        assert!(!progress.end());
        assert!(progress.end());
        assert!(!progress.end(), "past the target");
        let measured = progress.measured(4).expect("complete");
        assert_eq!(measured.messages, 3);
        assert_eq!(measured.workers, Some(4));
        assert!(
            measured
                .first_message_s
                .is_some_and(|s| s <= measured.seconds)
        );
    }

    #[test]
    fn an_incomplete_run_has_no_measurement() {
        let progress = Progress::new(2);
        progress.start_clock();
        progress.begin();
        progress.end();
        assert!(progress.measured(1).is_err());
    }
}
