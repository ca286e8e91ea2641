//! Binance spot (and Binance.US, same protocol on other hosts) and Binance
//! USDⓈ-M futures: combined streams of `aggTrade`, `depth@100ms`,
//! `bookTicker` and `kline_1m`, books from a REST snapshot plus diffs.

pub mod book;
pub mod connector;
pub mod parse;

use moat_common_types::symbol::normalize;
use moat_common_types::{Instrument, Market};

/// Which Binance API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// `stream.binance.com`, `/api/v3/depth`; diffs chain by `U == prev u + 1`.
    Spot,
    /// `fstream.binance.com`, `/fapi/v1/depth`; diffs chain by `pu == prev u`.
    Futures,
}

impl Flavor {
    pub fn market(self) -> Market {
        match self {
            Flavor::Spot => Market::Spot,
            Flavor::Futures => Market::Perp,
        }
    }
}

/// The venue's symbols and their normalized instruments.
#[derive(Debug, Clone)]
pub struct Symbols {
    pub exchange: String,
    pub flavor: Flavor,
    /// Fx-hashed: looked up for every event, and its keys are the
    /// configured symbols, never the venue's.
    by_venue: rustc_hash::FxHashMap<String, Instrument>,
}

impl Symbols {
    /// Builds the map for venue symbols such as `BTCUSDT`; a symbol that
    /// cannot be normalized is an error naming it.
    pub fn new(exchange: &str, flavor: Flavor, venue_symbols: &[&str]) -> Result<Symbols, moat_common_types::Error> {
        let mut by_venue = rustc_hash::FxHashMap::default();
        for venue in venue_symbols {
            let upper = venue.to_ascii_uppercase();
            let symbol = normalize(&upper, flavor.market())?;
            by_venue.insert(
                upper.clone(),
                Instrument::new(exchange.to_owned(), flavor.market(), symbol.to_string(), upper),
            );
        }
        Ok(Symbols {
            exchange: exchange.to_owned(),
            flavor,
            by_venue,
        })
    }

    pub fn get(&self, venue_symbol: &str) -> Option<&Instrument> {
        self.by_venue.get(venue_symbol)
    }

    pub fn venue_symbols(&self) -> impl Iterator<Item = &str> {
        self.by_venue.keys().map(String::as_str)
    }
}
