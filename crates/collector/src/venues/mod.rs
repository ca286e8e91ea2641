//! Venue connectors, one folder each with the same shape (`parse`, `book`).
//!
//! A venue turns raw frames into normalized events and keeps its order
//! books in sync by its own sequencing rules. Adding a venue means adding
//! a folder here.

pub mod binance;
pub mod coinbase;
pub mod limits;
pub mod okx;

use std::collections::HashMap;

use moat_common_types::model::parse_decimal;
use moat_common_types::{Decimal, Instrument, Market};
use serde::Deserialize;

/// A venue's subscribed instruments by the venue's own id (`BTC-USDT`,
/// `UNI-USD-SWAP`), each with its normalized symbol.
#[derive(Debug, Clone)]
pub struct Instruments {
    pub exchange: String,
    by_venue: HashMap<String, Instrument>,
}

impl Instruments {
    /// Normalizes every id in the market `market_of` gives it; an id that
    /// cannot be normalized is an error naming it.
    pub fn new(
        exchange: &str,
        ids: &[&str],
        market_of: fn(&str) -> Market,
    ) -> Result<Instruments, moat_common_types::Error> {
        let mut by_venue = HashMap::new();
        for id in ids {
            let upper = id.to_ascii_uppercase();
            let market = market_of(&upper);
            let symbol = moat_common_types::symbol::normalize(&upper, market)?;
            by_venue.insert(
                upper.clone(),
                Instrument {
                    exchange: exchange.to_owned(),
                    market,
                    symbol: symbol.to_string(),
                    venue_symbol: upper,
                },
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
    if p <= Decimal::ZERO {
        return Err(Reject::new("price", format!("{field} {value} is not positive")));
    }
    Ok(p)
}

pub(crate) fn qty(field: &'static str, value: &str) -> Result<Decimal, Reject> {
    let q = number(field, value)?;
    if q < Decimal::ZERO {
        return Err(Reject::new("qty", format!("{field} {value} is negative")));
    }
    Ok(q)
}

/// Runs `session` until `shutdown`, reconnecting after each end with
/// capped exponential backoff and full jitter; a session that lived a
/// minute starts the backoff over. Every venue's connector uses it.
pub(crate) async fn reconnect_loop<F, Fut>(
    exchange: &str,
    limiter: &limits::ConnectionLimiter,
    backoff_max: std::time::Duration,
    metrics: &crate::metrics::Metrics,
    shutdown: &tokio_util::sync::CancellationToken,
    mut session: F,
) where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let mut attempt = 0u32;
    while !shutdown.is_cancelled() {
        tokio::select! {
            () = limiter.acquire() => {}
            () = shutdown.cancelled() => break,
        }
        let started = std::time::Instant::now();
        let result = session().await;
        if shutdown.is_cancelled() {
            break;
        }
        match result {
            Ok(()) => tracing::info!(exchange, "connection closed, reconnecting"),
            Err(error) => tracing::warn!(exchange, %error, "connection failed"),
        }
        metrics.reconnects.with_label_values(&[exchange]).inc();
        if started.elapsed() > std::time::Duration::from_secs(60) {
            attempt = 0;
        }
        let pause = binance::connector::backoff(attempt, backoff_max);
        attempt = attempt.saturating_add(1);
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            () = shutdown.cancelled() => break,
        }
    }
}

/// What a connected WebSocket delivered next.
pub(crate) enum Incoming {
    Text(String),
    /// The venue or the connection ended the session cleanly.
    Closed,
}

/// The next text frame, answering pings on the way; an error when nothing
/// arrived for `stale_after` (the connection is dead) or reading failed.
pub(crate) async fn next_text<S>(ws: &mut S, stale_after: std::time::Duration) -> Result<Incoming, String>
where
    S: futures::Stream<Item = Result<tokio_tungstenite::tungstenite::Message, tokio_tungstenite::tungstenite::Error>>
        + futures::Sink<tokio_tungstenite::tungstenite::Message>
        + Unpin,
{
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    loop {
        let message = match tokio::time::timeout(stale_after, ws.next()).await {
            Err(_) => return Err(format!("no frame for {} ms: connection stale", stale_after.as_millis())),
            Ok(None) => return Ok(Incoming::Closed),
            Ok(Some(Err(e))) => return Err(format!("reading: {e}")),
            Ok(Some(Ok(m))) => m,
        };
        match message {
            Message::Text(t) => return Ok(Incoming::Text(t.as_str().to_owned())),
            Message::Ping(p) => {
                let _ = ws.send(Message::Pong(p)).await;
            }
            Message::Close(_) => return Ok(Incoming::Closed),
            _ => {}
        }
    }
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
    pub ts_exchange_ms: i64,
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
    let now = moat_common_types::now_ms();
    match outcome {
        BookOutcome::Applied => {
            if change.snapshot {
                let (bids, asks) = book.top(usize::MAX);
                sink.emit(MarketEvent::BookSnapshot(BookSnapshot {
                    instrument: change.instrument.clone(),
                    sequence: change.sequence,
                    bids,
                    asks,
                    ts_exchange_ms: change.ts_exchange_ms,
                    ts_recv_ms: now,
                }));
            } else {
                sink.emit(MarketEvent::BookDelta(BookDelta {
                    instrument: change.instrument.clone(),
                    first_sequence: change.first_sequence,
                    sequence: change.sequence,
                    prev_sequence: change.prev_sequence,
                    bids: change.bids.to_vec(),
                    asks: change.asks.to_vec(),
                    ts_exchange_ms: change.ts_exchange_ms,
                    ts_recv_ms: now,
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
                ts_recv_ms: now,
            }));
            true
        }
        BookOutcome::Buffered | BookOutcome::Stale => false,
    }
}

/// A venue's WebSocket stream.
pub(crate) type WsStream = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Connects to `url` within 10 s and sends `subscribe`, if any.
pub(crate) async fn open(url: &str, subscribe: Option<String>) -> Result<WsStream, String> {
    use futures::SinkExt;
    let (mut ws, _) = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        tokio_tungstenite::connect_async(url),
    )
    .await
    .map_err(|_| format!("connecting to {url}: no answer within 10 s"))?
    .map_err(|e| format!("connecting to {url}: {e}"))?;
    if let Some(message) = subscribe {
        ws.send(tokio_tungstenite::tungstenite::Message::Text(message.into()))
            .await
            .map_err(|e| format!("subscribing on {url}: {e}"))?;
    }
    Ok(ws)
}

/// Counts a refused frame by reason and logs it, raw, at debug level.
pub(crate) fn rejected(metrics: &crate::metrics::Metrics, exchange: &str, reject: &Reject, frame: &str) {
    metrics.rejects.with_label_values(&[exchange, reject.reason]).inc();
    tracing::debug!(exchange, reason = reject.reason, detail = %reject.detail, frame, "frame rejected");
}
