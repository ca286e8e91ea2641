//! The live Binance connection: a combined WebSocket stream, REST depth
//! snapshots per symbol joined to the diffs, open interest polled over REST
//! (futures), and a gap event when aggregate trade ids jump. The session
//! loop is [`crate::venues::driver`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use moat_common_types::model::{BookSnapshot, Gap};
use moat_common_types::{Market, MarketEvent, now_us};

use super::book::BookSync;
use super::parse::{DepthDiff, Frame, parse, parse_open_interest, parse_snapshot};
use super::{Flavor, Symbols};
use crate::book::L2Book;
use crate::config::VenueConfig;
use crate::venues::driver::{Answer, Connector, Context, Request, Venue};
use crate::venues::{BookChange, BookOutcome, Connection, Instruments, Reject, SessionError, TradeIds};

/// What a REST request is for.
const DEPTH: &str = "depth";
const OPEN_INTEREST: &str = "open_interest";

/// Where and what to connect.
#[derive(Debug, Clone)]
pub struct BinanceVenue {
    pub symbols: Symbols,
    /// e.g. `wss://stream.binance.com:9443` or `wss://fstream.binance.com`.
    pub ws_url: String,
    /// e.g. `https://api.binance.com` or `https://fapi.binance.com`.
    pub rest_url: String,
    /// Binance closes connections after 24 h: `max_connection_age` stays below.
    pub connection: Connection,
    /// How often open interest is polled over REST (futures only).
    pub open_interest_every: Option<Duration>,
    /// The newest trade id per symbol: outlives a connection, and is seeded
    /// from the stream at start so a restart's missed trades are found too.
    pub trade_ids: Arc<TradeIds>,
}

impl BinanceVenue {
    /// The connector of a configured Binance venue (the registry's entry).
    pub fn boxed(
        config: &VenueConfig,
        flavor: Flavor,
        instruments: Instruments,
        connection: Connection,
    ) -> Box<dyn Connector> {
        Box::new(BinanceVenue {
            symbols: Symbols { flavor, instruments },
            ws_url: config.ws_url.clone(),
            rest_url: config.rest_url.clone(),
            connection,
            open_interest_every: (!config.open_interest_interval.is_zero()).then_some(config.open_interest_interval),
            trade_ids: Default::default(),
        })
    }

    fn stream_url(&self) -> String {
        let mut streams: Vec<String> = self
            .symbols
            .venue_symbols()
            .flat_map(|s| {
                let s = s.to_ascii_lowercase();
                let mut streams = vec![
                    format!("{s}@aggTrade"),
                    format!("{s}@depth@100ms"),
                    format!("{s}@bookTicker"),
                    format!("{s}@kline_1m"),
                ];
                if self.symbols.flavor.is_derivative() {
                    streams.push(format!("{s}@forceOrder"));
                }
                // Funding and mark price: perpetuals only (a quarterly's
                // stream has no funding rate).
                if self
                    .symbols
                    .get(&s.to_ascii_uppercase())
                    .is_some_and(|i| i.market == Market::Perp)
                {
                    streams.push(format!("{s}@markPrice@1s"));
                }
                streams
            })
            .collect();
        streams.sort();
        format!(
            "{}/stream?streams={}",
            self.ws_url.trim_end_matches('/'),
            streams.join("/")
        )
    }

    fn open_interest(&self, symbol: &str) -> Request {
        Request {
            what: OPEN_INTEREST,
            symbol: symbol.to_owned(),
            url: format!(
                "{}{}/openInterest?symbol={symbol}",
                self.rest_url.trim_end_matches('/'),
                self.symbols.flavor.rest_prefix()
            ),
        }
    }

    fn depth(&self, symbol: &str) -> Request {
        Request {
            what: DEPTH,
            symbol: symbol.to_owned(),
            url: format!(
                "{}{}/depth?symbol={symbol}&limit=1000",
                self.rest_url.trim_end_matches('/'),
                self.symbols.flavor.rest_prefix()
            ),
        }
    }

    /// Publishes what a diff did; true when a new snapshot is needed.
    fn outcome(books: &HashMap<String, BookSync>, cx: &Context<'_>, diff: &DepthDiff, outcome: BookOutcome) -> bool {
        let change = BookChange {
            instrument: &diff.instrument,
            snapshot: false,
            bids: &diff.bids,
            asks: &diff.asks,
            first_sequence: diff.first,
            sequence: diff.last,
            prev_sequence: diff.prev.unwrap_or(diff.first.saturating_sub(1)),
            ts_exchange_us: diff.ts_exchange_us,
        };
        let empty = L2Book::default();
        let book = books.get(&diff.instrument.venue_symbol).map_or(&empty, |s| &s.book);
        cx.book(book, &change, outcome)
    }

    /// Joins a depth snapshot to the diffs buffered while it was fetched.
    fn on_depth(&self, books: &mut HashMap<String, BookSync>, symbol: String, body: &str, cx: &mut Context<'_>) {
        let snapshot = match parse_snapshot(body) {
            Ok(s) => s,
            Err(detail) => {
                let error = SessionError::Answer {
                    url: self.depth(&symbol).url,
                    detail: detail.to_string(),
                };
                return self.snapshot_failed(symbol, &error, cx);
            }
        };
        let Some(instrument) = self.symbols.get(&symbol).cloned() else {
            return;
        };
        let flavor = self.symbols.flavor;
        let sync = books.entry(symbol.clone()).or_insert_with(|| BookSync::new(flavor));
        let buffered = sync.install(&snapshot);
        let now = now_us();
        cx.emit(MarketEvent::BookSnapshot(BookSnapshot {
            instrument: instrument.clone(),
            sequence: snapshot.last_update_id,
            bids: snapshot.bids.clone(),
            asks: snapshot.asks.clone(),
            ts_exchange_us: snapshot.ts_exchange_us.unwrap_or(now),
            ts_recv_us: now,
        }));
        cx.book_top(&instrument, snapshot.last_update_id, &sync.book);
        // The diffs that came while the snapshot was fetched, each published
        // with the book as it stands after it.
        for diff in buffered {
            let outcome = books.get_mut(&symbol).map(|sync| sync.on_diff(&diff));
            if let Some(outcome) = outcome
                && BinanceVenue::outcome(books, cx, &diff, outcome)
            {
                cx.get(self.depth(&symbol), Duration::ZERO);
                break;
            }
        }
    }

    /// A snapshot that failed is asked for again after a second, or what
    /// the venue asked for (a rate limit's Retry-After), or long after a
    /// refusal.
    fn snapshot_failed(&self, symbol: String, error: &SessionError, cx: &mut Context<'_>) {
        let pause = error.pause(Duration::from_secs(1), self.connection.backoff_max);
        cx.metrics
            .session_errors
            .with_label_values(&[cx.exchange, error.reason()])
            .inc();
        tracing::warn!(exchange = cx.exchange, %symbol, %error, retry_in_ms = pause.as_millis() as u64, "snapshot failed, retrying");
        cx.get(self.depth(&symbol), pause);
    }
}

impl Venue for BinanceVenue {
    type State = HashMap<String, BookSync>;

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
        self.stream_url()
    }

    fn subscriptions(&self) -> Vec<String> {
        Vec::new()
    }

    fn poll_every(&self) -> Option<Duration> {
        self.open_interest_every
            .filter(|_| self.symbols.flavor == Flavor::Futures)
    }

    fn trade_ids(&self) -> Option<&TradeIds> {
        Some(self.trade_ids.as_ref())
    }

    fn on_open(&self, _books: &mut Self::State, cx: &mut Context<'_>) {
        for symbol in self.symbols.venue_symbols() {
            cx.get(self.depth(symbol), Duration::ZERO);
        }
    }

    fn on_poll(&self, _books: &mut Self::State, cx: &mut Context<'_>) {
        for symbol in self.symbols.venue_symbols() {
            cx.get(self.open_interest(symbol), Duration::ZERO);
        }
    }

    fn on_answer(&self, books: &mut Self::State, answer: Answer, cx: &mut Context<'_>) {
        let Answer { request, body } = answer;
        match (request.what, body) {
            (DEPTH, Ok(body)) => self.on_depth(books, request.symbol, &body, cx),
            (DEPTH, Err(error)) => self.snapshot_failed(request.symbol, &error, cx),
            (_, Ok(body)) => match parse_open_interest(&self.symbols, &body, now_us()) {
                Ok(oi) => cx.emit(MarketEvent::OpenInterest(oi)),
                Err(error) => {
                    tracing::debug!(exchange = cx.exchange, url = %request.url, %error, "open interest answer refused")
                }
            },
            (_, Err(error)) => tracing::debug!(exchange = cx.exchange, %error, "open interest poll failed"),
        }
    }

    fn books<'a>(&self, books: &'a Self::State) -> Vec<(&'a str, &'a L2Book, u64)> {
        crate::book::synced_books(books)
    }

    fn on_frame(&self, books: &mut Self::State, text: &str, now: i64, cx: &mut Context<'_>) -> Result<(), Reject> {
        match parse(&self.symbols, text, now)? {
            Frame::Trade(t) => {
                let symbol = &t.instrument.venue_symbol;
                if let Some(last) = t
                    .trade_id
                    .parse()
                    .ok()
                    .and_then(|id| self.trade_ids.skipped(symbol, id))
                {
                    tracing::warn!(exchange = cx.exchange, %symbol, last, next = %t.trade_id, "trades missed, publishing a gap");
                    cx.metrics.gaps.with_label_values(&[cx.exchange, Gap::TRADES]).inc();
                    cx.emit(MarketEvent::Gap(Gap {
                        instrument: t.instrument.clone(),
                        reason: Gap::TRADES.into(),
                        last_sequence: last,
                        ts_recv_us: now,
                    }));
                }
                cx.emit_live(MarketEvent::Trade(t), now);
            }
            Frame::Bbo(b) => cx.emit_live(MarketEvent::Bbo(b), now),
            Frame::Candle(c) => cx.emit(MarketEvent::Candle(c)),
            Frame::Funding(f) => cx.emit(MarketEvent::Funding(f)),
            Frame::Liquidation(l) => cx.emit(MarketEvent::Liquidation(l)),
            Frame::Depth(diff) => {
                cx.touch(&diff.instrument, now);
                let symbol = diff.instrument.venue_symbol.clone();
                let flavor = self.symbols.flavor;
                let outcome = books
                    .entry(symbol.clone())
                    .or_insert_with(|| BookSync::new(flavor))
                    .on_diff(&diff);
                if BinanceVenue::outcome(books, cx, &diff, outcome) {
                    cx.get(self.depth(&symbol), Duration::ZERO);
                }
            }
            Frame::Control => {}
        }
        Ok(())
    }
}

impl crate::book::SyncedBook for super::book::BookSync {
    fn synced(&self) -> Option<(&L2Book, u64)> {
        self.sequence().filter(|_| self.is_synced()).map(|s| (&self.book, s))
    }
}
