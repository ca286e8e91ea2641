//! The versioned store over sqlx: SQLite (WAL, full sync) or PostgreSQL.
//!
//! A save is one `INSERT … SELECT … WHERE <current version> = <expected>`
//! statement, so the version check and the write are atomic on both
//! engines; a concurrent save of the same version fails on the primary key
//! and is answered as a version conflict too. Versions beyond the newest
//! `keep` go in the same commit: on SQLite by a trigger, so a save is one
//! statement; on PostgreSQL by a second statement in its transaction.

use std::num::NonZeroU32;
use std::str::FromStr;

use bytes::Bytes;
use moat_common_types::{Error, ErrorCode, now_ms};
use sha2::{Digest, Sha256};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteAutoVacuum, SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, SqlitePool};

use crate::config::{DatabaseConfig, redact};

/// One stored version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub version: u64,
    pub data: Bytes,
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
pub struct Store {
    pool: Pool,
    /// How many of a strategy's newest versions are kept.
    keep: NonZeroU32,
}

#[derive(Debug, Clone)]
enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Runs the same code against whichever pool the store holds.
macro_rules! with_pool {
    ($store:expr, $pool:ident => $body:expr) => {
        match &$store.pool {
            Pool::Sqlite($pool) => $body,
            Pool::Postgres($pool) => $body,
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
    /// Opens the database named by `config.url`, applies the embedded
    /// migrations, and keeps the newest `keep` versions of each strategy.
    pub async fn open(config: &DatabaseConfig, keep: NonZeroU32) -> anyhow::Result<Store> {
        let timeout = config.timeout;
        let pool = if config.url.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(&config.url)?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                // FULL: a save acknowledged to the caller survives power loss.
                .synchronous(SqliteSynchronous::Full)
                // A new database gets 16 KiB pages, so a large state spans
                // a quarter of the pages, and incremental auto-vacuum,
                // whose pointer map lets a prune free a pruned version's
                // pages without reading them. An existing database keeps
                // the layout it was created with.
                .page_size(16 * 1024)
                .auto_vacuum(SqliteAutoVacuum::Incremental)
                .busy_timeout(timeout);
            let pool = SqlitePoolOptions::new()
                .max_connections(config.max_connections.get())
                .acquire_timeout(timeout)
                .connect_with(options)
                .await?;
            sqlx::migrate!("migrations/sqlite").run(&pool).await?;
            // SQLite prunes in the save's own statement, by a trigger that
            // holds this run's `keep`: a save is one statement and one
            // commit, as a bare insert is.
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                "BEGIN;
                 DROP TRIGGER IF EXISTS strategy_state_keep;
                 CREATE TRIGGER strategy_state_keep AFTER INSERT ON strategy_state BEGIN
                     DELETE FROM strategy_state WHERE strategy_id = NEW.strategy_id AND version <= NEW.version - {keep};
                 END;
                 COMMIT;"
            )))
            .execute(&pool)
            .await?;
            Pool::Sqlite(pool)
        } else {
            let options = PgConnectOptions::from_str(&config.url)?;
            let pool = PgPoolOptions::new()
                .max_connections(config.max_connections.get())
                .acquire_timeout(timeout)
                .connect_with(options)
                .await?;
            sqlx::migrate!("migrations/postgres").run(&pool).await?;
            Pool::Postgres(pool)
        };
        let store = Store { pool, keep };
        tracing::info!(url = %redact(&config.url), "state store open");
        Ok(store)
    }

    pub fn backend(&self) -> &'static str {
        match self.pool {
            Pool::Sqlite(_) => "sqlite",
            Pool::Postgres(_) => "postgres",
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
    /// Versions older than the newest `keep` go in the same commit.
    pub async fn save(
        &self,
        strategy_id: &str,
        data: Bytes,
        content_type: &str,
        expected_version: u64,
    ) -> Result<Stored, Error> {
        let sha256 = sha256_hex(&data);
        let saved_at_ms = now_ms();
        let expected = i64::try_from(expected_version)
            .map_err(|_| Error::invalid_argument(format!("expected_version {expected_version} is out of range")))?;
        let version = expected_version + 1;
        macro_rules! insert {
            () => {
                sqlx::query(SAVE)
                    .bind(strategy_id)
                    .bind(expected)
                    .bind(&data[..])
                    .bind(&sha256)
                    .bind(saved_at_ms)
                    .bind(content_type)
            };
        }
        let result = match &self.pool {
            // The trigger prunes.
            Pool::Sqlite(pool) => insert!().execute(pool).await.map(|done| done.rows_affected()),
            // The new version and the pruning of the oldest are one
            // transaction: one commit, so one sync to disk per save.
            Pool::Postgres(pool) => {
                let oldest_kept = version.saturating_sub(u64::from(self.keep.get()));
                async {
                    let mut tx = pool.begin().await?;
                    let inserted = insert!().execute(&mut *tx).await?.rows_affected();
                    if inserted == 1 && oldest_kept > 0 {
                        sqlx::query(PRUNE)
                            .bind(strategy_id)
                            .bind(oldest_kept as i64)
                            .execute(&mut *tx)
                            .await?;
                    }
                    tx.commit().await?;
                    Ok(inserted)
                }
                .await
            }
        };
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
            data,
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
            data: data.into(),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn sqlite(dir: &tempfile::TempDir) -> DatabaseConfig {
        DatabaseConfig {
            url: format!("sqlite://{}", dir.path().join("state.db").display()),
            ..DatabaseConfig::default()
        }
    }

    async fn versions(store: &Store, id: &str) -> Vec<u64> {
        store
            .list_versions(id)
            .await
            .unwrap()
            .iter()
            .map(|v| v.version)
            .collect()
    }

    #[tokio::test]
    async fn sqlite_keeps_the_configured_versions_across_reopens() {
        let dir = tempfile::tempdir().unwrap();
        let keep = |n| NonZeroU32::new(n).unwrap();
        let store = Store::open(&sqlite(&dir), keep(3)).await.unwrap();
        for v in 0..5 {
            store
                .save("a", Bytes::from(vec![v as u8; 100_000]), "", v)
                .await
                .unwrap();
        }
        store.save("b", Bytes::from_static(b"b"), "", 0).await.unwrap();
        assert_eq!(versions(&store, "a").await, [3, 4, 5]);
        assert_eq!(versions(&store, "b").await, [1], "another strategy's versions stay");
        let conflict = store.save("a", Bytes::from_static(b"late"), "", 4).await.unwrap_err();
        assert_eq!(conflict.code, ErrorCode::Aborted);
        assert_eq!(versions(&store, "a").await, [3, 4, 5], "a refused save prunes nothing");
        store.close().await;

        // Opened again with another `keep`, the next save prunes to it.
        let store = Store::open(&sqlite(&dir), keep(1)).await.unwrap();
        store.save("a", Bytes::from_static(b"six"), "", 5).await.unwrap();
        assert_eq!(versions(&store, "a").await, [6]);
        assert_eq!(&store.load("a", 0).await.unwrap().data[..], b"six");
        store.close().await;
    }

    #[tokio::test]
    async fn a_new_sqlite_database_gets_large_pages_and_incremental_vacuum() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&sqlite(&dir), NonZeroU32::new(2).unwrap()).await.unwrap();
        let Pool::Sqlite(pool) = &store.pool else {
            panic!("a sqlite: URL opens SQLite")
        };
        let (page_size,): (i64,) = sqlx::query_as("PRAGMA page_size").fetch_one(pool).await.unwrap();
        let (auto_vacuum,): (i64,) = sqlx::query_as("PRAGMA auto_vacuum").fetch_one(pool).await.unwrap();
        assert_eq!((page_size, auto_vacuum), (16 * 1024, 2), "2 is INCREMENTAL");
        store.close().await;
    }
}
