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
    Okx,
    Coinbase,
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
    /// Subscription answers: parsed, nothing read.
    Other,
}

pub(crate) fn kind(venue: Venue, frame: &str) -> Kind {
    let v: serde_json::Value = serde_json::from_str(frame).unwrap_or_default();
    match venue {
        Venue::BinanceSpot | Venue::BinanceFutures => {
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
        Kind::Other => parser.parse::<IgnoredAny>(frame).map(|_| 1),
    }
}
