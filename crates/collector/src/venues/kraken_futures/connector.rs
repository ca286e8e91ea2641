//! The live Kraken Futures connection: one WebSocket subscribing `trade`
//! and `book` for every product, books checked by `seq` and resubscribed
//! on a gap, the BBO published from the checked book, and a `ping` in
//! time for the venue's one-minute idle limit. The session loop is
//! [`crate::venues::driver`].

use std::collections::HashMap;
use std::time::Duration;

use moat_common_types::MarketEvent;
use moat_common_types::model::{Bbo, Level};
use serde_json::json;

use super::parse::{BookMessage, Frame, parse};
use crate::book::L2Book;
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

/// One product's book, checked by `seq`.
#[derive(Debug, Default)]
pub struct ProductBook {
    pub book: L2Book,
    /// The `seq` of the last applied message; `None` until a snapshot.
    last: Option<u64>,
}

impl ProductBook {
    fn on_message(&mut self, message: &BookMessage) -> BookOutcome {
        if message.snapshot {
            self.book.clear();
        } else {
            match self.last {
                None => return BookOutcome::Stale,
                Some(last) if message.seq <= last => return BookOutcome::Stale,
                Some(last) if message.seq != last + 1 => {
                    self.book.clear();
                    self.last = None;
                    return BookOutcome::Gap {
                        reason: "sequence_gap",
                        detail: format!("seq {} after {last}", message.seq),
                    };
                }
                Some(_) => {}
            }
        }
        self.book.apply(&message.bids, &message.asks);
        if self.book.is_crossed() {
            let detail = format!("{:?} over {:?}", self.book.best_bid(), self.book.best_ask());
            self.book.clear();
            self.last = None;
            return BookOutcome::Gap {
                reason: "crossed",
                detail,
            };
        }
        self.last = Some(message.seq);
        BookOutcome::Applied
    }
}

fn feed(event: &str, feed: &str, ids: &[&str]) -> String {
    json!({"event": event, "feed": feed, "product_ids": ids}).to_string()
}

impl Venue for KrakenFuturesVenue {
    type State = HashMap<String, ProductBook>;

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
        ["trade", "book"].map(|name| feed("subscribe", name, &ids)).to_vec()
    }

    fn ping(&self) -> Option<(Duration, &'static str)> {
        Some((PING_EVERY, r#"{"event":"ping"}"#))
    }

    fn books<'a>(&self, books: &'a Self::State) -> Vec<(&'a str, &'a L2Book, u64)> {
        books
            .iter()
            .filter_map(|(id, sync)| Some((id.as_str(), &sync.book, sync.last?)))
            .collect()
    }

    fn on_frame(&self, books: &mut Self::State, text: &str, now: i64, cx: &mut Context<'_>) -> Result<(), Reject> {
        match parse(&self.symbols, text, now)? {
            Frame::Trade(t) => cx.emit_live(MarketEvent::Trade(t), now),
            Frame::Book(message) => {
                cx.touch(&message.instrument, now);
                let id = message.instrument.venue_symbol.clone();
                let sync = books.entry(id.clone()).or_default();
                let top_before = (sync.book.best_bid(), sync.book.best_ask());
                let outcome = sync.on_message(&message);
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
            Frame::Control => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use moat_common_types::{Decimal, Instrument, Market};

    fn message(snapshot: bool, seq: u64, bids: &[(i64, i64)], asks: &[(i64, i64)]) -> BookMessage {
        let levels = |l: &[(i64, i64)]| {
            l.iter()
                .map(|(p, q)| Level {
                    price: Decimal::from(*p),
                    qty: Decimal::from(*q),
                })
                .collect()
        };
        BookMessage {
            instrument: Instrument::new("kraken-futures", Market::Perp, "BTC-USD-PERP", "PI_XBTUSD"),
            snapshot,
            bids: levels(bids),
            asks: levels(asks),
            seq,
            ts_exchange_us: 0,
        }
    }

    #[test]
    fn updates_chain_by_seq_and_a_gap_invalidates() {
        let mut sync = ProductBook::default();
        assert_eq!(sync.on_message(&message(false, 4, &[(99, 1)], &[])), BookOutcome::Stale);
        assert_eq!(
            sync.on_message(&message(true, 5, &[(99, 1)], &[(101, 1)])),
            BookOutcome::Applied
        );
        assert_eq!(sync.on_message(&message(false, 6, &[(100, 1)], &[])), BookOutcome::Applied);
        assert_eq!(sync.on_message(&message(false, 6, &[], &[])), BookOutcome::Stale);
        let gap = sync.on_message(&message(false, 8, &[], &[]));
        assert!(matches!(gap, BookOutcome::Gap { reason: "sequence_gap", .. }), "{gap:?}");
        assert_eq!(sync.on_message(&message(false, 9, &[], &[])), BookOutcome::Stale);
    }
}
