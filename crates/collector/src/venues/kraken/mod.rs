//! Kraken spot, WebSocket API v1 (`wss://ws.kraken.com`): `trade`,
//! `ticker` (BBO) and `book` (a snapshot, then updates each carrying `c`,
//! the CRC32 of the top 10 levels after it). Messages are arrays
//! (`[channelID, data…, channelName, pair]`) and pairs are written
//! `XBT/USD`; Kraken's `XBT` and `XDG` are BTC and DOGE in moat's symbols.

pub mod book;
pub mod connector;
pub mod parse;

use moat_common_types::symbol::Symbol;
use moat_common_types::{Instrument, Market};

use crate::venues::Instruments;
use crate::venues::limits::VenueLimits;
use crate::venues::registry::Spec;

/// An asset as moat names it: Kraken's `XBT` is BTC and `XDG` is DOGE.
fn asset(kraken: &str) -> &str {
    match kraken {
        "XBT" => "BTC",
        "XDG" => "DOGE",
        other => other,
    }
}

/// The instruments of Kraken pairs such as `XBT/USD` (all spot).
pub fn symbols(exchange: &str, pairs: &[&str]) -> Instruments {
    Instruments::with(exchange, pairs, |pair| {
        let (base, quote) = pair
            .split_once('/')
            .filter(|(b, q)| !b.is_empty() && !q.is_empty() && !q.contains('/'))
            .ok_or_else(|| format!("Kraken pairs are written BASE/QUOTE (XBT/USD), not {pair:?}"))?;
        let symbol: Symbol = format!("{}-{}", asset(base), asset(quote))
            .parse()
            .map_err(|e: moat_common_types::Error| e.to_string())?;
        Ok((
            pair.to_owned(),
            Instrument::new(exchange.to_owned(), Market::Spot, symbol.to_string(), pair),
        ))
    })
}

/// Kraken spot in the venue registry.
pub const SPEC: Spec = Spec {
    exchange: "kraken",
    ws_url: "wss://ws.kraken.com",
    rest_url: "https://api.kraken.com",
    replay_path: "/",
    // Kraken asks for few connection attempts; pairs per connection are
    // not limited, but books of many pairs are kept apart.
    limits: VenueLimits {
        connections: 15,
        window: std::time::Duration::from_secs(10),
        symbols_per_connection: 50,
    },
    groups: crate::venues::registry::one_group,
    instruments: symbols,
    connector: |config, symbols, connection| {
        Box::new(connector::KrakenVenue {
            symbols,
            ws_url: config.ws_url.clone(),
            connection,
        })
    },
    // {"event":"subscribe","pair":["XBT/USD",…],"subscription":{…}}
    recorded_symbols: |recording| {
        let mut pairs: Vec<String> = Vec::new();
        for sent in &recording.sent {
            let Ok(request) = serde_json::from_str::<serde_json::Value>(sent) else {
                continue;
            };
            for pair in request["pair"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|p| p.as_str())
            {
                if !pairs.iter().any(|p| p == pair) {
                    pairs.push(pair.to_owned());
                }
            }
        }
        pairs
    },
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_normalize_with_kraken_asset_names() {
        let s = symbols("kraken", &["XBT/CHF", "xdg/usd", "ETH/XBT", "XBTUSD"]);
        assert_eq!(s.get("XBT/CHF").unwrap().symbol, "BTC-CHF");
        assert_eq!(s.get("XDG/USD").unwrap().symbol, "DOGE-USD");
        assert_eq!(s.get("ETH/XBT").unwrap().symbol, "ETH-BTC");
        assert_eq!(s.skipped().len(), 1, "{:?}", s.skipped());
        assert!(s.skipped()[0].1.contains("BASE/QUOTE"));
    }
}
