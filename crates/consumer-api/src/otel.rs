//! OpenTelemetry trace context carried in message headers (feature `otel`).
//!
//! A producer instrumented with OpenTelemetry writes its span's context into
//! each record's headers as W3C Trace Context: `traceparent`
//! (`00-<trace id>-<span id>-<flags>`) and, optionally, `tracestate`. This
//! module reads them back, so that the work done for a message joins the
//! producer's trace:
//!
//! - [`MessageTraceExt::process_span`]: the `tracing` span to process a
//!   message in, named and attributed after OpenTelemetry's messaging
//!   conventions, whose OpenTelemetry parent is the producer's span;
//! - [`MessageTraceExt::trace_context`] and [`extract_context`]: the
//!   producer's context itself, for a span of your own or a link;
//! - [`HeaderExtractor`]: [`Headers`] as an OpenTelemetry
//!   [`Extractor`], for another propagator.
//!
//! The spans reach an OpenTelemetry exporter through
//! [`tracing_opentelemetry`]'s layer, which the application installs with its
//! tracer provider; without that layer, a process span is an ordinary
//! `tracing` span and the header context is not used.
//!
//! Headers are read as the producer wrote them and never make anything
//! panic: a missing, malformed or non-UTF-8 `traceparent` means no remote
//! context, and the span gets `tracing`'s usual parent (see
//! [`MessageTraceExt::process_span`]).
//!
//! # Examples
//!
//! ```
//! use consumer_api::otel::MessageTraceExt;
//! use consumer_api::{Header, Headers, Message, Timestamp};
//! use tracing::Instrument;
//!
//! # fn message() -> Message<String, String> {
//! #     let headers: Headers = [Header::new(
//! #         "traceparent",
//! #         Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
//! #     )]
//! #     .into_iter()
//! #     .collect();
//! #     Message {
//! #         topic: "orders".to_owned(),
//! #         partition: 0,
//! #         offset: 7,
//! #         timestamp: Timestamp::NotAvailable,
//! #         key: None,
//! #         value: Some("order 7".to_owned()),
//! #         headers,
//! #     }
//! # }
//! async fn handle(message: &Message<String, String>) {
//!     // Everything logged or traced in here belongs to the producer's trace.
//!     tracing::info!(value = ?message.value, "handling");
//! }
//!
//! # futures_util::FutureExt::now_or_never(async {
//! let message = message();
//! handle(&message).instrument(message.process_span()).await;
//! # });
//! ```

use opentelemetry::Context;
use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::TraceContextExt as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use crate::message::{Header, Headers, Message};

/// A message's [`Headers`] as an OpenTelemetry [`Extractor`], for a
/// [`TextMapPropagator`] of your choice ([`extract_context`] uses W3C Trace
/// Context).
///
/// Keys are matched without regard to ASCII case, as OpenTelemetry's own
/// carriers do. When a key appears more than once, [`get`](Extractor::get)
/// takes the last header with it (Kafka's `lastHeader` convention, which
/// OpenTelemetry's Java instrumentation follows), and
/// [`get_all`](Extractor::get_all) all of them in order. A value that is null
/// or not UTF-8 is never returned: for `get`, a last header with such a value
/// makes the key absent.
///
/// # Examples
///
/// ```
/// use consumer_api::otel::HeaderExtractor;
/// use consumer_api::{Header, Headers};
/// use opentelemetry::propagation::Extractor;
///
/// let headers: Headers = [
///     Header::new("Tracestate", Some("a=1")),
///     Header::new("tracestate", Some("b=2")),
///     Header::new("binary", Some(vec![0xff])),
/// ]
/// .into_iter()
/// .collect();
/// let extractor = HeaderExtractor::new(&headers);
///
/// assert_eq!(extractor.get("tracestate"), Some("b=2"));
/// assert_eq!(extractor.get_all("tracestate"), Some(vec!["a=1", "b=2"]));
/// assert_eq!(extractor.get("binary"), None);
/// assert_eq!(extractor.keys(), ["Tracestate", "tracestate", "binary"]);
/// ```
#[derive(Debug, Clone, Copy)]
pub struct HeaderExtractor<'a> {
    headers: &'a Headers,
}

impl<'a> HeaderExtractor<'a> {
    /// An extractor reading `headers`.
    ///
    /// # Examples
    ///
    /// ```
    /// use consumer_api::Headers;
    /// use consumer_api::otel::HeaderExtractor;
    /// use opentelemetry::propagation::Extractor;
    ///
    /// let headers = Headers::new();
    /// assert_eq!(HeaderExtractor::new(&headers).get("traceparent"), None);
    /// ```
    pub fn new(headers: &'a Headers) -> Self {
        HeaderExtractor { headers }
    }
}

/// A header's value as text, if it has one that is UTF-8.
fn text(header: &Header) -> Option<&str> {
    header.value_str().ok().flatten()
}

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.headers
            .iter()
            .rev()
            .find(|header| header.key().eq_ignore_ascii_case(key))
            .and_then(text)
    }

    fn keys(&self) -> Vec<&str> {
        self.headers.iter().map(Header::key).collect()
    }

    fn get_all(&self, key: &str) -> Option<Vec<&str>> {
        let values: Vec<&str> = self
            .headers
            .iter()
            .filter(|header| header.key().eq_ignore_ascii_case(key))
            .filter_map(text)
            .collect();
        (!values.is_empty()).then_some(values)
    }
}

/// The remote span context that `headers` carry as W3C Trace Context
/// (`traceparent`, and `tracestate` with it), as an OpenTelemetry
/// [`Context`]; `None` when there is no `traceparent`, or it is malformed
/// (not `<version>-<trace id>-<span id>-<flags>` in lower-case hex, an
/// all-zero id, a non-UTF-8 value).
///
/// This uses W3C Trace Context whatever propagator the application installed
/// globally (OpenTelemetry's default global propagator reads nothing); for
/// another format, use [`HeaderExtractor`] with its propagator. A malformed
/// `tracestate` next to a valid `traceparent` is dropped, the context kept.
/// The context returned holds only the remote span, not
/// [`Context::current`]'s values.
///
/// # Examples
///
/// ```
/// use consumer_api::otel::extract_context;
/// use consumer_api::{Header, Headers};
/// use opentelemetry::trace::TraceContextExt;
///
/// let headers: Headers = [
///     Header::new("traceparent", Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")),
///     Header::new("tracestate", Some("vendor=value")),
/// ]
/// .into_iter()
/// .collect();
/// let context = extract_context(&headers).expect("a valid traceparent");
/// let producer = context.span().span_context().clone();
/// assert_eq!(producer.trace_id().to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
/// assert_eq!(producer.span_id().to_string(), "00f067aa0ba902b7");
/// assert!(producer.is_remote() && producer.is_sampled());
/// assert_eq!(producer.trace_state().get("vendor"), Some("value"));
///
/// let malformed: Headers = [Header::new("traceparent", Some("00-not-a-trace-01"))]
///     .into_iter()
///     .collect();
/// assert!(extract_context(&malformed).is_none());
/// assert!(extract_context(&Headers::new()).is_none());
/// ```
pub fn extract_context(headers: &Headers) -> Option<Context> {
    let context = TraceContextPropagator::new()
        .extract_with_context(&Context::new(), &HeaderExtractor::new(headers));
    context.has_active_span().then_some(context)
}

/// Trace context for [`Message`]s: the producer's context from the headers,
/// and a span to process the message in that continues the producer's
/// trace.
///
/// # Examples
///
/// ```
/// use consumer_api::otel::MessageTraceExt;
/// use consumer_api::{Headers, Message, Timestamp};
///
/// let message: Message<String, String> = Message {
///     topic: "orders".to_owned(),
///     partition: 0,
///     offset: 7,
///     timestamp: Timestamp::NotAvailable,
///     key: None,
///     value: Some("order 7".to_owned()),
///     headers: Headers::new(),
/// };
/// assert!(message.trace_context().is_none());
/// let _entered = message.process_span().entered();
/// ```
pub trait MessageTraceExt: sealed::Sealed {
    /// The producer's span context, from the message's W3C Trace Context
    /// headers: [`extract_context`] of its headers.
    ///
    /// # Examples
    ///
    /// ```
    /// use consumer_api::otel::MessageTraceExt;
    /// use consumer_api::{Header, Headers, Message, Timestamp};
    /// use opentelemetry::trace::TraceContextExt;
    ///
    /// let headers: Headers = [Header::new(
    ///     "traceparent",
    ///     Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
    /// )]
    /// .into_iter()
    /// .collect();
    /// let message: Message<(), ()> = Message {
    ///     topic: "orders".to_owned(),
    ///     partition: 0,
    ///     offset: 7,
    ///     timestamp: Timestamp::NotAvailable,
    ///     key: None,
    ///     value: None,
    ///     headers,
    /// };
    /// let producer = message.trace_context().expect("a traceparent");
    /// assert_eq!(
    ///     producer.span().span_context().span_id().to_string(),
    ///     "00f067aa0ba902b7"
    /// );
    /// ```
    fn trace_context(&self) -> Option<Context>;

    /// An INFO-level `tracing` span, `kafka.process`, to process the
    /// message in, whose OpenTelemetry parent is the producer's span when
    /// the headers carry a valid `traceparent`.
    ///
    /// Its fields follow OpenTelemetry's messaging semantic conventions, and
    /// [`tracing_opentelemetry`] turns them into the exported span's name,
    /// kind and attributes:
    ///
    /// | field | value |
    /// |---|---|
    /// | `otel.name` | `"<topic> process"`, the exported span's name |
    /// | `otel.kind` | `"consumer"` |
    /// | `messaging.system` | `"kafka"` |
    /// | `messaging.destination.name` | the topic |
    /// | `messaging.destination.partition.id` | the partition, as a string |
    /// | `messaging.kafka.offset` | the offset |
    /// | `messaging.operation.type` | `"process"` |
    ///
    /// The parent: with a valid `traceparent` (see [`extract_context`]),
    /// the span is made a child of the producer's span with
    /// [`OpenTelemetrySpanExt::set_parent`](tracing_opentelemetry::OpenTelemetrySpanExt::set_parent),
    /// in the producer's trace (and with its `tracestate`), whatever span is
    /// current; `tracing`'s own span tree (what a log formatter shows) still
    /// has the current span as parent. Without one (no header, malformed, not
    /// UTF-8), nothing is set and the span's parent is `tracing`'s default:
    /// the current span if there is one, otherwise none, and the exported
    /// span is the root of a new trace. Enter the span, or
    /// [`instrument`](tracing::Instrument::instrument) a future with it,
    /// after this returns: the parent can no longer change once the span
    /// has started.
    ///
    /// When the subscriber does not enable the span (filtered out, or no
    /// subscriber), the headers are not read, and the span is
    /// [`Span::none`](tracing::Span::none). Without a `tracing_opentelemetry`
    /// layer, the span is an ordinary `tracing` span.
    ///
    /// # Examples
    ///
    /// ```
    /// use consumer_api::otel::MessageTraceExt;
    /// use consumer_api::{Header, Headers, Message, Timestamp};
    /// use tracing::Instrument;
    ///
    /// async fn handle(message: &Message<String, String>) {
    ///     tracing::info!("handling {message}");
    /// }
    ///
    /// # let headers: Headers = [Header::new(
    /// #     "traceparent",
    /// #     Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
    /// # )]
    /// # .into_iter()
    /// # .collect();
    /// # let message: Message<String, String> = Message {
    /// #     topic: "orders".to_owned(),
    /// #     partition: 0,
    /// #     offset: 7,
    /// #     timestamp: Timestamp::NotAvailable,
    /// #     key: None,
    /// #     value: Some("order 7".to_owned()),
    /// #     headers,
    /// # };
    /// # futures_util::FutureExt::now_or_never(async {
    /// // In an async handler: the span covers the whole future.
    /// handle(&message).instrument(message.process_span()).await;
    /// # });
    ///
    /// // In blocking code: the span covers the guard's scope.
    /// let _processing = message.process_span().entered();
    /// tracing::info!("processing {message}");
    /// ```
    fn process_span(&self) -> tracing::Span;
}

mod sealed {
    /// Only [`Message`](crate::Message) has trace context, so methods can be
    /// added to [`MessageTraceExt`](super::MessageTraceExt) later.
    pub trait Sealed {}

    impl<K, V> Sealed for crate::Message<K, V> {}
}

impl<K, V> MessageTraceExt for Message<K, V> {
    fn trace_context(&self) -> Option<Context> {
        extract_context(&self.headers)
    }

    fn process_span(&self) -> tracing::Span {
        let span = tracing::info_span!(
            "kafka.process",
            otel.name = %format_args!("{} process", self.topic),
            otel.kind = "consumer",
            messaging.system = "kafka",
            messaging.destination.name = self.topic.as_str(),
            messaging.destination.partition.id = %self.partition,
            messaging.kafka.offset = self.offset,
            messaging.operation.type = "process",
        );
        if span.is_disabled() {
            return span;
        }
        if let Some(producer) = self.trace_context() {
            // Fails only when no OpenTelemetry layer records this span: then
            // there is no OpenTelemetry parent to set, and nothing to do.
            let _ = span.set_parent(producer);
        }
        span
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry::trace::{SpanId, TraceId};

    use super::*;

    const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
    const SPAN_ID: &str = "00f067aa0ba902b7";

    fn traceparent() -> String {
        format!("00-{TRACE_ID}-{SPAN_ID}-01")
    }

    fn headers(pairs: &[(&str, Option<&[u8]>)]) -> Headers {
        pairs
            .iter()
            .map(|(key, value)| Header::new(*key, value.map(<[u8]>::to_vec)))
            .collect()
    }

    fn producer(headers: &Headers) -> Option<opentelemetry::trace::SpanContext> {
        extract_context(headers).map(|context| context.span().span_context().clone())
    }

    #[test]
    fn a_valid_traceparent_and_tracestate_are_the_remote_parent() {
        let traceparent = traceparent();
        let headers = headers(&[
            ("traceparent", Some(traceparent.as_bytes())),
            (
                "tracestate",
                Some(b"congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"),
            ),
        ]);
        let producer = producer(&headers).expect("a valid traceparent");
        assert_eq!(
            producer.trace_id(),
            TraceId::from_hex(TRACE_ID).expect("hex")
        );
        assert_eq!(producer.span_id(), SpanId::from_hex(SPAN_ID).expect("hex"));
        assert!(producer.is_remote());
        assert!(producer.is_sampled());
        assert_eq!(
            producer.trace_state().header(),
            "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"
        );
    }

    #[test]
    fn no_or_malformed_traceparent_is_no_context() {
        assert!(producer(&Headers::new()).is_none());
        assert!(producer(&headers(&[("other", Some(b"x"))])).is_none());
        assert!(producer(&headers(&[("tracestate", Some(b"a=1"))])).is_none());
        for malformed in [
            &b""[..],
            b"garbage",
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            b"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            b"00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            b"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            b"\xff\xfe-not-utf8",
        ] {
            assert!(
                producer(&headers(&[("traceparent", Some(malformed))])).is_none(),
                "{}",
                String::from_utf8_lossy(malformed)
            );
        }
        assert!(producer(&headers(&[("traceparent", None)])).is_none());
    }

    #[test]
    fn a_malformed_tracestate_keeps_the_parent() {
        let traceparent = traceparent();
        let headers = headers(&[
            ("traceparent", Some(traceparent.as_bytes())),
            ("tracestate", Some(b"not a = valid state")),
        ]);
        let producer = producer(&headers).expect("a valid traceparent");
        assert_eq!(producer.trace_state().header(), "");
    }

    #[test]
    fn the_last_traceparent_wins_and_case_does_not_matter() {
        let traceparent = traceparent();
        let headers = headers(&[
            (
                "traceparent",
                Some(b"00-11111111111111111111111111111111-2222222222222222-01"),
            ),
            ("TraceParent", Some(traceparent.as_bytes())),
        ]);
        let producer = producer(&headers).expect("a valid traceparent");
        assert_eq!(producer.span_id(), SpanId::from_hex(SPAN_ID).expect("hex"));
    }

    #[test]
    fn a_last_traceparent_that_is_not_utf8_hides_an_earlier_one() {
        let traceparent = traceparent();
        let headers = headers(&[
            ("traceparent", Some(traceparent.as_bytes())),
            ("traceparent", Some(&[0xff, 0x00][..])),
        ]);
        assert!(producer(&headers).is_none());
    }

    #[test]
    fn without_a_subscriber_the_span_is_disabled_and_nothing_is_read() {
        let traceparent = traceparent();
        let message: Message<(), ()> = Message {
            topic: "orders".to_owned(),
            partition: 1,
            offset: 2,
            timestamp: crate::Timestamp::NotAvailable,
            key: None,
            value: None,
            headers: headers(&[("traceparent", Some(traceparent.as_bytes()))]),
        };
        assert!(message.process_span().is_disabled());
        assert!(message.trace_context().is_some());
    }
}
