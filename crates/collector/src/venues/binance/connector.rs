//! The live Binance connection: combined WebSocket stream, REST snapshots
//! per symbol, book sync, stale detection and reconnects.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use moat_common_types::model::{BookSnapshot, Gap};
use moat_common_types::{MarketEvent, now_us};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::book::BookSync;
use super::parse::{DepthDiff, Frame, Snapshot, parse, parse_open_interest, parse_snapshot};
use super::{Flavor, Symbols};
use crate::metrics::Metrics;
use crate::recording::Recorder;
use crate::sink::Sink;
use crate::status::StreamStatus;
use crate::venues::{
    BookChange, BookOutcome, Incoming, SessionError, emit_live, get_parsed, open, publish_book, reconnect_loop,
    rejected, republish_book,
};

/// Where and what to connect.
#[derive(Debug, Clone)]
pub struct BinanceVenue {
    pub symbols: Symbols,
    /// e.g. `wss://stream.binance.com:9443` or `wss://fstream.binance.com`.
    pub ws_url: String,
    /// e.g. `https://api.binance.com` or `https://fapi.binance.com`.
    pub rest_url: String,
    /// Binance closes connections after 24 h: `max_connection_age` stays below.
    pub connection: crate::venues::Connection,
    /// How often open interest is polled over REST (futures only).
    pub open_interest_every: Option<Duration>,
    /// The newest trade id per symbol: outlives a connection, and is seeded
    /// from the stream at start so a restart's missed trades are found too.
    pub trade_ids: Arc<TradeIds>,
}

impl BinanceVenue {
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
                if self.symbols.flavor == Flavor::Futures {
                    streams.push(format!("{s}@markPrice@1s"));
                    streams.push(format!("{s}@forceOrder"));
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

    fn open_interest_url(&self, symbol: &str) -> String {
        format!(
            "{}/fapi/v1/openInterest?symbol={symbol}",
            self.rest_url.trim_end_matches('/')
        )
    }

    fn depth_url(&self, symbol: &str) -> String {
        let path = match self.symbols.flavor {
            Flavor::Spot => "/api/v3/depth",
            Flavor::Futures => "/fapi/v1/depth",
        };
        format!(
            "{}{path}?symbol={symbol}&limit=1000",
            self.rest_url.trim_end_matches('/')
        )
    }
}

/// Runs connections until `shutdown`, reconnecting and resubscribing.
pub async fn run(
    venue: BinanceVenue,
    sink: Arc<dyn Sink>,
    status: StreamStatus,
    metrics: Metrics,
    shutdown: CancellationToken,
) {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("a default HTTP client builds");
    let exchange = venue.symbols.exchange.clone();
    reconnect_loop(&exchange, &venue.connection, &metrics, &shutdown, || {
        session(
            &venue,
            &http,
            sink.as_ref(),
            &status,
            &metrics,
            &venue.trade_ids,
            &shutdown,
        )
    })
    .await;
}

fn request_snapshot(
    http: &reqwest::Client,
    recorder: Option<&Recorder>,
    url: String,
    symbol: String,
    tx: mpsc::Sender<(String, Result<Snapshot, SessionError>)>,
) {
    let (http, recorder) = (http.clone(), recorder.cloned());
    tokio::spawn(async move {
        let result = get_parsed(&http, &url, recorder.as_ref(), parse_snapshot).await;
        let _ = tx.send((symbol, result)).await;
    });
}

/// The newest aggregate trade id per venue symbol. Binance's aggregate
/// trade ids are consecutive per symbol, so a jump means trades were missed
/// (while disconnected, or while the collector was down).
#[derive(Debug, Default)]
pub struct TradeIds(std::sync::Mutex<HashMap<String, u64>>);

impl TradeIds {
    /// The last id published before this process started.
    pub fn seed(&self, symbol: &str, id: u64) {
        let mut last = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        last.entry(symbol.to_owned()).or_insert(id);
    }

    /// Records a trade's id; returns the last id before it when ids were
    /// skipped (trades lost while disconnected).
    fn skipped(&self, symbol: &str, id: u64) -> Option<u64> {
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

struct Books<'a> {
    sink: &'a dyn Sink,
    metrics: &'a Metrics,
    books: HashMap<String, BookSync>,
}

impl Books<'_> {
    /// Publishes an outcome; returns true when a new snapshot is needed.
    fn outcome(&mut self, symbol: &str, diff: &DepthDiff, outcome: BookOutcome) -> bool {
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
        let book = self.books.get(symbol).map(|s| &s.book);
        let empty = crate::book::L2Book::default();
        publish_book(self.sink, self.metrics, book.unwrap_or(&empty), &change, outcome)
    }
}

async fn session(
    venue: &BinanceVenue,
    http: &reqwest::Client,
    sink: &dyn Sink,
    status: &StreamStatus,
    metrics: &Metrics,
    last_trades: &TradeIds,
    shutdown: &CancellationToken,
) -> Result<(), SessionError> {
    let url = venue.stream_url();
    let exchange = venue.symbols.exchange.clone();
    let mut ws = open(&url, None, venue.connection.recorder.as_ref()).await?;
    tracing::info!(%exchange, symbols = venue.symbols.venue_symbols().count(), "connected");
    status.set_connected(true);

    let (snap_tx, mut snap_rx) = mpsc::channel(64);
    for symbol in venue.symbols.venue_symbols() {
        request_snapshot(
            http,
            venue.connection.recorder.as_ref(),
            venue.depth_url(symbol),
            symbol.to_owned(),
            snap_tx.clone(),
        );
    }
    let mut books = Books {
        sink,
        metrics,
        books: HashMap::new(),
    };
    let deadline = tokio::time::Instant::now() + venue.connection.max_connection_age;
    let poll_open_interest = venue.symbols.flavor == Flavor::Futures && venue.open_interest_every.is_some();
    let mut open_interest = tokio::time::interval(venue.open_interest_every.unwrap_or(Duration::from_secs(3600)));
    let (oi_tx, mut oi_rx) = mpsc::channel(64);
    let mut snapshots = venue.connection.snapshot_timer();
    let result = loop {
        tokio::select! {
            _ = snapshots.tick() => {
                for (symbol, sync) in &books.books {
                    if let (true, Some(sequence), Some(instrument)) = (sync.is_synced(), sync.sequence(), venue.symbols.get(symbol)) {
                        republish_book(sink, instrument, &sync.book, sequence);
                    }
                }
            }
            () = shutdown.cancelled() => {
                ws.close().await;
                break Ok(());
            }
            () = tokio::time::sleep_until(deadline) => break Ok(()),
            _ = open_interest.tick(), if poll_open_interest => {
                for symbol in venue.symbols.venue_symbols() {
                    let (http, url, symbols, sink_tx) = (http.clone(), venue.open_interest_url(symbol), venue.symbols.clone(), oi_tx.clone());
                    let recorder = venue.connection.recorder.clone();
                    tokio::spawn(async move {
                        let answer = get_parsed(&http, &url, recorder.as_ref(), |body| {
                            parse_open_interest(&symbols, body, now_us())
                        })
                        .await;
                        let _ = sink_tx.send(answer).await;
                    });
                }
            }
            Some(answer) = oi_rx.recv() => match answer {
                Ok(oi) => sink.emit(MarketEvent::OpenInterest(oi)),
                Err(error) => tracing::debug!(%exchange, %error, "open interest poll failed"),
            },
            snapshot = snap_rx.recv() => {
                let Some((symbol, result)) = snapshot else { continue };
                let snapshot = match result {
                    Ok(s) => s,
                    Err(error) => {
                        // A second, or what the venue asked for (a rate
                        // limit's Retry-After), or long after a refusal.
                        let pause = error.pause(Duration::from_secs(1), venue.connection.backoff_max);
                        metrics.session_errors.with_label_values(&[exchange.as_str(), error.reason()]).inc();
                        tracing::warn!(%exchange, %symbol, %error, retry_in_ms = pause.as_millis() as u64, "snapshot failed, retrying");
                        let (http, url, tx) = (http.clone(), venue.depth_url(&symbol), snap_tx.clone());
                        let recorder = venue.connection.recorder.clone();
                        tokio::spawn(async move {
                            tokio::time::sleep(pause).await;
                            request_snapshot(&http, recorder.as_ref(), url, symbol, tx);
                        });
                        continue;
                    }
                };
                let Some(instrument) = venue.symbols.get(&symbol).cloned() else { continue };
                let sync = books.books.entry(symbol.clone()).or_insert_with(|| BookSync::new(venue.symbols.flavor));
                let replayed = sync.on_snapshot(&snapshot);
                let now = now_us();
                sink.emit(MarketEvent::BookSnapshot(BookSnapshot {
                    instrument: instrument.clone(),
                    sequence: snapshot.last_update_id,
                    bids: snapshot.bids.clone(),
                    asks: snapshot.asks.clone(),
                    ts_exchange_us: snapshot.ts_exchange_us.unwrap_or(now),
                    ts_recv_us: now,
                }));
                let mut resync = false;
                for (diff, outcome) in replayed {
                    resync |= books.outcome(&symbol, &diff, outcome);
                }
                if resync {
                    request_snapshot(http, venue.connection.recorder.as_ref(), venue.depth_url(&symbol), symbol, snap_tx.clone());
                }
            }
            incoming = ws.next_text(venue.connection.stale_after) => {
                let text = match incoming {
                    Ok(Incoming::Text(text)) => text,
                    Ok(Incoming::Closed) => break Ok(()),
                    Err(error) => break Err(error),
                };
                let now = now_us();
                match parse(&venue.symbols, &text, now) {
                    Ok(Frame::Trade(t)) => {
                        if let Some(last) = t.trade_id.parse().ok().and_then(|id| last_trades.skipped(&t.instrument.venue_symbol, id)) {
                            tracing::warn!(%exchange, symbol = %t.instrument.venue_symbol, last, next = %t.trade_id, "trades missed, publishing a gap");
                            metrics.gaps.with_label_values(&[exchange.as_str(), Gap::TRADES]).inc();
                            sink.emit(MarketEvent::Gap(Gap {
                                instrument: t.instrument.clone(),
                                reason: Gap::TRADES.into(),
                                last_sequence: last,
                                ts_recv_us: now,
                            }));
                        }
                        emit_live(sink, status, MarketEvent::Trade(t), now);
                    }
                    Ok(Frame::Bbo(b)) => emit_live(sink, status, MarketEvent::Bbo(b), now),
                    Ok(Frame::Candle(c)) => sink.emit(MarketEvent::Candle(c)),
                    Ok(Frame::Funding(f)) => sink.emit(MarketEvent::Funding(f)),
                    Ok(Frame::Liquidation(l)) => sink.emit(MarketEvent::Liquidation(l)),
                    Ok(Frame::Depth(diff)) => {
                        status.touch(&diff.instrument.symbol, now);
                        let symbol = diff.instrument.venue_symbol.clone();
                        let sync = books.books.entry(symbol.clone()).or_insert_with(|| BookSync::new(venue.symbols.flavor));
                        let outcome = sync.on_diff(&diff);
                        if books.outcome(&symbol, &diff, outcome) {
                            request_snapshot(http, venue.connection.recorder.as_ref(), venue.depth_url(&symbol), symbol, snap_tx.clone());
                        }
                    }
                    Ok(Frame::Control) => {}
                    Err(reject) => rejected(metrics, &exchange, &reject, &text),
                }
            }
        }
    };
    status.set_connected(false);
    result
}

#[cfg(test)]
mod tests {
    use super::TradeIds;

    #[test]
    fn skipped_ids_are_reported_once_and_old_ids_ignored() {
        let ids = TradeIds::default();
        assert_eq!(ids.skipped("BTCUSDT", 10), None, "the first id sets the baseline");
        assert_eq!(ids.skipped("BTCUSDT", 11), None);
        assert_eq!(ids.skipped("BTCUSDT", 15), Some(11));
        assert_eq!(ids.skipped("BTCUSDT", 12), None, "an older id (a replay) is no gap");
        assert_eq!(ids.skipped("BTCUSDT", 16), None);
        assert_eq!(ids.skipped("ETHUSDT", 3), None, "symbols are separate");
    }
}
