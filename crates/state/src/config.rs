//! State-service configuration (`config/state.toml`, `MOAT_STATE__…`; the
//! database may also come from `DATABASE_URL`).

use std::time::Duration;

use moat_common_types::config::{ConfigError, Validate};
pub use moat_common_types::infra::ListenConfig;
pub use moat_common_types::tls::ServerTlsConfig;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StateConfig {
    pub grpc: ListenConfig,
    pub http: ListenConfig,
    /// TLS of the gRPC listener; `allowed_clients = ["moat-gateway"]` with
    /// a `client_ca` lets only the gateway in. Plaintext only when
    /// `tls.plaintext = true` says so. (`/health` and `/metrics` on the
    /// HTTP listener stay plaintext, for probes and Prometheus.)
    pub tls: ServerTlsConfig,
    pub database: DatabaseConfig,
    pub limits: LimitsConfig,
}

impl Default for StateConfig {
    fn default() -> Self {
        StateConfig {
            grpc: ListenConfig::any(50052),
            http: ListenConfig::any(9091),
            tls: ServerTlsConfig::default(),
            database: DatabaseConfig::default(),
            limits: LimitsConfig::default(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// `sqlite://path/to/state.db` or `postgres://user@host:port/db`.
    /// `DATABASE_URL`, when set, takes precedence over the default.
    pub url: String,
    pub max_connections: std::num::NonZeroU32,
    /// Timeout of every statement and of acquiring a connection.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig {
            url: std::env::var("DATABASE_URL").unwrap_or_else(|_| "sqlite://moat-state.db".into()),
            max_connections: std::num::NonZeroU32::new(8).expect("not zero"),
            timeout: Duration::from_secs(5),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Largest state accepted, in bytes.
    pub max_state_bytes: usize,
    /// Versions kept per strategy for recovery; older ones are deleted.
    pub keep_versions: std::num::NonZeroU32,
    /// Bytes of latest versions kept in memory with SQLite (the only
    /// writer), so loads need no database round trip; 0 turns it off.
    pub cache_bytes: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_state_bytes: 1024 * 1024,
            keep_versions: std::num::NonZeroU32::new(10).expect("not zero"),
            cache_bytes: 64 * 1024 * 1024,
        }
    }
}

impl Validate for StateConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        self.tls.validate("tls")?;
        let url = &self.database.url;
        if !(url.starts_with("sqlite:") || url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(ConfigError::invalid(
                "database.url",
                format!("\"{}\"", redact(url)),
                "a sqlite:// or postgres:// URL",
            ));
        }
        if self.limits.max_state_bytes == 0 || self.limits.max_state_bytes > 64 * 1024 * 1024 {
            return Err(ConfigError::invalid(
                "limits.max_state_bytes",
                self.limits.max_state_bytes,
                "1 byte to 64 MiB",
            ));
        }
        Ok(())
    }
}

/// The URL with any password replaced, for logs and errors.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}://{user}:***@{}", &url[..scheme], &url[at + 1..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_reach_logs() {
        assert_eq!(
            redact("postgres://moat:s3cret@db:5432/moat"),
            "postgres://moat:***@db:5432/moat"
        );
        assert_eq!(redact("postgres://moat@db/moat"), "postgres://moat@db/moat");
        assert_eq!(redact("sqlite://state.db"), "sqlite://state.db");
    }
}
