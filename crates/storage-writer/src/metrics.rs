//! Storage-writer metrics, `moat_storage_writer_*`.

use moat_common_types::http::register;
use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry};

#[derive(Clone)]
pub struct Metrics {
    pub registry: Registry,
    pub rows: IntCounterVec,
    pub batch_rows: Histogram,
    pub insert_latency: Histogram,
    pub ingest_lag: Histogram,
    pub insert_errors: IntCounter,
    pub redeliveries: IntCounter,
    pub fetches_overdue: IntCounter,
    pub redelivered_stored: IntCounter,
    pub dead_lettered: IntCounterVec,
    pub pending: IntGauge,
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        Metrics {
            rows: register(
                &registry,
                IntCounterVec::new(
                    Opts::new("moat_storage_writer_rows_total", "rows inserted, by table"),
                    &["table"],
                )
                .expect("valid metric"),
            ),
            batch_rows: register(
                &registry,
                Histogram::with_opts(
                    HistogramOpts::new("moat_storage_writer_batch_rows", "events stored per batch")
                        .buckets(prometheus::exponential_buckets(10.0, 4.0, 8).expect("valid buckets")),
                )
                .expect("valid metric"),
            ),
            insert_latency: register(
                &registry,
                Histogram::with_opts(
                    HistogramOpts::new(
                        "moat_storage_writer_insert_seconds",
                        "time to insert one batch into every table",
                    )
                    .buckets(prometheus::exponential_buckets(0.005, 2.0, 12).expect("valid buckets")),
                )
                .expect("valid metric"),
            ),
            ingest_lag: register(
                &registry,
                Histogram::with_opts(
                    HistogramOpts::new(
                        "moat_storage_writer_ingest_lag_seconds",
                        "from an event's exchange timestamp to its row being stored in ClickHouse (candles: from receipt)",
                    )
                    .buckets(prometheus::exponential_buckets(0.025, 2.0, 14).expect("valid buckets")),
                )
                .expect("valid metric"),
            ),
            insert_errors: register(
                &registry,
                IntCounter::new(
                    "moat_storage_writer_insert_errors_total",
                    "failed insert attempts (retried)",
                )
                .expect("valid metric"),
            ),
            redeliveries: register(
                &registry,
                IntCounter::new(
                    "moat_storage_writer_redeliveries_total",
                    "messages delivered more than once",
                )
                .expect("valid metric"),
            ),
            fetches_overdue: register(
                &registry,
                IntCounter::new(
                    "moat_storage_writer_fetches_overdue_total",
                    "pull requests given up after their expiry passed without the server ending them",
                )
                .expect("valid metric"),
            ),
            redelivered_stored: register(
                &registry,
                IntCounter::new(
                    "moat_storage_writer_redelivered_stored_total",
                    "trades of redelivered messages found already stored and not inserted again",
                )
                .expect("valid metric"),
            ),
            dead_lettered: register(
                &registry,
                IntCounterVec::new(
                    Opts::new(
                        "moat_storage_writer_dead_lettered_total",
                        "messages published to md.dlq.<reason>",
                    ),
                    &["reason"],
                )
                .expect("valid metric"),
            ),
            pending: register(
                &registry,
                IntGauge::new(
                    "moat_storage_writer_consumer_pending",
                    "messages in the stream not yet delivered to the consumer",
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
