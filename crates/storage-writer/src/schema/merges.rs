//! Merge policy: each table's `merge_selector_base`, set from the
//! `[merges]` section whenever the writer migrates, like retention.
//!
//! ClickHouse merges a table's small parts into larger ones in the
//! background, and every merge rewrites its rows. With the writer
//! inserting a part per table every flush (150 ms then), ClickHouse's default
//! base (5) rewrote each row about 11 times within minutes and took more
//! CPU than the inserts themselves; a base of 20 rewrote it about 3 times
//! (ARCHITECTURE.md, "Choices"). The setting changes only which merges are
//! chosen from now on: no part is rewritten by setting it. A server that
//! does not know the setting keeps its default, with a warning.

use clickhouse::Client;

use super::{Layout, TABLES};

const SETTING: &str = "merge_selector_base";

/// The value of `merge_selector_base` in a table's definition, as
/// `system.tables` shows it (`… SETTINGS index_granularity = 8192,
/// merge_selector_base = 20`); `None` when the table does not set it.
pub fn current(create_query: &str) -> Option<f64> {
    let (_, settings) = create_query.rsplit_once(" SETTINGS ")?;
    settings.split(',').find_map(|setting| {
        let (name, value) = setting.split_once('=')?;
        (name.trim() == SETTING).then(|| value.trim().trim_matches('\'').parse().ok())?
    })
}

/// The statement that sets `base` on `target` (a table, or its `_local`
/// table on a cluster), or `None` when its definition has it already.
pub fn alter(target: &str, create_query: &str, base: f64) -> Option<String> {
    match current(create_query) {
        Some(set) if set == base => None,
        _ => Some(format!("ALTER TABLE {target} MODIFY SETTING {SETTING} = {base}")),
    }
}

/// Sets `base` on every table; returns the tables changed.
pub async fn apply(
    client: &Client,
    db: &str,
    layout: Layout<'_>,
    base: f64,
) -> Result<Vec<String>, clickhouse::error::Error> {
    let mut changed = Vec::new();
    for table in TABLES {
        let (target, create) = super::definition(client, db, layout, table).await?;
        if let Some(sql) = alter(&target, &create, base) {
            match client.query(&sql).execute().await {
                Ok(()) => {}
                // A server older than the setting keeps its default merges:
                // slower under load, never wrong, so the writer goes on.
                Err(error) if error.to_string().contains("UNKNOWN_SETTING") => {
                    tracing::warn!(%error, "this ClickHouse has no {SETTING}: its tables keep the default merge policy");
                    return Ok(changed);
                }
                Err(error) => return Err(error),
            }
            tracing::info!(table, base, "merge policy set");
            changed.push((*table).to_owned());
        }
    }
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_alter_follows_the_configured_base() {
        let plain = "CREATE TABLE db.trades (`x` UInt8) ENGINE = ReplacingMergeTree ORDER BY x SETTINGS index_granularity = 8192";
        let set = "CREATE TABLE db.trades (`x` UInt8) ENGINE = ReplacingMergeTree ORDER BY x SETTINGS index_granularity = 8192, merge_selector_base = 20";
        assert_eq!(current(plain), None);
        assert_eq!(current(set), Some(20.0));
        assert_eq!(
            alter("db.trades", plain, 20.0).as_deref(),
            Some("ALTER TABLE db.trades MODIFY SETTING merge_selector_base = 20")
        );
        assert_eq!(alter("db.trades", set, 20.0), None);
        assert_eq!(
            alter("db.trades_local ON CLUSTER c", set, 7.5).as_deref(),
            Some("ALTER TABLE db.trades_local ON CLUSTER c MODIFY SETTING merge_selector_base = 7.5")
        );
        // Only the table's own settings count, not text in a column default.
        let quoted = "CREATE TABLE t (`s` String DEFAULT 'a SETTINGS merge_selector_base = 3') ENGINE = MergeTree ORDER BY s SETTINGS index_granularity = 8192";
        assert_eq!(current(quoted), None);
    }
}
