//! The live Kraken connection (WebSocket v1): one connection subscribing
//! `trade`, `ticker` and `book` (depth 1000) for every pair, a `ping`
//! event every 20 s, and a book resubscribed when its checksum or order
//! fails. The session loop is [`crate::venues::driver`].

use std::collections::HashMap;
use std::time::Duration;

use moat_common_types::MarketEvent;
use serde_json::json;

use super::book::KrakenBook;
use super::parse::{Frame, parse};
use crate::book::L2Book;
use crate::venues::driver::{Context, Venue};
use crate::venues::{BookChange, Connection, Instruments, Reject};

/// Kraken sends a heartbeat every second when nothing else is sent; the
/// ping keeps intermediaries from closing a quiet connection.
const PING_EVERY: Duration = Duration::from_secs(20);
/// The book depth subscribed.
const DEPTH: u32 = 1000;

/// Where and what to connect.
#[derive(Debug, Clone)]
pub struct KrakenVenue {
    pub symbols: Instruments,
    /// e.g. `wss://ws.kraken.com`.
    pub ws_url: String,
    pub connection: Connection,
}

impl KrakenVenue {
    fn subscribe(pairs: &[&str], subscription: serde_json::Value, event: &str) -> String {
        json!({"event": event, "pair": pairs, "subscription": subscription}).to_string()
    }

    fn book_subscription() -> serde_json::Value {
        json!({"name": "book", "depth": DEPTH})
    }
}

impl Venue for KrakenVenue {
    type State = HashMap<String, KrakenBook>;

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
        self.ws_url.clone()
    }

    fn subscriptions(&self) -> Vec<String> {
        let pairs = self.symbols.sorted_ids();
        [
            json!({"name": "trade"}),
            json!({"name": "ticker"}),
            KrakenVenue::book_subscription(),
        ]
        .into_iter()
        .map(|subscription| KrakenVenue::subscribe(&pairs, subscription, "subscribe"))
        .collect()
    }

    fn ping(&self) -> Option<(Duration, &'static str)> {
        Some((PING_EVERY, r#"{"event":"ping"}"#))
    }

    fn books<'a>(&self, books: &'a Self::State) -> Vec<(&'a str, &'a L2Book, u64)> {
        crate::book::synced_books(books)
    }

    fn on_frame(&self, books: &mut Self::State, text: &str, now: i64, cx: &mut Context<'_>) -> Result<(), Reject> {
        match parse(&self.symbols, text, now)? {
            Frame::Trades(trades) => {
                for t in trades {
                    cx.emit_live(MarketEvent::Trade(t), now);
                }
            }
            Frame::Bbo(b) => cx.emit_live(MarketEvent::Bbo(b), now),
            Frame::Book(message) => {
                cx.touch(&message.instrument, now);
                let pair = message.instrument.venue_symbol.clone();
                let sync = books.entry(pair.clone()).or_default();
                let outcome = sync.on_message(&message);
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
                    // A fresh subscription brings a fresh snapshot.
                    for event in ["unsubscribe", "subscribe"] {
                        cx.send(KrakenVenue::subscribe(
                            &[&pair],
                            KrakenVenue::book_subscription(),
                            event,
                        ));
                    }
                }
            }
            Frame::Control => {}
        }
        Ok(())
    }
}

impl crate::book::SyncedBook for super::book::KrakenBook {
    fn synced(&self) -> Option<(&L2Book, u64)> {
        self.is_synced().then_some((&self.book, self.sequence()))
    }
}
