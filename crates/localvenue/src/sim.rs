//! The simulated venue: the generated exchange ([`crate::exchange`]) on a
//! loopback port. The collector's `[sim]` section starts one inside the
//! collector and subscribes its real Binance connector to it, so a stack
//! without network access (compose, a Helm demo) gets live data through the
//! same WebSocket, REST-snapshot and book-sync path as a real venue.

use crate::exchange::{GeneratedExchange, GeneratedSymbol};

/// Starts generating `trades_per_second` trades for each normalized spot
/// symbol (`BTC-USDT`) from its starting price, on a free loopback port;
/// returns the exchange and the venue symbols it serves (`BTCUSDT`).
/// Dropping the exchange stops it.
pub async fn start<'a>(
    symbols: impl IntoIterator<Item = (&'a str, &'a str)>,
    trades_per_second: u32,
) -> Result<(GeneratedExchange, Vec<String>), String> {
    let symbols = symbols
        .into_iter()
        .map(|(symbol, price)| GeneratedSymbol::parse(&format!("{}={price}", symbol.replace('-', ""))))
        .collect::<Result<Vec<_>, _>>()?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| format!("binding the simulated exchange on a loopback port: {e}"))?;
    let exchange = GeneratedExchange::start(listener, &symbols, trades_per_second)
        .await
        .map_err(|e| format!("starting the simulated exchange: {e}"))?;
    Ok((exchange, symbols.into_iter().map(|s| s.venue_symbol).collect()))
}
