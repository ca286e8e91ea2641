//! Deribit (`wss://www.deribit.com/ws/api/v2`, JSON-RPC): `trades`, `book`
//! (a snapshot, then changes whose `prev_change_id` is the change before)
//! and `ticker` (BBO, mark and index price, funding, open interest) for
//! options (`BTC-24SEP21-8000-P`), dated futures (`BTC-24SEP21`) and
//! perpetuals (`BTC-PERPETUAL`), coin-settled or USDC-settled
//! (`SOL_USDC-PERPETUAL`). Public market data needs no authentication.

pub mod connector;
pub mod parse;

use moat_common_types::symbol::{OptionRight, Symbol};
use moat_common_types::{Instrument, Market};

use crate::venues::Instruments;
use crate::venues::limits::VenueLimits;
use crate::venues::registry::Spec;

const MONTHS: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];

/// Deribit's `24SEP21` (or `5AUG22`) as `210924`.
fn expiry(date: &str) -> Option<String> {
    let split = date.find(|c: char| c.is_ascii_alphabetic())?;
    let (day, rest) = date.split_at(split);
    let (month, year) = (rest.get(..3)?, rest.get(3..)?);
    let month = MONTHS.iter().position(|m| *m == month)? + 1;
    let day: u32 = day.parse().ok().filter(|d| (1..=31).contains(d))?;
    (year.len() == 2 && year.bytes().all(|b| b.is_ascii_digit())).then(|| format!("{year}{month:02}{day:02}"))
}

/// One Deribit instrument name as moat's instrument. Coin-settled
/// contracts are quoted in USD, and their options in the coin (a BTC option
/// is priced in BTC); `X_USDC` contracts are quoted and settled in USDC.
fn instrument(exchange: &str, id: &str) -> Result<Instrument, String> {
    let unknown = || format!("not a Deribit option, future or perpetual name: {id:?}");
    let parts: Vec<&str> = id.split('-').collect();
    let (base, linear) = match parts[0].split_once('_') {
        Some((base, quote)) => (base, Some(quote)),
        None => (parts[0], None),
    };
    let contract_quote = linear.unwrap_or("USD");
    let settlement = linear.unwrap_or(base);
    let normalized = |text: String| text.parse::<Symbol>().map_err(|e| e.to_string());
    match parts.as_slice() {
        [_, "PERPETUAL"] => {
            let symbol = normalized(format!("{base}-{contract_quote}-PERP"))?;
            Ok(Instrument::new(exchange.to_owned(), Market::Perp, symbol.to_string(), id))
        }
        [_, date] => {
            let symbol = normalized(format!("{base}-{contract_quote}-{}", expiry(date).ok_or_else(unknown)?))?;
            Ok(Instrument::new(exchange.to_owned(), Market::Future, symbol.to_string(), id))
        }
        [_, date, strike, right] => {
            let right = match *right {
                "C" => OptionRight::Call,
                "P" => OptionRight::Put,
                _ => return Err(unknown()),
            };
            let quote = linear.unwrap_or(base);
            let expiry = expiry(date).ok_or_else(unknown)?;
            let symbol = Symbol::option(base, quote, &expiry, strike, right).map_err(|e| e.to_string())?;
            Instrument::option(exchange.to_owned(), &symbol, id, settlement).map_err(|e| e.to_string())
        }
        _ => Err(unknown()),
    }
}

/// Deribit's own spelling of a name read upper-cased: its names are upper
/// case but for the `d` of a decimal strike (`XRP_USDC-27SEP24-0d625-C`).
fn venue_name(upper: &str) -> String {
    let parts: Vec<&str> = upper.split('-').collect();
    match parts.as_slice() {
        [underlying, date, strike, right] => format!("{underlying}-{date}-{}-{right}", strike.replace('D', "d")),
        _ => upper.to_owned(),
    }
}

/// The instruments of Deribit instrument names.
pub fn symbols(exchange: &str, ids: &[&str]) -> Instruments {
    Instruments::with(exchange, ids, |id| {
        let name = venue_name(id);
        Ok((name.clone(), instrument(exchange, &name)?))
    })
}

/// Deribit in the venue registry.
pub const SPEC: Spec = Spec {
    exchange: "deribit",
    ws_url: "wss://www.deribit.com",
    rest_url: "https://www.deribit.com",
    replay_path: "",
    limits: VenueLimits {
        connections: 20,
        window: std::time::Duration::from_secs(1),
        symbols_per_connection: 100,
    },
    groups: crate::venues::registry::one_group,
    instruments: symbols,
    connector: |config, symbols, connection| {
        Box::new(connector::DeribitVenue {
            symbols,
            ws_url: config.ws_url.clone(),
            connection,
        })
    },
    // {"method":"public/subscribe","params":{"channels":["book.BTC-PERPETUAL.raw",…]}}
    recorded_symbols: |recording| {
        let mut ids: Vec<String> = Vec::new();
        for sent in &recording.sent {
            let Ok(request) = serde_json::from_str::<serde_json::Value>(sent) else {
                continue;
            };
            let channels = request["params"]["channels"].as_array().into_iter().flatten();
            for channel in channels.filter_map(|c| c.as_str()) {
                let mut parts = channel.split('.');
                if let (Some(_), Some(id)) = (parts.next(), parts.next())
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
    fn names_normalize_by_kind_with_their_terms() {
        let s = symbols(
            "deribit",
            &["BTC-24SEP21-8000-P", "ETH-5AUG22-2300-C", "BTC-PERPETUAL", "BTC-24SEP21", "SOL_USDC-PERPETUAL", "XRP_USDC-27SEP24-0d625-C", "BTC-24SEP21-8000-X"],
        );
        let option = s.get("BTC-24SEP21-8000-P").unwrap();
        assert_eq!(option.symbol, "BTC-BTC-210924-8000-P");
        let terms = option.option.as_ref().unwrap();
        assert_eq!((terms.expiry.as_str(), terms.settlement.as_str()), ("210924", "BTC"));
        assert_eq!(s.get("ETH-5AUG22-2300-C").unwrap().symbol, "ETH-ETH-220805-2300-C");
        assert_eq!(s.get("BTC-PERPETUAL").unwrap().symbol, "BTC-USD-PERP");
        assert_eq!(s.get("BTC-24SEP21").unwrap().symbol, "BTC-USD-210924");
        assert_eq!(s.get("SOL_USDC-PERPETUAL").unwrap().symbol, "SOL-USDC-PERP");
        let linear = s.get("XRP_USDC-27SEP24-0d625-C").unwrap();
        assert_eq!(linear.symbol, "XRP-USDC-240927-0D625-C");
        assert_eq!(linear.option.as_ref().unwrap().strike.to_string(), "0.625");
        assert_eq!(s.skipped().len(), 1, "{:?}", s.skipped());
    }
}
