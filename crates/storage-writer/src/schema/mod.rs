//! Versioned ClickHouse migrations.
//!
//! Every table uses `ReplacingMergeTree` ordered by the event's identity, so
//! a message redelivered after a crash collapses into the row already
//! stored. Merges happen in the background: queries that must see exactly
//! one row per event read with `FINAL` (or aggregate by the key).
//!
//! Versions 1 and 2 made the first tables; version 3 ([`v3`]) rebuilds them
//! for current ClickHouse (`LowCardinality`, `DateTime64`, codecs), in place
//! and without losing a row. Later versions create their tables in the v3
//! shape from the start (4: `option_tickers`). Retention and the merge
//! policy are not migrations: [`ttl`] sets each table's TTL, and [`merges`]
//! its `merge_selector_base`, from the configuration every time the writer
//! migrates.
//!
//! On a ClickHouse cluster ([`Layout::Cluster`]) every table becomes a
//! `…_local` table created `ON CLUSTER` with the `Replicated` variant of its
//! engine, plus a `Distributed` table under the plain name that the writer
//! inserts into and queries read. Rows are sharded by
//! `cityHash64(exchange, market, symbol)`: every copy of an event lands on
//! the same shard, so `ReplacingMergeTree` still collapses redeliveries and
//! `FINAL` stays exact per shard.

pub mod merges;
pub mod ttl;
pub mod v3;

use clickhouse::Client;

/// Where the tables live.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout<'a> {
    /// One server (or one replica set managed outside moat).
    Single,
    /// A cluster from the server's `remote_servers`, with the `{shard}` and
    /// `{replica}` macros defined on each node.
    Cluster(&'a str),
}

impl Layout<'_> {
    pub fn from_config(cluster: &str) -> Layout<'_> {
        if cluster.is_empty() {
            Layout::Single
        } else {
            Layout::Cluster(cluster)
        }
    }
}

/// Sharding key of every Distributed table: an instrument's events all go to
/// one shard.
pub const SHARDING_KEY: &str = "cityHash64(exchange, market, symbol)";

/// Scale of every price and quantity column: `Decimal(38, 18)`.
pub const DECIMAL_SCALE: u32 = 18;

/// The type of every price and quantity column.
pub const DECIMAL: &str = "Decimal(38, 18)";

/// One migration: a version, a name and its steps.
pub struct Migration {
    pub version: u32,
    pub name: &'static str,
    pub steps: Steps,
}

pub enum Steps {
    /// Statements run in order (`{db}` is replaced by the database).
    Sql(&'static [&'static str]),
    /// Every table rebuilt into the v3 shape ([`v3`]).
    RebuildV3,
}

impl Migration {
    /// The statements of a [`Steps::Sql`] migration (none for a rebuild).
    pub fn statements(&self) -> &'static [&'static str] {
        match self.steps {
            Steps::Sql(statements) => statements,
            Steps::RebuildV3 => &[],
        }
    }
}

const PARTITION: &str = "toYYYYMM(toDateTime(intDiv(ts_exchange_ms, 1000)))";

pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "market data tables",
        steps: Steps::Sql(&[
            "CREATE TABLE IF NOT EXISTS {db}.trades (
                exchange String, market String, symbol String, venue_symbol String,
                trade_id String,
                price Decimal(38, 18), qty Decimal(38, 18),
                side Enum8('buy' = 1, 'sell' = 2),
                ts_exchange_ms Int64, ts_recv_ms Int64
            ) ENGINE = ReplacingMergeTree()
            PARTITION BY {partition}
            ORDER BY (exchange, market, symbol, trade_id)",
            "CREATE TABLE IF NOT EXISTS {db}.bbo (
                exchange String, market String, symbol String,
                sequence UInt64,
                bid_price Decimal(38, 18), bid_qty Decimal(38, 18),
                ask_price Decimal(38, 18), ask_qty Decimal(38, 18),
                ts_exchange_ms Int64, ts_recv_ms Int64
            ) ENGINE = ReplacingMergeTree()
            PARTITION BY {partition}
            ORDER BY (exchange, market, symbol, ts_exchange_ms, sequence)",
            "CREATE TABLE IF NOT EXISTS {db}.book_snapshots (
                exchange String, market String, symbol String,
                sequence UInt64,
                bid_prices Array(Decimal(38, 18)), bid_qtys Array(Decimal(38, 18)),
                ask_prices Array(Decimal(38, 18)), ask_qtys Array(Decimal(38, 18)),
                ts_exchange_ms Int64, ts_recv_ms Int64
            ) ENGINE = ReplacingMergeTree()
            PARTITION BY {partition}
            ORDER BY (exchange, market, symbol, sequence)",
            "CREATE TABLE IF NOT EXISTS {db}.book_deltas (
                exchange String, market String, symbol String,
                first_sequence UInt64, sequence UInt64, prev_sequence UInt64,
                bid_prices Array(Decimal(38, 18)), bid_qtys Array(Decimal(38, 18)),
                ask_prices Array(Decimal(38, 18)), ask_qtys Array(Decimal(38, 18)),
                ts_exchange_ms Int64, ts_recv_ms Int64
            ) ENGINE = ReplacingMergeTree()
            PARTITION BY {partition}
            ORDER BY (exchange, market, symbol, sequence)",
            "CREATE TABLE IF NOT EXISTS {db}.funding (
                exchange String, market String, symbol String,
                funding_rate Decimal(38, 18), mark_price Decimal(38, 18),
                index_price Nullable(Decimal(38, 18)),
                next_funding_ms Int64, ts_exchange_ms Int64, ts_recv_ms Int64
            ) ENGINE = ReplacingMergeTree()
            PARTITION BY {partition}
            ORDER BY (exchange, market, symbol, ts_exchange_ms)",
            "CREATE TABLE IF NOT EXISTS {db}.liquidations (
                exchange String, market String, symbol String,
                side Enum8('buy' = 1, 'sell' = 2),
                price Decimal(38, 18), qty Decimal(38, 18), order_id String,
                ts_exchange_ms Int64, ts_recv_ms Int64
            ) ENGINE = ReplacingMergeTree()
            PARTITION BY {partition}
            ORDER BY (exchange, market, symbol, ts_exchange_ms, order_id, price, qty)",
            "CREATE TABLE IF NOT EXISTS {db}.open_interest (
                exchange String, market String, symbol String,
                open_interest Decimal(38, 18),
                ts_exchange_ms Int64, ts_recv_ms Int64
            ) ENGINE = ReplacingMergeTree()
            PARTITION BY {partition}
            ORDER BY (exchange, market, symbol, ts_exchange_ms)",
            "CREATE TABLE IF NOT EXISTS {db}.venue_candles (
                exchange String, market String, symbol String,
                interval_s UInt32, open_time_ms Int64,
                open Decimal(38, 18), high Decimal(38, 18), low Decimal(38, 18), close Decimal(38, 18),
                volume Decimal(38, 18), trades UInt64, closed UInt8, ts_recv_ms Int64
            ) ENGINE = ReplacingMergeTree(ts_recv_ms)
            PARTITION BY toYYYYMM(toDateTime(intDiv(open_time_ms, 1000)))
            ORDER BY (exchange, market, symbol, interval_s, open_time_ms)",
            "CREATE TABLE IF NOT EXISTS {db}.gaps (
                exchange String, market String, symbol String,
                reason String, last_sequence UInt64, ts_recv_ms Int64
            ) ENGINE = ReplacingMergeTree()
            PARTITION BY toYYYYMM(toDateTime(intDiv(ts_recv_ms, 1000)))
            ORDER BY (exchange, market, symbol, ts_recv_ms, last_sequence)",
        ]),
    },
    Migration {
        version: 2,
        name: "1-minute candles from trades",
        steps: Steps::Sql(&[
            "CREATE TABLE IF NOT EXISTS {db}.candles_1m (
                exchange String, market String, symbol String,
                minute DateTime,
                open AggregateFunction(argMin, Decimal(38, 18), Int64),
                high AggregateFunction(max, Decimal(38, 18)),
                low AggregateFunction(min, Decimal(38, 18)),
                close AggregateFunction(argMax, Decimal(38, 18), Int64),
                volume AggregateFunction(sum, Decimal(38, 18)),
                trades AggregateFunction(count)
            ) ENGINE = AggregatingMergeTree()
            PARTITION BY toYYYYMM(minute)
            ORDER BY (exchange, market, symbol, minute)",
            "CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.candles_1m_mv TO {db}.candles_1m AS
            SELECT exchange, market, symbol,
                toStartOfMinute(toDateTime(intDiv(ts_exchange_ms, 1000))) AS minute,
                argMinState(price, ts_exchange_ms) AS open,
                maxState(price) AS high,
                minState(price) AS low,
                argMaxState(price, ts_exchange_ms) AS close,
                sumState(qty) AS volume,
                countState() AS trades
            FROM {db}.trades
            GROUP BY exchange, market, symbol, minute",
        ]),
    },
    Migration {
        version: 3,
        name: "tables for current ClickHouse: LowCardinality, DateTime64, codecs",
        steps: Steps::RebuildV3,
    },
    Migration {
        version: 4,
        name: "option tickers",
        steps: Steps::Sql(&["CREATE TABLE IF NOT EXISTS {db}.option_tickers (
                exchange LowCardinality(String), market LowCardinality(String), symbol LowCardinality(String),
                mark_price Decimal(38, 18) CODEC(GCD, ZSTD(3)),
                mark_iv Nullable(Decimal(38, 18)) CODEC(ZSTD(3)),
                bid_iv Nullable(Decimal(38, 18)) CODEC(ZSTD(3)),
                ask_iv Nullable(Decimal(38, 18)) CODEC(ZSTD(3)),
                underlying_price Nullable(Decimal(38, 18)) CODEC(ZSTD(3)),
                delta Nullable(Decimal(38, 18)) CODEC(ZSTD(3)),
                gamma Nullable(Decimal(38, 18)) CODEC(ZSTD(3)),
                vega Nullable(Decimal(38, 18)) CODEC(ZSTD(3)),
                theta Nullable(Decimal(38, 18)) CODEC(ZSTD(3)),
                rho Nullable(Decimal(38, 18)) CODEC(ZSTD(3)),
                ts_exchange DateTime64(6, 'UTC') CODEC(DoubleDelta, ZSTD(1)),
                ts_recv DateTime64(6, 'UTC') CODEC(DoubleDelta, ZSTD(1)),
                ts_exchange_ms Int64 ALIAS toUnixTimestamp64Milli(ts_exchange),
                ts_recv_ms Int64 ALIAS toUnixTimestamp64Milli(ts_recv)
            ) ENGINE = ReplacingMergeTree()
            PARTITION BY toYYYYMM(ts_exchange)
            ORDER BY (exchange, market, symbol, ts_exchange)"]),
    },
];

/// Tables the writer inserts into and `moat doctor` expects.
pub const TABLES: &[&str] = &[
    "trades",
    "bbo",
    "book_snapshots",
    "book_deltas",
    "funding",
    "liquidations",
    "open_interest",
    "option_tickers",
    "venue_candles",
    "gaps",
    "candles_1m",
];

fn render(statement: &str, db: &str) -> String {
    statement.replace("{partition}", PARTITION).replace("{db}", db)
}

/// The statements of one migration statement for `layout`: the statement
/// itself on one server; on a cluster, the replicated local table (or the
/// view reading local tables) and the Distributed table over it.
pub fn statements_for(statement: &str, db: &str, layout: Layout<'_>) -> Vec<String> {
    let sql = render(statement, db);
    let Layout::Cluster(cluster) = layout else {
        return vec![sql];
    };
    if let Some(rest) = sql.strip_prefix("CREATE MATERIALIZED VIEW IF NOT EXISTS ") {
        // The view runs on each shard, from local trades into local candles.
        let (name, body) = rest.split_once(" TO ").expect("a view names its target");
        let (target, select) = body.split_once(" AS").expect("a view has a query");
        let select = select.replace(&format!("FROM {db}.trades"), &format!("FROM {db}.trades_local"));
        return vec![format!(
            "CREATE MATERIALIZED VIEW IF NOT EXISTS {name} ON CLUSTER {cluster} TO {target}_local AS{select}"
        )];
    }
    let rest = sql
        .strip_prefix("CREATE TABLE IF NOT EXISTS ")
        .expect("migrations create tables and views only");
    let (qualified, body) = rest.split_once(" (").expect("a table lists its columns");
    let table = qualified.rsplit('.').next().unwrap_or(qualified);
    let (columns, engine) = body.split_once(") ENGINE = ").expect("a table names its engine");
    let (engine_name, after) = engine.split_once('(').expect("engine arguments");
    let (args, tail) = after.split_once(')').expect("engine arguments close");
    let path = format!("'/clickhouse/tables/{{shard}}/{db}/{table}', '{{replica}}'");
    let args = if args.trim().is_empty() {
        path
    } else {
        format!("{path}, {args}")
    };
    vec![
        format!(
            "CREATE TABLE IF NOT EXISTS {qualified}_local ON CLUSTER {cluster} ({columns}) ENGINE = Replicated{engine_name}({args}){tail}"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {qualified} ON CLUSTER {cluster} AS {qualified}_local \
             ENGINE = Distributed({cluster}, {db}, {table}_local, {SHARDING_KEY})"
        ),
    ]
}

/// A table's definition as `system.tables` shows it, and the name an
/// `ALTER` of it takes: `{db}.{table}`, or on a cluster its `_local` table
/// `ON CLUSTER`.
pub(crate) async fn definition(
    client: &Client,
    db: &str,
    layout: Layout<'_>,
    table: &str,
) -> Result<(String, String), clickhouse::error::Error> {
    let (local, on_cluster) = match layout {
        Layout::Single => (table.to_owned(), String::new()),
        Layout::Cluster(cluster) => (format!("{table}_local"), format!(" ON CLUSTER {cluster}")),
    };
    let create: String = client
        .query("SELECT create_table_query FROM system.tables WHERE database = ? AND name = ?")
        .bind(db)
        .bind(&local)
        .fetch_one()
        .await?;
    Ok((format!("{db}.{local}{on_cluster}"), create))
}

/// Applies the migrations not yet recorded in `{db}.schema_migrations`;
/// with `recreate` the database is dropped first (development only).
/// Returns the versions applied by this call.
pub async fn migrate(
    client: &Client,
    db: &str,
    layout: Layout<'_>,
    recreate: bool,
) -> Result<Vec<u32>, clickhouse::error::Error> {
    migrate_until(client, db, layout, recreate, u32::MAX).await
}

/// [`migrate`], applying only the versions up to `last` (to build an older
/// schema, as an upgrade test does).
pub async fn migrate_until(
    client: &Client,
    db: &str,
    layout: Layout<'_>,
    recreate: bool,
    last: u32,
) -> Result<Vec<u32>, clickhouse::error::Error> {
    // The client may be bound to the database that is about to be created.
    let client = client.clone().with_database("default");
    let on_cluster = match layout {
        Layout::Single => String::new(),
        Layout::Cluster(cluster) => format!(" ON CLUSTER {cluster}"),
    };
    if recreate {
        client
            .query(&format!("DROP DATABASE IF EXISTS {db}{on_cluster}"))
            .execute()
            .await?;
    }
    client
        .query(&format!("CREATE DATABASE IF NOT EXISTS {db}{on_cluster}"))
        .execute()
        .await?;
    for statement in statements_for(
        "CREATE TABLE IF NOT EXISTS {db}.schema_migrations (
            version UInt32, name String, applied_at DateTime DEFAULT now()
        ) ENGINE = ReplacingMergeTree() ORDER BY version",
        db,
        layout,
    ) {
        client.query(&statement).execute().await?;
    }
    let done: Vec<u32> = client
        .query(&format!("SELECT DISTINCT version FROM {db}.schema_migrations"))
        .fetch_all::<u32>()
        .await?;
    let mut applied = Vec::new();
    for migration in MIGRATIONS
        .iter()
        .filter(|m| !done.contains(&m.version) && m.version <= last)
    {
        match migration.steps {
            Steps::Sql(statements) => {
                for statement in statements {
                    for sql in statements_for(statement, db, layout) {
                        client.query(&sql).execute().await?;
                    }
                }
            }
            Steps::RebuildV3 => rebuild_v3(&client, db, layout).await?,
        }
        client
            .query(&format!(
                "INSERT INTO {db}.schema_migrations (version, name) VALUES ({}, '{}')",
                migration.version, migration.name
            ))
            .execute()
            .await?;
        tracing::info!(version = migration.version, name = migration.name, "migration applied");
        applied.push(migration.version);
    }
    Ok(applied)
}

/// Applies [`Steps::RebuildV3`]: the candle view is dropped, each table not
/// yet in the v3 shape is rebuilt, and the view is made over the new trades.
async fn rebuild_v3(client: &Client, db: &str, layout: Layout<'_>) -> Result<(), clickhouse::error::Error> {
    let (on_cluster, suffix) = match layout {
        Layout::Single => (String::new(), ""),
        Layout::Cluster(cluster) => (format!(" ON CLUSTER {cluster}"), "_local"),
    };
    let drop_view = format!("{}{on_cluster} SYNC", v3::DROP_VIEW.replace("{db}", db));
    client.query(&drop_view).execute().await?;
    for rebuild in v3::REBUILDS {
        let exchange_type: String = client
            .query("SELECT type FROM system.columns WHERE database = ? AND table = ? AND name = 'exchange'")
            .bind(db)
            .bind(format!("{}{suffix}", rebuild.table))
            .fetch_one()
            .await?;
        if exchange_type.starts_with("LowCardinality") {
            // Swapped in already; a run cut short may have left the old
            // table behind under the staging name.
            for sql in rebuild.drop_staging(db, layout) {
                client.query(&sql).execute().await?;
            }
            continue;
        }
        for sql in rebuild.statements(db, layout) {
            client.query(&sql).execute().await?;
        }
        tracing::info!(table = rebuild.table, "table rebuilt for schema v3");
    }
    for sql in statements_for(v3::CANDLE_VIEW, db, layout) {
        client.query(&sql).execute().await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_increase_and_every_statement_names_the_database() {
        let mut last = 0;
        for m in MIGRATIONS {
            assert!(m.version > last, "migration {} out of order", m.version);
            last = m.version;
            for s in m.statements() {
                let sql = render(s, "x_db");
                assert!(sql.contains("x_db."), "{sql}");
                assert!(!sql.contains('{'), "unreplaced placeholder in {sql}");
            }
        }
    }

    #[test]
    fn a_single_server_gets_the_statements_as_written() {
        for statement in MIGRATIONS.iter().flat_map(|m| m.statements().iter()) {
            assert_eq!(
                statements_for(statement, "x_db", Layout::Single),
                vec![render(statement, "x_db")]
            );
        }
    }

    #[test]
    fn a_cluster_gets_replicated_local_tables_behind_distributed_ones() {
        let layout = Layout::Cluster("moat_cluster");
        let sql: Vec<String> = MIGRATIONS
            .iter()
            .flat_map(|m| m.statements().iter())
            .flat_map(|s| statements_for(s, "x_db", layout))
            .collect();
        for table in TABLES {
            let local = sql
                .iter()
                .find(|s| {
                    s.starts_with(&format!(
                        "CREATE TABLE IF NOT EXISTS x_db.{table}_local ON CLUSTER moat_cluster ("
                    ))
                })
                .unwrap_or_else(|| panic!("no local table for {table}"));
            assert!(
                local.contains("ENGINE = Replicated")
                    && local.contains(&format!("('/clickhouse/tables/{{shard}}/x_db/{table}', '{{replica}}'")),
                "{local}"
            );
            let distributed = sql
                .iter()
                .find(|s| s.starts_with(&format!("CREATE TABLE IF NOT EXISTS x_db.{table} ON CLUSTER")))
                .unwrap_or_else(|| panic!("no distributed table for {table}"));
            assert!(
                distributed.contains(&format!(
                    "Distributed(moat_cluster, x_db, {table}_local, {SHARDING_KEY})"
                )),
                "{distributed}"
            );
        }
        // Engine arguments survive after the replication path.
        let candles = sql.iter().find(|s| s.contains("x_db.venue_candles_local")).unwrap();
        assert!(candles.contains("'{replica}', ts_recv_ms)"), "{candles}");
        // The candle view reads and writes local tables on each shard.
        let view = sql.iter().find(|s| s.contains("MATERIALIZED VIEW")).unwrap();
        assert!(
            view.contains("ON CLUSTER moat_cluster TO x_db.candles_1m_local"),
            "{view}"
        );
        assert!(view.contains("FROM x_db.trades_local"), "{view}");
    }

    #[test]
    fn every_listed_table_is_created() {
        let all: String = MIGRATIONS.iter().flat_map(|m| m.statements().iter().copied()).collect();
        for table in TABLES {
            assert!(
                all.contains(&format!("{{db}}.{table} (")),
                "{table} has no CREATE TABLE"
            );
        }
    }
}
