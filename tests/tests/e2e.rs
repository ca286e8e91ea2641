//! The whole path from exchange to strategy, as `cargo xtask up` runs it:
//! every trade the local exchange sent is in ClickHouse exactly once,
//! `GetPrice` answers from fresh data, `GetCandles` matches the stored
//! trades, a strategy saves and reloads its state, and `moat doctor` is
//! green.

use std::str::FromStr;
use std::time::Duration;

use moat_integration_tests::eventually;
use moat_integration_tests::stack::{EXCHANGE, Stack, StackOptions};
use rust_decimal::Decimal;
use serde_json::Value;

fn decimal(v: &Value) -> Decimal {
    let text = v.as_str().map_or_else(|| v.to_string(), str::to_owned);
    Decimal::from_str(&text)
        .unwrap_or_else(|e| panic!("{text:?} is not a decimal: {e}"))
        .normalize()
}

#[tokio::test(flavor = "multi_thread")]
async fn what_the_exchange_sent_comes_out_exactly_once() {
    let stack = Stack::start(StackOptions {
        trades_per_second: 25,
        ..StackOptions::default()
    })
    .await;
    stack.doctor_green(Duration::from_secs(90)).await;

    // GetPrice from fresh data while the feed runs.
    let (code, out, err) = stack.moat(&["--json", "price", "BTC", "--quote", "USDT"]);
    assert_eq!(code, 0, "{err}");
    let price: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    let price = if price.is_array() { price[0].clone() } else { price };
    let age = moat_common_types::now_ms() - price["ts_ms"].as_i64().unwrap();
    assert!(age < 5_000, "price is {age} ms old: {price}");
    assert_eq!(price["stale"], false, "{price}");
    assert!(
        price["sources"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["exchange"] == EXCHANGE),
        "{price}"
    );
    let quoted = decimal(&price["price"]);

    // A strategy saves and reloads its state through the gateway.
    let (code, out, err) = stack.moat(&["state", "put", "position: 0.5 BTC"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("saved version 1"), "{out}");
    let (_, out, _) = stack.moat(&["state", "get"]);
    assert_eq!(out, "position: 0.5 BTC");

    // Let trades flow a little longer, then pause the feed and wait for
    // the writer to catch up with everything the exchange sent.
    tokio::time::sleep(Duration::from_secs(3)).await;
    stack.exchange_control("rate?trades_per_second=0");
    let stack_ref = &stack;
    let sent = eventually("the exchange's count to settle", Duration::from_secs(10), || {
        let first = stack_ref.exchange_stats()["trades_sent"].as_u64().unwrap();
        async move {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let second = stack_ref.exchange_stats()["trades_sent"].as_u64().unwrap();
            (first == second).then_some(second)
        }
    })
    .await;
    assert!(sent > 200, "only {sent} trades were sent");
    let (distinct, visible) = eventually("every sent trade stored", Duration::from_secs(60), || {
        let stored = stack.stored_trades();
        async move { (stored.0 >= sent).then_some(stored) }
    })
    .await;
    assert_eq!(distinct, sent, "distinct trades stored vs sent by the exchange");
    assert_eq!(visible, sent, "rows a FINAL query shows vs trades sent");

    // The quoted price was one of the stored BTC prices' range.
    let db = &stack.spec.database;
    let range = stack.query(&format!(
        "SELECT toString(min(price)), toString(max(price)) FROM {db}.trades WHERE exchange = '{EXCHANGE}' AND symbol = 'BTC-USDT'"
    ));
    let (low, high) = range.split_once('\t').expect("two columns");
    assert!(
        decimal(&Value::from(low)) <= quoted && quoted <= decimal(&Value::from(high)),
        "price {quoted} outside the stored trades' range {range}"
    );

    // GetCandles matches an aggregation of the stored trades minute by
    // minute.
    let (code, out, err) = stack.moat(&["--json", "candles", EXCHANGE, "BTC-USDT", "1m", "--since", "15m"]);
    assert_eq!(code, 0, "{err}");
    let candles: Vec<Value> = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    let expected = stack.query(&format!(
        "SELECT intDiv(ts_exchange_ms, 60000) * 60000 AS minute, toString(max(price)), toString(min(price)), \
         toString(sum(qty)), count() FROM {db}.trades FINAL WHERE exchange = '{EXCHANGE}' AND symbol = 'BTC-USDT' \
         GROUP BY minute ORDER BY minute"
    ));
    let expected: Vec<Vec<&str>> = expected.lines().map(|l| l.split('\t').collect()).collect();
    assert!(!expected.is_empty());
    assert_eq!(
        candles.len(),
        expected.len(),
        "candles {candles:?}\nfrom trades {expected:?}"
    );
    for (candle, row) in candles.iter().zip(&expected) {
        assert_eq!(candle["open_time_ms"].as_i64().unwrap().to_string(), row[0], "{candle}");
        assert_eq!(
            decimal(&candle["high"]),
            decimal(&Value::from(row[1])),
            "high of {candle}"
        );
        assert_eq!(
            decimal(&candle["low"]),
            decimal(&Value::from(row[2])),
            "low of {candle}"
        );
        assert_eq!(
            decimal(&candle["volume"]),
            decimal(&Value::from(row[3])),
            "volume of {candle}"
        );
        assert_eq!(
            candle["trades"].as_u64().unwrap().to_string(),
            row[4],
            "trades of {candle}"
        );
    }
}
