//! Schema v3: the tables rebuilt for current ClickHouse.
//!
//! `LowCardinality(String)` for the instrument's names, `DateTime64(6)`
//! timestamps (with `…_ms` ALIAS columns, so queries written for v2 still
//! read), and column codecs: `DoubleDelta` for timestamps, `Delta` for
//! sequences, `ZSTD` for decimals and ids. A v2 table cannot be altered into
//! this shape in place (its partition and sort keys are expressions of the
//! old columns), so each table is rebuilt: created under a new name, filled
//! from the old one, swapped in with `EXCHANGE TABLES` (atomic) and the old
//! one dropped. Every step can be repeated: a table already in the v3 shape
//! is skipped, so a migration cut short is finished by running it again.
//! Writers must be stopped while it runs (their messages wait in JetStream).

use super::{DECIMAL, Layout, SHARDING_KEY, statements_for};

/// One table rebuilt into the v3 shape.
pub struct Rebuild {
    pub table: &'static str,
    /// `CREATE TABLE IF NOT EXISTS {db}.{name} (…)`: `{name}` is the table
    /// being built.
    pub create: &'static str,
    /// The v3 columns filled by the copy, and the expressions over the v2
    /// table that fill them.
    pub columns: &'static str,
    pub select: &'static str,
}

/// The v2 candle view reads `trades`: it is dropped before the rebuild and
/// created again over the v3 table.
pub const DROP_VIEW: &str = "DROP VIEW IF EXISTS {db}.candles_1m_mv";

/// The 1-minute candle view over v3 trades (same aggregate state types as
/// v2: the candles table keeps its rows).
pub const CANDLE_VIEW: &str = "CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.candles_1m_mv TO {db}.candles_1m AS
            SELECT exchange, market, symbol,
                toStartOfMinute(toDateTime(ts_exchange)) AS minute,
                argMinState(price, toUnixTimestamp64Milli(ts_exchange)) AS open,
                maxState(price) AS high,
                minState(price) AS low,
                argMaxState(price, toUnixTimestamp64Milli(ts_exchange)) AS close,
                sumState(qty) AS volume,
                countState() AS trades
            FROM {db}.trades
            GROUP BY exchange, market, symbol, minute";

const TS: &str = "ts_exchange DateTime64(6, 'UTC') CODEC(DoubleDelta, ZSTD(1)),
                ts_recv DateTime64(6, 'UTC') CODEC(DoubleDelta, ZSTD(1)),
                ts_exchange_ms Int64 ALIAS toUnixTimestamp64Milli(ts_exchange),
                ts_recv_ms Int64 ALIAS toUnixTimestamp64Milli(ts_recv)";

const TS_COPY: &str = "fromUnixTimestamp64Milli(ts_exchange_ms, 'UTC'), fromUnixTimestamp64Milli(ts_recv_ms, 'UTC')";

pub const REBUILDS: &[Rebuild] = &[
    Rebuild {
        table: "trades",
        create: "CREATE TABLE IF NOT EXISTS {db}.{name} (
                exchange LowCardinality(String), market LowCardinality(String), symbol LowCardinality(String),
                venue_symbol LowCardinality(String),
                trade_id String CODEC(ZSTD(3)),
                price {decimal} CODEC(GCD, ZSTD(3)), qty {decimal} CODEC(GCD, ZSTD(3)),
                side Enum8('buy' = 1, 'sell' = 2) CODEC(ZSTD(1)),
                {ts}
            ) ENGINE = ReplacingMergeTree()
            PARTITION BY toYYYYMM(ts_exchange)
            ORDER BY (exchange, market, symbol, trade_id)",
        columns: "exchange, market, symbol, venue_symbol, trade_id, price, qty, side, ts_exchange, ts_recv",
        select: "exchange, market, symbol, venue_symbol, trade_id, price, qty, side, {ts_copy}",
    },
    Rebuild {
        table: "bbo",
        create: "CREATE TABLE IF NOT EXISTS {db}.{name} (
                exchange LowCardinality(String), market LowCardinality(String), symbol LowCardinality(String),
                sequence UInt64 CODEC(Delta, ZSTD(1)),
                bid_price {decimal} CODEC(GCD, ZSTD(3)), bid_qty {decimal} CODEC(GCD, ZSTD(3)),
                ask_price {decimal} CODEC(GCD, ZSTD(3)), ask_qty {decimal} CODEC(GCD, ZSTD(3)),
                {ts}
            ) ENGINE = ReplacingMergeTree()
            PARTITION BY toYYYYMM(ts_exchange)
            ORDER BY (exchange, market, symbol, ts_exchange, sequence)",
        columns: "exchange, market, symbol, sequence, bid_price, bid_qty, ask_price, ask_qty, ts_exchange, ts_recv",
        select: "exchange, market, symbol, sequence, bid_price, bid_qty, ask_price, ask_qty, {ts_copy}",
    },
    Rebuild {
        table: "book_snapshots",
        create: "CREATE TABLE IF NOT EXISTS {db}.{name} (
                exchange LowCardinality(String), market LowCardinality(String), symbol LowCardinality(String),
                sequence UInt64 CODEC(Delta, ZSTD(1)),
                bid_prices Array({decimal}) CODEC(GCD, ZSTD(3)), bid_qtys Array({decimal}) CODEC(GCD, ZSTD(3)),
                ask_prices Array({decimal}) CODEC(GCD, ZSTD(3)), ask_qtys Array({decimal}) CODEC(GCD, ZSTD(3)),
                {ts}
            ) ENGINE = ReplacingMergeTree()
            PARTITION BY toYYYYMM(ts_exchange)
            ORDER BY (exchange, market, symbol, sequence)",
        columns: "exchange, market, symbol, sequence, bid_prices, bid_qtys, ask_prices, ask_qtys, ts_exchange, ts_recv",
        select: "exchange, market, symbol, sequence, bid_prices, bid_qtys, ask_prices, ask_qtys, {ts_copy}",
    },
    Rebuild {
        table: "book_deltas",
        create: "CREATE TABLE IF NOT EXISTS {db}.{name} (
                exchange LowCardinality(String), market LowCardinality(String), symbol LowCardinality(String),
                first_sequence UInt64 CODEC(Delta, ZSTD(1)), sequence UInt64 CODEC(Delta, ZSTD(1)),
                prev_sequence UInt64 CODEC(Delta, ZSTD(1)),
                bid_prices Array({decimal}) CODEC(GCD, ZSTD(3)), bid_qtys Array({decimal}) CODEC(GCD, ZSTD(3)),
                ask_prices Array({decimal}) CODEC(GCD, ZSTD(3)), ask_qtys Array({decimal}) CODEC(GCD, ZSTD(3)),
                {ts}
            ) ENGINE = ReplacingMergeTree()
            PARTITION BY toYYYYMM(ts_exchange)
            ORDER BY (exchange, market, symbol, sequence)",
        columns: "exchange, market, symbol, first_sequence, sequence, prev_sequence, bid_prices, bid_qtys, ask_prices, ask_qtys, ts_exchange, ts_recv",
        select: "exchange, market, symbol, first_sequence, sequence, prev_sequence, bid_prices, bid_qtys, ask_prices, ask_qtys, {ts_copy}",
    },
    Rebuild {
        table: "funding",
        create: "CREATE TABLE IF NOT EXISTS {db}.{name} (
                exchange LowCardinality(String), market LowCardinality(String), symbol LowCardinality(String),
                funding_rate {decimal} CODEC(GCD, ZSTD(3)), mark_price {decimal} CODEC(GCD, ZSTD(3)),
                index_price Nullable({decimal}) CODEC(GCD, ZSTD(3)),
                next_funding_ms Int64 CODEC(Delta, ZSTD(1)),
                {ts}
            ) ENGINE = ReplacingMergeTree()
            PARTITION BY toYYYYMM(ts_exchange)
            ORDER BY (exchange, market, symbol, ts_exchange)",
        columns: "exchange, market, symbol, funding_rate, mark_price, index_price, next_funding_ms, ts_exchange, ts_recv",
        select: "exchange, market, symbol, funding_rate, mark_price, index_price, next_funding_ms, {ts_copy}",
    },
    Rebuild {
        table: "liquidations",
        create: "CREATE TABLE IF NOT EXISTS {db}.{name} (
                exchange LowCardinality(String), market LowCardinality(String), symbol LowCardinality(String),
                side Enum8('buy' = 1, 'sell' = 2) CODEC(ZSTD(1)),
                price {decimal} CODEC(GCD, ZSTD(3)), qty {decimal} CODEC(GCD, ZSTD(3)), order_id String CODEC(ZSTD(3)),
                {ts}
            ) ENGINE = ReplacingMergeTree()
            PARTITION BY toYYYYMM(ts_exchange)
            ORDER BY (exchange, market, symbol, ts_exchange, order_id, price, qty)",
        columns: "exchange, market, symbol, side, price, qty, order_id, ts_exchange, ts_recv",
        select: "exchange, market, symbol, side, price, qty, order_id, {ts_copy}",
    },
    Rebuild {
        table: "open_interest",
        create: "CREATE TABLE IF NOT EXISTS {db}.{name} (
                exchange LowCardinality(String), market LowCardinality(String), symbol LowCardinality(String),
                open_interest {decimal} CODEC(GCD, ZSTD(3)),
                {ts}
            ) ENGINE = ReplacingMergeTree()
            PARTITION BY toYYYYMM(ts_exchange)
            ORDER BY (exchange, market, symbol, ts_exchange)",
        columns: "exchange, market, symbol, open_interest, ts_exchange, ts_recv",
        select: "exchange, market, symbol, open_interest, {ts_copy}",
    },
    Rebuild {
        table: "venue_candles",
        create: "CREATE TABLE IF NOT EXISTS {db}.{name} (
                exchange LowCardinality(String), market LowCardinality(String), symbol LowCardinality(String),
                interval_s UInt32 CODEC(ZSTD(1)),
                open_time DateTime64(3, 'UTC') CODEC(DoubleDelta, ZSTD(1)),
                open {decimal} CODEC(GCD, ZSTD(3)), high {decimal} CODEC(GCD, ZSTD(3)), low {decimal} CODEC(GCD, ZSTD(3)),
                close {decimal} CODEC(GCD, ZSTD(3)), volume {decimal} CODEC(GCD, ZSTD(3)),
                trades UInt64 CODEC(ZSTD(1)), closed UInt8 CODEC(ZSTD(1)),
                ts_recv DateTime64(6, 'UTC') CODEC(DoubleDelta, ZSTD(1)),
                open_time_ms Int64 ALIAS toUnixTimestamp64Milli(open_time),
                ts_recv_ms Int64 ALIAS toUnixTimestamp64Milli(ts_recv)
            ) ENGINE = ReplacingMergeTree(ts_recv)
            PARTITION BY toYYYYMM(open_time)
            ORDER BY (exchange, market, symbol, interval_s, open_time)",
        columns: "exchange, market, symbol, interval_s, open_time, open, high, low, close, volume, trades, closed, ts_recv",
        select: "exchange, market, symbol, interval_s, fromUnixTimestamp64Milli(open_time_ms, 'UTC'), open, high, low, close, volume, trades, closed, fromUnixTimestamp64Milli(ts_recv_ms, 'UTC')",
    },
    Rebuild {
        table: "gaps",
        create: "CREATE TABLE IF NOT EXISTS {db}.{name} (
                exchange LowCardinality(String), market LowCardinality(String), symbol LowCardinality(String),
                reason LowCardinality(String), last_sequence UInt64,
                ts_recv DateTime64(6, 'UTC') CODEC(DoubleDelta, ZSTD(1)),
                ts_recv_ms Int64 ALIAS toUnixTimestamp64Milli(ts_recv)
            ) ENGINE = ReplacingMergeTree()
            PARTITION BY toYYYYMM(ts_recv)
            ORDER BY (exchange, market, symbol, ts_recv, last_sequence)",
        columns: "exchange, market, symbol, reason, last_sequence, ts_recv",
        select: "exchange, market, symbol, reason, last_sequence, fromUnixTimestamp64Milli(ts_recv_ms, 'UTC')",
    },
    Rebuild {
        table: "candles_1m",
        create: "CREATE TABLE IF NOT EXISTS {db}.{name} (
                exchange LowCardinality(String), market LowCardinality(String), symbol LowCardinality(String),
                minute DateTime('UTC') CODEC(DoubleDelta, ZSTD(1)),
                open AggregateFunction(argMin, {decimal}, Int64),
                high AggregateFunction(max, {decimal}),
                low AggregateFunction(min, {decimal}),
                close AggregateFunction(argMax, {decimal}, Int64),
                volume AggregateFunction(sum, {decimal}),
                trades AggregateFunction(count)
            ) ENGINE = AggregatingMergeTree()
            PARTITION BY toYYYYMM(minute)
            ORDER BY (exchange, market, symbol, minute)",
        columns: "exchange, market, symbol, minute, open, high, low, close, volume, trades",
        select: "exchange, market, symbol, minute, open, high, low, close, volume, trades",
    },
];

/// The name a table is built under before the swap.
fn staging(table: &str) -> String {
    format!("{table}_v3")
}

impl Rebuild {
    /// The `CREATE TABLE` of this table under `name`, for `db`.
    pub fn create_sql(&self, db: &str, name: &str) -> String {
        self.create
            .replace("{ts}", TS)
            .replace("{decimal}", DECIMAL)
            .replace("{name}", name)
            .replace("{db}", db)
    }

    /// Drops the staging table(s), which after the swap hold the old rows.
    pub fn drop_staging(&self, db: &str, layout: Layout<'_>) -> Vec<String> {
        let new = staging(self.table);
        match layout {
            Layout::Single => vec![format!("DROP TABLE IF EXISTS {db}.{new} SYNC")],
            Layout::Cluster(cluster) => vec![
                format!("DROP TABLE IF EXISTS {db}.{new} ON CLUSTER {cluster} SYNC"),
                format!("DROP TABLE IF EXISTS {db}.{new}_local ON CLUSTER {cluster} SYNC"),
            ],
        }
    }

    /// The statements that rebuild this table of `db` into the v3 shape,
    /// in order. The caller skips them when the table has that shape.
    pub fn statements(&self, db: &str, layout: Layout<'_>) -> Vec<String> {
        let table = self.table;
        let new = staging(table);
        let select = self.select.replace("{ts_copy}", TS_COPY);
        let copy = format!(
            "INSERT INTO {db}.{new} ({}) SELECT {select} FROM {db}.{table}",
            self.columns
        );
        let create = statements_for(&self.create_sql("{db}", &new), db, layout);
        match layout {
            Layout::Single => {
                let mut sql = self.drop_staging(db, layout);
                sql.extend(create);
                sql.push(copy);
                sql.push(format!("EXCHANGE TABLES {db}.{table} AND {db}.{new}"));
                sql.push(format!("DROP TABLE {db}.{new} SYNC"));
                sql
            }
            Layout::Cluster(cluster) => {
                // Local tables are swapped on every node; the Distributed
                // table keeps v2's columns, so it is made again over the
                // swapped local table. The copy reads and writes through
                // Distributed tables (every shard, rows placed by the
                // sharding key).
                let on = format!("ON CLUSTER {cluster}");
                let mut sql = self.drop_staging(db, layout);
                sql.extend(create);
                sql.push(copy);
                sql.push(format!("EXCHANGE TABLES {db}.{table}_local AND {db}.{new}_local {on}"));
                sql.push(format!("DROP TABLE {db}.{table} {on} SYNC"));
                sql.push(format!(
                    "CREATE TABLE {db}.{table} {on} AS {db}.{table}_local \
                     ENGINE = Distributed({cluster}, {db}, {table}_local, {SHARDING_KEY})"
                ));
                sql.push(format!("DROP TABLE {db}.{new} {on} SYNC"));
                sql.push(format!("DROP TABLE {db}.{new}_local {on} SYNC"));
                sql
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Column names of a `columns` list or a `CREATE TABLE` body.
    fn names(list: &str) -> Vec<String> {
        list.split(',').map(|c| c.trim().to_owned()).collect()
    }

    #[test]
    fn every_table_is_rebuilt_once_and_copies_each_stored_column() {
        // Tables made after v3 are created in its shape and not rebuilt.
        let created_later = |table: &str| {
            super::super::MIGRATIONS
                .iter()
                .filter(|m| m.version > 3)
                .flat_map(|m| m.statements())
                .any(|s| s.contains(&format!("{{db}}.{table} (")))
        };
        for table in super::super::TABLES {
            let found: Vec<_> = REBUILDS.iter().filter(|r| r.table == *table).collect();
            let expected = if created_later(table) { 0 } else { 1 };
            assert_eq!(found.len(), expected, "{table}");
        }
        for rebuild in REBUILDS {
            let create = rebuild.create_sql("db", "t");
            let columns = names(rebuild.columns);
            // As many values as columns (commas inside calls aside).
            let select = rebuild.select.replace("{ts_copy}", TS_COPY);
            let depth_zero_commas = select
                .chars()
                .scan(0i32, |depth, c| {
                    match c {
                        '(' => *depth += 1,
                        ')' => *depth -= 1,
                        _ => {}
                    }
                    Some(c == ',' && *depth == 0)
                })
                .filter(|comma| *comma)
                .count();
            assert_eq!(depth_zero_commas + 1, columns.len(), "{}: {select}", rebuild.table);
            for column in &columns {
                assert!(
                    create.contains(&format!("{column} ")),
                    "{}: {column} is copied but not created",
                    rebuild.table
                );
            }
            assert!(!create.contains('{'), "unreplaced placeholder in {create}");
            assert!(create.contains("LowCardinality(String)"), "{create}");
        }
    }

    #[test]
    fn a_single_server_swaps_the_rebuilt_table_in() {
        let sql = REBUILDS[0].statements("db", Layout::Single);
        assert_eq!(sql[0], "DROP TABLE IF EXISTS db.trades_v3 SYNC");
        assert!(
            sql[1].starts_with("CREATE TABLE IF NOT EXISTS db.trades_v3 ("),
            "{}",
            sql[1]
        );
        assert!(sql[2].starts_with("INSERT INTO db.trades_v3 (exchange,"), "{}", sql[2]);
        assert!(sql[2].ends_with("FROM db.trades"), "{}", sql[2]);
        assert_eq!(sql[3], "EXCHANGE TABLES db.trades AND db.trades_v3");
        assert_eq!(sql[4], "DROP TABLE db.trades_v3 SYNC");
    }

    #[test]
    fn a_cluster_swaps_local_tables_and_remakes_the_distributed_one() {
        let sql = REBUILDS[0].statements("db", Layout::Cluster("c"));
        let position = |prefix: &str| {
            sql.iter()
                .position(|s| s.starts_with(prefix))
                .unwrap_or_else(|| panic!("no statement starting {prefix:?} in {sql:#?}"))
        };
        let create_local = position("CREATE TABLE IF NOT EXISTS db.trades_v3_local ON CLUSTER c (");
        let copy = position("INSERT INTO db.trades_v3 (");
        let swap = position("EXCHANGE TABLES db.trades_local AND db.trades_v3_local ON CLUSTER c");
        let remake = position(
            "CREATE TABLE db.trades ON CLUSTER c AS db.trades_local ENGINE = Distributed(c, db, trades_local,",
        );
        assert!(create_local < copy && copy < swap && swap < remake, "{sql:#?}");
        assert!(
            sql[create_local].contains("ReplicatedReplacingMergeTree"),
            "{}",
            sql[create_local]
        );
    }
}
