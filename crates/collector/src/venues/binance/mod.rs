//! Binance spot (and Binance.US, same protocol on other hosts), Binance
//! USDⓈ-M futures and Binance COIN-M (delivery) futures: combined streams
//! of `aggTrade`, `depth@100ms`, `bookTicker` and `kline_1m` (and mark
//! price, funding and liquidations on perpetuals), books from a REST
//! snapshot plus diffs.

pub mod book;
pub mod connector;
pub mod parse;

use moat_common_types::Market;

use crate::venues::Instruments;
use crate::venues::limits::VenueLimits;
use crate::venues::registry::Spec;

/// Which Binance API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// `stream.binance.com`, `/api/v3/depth`; diffs chain by `U == prev u + 1`.
    Spot,
    /// `fstream.binance.com`, `/fapi/v1/depth`; diffs chain by `pu == prev u`.
    Futures,
    /// COIN-M: `dstream.binance.com`, `/dapi/v1/depth`, the same rules as
    /// USDⓈ-M; perpetuals (`BTCUSD_PERP`) and quarterlies (`BTCUSD_211231`).
    Delivery,
}

impl Flavor {
    /// The market of a symbol of this API.
    pub fn market(self, symbol: &str) -> Market {
        match self {
            Flavor::Spot => Market::Spot,
            Flavor::Futures => Market::Perp,
            Flavor::Delivery if symbol.ends_with("_PERP") => Market::Perp,
            Flavor::Delivery => Market::Future,
        }
    }

    /// Derivatives: diffs chain by `pu`, with mark price, funding,
    /// liquidations and open interest.
    pub fn is_derivative(self) -> bool {
        self != Flavor::Spot
    }

    /// The REST path prefix (`/fapi/v1`).
    pub(crate) fn rest_prefix(self) -> &'static str {
        match self {
            Flavor::Spot => "/api/v3",
            Flavor::Futures => "/fapi/v1",
            Flavor::Delivery => "/dapi/v1",
        }
    }
}

/// The venue's symbols and their normalized instruments, with the API
/// they come from.
#[derive(Debug, Clone)]
pub struct Symbols {
    pub flavor: Flavor,
    pub instruments: Instruments,
}

impl Symbols {
    /// The instruments of venue symbols such as `BTCUSDT`; a symbol that
    /// cannot be normalized is skipped (see [`Instruments::skipped`]).
    pub fn new(exchange: &str, flavor: Flavor, venue_symbols: &[&str]) -> Symbols {
        Symbols {
            flavor,
            instruments: Instruments::new(exchange, venue_symbols, |symbol| Some(flavor.market(symbol))),
        }
    }

    pub fn venue_symbols(&self) -> impl Iterator<Item = &str> {
        self.instruments.ids()
    }
}

impl std::ops::Deref for Symbols {
    type Target = Instruments;

    fn deref(&self) -> &Instruments {
        &self.instruments
    }
}

/// Binance spot (Binance.US too) in the venue registry: 300 connections
/// per 5 minutes per IP; 1024 streams per connection, 4 per symbol.
pub const SPOT: Spec = Spec {
    exchange: "binance",
    ws_url: "wss://stream.binance.com:9443",
    rest_url: "https://api.binance.com",
    replay_path: "",
    limits: VenueLimits {
        connections: 300,
        window: std::time::Duration::from_secs(300),
        symbols_per_connection: 256,
    },
    groups: crate::venues::registry::one_group,
    instruments: |exchange, ids| Symbols::new(exchange, Flavor::Spot, ids).instruments,
    connector: |config, instruments, connection| {
        connector::BinanceVenue::boxed(config, Flavor::Spot, instruments, connection)
    },
    recorded_symbols,
};

/// Binance USDⓈ-M futures in the venue registry: the same connection limit;
/// 200 streams per connection, 6 per symbol.
pub const FUTURES: Spec = Spec {
    exchange: "binance",
    ws_url: "wss://fstream.binance.com",
    rest_url: "https://fapi.binance.com",
    replay_path: "",
    limits: VenueLimits {
        connections: 300,
        window: std::time::Duration::from_secs(300),
        symbols_per_connection: 33,
    },
    groups: crate::venues::registry::one_group,
    instruments: |exchange, ids| Symbols::new(exchange, Flavor::Futures, ids).instruments,
    connector: |config, instruments, connection| {
        connector::BinanceVenue::boxed(config, Flavor::Futures, instruments, connection)
    },
    recorded_symbols,
};

/// Binance COIN-M futures in the venue registry: the USDⓈ-M limits.
pub const DELIVERY: Spec = Spec {
    exchange: "binance",
    ws_url: "wss://dstream.binance.com",
    rest_url: "https://dapi.binance.com",
    replay_path: "",
    limits: FUTURES.limits,
    groups: crate::venues::registry::one_group,
    instruments: |exchange, ids| Symbols::new(exchange, Flavor::Delivery, ids).instruments,
    connector: |config, instruments, connection| {
        connector::BinanceVenue::boxed(config, Flavor::Delivery, instruments, connection)
    },
    recorded_symbols,
};

/// The symbols of a recorded combined stream:
/// `wss://…/stream?streams=btcusdt@aggTrade/…`.
fn recorded_symbols(recording: &moat_localvenue::replay::Recording) -> Vec<String> {
    let mut symbols: Vec<String> = Vec::new();
    for url in &recording.ws_urls {
        let streams = url.split("streams=").nth(1).unwrap_or_default();
        for stream in streams.split('/') {
            let symbol = stream.split('@').next().unwrap_or_default().to_ascii_uppercase();
            if !symbol.is_empty() && !symbols.contains(&symbol) {
                symbols.push(symbol);
            }
        }
    }
    symbols
}
