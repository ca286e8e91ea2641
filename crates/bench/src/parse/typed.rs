//! The baseline for the collector's parsers: each recorded frame
//! deserialized by serde into a typed struct of the fields moat reads, the
//! way a connector is usually written. The frame's type is worked out once,
//! before timing, so the baseline pays for no dispatch at all.
//!
//! Strings are a type parameter: `String` for the usual owned parse, `&str`
//! for a borrowed one, which the SIMD parsers are measured against.

#![allow(non_snake_case, dead_code)]

use serde::Deserialize;
use serde::de::IgnoredAny;

/// The venues whose recordings the bench parses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Venue {
    BinanceSpot,
    BinanceFutures,
    BinanceDelivery,
    Okx,
    Coinbase,
    Bybit,
    Kraken,
    Gemini,
    Bitstamp,
    KrakenFutures,
    Deribit,
    Bitmex,
}

/// What a frame is, worked out before timing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    BinanceTrade,
    BinanceDepth,
    BinanceTicker,
    BinanceKline,
    OkxTrades,
    OkxTickers,
    OkxBooks,
    CoinbaseMatch,
    CoinbaseTicker,
    CoinbaseSnapshot,
    CoinbaseUpdate,
    BybitTrades,
    BybitBook,
    BybitTicker,
    KrakenTrades,
    KrakenTicker,
    KrakenSnapshot,
    /// An update of one side (`[id, {a|b}, "book-N", pair]`).
    KrakenUpdate,
    /// An update of both sides (`[id, {a}, {b}, "book-N", pair]`).
    KrakenUpdateBoth,
    GeminiUpdates,
    GeminiTrade,
    BitstampDiff,
    BitstampTrade,
    KrakenFuturesTrade,
    KrakenFuturesBook,
    KrakenFuturesSnapshot,
    KrakenFuturesTicker,
    DeribitTrades,
    DeribitBook,
    DeribitTicker,
    BitmexTrades,
    BitmexQuotes,
    BitmexBook,
    /// Subscription answers, and channels moat does not read: parsed,
    /// nothing read.
    Other,
}

pub(crate) fn kind(venue: Venue, frame: &str) -> Kind {
    let v: serde_json::Value = serde_json::from_str(frame).unwrap_or_default();
    match venue {
        Venue::BinanceSpot | Venue::BinanceFutures | Venue::BinanceDelivery => {
            let stream = v["stream"].as_str().unwrap_or_default();
            match stream.split_once('@').map_or("", |(_, k)| k) {
                "aggTrade" => Kind::BinanceTrade,
                "bookTicker" => Kind::BinanceTicker,
                k if k.starts_with("depth") => Kind::BinanceDepth,
                k if k.starts_with("kline") => Kind::BinanceKline,
                _ => Kind::Other,
            }
        }
        Venue::Okx => match (v["arg"]["channel"].as_str(), v.get("data")) {
            (Some("trades"), Some(_)) => Kind::OkxTrades,
            (Some("tickers"), Some(_)) => Kind::OkxTickers,
            (Some("books"), Some(_)) => Kind::OkxBooks,
            _ => Kind::Other,
        },
        Venue::Coinbase => match v["type"].as_str() {
            Some("match" | "last_match") => Kind::CoinbaseMatch,
            Some("ticker") => Kind::CoinbaseTicker,
            Some("snapshot") => Kind::CoinbaseSnapshot,
            Some("l2update") => Kind::CoinbaseUpdate,
            _ => Kind::Other,
        },
        Venue::Bybit => match v["topic"].as_str().and_then(|t| t.split('.').next()) {
            Some("publicTrade") => Kind::BybitTrades,
            Some("orderbook") => Kind::BybitBook,
            Some("tickers") => Kind::BybitTicker,
            _ => Kind::Other,
        },
        Venue::Kraken => match (v[2].as_str(), v.as_array().map_or(0, Vec::len)) {
            (Some("trade"), _) => Kind::KrakenTrades,
            (Some("ticker"), _) => Kind::KrakenTicker,
            (Some(c), 4) if c.starts_with("book") && v[1].get("as").is_some() => Kind::KrakenSnapshot,
            (Some(c), 4) if c.starts_with("book") => Kind::KrakenUpdate,
            (_, 5) => Kind::KrakenUpdateBoth,
            _ => Kind::Other,
        },
        Venue::Gemini => match v["type"].as_str() {
            Some("l2_updates") => Kind::GeminiUpdates,
            Some("trade") => Kind::GeminiTrade,
            _ => Kind::Other,
        },
        Venue::Bitstamp => match v["event"].as_str() {
            Some("data") => Kind::BitstampDiff,
            Some("trade") => Kind::BitstampTrade,
            _ => Kind::Other,
        },
        // `{"event":"subscribed","feed":"book",…}` answers name a feed too.
        Venue::KrakenFutures if v.get("event").is_some() => Kind::Other,
        Venue::KrakenFutures => match v["feed"].as_str() {
            Some("trade") => Kind::KrakenFuturesTrade,
            Some("book") => Kind::KrakenFuturesBook,
            Some("book_snapshot") => Kind::KrakenFuturesSnapshot,
            Some("ticker") => Kind::KrakenFuturesTicker,
            _ => Kind::Other,
        },
        Venue::Deribit => match v["params"]["channel"].as_str().and_then(|c| c.split('.').next()) {
            Some("trades") => Kind::DeribitTrades,
            Some("book") => Kind::DeribitBook,
            Some("ticker") => Kind::DeribitTicker,
            _ => Kind::Other,
        },
        Venue::Bitmex => match v["table"].as_str() {
            Some("trade") => Kind::BitmexTrades,
            Some("quote") => Kind::BitmexQuotes,
            Some("orderBookL2" | "orderBookL2_25") => Kind::BitmexBook,
            _ => Kind::Other,
        },
    }
}

#[derive(Deserialize)]
struct Combined<T> {
    stream: IgnoredAny,
    data: T,
}

#[derive(Deserialize)]
struct AggTrade<S> {
    s: S,
    a: u64,
    p: S,
    q: S,
    T: i64,
    m: bool,
}

#[derive(Deserialize)]
struct Depth<S> {
    E: i64,
    T: Option<i64>,
    s: S,
    U: u64,
    u: u64,
    pu: Option<u64>,
    b: Vec<[S; 2]>,
    a: Vec<[S; 2]>,
}

#[derive(Deserialize)]
struct BookTicker<S> {
    u: u64,
    s: S,
    b: S,
    B: S,
    a: S,
    A: S,
    T: Option<i64>,
}

#[derive(Deserialize)]
struct KlineFrame<S> {
    s: S,
    k: Kline<S>,
}

#[derive(Deserialize)]
struct Kline<S> {
    t: i64,
    i: S,
    o: S,
    h: S,
    l: S,
    c: S,
    v: S,
    n: u64,
    x: bool,
}

#[derive(Deserialize)]
struct OkxArg<S> {
    channel: S,
    #[serde(rename = "instId")]
    inst_id: S,
}

#[derive(Deserialize)]
struct OkxFrame<S, T> {
    arg: OkxArg<S>,
    action: Option<S>,
    data: Vec<T>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct OkxTrade<S> {
    inst_id: S,
    trade_id: S,
    px: S,
    sz: S,
    side: S,
    ts: S,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct OkxTicker<S> {
    inst_id: S,
    bid_px: S,
    bid_sz: S,
    ask_px: S,
    ask_sz: S,
    ts: S,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct OkxBook<S> {
    asks: Vec<Vec<S>>,
    bids: Vec<Vec<S>>,
    ts: S,
    checksum: Option<i32>,
}

#[derive(Deserialize)]
struct CoinbaseMatch<S> {
    product_id: S,
    trade_id: u64,
    price: S,
    size: S,
    side: S,
    time: S,
}

#[derive(Deserialize)]
struct CoinbaseTicker<S> {
    product_id: S,
    sequence: Option<u64>,
    best_bid: S,
    best_ask: S,
    best_bid_size: Option<S>,
    best_ask_size: Option<S>,
    time: Option<S>,
}

#[derive(Deserialize)]
struct CoinbaseSnapshot<S> {
    product_id: S,
    bids: Vec<[S; 2]>,
    asks: Vec<[S; 2]>,
}

#[derive(Deserialize)]
struct CoinbaseUpdate<S> {
    product_id: S,
    changes: Vec<[S; 3]>,
    time: S,
}

#[derive(Deserialize)]
struct BybitFrame<S, T> {
    topic: S,
    #[serde(rename = "type")]
    kind: S,
    ts: i64,
    data: T,
}

#[derive(Deserialize)]
struct BybitTrade<S> {
    T: i64,
    s: S,
    S: S,
    v: S,
    p: S,
    i: S,
}

#[derive(Deserialize)]
struct BybitBook<S> {
    s: S,
    b: Vec<[S; 2]>,
    a: Vec<[S; 2]>,
    u: u64,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BybitTicker<S> {
    symbol: S,
    bid1_price: Option<S>,
    bid1_size: Option<S>,
    ask1_price: Option<S>,
    ask1_size: Option<S>,
    mark_price: Option<S>,
    index_price: Option<S>,
    funding_rate: Option<S>,
    next_funding_time: Option<S>,
    open_interest: Option<S>,
}

/// Kraken's v1 messages are arrays: `[channel id, payload, name, pair]`.
type KrakenFrame<S, T> = (u64, T, S, S);

#[derive(Deserialize)]
struct KrakenTicker<S> {
    /// `[price, whole lot volume (an integer), lot volume]`.
    a: (S, u64, S),
    b: (S, u64, S),
}

#[derive(Deserialize)]
struct KrakenSnapshot<S> {
    #[serde(rename = "as")]
    asks: Vec<Vec<S>>,
    bs: Vec<Vec<S>>,
}

#[derive(Deserialize)]
struct KrakenUpdate<S> {
    #[serde(default = "Vec::new")]
    a: Vec<Vec<S>>,
    #[serde(default = "Vec::new")]
    b: Vec<Vec<S>>,
    c: Option<S>,
}

#[derive(Deserialize)]
struct GeminiUpdates<S> {
    symbol: S,
    changes: Vec<[S; 3]>,
}

#[derive(Deserialize)]
struct GeminiTrade<S> {
    symbol: S,
    event_id: u64,
    timestamp: i64,
    price: S,
    quantity: S,
    side: S,
}

#[derive(Deserialize)]
struct BitstampFrame<S, T> {
    channel: S,
    data: T,
}

#[derive(Deserialize)]
struct BitstampDiff<S> {
    microtimestamp: S,
    bids: Vec<[S; 2]>,
    asks: Vec<[S; 2]>,
}

#[derive(Deserialize)]
struct BitstampTrade<S> {
    id: u64,
    amount_str: S,
    price_str: S,
    #[serde(rename = "type")]
    side: u8,
    microtimestamp: S,
}

// The venues below send prices as JSON numbers: the usual typed parse
// reads them as f64 (moat reads their text, exactly).

#[derive(Deserialize)]
struct KrakenFuturesTrade<S> {
    product_id: S,
    uid: S,
    side: S,
    time: i64,
    qty: f64,
    price: f64,
}

#[derive(Deserialize)]
struct KrakenFuturesBook<S> {
    product_id: S,
    side: S,
    seq: u64,
    price: f64,
    qty: f64,
    timestamp: i64,
}

#[derive(Deserialize)]
struct PriceQty {
    price: f64,
    qty: f64,
}

#[derive(Deserialize)]
struct KrakenFuturesSnapshot<S> {
    product_id: S,
    timestamp: i64,
    seq: u64,
    bids: Vec<PriceQty>,
    asks: Vec<PriceQty>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct KrakenFuturesTicker<S> {
    product_id: S,
    time: i64,
    mark_price: Option<f64>,
    index: Option<f64>,
    #[serde(rename = "relative_funding_rate")]
    relative_funding_rate: Option<f64>,
    open_interest: Option<f64>,
}

#[derive(Deserialize)]
struct DeribitFrame<S, T> {
    method: S,
    params: DeribitParams<S, T>,
}

#[derive(Deserialize)]
struct DeribitParams<S, T> {
    channel: S,
    data: T,
}

#[derive(Deserialize)]
struct DeribitTrade<S> {
    trade_id: S,
    instrument_name: S,
    price: f64,
    amount: f64,
    direction: S,
    timestamp: i64,
}

#[derive(Deserialize)]
struct DeribitBook<S> {
    #[serde(rename = "type")]
    kind: S,
    instrument_name: S,
    timestamp: i64,
    change_id: u64,
    prev_change_id: Option<u64>,
    bids: Vec<(S, f64, f64)>,
    asks: Vec<(S, f64, f64)>,
}

#[derive(Deserialize)]
struct DeribitGreeks {
    delta: Option<f64>,
    gamma: Option<f64>,
    vega: Option<f64>,
    theta: Option<f64>,
    rho: Option<f64>,
}

#[derive(Deserialize)]
struct DeribitTicker<S> {
    instrument_name: S,
    timestamp: i64,
    best_bid_price: Option<f64>,
    best_bid_amount: Option<f64>,
    best_ask_price: Option<f64>,
    best_ask_amount: Option<f64>,
    mark_price: Option<f64>,
    index_price: Option<f64>,
    current_funding: Option<f64>,
    open_interest: Option<f64>,
    mark_iv: Option<f64>,
    bid_iv: Option<f64>,
    ask_iv: Option<f64>,
    underlying_price: Option<f64>,
    greeks: Option<DeribitGreeks>,
}

#[derive(Deserialize)]
struct BitmexFrame<S, T> {
    table: S,
    action: S,
    data: Vec<T>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BitmexTrade<S> {
    timestamp: S,
    symbol: S,
    side: S,
    size: f64,
    price: f64,
    #[serde(rename = "trdMatchID")]
    trd_match_id: Option<S>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BitmexQuote<S> {
    timestamp: S,
    symbol: S,
    bid_size: Option<f64>,
    bid_price: Option<f64>,
    ask_price: Option<f64>,
    ask_size: Option<f64>,
}

#[derive(Deserialize)]
struct BitmexLevel<S> {
    symbol: S,
    id: u64,
    side: S,
    size: Option<f64>,
    price: Option<f64>,
}

/// A JSON parser under test: deserializes `frame` into `T`.
pub(crate) trait Parser {
    fn parse<'a, T: Deserialize<'a>>(&mut self, frame: &'a str) -> Option<T>;
}

/// `serde_json::from_str`.
pub(crate) struct SerdeJson;

impl Parser for SerdeJson {
    fn parse<'a, T: Deserialize<'a>>(&mut self, frame: &'a str) -> Option<T> {
        serde_json::from_str(frame).ok()
    }
}

/// `sonic_rs::from_str`.
pub(crate) struct SonicRs;

impl Parser for SonicRs {
    fn parse<'a, T: Deserialize<'a>>(&mut self, frame: &'a str) -> Option<T> {
        sonic_rs::from_str(frame).ok()
    }
}

/// What a pass over the frames read: a figure that depends on every parse
/// (so none is optimized away), and how many frames failed to parse (a
/// parser that fails fast would look fast).
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Pass {
    pub read: usize,
    pub failed: usize,
}

impl Pass {
    fn add(&mut self, parsed: Option<usize>) {
        match parsed {
            Some(n) => self.read += n,
            None => self.failed += 1,
        }
    }
}

/// Parses every frame of `frames` (with its kind) into the owned structs
/// with `parser`.
pub(crate) fn owned(parser: &mut impl Parser, frames: &[(Kind, &str)]) -> Pass {
    let mut pass = Pass::default();
    for &(kind, frame) in frames {
        pass.add(parse_one::<String>(parser, kind, frame));
    }
    pass
}

/// As [`owned`], with strings borrowed from the frame.
pub(crate) fn borrowed(parser: &mut impl Parser, frames: &[(Kind, &str)]) -> Pass {
    let mut pass = Pass::default();
    for &(kind, frame) in frames {
        pass.add(parse_one::<&str>(parser, kind, frame));
    }
    pass
}

/// `simd_json::serde::from_slice` over a copy of each frame (it parses in
/// place), strings borrowed from the copy.
pub(crate) fn simd_json_borrowed(frames: &[(Kind, &str)]) -> Pass {
    let mut pass = Pass::default();
    let mut buffer = Vec::new();
    for &(kind, frame) in frames {
        buffer.clear();
        buffer.extend_from_slice(frame.as_bytes());
        pass.add(simd_one(kind, &mut buffer));
    }
    pass
}

fn simd_one(kind: Kind, buffer: &mut [u8]) -> Option<usize> {
    fn p<'a, T: Deserialize<'a>>(buffer: &'a mut [u8]) -> Option<T> {
        simd_json::serde::from_slice(buffer).ok()
    }
    match kind {
        Kind::BinanceTrade => p::<Combined<AggTrade<&str>>>(buffer).map(|f| f.data.p.len()),
        Kind::BinanceDepth => p::<Combined<Depth<&str>>>(buffer).map(|f| f.data.b.len() + f.data.a.len()),
        Kind::BinanceTicker => p::<Combined<BookTicker<&str>>>(buffer).map(|f| f.data.b.len()),
        Kind::BinanceKline => p::<Combined<KlineFrame<&str>>>(buffer).map(|f| f.data.k.c.len()),
        Kind::OkxTrades => p::<OkxFrame<&str, OkxTrade<&str>>>(buffer).map(|f| f.data.len()),
        Kind::OkxTickers => p::<OkxFrame<&str, OkxTicker<&str>>>(buffer).map(|f| f.data.len()),
        Kind::OkxBooks => p::<OkxFrame<&str, OkxBook<&str>>>(buffer).map(|f| f.data.len()),
        Kind::CoinbaseMatch => p::<CoinbaseMatch<&str>>(buffer).map(|f| f.price.len()),
        Kind::CoinbaseTicker => p::<CoinbaseTicker<&str>>(buffer).map(|f| f.best_bid.len()),
        Kind::CoinbaseSnapshot => p::<CoinbaseSnapshot<&str>>(buffer).map(|f| f.bids.len() + f.asks.len()),
        Kind::CoinbaseUpdate => p::<CoinbaseUpdate<&str>>(buffer).map(|f| f.changes.len()),
        Kind::Other => p::<IgnoredAny>(buffer).map(|_| 1),
        // The JSON parsers are compared on the first four venues only.
        _ => None,
    }
}

fn parse_one<'a, S>(parser: &mut impl Parser, kind: Kind, frame: &'a str) -> Option<usize>
where
    S: Deserialize<'a> + AsRef<str>,
{
    match kind {
        Kind::BinanceTrade => parser
            .parse::<Combined<AggTrade<S>>>(frame)
            .map(|f| f.data.p.as_ref().len()),
        Kind::BinanceDepth => parser
            .parse::<Combined<Depth<S>>>(frame)
            .map(|f| f.data.b.len() + f.data.a.len()),
        Kind::BinanceTicker => parser
            .parse::<Combined<BookTicker<S>>>(frame)
            .map(|f| f.data.b.as_ref().len()),
        Kind::BinanceKline => parser
            .parse::<Combined<KlineFrame<S>>>(frame)
            .map(|f| f.data.k.c.as_ref().len()),
        Kind::OkxTrades => parser.parse::<OkxFrame<S, OkxTrade<S>>>(frame).map(|f| f.data.len()),
        Kind::OkxTickers => parser.parse::<OkxFrame<S, OkxTicker<S>>>(frame).map(|f| f.data.len()),
        Kind::OkxBooks => parser.parse::<OkxFrame<S, OkxBook<S>>>(frame).map(|f| f.data.len()),
        Kind::CoinbaseMatch => parser.parse::<CoinbaseMatch<S>>(frame).map(|f| f.price.as_ref().len()),
        Kind::CoinbaseTicker => parser
            .parse::<CoinbaseTicker<S>>(frame)
            .map(|f| f.best_bid.as_ref().len()),
        Kind::CoinbaseSnapshot => parser
            .parse::<CoinbaseSnapshot<S>>(frame)
            .map(|f| f.bids.len() + f.asks.len()),
        Kind::CoinbaseUpdate => parser.parse::<CoinbaseUpdate<S>>(frame).map(|f| f.changes.len()),
        Kind::BybitTrades => parser
            .parse::<BybitFrame<S, Vec<BybitTrade<S>>>>(frame)
            .map(|f| f.data.len()),
        Kind::BybitBook => parser
            .parse::<BybitFrame<S, BybitBook<S>>>(frame)
            .map(|f| f.data.b.len() + f.data.a.len()),
        Kind::BybitTicker => parser
            .parse::<BybitFrame<S, BybitTicker<S>>>(frame)
            .map(|f| f.data.symbol.as_ref().len()),
        Kind::KrakenTrades => parser.parse::<KrakenFrame<S, Vec<[S; 6]>>>(frame).map(|f| f.1.len()),
        Kind::KrakenTicker => parser
            .parse::<KrakenFrame<S, KrakenTicker<S>>>(frame)
            .map(|f| f.1.a.0.as_ref().len()),
        Kind::KrakenSnapshot => parser
            .parse::<KrakenFrame<S, KrakenSnapshot<S>>>(frame)
            .map(|f| f.1.asks.len() + f.1.bs.len()),
        Kind::KrakenUpdate => parser
            .parse::<KrakenFrame<S, KrakenUpdate<S>>>(frame)
            .map(|f| f.1.a.len() + f.1.b.len()),
        Kind::KrakenUpdateBoth => parser
            .parse::<(u64, KrakenUpdate<S>, KrakenUpdate<S>, S, S)>(frame)
            .map(|f| f.1.a.len() + f.2.b.len()),
        Kind::GeminiUpdates => parser.parse::<GeminiUpdates<S>>(frame).map(|f| f.changes.len()),
        Kind::GeminiTrade => parser.parse::<GeminiTrade<S>>(frame).map(|f| f.price.as_ref().len()),
        Kind::BitstampDiff => parser
            .parse::<BitstampFrame<S, BitstampDiff<S>>>(frame)
            .map(|f| f.data.bids.len() + f.data.asks.len()),
        Kind::BitstampTrade => parser
            .parse::<BitstampFrame<S, BitstampTrade<S>>>(frame)
            .map(|f| f.data.price_str.as_ref().len()),
        Kind::KrakenFuturesTrade => parser
            .parse::<KrakenFuturesTrade<S>>(frame)
            .map(|f| f.uid.as_ref().len()),
        Kind::KrakenFuturesBook => parser.parse::<KrakenFuturesBook<S>>(frame).map(|f| f.seq as usize),
        Kind::KrakenFuturesSnapshot => parser
            .parse::<KrakenFuturesSnapshot<S>>(frame)
            .map(|f| f.bids.len() + f.asks.len()),
        Kind::KrakenFuturesTicker => parser
            .parse::<KrakenFuturesTicker<S>>(frame)
            .map(|f| f.product_id.as_ref().len()),
        Kind::DeribitTrades => parser
            .parse::<DeribitFrame<S, Vec<DeribitTrade<S>>>>(frame)
            .map(|f| f.params.data.len()),
        Kind::DeribitBook => parser
            .parse::<DeribitFrame<S, DeribitBook<S>>>(frame)
            .map(|f| f.params.data.bids.len() + f.params.data.asks.len()),
        Kind::DeribitTicker => parser
            .parse::<DeribitFrame<S, DeribitTicker<S>>>(frame)
            .map(|f| f.params.data.instrument_name.as_ref().len()),
        Kind::BitmexTrades => parser
            .parse::<BitmexFrame<S, BitmexTrade<S>>>(frame)
            .map(|f| f.data.len()),
        Kind::BitmexQuotes => parser
            .parse::<BitmexFrame<S, BitmexQuote<S>>>(frame)
            .map(|f| f.data.len()),
        Kind::BitmexBook => parser
            .parse::<BitmexFrame<S, BitmexLevel<S>>>(frame)
            .map(|f| f.data.len()),
        Kind::Other => parser.parse::<IgnoredAny>(frame).map(|_| 1),
    }
}
