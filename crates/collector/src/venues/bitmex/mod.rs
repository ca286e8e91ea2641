//! BitMEX (`wss://ws.bitmex.com/realtime`): `orderBookL2` (a `partial`,
//! then `insert`, `update` and `delete` by level `id`: an update or delete
//! may carry no price, which is the one its `id` was inserted with),
//! `trade`, `quote` (BBO), `instrument` (funding, mark and index price,
//! open interest) and `liquidation`, for perpetuals (`XBTUSD`, `SOLUSDT`)
//! and quarterly futures (`XRPU21`: a month code and year; they expire on
//! the last Friday of the month). BitMEX's `XBT` is BTC.

pub mod connector;
pub mod parse;

use moat_common_types::symbol::Symbol;
use moat_common_types::{Instrument, Market};

use crate::venues::Instruments;
use crate::venues::limits::VenueLimits;
use crate::venues::registry::Spec;
use crate::venues::time::days_from_civil;

/// The quote currencies of BitMEX symbols, `USDT` before `USD`.
const QUOTES: &[&str] = &["USDT", "USDC", "USD", "EUR", "XBT", "ETH"];
/// Futures month codes, January to December.
const MONTHS: &str = "FGHJKMNQUVXZ";

/// An asset as moat names it.
fn asset(bitmex: &str) -> &str {
    if bitmex == "XBT" { "BTC" } else { bitmex }
}

/// The last Friday of a month as `YYMMDD`: when BitMEX's quarterlies expire.
fn last_friday(year: i64, month: i64) -> String {
    let (next_year, next_month) = if month == 12 { (year + 1, 1) } else { (year, month + 1) };
    // The last day of the month, and its weekday (1970-01-01 was a Thursday).
    let last = days_from_civil(next_year, next_month, 1) - 1;
    let weekday = (last + 3).rem_euclid(7); // 0 = Monday
    let friday = last - (weekday - 4).rem_euclid(7);
    let day = friday - days_from_civil(year, month, 1) + 1;
    format!("{:02}{month:02}{day:02}", year % 100)
}

/// One BitMEX symbol as moat's instrument: a perpetual, or a quarterly
/// future (`XRPU21` is XRP quoted in XBT, `XBTZ24` BTC in USD,
/// `ETHUSDTZ24` ETH in USDT).
fn instrument(exchange: &str, id: &str) -> Result<Instrument, String> {
    let unknown = || format!("not a BitMEX perpetual or quarterly future: {id:?}");
    let b = id.as_bytes();
    let expiry = match b.len().checked_sub(3).map(|at| (at, &b[at..])) {
        Some((at, [code, y1, y2])) if y1.is_ascii_digit() && y2.is_ascii_digit() => {
            let month = MONTHS.find(char::from(*code)).ok_or_else(unknown)? as i64 + 1;
            let year = 2000 + i64::from(y1 - b'0') * 10 + i64::from(y2 - b'0');
            Some((&id[..at], last_friday(year, month)))
        }
        _ => None,
    };
    let (market, pair) = match &expiry {
        Some((root, _)) => (Market::Future, *root),
        None => (Market::Perp, id),
    };
    let (base, quote) = match crate::venues::split_quote(pair, QUOTES) {
        Some(split) => split,
        // A quarterly named by its root alone is quoted in XBT, but for
        // XBT itself, quoted in USD.
        None if expiry.is_some() && pair == "XBT" => ("XBT", "USD"),
        None if expiry.is_some() => (pair, "XBT"),
        None => return Err(unknown()),
    };
    let text = match &expiry {
        Some((_, date)) => format!("{}-{}-{date}", asset(base), asset(quote)),
        None => format!("{}-{}-PERP", asset(base), asset(quote)),
    };
    let symbol: Symbol = text.parse().map_err(|e: moat_common_types::Error| e.to_string())?;
    Ok(Instrument::new(exchange.to_owned(), market, symbol.to_string(), id))
}

/// The instruments of BitMEX symbols.
pub fn symbols(exchange: &str, ids: &[&str]) -> Instruments {
    Instruments::with(exchange, ids, |id| Ok((id.to_owned(), instrument(exchange, id)?)))
}

/// BitMEX in the venue registry.
pub const SPEC: Spec = Spec {
    exchange: "bitmex",
    ws_url: "wss://ws.bitmex.com",
    rest_url: "https://www.bitmex.com",
    replay_path: "",
    // 40 connection attempts an hour per IP.
    limits: VenueLimits {
        connections: 40,
        window: std::time::Duration::from_secs(3600),
        symbols_per_connection: 50,
    },
    groups: crate::venues::registry::one_group,
    instruments: symbols,
    connector: |config, symbols, connection| {
        Box::new(connector::BitmexVenue {
            symbols,
            ws_url: config.ws_url.clone(),
            connection,
        })
    },
    // {"op":"subscribe","args":["orderBookL2:XBTUSD",…]}
    recorded_symbols: |recording| {
        let mut ids: Vec<String> = Vec::new();
        for sent in &recording.sent {
            let Ok(request) = serde_json::from_str::<serde_json::Value>(sent) else {
                continue;
            };
            for arg in request["args"].as_array().into_iter().flatten().filter_map(|a| a.as_str()) {
                if let Some((_, id)) = arg.split_once(':')
                    && !ids.iter().any(|i| i == id)
                {
                    ids.push(id.to_owned());
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
    fn quarterlies_expire_on_the_last_friday() {
        assert_eq!(last_friday(2021, 9), "210924");
        assert_eq!(last_friday(2021, 12), "211231");
        assert_eq!(last_friday(2024, 3), "240329");
        assert_eq!(last_friday(2022, 6), "220624");
    }

    #[test]
    fn symbols_normalize_as_perpetuals_or_quarterlies() {
        let s = symbols("bitmex", &["XBTUSD", "SOLUSDT", "XRPU21", "XBTZ24", "ETHUSDTZ24", "XRPA21", "FOO"]);
        assert_eq!(s.get("XBTUSD").unwrap().symbol, "BTC-USD-PERP");
        assert_eq!(s.get("SOLUSDT").unwrap().symbol, "SOL-USDT-PERP");
        assert_eq!(s.get("XRPU21").unwrap().symbol, "XRP-BTC-210924");
        assert_eq!(s.get("XRPU21").unwrap().market, Market::Future);
        assert_eq!(s.get("XBTZ24").unwrap().symbol, "BTC-USD-241227");
        assert_eq!(s.get("ETHUSDTZ24").unwrap().symbol, "ETH-USDT-241227");
        assert_eq!(s.skipped().len(), 2, "{:?}", s.skipped());
    }
}
