//! Bybit v5 public WebSocket: `publicTrade`, `orderbook.200` (a snapshot,
//! then deltas whose update id `u` rises by one; a new snapshot replaces
//! the book), `tickers` (funding, mark and index price, open interest) and
//! `allLiquidation`, for spot (`v5/public/spot`) and USDT/USDC linear
//! perpetuals (`v5/public/linear`).
//!
//! Spot and linear markets share symbol names (`BTCUSDT`) and are served
//! on separate endpoints, so a configured id names its category:
//! `spot:BTCUSDT` or `linear:BTCUSDT`. Each category gets its own
//! connection.

pub mod connector;
pub mod parse;

use moat_common_types::{Instrument, Market};

use crate::venues::Instruments;
use crate::venues::limits::VenueLimits;
use crate::venues::registry::Spec;

/// A Bybit product category with a public stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Category {
    Spot,
    /// USDT and USDC perpetuals.
    Linear,
}

impl Category {
    pub fn name(self) -> &'static str {
        match self {
            Category::Spot => "spot",
            Category::Linear => "linear",
        }
    }

    fn market(self) -> Market {
        match self {
            Category::Spot => Market::Spot,
            Category::Linear => Market::Perp,
        }
    }

    /// The category and symbol of a configured id (`linear:BTCUSDT`).
    pub fn of(id: &str) -> Option<(Category, &str)> {
        let (category, symbol) = id.split_once(':')?;
        let category = match category.to_ascii_lowercase().as_str() {
            "spot" => Category::Spot,
            "linear" => Category::Linear,
            _ => return None,
        };
        Some((category, symbol))
    }
}

/// The instruments of configured ids (`spot:BTCUSDT`, `linear:ETHUSDT`),
/// keyed by the symbol frames carry. One connection serves one category,
/// so its ids share one.
pub fn symbols(exchange: &str, ids: &[&str]) -> Instruments {
    Instruments::with(exchange, ids, |id| {
        let (category, symbol) = Category::of(id).ok_or_else(|| {
            "Bybit ids name their category: spot:BTCUSDT or linear:BTCUSDT (a USDT or USDC perpetual)".to_owned()
        })?;
        let market = category.market();
        let normalized = moat_common_types::symbol::normalize(symbol, market).map_err(|e| e.to_string())?;
        Ok((
            symbol.to_owned(),
            Instrument::new(exchange.to_owned(), market, normalized.to_string(), symbol),
        ))
    })
}

/// The category of a connection's instruments (linear when none is known).
fn category(instruments: &Instruments) -> Category {
    match instruments.ids().next().and_then(|id| instruments.get(id)) {
        Some(i) if i.market == Market::Spot => Category::Spot,
        _ => Category::Linear,
    }
}

/// Bybit v5 in the venue registry: 500 connections per 5 minutes per IP;
/// a spot subscription request takes 10 arguments at most.
pub const SPEC: Spec = Spec {
    exchange: "bybit",
    ws_url: "wss://stream.bybit.com",
    rest_url: "https://api.bybit.com",
    replay_path: "",
    limits: VenueLimits {
        connections: 500,
        window: std::time::Duration::from_secs(300),
        symbols_per_connection: 100,
    },
    groups: |ids| {
        let mut groups: Vec<(Option<Category>, Vec<String>)> = Vec::new();
        for id in ids {
            let category = Category::of(id).map(|(c, _)| c);
            match groups.iter_mut().find(|(c, _)| *c == category) {
                Some((_, group)) => group.push(id.clone()),
                None => groups.push((category, vec![id.clone()])),
            }
        }
        groups.into_iter().map(|(_, ids)| ids).collect()
    },
    instruments: symbols,
    connector: |config, symbols, connection| {
        Box::new(connector::BybitVenue {
            category: category(&symbols),
            symbols,
            ws_url: config.ws_url.clone(),
            connection,
        })
    },
    // One connection per category (`…/v5/public/spot`), each subscribing
    // `topic.SYMBOL` arguments.
    recorded_symbols: |recording| {
        let mut ids: Vec<String> = Vec::new();
        for (url, sent) in recording.sent_urls.iter().zip(&recording.sent) {
            let category = url.rsplit('/').next().unwrap_or_default();
            let Ok(request) = serde_json::from_str::<serde_json::Value>(sent) else {
                continue;
            };
            for arg in request["args"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|a| a.as_str())
            {
                let id = format!("{category}:{}", arg.rsplit('.').next().unwrap_or_default());
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
    fn ids_name_their_category_and_each_category_gets_a_connection() {
        let ids: Vec<String> = ["linear:BTCUSDT", "spot:BTCUSDT", "LINEAR:ETHUSDT", "BTCUSDT"]
            .map(String::from)
            .to_vec();
        let groups = (SPEC.groups)(&ids);
        assert_eq!(groups.len(), 3, "{groups:?}");
        assert_eq!(groups[0], ["linear:BTCUSDT", "LINEAR:ETHUSDT"]);
        let linear = symbols("bybit", &["linear:BTCUSDT", "linear:ETHUSDT"]);
        assert_eq!(linear.get("BTCUSDT").unwrap().symbol, "BTC-USDT-PERP");
        assert_eq!(category(&linear), Category::Linear);
        let spot = symbols("bybit", &["spot:BTCUSDT"]);
        assert_eq!(spot.get("BTCUSDT").unwrap().symbol, "BTC-USDT");
        assert_eq!(category(&spot), Category::Spot);
        let bare = symbols("bybit", &["BTCUSDT"]);
        assert!(bare.is_empty() && bare.skipped()[0].1.contains("linear:BTCUSDT"));
    }
}
