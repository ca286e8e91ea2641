//! Coinbase Exchange WebSocket feed: `level2` (or `level2_batch`) books
//! from a `snapshot` then `l2update`s, `ticker` (BBO when sizes are sent),
//! `matches` (trades) and `heartbeat` (liveness of quiet products).

pub mod book;
pub mod connector;
pub mod parse;

use moat_common_types::Market;

/// Coinbase's products by product id.
pub type Symbols = crate::venues::Instruments;

/// The instruments of Coinbase product ids such as `BTC-USD` (all spot).
pub fn symbols(exchange: &str, product_ids: &[&str]) -> Result<Symbols, moat_common_types::Error> {
    Symbols::new(exchange, product_ids, |_| Market::Spot)
}
