//! Normalized market-data domain types.
//!
//! Prices and quantities are [`Decimal`]s parsed from the exchange's own
//! strings, so nothing passes through `f64` between the venue and storage.

use std::fmt;
use std::str::FromStr;

pub use rust_decimal::Decimal;

use crate::error::Error;

/// Venue identifier as it appears in subjects and tables (`binance`, `okx`).
pub type Exchange = String;

/// The kind of instrument.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Market {
    Spot,
    /// Perpetual swap; normalized symbols end in `-PERP`.
    Perp,
    /// Dated future; normalized symbols end in `-YYMMDD`.
    Future,
    /// Option; normalized symbols end in `-YYMMDD-STRIKE-C` or `-P`.
    Option,
}

impl Market {
    pub const ALL: [Market; 4] = [Market::Spot, Market::Perp, Market::Future, Market::Option];

    pub fn as_str(self) -> &'static str {
        match self {
            Market::Spot => "spot",
            Market::Perp => "perp",
            Market::Future => "future",
            Market::Option => "option",
        }
    }
}

impl fmt::Display for Market {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Market {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        Market::ALL.into_iter().find(|m| m.as_str() == s).ok_or_else(|| {
            Error::invalid_argument(format!("unknown market '{s}', expected spot, perp, future or option"))
        })
    }
}

/// Taker side of a trade, or the side of a liquidated position's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    Buy,
    Sell,
}

impl Side {
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Buy => "buy",
            Side::Sell => "sell",
        }
    }
}

/// The subject token of each event kind: `md.<kind>.…`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Trade,
    /// L2 book snapshots and deltas.
    Book,
    Bbo,
    Funding,
    Liquidation,
    OpenInterest,
    /// Option mark price, implied volatility, greeks, underlying price.
    OptionTicker,
    Candle,
    /// Data known to be lost or a book that must be rebuilt.
    Gap,
}

impl Kind {
    pub const ALL: [Kind; 9] = [
        Kind::Trade,
        Kind::Book,
        Kind::Bbo,
        Kind::Funding,
        Kind::Liquidation,
        Kind::OpenInterest,
        Kind::OptionTicker,
        Kind::Candle,
        Kind::Gap,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Trade => "trade",
            Kind::Book => "book",
            Kind::Bbo => "bbo",
            Kind::Funding => "funding",
            Kind::Liquidation => "liquidation",
            Kind::OpenInterest => "open_interest",
            Kind::OptionTicker => "option_ticker",
            Kind::Candle => "candle",
            Kind::Gap => "gap",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Kind {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        Kind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| Error::invalid_argument(format!("unknown event kind '{s}'")))
    }
}

/// Which instrument on which venue. Every event carries one, so it is
/// shared rather than copied: a clone is a reference count, not three
/// strings. Its fields read through [`InstrumentFields`].
#[derive(Clone)]
pub struct Instrument(std::sync::Arc<Shared>);

/// An instrument's fields, and the `instrument` field every event message
/// carries, written the first time an event of it is encoded (every later
/// one copies these bytes instead of writing its strings again; an
/// instrument that is only decoded never writes them).
struct Shared {
    fields: InstrumentFields,
    wire: std::sync::OnceLock<Box<[u8]>>,
}

impl PartialEq for Instrument {
    fn eq(&self, other: &Instrument) -> bool {
        std::sync::Arc::ptr_eq(&self.0, &other.0) || self.0.fields == other.0.fields
    }
}

impl Eq for Instrument {}

impl std::hash::Hash for Instrument {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.fields.hash(state);
    }
}

/// What an [`Instrument`] names.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct InstrumentFields {
    pub exchange: Exchange,
    pub market: Market,
    /// Normalized symbol (`BTC-USDT`, `UNI-USD-PERP`, `BTC-USD-220527`).
    pub symbol: String,
    /// The venue's own symbol (`BTCUSDT`, `UNI-USD-SWAP`).
    pub venue_symbol: String,
    /// An option's terms; `None` for every other market.
    pub option: Option<OptionContract>,
}

/// What an option instrument is: its expiry, strike, right and the
/// currency it settles in (its symbol carries the first three).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OptionContract {
    /// `YYMMDD`.
    pub expiry: String,
    pub strike: Decimal,
    pub right: crate::symbol::OptionRight,
    /// `BTC` for Deribit's and OKX's coin-margined options, `USDC` for
    /// linear ones.
    pub settlement: String,
}

impl Instrument {
    pub fn new(
        exchange: impl Into<Exchange>,
        market: Market,
        symbol: impl Into<String>,
        venue_symbol: impl Into<String>,
    ) -> Instrument {
        Instrument::from_fields(InstrumentFields {
            exchange: exchange.into(),
            market,
            symbol: symbol.into(),
            venue_symbol: venue_symbol.into(),
            option: None,
        })
    }

    fn from_fields(fields: InstrumentFields) -> Instrument {
        Instrument(std::sync::Arc::new(Shared {
            fields,
            wire: std::sync::OnceLock::new(),
        }))
    }

    /// The protobuf bytes of this instrument as field 1 of an event
    /// message: key, length and body.
    pub(crate) fn wire(&self) -> &[u8] {
        self.0
            .wire
            .get_or_init(|| crate::proto_conv::instrument_field(&self.0.fields).into_boxed_slice())
    }

    /// An option on `exchange`: its normalized symbol must be an option's
    /// (`BTC-USD-220624-20000-C`), whose terms it carries with the
    /// settlement currency.
    pub fn option(
        exchange: impl Into<Exchange>,
        symbol: &crate::symbol::Symbol,
        venue_symbol: impl Into<String>,
        settlement: impl Into<String>,
    ) -> Result<Instrument, Error> {
        let (Some(expiry), Some(terms)) = (&symbol.expiry, &symbol.option) else {
            return Err(Error::invalid_argument(format!("{symbol} is not an option")));
        };
        let strike = parse_decimal("strike", &terms.strike.replace('D', "."))?;
        Ok(Instrument::from_fields(InstrumentFields {
            exchange: exchange.into(),
            market: Market::Option,
            symbol: symbol.to_string(),
            venue_symbol: venue_symbol.into(),
            option: Some(OptionContract {
                expiry: expiry.clone(),
                strike,
                right: terms.right,
                settlement: settlement.into(),
            }),
        }))
    }

    /// The same instrument with option terms (read back from a message).
    pub fn with_option(self, option: Option<OptionContract>) -> Instrument {
        if option.is_none() {
            return self;
        }
        let mut fields = self.0.fields.clone();
        fields.option = option;
        Instrument::from_fields(fields)
    }
}

impl std::ops::Deref for Instrument {
    type Target = InstrumentFields;

    fn deref(&self) -> &InstrumentFields {
        &self.0.fields
    }
}

impl std::fmt::Debug for Instrument {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Instrument")
            .field("exchange", &self.exchange)
            .field("market", &self.market)
            .field("symbol", &self.symbol)
            .field("venue_symbol", &self.venue_symbol)
            .field("option", &self.option)
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trade {
    pub instrument: Instrument,
    pub trade_id: String,
    pub price: Decimal,
    pub qty: Decimal,
    pub side: Side,
    pub ts_exchange_us: i64,
    pub ts_recv_us: i64,
}

/// One price level; a zero quantity in a delta removes the level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Level {
    pub price: Decimal,
    pub qty: Decimal,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BookSnapshot {
    pub instrument: Instrument,
    pub sequence: u64,
    pub bids: Vec<Level>,
    pub asks: Vec<Level>,
    pub ts_exchange_us: i64,
    pub ts_recv_us: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BookDelta {
    pub instrument: Instrument,
    pub first_sequence: u64,
    pub sequence: u64,
    pub prev_sequence: u64,
    pub bids: Vec<Level>,
    pub asks: Vec<Level>,
    pub ts_exchange_us: i64,
    pub ts_recv_us: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bbo {
    pub instrument: Instrument,
    pub sequence: u64,
    pub bid: Level,
    pub ask: Level,
    pub ts_exchange_us: i64,
    pub ts_recv_us: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Funding {
    pub instrument: Instrument,
    pub funding_rate: Decimal,
    pub mark_price: Decimal,
    pub index_price: Option<Decimal>,
    pub next_funding_ms: i64,
    pub ts_exchange_us: i64,
    pub ts_recv_us: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Liquidation {
    pub instrument: Instrument,
    pub side: Side,
    pub price: Decimal,
    pub qty: Decimal,
    pub order_id: Option<String>,
    pub ts_exchange_us: i64,
    pub ts_recv_us: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenInterest {
    pub instrument: Instrument,
    pub open_interest: Decimal,
    pub ts_exchange_us: i64,
    pub ts_recv_us: i64,
}

/// What a venue says of an option at one moment: its mark price and
/// implied volatilities, its greeks and its underlying's price. Each field
/// but the mark price is there only when the venue sent it. Volatilities are
/// fractions (0.6525 is 65.25 %), whatever unit the venue quotes them in;
/// greeks are as the venue computes them (Deribit's and OKX's in the
/// settlement currency's units, per the venue's documentation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OptionTicker {
    pub instrument: Instrument,
    pub mark_price: Decimal,
    pub mark_iv: Option<Decimal>,
    pub bid_iv: Option<Decimal>,
    pub ask_iv: Option<Decimal>,
    pub underlying_price: Option<Decimal>,
    pub delta: Option<Decimal>,
    pub gamma: Option<Decimal>,
    pub vega: Option<Decimal>,
    pub theta: Option<Decimal>,
    pub rho: Option<Decimal>,
    pub ts_exchange_us: i64,
    pub ts_recv_us: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candle {
    pub instrument: Instrument,
    pub interval_s: u32,
    pub open_time_ms: i64,
    pub open: Decimal,
    pub high: Decimal,
    pub low: Decimal,
    pub close: Decimal,
    pub volume: Decimal,
    pub trades: u64,
    pub closed: bool,
    pub ts_recv_us: i64,
}

/// Data known to be lost: a book that must be rebuilt (`reason` names the
/// check that failed, `last_sequence` the book's last good sequence), or
/// trades missed ([`Gap::TRADES`], `last_sequence` the last trade id seen).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gap {
    pub instrument: Instrument,
    pub reason: String,
    pub last_sequence: u64,
    pub ts_recv_us: i64,
}

impl Gap {
    /// The reason of a gap in the trades (ids skipped), which leaves the
    /// book valid.
    pub const TRADES: &'static str = "trades";

    /// Whether the instrument's book is invalid until its next snapshot.
    pub fn invalidates_book(&self) -> bool {
        self.reason != Gap::TRADES
    }
}

impl OptionTicker {
    /// The fields a venue may leave out, by name, in the order of the
    /// proto message and the table.
    pub fn optional_fields(&self) -> [(&'static str, Option<Decimal>); 9] {
        [
            ("mark_iv", self.mark_iv),
            ("bid_iv", self.bid_iv),
            ("ask_iv", self.ask_iv),
            ("underlying_price", self.underlying_price),
            ("delta", self.delta),
            ("gamma", self.gamma),
            ("vega", self.vega),
            ("theta", self.theta),
            ("rho", self.rho),
        ]
    }
}

/// Any normalized market event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MarketEvent {
    Trade(Trade),
    BookSnapshot(BookSnapshot),
    BookDelta(BookDelta),
    Bbo(Bbo),
    Funding(Funding),
    Liquidation(Liquidation),
    OpenInterest(OpenInterest),
    OptionTicker(OptionTicker),
    Candle(Candle),
    Gap(Gap),
}

impl MarketEvent {
    /// The JSON form of the event (`--emit jsonl`, `moat tail --json`);
    /// decimals as strings, exactly as received.
    pub fn to_json(&self) -> serde_json::Value {
        let event = self;
        let i = event.instrument();
        let mut v = serde_json::json!({
            "kind": event.kind().as_str(),
            "exchange": i.exchange,
            "market": i.market.as_str(),
            "symbol": i.symbol,
        });
        match event {
            MarketEvent::Trade(t) => {
                v["trade_id"] = t.trade_id.clone().into();
                v["price"] = t.price.to_string().into();
                v["qty"] = t.qty.to_string().into();
                v["side"] = t.side.as_str().into();
                v["ts_exchange_us"] = t.ts_exchange_us.into();
                v["ts_recv_us"] = t.ts_recv_us.into();
            }
            MarketEvent::Bbo(b) => {
                v["seq"] = b.sequence.into();
                v["bid"] = serde_json::json!([b.bid.price.to_string(), b.bid.qty.to_string()]);
                v["ask"] = serde_json::json!([b.ask.price.to_string(), b.ask.qty.to_string()]);
                v["ts_exchange_us"] = b.ts_exchange_us.into();
                v["ts_recv_us"] = b.ts_recv_us.into();
            }
            MarketEvent::BookSnapshot(s) => {
                v["kind"] = "book_snapshot".into();
                v["seq"] = s.sequence.into();
                v["bid_levels"] = s.bids.len().into();
                v["ask_levels"] = s.asks.len().into();
            }
            MarketEvent::BookDelta(d) => {
                v["kind"] = "book_delta".into();
                v["seq"] = d.sequence.into();
                v["bid_levels"] = d.bids.len().into();
                v["ask_levels"] = d.asks.len().into();
            }
            MarketEvent::Gap(g) => {
                v["reason"] = g.reason.clone().into();
                v["last_sequence"] = g.last_sequence.into();
            }
            MarketEvent::Candle(c) => {
                v["interval_s"] = c.interval_s.into();
                v["open_time_ms"] = c.open_time_ms.into();
                v["close"] = c.close.to_string().into();
                v["closed"] = c.closed.into();
            }
            MarketEvent::Funding(f) => {
                v["funding_rate"] = f.funding_rate.to_string().into();
                v["mark_price"] = f.mark_price.to_string().into();
                v["next_funding_ms"] = f.next_funding_ms.into();
                v["ts_exchange_us"] = f.ts_exchange_us.into();
            }
            MarketEvent::OpenInterest(o) => {
                v["open_interest"] = o.open_interest.to_string().into();
                v["ts_exchange_us"] = o.ts_exchange_us.into();
            }
            MarketEvent::OptionTicker(t) => {
                v["mark_price"] = t.mark_price.to_string().into();
                for (name, value) in t.optional_fields() {
                    if let Some(value) = value {
                        v[name] = value.to_string().into();
                    }
                }
                v["ts_exchange_us"] = t.ts_exchange_us.into();
            }
            MarketEvent::Liquidation(l) => {
                v["side"] = l.side.as_str().into();
                v["price"] = l.price.to_string().into();
                v["qty"] = l.qty.to_string().into();
                v["ts_exchange_us"] = l.ts_exchange_us.into();
            }
        }
        v
    }

    pub fn instrument(&self) -> &Instrument {
        match self {
            MarketEvent::Trade(e) => &e.instrument,
            MarketEvent::BookSnapshot(e) => &e.instrument,
            MarketEvent::BookDelta(e) => &e.instrument,
            MarketEvent::Bbo(e) => &e.instrument,
            MarketEvent::Funding(e) => &e.instrument,
            MarketEvent::Liquidation(e) => &e.instrument,
            MarketEvent::OpenInterest(e) => &e.instrument,
            MarketEvent::OptionTicker(e) => &e.instrument,
            MarketEvent::Candle(e) => &e.instrument,
            MarketEvent::Gap(e) => &e.instrument,
        }
    }

    /// When the collector received the frame this event came from (Unix µs).
    pub fn ts_recv_us(&self) -> i64 {
        match self {
            MarketEvent::Trade(e) => e.ts_recv_us,
            MarketEvent::BookSnapshot(e) => e.ts_recv_us,
            MarketEvent::BookDelta(e) => e.ts_recv_us,
            MarketEvent::Bbo(e) => e.ts_recv_us,
            MarketEvent::Funding(e) => e.ts_recv_us,
            MarketEvent::Liquidation(e) => e.ts_recv_us,
            MarketEvent::OpenInterest(e) => e.ts_recv_us,
            MarketEvent::OptionTicker(e) => e.ts_recv_us,
            MarketEvent::Candle(e) => e.ts_recv_us,
            MarketEvent::Gap(e) => e.ts_recv_us,
        }
    }

    pub fn kind(&self) -> Kind {
        match self {
            MarketEvent::Trade(_) => Kind::Trade,
            MarketEvent::BookSnapshot(_) | MarketEvent::BookDelta(_) => Kind::Book,
            MarketEvent::Bbo(_) => Kind::Bbo,
            MarketEvent::Funding(_) => Kind::Funding,
            MarketEvent::Liquidation(_) => Kind::Liquidation,
            MarketEvent::OpenInterest(_) => Kind::OpenInterest,
            MarketEvent::OptionTicker(_) => Kind::OptionTicker,
            MarketEvent::Candle(_) => Kind::Candle,
            MarketEvent::Gap(_) => Kind::Gap,
        }
    }

    /// The part of the event's identity that is unique within its instrument
    /// and kind: the trade id, the book sequence, or a timestamp for kinds
    /// the venues do not number. Feeds [`crate::subject::msg_id`].
    pub fn event_key(&self) -> String {
        match self {
            MarketEvent::Trade(e) => e.trade_id.clone(),
            MarketEvent::BookSnapshot(e) => format!("s{}", e.sequence),
            MarketEvent::BookDelta(e) => format!("d{}", e.sequence),
            MarketEvent::Bbo(e) if e.sequence != 0 => e.sequence.to_string(),
            MarketEvent::Bbo(e) => format!("t{}", e.ts_exchange_us),
            MarketEvent::Funding(e) => format!("t{}", e.ts_exchange_us),
            MarketEvent::Liquidation(e) => match &e.order_id {
                Some(id) => id.clone(),
                None => format!("t{}:{}:{}", e.ts_exchange_us, e.price, e.qty),
            },
            MarketEvent::OpenInterest(e) => format!("t{}", e.ts_exchange_us),
            MarketEvent::OptionTicker(e) => format!("t{}", e.ts_exchange_us),
            MarketEvent::Candle(e) => format!("{}:{}:{}", e.interval_s, e.open_time_ms, u8::from(e.closed)),
            MarketEvent::Gap(e) => format!("g{}:{}", e.last_sequence, e.ts_recv_us),
        }
    }

    /// The exchange timestamp (Unix µs), or the receive time for kinds that
    /// carry none.
    pub fn ts_exchange_us(&self) -> i64 {
        match self {
            MarketEvent::Trade(e) => e.ts_exchange_us,
            MarketEvent::BookSnapshot(e) => e.ts_exchange_us,
            MarketEvent::BookDelta(e) => e.ts_exchange_us,
            MarketEvent::Bbo(e) => e.ts_exchange_us,
            MarketEvent::Funding(e) => e.ts_exchange_us,
            MarketEvent::Liquidation(e) => e.ts_exchange_us,
            MarketEvent::OpenInterest(e) => e.ts_exchange_us,
            MarketEvent::OptionTicker(e) => e.ts_exchange_us,
            MarketEvent::Candle(e) => e.open_time_ms.saturating_mul(1_000),
            MarketEvent::Gap(e) => e.ts_recv_us,
        }
    }
}

/// Parses an exchange decimal string exactly, naming the field on failure.
pub fn parse_decimal(field: &str, value: &str) -> Result<Decimal, Error> {
    if let Some(d) = plain_decimal(value) {
        return Ok(d);
    }
    Decimal::from_str_exact(value)
        .or_else(|_| Decimal::from_scientific(value))
        .map_err(|_| Error::invalid_argument(format!("{field}: '{value}' is not a decimal number")))
}

/// The common shape of an exchange number, `digits` or `digits.digits`
/// with at most 19 digits in all, and an optional `-` before them, read
/// without the general parser (it is most of the numbers a venue sends).
/// Its value, sign and scale are what [`Decimal::from_str_exact`] gives;
/// `None` for anything else.
#[inline]
fn plain_decimal(value: &str) -> Option<Decimal> {
    let (negative, bytes) = match value.as_bytes() {
        [b'-', rest @ ..] => (true, rest),
        bytes => (false, bytes),
    };
    if bytes.is_empty() || bytes.len() > 20 {
        return None;
    }
    let mut mantissa = 0u64;
    let mut digits = 0u32;
    let mut point = None;
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'0'..=b'9' => {
                digits += 1;
                if digits > 19 {
                    return None;
                }
                mantissa = mantissa * 10 + u64::from(b - b'0');
            }
            b'.' if point.is_none() && i > 0 && i + 1 < bytes.len() => point = Some(i),
            _ => return None,
        }
    }
    let scale = point.map_or(0, |i| (bytes.len() - i - 1) as u32);
    Some(Decimal::from_parts(
        mantissa as u32,
        (mantissa >> 32) as u32,
        0,
        negative,
        scale,
    ))
}

/// Parses a price, which must be positive.
pub fn parse_price(field: &str, value: &str) -> Result<Decimal, Error> {
    let price = parse_decimal(field, value)?;
    if price <= Decimal::ZERO {
        return Err(Error::invalid_argument(format!(
            "{field}: price {value} must be greater than zero"
        )));
    }
    Ok(price)
}

/// Parses a quantity, which must not be negative.
pub fn parse_qty(field: &str, value: &str) -> Result<Decimal, Error> {
    let qty = parse_decimal(field, value)?;
    if qty < Decimal::ZERO {
        return Err(Error::invalid_argument(format!(
            "{field}: quantity {value} must not be negative"
        )));
    }
    Ok(qty)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_keep_every_digit() {
        for s in ["0.35210000", "60123.45", "0.00000001", "123456789012.123456789"] {
            assert_eq!(parse_decimal("price", s).unwrap().to_string(), s);
        }
        assert_eq!(parse_decimal("p", "1e-3").unwrap().to_string(), "0.001");
    }

    /// The plain-number reader agrees with rust_decimal's own parser on
    /// every shape of number, and leaves to it every shape it does not take.
    #[test]
    fn plain_numbers_read_as_rust_decimal_reads_them() {
        let mut texts: Vec<String> = [
            "0",
            "00",
            "007",
            "0.0",
            "0.00000000",
            "1.",
            ".5",
            "1..2",
            "-1",
            "-0",
            "-0.000",
            "-",
            "--1",
            "-.5",
            "-5.",
            "- 1",
            "-9999999999999999999",
            "+1",
            "1e5",
            "1_000",
            "",
            ".",
            "9999999999999999999",
            "18446744073709551615",
            "99999999999999999999",
            "1234567890.123456789",
            "0.0000000000000000001",
            "12345678901234567890.5",
            " 1",
            "1 ",
            "٣",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..20_000 {
            let digits = (next() % 22) as usize + 1;
            let mut t: String = (0..digits).map(|_| char::from(b'0' + (next() % 10) as u8)).collect();
            if next() % 3 > 0 {
                let at = (next() as usize) % (t.len() + 1);
                t.insert(at, '.');
            }
            if next() % 4 == 0 {
                t.insert(0, '-');
            }
            // Now and then a byte that is no digit (those next to '0' and
            // '9' included), anywhere.
            if next() % 8 == 0 {
                let at = (next() as usize) % (t.len() + 1);
                t.insert(
                    at,
                    ['/', ':', '.', '-', 'a', ' ', '\u{7f}', '\u{b9}'][(next() % 8) as usize],
                );
            }
            texts.push(t);
        }
        for text in &texts {
            let reference = Decimal::from_str_exact(text).ok();
            match plain_decimal(text) {
                Some(fast) => {
                    let reference = reference.unwrap_or_else(|| panic!("{text:?} read, rust_decimal refuses it"));
                    assert_eq!(fast, reference, "{text:?}");
                    assert_eq!(
                        fast.to_string(),
                        reference.to_string(),
                        "{text:?}: scale or sign differs"
                    );
                    assert_eq!(
                        fast.is_sign_negative(),
                        reference.is_sign_negative(),
                        "{text:?}: sign differs"
                    );
                }
                None => {
                    // Only the shapes it does not take fall through.
                    let text = text.strip_prefix('-').unwrap_or(text);
                    let plain = text.bytes().filter(u8::is_ascii_digit).count() <= 19
                        && text.bytes().all(|b| b.is_ascii_digit() || b == b'.')
                        && text.matches('.').count() <= 1
                        && !text.starts_with('.')
                        && !text.ends_with('.')
                        && !text.is_empty();
                    assert!(!plain, "{text:?} is plain but was not read");
                }
            }
        }
    }

    #[test]
    fn bad_numbers_name_the_field_and_value() {
        let err = parse_price("price", "abc").unwrap_err();
        assert_eq!(err.message, "price: 'abc' is not a decimal number");
        let err = parse_price("price", "0").unwrap_err();
        assert!(err.message.contains("greater than zero"), "{}", err.message);
        assert!(parse_price("price", "-1").is_err());
        assert!(parse_qty("qty", "-0.1").is_err());
        assert_eq!(parse_qty("qty", "0").unwrap(), Decimal::ZERO);
    }

    #[test]
    fn kinds_and_markets_parse_back() {
        for kind in Kind::ALL {
            assert_eq!(kind.as_str().parse::<Kind>().unwrap(), kind);
        }
        for market in Market::ALL {
            assert_eq!(market.as_str().parse::<Market>().unwrap(), market);
        }
        assert!("swap".parse::<Market>().is_err());
    }
}
