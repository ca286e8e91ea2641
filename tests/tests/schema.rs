//! Schema v3 on a real ClickHouse: a v2 database upgraded in place loses
//! nothing, an upgrade cut short finishes when run again, and retention
//! follows the configuration.

use moat_integration_tests::{TestClickHouse, unique};
use moat_storage_writer::config::WriterConfig;
use moat_storage_writer::schema::{self, Layout, TABLES};

fn config(ch: &TestClickHouse, db: &str) -> WriterConfig {
    let mut config = WriterConfig::default();
    config.clickhouse.url = ch.url.clone();
    config.clickhouse.database = db.into();
    config
}

/// A database at schema v2 holding rows in every table.
async fn v2_database(ch: &TestClickHouse, config: &WriterConfig) {
    let db = &config.clickhouse.database;
    let client = moat_storage_writer::clickhouse_client(&config.clickhouse);
    let applied = schema::migrate_until(&client, db, Layout::Single, false, 2)
        .await
        .unwrap();
    assert_eq!(applied, [1, 2]);
    for sql in [
        // 5,000 trades over two symbols and several minutes (the candle
        // view fills candles_1m from them).
        "INSERT INTO {db}.trades SELECT 'binance', 'spot', if(number % 2 = 0, 'BTC-USDT', 'ETH-USDT'), \
         if(number % 2 = 0, 'BTCUSDT', 'ETHUSDT'), toString(number), \
         toDecimal128(60000, 18) + toDecimal128(number, 18) / 100, toDecimal128(number + 1, 18) / 10000, \
         if(number % 3 = 0, 'buy', 'sell'), 1700000000000 + number * 137, 1700000000050 + number * 137 \
         FROM numbers(5000)",
        "INSERT INTO {db}.bbo SELECT 'okx', 'perp', 'BTC-USDT-PERP', number, toDecimal128(60000.5, 18), \
         toDecimal128(1.25, 18), toDecimal128(60001, 18), toDecimal128(0.5, 18), 1700000000000 + number, \
         1700000000001 + number FROM numbers(300)",
        "INSERT INTO {db}.book_snapshots VALUES ('binance', 'spot', 'BTC-USDT', 10, [60000.1, 60000], [1, 2], \
         [60000.2], [3.5], 1700000000000, 1700000000005)",
        "INSERT INTO {db}.book_deltas SELECT 'binance', 'spot', 'BTC-USDT', number * 2 + 11, number * 2 + 12, \
         number * 2 + 10, [toDecimal128(60000, 18) - toDecimal128(number, 18) / 10], [toDecimal128(1, 18)], \
         [], [], 1700000000000 + number * 100, 1700000000003 + number * 100 FROM numbers(2000)",
        "INSERT INTO {db}.funding VALUES ('binance', 'perp', 'BTC-USDT-PERP', 0.0001, 60000.1, NULL, \
         1700003600000, 1700000000000, 1700000000002), ('binance', 'perp', 'ETH-USDT-PERP', -0.0002, 3000, 3000.5, \
         1700003600000, 1700000000000, 1700000000002)",
        "INSERT INTO {db}.liquidations VALUES ('binance', 'perp', 'BTC-USDT-PERP', 'sell', 59000, 0.3, 'x1', \
         1700000000000, 1700000000010)",
        "INSERT INTO {db}.open_interest VALUES ('okx', 'perp', 'BTC-USDT-PERP', 12345.678, 1700000000000, \
         1700000000010)",
        "INSERT INTO {db}.venue_candles VALUES ('binance', 'spot', 'BTC-USDT', 60, 1699999980000, 1, 3, 0.5, 2, \
         10.5, 42, 1, 1700000000000)",
        "INSERT INTO {db}.gaps VALUES ('binance', 'spot', 'BTC-USDT', 'sequence', 77, 1700000000000)",
    ] {
        ch.query(&sql.replace("{db}", db));
    }
}

/// What each table holds, as the v2 columns read it: the v3 tables answer
/// the same names (the `…_ms` ALIAS columns), so both are read alike.
fn fingerprints(ch: &TestClickHouse, db: &str, columns: &[(String, String)]) -> Vec<(String, String)> {
    columns
        .iter()
        .map(|(table, list)| {
            let sql = if table == "candles_1m" {
                format!(
                    "SELECT count(), sum(cityHash64(toString(tuple(exchange, market, symbol, minute, o, h, l, c, v, n)))) \
                     FROM (SELECT exchange, market, symbol, minute, argMinMerge(open) AS o, maxMerge(high) AS h, \
                     minMerge(low) AS l, argMaxMerge(close) AS c, sumMerge(volume) AS v, countMerge(trades) AS n \
                     FROM {db}.candles_1m GROUP BY exchange, market, symbol, minute)"
                )
            } else {
                format!("SELECT count(), sum(cityHash64(toString(tuple({list})))) FROM {db}.{table}")
            };
            (table.clone(), ch.query(&sql))
        })
        .collect()
}

/// The staging tables of the v3 rebuild still in `db`.
fn staging_tables(ch: &TestClickHouse, db: &str) -> String {
    ch.query(&format!(
        "SELECT groupArray(name) FROM system.tables WHERE database = '{db}' AND name LIKE '%_v3'"
    ))
}

/// `(table, its stored columns joined by commas)` as they are now, for
/// every table a v2 database has.
fn stored_columns(ch: &TestClickHouse, db: &str) -> Vec<(String, String)> {
    schema::v3::REBUILDS
        .iter()
        .map(|rebuild| rebuild.table)
        .map(|table| {
            let list = ch.query(&format!(
                "SELECT arrayStringConcat(groupArray(name), ', ') FROM (SELECT name FROM system.columns \
                 WHERE database = '{db}' AND table = '{table}' AND default_kind = '' ORDER BY position)"
            ));
            (table.to_string(), list)
        })
        .collect()
}

#[tokio::test]
async fn a_v2_database_is_upgraded_in_place_with_every_row() {
    let ch = TestClickHouse::get();
    let db = unique("upgrade");
    let config = config(&ch, &db);
    v2_database(&ch, &config).await;
    let v2_columns = stored_columns(&ch, &db);
    let before = fingerprints(&ch, &db, &v2_columns);
    assert_eq!(before[0].1.split('\t').next(), Some("5000"), "{before:?}");

    let applied = moat_storage_writer::migrate(&config, false).await.unwrap();
    assert_eq!(applied, [3, 4]);
    assert_eq!(fingerprints(&ch, &db, &v2_columns), before);

    let trades = ch.query(&format!("SHOW CREATE TABLE {db}.trades FORMAT TSVRaw"));
    for wanted in [
        "`symbol` LowCardinality(String)",
        "`ts_exchange` DateTime64(6, 'UTC') CODEC(DoubleDelta, ZSTD(1))",
        "`price` Decimal(38, 18) CODEC(GCD, ZSTD(3))",
    ] {
        assert!(trades.contains(wanted), "{wanted} missing from {trades}");
    }
    // No table of the old shape and no staging table is left behind, and
    // the tables of later versions are there.
    assert_eq!(staging_tables(&ch, &db), "[]");
    for table in TABLES {
        assert_eq!(
            ch.count(&format!(
                "SELECT count() FROM system.tables WHERE database = '{db}' AND name = '{table}'"
            )),
            1,
            "{table}"
        );
    }

    // The candle view counts trades inserted after the upgrade.
    let count = || {
        ch.count(&format!(
            "SELECT countMerge(trades) FROM {db}.candles_1m WHERE symbol = 'SOL-USDT'"
        ))
    };
    assert_eq!(count(), 0);
    ch.query(&format!(
        "INSERT INTO {db}.trades (exchange, market, symbol, venue_symbol, trade_id, price, qty, side, ts_exchange, ts_recv) \
         VALUES ('binance', 'spot', 'SOL-USDT', 'SOLUSDT', '1', 150.25, 2, 'buy', '2024-01-02 03:04:05.123456', now64(6))"
    ));
    assert_eq!(count(), 1);
    assert_eq!(
        ch.query(&format!(
            "SELECT ts_exchange_ms, toString(ts_exchange) FROM {db}.trades WHERE symbol = 'SOL-USDT'"
        )),
        "1704164645123\t2024-01-02 03:04:05.123456"
    );

    // Running it again changes nothing.
    assert_eq!(
        moat_storage_writer::migrate(&config, false).await.unwrap(),
        Vec::<u32>::new()
    );
    ch.query(&format!("DROP DATABASE {db}"));
}

#[tokio::test]
async fn an_upgrade_cut_short_finishes_when_run_again() {
    let ch = TestClickHouse::get();
    let db = unique("halfway");
    let config = config(&ch, &db);
    v2_database(&ch, &config).await;
    let v2_columns = stored_columns(&ch, &db);
    let before = fingerprints(&ch, &db, &v2_columns);

    // As if the process died during the upgrade: the view dropped, trades
    // swapped (its staging copy, the old table, still there) and bbo copied
    // but not swapped.
    let rebuild = |table: &str| {
        schema::v3::REBUILDS
            .iter()
            .find(|r| r.table == table)
            .unwrap()
            .statements(&db, Layout::Single)
    };
    ch.query(&schema::v3::DROP_VIEW.replace("{db}", &db));
    for sql in &rebuild("trades")[..4] {
        ch.query(sql);
    }
    for sql in &rebuild("bbo")[..3] {
        ch.query(sql);
    }

    assert_eq!(moat_storage_writer::migrate(&config, false).await.unwrap(), [3, 4]);
    assert_eq!(fingerprints(&ch, &db, &v2_columns), before);
    assert_eq!(staging_tables(&ch, &db), "[]");
    ch.query(&format!("DROP DATABASE {db}"));
}

#[tokio::test]
async fn the_merge_policy_follows_the_configuration() {
    let ch = TestClickHouse::get();
    let db = unique("merges");
    let mut config = config(&ch, &db);
    let bases = |ch: &TestClickHouse| {
        moat_storage_writer::schema::TABLES
            .iter()
            .map(|table| {
                let create = ch.query(&format!("SHOW CREATE TABLE {db}.{table} FORMAT TSVRaw"));
                moat_storage_writer::schema::merges::current(&create.replace('\n', " "))
            })
            .collect::<Vec<_>>()
    };
    let every = |base: f64| vec![Some(base); moat_storage_writer::schema::TABLES.len()];
    moat_storage_writer::migrate(&config, false).await.unwrap();
    assert_eq!(
        bases(&ch),
        every(moat_storage_writer::config::DEFAULT_MERGE_SELECTOR_BASE)
    );
    config.merges.selector_base = 7.5;
    moat_storage_writer::migrate(&config, false).await.unwrap();
    assert_eq!(bases(&ch), every(7.5));
    ch.query(&format!("DROP DATABASE {db}"));
}

#[tokio::test]
async fn retention_follows_the_configuration() {
    let ch = TestClickHouse::get();
    let db = unique("ttl");
    let mut config = config(&ch, &db);
    moat_storage_writer::migrate(&config, false).await.unwrap();
    let ttl = |table: &str| {
        let create = ch.query(&format!("SHOW CREATE TABLE {db}.{table} FORMAT TSVRaw"));
        let (_, ttl) = create.split_once("TTL ")?;
        Some(ttl.lines().next().unwrap_or_default().trim().to_owned())
    };
    // Nothing is deleted unless configured.
    assert_eq!(ttl("book_deltas"), None);
    config.ttl.book_deltas = 30;
    moat_storage_writer::migrate(&config, false).await.unwrap();
    assert_eq!(
        ttl("book_deltas").as_deref(),
        Some("toDateTime(ts_recv) + toIntervalDay(30)")
    );
    assert_eq!(ttl("trades"), None);

    config.ttl.book_deltas = 0;
    config.ttl.trades = 400;
    config.ttl.candles_1m = 800;
    moat_storage_writer::migrate(&config, false).await.unwrap();
    assert_eq!(ttl("book_deltas"), None);
    assert_eq!(
        ttl("trades").as_deref(),
        Some("toDateTime(ts_recv) + toIntervalDay(400)")
    );
    assert_eq!(ttl("candles_1m").as_deref(), Some("minute + toIntervalDay(800)"));

    // Rows older than their table's retention go; newer ones stay.
    ch.query(&format!(
        "INSERT INTO {db}.trades (exchange, market, symbol, venue_symbol, trade_id, price, qty, side, ts_exchange, ts_recv) \
         VALUES ('x', 'spot', 'A-B', 'AB', '1', 1, 1, 'buy', now64(6) - INTERVAL 500 DAY, now64(6) - INTERVAL 500 DAY), \
         ('x', 'spot', 'A-B', 'AB', '2', 1, 1, 'buy', now64(6), now64(6))"
    ));
    ch.query(&format!("OPTIMIZE TABLE {db}.trades FINAL"));
    assert_eq!(
        ch.query(&format!("SELECT groupArray(trade_id) FROM {db}.trades")),
        "['2']"
    );
    ch.query(&format!("DROP DATABASE {db}"));
}
