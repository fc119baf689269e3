//! W3C trace context travels from a producer to the consumer's process span
//! (`otel` feature: `tiered_kafka::api::otel`), with every implementation.
//!
//! Records are produced with a known `traceparent` and `tracestate`, without
//! headers, and with a malformed or non-UTF-8 `traceparent`; each consumed
//! message's `process_span()` is recorded through a `tracing_subscriber`
//! registry with a `tracing_opentelemetry` layer on an SDK tracer provider
//! with an in-memory exporter. The exported span must continue the
//! producer's trace (its trace id, the producer's span id as a remote parent,
//! its trace state) only when the header is valid: without
//! `set_parent`, the first assertion fails (the span would be a root with a
//! new trace id).
//!
//! The facade's dev-dependency on `consumer-api` with `otel` turns the module
//! on in every test build, so `cargo test --test '*'` runs this test without
//! `--features otel`.

mod common;

use std::time::Duration;

use common::{Implementation, env, subscribed_strings, take};
use kafka_test_env::TestRecord;
use opentelemetry::trace::{SpanId, SpanKind, TraceId, TracerProvider as _};
use opentelemetry::{Key, Value};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use tiered_kafka::api::Message;
use tiered_kafka::api::otel::MessageTraceExt;
use tracing_subscriber::layer::SubscriberExt as _;

const TRACE_ID: &str = "0af7651916cd43dd8448eb211c80319c";
const PARENT_SPAN_ID: &str = "b7ad6b7169203331";
const TRACESTATE: &str = "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7";
const PATIENCE: Duration = Duration::from_secs(60);

contract_tests!(the_process_span_continues_the_producers_trace);

async fn the_process_span_continues_the_producers_trace(implementation: Implementation) {
    let env = env();
    let topic = env.unique_topic("trace-propagation");
    env.create_topic(&topic, 1).expect("topic");
    let traceparent = format!("00-{TRACE_ID}-{PARENT_SPAN_ID}-01");
    env.produce(
        &topic,
        [
            // Offset 0: the producer's context.
            TestRecord::new("traced", "v0")
                .header("traceparent", traceparent.as_str())
                .header("tracestate", TRACESTATE)
                .partition(0),
            // Offset 1: no headers at all.
            TestRecord::new("untraced", "v1").partition(0),
            // Offset 2: a traceparent that is not one (and a tracestate).
            TestRecord::new("malformed", "v2")
                .header("traceparent", format!("00-{TRACE_ID}-not-a-span-id-01"))
                .header("tracestate", TRACESTATE)
                .partition(0),
            // Offset 3: a traceparent whose bytes are not UTF-8.
            TestRecord::new("binary", "v3")
                .header("traceparent", vec![0xff, 0xfe, 0x00, 0x30])
                .partition(0),
        ],
    )
    .expect("produce");

    let group = env.unique_group("trace-propagation");
    let consumer = subscribed_strings(implementation, &env, &group, &topic);
    let mut stream = consumer.stream();
    let messages = take(&mut stream, 4, PATIENCE).await;
    assert_eq!(
        common::coordinates(&messages),
        [(0, 0), (0, 1), (0, 2), (0, 3)],
        "{implementation:?}"
    );
    assert_eq!(
        messages[0]
            .headers
            .get("traceparent")
            .and_then(|header| header.value()),
        Some(traceparent.as_bytes()),
        "{implementation:?}: the header as produced"
    );

    let producer_trace = TraceId::from_hex(TRACE_ID).expect("hex");
    let producer_span = SpanId::from_hex(PARENT_SPAN_ID).expect("hex");
    let tracing = Tracing::new();

    // Outside any span, as a plain consumer loop.
    let spans = tracing.record(|| {
        for message in &messages {
            process(message);
        }
    });
    assert_eq!(spans.len(), 4, "{implementation:?}: {spans:#?}");
    let traced = span_at(&spans, 0);
    assert_eq!(
        (
            traced.span_context.trace_id(),
            traced.parent_span_id,
            traced.parent_span_is_remote
        ),
        (producer_trace, producer_span, true),
        "{implementation:?}: the producer's span is the remote parent"
    );
    assert_eq!(
        traced.span_context.trace_state().header(),
        TRACESTATE,
        "{implementation:?}: the producer's trace state is kept"
    );
    assert_eq!(traced.name, format!("{topic} process"));
    assert_eq!(traced.span_kind, SpanKind::Consumer);
    for (key, value) in [
        ("messaging.system", Value::from("kafka")),
        ("messaging.destination.name", Value::from(topic.clone())),
        ("messaging.destination.partition.id", Value::from("0")),
        ("messaging.kafka.offset", Value::I64(0)),
        ("messaging.operation.type", Value::from("process")),
    ] {
        assert_eq!(
            attribute(traced, key),
            Some(&value),
            "{implementation:?}: attribute {key}"
        );
    }
    for offset in 1..=3 {
        let root = span_at(&spans, offset);
        assert_eq!(
            root.parent_span_id,
            SpanId::INVALID,
            "{implementation:?}: offset {offset} is a root span"
        );
        assert_ne!(
            root.span_context.trace_id(),
            producer_trace,
            "{implementation:?}: offset {offset} starts a new trace"
        );
        assert!(root.span_context.trace_id() != TraceId::INVALID);
        assert_eq!(root.span_context.trace_state().header(), "");
    }
    let new_traces: std::collections::HashSet<_> = (1..=3)
        .map(|offset| span_at(&spans, offset).span_context.trace_id())
        .collect();
    assert_eq!(new_traces.len(), 3, "{implementation:?}: one trace each");

    // Inside a handler's span: a valid traceparent still wins; without one,
    // the current span is the parent, as tracing does by default.
    let spans = tracing.record(|| {
        let _handler = tracing::info_span!("handler").entered();
        process(&messages[0]);
        process(&messages[1]);
    });
    let handler = spans
        .iter()
        .find(|span| span.name == "handler")
        .expect("the handler span");
    let traced = span_at(&spans, 0);
    assert_eq!(
        (traced.span_context.trace_id(), traced.parent_span_id),
        (producer_trace, producer_span),
        "{implementation:?}: the producer's span, not the current one, is the parent"
    );
    let untraced = span_at(&spans, 1);
    assert_eq!(
        (untraced.span_context.trace_id(), untraced.parent_span_id),
        (
            handler.span_context.trace_id(),
            handler.span_context.span_id()
        ),
        "{implementation:?}: without a traceparent, the current span is the parent"
    );
}

/// What a handler does: process the message in its span.
fn process(message: &Message<String, String>) {
    let _processing = message.process_span().entered();
    tracing::info!(value = ?message.value, "processing");
}

/// The exported process span of the record at `offset`.
fn span_at(spans: &[SpanData], offset: i64) -> &SpanData {
    spans
        .iter()
        .find(|span| attribute(span, "messaging.kafka.offset") == Some(&Value::I64(offset)))
        .unwrap_or_else(|| panic!("no span for offset {offset}: {spans:#?}"))
}

fn attribute<'a>(span: &'a SpanData, key: &str) -> Option<&'a Value> {
    let key = Key::from(key.to_owned());
    span.attributes
        .iter()
        .find(|attribute| attribute.key == key)
        .map(|attribute| &attribute.value)
}

/// An SDK tracer provider exporting to memory, behind a `tracing` registry
/// with the OpenTelemetry layer.
struct Tracing {
    provider: SdkTracerProvider,
    exporter: InMemorySpanExporter,
}

impl Tracing {
    fn new() -> Tracing {
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(exporter.clone())
            .build();
        Tracing { provider, exporter }
    }

    /// Runs `work` with the OpenTelemetry layer as this thread's subscriber
    /// and returns the spans it ended.
    fn record(&self, work: impl FnOnce()) -> Vec<SpanData> {
        self.exporter.reset();
        let layer =
            tracing_opentelemetry::layer().with_tracer(self.provider.tracer("trace_propagation"));
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, work);
        self.provider.force_flush().expect("flush");
        self.exporter.get_finished_spans().expect("finished spans")
    }
}

impl Drop for Tracing {
    fn drop(&mut self) {
        let _ = self.provider.shutdown();
    }
}
