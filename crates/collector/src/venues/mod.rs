//! Venue connectors, one folder each with the same shape (`parse`, `book`).
//!
//! A venue turns raw frames into normalized events and keeps its order
//! books in sync by its own sequencing rules. Adding a venue means adding
//! a folder here.

pub mod binance;
pub mod coinbase;
pub mod limits;
pub mod okx;
mod scan;
mod session;

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
/// `UNI-USD-SWAP`), each with its normalized symbol.
#[derive(Debug, Clone)]
pub struct Instruments {
    pub exchange: String,
    /// Fx-hashed: looked up for every event, and its keys are the
    /// configured symbols, never the venue's.
    by_venue: rustc_hash::FxHashMap<String, Instrument>,
}

impl Instruments {
    /// Normalizes every id in the market `market_of` gives it; an id that
    /// cannot be normalized is an error naming it.
    pub fn new(
        exchange: &str,
        ids: &[&str],
        market_of: fn(&str) -> Market,
    ) -> Result<Instruments, moat_common_types::Error> {
        let mut by_venue = rustc_hash::FxHashMap::default();
        for id in ids {
            let upper = id.to_ascii_uppercase();
            let market = market_of(&upper);
            let symbol = moat_common_types::symbol::normalize(&upper, market)?;
            by_venue.insert(
                upper.clone(),
                Instrument::new(exchange.to_owned(), market, symbol.to_string(), upper),
            );
        }
        Ok(Instruments {
            exchange: exchange.to_owned(),
            by_venue,
        })
    }

    pub fn get(&self, id: &str) -> Option<&Instrument> {
        self.by_venue.get(id)
    }

    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.by_venue.keys().map(String::as_str)
    }

    /// The instrument of a subscribed id, or an `unknown_symbol` reject.
    pub(crate) fn instrument(&self, id: &str) -> Result<Instrument, Reject> {
        self.get(id)
            .cloned()
            .ok_or_else(|| Reject::new("unknown_symbol", id.to_owned()))
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

/// Publishes a trade or BBO and marks its symbol as fresh in the status.
pub(crate) fn emit_live(
    sink: &dyn crate::sink::Sink,
    status: &crate::status::StreamStatus,
    event: moat_common_types::MarketEvent,
    now: i64,
) {
    status.touch(&event.instrument().symbol, now);
    sink.emit(event);
}

/// Counts a refused frame by reason and logs it, raw, at debug level.
pub(crate) fn rejected(metrics: &crate::metrics::Metrics, exchange: &str, reject: &Reject, frame: &str) {
    metrics.rejects.with_label_values(&[exchange, reject.reason]).inc();
    tracing::debug!(exchange, reason = reject.reason, detail = %reject.detail, frame, "frame rejected");
}
