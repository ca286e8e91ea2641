//! Storage-writer configuration (`config/storage-writer.toml`, `MOAT_STORAGE_WRITER__…`).

use std::time::Duration;

use moat_common_types::config::{ConfigError, Validate};
pub use moat_common_types::infra::{ClickHouseConfig, ListenConfig, NatsConfig, StreamConfig};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WriterConfig {
    /// Address of `/health` and `/metrics`.
    pub http: ListenConfig,
    pub nats: NatsConfig,
    pub stream: StreamConfig,
    pub clickhouse: ClickHouseConfig,
    /// Days each table keeps its rows.
    pub ttl: TtlConfig,
    /// How ClickHouse merges each table's parts.
    pub merges: MergeConfig,
    pub writer: BatchConfig,
}

impl Default for WriterConfig {
    fn default() -> Self {
        WriterConfig {
            http: ListenConfig::any(8081),
            nats: NatsConfig::default(),
            stream: StreamConfig::default(),
            clickhouse: ClickHouseConfig::default(),
            ttl: TtlConfig::default(),
            merges: MergeConfig::default(),
            writer: BatchConfig::default(),
        }
    }
}

/// Retention per table, in days; 0 keeps rows forever. Applied as each
/// table's TTL whenever the writer migrates. Every table keeps its rows
/// until the operator sets a retention: moat never deletes data it was not
/// told to.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TtlConfig {
    pub trades: u32,
    pub bbo: u32,
    pub book_snapshots: u32,
    pub book_deltas: u32,
    pub funding: u32,
    pub liquidations: u32,
    pub open_interest: u32,
    pub option_tickers: u32,
    pub venue_candles: u32,
    pub gaps: u32,
    pub candles_1m: u32,
}

impl TtlConfig {
    /// `(table, days)` for every table.
    pub fn days(&self) -> [(&'static str, u32); 11] {
        [
            ("trades", self.trades),
            ("bbo", self.bbo),
            ("book_snapshots", self.book_snapshots),
            ("book_deltas", self.book_deltas),
            ("funding", self.funding),
            ("liquidations", self.liquidations),
            ("open_interest", self.open_interest),
            ("option_tickers", self.option_tickers),
            ("venue_candles", self.venue_candles),
            ("gaps", self.gaps),
            ("candles_1m", self.candles_1m),
        ]
    }
}

/// ClickHouse's merge policy for every table, set whenever the writer
/// migrates (see `schema::merges`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MergeConfig {
    /// ClickHouse's `merge_selector_base`: roughly how many parts of a size
    /// wait before they are merged into one. Higher rewrites each row fewer
    /// times, at the cost of more parts for queries to read.
    pub selector_base: f64,
}

/// The `merge_selector_base` moat sets (ClickHouse's own default is 5).
pub const DEFAULT_MERGE_SELECTOR_BASE: f64 = 20.0;

/// The `selector_base` values accepted.
pub const MERGE_SELECTOR_BASE_RANGE: std::ops::RangeInclusive<f64> = 2.0..=100.0;

impl Default for MergeConfig {
    fn default() -> Self {
        MergeConfig {
            selector_base: DEFAULT_MERGE_SELECTOR_BASE,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BatchConfig {
    /// The durable pull consumer every writer replica shares.
    pub consumer: String,
    /// Rows per insert (all tables together) before a flush.
    pub batch_size: usize,
    /// Flush at least this often when rows are waiting.
    #[serde(with = "humantime_serde")]
    pub flush_interval: Duration,
    /// Messages delivered but not yet acked (the consumer's max_ack_pending).
    pub max_inflight: i64,
    /// Redelivery timeout of an unacked message.
    #[serde(with = "humantime_serde")]
    pub ack_wait: Duration,
    /// Longest pause between retries while ClickHouse is down.
    #[serde(with = "humantime_serde")]
    pub max_backoff: Duration,
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig {
            consumer: "moat-storage-writer".into(),
            batch_size: 50_000,
            flush_interval: Duration::from_millis(100),
            max_inflight: 200_000,
            ack_wait: Duration::from_secs(60),
            max_backoff: Duration::from_secs(5),
        }
    }
}

impl Validate for WriterConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        self.nats.validate("nats")?;
        self.stream.validate("stream")?;
        self.clickhouse.validate("clickhouse")?;
        if !MERGE_SELECTOR_BASE_RANGE.contains(&self.merges.selector_base) {
            return Err(ConfigError::invalid(
                "merges.selector_base",
                self.merges.selector_base,
                "a number from 2 to 100 (ClickHouse's own default is 5)",
            ));
        }
        let w = &self.writer;
        if w.batch_size == 0 || w.batch_size > 1_000_000 {
            return Err(ConfigError::invalid(
                "writer.batch_size",
                w.batch_size,
                "1 to 1000000 rows",
            ));
        }
        if w.flush_interval.is_zero() {
            return Err(ConfigError::invalid_duration(
                "writer.flush_interval",
                w.flush_interval,
                "a duration above 0, such as \"150ms\"",
            ));
        }
        if w.max_inflight < w.batch_size as i64 {
            return Err(ConfigError::invalid(
                "writer.max_inflight",
                w.max_inflight,
                "at least writer.batch_size, or batches could never fill",
            ));
        }
        if w.ack_wait < Duration::from_secs(5) {
            return Err(ConfigError::invalid_duration(
                "writer.ack_wait",
                w.ack_wait,
                "at least \"5s\"",
            ));
        }
        Ok(())
    }
}
