//! Binance spot and USDⓈ-M futures parsing and book building on real
//! recorded traffic from `shared/fixtures/exchanges` (or the folder in
//! `MOAT_EXCHANGE_FIXTURES`). The recordings are read in place, never copied.

use std::collections::HashMap;

mod common;

use common::fixtures;
use moat_collector::recording::{Record, parse_line};
use moat_collector::venues::BookOutcome;
use moat_collector::venues::binance::book::BookSync;
use moat_collector::venues::binance::parse::{Frame, Snapshot, parse, parse_snapshot};
use moat_collector::venues::binance::{Flavor, Symbols};

/// Everything a replay of one recording produced.
#[derive(Default)]
struct Replay {
    trades: Vec<moat_common_types::model::Trade>,
    bbos: usize,
    candles: usize,
    applied: usize,
    /// Depth frame numbers (1-based) that were applied, with their symbol.
    applied_frames: Vec<(usize, String)>,
    gaps: Vec<String>,
    books: HashMap<String, BookSync>,
}

/// Timestamped inputs of a recording pair in time order: WS frames and REST snapshots.
enum Input {
    Frame(String),
    Snapshot(String, Snapshot),
}

fn load(dir: &std::path::Path, name: &str) -> (Symbols, Flavor, Vec<(f64, Input)>) {
    let ws = std::fs::read_to_string(dir.join(format!("{name}.ws.1.0"))).unwrap();
    let rest = std::fs::read_to_string(dir.join(format!("{name}.http.0.0"))).unwrap();
    let flavor = if name.contains("FUTURES") {
        Flavor::Futures
    } else {
        Flavor::Spot
    };
    let mut inputs = Vec::new();
    let mut venue_symbols = Vec::new();
    for line in ws.lines() {
        match parse_line(line) {
            Some(Record::Open { url, .. }) => {
                // The subscription is in the URL: streams=nknusdt@depth@100ms/...
                let streams = url.split("streams=").nth(1).unwrap_or_default();
                for stream in streams.split('/') {
                    let symbol = stream.split('@').next().unwrap().to_ascii_uppercase();
                    if !venue_symbols.contains(&symbol) {
                        venue_symbols.push(symbol);
                    }
                }
            }
            Some(Record::Received { ts, payload }) => inputs.push((ts, Input::Frame(payload.to_owned()))),
            _ => {}
        }
    }
    for line in rest.lines() {
        if let Some(Record::Rest { url, ts, body }) = parse_line(line) {
            let symbol = url
                .split("symbol=")
                .nth(1)
                .unwrap()
                .split('&')
                .next()
                .unwrap()
                .to_owned();
            inputs.push((ts, Input::Snapshot(symbol, parse_snapshot(body).unwrap())));
        }
    }
    inputs.sort_by(|a, b| a.0.total_cmp(&b.0));
    let refs: Vec<&str> = venue_symbols.iter().map(String::as_str).collect();
    (Symbols::new("binance", flavor, &refs), flavor, inputs)
}

fn replay(symbols: &Symbols, flavor: Flavor, inputs: &[(f64, Input)], skip_frame: Option<usize>) -> Replay {
    let mut r = Replay::default();
    let mut depth_frames = 0;
    for (_, input) in inputs {
        match input {
            Input::Snapshot(symbol, snapshot) => {
                let sync = r.books.entry(symbol.clone()).or_insert_with(|| BookSync::new(flavor));
                for (_, outcome) in sync.on_snapshot(snapshot) {
                    record(&mut r, symbol, outcome);
                }
            }
            Input::Frame(frame) => match parse(symbols, frame, 0).unwrap() {
                Frame::Trade(t) => r.trades.push(t),
                Frame::Bbo(_) => r.bbos += 1,
                Frame::Candle(_) => r.candles += 1,
                Frame::Depth(diff) => {
                    depth_frames += 1;
                    if skip_frame == Some(depth_frames) {
                        continue;
                    }
                    let symbol = diff.instrument.venue_symbol.clone();
                    let sync = r.books.entry(symbol.clone()).or_insert_with(|| BookSync::new(flavor));
                    let outcome = sync.on_diff(&diff);
                    if outcome == BookOutcome::Applied {
                        r.applied_frames.push((depth_frames, symbol.clone()));
                    }
                    record(&mut r, &symbol, outcome);
                }
                Frame::Funding(_) | Frame::Liquidation(_) | Frame::Control => {}
            },
        }
    }
    r
}

fn record(r: &mut Replay, symbol: &str, outcome: BookOutcome) {
    match outcome {
        BookOutcome::Applied => {
            r.applied += 1;
            assert!(
                !r.books[symbol].book.is_crossed(),
                "{symbol} crossed after an applied diff"
            );
        }
        BookOutcome::Gap { reason, detail } => r.gaps.push(format!("{symbol}: {reason}: {detail}")),
        BookOutcome::Buffered | BookOutcome::Stale => {}
    }
}

fn check_recording(name: &str) {
    let Some(dir) = fixtures() else { return };
    let (symbols, flavor, inputs) = load(&dir, name);
    let r = replay(&symbols, flavor, &inputs, None);

    // Every aggTrade frame in the file became one trade, values as written.
    let raw_trades: Vec<serde_json::Value> = inputs
        .iter()
        .filter_map(|(_, i)| match i {
            Input::Frame(f) if f.contains("\"e\":\"aggTrade\"") => {
                Some(serde_json::from_str::<serde_json::Value>(f).unwrap())
            }
            _ => None,
        })
        .collect();
    assert!(!raw_trades.is_empty(), "{name} has trades");
    assert_eq!(r.trades.len(), raw_trades.len(), "{name}: trade count");
    for (trade, raw) in r.trades.iter().zip(&raw_trades) {
        let data = &raw["data"];
        assert_eq!(trade.price.to_string(), data["p"].as_str().unwrap());
        assert_eq!(trade.qty.to_string(), data["q"].as_str().unwrap());
        assert_eq!(trade.trade_id, data["a"].to_string());
        assert_eq!(trade.ts_exchange_us, data["T"].as_i64().unwrap() * 1_000, "T is in ms");
        assert_eq!(
            trade.side == moat_common_types::Side::Sell,
            data["m"].as_bool().unwrap()
        );
        assert_eq!(trade.instrument.venue_symbol, data["s"].as_str().unwrap());
    }
    assert!(
        r.bbos > 0 && r.candles > 0,
        "{name}: bbo {} candles {}",
        r.bbos,
        r.candles
    );

    // Clean recordings chain without a gap, and every book with a snapshot
    // ends synced, uncrossed and non-empty.
    assert!(r.gaps.is_empty(), "{name}: unexpected gaps {:?}", r.gaps);
    assert!(r.applied > 0, "{name}: no diff applied");
    let synced: Vec<&String> = r.books.iter().filter(|(_, b)| b.is_synced()).map(|(s, _)| s).collect();
    assert!(!synced.is_empty(), "{name}: no book synced");
    for symbol in synced {
        let book = &r.books[symbol].book;
        assert!(
            !book.is_crossed() && !book.bids.is_empty() && !book.asks.is_empty(),
            "{name} {symbol}"
        );
    }

    // Dropping one applied diff is detected at the next diff of that book.
    let (victim, _) = r
        .applied_frames
        .iter()
        .find(|(n, symbol)| r.applied_frames.iter().any(|(m, s)| m > n && s == symbol))
        .expect("a book with two applied diffs");
    let dropped = replay(&symbols, flavor, &inputs, Some(*victim));
    assert!(
        dropped.gaps.iter().any(|g| g.contains("sequence_gap")),
        "{name}: a dropped frame went unnoticed"
    );
}

#[test]
fn binance_spot_recording() {
    check_recording("BINANCE");
}

#[test]
fn binance_futures_recording() {
    check_recording("BINANCE_FUTURES");
}
