//! Where connectors send what they produce: the publish queue in service
//! mode, JSON lines on stdout in `replay --emit jsonl`.

use std::io::Write;
use std::sync::Mutex;

use moat_common_types::MarketEvent;
use serde_json::json;

use crate::book::L2Book;
use crate::publisher::EventQueue;

pub trait Sink: Send + Sync {
    fn emit(&self, event: MarketEvent);

    /// Called after every applied book update (for `--book-top`).
    fn book_top(&self, _exchange: &str, _symbol: &str, _seq: u64, _book: &L2Book) {}
}

impl Sink for EventQueue {
    fn emit(&self, event: MarketEvent) {
        self.push(event);
    }
}

/// Prints normalized events as one JSON object per line.
pub struct JsonLines {
    pub book_top: bool,
    out: Mutex<std::io::Stdout>,
}

impl JsonLines {
    pub fn new(book_top: bool) -> JsonLines {
        JsonLines {
            book_top,
            out: Mutex::new(std::io::stdout()),
        }
    }

    fn line(&self, value: serde_json::Value) {
        let mut out = self.out.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        // A closed stdout (piped into `head`) ends output, not the process.
        let _ = writeln!(out, "{value}");
    }
}

/// The JSON form of an event; decimals as strings, exactly as received.
pub fn event_json(event: &MarketEvent) -> serde_json::Value {
    let i = event.instrument();
    let mut v = json!({
        "kind": event.kind().as_str(),
        "exchange": i.exchange,
        "market": i.market.as_str(),
        "symbol": i.symbol,
    });
    match event {
        MarketEvent::Trade(t) => {
            v["trade_id"] = t.trade_id.clone().into();
            v["price"] = t.price.to_string().into();
            v["qty"] = t.qty.to_string().into();
            v["side"] = t.side.as_str().into();
            v["ts_exchange_ms"] = t.ts_exchange_ms.into();
            v["ts_recv_ms"] = t.ts_recv_ms.into();
        }
        MarketEvent::Bbo(b) => {
            v["seq"] = b.sequence.into();
            v["bid"] = json!([b.bid.price.to_string(), b.bid.qty.to_string()]);
            v["ask"] = json!([b.ask.price.to_string(), b.ask.qty.to_string()]);
            v["ts_exchange_ms"] = b.ts_exchange_ms.into();
            v["ts_recv_ms"] = b.ts_recv_ms.into();
        }
        MarketEvent::BookSnapshot(s) => {
            v["kind"] = "book_snapshot".into();
            v["seq"] = s.sequence.into();
            v["bid_levels"] = s.bids.len().into();
            v["ask_levels"] = s.asks.len().into();
        }
        MarketEvent::BookDelta(d) => {
            v["kind"] = "book_delta".into();
            v["seq"] = d.sequence.into();
            v["bid_levels"] = d.bids.len().into();
            v["ask_levels"] = d.asks.len().into();
        }
        MarketEvent::Gap(g) => {
            v["reason"] = g.reason.clone().into();
            v["last_sequence"] = g.last_sequence.into();
        }
        MarketEvent::Candle(c) => {
            v["interval_s"] = c.interval_s.into();
            v["open_time_ms"] = c.open_time_ms.into();
            v["close"] = c.close.to_string().into();
            v["closed"] = c.closed.into();
        }
        _ => {}
    }
    v
}

impl Sink for JsonLines {
    fn emit(&self, event: MarketEvent) {
        self.line(event_json(&event));
    }

    fn book_top(&self, exchange: &str, symbol: &str, seq: u64, book: &L2Book) {
        if !self.book_top {
            return;
        }
        let pair = |l: Option<(moat_common_types::Decimal, moat_common_types::Decimal)>| {
            l.map_or(serde_json::Value::Null, |(p, q)| json!([p.to_string(), q.to_string()]))
        };
        self.line(json!({
            "kind": "book_top",
            "exchange": exchange,
            "symbol": symbol,
            "seq": seq,
            "best_bid": pair(book.best_bid()),
            "best_ask": pair(book.best_ask()),
            "bid_levels": book.bids.len(),
            "ask_levels": book.asks.len(),
        }));
    }
}
