//! Collector metrics, `moat_collector_*`, with bounded labels (exchange, kind, reason).

use moat_common_types::http::register;
use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry};

#[derive(Clone)]
pub struct Metrics {
    pub registry: Registry,
    pub events: IntCounterVec,
    pub published: IntCounterVec,
    pub publish_errors: IntCounter,
    pub queue_depth: IntGauge,
    pub queue_dropped: IntCounter,
    pub publish_latency: Histogram,
    pub messages_published: IntCounter,
    pub live_dropped: IntCounter,
    pub round_messages: Histogram,
    pub rejects: IntCounterVec,
    pub reconnects: IntCounterVec,
    pub session_errors: IntCounterVec,
    pub resyncs: IntCounterVec,
    pub gaps: IntCounterVec,
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let counter_vec = |name: &str, help: &str, labels: &[&str]| {
            register(
                &registry,
                IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric"),
            )
        };
        Metrics {
            events: counter_vec(
                "moat_collector_events_total",
                "normalized events produced by venue connectors",
                &["exchange", "kind"],
            ),
            published: counter_vec(
                "moat_collector_published_total",
                "events acknowledged by JetStream",
                &["exchange", "kind"],
            ),
            rejects: counter_vec(
                "moat_collector_rejects_total",
                "venue frames not published, by reason",
                &["exchange", "reason"],
            ),
            reconnects: counter_vec(
                "moat_collector_reconnects_total",
                "venue connections replaced (closed, failed or stale)",
                &["exchange"],
            ),
            session_errors: counter_vec(
                "moat_collector_session_errors_total",
                "venue sessions ended by an error, by reason (connect, stale, socket, rate_limited, http_4xx, http_5xx, answer)",
                &["exchange", "reason"],
            ),
            gaps: counter_vec(
                "moat_collector_gaps_total",
                "data known lost and published as a gap event (trade ids skipped across a reconnect), by reason",
                &["exchange", "reason"],
            ),
            resyncs: counter_vec(
                "moat_collector_book_resyncs_total",
                "books invalidated and rebuilt from a snapshot, by reason",
                &["exchange", "reason"],
            ),
            publish_errors: register(
                &registry,
                IntCounter::new(
                    "moat_collector_publish_errors_total",
                    "publish attempts that failed and were retried",
                )
                .expect("valid metric"),
            ),
            queue_depth: register(
                &registry,
                IntGauge::new("moat_collector_queue_depth", "events waiting for the publisher").expect("valid metric"),
            ),
            queue_dropped: register(
                &registry,
                IntCounter::new(
                    "moat_collector_queue_dropped_total",
                    "oldest events dropped because the publish buffer was full",
                )
                .expect("valid metric"),
            ),
            publish_latency: register(
                &registry,
                Histogram::with_opts(
                    HistogramOpts::new("moat_collector_publish_latency_seconds", "publish to JetStream ack")
                        .buckets(prometheus::exponential_buckets(0.0005, 2.0, 14).expect("valid buckets")),
                )
                .expect("valid metric"),
            ),
            messages_published: register(
                &registry,
                IntCounter::new(
                    "moat_collector_messages_published_total",
                    "JetStream messages acknowledged (each carries one or more events of one subject)",
                )
                .expect("valid metric"),
            ),
            live_dropped: register(
                &registry,
                IntCounter::new(
                    "moat_collector_live_dropped_total",
                    "events not published on the live lane (its buffer full or NATS unreachable); the stream still has them",
                )
                .expect("valid metric"),
            ),
            round_messages: register(
                &registry,
                Histogram::with_opts(
                    HistogramOpts::new(
                        "moat_collector_publish_round_messages",
                        "messages published per round (every event queued at the time, grouped by subject)",
                    )
                    .buckets(prometheus::exponential_buckets(1.0, 4.0, 8).expect("valid buckets")),
                )
                .expect("valid metric"),
            ),
            registry,
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}
