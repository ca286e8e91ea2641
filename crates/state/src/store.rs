//! The versioned store over sqlx: SQLite (WAL, full sync) or PostgreSQL.
//!
//! A save is one `INSERT … SELECT … WHERE <current version> = <expected>`
//! statement, so the version check and the write are atomic on both
//! engines; a concurrent save of the same version fails on the primary key
//! and is answered as a version conflict too.

use std::str::FromStr;

use moat_common_types::{Error, ErrorCode, now_ms};
use sha2::{Digest, Sha256};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, SqlitePool};

use crate::config::{DatabaseConfig, redact};

/// One stored version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub version: u64,
    pub data: Vec<u8>,
    pub sha256: String,
    pub saved_at_ms: i64,
    /// The media type the client gave with `data`; empty when none.
    pub content_type: String,
}

/// Metadata of one stored version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionInfo {
    pub version: u64,
    pub sha256: String,
    pub size: u64,
    pub saved_at_ms: i64,
    pub content_type: String,
}

#[derive(Debug, Clone)]
pub enum Store {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Runs the same code against whichever pool the store holds.
macro_rules! with_pool {
    ($store:expr, $pool:ident => $body:expr) => {
        match $store {
            Store::Sqlite($pool) => $body,
            Store::Postgres($pool) => $body,
        }
    };
}

const SAVE: &str = "INSERT INTO strategy_state (strategy_id, version, data, sha256, saved_at_ms, content_type)
    SELECT $1, $2 + 1, $3, $4, $5, $6
    WHERE COALESCE((SELECT MAX(version) FROM strategy_state WHERE strategy_id = $1), 0) = $2";
const CURRENT: &str = "SELECT COALESCE(MAX(version), 0) FROM strategy_state WHERE strategy_id = $1";
const PRUNE: &str = "DELETE FROM strategy_state WHERE strategy_id = $1 AND version <= $2";
const LOAD_LATEST: &str = "SELECT version, data, sha256, saved_at_ms, content_type FROM strategy_state
    WHERE strategy_id = $1 ORDER BY version DESC LIMIT 1";
const LOAD_VERSION: &str = "SELECT version, data, sha256, saved_at_ms, content_type FROM strategy_state
    WHERE strategy_id = $1 AND version = $2";
const DELETE: &str = "DELETE FROM strategy_state WHERE strategy_id = $1";
const LIST: &str = "SELECT version, sha256, CAST(LENGTH(data) AS BIGINT), saved_at_ms, content_type FROM strategy_state
    WHERE strategy_id = $1 ORDER BY version";

fn db_error(what: &str, error: sqlx::Error) -> Error {
    let code = match &error {
        sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed => ErrorCode::Unavailable,
        _ => ErrorCode::Internal,
    };
    tracing::error!(%error, "{what} failed");
    Error::new(code, format!("{what} failed: {error}"))
}

fn is_unique_violation(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(db) if db.is_unique_violation())
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

impl Store {
    /// Opens the database named by `config.url` and applies the embedded
    /// migrations.
    pub async fn open(config: &DatabaseConfig) -> anyhow::Result<Store> {
        let timeout = config.timeout;
        let store = if config.url.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(&config.url)?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                // FULL: a save acknowledged to the caller survives power loss.
                .synchronous(SqliteSynchronous::Full)
                .busy_timeout(timeout);
            let pool = SqlitePoolOptions::new()
                .max_connections(config.max_connections.get())
                .acquire_timeout(timeout)
                .connect_with(options)
                .await?;
            sqlx::migrate!("migrations/sqlite").run(&pool).await?;
            Store::Sqlite(pool)
        } else {
            let options = PgConnectOptions::from_str(&config.url)?;
            let pool = PgPoolOptions::new()
                .max_connections(config.max_connections.get())
                .acquire_timeout(timeout)
                .connect_with(options)
                .await?;
            sqlx::migrate!("migrations/postgres").run(&pool).await?;
            Store::Postgres(pool)
        };
        tracing::info!(url = %redact(&config.url), "state store open");
        Ok(store)
    }

    pub fn backend(&self) -> &'static str {
        match self {
            Store::Sqlite(_) => "sqlite",
            Store::Postgres(_) => "postgres",
        }
    }

    pub async fn ping(&self) -> Result<(), String> {
        with_pool!(self, pool => sqlx::query("SELECT 1").execute(pool).await.map(|_| ())).map_err(|e| e.to_string())
    }

    async fn current_version(&self, strategy_id: &str) -> Result<u64, Error> {
        let (v,): (i64,) = with_pool!(self, pool => sqlx::query_as(CURRENT).bind(strategy_id).fetch_one(pool).await)
            .map_err(|e| db_error("reading the current version", e))?;
        Ok(v as u64)
    }

    /// Saves `data` as version `expected_version + 1` if the current version
    /// is `expected_version`; otherwise `ABORTED` naming both versions.
    pub async fn save(
        &self,
        strategy_id: &str,
        data: &[u8],
        content_type: &str,
        expected_version: u64,
        keep: u32,
    ) -> Result<Stored, Error> {
        let sha256 = sha256_hex(data);
        let saved_at_ms = now_ms();
        let expected = i64::try_from(expected_version)
            .map_err(|_| Error::invalid_argument(format!("expected_version {expected_version} is out of range")))?;
        let version = expected_version + 1;
        let oldest_kept = version.saturating_sub(u64::from(keep));
        // The new version and the pruning of the oldest are one transaction:
        // one commit, so one sync to disk per save.
        let result = with_pool!(self, pool => async {
            let mut tx = pool.begin().await?;
            let inserted = sqlx::query(SAVE)
                .bind(strategy_id)
                .bind(expected)
                .bind(data)
                .bind(&sha256)
                .bind(saved_at_ms)
                .bind(content_type)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if inserted == 1 && oldest_kept > 0 {
                sqlx::query(PRUNE).bind(strategy_id).bind(oldest_kept as i64).execute(&mut *tx).await?;
            }
            tx.commit().await?;
            Ok::<u64, sqlx::Error>(inserted)
        }
        .await);
        let conflict = match result {
            Ok(1) => false,
            Ok(_) => true,
            Err(e) if is_unique_violation(&e) => true,
            Err(e) => return Err(db_error("saving state", e)),
        };
        if conflict {
            let current = self.current_version(strategy_id).await?;
            return Err(Error::new(
                ErrorCode::Aborted,
                format!(
                    "version conflict for strategy '{strategy_id}': expected version {expected_version}, current version is {current}"
                ),
            ));
        }
        Ok(Stored {
            version,
            data: Vec::new(),
            sha256,
            saved_at_ms,
            content_type: content_type.to_owned(),
        })
    }

    /// Loads the latest version (`version == 0`) or the given one, checking
    /// the stored checksum.
    pub async fn load(&self, strategy_id: &str, version: u64) -> Result<Stored, Error> {
        let row: Option<(i64, Vec<u8>, String, i64, String)> = if version == 0 {
            with_pool!(self, pool => sqlx::query_as(LOAD_LATEST).bind(strategy_id).fetch_optional(pool).await)
        } else {
            with_pool!(self, pool => sqlx::query_as(LOAD_VERSION).bind(strategy_id).bind(version as i64).fetch_optional(pool).await)
        }
        .map_err(|e| db_error("loading state", e))?;
        let Some((v, data, sha256, saved_at_ms, content_type)) = row else {
            let message = if version == 0 {
                format!("no state saved for strategy '{strategy_id}'")
            } else {
                format!("version {version} of strategy '{strategy_id}' is not stored (only the last versions are kept)")
            };
            return Err(Error::new(ErrorCode::NotFound, message));
        };
        if sha256_hex(&data) != sha256 {
            return Err(Error::internal(format!(
                "stored version {v} of strategy '{strategy_id}' does not match its checksum"
            )));
        }
        Ok(Stored {
            version: v as u64,
            data,
            sha256,
            saved_at_ms,
            content_type,
        })
    }

    /// Deletes every version; returns how many there were.
    pub async fn delete(&self, strategy_id: &str) -> Result<u64, Error> {
        with_pool!(self, pool => sqlx::query(DELETE).bind(strategy_id).execute(pool).await.map(|r| r.rows_affected()))
            .map_err(|e| db_error("deleting state", e))
    }

    pub async fn list_versions(&self, strategy_id: &str) -> Result<Vec<VersionInfo>, Error> {
        let rows: Vec<(i64, String, i64, i64, String)> =
            with_pool!(self, pool => sqlx::query_as(LIST).bind(strategy_id).fetch_all(pool).await)
                .map_err(|e| db_error("listing versions", e))?;
        Ok(rows
            .into_iter()
            .map(|(version, sha256, size, saved_at_ms, content_type)| VersionInfo {
                version: version as u64,
                sha256,
                size: size as u64,
                saved_at_ms,
                content_type,
            })
            .collect())
    }

    pub async fn close(&self) {
        with_pool!(self, pool => pool.close().await);
    }
}
