//! Logging and tracing for every service.
//!
//! Logs are human-readable by default and JSON with `MOAT_LOG_FORMAT=json`;
//! the level comes from `RUST_LOG` (default `info`). When
//! `OTEL_EXPORTER_OTLP_ENDPOINT` is set, spans are exported over OTLP/gRPC
//! with the sampling ratio in `OTEL_TRACES_SAMPLER_ARG` (default 1.0), and
//! W3C trace context crosses process boundaries through gRPC metadata and
//! NATS headers with [`inject`] and [`extract`].

use std::collections::HashMap;

use opentelemetry::propagation::{Extractor, Injector};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer as _;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Header names of W3C trace context.
pub const TRACE_HEADERS: [&str; 2] = ["traceparent", "tracestate"];

/// Flushes and shuts the exporter down when dropped.
#[must_use = "dropping the guard stops span export"]
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(Err(error)) = self.provider.take().map(|p| p.shutdown()) {
            eprintln!("failed to flush spans on shutdown: {error}");
        }
    }
}

/// Installs the global subscriber for `service` (e.g. `moat-gateway`).
/// Calling it twice in one process keeps the first subscriber.
pub fn init(service: &str) -> TelemetryGuard {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let json = std::env::var("MOAT_LOG_FORMAT").is_ok_and(|v| v.eq_ignore_ascii_case("json"));

    let provider = match std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT") {
        Ok(endpoint) if !endpoint.is_empty() => match otlp_provider(service, &endpoint) {
            Ok(provider) => Some(provider),
            Err(error) => {
                eprintln!("{service}: OTLP export to {endpoint} disabled: {error}");
                None
            }
        },
        _ => None,
    };
    // Spans for export have their own filter, so that quiet logs
    // (`RUST_LOG=warn`) do not silence traces: `MOAT_TRACE_FILTER`, by
    // default every info span.
    let trace_filter = std::env::var("MOAT_TRACE_FILTER")
        .ok()
        .and_then(|f| EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    let otel_layer = provider.as_ref().map(|p| {
        tracing_opentelemetry::layer()
            .with_tracer(p.tracer(service.to_owned()))
            .with_filter(trace_filter)
    });

    let registry = tracing_subscriber::registry().with(otel_layer);
    let result = if json {
        registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_current_span(true)
                    .with_writer(std::io::stderr)
                    .with_filter(filter),
            )
            .try_init()
    } else {
        registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(std::io::stderr)
                    .with_filter(filter),
            )
            .try_init()
    };
    // Tests start several services in one process; the first one wins.
    drop(result);
    TelemetryGuard { provider }
}

fn otlp_provider(service: &str, endpoint: &str) -> Result<SdkTracerProvider, Box<dyn std::error::Error>> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .build()?;
    let ratio = std::env::var("OTEL_TRACES_SAMPLER_ARG")
        .ok()
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(1.0);
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(ratio))))
        .with_resource(
            opentelemetry_sdk::Resource::builder()
                .with_service_name(service.to_owned())
                .build(),
        )
        .build();
    opentelemetry::global::set_tracer_provider(provider.clone());
    Ok(provider)
}

struct FnInjector<F>(F);

impl<F: FnMut(&str, String)> Injector for FnInjector<F> {
    fn set(&mut self, key: &str, value: String) {
        (self.0)(key, value);
    }
}

/// Writes the current span's trace context as header pairs through `set`,
/// for gRPC metadata, HTTP headers or NATS headers alike.
pub fn inject(set: impl FnMut(&str, String)) {
    let context = tracing::Span::current().context();
    let mut injector = FnInjector(set);
    opentelemetry::global::get_text_map_propagator(|p| p.inject_context(&context, &mut injector));
}

/// Current trace context as `(header, value)` pairs.
pub fn current_headers() -> Vec<(String, String)> {
    let mut pairs = Vec::new();
    inject(|k, v| pairs.push((k.to_owned(), v)));
    pairs
}

struct MapExtractor(HashMap<&'static str, String>);

impl Extractor for MapExtractor {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().copied().collect()
    }
}

/// Reads trace context through `get` and makes it the parent of `span`.
pub fn extract(span: &tracing::Span, get: impl Fn(&str) -> Option<String>) {
    let map: HashMap<&'static str, String> = TRACE_HEADERS.iter().filter_map(|k| get(k).map(|v| (*k, v))).collect();
    if map.is_empty() {
        return;
    }
    let extractor = MapExtractor(map);
    let parent = opentelemetry::global::get_text_map_propagator(|p| p.extract(&extractor));
    let _ = span.set_parent(parent);
}

/// The current trace id in hex, or `None` outside a sampled trace.
pub fn current_trace_id() -> Option<String> {
    use opentelemetry::trace::TraceContextExt;
    let context = tracing::Span::current().context();
    let span_context = context.span().span_context().clone();
    span_context.is_valid().then(|| span_context.trace_id().to_string())
}

/// NATS header helpers.
pub mod nats {
    use async_nats::HeaderMap;

    /// Adds the current trace context to NATS headers.
    pub fn inject(headers: &mut HeaderMap) {
        super::inject(|k, v| headers.insert(k, v.as_str()));
    }

    /// Parents `span` on the trace context carried by NATS headers.
    pub fn extract(span: &tracing::Span, headers: Option<&HeaderMap>) {
        if let Some(headers) = headers {
            super::extract(span, |k| headers.get(k).map(|v| v.as_str().to_owned()));
        }
    }
}
