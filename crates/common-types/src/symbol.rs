//! Symbol normalization: venue spellings to `BASE-QUOTE`, `BASE-QUOTE-PERP`,
//! `BASE-QUOTE-YYMMDD` and, for options, `BASE-QUOTE-YYMMDD-STRIKE-C` or
//! `-P`, and back from the normalized form.

use std::fmt;
use std::str::FromStr;

use crate::error::Error;
use crate::model::Market;

/// Quote assets recognised at the end of concatenated symbols (`BTCUSDT`).
/// Longer quotes are tried first so `USDT` wins over `USD`.
const KNOWN_QUOTES: &[&str] = &[
    "FDUSD", "BIDR", "BUSD", "IDRT", "TUSD", "USDC", "USDP", "USDT", "BRL", "BTC", "BNB", "DAI", "DOT", "ETH", "EUR",
    "GBP", "JPY", "NGN", "PAX", "RUB", "TRX", "TRY", "UAH", "USD", "VAI", "XRP", "ZAR", "AUD",
];

/// A normalized symbol, e.g. `BTC-USDT`, `UNI-USD-PERP`, `BTC-USD-220527`,
/// `BTC-USD-220624-20000-C`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Symbol {
    pub base: String,
    pub quote: String,
    pub market: Market,
    /// `YYMMDD` for dated futures and options.
    pub expiry: Option<String>,
    /// An option's strike and right.
    pub option: Option<OptionTerms>,
}

/// Whether an option is a call or a put.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OptionRight {
    Call,
    Put,
}

impl OptionRight {
    /// `C` or `P`, as the normalized symbol ends.
    pub fn letter(self) -> char {
        match self {
            OptionRight::Call => 'C',
            OptionRight::Put => 'P',
        }
    }
}

/// An option's strike, as written in its symbol (digits, with `D` for a
/// decimal point, since a symbol is one NATS subject token: `0D625`), and
/// its right.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OptionTerms {
    pub strike: String,
    pub right: OptionRight,
}

impl Symbol {
    pub fn spot(base: &str, quote: &str) -> Symbol {
        Symbol {
            base: base.to_ascii_uppercase(),
            quote: quote.to_ascii_uppercase(),
            market: Market::Spot,
            expiry: None,
            option: None,
        }
    }

    pub fn perp(base: &str, quote: &str) -> Symbol {
        Symbol {
            market: Market::Perp,
            ..Symbol::spot(base, quote)
        }
    }

    pub fn future(base: &str, quote: &str, expiry: &str) -> Result<Symbol, Error> {
        if !is_expiry(expiry) {
            return Err(Error::invalid_argument(format!(
                "expiry '{expiry}' is not a date in YYMMDD form"
            )));
        }
        Ok(Symbol {
            market: Market::Future,
            expiry: Some(expiry.to_owned()),
            ..Symbol::spot(base, quote)
        })
    }
}

impl Symbol {
    /// An option on `base` quoted in `quote`, expiring `expiry` (YYMMDD);
    /// the strike is digits, with `D` or `.` for a decimal point.
    pub fn option(base: &str, quote: &str, expiry: &str, strike: &str, right: OptionRight) -> Result<Symbol, Error> {
        let strike = strike.replace('.', "D").to_ascii_uppercase();
        if !is_strike(&strike) {
            return Err(Error::invalid_argument(format!(
                "strike '{strike}' is not a number (digits, with D for a decimal point)"
            )));
        }
        Ok(Symbol {
            market: Market::Option,
            option: Some(OptionTerms { strike, right }),
            ..Symbol::future(base, quote, expiry)?
        })
    }
}

impl fmt::Display for Symbol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.base, self.quote)?;
        match (&self.market, &self.expiry, &self.option) {
            (Market::Perp, _, _) => f.write_str("-PERP"),
            (Market::Future, Some(expiry), _) => write!(f, "-{expiry}"),
            (Market::Option, Some(expiry), Some(terms)) => {
                write!(f, "-{expiry}-{}-{}", terms.strike, terms.right.letter())
            }
            _ => Ok(()),
        }
    }
}

impl FromStr for Symbol {
    type Err = Error;

    /// Parses the normalized form only; use [`normalize`] for venue symbols.
    fn from_str(s: &str) -> Result<Symbol, Error> {
        let parts: Vec<&str> = s.split('-').collect();
        let bad = || {
            Error::invalid_argument(format!(
                "symbol '{s}' is not normalized: expected BASE-QUOTE, BASE-QUOTE-PERP, BASE-QUOTE-YYMMDD or BASE-QUOTE-YYMMDD-STRIKE-C|P in upper case"
            ))
        };
        match parts.as_slice() {
            [base, quote] if is_asset(base) && is_asset(quote) => Ok(Symbol::spot(base, quote)),
            [base, quote, "PERP"] if is_asset(base) && is_asset(quote) => Ok(Symbol::perp(base, quote)),
            [base, quote, expiry] if is_asset(base) && is_asset(quote) && is_expiry(expiry) => {
                Symbol::future(base, quote, expiry)
            }
            [base, quote, expiry, strike, right]
                if is_asset(base) && is_asset(quote) && is_expiry(expiry) && is_strike(strike) =>
            {
                let right = match *right {
                    "C" => OptionRight::Call,
                    "P" => OptionRight::Put,
                    _ => return Err(bad()),
                };
                Symbol::option(base, quote, expiry, strike, right)
            }
            _ => Err(bad()),
        }
    }
}

fn is_asset(s: &str) -> bool {
    !s.is_empty() && s.len() <= 20 && s.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
}

/// Digits, with at most one `D` between them for a decimal point.
fn is_strike(s: &str) -> bool {
    let (whole, fraction) = s.split_once('D').unwrap_or((s, "0"));
    let digits = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
    digits(whole) && digits(fraction) && s.len() <= 20
}

fn is_expiry(s: &str) -> bool {
    if s.len() != 6 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return false;
    }
    let month: u32 = s[2..4].parse().unwrap_or(0);
    let day: u32 = s[4..6].parse().unwrap_or(0);
    (1..=12).contains(&month) && (1..=31).contains(&day)
}

/// Splits a concatenated venue symbol (`BTCUSDT`) at a known quote asset.
/// Where several quotes fit, a split whose base is itself a known asset
/// wins (`ETHTUSD` is ETH-TUSD, not ETHT-USD); among those the longer base
/// (`USDTUSD` is USDT-USD, not USD-TUSD), otherwise the longer quote.
pub fn split_concatenated(symbol: &str) -> Option<(&str, &str)> {
    KNOWN_QUOTES
        .iter()
        .filter_map(|quote| {
            let base = symbol.strip_suffix(*quote)?;
            (!base.is_empty()).then_some((base, &symbol[base.len()..]))
        })
        .max_by_key(|(base, quote)| {
            let base_known = KNOWN_QUOTES.contains(base);
            (base_known, if base_known { base.len() } else { quote.len() })
        })
}

/// Normalizes a venue's symbol for the given market.
///
/// Handles dash, underscore and slash separated symbols (`BTC-USDT`,
/// `BTC_USDT`, `BTC/USD`), concatenated ones (`BTCUSDT`), the `SWAP`/`PERP`
/// suffixes of perpetuals and a trailing `YYMMDD` expiry on dated futures
/// (`BTC-USD-220527`, `BTCUSDT_220624`). Venues that publish base and quote
/// separately should build [`Symbol`] directly instead.
pub fn normalize(venue_symbol: &str, market: Market) -> Result<Symbol, Error> {
    let upper = venue_symbol.to_ascii_uppercase();
    let mut parts: Vec<&str> = upper.split(['-', '_', '/']).filter(|p| !p.is_empty()).collect();
    let unknown = || {
        Error::invalid_argument(format!(
            "cannot normalize {market} symbol '{venue_symbol}': no known quote asset"
        ))
    };

    // `BASE-QUOTE-YYMMDD-STRIKE-C|P` (OKX's option ids are this form).
    if market == Market::Option {
        return match parts.as_slice() {
            [base, quote, expiry, strike, right @ ("C" | "P")] if is_asset(base) && is_asset(quote) => {
                let right = if *right == "C" {
                    OptionRight::Call
                } else {
                    OptionRight::Put
                };
                Symbol::option(base, quote, expiry, strike, right)
            }
            _ => Err(Error::invalid_argument(format!(
                "option symbol '{venue_symbol}' is not BASE-QUOTE-YYMMDD-STRIKE-C or -P"
            ))),
        };
    }
    let mut expiry = None;
    match parts.last() {
        Some(&("SWAP" | "PERP")) if parts.len() > 1 => {
            parts.pop();
        }
        Some(last) if parts.len() > 1 && is_expiry(last) => {
            expiry = parts.pop();
        }
        _ => {}
    }
    let (base, quote) = match parts.as_slice() {
        [base, quote] => (*base, *quote),
        [joined] => split_concatenated(joined).ok_or_else(unknown)?,
        _ => return Err(unknown()),
    };
    if !is_asset(base) || !is_asset(quote) {
        return Err(unknown());
    }
    match (market, expiry) {
        (Market::Spot, None) => Ok(Symbol::spot(base, quote)),
        (Market::Perp, None) => Ok(Symbol::perp(base, quote)),
        (Market::Future, Some(expiry)) => Symbol::future(base, quote, expiry),
        (Market::Future, None) => Err(Error::invalid_argument(format!(
            "future symbol '{venue_symbol}' carries no YYMMDD expiry"
        ))),
        (_, Some(_)) => Err(Error::invalid_argument(format!(
            "{market} symbol '{venue_symbol}' carries an expiry, which only futures have"
        ))),
        // Options return above.
        (Market::Option, None) => Err(unknown()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(venue: &str, market: Market, expect: &str) {
        let symbol = normalize(venue, market).unwrap_or_else(|e| panic!("{venue}: {e}"));
        assert_eq!(symbol.to_string(), expect, "{venue}");
        // The normalized form parses back to the same symbol.
        assert_eq!(expect.parse::<Symbol>().unwrap(), symbol, "{expect}");
    }

    #[test]
    fn venue_symbols_normalize() {
        check("BTCUSDT", Market::Spot, "BTC-USDT");
        check("nknusdt", Market::Spot, "NKN-USDT");
        check("ETHBTC", Market::Spot, "ETH-BTC");
        check("RUNEEUR", Market::Spot, "RUNE-EUR");
        check("BTC-USDT", Market::Spot, "BTC-USDT");
        check("SKL-GBP", Market::Spot, "SKL-GBP");
        check("UNI-USD-SWAP", Market::Perp, "UNI-USD-PERP");
        check("SUSHIUSDT", Market::Perp, "SUSHI-USDT-PERP");
        check("BTC-USD-220527", Market::Future, "BTC-USD-220527");
        check("BTCUSDT_220624", Market::Future, "BTC-USDT-220624");
        check("ETH/USD", Market::Spot, "ETH-USD");
        check("BTC-USD-220624-20000-C", Market::Option, "BTC-USD-220624-20000-C");
        check("eth-usd-220624-1500-p", Market::Option, "ETH-USD-220624-1500-P");
        check("XRP-USDC-240927-0.625-C", Market::Option, "XRP-USDC-240927-0D625-C");
    }

    #[test]
    fn option_symbols_carry_expiry_strike_and_right() {
        let s: Symbol = "BTC-USD-220624-20000-C".parse().unwrap();
        assert_eq!(s.market, Market::Option);
        assert_eq!(s.expiry.as_deref(), Some("220624"));
        let terms = s.option.unwrap();
        assert_eq!((terms.strike.as_str(), terms.right), ("20000", OptionRight::Call));
        for bad in [
            "BTC-USD-220624-20000-X",
            "BTC-USD-221399-20000-C",
            "BTC-USD-220624-2.5-C",
            "BTC-USD-220624-D5-C",
        ] {
            assert!(bad.parse::<Symbol>().is_err(), "{bad}");
        }
        assert!(normalize("BTC-USD-220624", Market::Option).is_err());
    }

    #[test]
    fn bad_symbols_are_rejected_with_the_symbol_named() {
        let err = normalize("FOOBAR", Market::Spot).unwrap_err();
        assert!(err.message.contains("'FOOBAR'"), "{}", err.message);
        assert!(normalize("BTC-USD", Market::Future).is_err());
        assert!(normalize("BTC-USD-220527", Market::Spot).is_err());
        assert!(normalize("BTC-USD-221399", Market::Future).is_err());
        for bad in [
            "btc-usdt",
            "BTC",
            "BTC-USDT-SWAP",
            "BTC--USDT",
            "BTC-USDT-2205",
            "BTC.X-USD",
        ] {
            assert!(bad.parse::<Symbol>().is_err(), "{bad} parsed");
        }
    }

    #[test]
    fn longest_quote_wins() {
        assert_eq!(split_concatenated("BTCUSDT"), Some(("BTC", "USDT")));
        assert_eq!(split_concatenated("BTCUSD"), Some(("BTC", "USD")));
        assert_eq!(split_concatenated("USDT"), None);
        // Two quotes fit: the base a known asset, then the longer base.
        assert_eq!(split_concatenated("USDTUSD"), Some(("USDT", "USD")));
        assert_eq!(split_concatenated("ETHTUSD"), Some(("ETH", "TUSD")));
        assert_eq!(split_concatenated("BTCFDUSD"), Some(("BTC", "FDUSD")));
        assert_eq!(split_concatenated("USDCUSDT"), Some(("USDC", "USDT")));
        assert_eq!(split_concatenated("SOLUSDT"), Some(("SOL", "USDT")));
    }
}
