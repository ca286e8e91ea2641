//! `GetPrice`: the median over fresh sources, with outliers, confidence and
//! staleness, all in exact decimals.

use moat_common_types::{Decimal, Error, ErrorCode};
use moat_proto::gateway::v1 as pb;

use crate::cache::{Cache, Quote};
use crate::config::PricesConfig;

/// Upper-cases and maps a wrapped token to its asset for `chain`.
pub fn underlying(config: &PricesConfig, token: &str, chain: Option<&str>) -> String {
    let token = token.trim().to_ascii_uppercase();
    let lookup = |table: &str| config.wrapped.get(table).and_then(|m| m.get(&token)).cloned();
    chain.and_then(lookup).or_else(|| lookup("default")).unwrap_or(token)
}

fn median(mut values: Vec<Decimal>) -> Decimal {
    values.sort();
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / Decimal::TWO
    }
}

fn source(q: &Quote) -> pb::PriceSource {
    pb::PriceSource {
        exchange: q.exchange.to_string(),
        symbol: q.symbol.to_string(),
        price: q.price.to_string(),
        ts_ms: q.ts_us / 1_000,
    }
}

/// Prices `request` from the cache at time `now_ms`.
pub fn price(
    cache: &Cache,
    config: &PricesConfig,
    request: &pb::GetPriceRequest,
    now_ms: i64,
) -> Result<pb::Price, Error> {
    if request.token.trim().is_empty() {
        return Err(Error::invalid_argument("token is empty"));
    }
    let quote = if request.quote.trim().is_empty() {
        "USD".to_owned()
    } else {
        request.quote.trim().to_ascii_uppercase()
    };
    let asset = underlying(config, &request.token, request.chain.as_deref());
    let symbols: Vec<String> = match config.quote_aliases.get(&quote) {
        Some(aliases) => aliases.iter().map(|q| format!("{asset}-{q}")).collect(),
        None => vec![format!("{asset}-{quote}")],
    };
    let all = cache.quotes(&symbols);
    if all.is_empty() {
        return Err(Error::new(
            ErrorCode::NotFound,
            format!(
                "no price source for {asset}/{quote}: no exchange publishes {}",
                symbols.join(", ")
            ),
        ));
    }
    let (fresh, stale): (Vec<&Quote>, Vec<&Quote>) = all
        .iter()
        .partition(|q| now_ms - q.ts_us / 1_000 <= config.max_age.as_millis() as i64);
    let failed = stale
        .iter()
        .map(|q| pb::FailedSource {
            exchange: q.exchange.to_string(),
            symbol: q.symbol.to_string(),
            reason: format!("stale: last update {} ms ago", now_ms - q.ts_us / 1_000),
        })
        .collect();
    // With no fresh source, answer from the stale ones, flagged stale.
    let used: &[&Quote] = if fresh.is_empty() { &stale } else { &fresh };
    let mid = median(used.iter().map(|q| q.price).collect());
    let threshold = config.outlier_fraction();
    let is_outlier = |q: &&Quote| !mid.is_zero() && ((q.price - mid).abs() / mid) > threshold;
    let (outliers, agreeing): (Vec<&Quote>, Vec<&Quote>) = used.iter().copied().partition(is_outlier);
    // The answer is the median of the sources that agree with each other.
    let price = if agreeing.is_empty() {
        mid
    } else {
        median(agreeing.iter().map(|q| q.price).collect())
    };
    Ok(pb::Price {
        token: if request
            .token
            .bytes()
            .all(|b| !b.is_ascii_lowercase() && !b.is_ascii_whitespace())
        {
            request.token.clone()
        } else {
            request.token.trim().to_ascii_uppercase()
        },
        quote,
        price: price.normalize().to_string(),
        ts_ms: used.iter().map(|q| q.ts_us).max().unwrap_or_default() / 1_000,
        sources: agreeing.iter().map(|q| source(q)).collect(),
        failed,
        outliers: outliers.iter().map(|q| source(q)).collect(),
        confidence: agreeing.len() as f64 / all.len() as f64,
        stale: fresh.is_empty(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use moat_common_types::model::{Bbo, Instrument, Level};
    use moat_common_types::{Market, MarketEvent};
    use std::str::FromStr;

    /// A BBO stamped `ts` (Unix µs).
    fn bbo(cache: &Cache, exchange: &str, symbol: &str, bid: &str, ask: &str, ts: i64) {
        let level = |p: &str| Level {
            price: Decimal::from_str(p).unwrap(),
            qty: Decimal::ONE,
        };
        cache.apply(&MarketEvent::Bbo(Bbo {
            instrument: Instrument::new(exchange, Market::Spot, symbol, symbol),
            sequence: 1,
            bid: level(bid),
            ask: level(ask),
            ts_exchange_us: ts,
            ts_recv_us: ts,
        }));
    }

    fn request(token: &str) -> pb::GetPriceRequest {
        pb::GetPriceRequest {
            token: token.into(),
            quote: String::new(),
            chain: Some("arbitrum".into()),
        }
    }

    #[test]
    fn median_of_fresh_sources_with_outliers_flagged() {
        let cache = Cache::default();
        let config = PricesConfig::default();
        bbo(&cache, "binance", "ETH-USDT", "3000.00", "3000.02", 1_000_000);
        bbo(&cache, "okx", "ETH-USDT", "3000.10", "3000.12", 1_000_000);
        bbo(&cache, "coinbase", "ETH-USD", "3000.04", "3000.06", 1_000_000);
        bbo(&cache, "kraken", "ETH-USD", "3200.00", "3200.02", 1_000_000);
        bbo(&cache, "bitstamp", "ETH-USD", "2999.00", "2999.02", -20_000_000);

        // WETH on arbitrum prices as ETH; quotes in USDT and USDC count as USD.
        let p = price(&cache, &config, &request("weth"), 1_500).unwrap();
        assert_eq!(p.price, "3000.05");
        assert_eq!(p.outliers.len(), 1);
        assert_eq!(p.outliers[0].exchange, "kraken");
        assert_eq!(p.sources.len(), 3);
        assert_eq!(p.failed.len(), 1);
        assert!(p.failed[0].reason.starts_with("stale"), "{}", p.failed[0].reason);
        assert!(!p.stale);
        assert!((p.confidence - 0.6).abs() < 1e-9, "{}", p.confidence);
    }

    #[test]
    fn only_stale_sources_answer_stale_and_nothing_is_not_found() {
        let cache = Cache::default();
        let config = PricesConfig::default();
        bbo(&cache, "binance", "BTC-USDT", "60000", "60002", 0);
        let p = price(&cache, &config, &request("BTC"), 60_000).unwrap();
        assert!(p.stale);
        assert_eq!(p.price, "60001");
        let err = price(&cache, &config, &request("DOGE"), 60_000).unwrap_err();
        assert_eq!(err.code, ErrorCode::NotFound);
        assert!(err.message.contains("DOGE-USDT"), "{}", err.message);
    }
}
