//! The live Coinbase Exchange connection: one WebSocket feed with
//! `level2_batch`, `ticker`, `matches` and `heartbeat` for every product;
//! a crossed book resubscribes its product's level2 for a fresh snapshot.

use std::collections::HashMap;
use std::sync::Arc;

use moat_common_types::{MarketEvent, now_us};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::Symbols;
use super::book::CoinbaseBook;
use super::parse::{Frame, parse};
use crate::metrics::Metrics;
use crate::sink::Sink;
use crate::status::StreamStatus;
use crate::venues::{
    BookChange, Incoming, SessionError, emit_live, open, publish_book, reconnect_loop, rejected, republish_book,
};

/// The book channel: `level2_batch` is public; `level2` needs authentication
/// on the current feed and carries the same messages.
const BOOK_CHANNEL: &str = "level2_batch";

/// Where and what to connect.
#[derive(Debug, Clone)]
pub struct CoinbaseVenue {
    pub symbols: Symbols,
    /// e.g. `wss://ws-feed.exchange.coinbase.com`.
    pub ws_url: String,
    pub connection: crate::venues::Connection,
}

impl CoinbaseVenue {
    pub fn subscription(&self) -> serde_json::Value {
        let mut ids: Vec<&str> = self.symbols.ids().collect();
        ids.sort_unstable();
        json!({
            "type": "subscribe",
            "product_ids": ids,
            "channels": [BOOK_CHANNEL, "ticker", "matches", "heartbeat"],
        })
    }
}

/// Runs connections until `shutdown`, reconnecting and resubscribing.
pub async fn run(
    venue: CoinbaseVenue,
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
    venue: &CoinbaseVenue,
    sink: &dyn Sink,
    status: &StreamStatus,
    metrics: &Metrics,
    shutdown: &CancellationToken,
) -> Result<(), SessionError> {
    let url = &venue.ws_url;
    let exchange = venue.symbols.exchange.clone();
    let mut ws = open(
        url,
        Some(venue.subscription().to_string()),
        venue.connection.recorder.as_ref(),
    )
    .await?;
    tracing::info!(%exchange, products = venue.symbols.ids().count(), "connected and subscribed");
    status.set_connected(true);

    let mut books: HashMap<String, CoinbaseBook> = HashMap::new();
    let deadline = tokio::time::Instant::now() + venue.connection.max_connection_age;
    let mut snapshots = venue.connection.snapshot_timer();
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
            incoming = ws.next_text(venue.connection.stale_after) => {
                let text = match incoming {
                    Ok(Incoming::Text(text)) => text,
                    Ok(Incoming::Closed) => break Ok(()),
                    Err(error) => break Err(error),
                };
                let now = now_us();
                match parse(&venue.symbols, &text, now) {
                    Ok(Frame::Trade(t)) => emit_live(sink, status, MarketEvent::Trade(t), now),
                    Ok(Frame::Bbo(b)) => emit_live(sink, status, MarketEvent::Bbo(b), now),
                    Ok(Frame::Heartbeat(instrument)) => status.touch(&instrument.symbol, now),
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
                            prev_sequence: sync.sequence().saturating_sub(1),
                            ts_exchange_us: message.ts_exchange_us,
                        };
                        if publish_book(sink, metrics, &sync.book, &change, outcome) {
                            for kind in ["unsubscribe", "subscribe"] {
                                let request = json!({"type": kind, "product_ids": [id], "channels": [BOOK_CHANNEL]});
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
