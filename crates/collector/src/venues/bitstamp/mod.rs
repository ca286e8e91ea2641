//! Bitstamp WebSocket v2 (`wss://ws.bitstamp.net`): `live_trades_<pair>`
//! and `diff_order_book_<pair>`, joined to a REST snapshot
//! (`/api/v2/order_book/<pair>`) by its `microtimestamp` as Bitstamp
//! documents: diffs not newer than the snapshot are dropped, the rest
//! applied in order. Pairs are written `btcusd`.

pub mod connector;
pub mod parse;

use moat_common_types::{Instrument, Market};

use crate::venues::Instruments;
use crate::venues::limits::VenueLimits;
use crate::venues::registry::Spec;

/// The quote currencies of Bitstamp's pairs, `USDT` before `USD`.
const QUOTES: &[&str] = &["USDT", "USDC", "USD", "EUR", "GBP", "BTC", "ETH", "PAX"];

/// The instruments of Bitstamp pairs such as `btcusd` (all spot).
pub fn symbols(exchange: &str, pairs: &[&str]) -> Instruments {
    Instruments::with(exchange, pairs, |pair| {
        let (base, quote) = crate::venues::split_quote(pair, QUOTES)
            .ok_or_else(|| format!("cannot normalize Bitstamp pair {pair:?}: no known quote currency"))?;
        let symbol: moat_common_types::symbol::Symbol = format!("{base}-{quote}")
            .parse()
            .map_err(|e: moat_common_types::Error| e.to_string())?;
        Ok((
            pair.to_owned(),
            Instrument::new(exchange.to_owned(), Market::Spot, symbol.to_string(), pair),
        ))
    })
}

/// Bitstamp in the venue registry.
pub const SPEC: Spec = Spec {
    exchange: "bitstamp",
    ws_url: "wss://ws.bitstamp.net",
    rest_url: "https://www.bitstamp.net",
    replay_path: "/",
    // 400 requests a second, 10,000 per 10 minutes per client.
    limits: VenueLimits {
        connections: 10,
        window: std::time::Duration::from_secs(1),
        symbols_per_connection: 100,
    },
    groups: crate::venues::registry::one_group,
    instruments: symbols,
    connector: |config, symbols, connection| {
        Box::new(connector::BitstampVenue {
            symbols,
            ws_url: config.ws_url.clone(),
            rest_url: config.rest_url.clone(),
            connection,
        })
    },
    // {"event":"bts:subscribe","data":{"channel":"diff_order_book_btcusd"}}
    recorded_symbols: |recording| {
        let mut pairs: Vec<String> = Vec::new();
        for sent in &recording.sent {
            let Ok(request) = serde_json::from_str::<serde_json::Value>(sent) else {
                continue;
            };
            let channel = request["data"]["channel"].as_str().unwrap_or_default();
            let pair = channel.rsplit('_').next().unwrap_or_default().to_ascii_uppercase();
            if !pair.is_empty() && !pairs.contains(&pair) {
                pairs.push(pair);
            }
        }
        pairs
    },
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_split_at_bitstamp_quotes() {
        let s = symbols("bitstamp", &["usdtusd", "btcusd", "sgbeur", "xyz", "btc-usd"]);
        assert_eq!(s.get("USDTUSD").unwrap().symbol, "USDT-USD");
        assert_eq!(s.get("BTCUSD").unwrap().symbol, "BTC-USD");
        assert_eq!(s.get("SGBEUR").unwrap().symbol, "SGB-EUR");
        assert_eq!(s.skipped().len(), 2, "{:?}", s.skipped());
    }
}
