//! The child process: one contender runs one task and measures itself.
//!
//! `tier-bench child <spec-json>` builds the contender's consumer, runs the
//! [`Task`], and prints `RESULT <json of Measured>` on stdout. A latency
//! child also prints `READY` once it has received its first (warm-up) record,
//! which tells the parent to start the stamped records.
//!
//! Every consumer runs on a current-thread Tokio runtime (the Dedicated tier
//! adds its own polling thread), so the figures compare the consumers rather
//! than the scheduler. The concurrent scenario is the exception: its children
//! run a multi-thread runtime with a worker per core, as concurrent
//! processing needs (see [`crate::concurrent`]).

use std::hint::black_box;
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use consumer_api::{
    AutoOffsetReset, BytesSerde, ConsumerConfig, ConsumerError, ConsumerTier, JsonSerde,
    KafkaStreamConsumer, Message, MetricsConfig, Serde, StringSerde,
};
use consumer_fast::{Consumer as FastConsumer, TieredConsumer};
use futures_util::{Stream, StreamExt};
use hdrhistogram::Histogram;
use rdkafka::bindings as rdsys;
use rdkafka::client::Client;
use rdkafka::consumer::{BaseConsumer, ConsumerContext, StreamConsumer};
use rdkafka::error::KafkaResult;
use rdkafka::message::BorrowedMessage;
use rdkafka::{Message as _, Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};

use crate::contender::Contender;
use crate::payload::Order;
use crate::sys;

/// Everything a child needs, passed as one JSON argument.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ChildSpec {
    /// Bootstrap servers.
    pub(crate) brokers: String,
    /// A fresh consumer group.
    pub(crate) group: String,
    /// Who consumes.
    pub(crate) contender: Contender,
    /// What it does.
    pub(crate) task: Task,
    /// Extra librdkafka properties (the case's, then the command line's).
    pub(crate) properties: Vec<(String, String)>,
    /// The child gives up (exit code 3) after this long.
    pub(crate) timeout_s: u64,
}

/// What a child does.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum Task {
    /// Assign every partition from the beginning, wait until librdkafka's
    /// queue holds all `count` records, then read them against the clock.
    Drain {
        /// The topic.
        topic: String,
        /// Its partition count.
        partitions: i32,
        /// The records in it.
        count: u64,
        /// JSON values (else bytes).
        json: bool,
    },
    /// Start the clock, subscribe, read `count` records.
    Backlog {
        /// The topic.
        topic: String,
        /// Records to read.
        count: u64,
    },
    /// Subscribe and read `count` records, hashing each value `rounds` times.
    Processing {
        /// The topic.
        topic: String,
        /// Records to read.
        count: u64,
        /// Hashing rounds per record.
        rounds: u32,
    },
    /// Subscribe; print `READY` on the first (warm-up) record; then record the
    /// latency of `count` stamped records, for at most `wait_s` seconds.
    Latency {
        /// The topic.
        topic: String,
        /// Stamped records to expect.
        count: u64,
        /// How long to wait for them after `READY`.
        wait_s: f64,
    },
    /// Start the clock, subscribe, handle `count` records with `handler`:
    /// one at a time (Standard) or concurrently (the `Process` contenders).
    Concurrent {
        /// The topic.
        topic: String,
        /// Records to handle.
        count: u64,
        /// What each record's handler does.
        handler: Handler,
    },
    /// Subscribe to an empty topic, read for `settle_ms`, then measure CPU
    /// over `window_ms` of reading nothing.
    Idle {
        /// The empty topic.
        topic: String,
        /// Settling time (group join, first empty fetches).
        settle_ms: u64,
        /// Measured time.
        window_ms: u64,
    },
}

/// The concurrent scenario's per-record handler.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub(crate) enum Handler {
    /// I/O-bound: await a Tokio timer of this many microseconds.
    Sleep {
        /// The timer.
        us: u64,
    },
    /// CPU-bound: hash the value this many rounds, on the handler's task.
    Hash {
        /// Hashing rounds per record.
        rounds: u32,
    },
}

impl Task {
    pub(crate) fn topic(&self) -> &str {
        match self {
            Task::Drain { topic, .. }
            | Task::Backlog { topic, .. }
            | Task::Processing { topic, .. }
            | Task::Latency { topic, .. }
            | Task::Concurrent { topic, .. }
            | Task::Idle { topic, .. } => topic,
        }
    }
}

/// What a child measured.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Measured {
    /// Records read inside the clocked interval.
    pub(crate) messages: u64,
    /// Errors the consumer yielded.
    pub(crate) errors: u64,
    /// The clocked interval, in seconds.
    pub(crate) seconds: f64,
    /// From the clock's start to the first record, in seconds.
    pub(crate) first_message_s: Option<f64>,
    /// Process CPU time (all threads) during the clocked interval, in seconds.
    pub(crate) cpu_s: f64,
    /// Peak resident memory of the child, in KiB.
    pub(crate) peak_rss_kib: u64,
    /// Latency percentiles (latency task).
    pub(crate) latency: Option<LatencySummary>,
    /// CPU time over wall time while idle (idle task).
    pub(crate) idle_cpu_share: Option<f64>,
    /// How long the drain task waited for the queue to fill, in seconds.
    pub(crate) fill_s: Option<f64>,
    /// Concurrent: process CPU time from the first record handed to the
    /// handler to the last one handled, in seconds (over that span, CPU
    /// time / wall time is the cores used, the group join left out).
    pub(crate) span_cpu_s: Option<f64>,
    /// Concurrent: the Tokio runtime's worker threads.
    pub(crate) workers: Option<usize>,
}

/// Produce-to-yield latency percentiles, in microseconds.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct LatencySummary {
    /// Median.
    pub(crate) p50_us: f64,
    /// 99th percentile.
    pub(crate) p99_us: f64,
    /// 99.9th percentile.
    pub(crate) p999_us: f64,
    /// Largest.
    pub(crate) max_us: f64,
    /// Stamped records received.
    pub(crate) samples: u64,
    /// Stamped records expected.
    pub(crate) expected: u64,
}

/// `tier-bench child <spec-json>`.
pub(crate) fn main(args: &[String]) -> Result<()> {
    let [spec] = args else {
        bail!("usage: tier-bench child <spec-json>");
    };
    let spec: ChildSpec = serde_json::from_str(spec).context("reading the child spec")?;
    let timeout = Duration::from_secs(spec.timeout_s);
    std::thread::Builder::new()
        .name("watchdog".to_owned())
        .spawn(move || {
            std::thread::sleep(timeout);
            eprintln!("tier-bench child: no result after {timeout:?}; giving up");
            std::process::exit(3);
        })?;
    let measured = if let Task::Concurrent { .. } = spec.task {
        let workers = sys::cores();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .enable_all()
            .build()?;
        runtime.block_on(crate::concurrent::run(&spec, workers))?
    } else {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        runtime.block_on(async {
            if matches!(spec.task, Task::Drain { json: true, .. }) {
                run_typed::<Order, _>(&spec, JsonSerde).await
            } else {
                run_typed::<Vec<u8>, _>(&spec, BytesSerde).await
            }
        })?
    };
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "RESULT {}", serde_json::to_string(&measured)?)?;
    stdout.flush()?;
    // Skip closing the consumer (leaving the group, committing nothing):
    // nobody waits for it, and a drained queue can take a while to free.
    std::process::exit(0);
}

/// The consumer configuration every contender gets.
pub(crate) fn consumer_config(spec: &ChildSpec) -> ConsumerConfig {
    let mut config = ConsumerConfig::new(&spec.brokers, &spec.group);
    config.auto_offset_reset = Some(AutoOffsetReset::Earliest);
    config.enable_auto_commit = Some(false);
    for (property, value) in &spec.properties {
        config.extra.insert(property.clone(), value.clone());
    }
    config
}

/// Builds the contender and runs the task with it.
async fn run_typed<V, S>(spec: &ChildSpec, value_serde: S) -> Result<Measured>
where
    V: ValueView + Send + 'static,
    S: Serde<V> + 'static,
{
    let config = consumer_config(spec);
    let task = &spec.task;
    let mut job = Job::new(task);
    let fast = |config: ConsumerConfig, serde: S| {
        FastConsumer::<String, V>::with_config(config, Box::new(StringSerde), Box::new(serde))
    };
    match spec.contender {
        Contender::Raw => {
            let consumer: BaseConsumer = config.client_config()?.create()?;
            execute(&rd(&consumer), task, &mut job, || Ok(RawDriver(&consumer))).await
        }
        Contender::RawFromKafka => {
            let consumer: BaseConsumer = config.client_config()?.create()?;
            execute(&rd(&consumer), task, &mut job, || {
                Ok(ConvertingDriver {
                    consumer: &consumer,
                    value_serde: &value_serde,
                    _value: std::marker::PhantomData,
                })
            })
            .await
        }
        Contender::RdStream => {
            let consumer: StreamConsumer = config.client_config()?.create()?;
            execute(&rd(&consumer), task, &mut job, || {
                Ok(StreamDriver(consumer.stream()))
            })
            .await
        }
        Contender::Standard => {
            let consumer = fast(config, value_serde)?;
            execute(&rd(consumer.base()), task, &mut job, || {
                Ok(StreamDriver(consumer.stream()))
            })
            .await
        }
        Contender::StandardNoHeaders => {
            let consumer = fast(config, value_serde)?.reading_headers(false);
            execute(&rd(consumer.base()), task, &mut job, || {
                Ok(StreamDriver(consumer.stream()))
            })
            .await
        }
        Contender::StandardMetrics => {
            // The recorder first: the consumer registers its counters with
            // whichever recorder is installed when it first records.
            let recorder = metrics_exporter_prometheus::PrometheusBuilder::new()
                .install_recorder()
                .context("installing the Prometheus recorder")?;
            let consumer = fast(config.with_metrics(MetricsConfig::default()), value_serde)?;
            let measured = execute(&rd(consumer.base()), task, &mut job, || {
                Ok(StreamDriver(consumer.stream()))
            })
            .await?;
            // After the clock: render once, as a scrape would, and check
            // that the metrics were really recorded.
            let exposition = recorder.render();
            let counted = counter_sum(&exposition, consumer_fast::metric_names::MESSAGES);
            if counted < measured.messages as f64 {
                bail!(
                    "the recorder counted {counted} messages of the {} read \
                     ({} lines rendered)",
                    measured.messages,
                    exposition.lines().count()
                );
            }
            black_box(exposition);
            Ok(measured)
        }
        Contender::Buffered(batch_size) => {
            let consumer = fast(config, value_serde)?;
            execute(&rd(consumer.base()), task, &mut job, || {
                Ok(StreamDriver(consumer.buffered_stream(batch_size)))
            })
            .await
        }
        Contender::Dedicated => {
            let consumer = Arc::new(fast(config, value_serde)?);
            execute(&rd(consumer.base()), task, &mut job, || {
                Ok(StreamDriver(consumer.dedicated_stream()?))
            })
            .await
        }
        Contender::Batches(max) => {
            let consumer = fast(config, value_serde)?;
            execute(&rd(consumer.base()), task, &mut job, || {
                Ok(StreamDriver(consumer.batches(max)))
            })
            .await
        }
        Contender::DedicatedBatches(max) => {
            let consumer = Arc::new(fast(config, value_serde)?);
            execute(&rd(consumer.base()), task, &mut job, || {
                Ok(StreamDriver(consumer.dedicated_batches(max)?))
            })
            .await
        }
        Contender::Legacy => {
            let consumer =
                consumer_legacy::KafkaConsumer::with_config(config, StringSerde, value_serde)?;
            execute(&Api::new(&consumer), task, &mut job, || {
                Ok(StreamDriver(consumer.stream()))
            })
            .await
        }
        Contender::DynStandard if !matches!(task, Task::Drain { .. }) => {
            let consumer = consumer_factory::ConsumerFactory::create(
                config.with_tier(ConsumerTier::Standard),
                StringSerde,
                value_serde,
            )?;
            execute(&Api::new(consumer.as_ref()), task, &mut job, || {
                Ok(StreamDriver(consumer.stream()))
            })
            .await
        }
        Contender::DynStandard => {
            // Drain assigns through the client, which a factory-built trait
            // object hides: build the same type the factory builds for a
            // tier (a `TieredConsumer`), keep a handle on its client, and
            // read it through the same trait object.
            let tiered = TieredConsumer::new(fast(config, value_serde)?, ConsumerTier::Standard);
            // The client, for assigning and watching the queue in `drain`;
            // everything else goes through the trait object.
            let handle = Arc::clone(tiered.consumer());
            let consumer: Box<dyn KafkaStreamConsumer<String, V>> = Box::new(tiered);
            execute(&rd(handle.base()), task, &mut job, || {
                Ok(StreamDriver(consumer.stream()))
            })
            .await
        }
        Contender::Java { .. } => {
            bail!("the Java contender runs in a JVM, not in a tier-bench child")
        }
        Contender::Kcat => run_kcat(spec),
        Contender::Process { .. } => {
            bail!("the process contenders run concurrent tasks only")
        }
    }
}

/// The sum of a counter's samples (every label set) in a Prometheus text
/// exposition.
fn counter_sum(exposition: &str, name: &str) -> f64 {
    exposition
        .lines()
        .filter(|line| {
            line.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(['{', ' ']))
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The kcat contender: `kcat -C -G` reads the backlog in a process of its
/// own, writing each value to `/dev/null`. The clock runs from its start to
/// its exit, so unlike the others it includes creating the client and
/// closing it (leaving the group); CPU time and peak memory are the kcat
/// process's. `count` is what `kcat -c` was asked for: it exits only once
/// it has read that many.
/// Properties the system's librdkafka does not know (`kcat -X list`) are
/// left out.
fn run_kcat(spec: &ChildSpec) -> Result<Measured> {
    let Task::Backlog { topic, count } = &spec.task else {
        bail!("kcat runs backlog tasks only");
    };
    let known = std::process::Command::new("kcat")
        .args(["-X", "list"])
        .output()
        .context("running kcat -X list (is kcat installed?)")?;
    let known = String::from_utf8_lossy(&known.stdout).into_owned();
    let is_known = |property: &str| {
        known
            .lines()
            .any(|line| line.split_whitespace().next() == Some(property))
    };
    let mut command = std::process::Command::new("kcat");
    command
        .args(["-C", "-q", "-b", &spec.brokers, "-G", &spec.group])
        .args(["-c", &count.to_string(), "-f", "%s\n"])
        .args([
            "-X",
            "auto.offset.reset=earliest",
            "-X",
            "enable.auto.commit=false",
        ]);
    for (property, value) in &spec.properties {
        if is_known(property) {
            command.arg("-X").arg(format!("{property}={value}"));
        } else {
            eprintln!("kcat: leaving out {property}={value}, which its librdkafka does not know");
        }
    }
    command
        .arg(topic)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    let (cpu_before, _) = sys::children_usage();
    let started = Instant::now();
    let mut kcat = command.spawn().context("running kcat")?;
    // Before this child's own watchdog: a kcat that never reads `count`
    // records would otherwise outlive it and load the machine during the
    // next runs.
    let give_up = started + Duration::from_secs(spec.timeout_s.saturating_sub(10).max(10));
    let status = loop {
        if let Some(status) = kcat.try_wait()? {
            break status;
        }
        if Instant::now() > give_up {
            let _ = kcat.kill();
            let _ = kcat.wait();
            bail!(
                "kcat read fewer than {count} records in {:?}",
                started.elapsed()
            );
        }
        std::thread::sleep(Duration::from_millis(1));
    };
    let seconds = started.elapsed().as_secs_f64();
    let (cpu_after, peak_rss_kib) = sys::children_usage();
    if !status.success() {
        let mut stderr = String::new();
        if let Some(mut pipe) = kcat.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut pipe, &mut stderr);
        }
        bail!("kcat exited with {status}: {}", stderr.trim());
    }
    Ok(Measured {
        messages: *count,
        seconds,
        cpu_s: cpu_after.saturating_sub(cpu_before).as_secs_f64(),
        peak_rss_kib,
        ..Measured::default()
    })
}

/// How a task subscribes or assigns a contender's consumer.
trait Setup {
    /// Subscribes to `topic` through the contender's own API.
    fn subscribe(&self, topic: &str) -> Result<()>;

    /// Assigns every partition from the beginning and waits until the whole
    /// topic sits in librdkafka's queue; returns how long that took.
    fn assign_and_fill(&self, topic: &str, partitions: i32, count: u64) -> Result<Duration>;
}

/// Setup through an rdkafka consumer with context `C`.
struct Rd<'a, T, C>(&'a T, std::marker::PhantomData<fn() -> C>);

/// Setup through `consumer`.
fn rd<C, T: rdkafka::consumer::Consumer<C>>(consumer: &T) -> Rd<'_, T, C>
where
    C: ConsumerContext + 'static,
{
    Rd(consumer, std::marker::PhantomData)
}

impl<C, T> Setup for Rd<'_, T, C>
where
    C: ConsumerContext + 'static,
    T: rdkafka::consumer::Consumer<C>,
{
    fn subscribe(&self, topic: &str) -> Result<()> {
        Ok(self.0.subscribe(&[topic])?)
    }

    fn assign_and_fill(&self, topic: &str, partitions: i32, count: u64) -> Result<Duration> {
        let mut assignment = TopicPartitionList::new();
        for partition in 0..partitions {
            assignment.add_partition_offset(topic, partition, Offset::Beginning)?;
        }
        self.0.assign(&assignment)?;
        wait_until_fetched(self.0.client(), count)
    }
}

/// Setup of a consumer known only by the [`KafkaStreamConsumer`] trait.
struct Api<'a, T: ?Sized, V>(&'a T, std::marker::PhantomData<fn() -> V>);

impl<'a, T: ?Sized, V> Api<'a, T, V> {
    fn new(consumer: &'a T) -> Self {
        Api(consumer, std::marker::PhantomData)
    }
}

impl<T: ?Sized, V> Setup for Api<'_, T, V>
where
    T: KafkaStreamConsumer<String, V>,
{
    fn subscribe(&self, topic: &str) -> Result<()> {
        Ok(self.0.subscribe(&[topic])?)
    }

    fn assign_and_fill(&self, _: &str, _: i32, _: u64) -> Result<Duration> {
        bail!("drain needs the consumer's rdkafka client, which this contender does not expose")
    }
}

/// Runs `task`: prepares the consumer through `setup`, opens the contender's
/// reader with `open`, and measures.
async fn execute<D: Driver>(
    setup: &impl Setup,
    task: &Task,
    job: &mut Job,
    open: impl FnOnce() -> Result<D>,
) -> Result<Measured> {
    let result: Result<Measured> = async {
        match task {
            Task::Drain {
                topic,
                partitions,
                count,
                ..
            } => {
                let fill = setup.assign_and_fill(topic, *partitions, *count)?;
                let cpu = job.start_clock();
                let mut reader = open()?;
                reader.drive(job, None).await?;
                let mut measured = job.finish(cpu);
                measured.fill_s = Some(fill.as_secs_f64());
                Ok(measured)
            }
            Task::Backlog { topic, .. } | Task::Processing { topic, .. } => {
                let cpu = job.start_clock();
                setup.subscribe(topic)?;
                let mut reader = open()?;
                reader.drive(job, None).await?;
                Ok(job.finish(cpu))
            }
            Task::Latency { topic, wait_s, .. } => {
                setup.subscribe(topic)?;
                let mut reader = open()?;
                let cpu = job.start_clock();
                // Warm-up records until the parent starts the stamped ones.
                reader.drive(job, None).await?;
                let deadline = Instant::now() + Duration::from_secs_f64(*wait_s);
                reader.drive(job, Some(deadline)).await?;
                Ok(job.finish(cpu))
            }
            Task::Idle {
                topic,
                settle_ms,
                window_ms,
            } => {
                setup.subscribe(topic)?;
                let mut reader = open()?;
                let settle = Instant::now() + Duration::from_millis(*settle_ms);
                reader.drive(job, Some(settle)).await?;
                let cpu = job.start_clock();
                let window = Instant::now() + Duration::from_millis(*window_ms);
                reader.drive(job, Some(window)).await?;
                let mut measured = job.finish(cpu);
                measured.idle_cpu_share = Some(measured.cpu_s / measured.seconds);
                Ok(measured)
            }
            Task::Concurrent { .. } => bail!("concurrent tasks run in crate::concurrent"),
        }
    }
    .await;
    result.with_context(|| format!("{:?} on topic {}", job.work, task.topic()))
}

/// Waits until the consumer's queue holds at least `count` operations (one
/// per fetched record) and has stopped growing; returns how long that took.
///
/// librdkafka forwards every assigned partition's fetch queue to the
/// consumer queue, so its length is the number of records fetched and not
/// yet handed out. Nobody polls while we wait, so nothing leaves it.
fn wait_until_fetched<C: ConsumerContext>(client: &Client<C>, count: u64) -> Result<Duration> {
    /// A queue reference released on drop.
    struct Queue(*mut rdsys::rd_kafka_queue_t);
    impl Drop for Queue {
        fn drop(&mut self) {
            // SAFETY: we own this reference and use it no more.
            unsafe { rdsys::rd_kafka_queue_destroy(self.0) }
        }
    }
    const LIMIT: Duration = Duration::from_secs(300);
    // SAFETY: the client pointer is valid while `client` lives, which
    // outlives `queue`; the returned reference is released by `Queue`.
    let queue = Queue(unsafe { rdsys::rd_kafka_queue_get_consumer(client.native_ptr()) });
    if queue.0.is_null() {
        bail!("the consumer has no consumer queue (no group.id?)");
    }
    let started = Instant::now();
    let mut last = 0;
    let mut steady = 0;
    loop {
        // SAFETY: `queue.0` is a valid queue reference until `queue` drops.
        let length = unsafe { rdsys::rd_kafka_queue_length(queue.0) } as u64;
        steady = if length == last { steady + 1 } else { 0 };
        last = length;
        if length >= count && steady >= 3 {
            return Ok(started.elapsed());
        }
        if started.elapsed() > LIMIT {
            bail!(
                "librdkafka's queue held {length} of {count} records after {LIMIT:?}; \
                 are queued.min.messages and queued.max.messages.kbytes large enough?"
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// What a task does with each record.
#[derive(Debug, Clone, Copy)]
enum Work {
    /// Take the value's length.
    Count,
    /// Hash the value this many rounds.
    Hash(u32),
    /// Record the latency of a stamped value.
    Stamp,
}

/// The counters of one run.
struct Job {
    work: Work,
    /// Records to read before the run is complete.
    target: u64,
    messages: u64,
    errors: u64,
    clock: Instant,
    first: Option<Instant>,
    histogram: Option<Histogram<u64>>,
    ready_sent: bool,
    sink: u64,
}

impl Job {
    fn new(task: &Task) -> Job {
        let (work, target) = match task {
            Task::Drain { count, .. } | Task::Backlog { count, .. } => (Work::Count, *count),
            Task::Processing { count, rounds, .. } => (Work::Hash(*rounds), *count),
            Task::Latency { count, .. } => (Work::Stamp, *count),
            Task::Idle { .. } | Task::Concurrent { .. } => (Work::Count, u64::MAX),
        };
        let histogram = matches!(work, Work::Stamp)
            .then(|| Histogram::new_with_bounds(1, 120_000_000_000, 3).ok())
            .flatten();
        Job {
            work,
            target,
            messages: 0,
            errors: 0,
            clock: Instant::now(),
            first: None,
            histogram,
            ready_sent: false,
            sink: 0,
        }
    }

    /// Starts (or restarts) the clock; returns the CPU time at the start.
    fn start_clock(&mut self) -> Duration {
        self.messages = 0;
        self.first = None;
        let cpu = sys::cpu_time();
        self.clock = Instant::now();
        cpu
    }

    /// One record; returns whether the run is complete.
    #[inline]
    fn message(&mut self, value: Option<&[u8]>) -> bool {
        match self.work {
            Work::Count => {
                black_box(value.map(<[u8]>::len));
            }
            Work::Hash(rounds) => {
                self.sink ^= crate::work::hash_rounds(value.unwrap_or_default(), rounds);
            }
            Work::Stamp => {
                let now = sys::monotonic_ns();
                match value.and_then(crate::payload::stamp_of) {
                    Some(0) | None => {
                        // A warm-up record: the consumer is reading; let the
                        // parent start the stamped ones.
                        if !self.ready_sent {
                            self.ready_sent = true;
                            println!("READY");
                            let _ = std::io::stdout().flush();
                            return true;
                        }
                        return false;
                    }
                    Some(stamp) => {
                        if let Some(histogram) = &mut self.histogram {
                            histogram.saturating_record(now.saturating_sub(stamp).max(1));
                        }
                    }
                }
            }
        }
        if self.messages == 0 {
            self.first = Some(Instant::now());
        }
        self.messages += 1;
        self.messages >= self.target
    }

    /// An error from the consumer: counted, the first few shown.
    fn error(&mut self, error: &dyn std::fmt::Display) -> bool {
        self.errors += 1;
        if self.errors <= 5 {
            eprintln!("consumer error: {error}");
        }
        false
    }

    /// Stops the clock.
    fn finish(&mut self, cpu_at_start: Duration) -> Measured {
        let seconds = self.clock.elapsed().as_secs_f64();
        let cpu_s = (sys::cpu_time().saturating_sub(cpu_at_start)).as_secs_f64();
        black_box(self.sink);
        let latency = self.histogram.as_ref().map(|h| LatencySummary {
            p50_us: h.value_at_quantile(0.50) as f64 / 1_000.0,
            p99_us: h.value_at_quantile(0.99) as f64 / 1_000.0,
            p999_us: h.value_at_quantile(0.999) as f64 / 1_000.0,
            max_us: h.max() as f64 / 1_000.0,
            samples: h.len(),
            expected: self.target,
        });
        Measured {
            messages: self.messages,
            errors: self.errors,
            seconds,
            first_message_s: self
                .first
                .map(|first| first.duration_since(self.clock).as_secs_f64()),
            cpu_s,
            peak_rss_kib: sys::peak_rss_kib(),
            latency,
            idle_cpu_share: None,
            fill_s: None,
            span_cpu_s: None,
            workers: None,
        }
    }
}

/// The bytes of a deserialized value, where the task can use them.
trait ValueView {
    fn bytes(&self) -> Option<&[u8]>;
}

impl ValueView for Vec<u8> {
    #[inline]
    fn bytes(&self) -> Option<&[u8]> {
        Some(self)
    }
}

impl ValueView for Order {
    #[inline]
    fn bytes(&self) -> Option<&[u8]> {
        black_box(self.id);
        None
    }
}

/// Something a consumer yields.
trait Item {
    /// Hands it to the job; returns whether the run is complete.
    fn feed(self, job: &mut Job) -> bool;
}

impl Item for KafkaResult<BorrowedMessage<'_>> {
    #[inline]
    fn feed(self, job: &mut Job) -> bool {
        match self {
            Ok(message) => job.message(message.payload()),
            Err(error) => job.error(&error),
        }
    }
}

impl<V: ValueView> Item for Result<Message<String, V>, ConsumerError> {
    #[inline]
    fn feed(self, job: &mut Job) -> bool {
        match self {
            Ok(message) => job.message(message.value.as_ref().and_then(ValueView::bytes)),
            Err(error) => job.error(&error),
        }
    }
}

impl<V: ValueView> Item for Result<Vec<Message<String, V>>, ConsumerError> {
    #[inline]
    fn feed(self, job: &mut Job) -> bool {
        match self {
            Ok(batch) => {
                let mut complete = false;
                for message in batch {
                    complete = job.message(message.value.as_ref().and_then(ValueView::bytes));
                }
                complete
            }
            Err(error) => job.error(&error),
        }
    }
}

/// Reads records into a job, until it is complete or a deadline passes.
trait Driver {
    /// Reads until the job is complete, or until `until` when given.
    async fn drive(&mut self, job: &mut Job, until: Option<Instant>) -> Result<()>;
}

/// The raw contender: `BaseConsumer::poll` with a timeout, on this thread.
struct RawDriver<'a>(&'a BaseConsumer);

impl Driver for RawDriver<'_> {
    async fn drive(&mut self, job: &mut Job, until: Option<Instant>) -> Result<()> {
        const POLL: Duration = Duration::from_millis(100);
        loop {
            let timeout = match until {
                Some(deadline) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Ok(());
                    }
                    left.min(POLL)
                }
                None => POLL,
            };
            if let Some(item) = self.0.poll(timeout)
                && item.feed(job)
            {
                return Ok(());
            }
        }
    }
}

/// The raw loop plus `Message::from_kafka` on each record (drain only).
struct ConvertingDriver<'a, V, S> {
    consumer: &'a BaseConsumer,
    value_serde: &'a S,
    _value: std::marker::PhantomData<fn() -> V>,
}

impl<V: ValueView, S: Serde<V>> Driver for ConvertingDriver<'_, V, S> {
    async fn drive(&mut self, job: &mut Job, until: Option<Instant>) -> Result<()> {
        if until.is_some() {
            bail!("the converting raw loop runs only in drain");
        }
        loop {
            let item = match self.consumer.poll(Duration::from_millis(100)) {
                Some(Ok(record)) => {
                    Message::<String, V>::from_kafka(&record, &StringSerde, self.value_serde)
                }
                Some(Err(error)) => Err(ConsumerError::from(error)),
                None => continue,
            };
            if item.feed(job) {
                return Ok(());
            }
        }
    }
}

/// Every other contender: a `Stream`, awaited on this task.
struct StreamDriver<S>(S);

impl<S> Driver for StreamDriver<S>
where
    S: Stream + Unpin,
    S::Item: Item,
{
    async fn drive(&mut self, job: &mut Job, until: Option<Instant>) -> Result<()> {
        match until {
            None => {
                while let Some(item) = self.0.next().await {
                    if item.feed(job) {
                        return Ok(());
                    }
                }
                bail!("the stream ended")
            }
            Some(deadline) => loop {
                match tokio::time::timeout_at(deadline.into(), self.0.next()).await {
                    Err(_elapsed) => return Ok(()),
                    Ok(None) => bail!("the stream ended"),
                    Ok(Some(item)) => {
                        if item.feed(job) {
                            return Ok(());
                        }
                    }
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::counter_sum;

    #[test]
    fn counter_sum_adds_every_label_set_of_one_counter() {
        let exposition = "\
# TYPE kafka_consumer_messages_total counter
kafka_consumer_messages_total{topic=\"t\",partition=\"0\"} 3
kafka_consumer_messages_total{topic=\"t\",partition=\"1\"} 4
kafka_consumer_messages_total_other 100
kafka_consumer_bytes_total{topic=\"t\",partition=\"0\"} 50
";
        assert_eq!(
            counter_sum(exposition, "kafka_consumer_messages_total"),
            7.0
        );
        assert_eq!(counter_sum(exposition, "kafka_consumer_lag"), 0.0);
    }
}
