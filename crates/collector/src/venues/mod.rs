//! Venue connectors, one folder each: `parse` (frames to events),
//! `connector` (the venue's [`driver::Venue`]), and `book` where its book
//! rules are its own (shared rules live in [`crate::book`]).
//!
//! A venue turns raw frames into normalized events and keeps its order
//! books in sync by its own sequencing rules ([`driver::Venue`]); the one
//! session loop in [`driver`] runs every venue. Adding a venue means adding
//! a folder here and its line below.

pub mod driver;
pub mod limits;
pub mod registry;
mod scan;
#[doc(hidden)]
pub use scan::check_against_serde;
mod session;
pub mod time;

// Every venue: its folder, and the protocols (`kind`) it speaks.
registry::venues! {
    binance {
        Binance => "binance", SPOT;
        BinanceFutures => "binance-futures", FUTURES;
        BinanceDelivery => "binance-delivery", DELIVERY;
    }
    okx { Okx => "okx", SPEC; }
    coinbase { Coinbase => "coinbase", SPEC; }
    bybit { Bybit => "bybit", SPEC; }
    kraken { Kraken => "kraken", SPEC; }
    gemini { Gemini => "gemini", SPEC; }
    bitstamp { Bitstamp => "bitstamp", SPEC; }
    kraken_futures { KrakenFutures => "kraken-futures", SPEC; }
    deribit { Deribit => "deribit", SPEC; }
    bitmex { Bitmex => "bitmex", SPEC; }
}

pub use session::SessionError;
pub(crate) use session::{Incoming, get_parsed, open, reconnect_loop};

use moat_common_types::model::parse_decimal;
use moat_common_types::{Decimal, Instrument, Market};
use serde::Deserialize;

/// How a venue's connections behave: the same settings for every venue.
#[derive(Debug, Clone)]
pub struct Connection {
    /// No frame for this long means the connection is dead.
    pub stale_after: std::time::Duration,
    /// Reconnect before the venue's own limit (24 h on Binance).
    pub max_connection_age: std::time::Duration,
    pub backoff_max: std::time::Duration,
    /// Connection attempts to this venue, shared by every connection.
    pub limiter: std::sync::Arc<limits::ConnectionLimiter>,
    /// Every valid book is published whole this often, so a consumer that
    /// joins late (a restarted gateway) has a book without waiting for a
    /// resync, and history can be rebuilt from the nearest snapshot.
    pub snapshot_every: Option<std::time::Duration>,
    /// Writes the traffic in the recording format (`moat-collector record`).
    pub recorder: Option<crate::recording::Recorder>,
}

impl Connection {
    /// The timer of periodic book snapshots; it never fires when they are off.
    pub(crate) fn snapshot_timer(&self) -> tokio::time::Interval {
        let every = self
            .snapshot_every
            .unwrap_or(std::time::Duration::from_secs(86_400 * 365));
        let mut timer = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        timer
    }
}

/// Publishes the whole of a valid book as a snapshot (see
/// [`Connection::snapshot_every`]).
pub(crate) fn republish_book(
    sink: &dyn crate::sink::Sink,
    instrument: &moat_common_types::Instrument,
    book: &crate::book::L2Book,
    sequence: u64,
) {
    let (bids, asks) = book.top(usize::MAX);
    let now = moat_common_types::now_us();
    sink.emit(moat_common_types::MarketEvent::BookSnapshot(
        moat_common_types::model::BookSnapshot {
            instrument: instrument.clone(),
            sequence,
            bids,
            asks,
            ts_exchange_us: now,
            ts_recv_us: now,
        },
    ));
}

/// A venue's subscribed instruments by the venue's own id (`BTC-USDT`,
/// `UNI-USD-SWAP`), each with its normalized symbol, and the ids that could
/// not be normalized (skipped, never an error: one unknown instrument must
/// not stop a venue).
#[derive(Debug, Clone)]
pub struct Instruments {
    pub exchange: String,
    /// Fx-hashed: looked up for every event, and its keys are the
    /// configured symbols, never the venue's.
    by_venue: rustc_hash::FxHashMap<String, Instrument>,
    /// `(venue id, why)` of each id that could not be normalized.
    skipped: Vec<(String, String)>,
}

impl Instruments {
    /// Normalizes every id in the market `market_of` gives it (`None`: a
    /// market moat does not collect); the others are kept as skipped.
    pub fn new(exchange: &str, ids: &[&str], market_of: impl Fn(&str) -> Option<Market>) -> Instruments {
        Instruments::with(exchange, ids, |id| {
            let market = market_of(id).ok_or_else(|| "not a market moat collects".to_owned())?;
            let symbol = moat_common_types::symbol::normalize(id, market).map_err(|e| e.to_string())?;
            Ok((
                id.to_owned(),
                Instrument::new(exchange.to_owned(), market, symbol.to_string(), id),
            ))
        })
    }

    /// Reads every id (upper-cased) with `read`, which gives the key frames
    /// name it by and its instrument, or why it cannot be collected.
    pub fn with(
        exchange: &str,
        ids: &[&str],
        read: impl Fn(&str) -> Result<(String, Instrument), String>,
    ) -> Instruments {
        let mut by_venue = rustc_hash::FxHashMap::default();
        let mut skipped: Vec<(String, String)> = Vec::new();
        for id in ids {
            let upper = id.to_ascii_uppercase();
            match read(&upper) {
                Ok((key, instrument)) => {
                    by_venue.insert(key, instrument);
                }
                Err(why) if !skipped.iter().any(|(s, _)| *s == upper) => skipped.push((upper, why)),
                Err(_) => {}
            }
        }
        Instruments {
            exchange: exchange.to_owned(),
            by_venue,
            skipped,
        }
    }

    pub fn get(&self, id: &str) -> Option<&Instrument> {
        self.by_venue.get(id)
    }

    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.by_venue.keys().map(String::as_str)
    }

    /// The ids, sorted (subscriptions in a stable order).
    pub fn sorted_ids(&self) -> Vec<&str> {
        let mut ids: Vec<&str> = self.ids().collect();
        ids.sort_unstable();
        ids
    }

    pub fn len(&self) -> usize {
        self.by_venue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_venue.is_empty()
    }

    /// The ids that could not be normalized, each with the reason.
    pub fn skipped(&self) -> &[(String, String)] {
        &self.skipped
    }

    /// The same instruments, or an error naming the first id that could
    /// not be normalized (for callers that list known-good ids).
    pub fn all_known(self) -> Result<Instruments, String> {
        match self.skipped.first() {
            Some((id, why)) => Err(format!("venue {}: cannot normalize {id:?}: {why}", self.exchange)),
            None => Ok(self),
        }
    }

    /// The instrument of a subscribed id, or an `unknown_symbol` reject.
    pub(crate) fn instrument(&self, id: &str) -> Result<Instrument, Reject> {
        self.get(id)
            .cloned()
            .ok_or_else(|| Reject::new("unknown_symbol", id.to_owned()))
    }
}

/// The newest trade id per venue id, for venues whose trade ids are
/// consecutive per symbol (Binance's aggregate trades): a jump means trades
/// were missed (while disconnected, or while the collector was down).
#[derive(Debug, Default)]
pub struct TradeIds(std::sync::Mutex<std::collections::HashMap<String, u64>>);

impl TradeIds {
    /// The last id published before this process started.
    pub fn seed(&self, symbol: &str, id: u64) {
        let mut last = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        last.entry(symbol.to_owned()).or_insert(id);
    }

    /// Records a trade's id; returns the last id before it when ids were
    /// skipped (trades lost while disconnected).
    pub(crate) fn skipped(&self, symbol: &str, id: u64) -> Option<u64> {
        let mut last = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match last.get(symbol).copied() {
            Some(prev) if id <= prev => None,
            prev => {
                last.insert(symbol.to_owned(), id);
                prev.filter(|p| id > p + 1)
            }
        }
    }
}

/// Why a frame was not published: a bounded set of metric labels.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}: {detail}")]
pub struct Reject {
    pub reason: &'static str,
    pub detail: String,
}

impl Reject {
    pub fn new(reason: &'static str, detail: impl Into<String>) -> Reject {
        Reject {
            reason,
            detail: detail.into(),
        }
    }
}

/// What a book sync did with an update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BookOutcome {
    /// Waiting for a snapshot; the update is kept for when it arrives.
    Buffered,
    /// Older than the book; ignored as the venue's rules say.
    Stale,
    Applied,
    /// A sequence gap or a crossed book: the book is invalid until the next
    /// snapshot, which the connector must request.
    Gap {
        reason: &'static str,
        detail: String,
    },
}

// Field parsing shared by the venues: every refusal is a `Reject` whose
// reason is a metric label.

pub(crate) fn json<'a, T: Deserialize<'a>>(text: &'a str) -> Result<T, Reject> {
    serde_json::from_str(text).map_err(|e| Reject::new("json", e.to_string()))
}

pub(crate) fn number(field: &'static str, value: &str) -> Result<Decimal, Reject> {
    parse_decimal(field, value).map_err(|e| Reject::new("number", e.message))
}

/// Splits a concatenated id (`USDTUSD`, `ZECLTC`) at the first of the
/// venue's `quotes` it ends with, for venues whose quote currencies are a
/// short known list (list `USDT` before `USD`). The shared list of every
/// venue's quotes would take `USDTUSD` for USD-TUSD.
pub(crate) fn split_quote<'a>(id: &'a str, quotes: &[&'a str]) -> Option<(&'a str, &'a str)> {
    quotes
        .iter()
        .find_map(|q| id.strip_suffix(q).filter(|b| !b.is_empty()).map(|b| (b, *q)))
}

/// A trade or level side as venues write it: `buy`/`sell` in any case
/// (`Buy`, `sell`).
pub(crate) fn side(value: &str) -> Result<moat_common_types::Side, Reject> {
    if value.eq_ignore_ascii_case("buy") {
        Ok(moat_common_types::Side::Buy)
    } else if value.eq_ignore_ascii_case("sell") {
        Ok(moat_common_types::Side::Sell)
    } else {
        Err(Reject::new("side", format!("side {value:?} is neither buy nor sell")))
    }
}

/// Book levels written `[["price", "qty"], …]`.
pub(crate) fn text_levels(
    side: &'static str,
    raw: &[[&str; 2]],
) -> Result<Vec<moat_common_types::model::Level>, Reject> {
    let mut levels = Vec::with_capacity(raw.len());
    for [p, q] in raw {
        levels.push(moat_common_types::model::Level {
            price: price(side, p)?,
            qty: qty(side, q)?,
        });
    }
    Ok(levels)
}

/// The text of a JSON number in a frame (`439.3`, `2e-05`), borrowed: a
/// decimal is read from it exactly ([`price`], [`qty`], [`number`]), never
/// through a binary float. serde reads it as a raw value (so a field that
/// is not a number is refused when its decimal is read); [`scan::Scan`]
/// reads only a number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct JsonNumber<'a>(pub(crate) &'a str);

impl<'de: 'a, 'a> Deserialize<'de> for JsonNumber<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        <&'a serde_json::value::RawValue>::deserialize(deserializer).map(|raw| JsonNumber(raw.get()))
    }
}

pub(crate) fn price(field: &'static str, value: &str) -> Result<Decimal, Reject> {
    let p = number(field, value)?;
    if p.is_zero() || p.is_sign_negative() {
        return Err(Reject::new("price", format!("{field} {value} is not positive")));
    }
    Ok(p)
}

pub(crate) fn qty(field: &'static str, value: &str) -> Result<Decimal, Reject> {
    let q = number(field, value)?;
    if q.is_sign_negative() && !q.is_zero() {
        return Err(Reject::new("qty", format!("{field} {value} is negative")));
    }
    Ok(q)
}

/// A book message a venue's sync applied or refused, for [`publish_book`].
pub(crate) struct BookChange<'a> {
    pub instrument: &'a moat_common_types::Instrument,
    pub snapshot: bool,
    pub bids: &'a [moat_common_types::model::Level],
    pub asks: &'a [moat_common_types::model::Level],
    /// First and last sequence the message covers (equal for most venues).
    pub first_sequence: u64,
    pub sequence: u64,
    pub prev_sequence: u64,
    pub ts_exchange_us: i64,
}

/// Publishes what a book message did: the snapshot or delta and the new top
/// when applied; a `Gap` event and a resync count when the book went
/// invalid. Returns true when the book must be fetched again.
pub(crate) fn publish_book(
    sink: &dyn crate::sink::Sink,
    metrics: &crate::metrics::Metrics,
    book: &crate::book::L2Book,
    change: &BookChange<'_>,
    outcome: BookOutcome,
) -> bool {
    use moat_common_types::MarketEvent;
    use moat_common_types::model::{BookDelta, BookSnapshot, Gap};
    let exchange = change.instrument.exchange.as_str();
    let now = moat_common_types::now_us();
    match outcome {
        BookOutcome::Applied => {
            if change.snapshot {
                let (bids, asks) = book.top(usize::MAX);
                sink.emit(MarketEvent::BookSnapshot(BookSnapshot {
                    instrument: change.instrument.clone(),
                    sequence: change.sequence,
                    bids,
                    asks,
                    ts_exchange_us: change.ts_exchange_us,
                    ts_recv_us: now,
                }));
            } else {
                sink.emit(MarketEvent::BookDelta(BookDelta {
                    instrument: change.instrument.clone(),
                    first_sequence: change.first_sequence,
                    sequence: change.sequence,
                    prev_sequence: change.prev_sequence,
                    bids: change.bids.to_vec(),
                    asks: change.asks.to_vec(),
                    ts_exchange_us: change.ts_exchange_us,
                    ts_recv_us: now,
                }));
            }
            sink.book_top(exchange, &change.instrument.symbol, change.sequence, book);
            false
        }
        BookOutcome::Gap { reason, detail } => {
            let symbol = change.instrument.venue_symbol.as_str();
            tracing::warn!(exchange, symbol, reason, %detail, "book invalid, resyncing");
            metrics.resyncs.with_label_values(&[exchange, reason]).inc();
            sink.emit(MarketEvent::Gap(Gap {
                instrument: change.instrument.clone(),
                reason: reason.to_owned(),
                last_sequence: change.sequence,
                ts_recv_us: now,
            }));
            true
        }
        BookOutcome::Buffered | BookOutcome::Stale => false,
    }
}

/// Counts a refused frame by reason and logs it, raw, at debug level.
pub(crate) fn rejected(metrics: &crate::metrics::Metrics, exchange: &str, reject: &Reject, frame: &str) {
    metrics.rejects.with_label_values(&[exchange, reject.reason]).inc();
    tracing::debug!(exchange, reason = reject.reason, detail = %reject.detail, frame, "frame rejected");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skipped_trade_ids_are_reported_once_and_old_ids_ignored() {
        let ids = TradeIds::default();
        assert_eq!(ids.skipped("BTCUSDT", 10), None, "the first id sets the baseline");
        assert_eq!(ids.skipped("BTCUSDT", 11), None);
        assert_eq!(ids.skipped("BTCUSDT", 15), Some(11));
        assert_eq!(ids.skipped("BTCUSDT", 12), None, "an older id (a replay) is no gap");
        assert_eq!(ids.skipped("BTCUSDT", 16), None);
        assert_eq!(ids.skipped("ETHUSDT", 3), None, "symbols are separate");
    }

    #[test]
    fn ids_split_at_the_venue_quotes() {
        let quotes = ["USDT", "USD", "EUR"];
        assert_eq!(split_quote("USDTUSD", &quotes), Some(("USDT", "USD")));
        assert_eq!(split_quote("BTCUSDT", &quotes), Some(("BTC", "USDT")));
        assert_eq!(split_quote("USD", &quotes), None, "a bare quote is no pair");
        assert_eq!(split_quote("BTCGBP", &quotes), None);
    }

    #[test]
    fn json_numbers_are_read_exactly_from_their_text() {
        fn read(text: &str) -> &str {
            serde_json::from_str::<JsonNumber<'_>>(text).unwrap().0
        }
        assert_eq!(price("price", read("439.30")).unwrap().to_string(), "439.30");
        assert_eq!(
            qty("qty", read("2e-05")).unwrap(),
            "0.00002".parse::<Decimal>().unwrap()
        );
        assert_eq!(qty("qty", read("20108.0")).unwrap().to_string(), "20108.0");
        assert_eq!(price("price", read("0")).unwrap_err().reason, "price");
        assert_eq!(qty("qty", read("-1")).unwrap_err().reason, "qty");
        assert_eq!(
            number("x", read("\"1\"")).unwrap_err().reason,
            "number",
            "a string is no JSON number"
        );
    }

    #[test]
    fn ids_that_cannot_be_normalized_are_skipped_with_their_reason() {
        let market = |id: &str| (!id.ends_with("-C")).then_some(Market::Spot);
        let s = Instruments::new(
            "okx",
            &["btc-usdt", "BTC-USD-220624-20000-C", "NOPE", "BTC-USDT"],
            market,
        );
        assert_eq!(s.sorted_ids(), ["BTC-USDT"]);
        let skipped: Vec<&str> = s.skipped().iter().map(|(id, _)| id.as_str()).collect();
        assert_eq!(skipped, ["BTC-USD-220624-20000-C", "NOPE"]);
        assert!(s.skipped()[0].1.contains("not a market"), "{:?}", s.skipped());
        let error = s.all_known().unwrap_err();
        assert!(error.contains("BTC-USD-220624-20000-C"), "{error}");
    }
}
