//! Coinbase Exchange WebSocket feed: `level2` (or `level2_batch`) books
//! from a `snapshot` then `l2update`s, `ticker` (BBO when sizes are sent),
//! `matches` (trades) and `heartbeat` (liveness of quiet products).

pub mod book;
pub mod connector;
pub mod parse;

use moat_common_types::Market;

/// Coinbase's products by product id.
pub type Symbols = crate::venues::Instruments;

/// The instruments of Coinbase product ids such as `BTC-USD` (all spot).
pub fn symbols(exchange: &str, product_ids: &[&str]) -> Symbols {
    Symbols::new(exchange, product_ids, |_| Some(Market::Spot))
}

/// The Coinbase Exchange feed in the venue registry.
pub const SPEC: crate::venues::registry::Spec = crate::venues::registry::Spec {
    exchange: "coinbase",
    ws_url: "wss://ws-feed.exchange.coinbase.com",
    rest_url: "https://api.exchange.coinbase.com",
    replay_path: "/",
    limits: crate::venues::limits::VenueLimits {
        connections: 8,
        window: std::time::Duration::from_secs(1),
        symbols_per_connection: 100,
    },
    groups: crate::venues::registry::one_group,
    instruments: symbols,
    connector: |config, symbols, connection| {
        Box::new(connector::CoinbaseVenue {
            symbols,
            ws_url: config.ws_url.clone(),
            connection,
        })
    },
    // {"type":"subscribe","product_ids":[…]}
    recorded_symbols: |recording| {
        let mut ids: Vec<String> = Vec::new();
        for sent in &recording.sent {
            let Ok(request) = serde_json::from_str::<serde_json::Value>(sent) else {
                continue;
            };
            for id in request["product_ids"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|v| v.as_str())
            {
                if !ids.iter().any(|s| s == id) {
                    ids.push(id.to_owned());
                }
            }
        }
        ids
    },
};
