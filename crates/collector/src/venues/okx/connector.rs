//! The live OKX connection: one WebSocket to the v5 public endpoint,
//! subscriptions for every instrument, `ping` heartbeats, checksum-validated
//! books resubscribed on a gap; the session loop is [`crate::venues::driver`].

use std::collections::HashMap;
use std::time::Duration;

use moat_common_types::{Market, MarketEvent};
use serde_json::json;

use super::Symbols;
use super::book::OkxBook;
use super::parse::{Frame, parse};
use crate::book::L2Book;
use crate::venues::driver::{Context, Venue};
use crate::venues::{BookChange, Connection, Reject};

/// OKX closes a connection that sends nothing for 30 s: ping well before.
const PING_EVERY: Duration = Duration::from_secs(20);

/// Where and what to connect.
#[derive(Debug, Clone)]
pub struct OkxVenue {
    pub symbols: Symbols,
    /// e.g. `wss://ws.okx.com:8443/ws/v5/public`.
    pub ws_url: String,
    pub connection: Connection,
}

impl OkxVenue {
    /// The subscription arguments: trades, tickers and books for every
    /// instrument; funding and open interest for swaps and futures; mark
    /// price and open interest for options, and the greeks of each option
    /// family (`opt-summary` per `BTC-USD`).
    pub fn subscriptions(&self) -> Vec<serde_json::Value> {
        let mut args = Vec::new();
        let mut families = std::collections::BTreeSet::new();
        for id in self.symbols.sorted_ids() {
            for channel in ["trades", "tickers", "books"] {
                args.push(json!({"channel": channel, "instId": id}));
            }
            let market = self.symbols.get(id).map(|i| i.market);
            if matches!(market, Some(Market::Perp | Market::Option)) {
                args.push(json!({"channel": "mark-price", "instId": id}));
            }
            if market == Some(Market::Perp) {
                args.push(json!({"channel": "funding-rate", "instId": id}));
            }
            if market.is_some_and(|m| m != Market::Spot) {
                args.push(json!({"channel": "open-interest", "instId": id}));
            }
            if market == Some(Market::Option) {
                // `BTC-USD-220624-20000-C` is of the family `BTC-USD`.
                let family: Vec<&str> = id.splitn(3, '-').take(2).collect();
                families.insert(family.join("-"));
            }
        }
        for family in families {
            args.push(json!({"channel": "opt-summary", "instFamily": family}));
        }
        args
    }
}

/// One connection's books, and the latest mark price and funding per
/// instrument (OKX sends them on separate channels; moat's funding event
/// carries both).
#[derive(Default)]
pub struct State {
    books: HashMap<String, OkxBook>,
    marks: HashMap<String, moat_common_types::Decimal>,
    fundings: HashMap<String, moat_common_types::model::Funding>,
}

impl Venue for OkxVenue {
    type State = State;

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
        vec![json!({"op": "subscribe", "args": OkxVenue::subscriptions(self)}).to_string()]
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
            Frame::Bbo(b) => cx.emit_live(MarketEvent::Bbo(b), now),
            Frame::Funding(mut f) => {
                // Funding events carry the latest mark price, as Binance's
                // markPrice stream does.
                let id = &f.instrument.venue_symbol;
                f.mark_price = state.marks.get(id).copied().unwrap_or(f.mark_price);
                state.fundings.insert(id.clone(), f.clone());
                cx.emit(MarketEvent::Funding(f));
            }
            Frame::MarkPrice {
                instrument,
                mark_price,
                ts_exchange_us,
            } => {
                state.marks.insert(instrument.venue_symbol.clone(), mark_price);
                if let Some(f) = state.fundings.get_mut(&instrument.venue_symbol) {
                    f.mark_price = mark_price;
                    f.ts_exchange_us = ts_exchange_us;
                    f.ts_recv_us = now;
                    cx.emit(MarketEvent::Funding(f.clone()));
                }
            }
            Frame::OpenInterest(o) => cx.emit(MarketEvent::OpenInterest(o)),
            Frame::OptionSummary(tickers) => {
                // An option's ticker waits for its first mark price.
                for mut t in tickers {
                    if let Some(mark) = state.marks.get(&t.instrument.venue_symbol) {
                        t.mark_price = *mark;
                        cx.emit_live(MarketEvent::OptionTicker(t), now);
                    }
                }
            }
            Frame::Book(message) => {
                cx.touch(&message.instrument, now);
                let id = message.instrument.venue_symbol.clone();
                let sync = state.books.entry(id.clone()).or_default();
                let outcome = sync.on_message(&message);
                let change = BookChange {
                    instrument: &message.instrument,
                    snapshot: message.snapshot,
                    bids: &message.bids,
                    asks: &message.asks,
                    first_sequence: sync.sequence(),
                    sequence: sync.sequence(),
                    prev_sequence: message.prev_seq_id.map_or(0, |p| p.max(0) as u64),
                    ts_exchange_us: message.ts_exchange_us,
                };
                if cx.book(&sync.book, &change, outcome) {
                    // A fresh subscription brings a fresh snapshot.
                    let arg = json!([{"channel": "books", "instId": id}]);
                    for op in ["unsubscribe", "subscribe"] {
                        cx.send(json!({"op": op, "args": arg}).to_string());
                    }
                }
            }
            Frame::Control => {}
        }
        Ok(())
    }
}

impl crate::book::SyncedBook for super::book::OkxBook {
    fn synced(&self) -> Option<(&L2Book, u64)> {
        self.is_synced().then_some((&self.book, self.sequence()))
    }
}
