//! The live Kraken Futures connection: one WebSocket subscribing `trade`,
//! `book` and `ticker` (funding, open interest) for every product, books checked by `seq` and resubscribed
//! on a gap, the BBO published from the checked book, and a `ping` in
//! time for the venue's one-minute idle limit. The session loop is
//! [`crate::venues::driver`].

use std::collections::HashMap;
use std::time::Duration;

use moat_common_types::MarketEvent;
use moat_common_types::model::{Bbo, Level};
use serde_json::json;

use super::parse::{Frame, parse};
use crate::book::{L2Book, SequencedBook};
use crate::venues::driver::{Context, Venue};
use crate::venues::{BookChange, BookOutcome, Connection, Instruments, Reject};

/// Kraken Futures closes a connection that sends nothing for a minute.
const PING_EVERY: Duration = Duration::from_secs(30);

/// Where and what to connect.
#[derive(Debug, Clone)]
pub struct KrakenFuturesVenue {
    pub symbols: Instruments,
    /// e.g. `wss://futures.kraken.com`; `/ws/v1` is added.
    pub ws_url: String,
    pub connection: Connection,
}

fn feed(event: &str, feed: &str, ids: &[&str]) -> String {
    json!({"event": event, "feed": feed, "product_ids": ids}).to_string()
}

impl Venue for KrakenFuturesVenue {
    type State = HashMap<String, SequencedBook>;

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
        format!("{}/ws/v1", self.ws_url.trim_end_matches('/'))
    }

    fn subscriptions(&self) -> Vec<String> {
        let ids = self.symbols.sorted_ids();
        let mut requests = ["trade", "book", "ticker"].map(|name| feed("subscribe", name, &ids)).to_vec();
        // A heartbeat every 5 s keeps a quiet connection from looking stale.
        requests.push(json!({"event": "subscribe", "feed": "heartbeat"}).to_string());
        requests
    }

    fn ping(&self) -> Option<(Duration, &'static str)> {
        Some((PING_EVERY, r#"{"event":"ping"}"#))
    }

    fn books<'a>(&self, books: &'a Self::State) -> Vec<(&'a str, &'a L2Book, u64)> {
        crate::book::synced_books(books)
    }

    fn on_frame(&self, books: &mut Self::State, text: &str, now: i64, cx: &mut Context<'_>) -> Result<(), Reject> {
        match parse(&self.symbols, text, now)? {
            Frame::Trade(t, liquidation) => {
                cx.emit_live(MarketEvent::Trade(t), now);
                if let Some(l) = liquidation {
                    cx.emit(MarketEvent::Liquidation(l));
                }
            }
            Frame::Book(message) => {
                cx.touch(&message.instrument, now);
                let id = message.instrument.venue_symbol.clone();
                let sync = books.entry(id.clone()).or_default();
                let top_before = (sync.book.best_bid(), sync.book.best_ask());
                let outcome = sync.on_update(message.snapshot, message.seq, None, &message.bids, &message.asks);
                let applied = outcome == BookOutcome::Applied;
                let change = BookChange {
                    instrument: &message.instrument,
                    snapshot: message.snapshot,
                    bids: &message.bids,
                    asks: &message.asks,
                    first_sequence: message.seq,
                    sequence: message.seq,
                    prev_sequence: message.seq.saturating_sub(1),
                    ts_exchange_us: message.ts_exchange_us,
                };
                if cx.book(&sync.book, &change, outcome) {
                    for event in ["unsubscribe", "subscribe"] {
                        cx.send(feed(event, "book", &[&id]));
                    }
                }
                if let (true, Some(bid), Some(ask)) = (applied, sync.book.best_bid(), sync.book.best_ask())
                    && top_before != (Some(bid), Some(ask))
                {
                    let level = |(price, qty)| Level { price, qty };
                    cx.emit_live(
                        MarketEvent::Bbo(Bbo {
                            instrument: message.instrument.clone(),
                            sequence: message.seq,
                            bid: level(bid),
                            ask: level(ask),
                            ts_exchange_us: message.ts_exchange_us,
                            ts_recv_us: now,
                        }),
                        now,
                    );
                }
            }
            Frame::Ticker { funding, open_interest } => {
                if let Some(f) = funding {
                    cx.emit(MarketEvent::Funding(f));
                }
                if let Some(o) = open_interest {
                    cx.emit(MarketEvent::OpenInterest(o));
                }
            }
            Frame::Control => {}
        }
        Ok(())
    }
}
