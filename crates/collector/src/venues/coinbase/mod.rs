//! Coinbase Exchange WebSocket feed: `level2` (or `level2_batch`) books
//! from a `snapshot` then `l2update`s, `ticker` (BBO when sizes are sent),
//! `matches` (trades) and `heartbeat` (liveness of quiet products).

pub mod book;
pub mod connector;
pub mod parse;

use std::collections::HashMap;

use moat_common_types::symbol::normalize;
use moat_common_types::{Instrument, Market};

/// The subscribed products by Coinbase product id (`BTC-USD`).
#[derive(Debug, Clone)]
pub struct Symbols {
    pub exchange: String,
    by_venue: HashMap<String, Instrument>,
}

impl Symbols {
    /// Builds the map for product ids such as `BTC-USD`; an id that cannot
    /// be normalized is an error naming it.
    pub fn new(exchange: &str, product_ids: &[&str]) -> Result<Symbols, moat_common_types::Error> {
        let mut by_venue = HashMap::new();
        for id in product_ids {
            let upper = id.to_ascii_uppercase();
            let symbol = normalize(&upper, Market::Spot)?;
            by_venue.insert(
                upper.clone(),
                Instrument {
                    exchange: exchange.to_owned(),
                    market: Market::Spot,
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

    pub fn get(&self, product_id: &str) -> Option<&Instrument> {
        self.by_venue.get(product_id)
    }

    pub fn product_ids(&self) -> impl Iterator<Item = &str> {
        self.by_venue.keys().map(String::as_str)
    }
}
