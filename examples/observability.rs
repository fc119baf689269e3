//! Metrics and health over HTTP: a Prometheus `/metrics` endpoint and
//! liveness and readiness probes next to a consumer, with axum.
//!
//! `cargo run --example observability` (embedded mock broker), or with
//! `KAFKA_BROKERS=host:port` for your own. While it runs:
//!
//! ```text
//! curl -s localhost:9464/metrics | grep kafka_consumer_lag
//! curl -s localhost:9464/health          # every fact, as JSON
//! curl -s localhost:9464/health/live     # 200, or 503 with the reason
//! curl -s localhost:9464/health/ready
//! ```
//!
//! Settings (environment):
//! - `OBSERVABILITY_ADDR`: where to listen (`127.0.0.1:9464`; port 0 picks
//!   a free one, printed as `serving http://...`).
//! - `OBSERVABILITY_READ`: how many messages to read before exiting (the
//!   demo's 10).
//! - `OBSERVABILITY_WORK_MS`: each message's pretend work, in milliseconds
//!   (10), so that the lag has time to show.
//! - `OBSERVABILITY_LINGER_MS`: how long to go on serving once done (0).

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use futures_util::StreamExt;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tiered_kafka::api::{ConsumerTier, KafkaStreamConsumer, MetricsConfig, StringSerde};
use tiered_kafka::factory::ConsumerFactory;
use tiered_kafka::fast::metric_names;

type SharedConsumer = Arc<dyn KafkaStreamConsumer<String, String>>;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let demo = support::Demo::start("observability")?;
    let read: usize = setting("OBSERVABILITY_READ", demo.messages)?;
    let work = Duration::from_millis(setting("OBSERVABILITY_WORK_MS", 10)?);
    let addr: SocketAddr = setting("OBSERVABILITY_ADDR", "127.0.0.1:9464".parse()?)?;
    let linger = Duration::from_millis(setting("OBSERVABILITY_LINGER_MS", 0)?);

    // The recorder first: a consumer records into whatever is installed.
    // Buckets make the rebalance histogram a Prometheus histogram (without
    // them the exporter renders a summary).
    let prometheus = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full(metric_names::REBALANCE_DURATION.to_owned()),
            &[0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0],
        )?
        .install_recorder()?;

    // Any implementation: the `metrics` section turns them on (in YAML:
    // `metrics: {statistics_interval_ms: 500}`).
    let config = demo
        .config()
        .with_tier(ConsumerTier::Buffered { batch_size: 64 })
        .with_metrics(
            MetricsConfig::default().with_statistics_interval(Duration::from_millis(500)),
        );
    let consumer: SharedConsumer =
        ConsumerFactory::create(config, StringSerde, StringSerde)?.into();
    consumer.subscribe(&[&demo.topic])?;

    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("listening on {addr}"))?;
    let app = Router::new()
        .route("/metrics", get(render_metrics))
        .with_state(prometheus)
        .merge(
            Router::new()
                .route("/health", get(health))
                .route("/health/live", get(live))
                .route("/health/ready", get(ready))
                .with_state(Arc::clone(&consumer)),
        );
    // What a test (or you) needs to find it all.
    println!("serving http://{}", listener.local_addr()?);
    println!("brokers {}", demo.brokers());
    println!("topic {}", demo.topic);
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let mut messages = consumer.stream();
    let mut handled = 0;
    while handled < read {
        match messages.next().await {
            Some(Ok(message)) => {
                tokio::time::sleep(work).await; // the application's work
                handled += 1;
                if handled % 100 == 0 || handled == read {
                    println!("handled {handled}: last {message}");
                }
            }
            Some(Err(error)) if error.is_fatal() => return Err(error.into()),
            Some(Err(error)) => eprintln!("skipping: {error}"),
            None => break,
        }
    }
    drop(messages);
    consumer.commit_async().await?;
    println!(
        "committed after {handled} messages; health: {:?}",
        consumer.health()
    );
    // Still polled: librdkafka's statistics (the lag gauge) keep coming.
    let mut idle = consumer.stream();
    let _ = tokio::time::timeout(linger, idle.next()).await;
    drop(idle);
    server.abort();
    Ok(())
}

/// `GET /metrics`: every metric, in Prometheus' text format.
async fn render_metrics(State(prometheus): State<PrometheusHandle>) -> String {
    prometheus.render()
}

/// `GET /health`: every fact of the consumer's health, as JSON.
async fn health(State(consumer): State<SharedConsumer>) -> axum::Json<serde_json::Value> {
    let health = consumer.health();
    let seconds = |since: Option<Duration>| since.map(|since| since.as_secs_f64());
    axum::Json(serde_json::json!({
        "live": health.liveness().is_ok(),
        "ready": health.readiness().is_ok(),
        "subscribed": health.subscribed,
        "joined": health.joined,
        "assigned_partitions": health.assigned_partitions,
        "lag": health.lag,
        "seconds_since_last_message": seconds(health.since_last_message),
        "seconds_since_last_poll": seconds(health.since_last_poll),
        "last_fatal_error": health.last_fatal_error,
    }))
}

/// `GET /health/live`: 200, or 503 with the reason. A liveness probe
/// restarts the process when this fails for long enough.
async fn live(State(consumer): State<SharedConsumer>) -> (StatusCode, String) {
    match consumer.health().liveness() {
        Ok(()) => (StatusCode::OK, "live\n".to_owned()),
        Err(problem) => (StatusCode::SERVICE_UNAVAILABLE, format!("{problem}\n")),
    }
}

/// `GET /health/ready`: 200 once subscribed and joined, else 503 with the
/// reason.
async fn ready(State(consumer): State<SharedConsumer>) -> (StatusCode, String) {
    match consumer.health().readiness() {
        Ok(()) => (StatusCode::OK, "ready\n".to_owned()),
        Err(problem) => (StatusCode::SERVICE_UNAVAILABLE, format!("{problem}\n")),
    }
}

/// An environment setting, or `default`.
fn setting<T: std::str::FromStr>(name: &str, default: T) -> anyhow::Result<T>
where
    T::Err: std::fmt::Display,
{
    match std::env::var(name) {
        Ok(value) => value
            .parse()
            .map_err(|error| anyhow::anyhow!("{name}={value:?}: {error}")),
        Err(_) => Ok(default),
    }
}
