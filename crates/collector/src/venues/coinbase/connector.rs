//! The live Coinbase Exchange connection: one WebSocket feed with
//! `level2_batch`, `ticker`, `matches` and `heartbeat` for every product;
//! a crossed book resubscribes its product's level2 for a fresh snapshot.
//! The session loop is [`crate::venues::driver`].

use std::collections::HashMap;

use moat_common_types::MarketEvent;
use serde_json::json;

use super::Symbols;
use super::book::CoinbaseBook;
use super::parse::{Frame, parse};
use crate::book::L2Book;
use crate::venues::driver::{Context, Venue};
use crate::venues::{BookChange, Connection, Reject};

/// The book channel: `level2_batch` is public; `level2` needs authentication
/// on the current feed and carries the same messages.
const BOOK_CHANNEL: &str = "level2_batch";

/// Where and what to connect.
#[derive(Debug, Clone)]
pub struct CoinbaseVenue {
    pub symbols: Symbols,
    /// e.g. `wss://ws-feed.exchange.coinbase.com`.
    pub ws_url: String,
    pub connection: Connection,
}

impl CoinbaseVenue {
    pub fn subscription(&self) -> serde_json::Value {
        json!({
            "type": "subscribe",
            "product_ids": self.symbols.sorted_ids(),
            "channels": [BOOK_CHANNEL, "ticker", "matches", "heartbeat"],
        })
    }
}

impl Venue for CoinbaseVenue {
    type State = HashMap<String, CoinbaseBook>;

    fn instruments(&self) -> &Symbols {
        &self.symbols
    }

    fn connection(&self) -> &Connection {
        &self.connection
    }

    fn connection_mut(&mut self) -> &mut Connection {
        &mut self.connection
    }

    fn url(&self) -> String {
        self.ws_url.clone()
    }

    fn subscriptions(&self) -> Vec<String> {
        vec![self.subscription().to_string()]
    }

    fn books<'a>(&self, books: &'a Self::State) -> Vec<(&'a str, &'a L2Book, u64)> {
        crate::book::synced_books(books)
    }

    fn on_frame(&self, books: &mut Self::State, text: &str, now: i64, cx: &mut Context<'_>) -> Result<(), Reject> {
        match parse(&self.symbols, text, now)? {
            Frame::Trade(t) => cx.emit_live(MarketEvent::Trade(t), now),
            Frame::Bbo(b) => cx.emit_live(MarketEvent::Bbo(b), now),
            Frame::Heartbeat(instrument) => cx.touch(&instrument, now),
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
                    ts_exchange_us: message.ts_exchange_us,
                };
                if cx.book(&sync.book, &change, outcome) {
                    for kind in ["unsubscribe", "subscribe"] {
                        cx.send(json!({"type": kind, "product_ids": [id], "channels": [BOOK_CHANNEL]}).to_string());
                    }
                }
            }
            Frame::Control => {}
        }
        Ok(())
    }
}
