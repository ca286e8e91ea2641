//! The live Bitstamp connection: one WebSocket subscribing each pair's
//! trades and book diffs, a REST snapshot per pair joined to the diffs by
//! `microtimestamp`, a crossed book fetched again, and a new connection
//! when Bitstamp asks for one. The session loop is
//! [`crate::venues::driver`].

use std::collections::HashMap;
use std::time::Duration;

use moat_common_types::MarketEvent;
use moat_common_types::model::BookSnapshot;
use serde_json::json;

use super::parse::{BookMessage, Frame, parse, parse_snapshot};
use crate::book::L2Book;
use crate::venues::driver::{Answer, Context, Request, Venue};
use crate::venues::{BookChange, BookOutcome, Connection, Instruments, Reject, SessionError};

/// Diffs kept per pair while its snapshot is fetched.
const BUFFER: usize = 2_000;

/// Where and what to connect.
#[derive(Debug, Clone)]
pub struct BitstampVenue {
    pub symbols: Instruments,
    /// e.g. `wss://ws.bitstamp.net`.
    pub ws_url: String,
    /// e.g. `https://www.bitstamp.net`.
    pub rest_url: String,
    pub connection: Connection,
}

/// One pair's book: diffs buffered until the snapshot, then applied.
#[derive(Debug, Default)]
pub struct PairBook {
    pub book: L2Book,
    /// The `microtimestamp` of the last applied snapshot or diff; `None`
    /// while waiting for a snapshot.
    last: Option<i64>,
    buffer: Vec<BookMessage>,
    applied: u64,
}

impl PairBook {
    /// Installs a snapshot and hands back the diffs buffered meanwhile.
    fn install(&mut self, snapshot: &BookMessage) -> Vec<BookMessage> {
        self.book.clear();
        self.book.apply(&snapshot.bids, &snapshot.asks);
        self.last = Some(snapshot.microtimestamp);
        self.applied = 0;
        std::mem::take(&mut self.buffer)
    }

    /// Applies a diff newer than the book, or buffers it before a snapshot.
    fn on_diff(&mut self, diff: &BookMessage) -> BookOutcome {
        let Some(last) = self.last else {
            if self.buffer.len() == BUFFER {
                self.buffer.remove(0);
            }
            self.buffer.push(diff.clone());
            return BookOutcome::Buffered;
        };
        if diff.microtimestamp <= last {
            return BookOutcome::Stale;
        }
        self.book.apply(&diff.bids, &diff.asks);
        if self.book.is_crossed() {
            let detail = format!("{:?} over {:?}", self.book.best_bid(), self.book.best_ask());
            self.book.clear();
            self.last = None;
            return BookOutcome::Gap {
                reason: "crossed",
                detail,
            };
        }
        self.last = Some(diff.microtimestamp);
        self.applied += 1;
        BookOutcome::Applied
    }
}

impl BitstampVenue {
    fn snapshot(&self, pair: &str) -> Request {
        Request {
            what: "order_book",
            symbol: pair.to_owned(),
            url: format!(
                "{}/api/v2/order_book/{}",
                self.rest_url.trim_end_matches('/'),
                pair.to_ascii_lowercase()
            ),
        }
    }

    /// Publishes what a diff did; asks for a new snapshot after a gap.
    fn diff(&self, books: &mut HashMap<String, PairBook>, diff: &BookMessage, cx: &mut Context<'_>) -> bool {
        let pair = &diff.instrument.venue_symbol;
        let sync = books.entry(pair.clone()).or_default();
        let outcome = sync.on_diff(diff);
        let change = BookChange {
            instrument: &diff.instrument,
            snapshot: false,
            bids: &diff.bids,
            asks: &diff.asks,
            first_sequence: sync.applied,
            sequence: sync.applied,
            prev_sequence: sync.applied.saturating_sub(1),
            ts_exchange_us: diff.microtimestamp,
        };
        let resync = cx.book(&sync.book, &change, outcome);
        if resync {
            cx.get(self.snapshot(pair), Duration::ZERO);
        }
        resync
    }
}

impl Venue for BitstampVenue {
    type State = HashMap<String, PairBook>;

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
        let mut requests = Vec::new();
        for pair in self.symbols.sorted_ids() {
            let pair = pair.to_ascii_lowercase();
            for channel in [format!("diff_order_book_{pair}"), format!("live_trades_{pair}")] {
                requests.push(json!({"event": "bts:subscribe", "data": {"channel": channel}}).to_string());
            }
        }
        requests
    }

    /// Bitstamp sends nothing on a quiet pair; its heartbeat answer keeps
    /// the connection from looking stale.
    fn ping(&self) -> Option<(Duration, &'static str)> {
        Some((Duration::from_secs(10), r#"{"event":"bts:heartbeat"}"#))
    }

    fn on_open(&self, _books: &mut Self::State, cx: &mut Context<'_>) {
        for pair in self.symbols.ids() {
            cx.get(self.snapshot(pair), Duration::ZERO);
        }
    }

    fn on_answer(&self, books: &mut Self::State, answer: Answer, cx: &mut Context<'_>) {
        let Answer { request, body } = answer;
        let snapshot = body.and_then(|body| {
            parse_snapshot(&self.symbols, &request.symbol, &body).map_err(|e| SessionError::Answer {
                url: request.url.clone(),
                detail: e.to_string(),
            })
        });
        let snapshot = match snapshot {
            Ok(snapshot) => snapshot,
            Err(error) => {
                let pause = error.pause(Duration::from_secs(1), self.connection.backoff_max);
                cx.metrics
                    .session_errors
                    .with_label_values(&[cx.exchange, error.reason()])
                    .inc();
                tracing::warn!(exchange = cx.exchange, pair = %request.symbol, %error, "snapshot failed, retrying");
                cx.get(request, pause);
                return;
            }
        };
        let sync = books.entry(request.symbol.clone()).or_default();
        let buffered = sync.install(&snapshot);
        cx.emit(MarketEvent::BookSnapshot(BookSnapshot {
            instrument: snapshot.instrument.clone(),
            sequence: 0,
            bids: snapshot.bids.clone(),
            asks: snapshot.asks.clone(),
            ts_exchange_us: snapshot.microtimestamp,
            ts_recv_us: moat_common_types::now_us(),
        }));
        cx.book_top(&snapshot.instrument, 0, &sync.book);
        for diff in buffered {
            if self.diff(books, &diff, cx) {
                break;
            }
        }
    }

    fn books<'a>(&self, books: &'a Self::State) -> Vec<(&'a str, &'a L2Book, u64)> {
        crate::book::synced_books(books)
    }

    fn on_frame(&self, books: &mut Self::State, text: &str, now: i64, cx: &mut Context<'_>) -> Result<(), Reject> {
        match parse(&self.symbols, text, now)? {
            Frame::Trade(t) => cx.emit_live(MarketEvent::Trade(t), now),
            Frame::Diff(diff) => {
                cx.touch(&diff.instrument, now);
                self.diff(books, &diff, cx);
            }
            Frame::Reconnect => cx.reconnect(),
            Frame::Control => {}
        }
        Ok(())
    }
}

impl crate::book::SyncedBook for PairBook {
    fn synced(&self) -> Option<(&L2Book, u64)> {
        self.last.map(|_| (&self.book, self.applied))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use moat_common_types::model::Level;
    use moat_common_types::{Decimal, Instrument, Market};

    fn message(at: i64, bids: &[(i64, i64)], asks: &[(i64, i64)]) -> BookMessage {
        let levels = |l: &[(i64, i64)]| {
            l.iter()
                .map(|(p, q)| Level {
                    price: Decimal::from(*p),
                    qty: Decimal::from(*q),
                })
                .collect()
        };
        BookMessage {
            instrument: Instrument::new("bitstamp", Market::Spot, "BTC-USD", "BTCUSD"),
            bids: levels(bids),
            asks: levels(asks),
            microtimestamp: at,
        }
    }

    #[test]
    fn diffs_wait_for_the_snapshot_and_only_newer_ones_apply() {
        let mut sync = PairBook::default();
        assert_eq!(sync.on_diff(&message(5, &[(99, 1)], &[])), BookOutcome::Buffered);
        assert_eq!(sync.on_diff(&message(15, &[(100, 2)], &[])), BookOutcome::Buffered);
        let buffered = sync.install(&message(10, &[(98, 1)], &[(101, 1)]));
        let outcomes: Vec<BookOutcome> = buffered.iter().map(|d| sync.on_diff(d)).collect();
        assert_eq!(outcomes, [BookOutcome::Stale, BookOutcome::Applied]);
        assert_eq!(sync.book.best_bid().unwrap().0, Decimal::from(100));
        assert_eq!(sync.on_diff(&message(15, &[(97, 1)], &[])), BookOutcome::Stale);
        let crossed = sync.on_diff(&message(20, &[(102, 1)], &[]));
        assert!(matches!(crossed, BookOutcome::Gap { reason: "crossed", .. }), "{crossed:?}");
        assert_eq!(sync.on_diff(&message(25, &[], &[])), BookOutcome::Buffered);
    }
}
