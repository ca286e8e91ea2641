//! OKX v5 parsing and checksum-validated books on the real recording in
//! `shared/fixtures/exchanges` (or `MOAT_EXCHANGE_FIXTURES`), read in place.

use std::collections::HashMap;

mod common;

use common::fixtures;
use moat_collector::recording::{Record, parse_line};
use moat_collector::venues::BookOutcome;
use moat_collector::venues::okx::book::OkxBook;
use moat_collector::venues::okx::parse::{Frame, parse};
use moat_collector::venues::okx::{Symbols, symbols};

#[derive(Default)]
struct Replay {
    trades: Vec<moat_common_types::model::Trade>,
    bbos: usize,
    applied: usize,
    gaps: Vec<String>,
    books: HashMap<String, OkxBook>,
}

/// The instrument ids subscribed in the recording and its received frames.
fn load() -> Option<(Symbols, Vec<String>)> {
    let dir = fixtures()?;
    let text = std::fs::read_to_string(dir.join("OKX.ws.1.0")).unwrap();
    let mut ids: Vec<String> = Vec::new();
    let mut frames = Vec::new();
    for line in text.lines() {
        match parse_line(line) {
            Some(Record::Sent { payload, .. }) => {
                let sub: serde_json::Value = serde_json::from_str(payload).unwrap();
                for arg in sub["args"].as_array().unwrap() {
                    let id = arg["instId"].as_str().unwrap().to_owned();
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
    Some((symbols("okx", &refs).all_known().unwrap(), frames))
}

/// Replays `frames`; `corrupt` changes the checksum of that book frame (1-based).
fn replay(symbols: &Symbols, frames: &[String], corrupt: Option<usize>) -> Replay {
    let mut r = Replay::default();
    let mut book_frames = 0;
    for frame in frames {
        match parse(symbols, frame, 0).unwrap_or_else(|e| panic!("{e}: {frame}")) {
            Frame::Trades(trades) => r.trades.extend(trades),
            Frame::Bbo(_) => r.bbos += 1,
            Frame::Book(mut message) => {
                book_frames += 1;
                if corrupt == Some(book_frames) {
                    message.checksum = message.checksum.map(|c| c.wrapping_add(1));
                }
                let id = message.instrument.venue_symbol.clone();
                let sync = r.books.entry(id.clone()).or_default();
                match sync.on_message(&message) {
                    BookOutcome::Applied => {
                        r.applied += 1;
                        assert!(!sync.book.is_crossed(), "{id} crossed after an applied message");
                    }
                    BookOutcome::Gap { reason, detail } => r.gaps.push(format!("{id}: {reason}: {detail}")),
                    BookOutcome::Buffered | BookOutcome::Stale => {}
                }
            }
            Frame::Funding(_)
            | Frame::MarkPrice { .. }
            | Frame::OpenInterest(_)
            | Frame::OptionSummary(_)
            | Frame::Control => {}
        }
    }
    r
}

#[test]
fn okx_recording_trades_and_books() {
    let Some((symbols, frames)) = load() else { return };
    let r = replay(&symbols, &frames, None);

    // Every trade in the file, values as written.
    let raw: Vec<serde_json::Value> = frames
        .iter()
        .filter(|f| f.contains(r#""channel":"trades""#) && f.contains(r#""data""#))
        .flat_map(|f| {
            let v: serde_json::Value = serde_json::from_str(f).unwrap();
            v["data"].as_array().unwrap().clone()
        })
        .collect();
    assert!(!raw.is_empty());
    assert_eq!(r.trades.len(), raw.len(), "trade count");
    for (trade, raw) in r.trades.iter().zip(&raw) {
        assert_eq!(trade.price.to_string(), raw["px"].as_str().unwrap());
        assert_eq!(trade.qty.to_string(), raw["sz"].as_str().unwrap());
        assert_eq!(trade.trade_id, raw["tradeId"].as_str().unwrap());
        assert_eq!(trade.side.as_str(), raw["side"].as_str().unwrap());
        assert_eq!(trade.instrument.venue_symbol, raw["instId"].as_str().unwrap());
    }
    let markets: std::collections::BTreeSet<String> = r.trades.iter().map(|t| t.instrument.symbol.clone()).collect();
    assert!(
        markets.contains("UNI-USD-PERP") && markets.contains("BTC-USD-220527"),
        "{markets:?}"
    );
    assert!(r.bbos > 0);

    // Every book message matches the venue's checksum: no gap at all, and
    // every book ends synced, uncrossed and non-empty.
    assert!(r.gaps.is_empty(), "unexpected gaps {:?}", r.gaps);
    assert!(r.applied > 100, "only {} book messages applied", r.applied);
    assert_eq!(r.books.len(), 3);
    for (id, sync) in &r.books {
        assert!(sync.is_synced(), "{id} not synced");
        assert!(
            !sync.book.is_crossed() && !sync.book.bids.is_empty() && !sync.book.asks.is_empty(),
            "{id}"
        );
    }

    // A corrupted checksum makes that book resync: a checksum gap, then
    // updates ignored until the next snapshot.
    let corrupted = replay(&symbols, &frames, Some(10));
    assert_eq!(corrupted.gaps.len(), 1, "{:?}", corrupted.gaps);
    assert!(corrupted.gaps[0].contains("checksum"), "{:?}", corrupted.gaps);
}
