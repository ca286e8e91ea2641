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
}

impl Default for NatsConfig {
    fn default() -> Self {
        NatsConfig {
            url: "nats://127.0.0.1:4222".into(),
            stream: moat_common_types::subject::STREAM.into(),
            consumer: "moat-storage-writer".into(),
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
