//! Kraken Futures (`wss://futures.kraken.com/ws/v1`): `trade`, `book`
//! (a `book_snapshot`, then one update per level whose `seq` rises by one;
//! the BBO is the top of this checked book), for perpetuals (`PI_XBTUSD`, `PF_XBTUSD`) and
//! fixed-maturity futures (`FI_XBTUSD_210924`, `FF_…`). Prices and
//! quantities come as JSON numbers and are read from their text, exactly.

pub mod connector;
pub mod parse;

use moat_common_types::symbol::Symbol;
use moat_common_types::{Instrument, Market};

use crate::venues::Instruments;
use crate::venues::limits::VenueLimits;
use crate::venues::registry::Spec;

/// The quote currencies of Kraken Futures pairs, `USDT` before `USD`.
const QUOTES: &[&str] = &["USDT", "USDC", "USD", "EUR", "GBP", "XBT"];

/// The instruments of product ids such as `PI_XBTUSD` or `FI_ETHUSD_211231`.
pub fn symbols(exchange: &str, ids: &[&str]) -> Instruments {
    Instruments::with(exchange, ids, |id| {
        let unknown = || format!("not a Kraken Futures perpetual or future: {id:?} (PI_XBTUSD, FI_XBTUSD_210924)");
        let mut parts = id.split('_');
        let (kind, pair, expiry) = (parts.next(), parts.next().ok_or_else(unknown)?, parts.next());
        let (base, quote) = crate::venues::split_quote(pair, QUOTES).ok_or_else(unknown)?;
        let asset = |a: &str| if a == "XBT" { "BTC".to_owned() } else { a.to_owned() };
        let (market, text) = match (kind, expiry, parts.next()) {
            (Some("PI" | "PF"), None, None) => (Market::Perp, format!("{}-{}-PERP", asset(base), asset(quote))),
            (Some("FI" | "FF"), Some(expiry), None) => {
                (Market::Future, format!("{}-{}-{expiry}", asset(base), asset(quote)))
            }
            _ => return Err(unknown()),
        };
        let symbol: Symbol = text.parse().map_err(|e: moat_common_types::Error| e.to_string())?;
        Ok((
            id.to_owned(),
            Instrument::new(exchange.to_owned(), market, symbol.to_string(), id),
        ))
    })
}

/// Kraken Futures in the venue registry.
pub const SPEC: Spec = Spec {
    exchange: "kraken-futures",
    ws_url: "wss://futures.kraken.com",
    rest_url: "https://futures.kraken.com",
    replay_path: "",
    limits: VenueLimits {
        connections: 15,
        window: std::time::Duration::from_secs(10),
        symbols_per_connection: 50,
    },
    groups: crate::venues::registry::one_group,
    instruments: symbols,
    connector: |config, symbols, connection| {
        Box::new(connector::KrakenFuturesVenue {
            symbols,
            ws_url: config.ws_url.clone(),
            connection,
        })
    },
    // {"event":"subscribe","feed":"book","product_ids":[…]}
    recorded_symbols: |recording| {
        let mut ids: Vec<String> = Vec::new();
        for sent in &recording.sent {
            let Ok(request) = serde_json::from_str::<serde_json::Value>(sent) else {
                continue;
            };
            for id in request["product_ids"].as_array().into_iter().flatten().filter_map(|p| p.as_str()) {
                let id = id.to_ascii_uppercase();
                if !ids.contains(&id) {
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
    fn products_normalize_by_their_kind() {
        let s = symbols("kraken-futures", &["pi_xbtusd", "PF_ETHUSD", "fi_xbtusd_210924", "OI_XBTUSD", "FI_XBTUSD"]);
        assert_eq!(s.get("PI_XBTUSD").unwrap().symbol, "BTC-USD-PERP");
        assert_eq!(s.get("PF_ETHUSD").unwrap().market, Market::Perp);
        assert_eq!(s.get("FI_XBTUSD_210924").unwrap().symbol, "BTC-USD-210924");
        let skipped: Vec<&str> = s.skipped().iter().map(|(id, _)| id.as_str()).collect();
        assert_eq!(skipped, ["OI_XBTUSD", "FI_XBTUSD"]);
    }
}
