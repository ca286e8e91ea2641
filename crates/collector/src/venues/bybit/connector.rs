//! The live Bybit connection: one WebSocket per category
//! (`/v5/public/spot`, `/v5/public/linear`), topics subscribed ten at a
//! time, a `ping` every 20 s, books resubscribed on a gap, BBO from the
//! synced book, funding and open interest from `tickers`. The session loop
//! is [`crate::venues::driver`].

use std::collections::HashMap;
use std::time::Duration;

use moat_common_types::model::{Bbo, Funding, Level, OpenInterest};
use moat_common_types::{Decimal, MarketEvent};
use serde_json::json;

use super::Category;
use super::parse::{Frame, Ticker, parse};
use crate::book::{L2Book, SequencedBook};
use crate::venues::driver::{Context, Venue};
use crate::venues::{BookChange, BookOutcome, Connection, Instruments, Reject};

/// Bybit drops a connection that sends nothing for 30 s.
const PING_EVERY: Duration = Duration::from_secs(20);
/// Arguments per subscription request (the spot endpoint's limit).
const ARGS_PER_REQUEST: usize = 10;
/// The book depth subscribed (`orderbook.200`, 100 ms on linear).
const DEPTH: u32 = 200;

/// Where and what to connect.
#[derive(Debug, Clone)]
pub struct BybitVenue {
    pub category: Category,
    pub symbols: Instruments,
    /// e.g. `wss://stream.bybit.com`; the category's path is added.
    pub ws_url: String,
    pub connection: Connection,
}

impl BybitVenue {
    /// The topics of every instrument: trades and books, and on linear
    /// perpetuals tickers (funding, open interest) and liquidations.
    pub fn topics(&self) -> Vec<String> {
        let mut topics = Vec::new();
        for symbol in self.symbols.sorted_ids() {
            topics.push(format!("publicTrade.{symbol}"));
            topics.push(format!("orderbook.{DEPTH}.{symbol}"));
            if self.category == Category::Linear {
                topics.push(format!("tickers.{symbol}"));
                topics.push(format!("allLiquidation.{symbol}"));
            }
        }
        topics
    }
}

/// One connection's books, and each instrument's ticker as the deltas have
/// built it.
#[derive(Default)]
pub struct State {
    books: HashMap<String, SequencedBook>,
    tickers: HashMap<String, Ticker>,
}

impl Venue for BybitVenue {
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
        format!(
            "{}/v5/public/{}",
            self.ws_url.trim_end_matches('/'),
            self.category.name()
        )
    }

    fn subscriptions(&self) -> Vec<String> {
        self.topics()
            .chunks(ARGS_PER_REQUEST)
            .map(|args| json!({"op": "subscribe", "args": args}).to_string())
            .collect()
    }

    fn ping(&self) -> Option<(Duration, &'static str)> {
        Some((PING_EVERY, r#"{"op":"ping"}"#))
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
            Frame::Liquidations(liquidations) => {
                for l in liquidations {
                    cx.emit(MarketEvent::Liquidation(l));
                }
            }
            Frame::Ticker {
                instrument,
                ticker,
                ts_exchange_us,
            } => {
                let merged = state.tickers.entry(instrument.venue_symbol.clone()).or_default();
                let funding_changed = ticker.funding_rate.is_some() || ticker.mark_price.is_some();
                merge(merged, &ticker);
                if let (true, Some(funding_rate), Some(mark_price)) =
                    (funding_changed, merged.funding_rate, merged.mark_price)
                {
                    cx.emit(MarketEvent::Funding(Funding {
                        instrument: instrument.clone(),
                        funding_rate,
                        mark_price,
                        index_price: merged.index_price,
                        next_funding_ms: merged.next_funding_ms.unwrap_or_default(),
                        ts_exchange_us,
                        ts_recv_us: now,
                    }));
                }
                if let Some(open_interest) = ticker.open_interest {
                    cx.emit(MarketEvent::OpenInterest(OpenInterest {
                        instrument,
                        open_interest,
                        ts_exchange_us,
                        ts_recv_us: now,
                    }));
                }
            }
            Frame::Book(message) => {
                cx.touch(&message.instrument, now);
                let id = message.instrument.venue_symbol.clone();
                let sync = state.books.entry(id.clone()).or_default();
                let top_before = (sync.book.best_bid(), sync.book.best_ask());
                let outcome = sync.on_update(message.snapshot, message.update_id, None, &message.bids, &message.asks);
                let applied = outcome == BookOutcome::Applied;
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
                    let topic = format!("orderbook.{DEPTH}.{id}");
                    for op in ["unsubscribe", "subscribe"] {
                        cx.send(json!({"op": op, "args": [topic]}).to_string());
                    }
                }
                // The venue's own BBO is the top of this validated book.
                if let (true, Some(bid), Some(ask)) = (applied, sync.book.best_bid(), sync.book.best_ask())
                    && top_before != (Some(bid), Some(ask))
                {
                    cx.emit_live(
                        MarketEvent::Bbo(Bbo {
                            instrument: message.instrument.clone(),
                            sequence: sync.sequence(),
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

fn level((price, qty): (Decimal, Decimal)) -> Level {
    Level { price, qty }
}

/// A ticker delta carries only what changed: the rest stays.
fn merge(into: &mut Ticker, delta: &Ticker) {
    let Ticker {
        mark_price,
        index_price,
        funding_rate,
        next_funding_ms,
        open_interest,
    } = delta;
    into.mark_price = mark_price.or(into.mark_price);
    into.index_price = index_price.or(into.index_price);
    into.funding_rate = funding_rate.or(into.funding_rate);
    into.next_funding_ms = next_funding_ms.or(into.next_funding_ms);
    into.open_interest = open_interest.or(into.open_interest);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn venue(ids: &[&str]) -> BybitVenue {
        let symbols = super::super::symbols("bybit", ids);
        BybitVenue {
            category: super::super::category(&symbols),
            symbols,
            ws_url: "wss://stream.bybit.com/".into(),
            connection: Connection {
                stale_after: Duration::from_secs(30),
                max_connection_age: Duration::from_secs(3600),
                backoff_max: Duration::from_secs(30),
                limiter: crate::venues::limits::ConnectionLimiter::for_kind(crate::venues::Kind::Bybit),
                snapshot_every: None,
                recorder: None,
            },
        }
    }

    #[test]
    fn each_category_has_its_endpoint_and_requests_hold_ten_topics() {
        let ids: Vec<String> = (0..6).map(|i| format!("linear:S{i}USDT")).collect();
        let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
        let linear = venue(&refs);
        assert_eq!(linear.url(), "wss://stream.bybit.com/v5/public/linear");
        let requests = Venue::subscriptions(&linear);
        assert_eq!(requests.len(), 3, "24 topics in requests of 10");
        assert!(requests[0].contains("publicTrade.S0USDT") && requests[0].contains("tickers.S0USDT"));
        let spot = venue(&["spot:BTCUSDT"]);
        assert_eq!(spot.url(), "wss://stream.bybit.com/v5/public/spot");
        assert_eq!(spot.topics(), ["publicTrade.BTCUSDT", "orderbook.200.BTCUSDT"]);
    }

    #[test]
    fn a_ticker_delta_keeps_what_it_does_not_carry() {
        let mut ticker = Ticker {
            mark_price: Some(Decimal::ONE),
            funding_rate: Some(Decimal::TEN),
            ..Ticker::default()
        };
        merge(
            &mut ticker,
            &Ticker {
                mark_price: Some(Decimal::TWO),
                ..Ticker::default()
            },
        );
        assert_eq!(
            (ticker.mark_price, ticker.funding_rate),
            (Some(Decimal::TWO), Some(Decimal::TEN))
        );
    }
}
