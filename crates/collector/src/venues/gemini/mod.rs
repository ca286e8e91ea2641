//! Gemini market data v2 (`wss://api.gemini.com/v2/marketdata`): one `l2`
//! subscription gives book changes and trades. The first `l2_updates` of a
//! symbol is its whole book (and a list of earlier trades, which moat does
//! not publish again); the updates after it carry the levels that changed.

pub mod connector;
pub mod parse;

use moat_common_types::symbol::Symbol;
use moat_common_types::{Instrument, Market};

use crate::venues::Instruments;
use crate::venues::limits::VenueLimits;
use crate::venues::registry::Spec;

/// The quote currencies of Gemini's symbols, longest first so `GUSD` wins
/// over `USD`.
const QUOTES: &[&str] = &[
    "GUSD", "USDT", "USDC", "USD", "BTC", "ETH", "LTC", "BCH", "DAI", "EUR", "GBP", "SGD",
];

/// The instruments of Gemini symbols such as `BTCUSD` (all spot).
pub fn symbols(exchange: &str, ids: &[&str]) -> Instruments {
    Instruments::with(exchange, ids, |id| {
        let (base, quote) = crate::venues::split_quote(id, QUOTES)
            .ok_or_else(|| format!("cannot normalize Gemini symbol {id:?}: no known quote currency"))?;
        let symbol: Symbol = format!("{base}-{quote}")
            .parse()
            .map_err(|e: moat_common_types::Error| e.to_string())?;
        Ok((
            id.to_owned(),
            Instrument::new(exchange.to_owned(), Market::Spot, symbol.to_string(), id),
        ))
    })
}

/// Gemini in the venue registry.
pub const SPEC: Spec = Spec {
    exchange: "gemini",
    ws_url: "wss://api.gemini.com",
    rest_url: "https://api.gemini.com",
    replay_path: "",
    // Public market data: 120 requests a minute.
    limits: VenueLimits {
        connections: 120,
        window: std::time::Duration::from_secs(60),
        symbols_per_connection: 100,
    },
    groups: crate::venues::registry::one_group,
    instruments: symbols,
    connector: |config, symbols, connection| {
        Box::new(connector::GeminiVenue {
            symbols,
            ws_url: config.ws_url.clone(),
            connection,
        })
    },
    // {"type":"subscribe","subscriptions":[{"name":"l2","symbols":[…]}]}
    recorded_symbols: |recording| {
        let mut ids: Vec<String> = Vec::new();
        for sent in &recording.sent {
            let Ok(request) = serde_json::from_str::<serde_json::Value>(sent) else {
                continue;
            };
            let subscriptions = request["subscriptions"].as_array().into_iter().flatten();
            for id in subscriptions.flat_map(|s| s["symbols"].as_array().into_iter().flatten()) {
                if let Some(id) = id.as_str().map(str::to_ascii_uppercase)
                    && !ids.contains(&id)
                {
                    ids.push(id);
                }
            }
        }
        ids
    },
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symbols_split_at_gemini_quote_currencies() {
        let s = symbols("gemini", &["BTCGUSD", "zecltc", "LINKETH", "BTCUSD", "USD"]);
        assert_eq!(s.get("BTCGUSD").unwrap().symbol, "BTC-GUSD");
        assert_eq!(s.get("ZECLTC").unwrap().symbol, "ZEC-LTC");
        assert_eq!(s.get("LINKETH").unwrap().symbol, "LINK-ETH");
        assert_eq!(s.get("BTCUSD").unwrap().symbol, "BTC-USD");
        assert_eq!(s.skipped().len(), 1, "a bare quote is no pair");
    }
}
