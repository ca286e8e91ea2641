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

/// Counts the events it is given (`record`, which keeps the raw traffic).
#[derive(Default)]
pub struct Counter {
    pub events: std::sync::atomic::AtomicU64,
}

impl Sink for Counter {
    fn emit(&self, _event: MarketEvent) {
        self.events.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
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

impl Sink for JsonLines {
    fn emit(&self, event: MarketEvent) {
        self.line(event.to_json());
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
