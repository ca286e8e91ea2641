//! The live Gemini connection: one WebSocket to market data v2 with one
//! `l2` subscription for every symbol; the `l2_updates` that carries a
//! symbol's earlier trades is its whole book, and a crossed book
//! resubscribes the symbol for a fresh one.
//! The session loop is [`crate::venues::driver`].

use std::collections::HashMap;

use moat_common_types::MarketEvent;
use serde_json::json;

use super::parse::{Frame, parse};
use crate::book::{L2Book, UnsequencedBook};
use crate::venues::driver::{Context, Venue};
use crate::venues::{BookChange, Connection, Instruments, Reject};

/// Where and what to connect.
#[derive(Debug, Clone)]
pub struct GeminiVenue {
    pub symbols: Instruments,
    /// e.g. `wss://api.gemini.com`; `/v2/marketdata` is added.
    pub ws_url: String,
    pub connection: Connection,
}

fn l2(kind: &str, symbols: &[&str]) -> String {
    json!({"type": kind, "subscriptions": [{"name": "l2", "symbols": symbols}]}).to_string()
}

impl Venue for GeminiVenue {
    type State = HashMap<String, UnsequencedBook>;

    fn instruments(&self) -> &Instruments {
        &self.symbols
    }

    fn connection(&self) -> &Connection {
        &self.connection
    }

    fn connection_mut(&mut self) -> &mut Connection {
        &mut self.connection
    }

    fn url(&self) -> String {
        format!("{}/v2/marketdata", self.ws_url.trim_end_matches('/'))
    }

    fn subscriptions(&self) -> Vec<String> {
        vec![l2("subscribe", &self.symbols.sorted_ids())]
    }

    fn books<'a>(&self, books: &'a Self::State) -> Vec<(&'a str, &'a L2Book, u64)> {
        crate::book::synced_books(books)
    }

    fn on_frame(&self, books: &mut Self::State, text: &str, now: i64, cx: &mut Context<'_>) -> Result<(), Reject> {
        match parse(&self.symbols, text, now)? {
            Frame::Trade(t) => cx.emit_live(MarketEvent::Trade(t), now),
            Frame::Book(message) => {
                cx.touch(&message.instrument, now);
                let id = message.instrument.venue_symbol.clone();
                let sync = books.entry(id.clone()).or_default();
                let outcome = sync.on_update(message.snapshot, &message.bids, &message.asks);
                let change = BookChange {
                    instrument: &message.instrument,
                    snapshot: message.snapshot,
                    bids: &message.bids,
                    asks: &message.asks,
                    first_sequence: sync.sequence(),
                    sequence: sync.sequence(),
                    prev_sequence: sync.sequence().saturating_sub(1),
                    ts_exchange_us: now,
                };
                if cx.book(&sync.book, &change, outcome) {
                    // A fresh subscription brings a fresh book.
                    cx.send(l2("unsubscribe", &[&id]));
                    cx.send(l2("subscribe", &[&id]));
                }
            }
            Frame::Control => {}
        }
        Ok(())
    }
}
