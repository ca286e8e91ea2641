//! The live Binance connection: combined WebSocket stream, REST snapshots
//! per symbol, book sync, stale detection and reconnects.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use moat_common_types::model::BookSnapshot;
use moat_common_types::{MarketEvent, now_ms};
use rand::Rng;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::book::BookSync;
use super::parse::{DepthDiff, Frame, Snapshot, parse, parse_open_interest, parse_snapshot};
use super::{Flavor, Symbols};
use crate::metrics::Metrics;
use crate::sink::Sink;
use crate::status::StreamStatus;
use crate::venues::{BookChange, BookOutcome, Incoming, next_text, open, publish_book, reconnect_loop, rejected};

/// Where and what to connect.
#[derive(Debug, Clone)]
pub struct BinanceVenue {
    pub symbols: Symbols,
    /// e.g. `wss://stream.binance.com:9443` or `wss://fstream.binance.com`.
    pub ws_url: String,
    /// e.g. `https://api.binance.com` or `https://fapi.binance.com`.
    pub rest_url: String,
    /// No frame for this long means the connection is dead.
    pub stale_after: Duration,
    /// Binance closes connections after 24 h; reconnect before that.
    pub max_connection_age: Duration,
    pub backoff_max: Duration,
    /// Connection attempts to this venue, shared by every connection.
    pub limiter: Arc<crate::venues::limits::ConnectionLimiter>,
    /// How often open interest is polled over REST (futures only).
    pub open_interest_every: Option<Duration>,
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

/// Capped exponential backoff with full jitter.
pub fn backoff(attempt: u32, cap: Duration) -> Duration {
    let ceiling = Duration::from_millis(100u64.saturating_mul(1 << attempt.min(16))).min(cap);
    Duration::from_millis(rand::rng().random_range(0..=ceiling.as_millis() as u64))
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
    reconnect_loop(
        &exchange,
        &venue.limiter,
        venue.backoff_max,
        &metrics,
        &shutdown,
        || session(&venue, &http, sink.as_ref(), &status, &metrics, &shutdown),
    )
    .await;
}

fn request_snapshot(
    http: &reqwest::Client,
    url: String,
    symbol: String,
    tx: mpsc::Sender<(String, Result<Snapshot, String>)>,
) {
    let http = http.clone();
    tokio::spawn(async move {
        let result = async {
            let response = http.get(&url).send().await.map_err(|e| format!("GET {url}: {e}"))?;
            let status = response.status();
            let body = response.text().await.map_err(|e| format!("GET {url}: {e}"))?;
            if !status.is_success() {
                return Err(format!("GET {url}: HTTP {status}: {}", &body[..body.len().min(200)]));
            }
            parse_snapshot(&body).map_err(|e| e.to_string())
        }
        .await;
        let _ = tx.send((symbol, result)).await;
    });
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
            ts_exchange_ms: diff.ts_exchange_ms,
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
    shutdown: &CancellationToken,
) -> Result<(), String> {
    let url = venue.stream_url();
    let exchange = venue.symbols.exchange.clone();
    let mut ws = open(&url, None).await?;
    tracing::info!(%exchange, symbols = venue.symbols.venue_symbols().count(), "connected");
    status.set_connected(true);

    let (snap_tx, mut snap_rx) = mpsc::channel(64);
    for symbol in venue.symbols.venue_symbols() {
        request_snapshot(http, venue.depth_url(symbol), symbol.to_owned(), snap_tx.clone());
    }
    let mut books = Books {
        sink,
        metrics,
        books: HashMap::new(),
    };
    let deadline = tokio::time::Instant::now() + venue.max_connection_age;
    let poll_open_interest = venue.symbols.flavor == Flavor::Futures && venue.open_interest_every.is_some();
    let mut open_interest = tokio::time::interval(venue.open_interest_every.unwrap_or(Duration::from_secs(3600)));
    let (oi_tx, mut oi_rx) = mpsc::channel(64);
    let result = loop {
        tokio::select! {
            () = shutdown.cancelled() => {
                let _ = ws.close(None).await;
                break Ok(());
            }
            () = tokio::time::sleep_until(deadline) => break Ok(()),
            _ = open_interest.tick(), if poll_open_interest => {
                for symbol in venue.symbols.venue_symbols() {
                    let (http, url, symbols, sink_tx) = (http.clone(), venue.open_interest_url(symbol), venue.symbols.clone(), oi_tx.clone());
                    tokio::spawn(async move {
                        let answer = async {
                            let response = http.get(&url).send().await.map_err(|e| format!("GET {url}: {e}"))?;
                            let body = response.text().await.map_err(|e| format!("GET {url}: {e}"))?;
                            parse_open_interest(&symbols, &body, now_ms()).map_err(|e| format!("GET {url}: {e}"))
                        }
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
                        tracing::warn!(%exchange, %symbol, %error, "snapshot failed, retrying");
                        let (http, url, tx) = (http.clone(), venue.depth_url(&symbol), snap_tx.clone());
                        tokio::spawn(async move {
                            tokio::time::sleep(Duration::from_secs(1)).await;
                            request_snapshot(&http, url, symbol, tx);
                        });
                        continue;
                    }
                };
                let Some(instrument) = venue.symbols.get(&symbol).cloned() else { continue };
                let sync = books.books.entry(symbol.clone()).or_insert_with(|| BookSync::new(venue.symbols.flavor));
                let replayed = sync.on_snapshot(&snapshot);
                let now = now_ms();
                sink.emit(MarketEvent::BookSnapshot(BookSnapshot {
                    instrument: instrument.clone(),
                    sequence: snapshot.last_update_id,
                    bids: snapshot.bids.clone(),
                    asks: snapshot.asks.clone(),
                    ts_exchange_ms: snapshot.ts_exchange_ms.unwrap_or(now),
                    ts_recv_ms: now,
                }));
                let mut resync = false;
                for (diff, outcome) in replayed {
                    resync |= books.outcome(&symbol, &diff, outcome);
                }
                if resync {
                    request_snapshot(http, venue.depth_url(&symbol), symbol, snap_tx.clone());
                }
            }
            incoming = next_text(&mut ws, venue.stale_after) => {
                let text = match incoming {
                    Ok(Incoming::Text(text)) => text,
                    Ok(Incoming::Closed) => break Ok(()),
                    Err(error) => break Err(format!("{url}: {error}")),
                };
                let now = now_ms();
                match parse(&venue.symbols, &text, now) {
                    Ok(Frame::Trade(t)) => {
                        status.touch(&t.instrument.symbol, now);
                        sink.emit(MarketEvent::Trade(t));
                    }
                    Ok(Frame::Bbo(b)) => {
                        status.touch(&b.instrument.symbol, now);
                        sink.emit(MarketEvent::Bbo(b));
                    }
                    Ok(Frame::Candle(c)) => sink.emit(MarketEvent::Candle(c)),
                    Ok(Frame::Funding(f)) => sink.emit(MarketEvent::Funding(f)),
                    Ok(Frame::Liquidation(l)) => sink.emit(MarketEvent::Liquidation(l)),
                    Ok(Frame::Depth(diff)) => {
                        status.touch(&diff.instrument.symbol, now);
                        let symbol = diff.instrument.venue_symbol.clone();
                        let sync = books.books.entry(symbol.clone()).or_insert_with(|| BookSync::new(venue.symbols.flavor));
                        let outcome = sync.on_diff(&diff);
                        if books.outcome(&symbol, &diff, outcome) {
                            request_snapshot(http, venue.depth_url(&symbol), symbol, snap_tx.clone());
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
