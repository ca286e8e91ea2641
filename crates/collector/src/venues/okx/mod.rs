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
/// `-YYMMDD` suffix for dated futures, spot for `BASE-QUOTE`; `None` for
/// what moat does not collect yet (options such as `BTC-USD-220624-20000-C`).
pub fn market_of(inst_id: &str) -> Option<Market> {
    let last = inst_id.rsplit('-').next().unwrap_or_default();
    match inst_id.matches('-').count() {
        1 => Some(Market::Spot),
        2 if last == "SWAP" => Some(Market::Perp),
        2 if last.len() == 6 && last.bytes().all(|b| b.is_ascii_digit()) => Some(Market::Future),
        _ => None,
    }
}

/// OKX's instruments by instrument id.
pub type Symbols = crate::venues::Instruments;

/// The instruments of OKX ids such as `BTC-USDT` or `UNI-USD-SWAP`.
pub fn symbols(exchange: &str, inst_ids: &[&str]) -> Symbols {
    Symbols::new(exchange, inst_ids, market_of)
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
        // An option (not collected yet) and a malformed id are skipped,
        // each named, and the rest are kept.
        let s = symbols("okx", &["BTC-USD-220624-20000-C", "BTC-USDT", "NOT-A-PAIR-AT-ALL"]);
        assert_eq!(s.len(), 1);
        let skipped: Vec<&str> = s.skipped().iter().map(|(id, _)| id.as_str()).collect();
        assert_eq!(skipped, ["BTC-USD-220624-20000-C", "NOT-A-PAIR-AT-ALL"]);
    }
}
