//! The live Deribit connection: one WebSocket subscribing `book`, `trades`
//! and `ticker` at 100 ms for every instrument (public channels, no
//! authentication), a 10 s heartbeat whose test requests are answered,
//! books checked by `prev_change_id` and resubscribed on a gap. The
//! session loop is [`crate::venues::driver`].

use std::collections::HashMap;

use moat_common_types::MarketEvent;
use moat_common_types::model::{Bbo, Funding, OpenInterest};
use serde_json::json;

use super::parse::{Frame, parse};
use crate::book::{L2Book, SequencedBook};
use crate::venues::driver::{Context, Venue};
use crate::venues::{BookChange, Connection, Instruments, Reject};

/// Channels per subscription request.
const CHANNELS_PER_REQUEST: usize = 100;

/// Where and what to connect.
#[derive(Debug, Clone)]
pub struct DeribitVenue {
    pub symbols: Instruments,
    /// e.g. `wss://www.deribit.com`; `/ws/api/v2` is added.
    pub ws_url: String,
    pub connection: Connection,
}

fn request(id: u64, method: &str, params: serde_json::Value) -> String {
    json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}).to_string()
}

impl Venue for DeribitVenue {
    type State = HashMap<String, SequencedBook>;

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
        format!("{}/ws/api/v2", self.ws_url.trim_end_matches('/'))
    }

    fn subscriptions(&self) -> Vec<String> {
        let channels: Vec<String> = self
            .symbols
            .sorted_ids()
            .into_iter()
            .flat_map(|id| ["book", "trades", "ticker"].map(|channel| format!("{channel}.{id}.100ms")))
            .collect();
        // The venue's shortest heartbeat: a quiet instrument still shows
        // the connection alive well within `stale_after`.
        let mut requests = vec![request(0, "public/set_heartbeat", json!({"interval": 10}))];
        for (i, chunk) in channels.chunks(CHANNELS_PER_REQUEST).enumerate() {
            requests.push(request(i as u64 + 1, "public/subscribe", json!({"channels": chunk})));
        }
        requests
    }

    fn books<'a>(&self, books: &'a Self::State) -> Vec<(&'a str, &'a L2Book, u64)> {
        crate::book::synced_books(books)
    }

    fn on_frame(&self, books: &mut Self::State, text: &str, now: i64, cx: &mut Context<'_>) -> Result<(), Reject> {
        match parse(&self.symbols, text, now)? {
            Frame::Trades(trades, liquidations) => {
                for t in trades {
                    cx.emit_live(MarketEvent::Trade(t), now);
                }
                for l in liquidations {
                    cx.emit(MarketEvent::Liquidation(l));
                }
            }
            Frame::Ticker(t) => {
                if let Some((bid, ask)) = t.bbo {
                    cx.emit_live(
                        MarketEvent::Bbo(Bbo {
                            instrument: t.instrument.clone(),
                            sequence: 0,
                            bid,
                            ask,
                            ts_exchange_us: t.ts_exchange_us,
                            ts_recv_us: now,
                        }),
                        now,
                    );
                }
                if let (Some(funding_rate), Some(mark_price)) = (t.funding_rate, t.mark_price) {
                    cx.emit(MarketEvent::Funding(Funding {
                        instrument: t.instrument.clone(),
                        funding_rate,
                        mark_price,
                        index_price: t.index_price,
                        next_funding_ms: 0,
                        ts_exchange_us: t.ts_exchange_us,
                        ts_recv_us: now,
                    }));
                }
                if let Some(option) = t.option {
                    cx.emit_live(MarketEvent::OptionTicker(option), now);
                }
                if let Some(open_interest) = t.open_interest {
                    cx.emit(MarketEvent::OpenInterest(OpenInterest {
                        instrument: t.instrument,
                        open_interest,
                        ts_exchange_us: t.ts_exchange_us,
                        ts_recv_us: now,
                    }));
                }
            }
            Frame::Book(message) => {
                cx.touch(&message.instrument, now);
                let id = message.instrument.venue_symbol.clone();
                let sync = books.entry(id.clone()).or_default();
                let outcome = sync.on_update(
                    message.snapshot,
                    message.change_id,
                    message.prev_change_id,
                    &message.bids,
                    &message.asks,
                );
                let change = BookChange {
                    instrument: &message.instrument,
                    snapshot: message.snapshot,
                    bids: &message.bids,
                    asks: &message.asks,
                    first_sequence: message.change_id,
                    sequence: message.change_id,
                    prev_sequence: message.prev_change_id.unwrap_or_default(),
                    ts_exchange_us: message.ts_exchange_us,
                };
                if cx.book(&sync.book, &change, outcome) {
                    // A fresh subscription brings a fresh snapshot.
                    let channels = json!({"channels": [format!("book.{id}.100ms")]});
                    cx.send(request(0, "public/unsubscribe", channels.clone()));
                    cx.send(request(0, "public/subscribe", channels));
                }
            }
            Frame::TestRequest => cx.send(request(0, "public/test", json!({}))),
            Frame::Control => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn the_heartbeat_is_set_and_channels_go_out_in_requests_of_a_hundred() {
        let ids: Vec<String> = (0..40).map(|i| format!("BTC-24SEP21-{}-P", 1000 + i)).collect();
        let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
        let venue = DeribitVenue {
            symbols: super::super::symbols("deribit", &refs),
            ws_url: "wss://www.deribit.com".into(),
            connection: Connection {
                stale_after: std::time::Duration::from_secs(30),
                max_connection_age: std::time::Duration::from_secs(3600),
                backoff_max: std::time::Duration::from_secs(30),
                limiter: crate::venues::limits::ConnectionLimiter::for_kind(crate::venues::Kind::Deribit),
                snapshot_every: None,
                recorder: None,
            },
        };
        let requests = Venue::subscriptions(&venue);
        assert!(requests[0].contains("public/set_heartbeat"));
        assert_eq!(requests.len(), 3, "120 channels in requests of 100, after the heartbeat");
        assert!(requests[1].contains("book.BTC-24SEP21-1000-P.100ms"));
        assert_eq!(venue.url(), "wss://www.deribit.com/ws/api/v2");
    }
}
