//! The live BitMEX connection: one WebSocket subscribing `orderBookL2`,
//! `trade`, `quote`, `instrument` and `liquidation` for every symbol, a
//! `ping` every 5 s (BitMEX closes a connection quiet for longer), books
//! kept by level id and resubscribed when a row names an id the book does
//! not hold or the book crosses. The session loop is
//! [`crate::venues::driver`].

use std::collections::HashMap;
use std::time::Duration;

use moat_common_types::model::{Funding, Level, OpenInterest};
use moat_common_types::{Decimal, MarketEvent, Side};
use serde_json::json;

use super::parse::{Action, BookMessage, Frame, InstrumentRow, parse};
use crate::book::L2Book;
use crate::venues::driver::{Context, Venue};
use crate::venues::{BookChange, BookOutcome, Connection, Instruments, Reject};

const PING_EVERY: Duration = Duration::from_secs(5);
/// Topics per subscription request.
const ARGS_PER_REQUEST: usize = 20;

/// Where and what to connect.
#[derive(Debug, Clone)]
pub struct BitmexVenue {
    pub symbols: Instruments,
    /// e.g. `wss://ws.bitmex.com`; `/realtime` is added.
    pub ws_url: String,
    pub connection: Connection,
}

/// One symbol's book: the price of every level id, and the levels.
#[derive(Debug, Default)]
pub struct SymbolBook {
    pub book: L2Book,
    prices: HashMap<u64, (Side, Decimal)>,
    synced: bool,
    applied: u64,
}

impl SymbolBook {
    /// Applies a message; the levels it set (a zero quantity removes) go
    /// into `bids` and `asks` for the delta.
    fn on_message(&mut self, message: &BookMessage, bids: &mut Vec<Level>, asks: &mut Vec<Level>) -> BookOutcome {
        if message.action == Action::Partial {
            self.book.clear();
            self.prices.clear();
            self.synced = true;
        } else if !self.synced {
            return BookOutcome::Stale;
        }
        for row in &message.rows {
            let price = match (message.action, row.price) {
                (Action::Partial | Action::Insert, Some(price)) => {
                    self.prices.insert(row.id, (row.side, price));
                    price
                }
                (_, given) => match (self.prices.get(&row.id), given) {
                    (Some((_, known)), _) => *known,
                    (None, _) => {
                        return self.invalidate(
                            "unknown_level",
                            format!("{:?} of level id {} the book does not hold", message.action, row.id),
                        );
                    }
                },
            };
            if message.action == Action::Delete {
                self.prices.remove(&row.id);
            }
            let level = Level { price, qty: row.size };
            match row.side {
                Side::Buy => bids.push(level),
                Side::Sell => asks.push(level),
            }
        }
        self.book.apply(bids, asks);
        if self.book.is_crossed() {
            let detail = format!("{:?} over {:?}", self.book.best_bid(), self.book.best_ask());
            return self.invalidate("crossed", detail);
        }
        self.applied += 1;
        BookOutcome::Applied
    }

    fn invalidate(&mut self, reason: &'static str, detail: String) -> BookOutcome {
        self.book.clear();
        self.prices.clear();
        self.synced = false;
        BookOutcome::Gap { reason, detail }
    }
}

/// One connection's books, and each symbol's latest funding and mark price.
#[derive(Default)]
pub struct State {
    books: HashMap<String, SymbolBook>,
    instruments: HashMap<String, InstrumentRow>,
}

fn op(op: &str, args: &[String]) -> String {
    json!({"op": op, "args": args}).to_string()
}

impl Venue for BitmexVenue {
    type State = State;

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
        format!("{}/realtime", self.ws_url.trim_end_matches('/'))
    }

    fn subscriptions(&self) -> Vec<String> {
        let topics: Vec<String> = self
            .symbols
            .sorted_ids()
            .into_iter()
            .flat_map(|id| ["orderBookL2", "trade", "quote", "instrument", "liquidation"].map(|t| format!("{t}:{id}")))
            .collect();
        topics.chunks(ARGS_PER_REQUEST).map(|args| op("subscribe", args)).collect()
    }

    fn ping(&self) -> Option<(Duration, &'static str)> {
        Some((PING_EVERY, "ping"))
    }

    fn books<'a>(&self, state: &'a State) -> Vec<(&'a str, &'a L2Book, u64)> {
        crate::book::synced_books(&state.books)
    }

    fn on_frame(&self, state: &mut State, text: &str, now: i64, cx: &mut Context<'_>) -> Result<(), Reject> {
        match parse(&self.symbols, text, now)? {
            Frame::Trades(trades) => {
                for t in trades {
                    cx.emit_live(MarketEvent::Trade(t), now);
                }
            }
            Frame::Bbos(bbos) => {
                for b in bbos {
                    cx.emit_live(MarketEvent::Bbo(b), now);
                }
            }
            Frame::Liquidations(liquidations) => {
                for l in liquidations {
                    cx.emit(MarketEvent::Liquidation(l));
                }
            }
            Frame::Instruments(rows) => {
                for (instrument, row) in rows {
                    let ts = row.ts_exchange_us.unwrap_or(now);
                    let merged = state.instruments.entry(instrument.venue_symbol.clone()).or_default();
                    let funding_changed = row.funding_rate.is_some() || row.mark_price.is_some();
                    merged.funding_rate = row.funding_rate.or(merged.funding_rate);
                    merged.mark_price = row.mark_price.or(merged.mark_price);
                    merged.index_price = row.index_price.or(merged.index_price);
                    merged.next_funding_us = row.next_funding_us.or(merged.next_funding_us);
                    if let (true, Some(funding_rate), Some(mark_price)) =
                        (funding_changed, merged.funding_rate, merged.mark_price)
                    {
                        cx.emit(MarketEvent::Funding(Funding {
                            instrument: instrument.clone(),
                            funding_rate,
                            mark_price,
                            index_price: merged.index_price,
                            next_funding_ms: merged.next_funding_us.unwrap_or_default() / 1000,
                            ts_exchange_us: ts,
                            ts_recv_us: now,
                        }));
                    }
                    if let Some(open_interest) = row.open_interest {
                        cx.emit(MarketEvent::OpenInterest(OpenInterest {
                            instrument,
                            open_interest,
                            ts_exchange_us: ts,
                            ts_recv_us: now,
                        }));
                    }
                }
            }
            Frame::Books(messages) => {
                for message in messages {
                    cx.touch(&message.instrument, now);
                    let id = message.instrument.venue_symbol.clone();
                    let sync = state.books.entry(id.clone()).or_default();
                    let (mut bids, mut asks) = (Vec::new(), Vec::new());
                    let outcome = sync.on_message(&message, &mut bids, &mut asks);
                    let change = BookChange {
                        instrument: &message.instrument,
                        snapshot: message.action == Action::Partial,
                        bids: &bids,
                        asks: &asks,
                        first_sequence: sync.applied,
                        sequence: sync.applied,
                        prev_sequence: sync.applied.saturating_sub(1),
                        ts_exchange_us: now,
                    };
                    if cx.book(&sync.book, &change, outcome) {
                        // A fresh subscription brings a fresh partial.
                        let topic = [format!("orderBookL2:{id}")];
                        cx.send(op("unsubscribe", &topic));
                        cx.send(op("subscribe", &topic));
                    }
                }
            }
            Frame::Control => {}
        }
        Ok(())
    }
}

impl crate::book::SyncedBook for SymbolBook {
    fn synced(&self) -> Option<(&L2Book, u64)> {
        self.synced.then_some((&self.book, self.applied))
    }
}

#[cfg(test)]
mod tests {
    use super::super::parse::LevelRow;
    use super::*;
    use moat_common_types::{Instrument, Market};

    fn message(action: Action, rows: &[(u64, Side, Option<i64>, i64)]) -> BookMessage {
        BookMessage {
            instrument: Instrument::new("bitmex", Market::Perp, "BTC-USD-PERP", "XBTUSD"),
            action,
            rows: rows
                .iter()
                .map(|(id, side, price, size)| LevelRow {
                    id: *id,
                    side: *side,
                    price: price.map(Decimal::from),
                    size: Decimal::from(*size),
                })
                .collect(),
        }
    }

    #[test]
    fn updates_and_deletes_find_their_price_by_id() {
        let mut sync = SymbolBook::default();
        let (mut bids, mut asks) = (Vec::new(), Vec::new());
        let mut apply = |sync: &mut SymbolBook, m: BookMessage| {
            bids.clear();
            asks.clear();
            sync.on_message(&m, &mut bids, &mut asks)
        };
        assert_eq!(apply(&mut sync, message(Action::Update, &[(1, Side::Buy, None, 5)])), BookOutcome::Stale);
        let partial = message(Action::Partial, &[(1, Side::Buy, Some(99), 10), (2, Side::Sell, Some(101), 3)]);
        assert_eq!(apply(&mut sync, partial), BookOutcome::Applied);
        assert_eq!(apply(&mut sync, message(Action::Update, &[(1, Side::Buy, None, 7)])), BookOutcome::Applied);
        assert_eq!(sync.book.best_bid(), Some((Decimal::from(99), Decimal::from(7))));
        assert_eq!(apply(&mut sync, message(Action::Delete, &[(1, Side::Buy, None, 0)])), BookOutcome::Applied);
        assert_eq!(sync.book.best_bid(), None);
        let unknown = apply(&mut sync, message(Action::Update, &[(9, Side::Buy, None, 1)]));
        assert!(matches!(unknown, BookOutcome::Gap { reason: "unknown_level", .. }), "{unknown:?}");
    }
}
