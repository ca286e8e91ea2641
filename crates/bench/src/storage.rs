//! Bytes on disk: the same trades and book deltas stored in a schema v2
//! database and a v3 one (`LowCardinality`, `DateTime64`, codecs), each
//! merged into one part per partition, compared per trade and per book
//! level.

use moat_storage_writer::config::WriterConfig;
use moat_storage_writer::schema::{self, Layout};

use crate::Row;

const TRADES: u64 = 2_000_000;
const DELTAS: u64 = 500_000;

/// Trades of 20 instruments over two venues: prices wander slowly around
/// each instrument's level in cent ticks, sizes are random with four
/// decimals, ids and timestamps rise per instrument, and the receive time
/// trails the exchange's by a few milliseconds, as a live feed's do.
const TRADES_SQL: &str =
    "INSERT INTO {db}.trades (exchange, market, symbol, venue_symbol, trade_id, price, qty, side, \
     ts_exchange, ts_recv)
     SELECT if(n % 2 = 0, 'binance', 'okx'), if(n % 4 < 2, 'spot', 'perp'),
        concat('SYM', toString(n % 20), '-USDT'), concat('SYM', toString(n % 20), 'USDT'),
        toString(1000000 + intDiv(number, 20)),
        toDecimal128(100 * (1 + n), 18) + toDecimal128(intDiv(number, 2000) % 300 + cityHash64(number) % 7, 18) / 100,
        toDecimal128(cityHash64(number, 1) % 50000 + 1, 18) / 10000,
        if(cityHash64(number, 2) % 2 = 0, 'buy', 'sell'),
        fromUnixTimestamp64Milli(toInt64(1700000000000 + intDiv(number, 20) * 9 + cityHash64(number, 3) % 5), 'UTC'),
        fromUnixTimestamp64Milli(toInt64(1700000000003 + intDiv(number, 20) * 9 + cityHash64(number, 4) % 9), 'UTC')
     FROM (SELECT number, number % 20 AS n FROM numbers({rows}))";

/// Depth diffs of 20 instruments every 100 ms: 1 to 8 levels a side near
/// the top of the book, in cent ticks, some of them removals (size 0).
const DELTAS_SQL: &str = "INSERT INTO {db}.book_deltas (exchange, market, symbol, first_sequence, sequence, \
     prev_sequence, bid_prices, bid_qtys, ask_prices, ask_qtys, ts_exchange, ts_recv)
     SELECT 'binance', 'perp', concat('SYM', toString(n % 20), '-USDT-PERP'),
        seq + 1, seq + 1 + cityHash64(number) % 5, seq,
        arrayMap(i -> mid - toDecimal128(i + cityHash64(number, i) % 20, 18) / 100, range(1 + cityHash64(number, 5) % 8)),
        arrayMap(i -> toDecimal128(if(cityHash64(number, i, 6) % 5 = 0, 0, cityHash64(number, i, 7) % 100000), 18) / 1000,
                 range(1 + cityHash64(number, 5) % 8)),
        arrayMap(i -> mid + toDecimal128(1 + i + cityHash64(number, i, 8) % 20, 18) / 100, range(1 + cityHash64(number, 9) % 8)),
        arrayMap(i -> toDecimal128(if(cityHash64(number, i, 10) % 5 = 0, 0, cityHash64(number, i, 11) % 100000), 18) / 1000,
                 range(1 + cityHash64(number, 9) % 8)),
        fromUnixTimestamp64Milli(toInt64(1700000000000 + intDiv(number, 20) * 100), 'UTC'),
        fromUnixTimestamp64Milli(toInt64(1700000000004 + intDiv(number, 20) * 100 + cityHash64(number, 12) % 6), 'UTC')
     FROM (SELECT number, number % 20 AS n, intDiv(number, 20) * 6 AS seq,
        toDecimal128(100 * (1 + number % 20), 18) + toDecimal128(intDiv(number, 2000) % 300, 18) / 100 AS mid
        FROM numbers({rows}))";

async fn exec(client: &clickhouse::Client, sql: &str) -> anyhow::Result<()> {
    client.query(sql).execute().await?;
    Ok(())
}

async fn fetch_u64(client: &clickhouse::Client, sql: &str) -> anyhow::Result<u64> {
    Ok(client.query(sql).fetch_one::<u64>().await?)
}

/// Active bytes on disk of `db.table`.
async fn bytes(client: &clickhouse::Client, db: &str, table: &str) -> anyhow::Result<u64> {
    fetch_u64(
        client,
        &format!(
            "SELECT sum(bytes_on_disk) FROM system.parts WHERE database = '{db}' AND table = '{table}' AND active"
        ),
    )
    .await
}

pub async fn run(rows: &mut Vec<Row>, ch_url: &str) -> anyhow::Result<()> {
    let mut config = WriterConfig::default();
    config.clickhouse.url = ch_url.into();
    config.clickhouse.database = "default".into();
    let client = moat_storage_writer::clickhouse_client(&config.clickhouse);
    let (v2, v3) = ("bench_schema_v2", "bench_schema_v3");
    schema::migrate_until(&client, v2, Layout::Single, true, 2).await?;
    schema::migrate(&client, v3, Layout::Single, true).await?;
    // Generated once into v3, copied as they are into v2 (its `…_ms`
    // columns read through v3's ALIAS columns): the same rows in both.
    exec(
        &client,
        &TRADES_SQL.replace("{db}", v3).replace("{rows}", &TRADES.to_string()),
    )
    .await?;
    exec(
        &client,
        &DELTAS_SQL.replace("{db}", v3).replace("{rows}", &DELTAS.to_string()),
    )
    .await?;
    exec(
        &client,
        &format!(
            "INSERT INTO {v2}.trades SELECT exchange, market, symbol, venue_symbol, trade_id, price, qty, side, \
             ts_exchange_ms, ts_recv_ms FROM {v3}.trades"
        ),
    )
    .await?;
    exec(
        &client,
        &format!(
            "INSERT INTO {v2}.book_deltas SELECT exchange, market, symbol, first_sequence, sequence, prev_sequence, \
             bid_prices, bid_qtys, ask_prices, ask_qtys, ts_exchange_ms, ts_recv_ms FROM {v3}.book_deltas"
        ),
    )
    .await?;
    for db in [v2, v3] {
        for table in ["trades", "book_deltas"] {
            exec(&client, &format!("OPTIMIZE TABLE {db}.{table} FINAL")).await?;
        }
    }
    let levels = fetch_u64(
        &client,
        &format!("SELECT sum(length(bid_prices) + length(ask_prices)) FROM {v3}.book_deltas"),
    )
    .await?;
    for (what, table, units, unit) in [
        ("trade", "trades", TRADES, "trades"),
        ("book-delta level", "book_deltas", levels, "levels"),
    ] {
        let (old, new) = (bytes(&client, v2, table).await?, bytes(&client, v3, table).await?);
        let (old, new) = (old as f64 / units as f64, new as f64 / units as f64);
        rows.push(Row {
            what: format!("ClickHouse: bytes on disk per {what}, schema v3 ({units} {unit}, merged)"),
            figure: format!("{new:.2} B"),
            baseline: format!("{old:.2} B (schema v2, the same rows)"),
            ratio: old / new,
        });
    }
    for db in [v2, v3] {
        exec(&client, &format!("DROP DATABASE {db} SYNC")).await?;
    }
    Ok(())
}
