//! OKX v5 public WebSocket: `trades`, `tickers` (BBO), `books` (snapshot then
//! updates, validated by the CRC32 checksum of the top 25 levels and, where
//! present, `seqId`/`prevSeqId`), `funding-rate` and `open-interest`, for
//! spot (`BTC-USDT`), perpetual swaps (`UNI-USD-SWAP`) and dated futures
//! (`BTC-USD-220527`).

pub mod book;
pub mod connector;
pub mod parse;

use moat_common_types::Market;

/// The market an OKX instrument id belongs to: `-SWAP` perpetuals, a
/// `-YYMMDD` suffix for dated futures, `-YYMMDD-STRIKE-C|P` for options,
/// spot for `BASE-QUOTE`; `None` for any other shape.
pub fn market_of(inst_id: &str) -> Option<Market> {
    let last = inst_id.rsplit('-').next().unwrap_or_default();
    match inst_id.matches('-').count() {
        1 => Some(Market::Spot),
        2 if last == "SWAP" => Some(Market::Perp),
        2 if last.len() == 6 && last.bytes().all(|b| b.is_ascii_digit()) => Some(Market::Future),
        4 if last == "C" || last == "P" => Some(Market::Option),
        _ => None,
    }
}

/// OKX's instruments by instrument id.
pub type Symbols = crate::venues::Instruments;

/// The instruments of OKX ids such as `BTC-USDT`, `UNI-USD-SWAP` or
/// `BTC-USD-220624-20000-C` (options, coin-margined: they settle in the base).
pub fn symbols(exchange: &str, inst_ids: &[&str]) -> Symbols {
    Symbols::with(exchange, inst_ids, |id| {
        let market = market_of(id).ok_or_else(|| "not an OKX spot, swap, future or option id".to_owned())?;
        let symbol = moat_common_types::symbol::normalize(id, market).map_err(|e| e.to_string())?;
        let instrument = if market == Market::Option {
            let settlement = symbol.base.clone();
            moat_common_types::Instrument::option(exchange.to_owned(), &symbol, id, settlement)
                .map_err(|e| e.to_string())?
        } else {
            moat_common_types::Instrument::new(exchange.to_owned(), market, symbol.to_string(), id)
        };
        Ok((id.to_owned(), instrument))
    })
}

/// OKX v5 in the venue registry.
pub const SPEC: crate::venues::registry::Spec = crate::venues::registry::Spec {
    exchange: "okx",
    ws_url: "wss://ws.okx.com:8443/ws/v5/public",
    rest_url: "https://www.okx.com",
    replay_path: "/ws/v5/public",
    // 3 connection requests per second per IP.
    limits: crate::venues::limits::VenueLimits {
        connections: 3,
        window: std::time::Duration::from_secs(1),
        symbols_per_connection: 100,
    },
    groups: crate::venues::registry::one_group,
    instruments: symbols,
    connector: |config, symbols, connection| {
        Box::new(connector::OkxVenue {
            symbols,
            ws_url: config.ws_url.clone(),
            connection,
        })
    },
    recorded_symbols: |recording| {
        let mut ids = Vec::new();
        for sent in &recording.sent {
            let Ok(request) = serde_json::from_str::<serde_json::Value>(sent) else {
                continue;
            };
            for arg in request["args"].as_array().into_iter().flatten() {
                if let Some(id) = arg["instId"].as_str()
                    && !ids.iter().any(|s| s == id)
                {
                    ids.push(id.to_owned());
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
    fn instrument_ids_normalize_by_market() {
        let s = symbols("okx", &["BTC-USDT", "UNI-USD-SWAP", "BTC-USD-220527"]);
        assert_eq!(s.get("BTC-USDT").unwrap().symbol, "BTC-USDT");
        assert_eq!(s.get("UNI-USD-SWAP").unwrap().symbol, "UNI-USD-PERP");
        assert_eq!(s.get("UNI-USD-SWAP").unwrap().market, Market::Perp);
        assert_eq!(s.get("BTC-USD-220527").unwrap().symbol, "BTC-USD-220527");
        assert_eq!(s.get("BTC-USD-220527").unwrap().market, Market::Future);
        // An option carries its terms; a malformed id is skipped, named,
        // and the rest are kept.
        let s = symbols("okx", &["BTC-USD-220624-20000-C", "BTC-USDT", "NOT-A-PAIR-AT-ALL", "BTC-USD-2206-1-C"]);
        assert_eq!(s.len(), 2);
        let option = s.get("BTC-USD-220624-20000-C").unwrap();
        assert_eq!((option.market, option.symbol.as_str()), (Market::Option, "BTC-USD-220624-20000-C"));
        let terms = option.option.as_ref().unwrap();
        assert_eq!((terms.expiry.as_str(), terms.strike.to_string(), terms.settlement.as_str()), ("220624", "20000".into(), "BTC"));
        let skipped: Vec<&str> = s.skipped().iter().map(|(id, _)| id.as_str()).collect();
        assert_eq!(skipped, ["NOT-A-PAIR-AT-ALL", "BTC-USD-2206-1-C"]);
    }
}
