//! The live OKX connection: one WebSocket to the v5 public endpoint,
//! subscriptions for every instrument, `ping` heartbeats, checksum-validated
//! books resubscribed on a gap, stale detection and reconnects.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use moat_common_types::{Market, MarketEvent, now_us};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::Symbols;
use super::book::OkxBook;
use super::parse::{Frame, parse};
use crate::metrics::Metrics;
use crate::sink::Sink;
use crate::status::StreamStatus;
use crate::venues::{
    BookChange, Incoming, SessionError, emit_live, open, publish_book, reconnect_loop, rejected, republish_book,
};

/// OKX closes a connection that sends nothing for 30 s: ping well before.
const PING_EVERY: Duration = Duration::from_secs(20);

/// Where and what to connect.
#[derive(Debug, Clone)]
pub struct OkxVenue {
    pub symbols: Symbols,
    /// e.g. `wss://ws.okx.com:8443/ws/v5/public`.
    pub ws_url: String,
    pub connection: crate::venues::Connection,
}

impl OkxVenue {
    /// The subscription arguments: trades, tickers and books for every
    /// instrument; funding and open interest for swaps and futures.
    pub fn subscriptions(&self) -> Vec<serde_json::Value> {
        let mut ids: Vec<&str> = self.symbols.ids().collect();
        ids.sort_unstable();
        let mut args = Vec::new();
        for id in ids {
            for channel in ["trades", "tickers", "books"] {
                args.push(json!({"channel": channel, "instId": id}));
            }
            let market = super::market_of(id);
            if market == Market::Perp {
                args.push(json!({"channel": "funding-rate", "instId": id}));
                args.push(json!({"channel": "mark-price", "instId": id}));
            }
            if market != Market::Spot {
                args.push(json!({"channel": "open-interest", "instId": id}));
            }
        }
        args
    }
}

/// Runs connections until `shutdown`, reconnecting and resubscribing.
pub async fn run(
    venue: OkxVenue,
    sink: Arc<dyn Sink>,
    status: StreamStatus,
    metrics: Metrics,
    shutdown: CancellationToken,
) {
    let exchange = venue.symbols.exchange.clone();
    reconnect_loop(&exchange, &venue.connection, &metrics, &shutdown, || {
        session(&venue, sink.as_ref(), &status, &metrics, &shutdown)
    })
    .await;
}

async fn session(
    venue: &OkxVenue,
    sink: &dyn Sink,
    status: &StreamStatus,
    metrics: &Metrics,
    shutdown: &CancellationToken,
) -> Result<(), SessionError> {
    let url = &venue.ws_url;
    let exchange = venue.symbols.exchange.clone();
    let subscribe = json!({"op": "subscribe", "args": venue.subscriptions()});
    let mut ws = open(url, Some(subscribe.to_string()), venue.connection.recorder.as_ref()).await?;
    tracing::info!(%exchange, instruments = venue.symbols.ids().count(), "connected and subscribed");
    status.set_connected(true);

    let mut books: HashMap<String, OkxBook> = HashMap::new();
    let deadline = tokio::time::Instant::now() + venue.connection.max_connection_age;
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + PING_EVERY, PING_EVERY);
    let mut snapshots = venue.connection.snapshot_timer();
    // The latest mark price and funding per instrument (OKX sends them on
    // separate channels; moat's funding event carries both).
    let mut marks: HashMap<String, moat_common_types::Decimal> = HashMap::new();
    let mut fundings: HashMap<String, moat_common_types::model::Funding> = HashMap::new();
    let result = loop {
        tokio::select! {
            _ = snapshots.tick() => {
                for (id, sync) in &books {
                    if let (true, Some(instrument)) = (sync.is_synced(), venue.symbols.get(id)) {
                        republish_book(sink, instrument, &sync.book, sync.sequence());
                    }
                }
            }
            () = shutdown.cancelled() => {
                ws.close().await;
                break Ok(());
            }
            () = tokio::time::sleep_until(deadline) => break Ok(()),
            _ = ping.tick() => {
                if let Err(e) = ws.send_text("ping".to_owned()).await {
                    break Err(e);
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
                    Ok(Frame::Trades(trades)) => {
                        for t in trades {
                            emit_live(sink, status, MarketEvent::Trade(t), now);
                        }
                    }
                    Ok(Frame::Bbo(b)) => emit_live(sink, status, MarketEvent::Bbo(b), now),
                    Ok(Frame::Funding(mut f)) => {
                        // Funding events carry the latest mark price, as
                        // Binance's markPrice stream does.
                        f.mark_price = marks.get(&f.instrument.venue_symbol).copied().unwrap_or(f.mark_price);
                        fundings.insert(f.instrument.venue_symbol.clone(), f.clone());
                        sink.emit(MarketEvent::Funding(f));
                    }
                    Ok(Frame::MarkPrice { instrument, mark_price, ts_exchange_us }) => {
                        marks.insert(instrument.venue_symbol.clone(), mark_price);
                        if let Some(f) = fundings.get_mut(&instrument.venue_symbol) {
                            f.mark_price = mark_price;
                            f.ts_exchange_us = ts_exchange_us;
                            f.ts_recv_us = now;
                            sink.emit(MarketEvent::Funding(f.clone()));
                        }
                    }
                    Ok(Frame::OpenInterest(o)) => sink.emit(MarketEvent::OpenInterest(o)),
                    Ok(Frame::Book(message)) => {
                        status.touch(&message.instrument.symbol, now);
                        let id = message.instrument.venue_symbol.clone();
                        let sync = books.entry(id.clone()).or_default();
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
                        if publish_book(sink, metrics, &sync.book, &change, outcome) {
                            // A fresh subscription brings a fresh snapshot.
                            let arg = json!([{"channel": "books", "instId": id}]);
                            for op in ["unsubscribe", "subscribe"] {
                                let request = json!({"op": op, "args": arg});
                                if let Err(e) = ws.send_text(request.to_string()).await {
                                    tracing::warn!(%exchange, %id, error = %e, "resubscribing the book failed");
                                }
                            }
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
