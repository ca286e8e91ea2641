//! Storage-writer configuration (`config/storage-writer.toml`, `MOAT_STORAGE_WRITER__…`).

use std::net::SocketAddr;

use moat_common_types::config::{ConfigError, Validate};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct WriterConfig {
    pub http: HttpConfig,
    pub nats: NatsConfig,
    pub clickhouse: ClickHouseConfig,
    pub writer: BatchConfig,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    pub listen: SocketAddr,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: ([0, 0, 0, 0], 8081).into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NatsConfig {
    pub url: String,
    pub stream: String,
    /// Durable pull consumer shared by every writer replica.
    pub consumer: String,
    /// Replicas of the stream when this writer is the one that creates it
    /// (before any collector): 3 on a NATS cluster, like the collectors'.
    pub stream_replicas: usize,
}

impl Default for NatsConfig {
    fn default() -> Self {
        NatsConfig {
            url: "nats://127.0.0.1:4222".into(),
            stream: moat_common_types::subject::STREAM.into(),
            consumer: "moat-storage-writer".into(),
            stream_replicas: 1,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClickHouseConfig {
    /// HTTP interface, e.g. http://127.0.0.1:8123.
    pub url: String,
    pub database: String,
    pub user: String,
    pub password: String,
    /// Per-request timeout of inserts and queries.
    pub timeout_ms: u64,
    /// A cluster name from ClickHouse's `remote_servers`: tables are then
    /// `ReplicatedMergeTree` shards behind `Distributed` tables. Empty for
    /// one server.
    pub cluster: String,
    /// Days each table keeps its rows (0: forever).
    pub ttl: TtlConfig,
}

/// Retention per table, in days; 0 keeps rows forever. Applied as each
/// table's TTL whenever the writer migrates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TtlConfig {
    pub trades: u32,
    pub bbo: u32,
    pub book_snapshots: u32,
    pub book_deltas: u32,
    pub funding: u32,
    pub liquidations: u32,
    pub open_interest: u32,
    pub venue_candles: u32,
    pub gaps: u32,
    pub candles_1m: u32,
}

/// Every table keeps its rows until the operator sets a retention: moat
/// never deletes data it was not told to.
impl Default for TtlConfig {
    fn default() -> Self {
        TtlConfig {
            trades: 0,
            bbo: 0,
            book_snapshots: 0,
            book_deltas: 0,
            funding: 0,
            liquidations: 0,
            open_interest: 0,
            venue_candles: 0,
            gaps: 0,
            candles_1m: 0,
        }
    }
}

impl TtlConfig {
    /// `(table, days)` for every table.
    pub fn days(&self) -> [(&'static str, u32); 10] {
        [
            ("trades", self.trades),
            ("bbo", self.bbo),
            ("book_snapshots", self.book_snapshots),
            ("book_deltas", self.book_deltas),
            ("funding", self.funding),
            ("liquidations", self.liquidations),
            ("open_interest", self.open_interest),
            ("venue_candles", self.venue_candles),
            ("gaps", self.gaps),
            ("candles_1m", self.candles_1m),
        ]
    }
}

impl Default for ClickHouseConfig {
    fn default() -> Self {
        ClickHouseConfig {
            url: "http://127.0.0.1:8123".into(),
            database: "moat".into(),
            user: "default".into(),
            password: String::new(),
            timeout_ms: 30_000,
            cluster: String::new(),
            ttl: TtlConfig::default(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BatchConfig {
    /// Rows per insert (all tables together) before a flush.
    pub batch_size: usize,
    /// Flush at least this often when rows are waiting.
    pub flush_interval_ms: u64,
    /// Messages delivered but not yet acked (the consumer's max_ack_pending).
    pub max_inflight: i64,
    /// Redelivery timeout of an unacked message.
    pub ack_wait_ms: u64,
    /// Longest pause between retries while ClickHouse is down.
    pub max_backoff_ms: u64,
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig {
            batch_size: 50_000,
            flush_interval_ms: 1_000,
            max_inflight: 200_000,
            ack_wait_ms: 60_000,
            max_backoff_ms: 5_000,
        }
    }
}

impl Validate for WriterConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        let cluster = &self.clickhouse.cluster;
        if !cluster.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(ConfigError::invalid(
                "clickhouse.cluster",
                format!("{cluster:?}"),
                "a cluster name of letters, digits and underscores (or empty)",
            ));
        }
        if !(1..=5).contains(&self.nats.stream_replicas) {
            return Err(ConfigError::invalid(
                "nats.stream_replicas",
                self.nats.stream_replicas,
                "1 to 5 (JetStream's limit)",
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
        if w.flush_interval_ms == 0 {
            return Err(ConfigError::invalid("writer.flush_interval_ms", 0, "at least 1 ms"));
        }
        if w.max_inflight < w.batch_size as i64 {
            return Err(ConfigError::invalid(
                "writer.max_inflight",
                w.max_inflight,
                "at least writer.batch_size, or batches could never fill",
            ));
        }
        if w.ack_wait_ms < 5_000 {
            return Err(ConfigError::invalid(
                "writer.ack_wait_ms",
                w.ack_wait_ms,
                "at least 5000 ms",
            ));
        }
        if !self.clickhouse.url.starts_with("http://") && !self.clickhouse.url.starts_with("https://") {
            return Err(ConfigError::invalid(
                "clickhouse.url",
                format!("\"{}\"", self.clickhouse.url),
                "an http:// or https:// URL of ClickHouse's HTTP interface",
            ));
        }
        let db = &self.clickhouse.database;
        if db.is_empty() || !db.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(ConfigError::invalid(
                "clickhouse.database",
                format!("\"{db}\""),
                "a database name of letters, digits and '_'",
            ));
        }
        Ok(())
    }
}
