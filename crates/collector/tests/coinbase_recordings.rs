//! Coinbase Exchange parsing and books on the real recording in
//! `shared/fixtures/exchanges` (or `MOAT_EXCHANGE_FIXTURES`), read in place.

use std::collections::HashMap;

mod common;

use common::fixtures;
use moat_collector::recording::{Record, parse_line};
use moat_collector::venues::BookOutcome;
use moat_collector::venues::coinbase::book::CoinbaseBook;
use moat_collector::venues::coinbase::parse::{Frame, parse};
use moat_collector::venues::coinbase::symbols;

#[test]
fn coinbase_recording_trades_and_books() {
    let Some(dir) = fixtures() else { return };
    let text = std::fs::read_to_string(dir.join("COINBASE.ws.28.0")).unwrap();
    let mut ids: Vec<String> = Vec::new();
    let mut frames = Vec::new();
    for line in text.lines() {
        match parse_line(line) {
            Some(Record::Sent { payload, .. }) => {
                let sub: serde_json::Value = serde_json::from_str(payload).unwrap();
                for id in sub["product_ids"].as_array().unwrap() {
                    let id = id.as_str().unwrap().to_owned();
                    if !ids.contains(&id) {
                        ids.push(id);
                    }
                }
            }
            Some(Record::Received { payload, .. }) => frames.push(payload.to_owned()),
            _ => {}
        }
    }
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let symbols = symbols("coinbase", &refs).all_known().unwrap();

    let mut trades = Vec::new();
    let mut books: HashMap<String, CoinbaseBook> = HashMap::new();
    let (mut applied, mut gaps) = (0, Vec::new());
    for frame in &frames {
        match parse(&symbols, frame, 0).unwrap_or_else(|e| panic!("{e}: {frame}")) {
            Frame::Trade(t) => trades.push(t),
            Frame::Book(message) => {
                let id = message.instrument.venue_symbol.clone();
                let sync = books.entry(id.clone()).or_default();
                match sync.on_update(message.snapshot, &message.bids, &message.asks) {
                    BookOutcome::Applied => {
                        applied += 1;
                        assert!(!sync.book.is_crossed(), "{id} crossed");
                    }
                    BookOutcome::Gap { reason, detail } => gaps.push(format!("{id}: {reason}: {detail}")),
                    BookOutcome::Buffered | BookOutcome::Stale => {}
                }
            }
            Frame::Bbo(_) | Frame::Heartbeat(_) | Frame::Control => {}
        }
    }

    // Every match and last_match became one trade, values as written; the
    // taker side is the opposite of the maker's `side`.
    let raw: Vec<serde_json::Value> = frames
        .iter()
        .filter(|f| f.contains(r#""type":"match""#) || f.contains(r#""type":"last_match""#))
        .map(|f| serde_json::from_str(f).unwrap())
        .collect();
    assert_eq!(trades.len(), raw.len(), "trade count");
    assert!(!raw.is_empty());
    for (trade, raw) in trades.iter().zip(&raw) {
        assert_eq!(trade.price.to_string(), raw["price"].as_str().unwrap());
        assert_eq!(trade.qty.to_string(), raw["size"].as_str().unwrap());
        assert_eq!(trade.trade_id, raw["trade_id"].to_string());
        assert_ne!(trade.side.as_str(), raw["side"].as_str().unwrap());
    }

    // Ten snapshots, thousands of updates, never a crossed book.
    assert!(gaps.is_empty(), "{gaps:?}");
    assert_eq!(books.len(), 10);
    assert!(applied > 9_000, "{applied} book messages applied");
    for (id, sync) in &books {
        assert!(sync.is_synced(), "{id}");
        assert!(!sync.book.bids.is_empty() && !sync.book.asks.is_empty(), "{id}");
    }
}
