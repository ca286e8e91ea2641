//! The simulated venue (`[sim]`): the generated local exchange of
//! [`crate::exchange`] started inside the collector on a loopback port, with
//! the real Binance connector subscribed to it. A stack without network
//! access (compose, a Helm demo) gets live data through the same WebSocket,
//! REST-snapshot and book-sync path as a real venue.

use anyhow::Context;

use crate::config::{SimConfig, VenueConfig};
use crate::exchange::{GeneratedExchange, GeneratedSymbol};

/// Starts the generated exchange and returns it with the venue that
/// connects to it (kept alive as long as the exchange value is).
pub async fn start(config: &SimConfig) -> anyhow::Result<(GeneratedExchange, VenueConfig)> {
    let symbols = config
        .symbols
        .iter()
        .map(|s| GeneratedSymbol::parse(&format!("{}={}", s.symbol.replace('-', ""), s.price)))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow::anyhow!("sim.symbols: {e}"))?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .context("binding the simulated exchange on a loopback port")?;
    let exchange = GeneratedExchange::start(listener, &symbols, config.trades_per_second).await?;
    let venue = VenueConfig {
        kind: "binance".into(),
        exchange: config.exchange.clone(),
        ws_url: exchange.ws_url(),
        rest_url: exchange.http_url(),
        symbols: symbols.into_iter().map(|s| s.venue_symbol).collect(),
        open_interest_interval_ms: 0,
        ..VenueConfig::default()
    };
    Ok((exchange, venue))
}
