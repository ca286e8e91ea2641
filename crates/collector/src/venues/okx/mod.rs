//! OKX v5 public WebSocket: `trades`, `tickers` (BBO), `books` (snapshot then
//! updates, validated by the CRC32 checksum of the top 25 levels and, where
//! present, `seqId`/`prevSeqId`), `funding-rate` and `open-interest`, for
//! spot (`BTC-USDT`), perpetual swaps (`UNI-USD-SWAP`) and dated futures
//! (`BTC-USD-220527`).

pub mod book;
pub mod connector;
pub mod parse;

use std::collections::HashMap;

use moat_common_types::symbol::normalize;
use moat_common_types::{Instrument, Market};

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

/// The subscribed instruments by OKX instrument id.
#[derive(Debug, Clone)]
pub struct Symbols {
    pub exchange: String,
    by_venue: HashMap<String, Instrument>,
}

impl Symbols {
    /// Builds the map for ids such as `BTC-USDT` or `UNI-USD-SWAP`; an id
    /// that cannot be normalized is an error naming it.
    pub fn new(exchange: &str, inst_ids: &[&str]) -> Result<Symbols, moat_common_types::Error> {
        let mut by_venue = HashMap::new();
        for id in inst_ids {
            let upper = id.to_ascii_uppercase();
            let market = market_of(&upper);
            let symbol = normalize(&upper, market)?;
            by_venue.insert(
                upper.clone(),
                Instrument {
                    exchange: exchange.to_owned(),
                    market,
                    symbol: symbol.to_string(),
                    venue_symbol: upper,
                },
            );
        }
        Ok(Symbols {
            exchange: exchange.to_owned(),
            by_venue,
        })
    }

    pub fn get(&self, inst_id: &str) -> Option<&Instrument> {
        self.by_venue.get(inst_id)
    }

    pub fn inst_ids(&self) -> impl Iterator<Item = &str> {
        self.by_venue.keys().map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instrument_ids_normalize_by_market() {
        let s = Symbols::new("okx", &["BTC-USDT", "UNI-USD-SWAP", "BTC-USD-220527"]).unwrap();
        assert_eq!(s.get("BTC-USDT").unwrap().symbol, "BTC-USDT");
        assert_eq!(s.get("UNI-USD-SWAP").unwrap().symbol, "UNI-USD-PERP");
        assert_eq!(s.get("UNI-USD-SWAP").unwrap().market, Market::Perp);
        assert_eq!(s.get("BTC-USD-220527").unwrap().symbol, "BTC-USD-220527");
        assert_eq!(s.get("BTC-USD-220527").unwrap().market, Market::Future);
        assert!(Symbols::new("okx", &["NOT-A-PAIR-AT-ALL"]).is_err());
    }
}
