//! Configuration sections the services share: where a server listens, the
//! NATS servers, the JetStream stream of market data, and ClickHouse. Each
//! service's configuration composes these, so a key means the same thing in
//! every service and its default is set once.

use std::time::Duration;

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::config::ConfigError;

/// An address a server listens on (`listen = "0.0.0.0:9090"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenConfig {
    pub listen: SocketAddr,
}

impl ListenConfig {
    /// Every interface, on `port`.
    pub fn any(port: u16) -> ListenConfig {
        ListenConfig {
            listen: ([0, 0, 0, 0], port).into(),
        }
    }

    /// Binds the address; a failure names `section` (`http`, `grpc`) and
    /// the address, as a service's main reports it.
    pub async fn bind(&self, section: &str) -> std::io::Result<tokio::net::TcpListener> {
        tokio::net::TcpListener::bind(self.listen)
            .await
            .map_err(|e| std::io::Error::new(e.kind(), format!("binding {section}.listen {}: {e}", self.listen)))
    }
}

/// The NATS servers a service connects to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NatsConfig {
    /// One server, or several of a cluster separated by commas; the client
    /// learns the rest of the cluster from the first it reaches.
    pub url: String,
    /// TLS to NATS: the CA of the server's certificate, and this service's
    /// certificate, which names its NATS user (`deploy/nats/users.conf`).
    pub tls: crate::tls::ClientTlsConfig,
}

impl Default for NatsConfig {
    fn default() -> Self {
        NatsConfig {
            url: "nats://127.0.0.1:4222".into(),
            tls: crate::tls::ClientTlsConfig::default(),
        }
    }
}

impl NatsConfig {
    pub fn validate(&self, section: &str) -> Result<(), ConfigError> {
        crate::nats::server_addrs(&self.url).map_err(|e| {
            ConfigError::invalid(
                &format!("{section}.url"),
                format!("{:?}", self.url),
                &format!("nats:// URLs separated by commas ({e})"),
            )
        })?;
        if !self.tls.server_name.is_empty() {
            return Err(ConfigError::invalid(
                &format!("{section}.tls.server_name"),
                format!("{:?}", self.tls.server_name),
                &format!("nothing: NATS checks the server's certificate against the host of {section}.url"),
            ));
        }
        if self.tls.cert.is_empty() != self.tls.key.is_empty() || (!self.tls.cert.is_empty() && !self.tls.enabled()) {
            return Err(ConfigError::invalid(
                &format!("{section}.tls.cert"),
                format!("{:?}", self.tls.cert),
                &format!("{section}.tls.cert and {section}.tls.key together, with {section}.tls.ca"),
            ));
        }
        Ok(())
    }
}

/// The JetStream stream of market data, as a service creates it when it is
/// missing (an existing stream is used as it is).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StreamConfig {
    pub name: String,
    /// Copies JetStream keeps: 3 on a three-node NATS cluster.
    pub replicas: usize,
}

impl Default for StreamConfig {
    fn default() -> Self {
        StreamConfig {
            name: crate::subject::STREAM.into(),
            replicas: 1,
        }
    }
}

impl StreamConfig {
    pub fn validate(&self, section: &str) -> Result<(), ConfigError> {
        if self.name.is_empty()
            || !self
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(ConfigError::invalid(
                &format!("{section}.name"),
                format!("{:?}", self.name),
                "a stream name of letters, digits, '_' and '-'",
            ));
        }
        if !(1..=5).contains(&self.replicas) {
            return Err(ConfigError::invalid(
                &format!("{section}.replicas"),
                self.replicas,
                "1 to 5 (JetStream's limit)",
            ));
        }
        Ok(())
    }

    /// The settings `nats::ensure_stream` creates the stream with.
    pub fn settings(&self) -> crate::nats::StreamSettings {
        crate::nats::StreamSettings {
            name: self.name.clone(),
            replicas: self.replicas,
            ..crate::nats::StreamSettings::default()
        }
    }
}

/// ClickHouse's HTTP interface and the database moat's tables live in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClickHouseConfig {
    /// HTTP interface, e.g. http://127.0.0.1:8123 (on a cluster, a Service
    /// that spreads requests over the replicas).
    pub url: String,
    pub database: String,
    pub user: String,
    pub password: String,
    /// A file whose first line is the password (a mounted secret); it
    /// takes precedence over `password`.
    pub password_file: String,
    /// Per-request timeout of inserts and queries.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
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
            password_file: String::new(),
            timeout: Duration::from_secs(30),
            cluster: String::new(),
        }
    }
}

impl ClickHouseConfig {
    /// The password: the first line of `password_file` when one is set
    /// (checked readable when the config is read; should it vanish later,
    /// the error is logged and ClickHouse refuses the empty password),
    /// else `password`.
    pub fn password(&self) -> String {
        if self.password_file.is_empty() {
            return self.password.clone();
        }
        match read_first_line(&self.password_file) {
            Ok(password) => password,
            Err(error) => {
                tracing::error!(%error, "clickhouse.password_file");
                String::new()
            }
        }
    }

    pub fn validate(&self, section: &str) -> Result<(), ConfigError> {
        if !self.password_file.is_empty()
            && let Err(error) = read_first_line(&self.password_file)
        {
            return Err(ConfigError::invalid(
                &format!("{section}.password_file"),
                format!("\"{}\"", self.password_file),
                &format!("a readable file holding the password ({error})"),
            ));
        }
        if !self.url.starts_with("http://") && !self.url.starts_with("https://") {
            return Err(ConfigError::invalid(
                &format!("{section}.url"),
                format!("\"{}\"", self.url),
                "an http:// or https:// URL of ClickHouse's HTTP interface",
            ));
        }
        let db = &self.database;
        if db.is_empty() || !db.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(ConfigError::invalid(
                &format!("{section}.database"),
                format!("\"{db}\""),
                "a database name of letters, digits and '_'",
            ));
        }
        let cluster = &self.cluster;
        if !cluster.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(ConfigError::invalid(
                &format!("{section}.cluster"),
                format!("{cluster:?}"),
                "a cluster name of letters, digits and underscores (or empty)",
            ));
        }
        if self.timeout.is_zero() {
            return Err(ConfigError::invalid_duration(
                &format!("{section}.timeout"),
                self.timeout,
                "a timeout above 0, such as \"30s\"",
            ));
        }
        Ok(())
    }
}

/// The first line of a secrets file, without its line end.
fn read_first_line(path: &str) -> Result<String, String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    Ok(text.lines().next().unwrap_or("").trim_end().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_shared_section_names_its_bad_key() {
        let err = NatsConfig {
            url: "nats://a:1,".into(),
            ..NatsConfig::default()
        }
        .validate("nats")
        .unwrap_err();
        assert!(err.0.starts_with("key `nats.url`"), "{err}");
        let mut half = NatsConfig::default();
        half.tls.cert = "collector.pem".into();
        let err = half.validate("nats").unwrap_err();
        assert!(err.0.starts_with("key `nats.tls.cert`"), "{err}");
        let err = ClickHouseConfig {
            password_file: "/nonexistent/password".into(),
            ..ClickHouseConfig::default()
        }
        .validate("clickhouse")
        .unwrap_err();
        assert!(err.0.starts_with("key `clickhouse.password_file`"), "{err}");
        let err = StreamConfig {
            replicas: 0,
            ..StreamConfig::default()
        }
        .validate("stream")
        .unwrap_err();
        assert!(err.0.starts_with("key `stream.replicas` = 0"), "{err}");
        let err = ClickHouseConfig {
            url: "tcp://x:9000".into(),
            ..ClickHouseConfig::default()
        }
        .validate("clickhouse")
        .unwrap_err();
        assert!(err.0.starts_with("key `clickhouse.url`"), "{err}");
        let err = ClickHouseConfig {
            cluster: "a b".into(),
            ..ClickHouseConfig::default()
        }
        .validate("clickhouse")
        .unwrap_err();
        assert!(err.0.starts_with("key `clickhouse.cluster`"), "{err}");
        assert!(ClickHouseConfig::default().validate("clickhouse").is_ok());
        assert!(StreamConfig::default().validate("stream").is_ok());
        assert!(NatsConfig::default().validate("nats").is_ok());
    }
}
