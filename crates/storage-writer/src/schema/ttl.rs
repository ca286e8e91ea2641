//! Retention: each table's TTL, set from the `[ttl]` section whenever the
//! writer migrates, so changing the configuration and restarting (or
//! running `moat-storage-writer migrate`) is all it takes.

use clickhouse::Client;

use super::Layout;
use crate::config::TtlConfig;

/// The column each table's age is measured on.
fn time_column(table: &str) -> &'static str {
    match table {
        "candles_1m" => "minute",
        _ => "toDateTime(ts_recv)",
    }
}

/// The TTL expression for `days` of retention on `table` (`None`: forever).
pub fn expression(table: &str, days: u32) -> Option<String> {
    (days > 0).then(|| format!("{} + toIntervalDay({days})", time_column(table)))
}

/// The statement that brings `table` (stored as `target`: itself, or its
/// `_local` table on a cluster) from its current definition (`create_query`,
/// as `system.tables` shows it) to `days` of retention, or `None` when it is
/// there already.
pub fn alter(table: &str, target: &str, create_query: &str, days: u32) -> Option<String> {
    let current = create_query.split_once(" TTL ").map(|(_, ttl)| ttl);
    match (expression(table, days), current) {
        (None, None) => None,
        (None, Some(_)) => Some(format!("ALTER TABLE {target} REMOVE TTL")),
        (Some(wanted), Some(current)) if current.starts_with(&wanted) => None,
        (Some(wanted), _) => Some(format!("ALTER TABLE {target} MODIFY TTL {wanted}")),
    }
}

/// Sets every table's TTL to what `config` asks for.
pub async fn apply(
    client: &Client,
    db: &str,
    layout: Layout<'_>,
    config: &TtlConfig,
) -> Result<Vec<String>, clickhouse::error::Error> {
    let mut changed = Vec::new();
    for (table, days) in config.days() {
        let (target, create) = super::definition(client, db, layout, table).await?;
        if let Some(sql) = alter(table, &target, &create, days) {
            client.query(&sql).execute().await?;
            tracing::info!(table, days, "retention set");
            changed.push(table.to_owned());
        }
    }
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_alter_follows_the_configured_days() {
        let plain = "CREATE TABLE db.book_deltas (`x` UInt8) ENGINE = ReplacingMergeTree ORDER BY x SETTINGS index_granularity = 8192";
        let kept = "CREATE TABLE db.book_deltas (`x` UInt8) ENGINE = ReplacingMergeTree ORDER BY x TTL toDateTime(ts_recv) + toIntervalDay(30) SETTINGS index_granularity = 8192";
        let t = "db.book_deltas";
        assert_eq!(alter("book_deltas", t, plain, 0), None);
        assert_eq!(
            alter("book_deltas", t, plain, 30).as_deref(),
            Some("ALTER TABLE db.book_deltas MODIFY TTL toDateTime(ts_recv) + toIntervalDay(30)")
        );
        assert_eq!(alter("book_deltas", t, kept, 30), None);
        assert_eq!(
            alter("book_deltas", t, kept, 7).as_deref(),
            Some("ALTER TABLE db.book_deltas MODIFY TTL toDateTime(ts_recv) + toIntervalDay(7)")
        );
        assert_eq!(
            alter("book_deltas", t, kept, 0).as_deref(),
            Some("ALTER TABLE db.book_deltas REMOVE TTL")
        );
        assert_eq!(
            alter("candles_1m", "db.candles_1m_local ON CLUSTER c", plain, 400).as_deref(),
            Some("ALTER TABLE db.candles_1m_local ON CLUSTER c MODIFY TTL minute + toIntervalDay(400)")
        );
    }
}
