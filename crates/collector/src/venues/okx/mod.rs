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
/// `-YYMMDD` suffix for dated futures, spot otherwise.
pub fn market_of(inst_id: &str) -> Market {
    let last = inst_id.rsplit('-').next().unwrap_or_default();
    if last == "SWAP" {
        Market::Perp
    } else if inst_id.matches('-').count() == 2 && last.len() == 6 && last.bytes().all(|b| b.is_ascii_digit()) {
        Market::Future
    } else {
        Market::Spot
    }
}

/// OKX's instruments by instrument id.
pub type Symbols = crate::venues::Instruments;

/// The instruments of OKX ids such as `BTC-USDT` or `UNI-USD-SWAP`.
pub fn symbols(exchange: &str, inst_ids: &[&str]) -> Result<Symbols, moat_common_types::Error> {
    Symbols::new(exchange, inst_ids, market_of)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instrument_ids_normalize_by_market() {
        let s = symbols("okx", &["BTC-USDT", "UNI-USD-SWAP", "BTC-USD-220527"]).unwrap();
        assert_eq!(s.get("BTC-USDT").unwrap().symbol, "BTC-USDT");
        assert_eq!(s.get("UNI-USD-SWAP").unwrap().symbol, "UNI-USD-PERP");
        assert_eq!(s.get("UNI-USD-SWAP").unwrap().market, Market::Perp);
        assert_eq!(s.get("BTC-USD-220527").unwrap().symbol, "BTC-USD-220527");
        assert_eq!(s.get("BTC-USD-220527").unwrap().market, Market::Future);
        assert!(symbols("okx", &["NOT-A-PAIR-AT-ALL"]).is_err());
    }
}
