//! Binance frames to normalized events. Strings are borrowed from the frame
//! and prices parsed straight into exact decimals.

use moat_common_types::model::{Bbo, Candle, Funding, Level, Liquidation, OpenInterest, Trade};
use moat_common_types::{Instrument, Side, us_from_ms};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::Symbols;
use crate::venues::scan::{Scan, once};
use crate::venues::{Reject, json, price, qty};

/// A depth diff in venue terms, ready for [`super::book::BookSync`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DepthDiff {
    pub instrument: Instrument,
    /// `U`: first update id in the diff.
    pub first: u64,
    /// `u`: last update id in the diff.
    pub last: u64,
    /// `pu`: last update id of the previous diff (futures only).
    pub prev: Option<u64>,
    pub bids: Vec<Level>,
    pub asks: Vec<Level>,
    pub ts_exchange_us: i64,
}

/// What one frame carried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    Trade(Trade),
    Bbo(Bbo),
    Depth(DepthDiff),
    Candle(Candle),
    /// `markPrice@1s` (futures): funding rate and mark price.
    Funding(Funding),
    /// `forceOrder` (futures): a liquidation order.
    Liquidation(Liquidation),
    /// Subscription answers and other control frames.
    Control,
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow)]
    stream: &'a str,
    #[serde(borrow)]
    data: &'a RawValue,
}

#[derive(Deserialize, Debug, PartialEq)]
#[allow(non_snake_case)]
struct AggTrade<'a> {
    s: &'a str,
    a: u64,
    p: &'a str,
    q: &'a str,
    T: i64,
    /// Buyer is the maker: the taker sold.
    m: bool,
}

#[derive(Deserialize)]
#[allow(non_snake_case)]
struct Depth<'a> {
    E: i64,
    #[serde(default)]
    T: Option<i64>,
    s: &'a str,
    U: u64,
    u: u64,
    #[serde(default)]
    pu: Option<u64>,
    #[serde(borrow)]
    b: Vec<[&'a str; 2]>,
    #[serde(borrow)]
    a: Vec<[&'a str; 2]>,
}

#[derive(Deserialize, Debug, PartialEq)]
#[allow(non_snake_case)]
struct BookTicker<'a> {
    u: u64,
    s: &'a str,
    b: &'a str,
    B: &'a str,
    a: &'a str,
    A: &'a str,
    #[serde(default)]
    T: Option<i64>,
    #[serde(default)]
    E: Option<i64>,
}

#[derive(Deserialize)]
#[allow(non_snake_case)]
struct KlineFrame<'a> {
    s: &'a str,
    #[serde(borrow)]
    k: Kline<'a>,
}

#[derive(Deserialize)]
struct Kline<'a> {
    t: i64,
    i: &'a str,
    o: &'a str,
    h: &'a str,
    l: &'a str,
    c: &'a str,
    v: &'a str,
    n: u64,
    x: bool,
}

// The frames a futures or spot feed sends most, read by [`Scan`]; `None`
// leaves the frame to serde (the structs above), which gives the answer.

fn scan_agg_trade(data: &str) -> Option<AggTrade<'_>> {
    let mut scan = Scan::new(data);
    let (mut s, mut a, mut p, mut q, mut t, mut m) = (None, None, None, None, None, None);
    scan.object(|scan, key| match key {
        "s" => once(&mut s, scan.str()),
        "a" => once(&mut a, scan.u64()),
        "p" => once(&mut p, scan.str()),
        "q" => once(&mut q, scan.str()),
        "T" => once(&mut t, scan.i64()),
        "m" => once(&mut m, scan.bool()),
        _ => scan.skip(),
    })?;
    scan.end()?;
    Some(AggTrade {
        s: s?,
        a: a?,
        p: p?,
        q: q?,
        T: t?,
        m: m?,
    })
}

fn scan_book_ticker(data: &str) -> Option<BookTicker<'_>> {
    let mut scan = Scan::new(data);
    let (mut u, mut s, mut b, mut bq, mut a, mut aq, mut t, mut e) = (None, None, None, None, None, None, None, None);
    scan.object(|scan, key| match key {
        "u" => once(&mut u, scan.u64()),
        "s" => once(&mut s, scan.str()),
        "b" => once(&mut b, scan.str()),
        "B" => once(&mut bq, scan.str()),
        "a" => once(&mut a, scan.str()),
        "A" => once(&mut aq, scan.str()),
        "T" => once(&mut t, scan.i64()),
        "E" => once(&mut e, scan.i64()),
        _ => scan.skip(),
    })?;
    scan.end()?;
    Some(BookTicker {
        u: u?,
        s: s?,
        b: b?,
        B: bq?,
        a: a?,
        A: aq?,
        T: t,
        E: e,
    })
}

/// A depth diff read by [`Scan`] straight into levels; `None` for
/// anything [`depth`] has to answer (a refusal included).
fn scan_depth(symbols: &Symbols, data: &str) -> Option<DepthDiff> {
    let mut scan = Scan::new(data);
    let (mut e, mut t, mut s, mut first, mut last, mut prev) = (None, None, None, None, None, None);
    let (mut bids, mut asks) = (None, None);
    scan.object(|scan, key| match key {
        "E" => once(&mut e, scan.i64()),
        "T" => once(&mut t, scan.i64()),
        "s" => once(&mut s, scan.str()),
        "U" => once(&mut first, scan.u64()),
        "u" => once(&mut last, scan.u64()),
        "pu" => once(&mut prev, scan.u64()),
        "b" => once(&mut bids, scan.levels("b")),
        "a" => once(&mut asks, scan.levels("a")),
        _ => scan.skip(),
    })?;
    scan.end()?;
    let (first, last) = (first?, last?);
    if first > last {
        return None;
    }
    Some(DepthDiff {
        instrument: symbols.get(s?)?.clone(),
        first,
        last,
        prev,
        bids: bids?,
        asks: asks?,
        ts_exchange_us: us_from_ms(t.unwrap_or(e?)),
    })
}

/// A depth diff read by serde, with the reason of a refusal.
fn depth(symbols: &Symbols, data: &str) -> Result<DepthDiff, Reject> {
    let d: Depth<'_> = json(data)?;
    // A reversed range would pass the book's bridging check and apply
    // levels from an unknown point in the sequence.
    if d.U > d.u {
        return Err(Reject::new(
            "sequence",
            format!(
                "depth diff for {} starts at update {} after it ends at {}",
                d.s, d.U, d.u
            ),
        ));
    }
    Ok(DepthDiff {
        instrument: symbols
            .get(d.s)
            .cloned()
            .ok_or_else(|| Reject::new("unknown_symbol", format!("{} is not subscribed", d.s)))?,
        first: d.U,
        last: d.u,
        prev: d.pu,
        bids: levels("b", &d.b)?,
        asks: levels("a", &d.a)?,
        ts_exchange_us: us_from_ms(d.T.unwrap_or(d.E)),
    })
}

fn levels(side: &'static str, raw: &[[&str; 2]]) -> Result<Vec<Level>, Reject> {
    raw.iter()
        .map(|[p, q]| {
            Ok(Level {
                price: price(side, p)?,
                qty: qty(side, q)?,
            })
        })
        .collect()
}

/// `1m`, `4h`, `1d`, `1w` in seconds; `None` for anything else (the frame
/// comes from the network: any text, any number).
fn interval_seconds(interval: &str) -> Option<u32> {
    let unit = interval.chars().last()?;
    let n: u32 = interval[..interval.len() - unit.len_utf8()].parse().ok()?;
    n.checked_mul(match unit {
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        'w' => 604_800,
        _ => return None,
    })
}

/// `{"stream":"<name>","data":<data>}` exactly as Binance writes it: the
/// stream name and the text of the data, found without a parse of the
/// envelope (which would read the data twice). `None` for any other layout.
fn split_envelope(frame: &str) -> Option<(&str, &str)> {
    let rest = frame.strip_prefix("{\"stream\":\"")?;
    // A byte loop: the name is short, shorter than a searcher's set-up.
    let end = rest.bytes().position(|b| b == b'"')?;
    // Both ends sit next to an ASCII quote: character boundaries.
    let (stream, rest) = (rest.get(..end)?, rest.get(end + 1..)?);
    let data = rest.strip_prefix(",\"data\":")?.strip_suffix('}')?;
    Some((stream, data))
}

/// What a stream name says after its `@` (`aggTrade`, `depth@100ms`), by a
/// byte loop (a name is shorter than a searcher's set-up); empty without one.
fn stream_kind(stream: &str) -> &str {
    stream
        .bytes()
        .position(|b| b == b'@')
        .and_then(|at| stream.get(at + 1..))
        .unwrap_or("")
}

/// Parses one received frame (a combined-stream envelope).
pub fn parse(symbols: &Symbols, frame: &str, ts_recv_us: i64) -> Result<Frame, Reject> {
    // The usual layout is read in one pass. Anything it does not take
    // (another key order, spacing, a refusal) goes through the full parse
    // below, so the outcome is the same either way.
    if let Some((stream, data)) = split_envelope(frame)
        && let Ok(parsed) = parse_data(symbols, stream, data, ts_recv_us)
    {
        return Ok(parsed);
    }
    let envelope: Envelope<'_> = match serde_json::from_str(frame) {
        Ok(e) => e,
        // `{"result":null,"id":1}` answers a subscription.
        Err(_) if frame.contains("\"result\"") || frame.contains("\"id\"") => return Ok(Frame::Control),
        Err(e) => return Err(Reject::new("json", e.to_string())),
    };
    parse_data(symbols, envelope.stream, envelope.data.get(), ts_recv_us)
}

/// Parses the data of stream `stream`.
fn parse_data(symbols: &Symbols, stream: &str, data: &str, ts_recv_us: i64) -> Result<Frame, Reject> {
    let instrument = |s: &str| {
        symbols
            .get(s)
            .cloned()
            .ok_or_else(|| Reject::new("unknown_symbol", format!("{s} is not subscribed")))
    };
    let kind = stream_kind(stream);
    if kind == "aggTrade" {
        let t = match scan_agg_trade(data) {
            Some(t) => t,
            None => json::<AggTrade<'_>>(data)?,
        };
        return Ok(Frame::Trade(Trade {
            instrument: instrument(t.s)?,
            trade_id: t.a.to_string(),
            price: price("p", t.p)?,
            qty: qty("q", t.q)?,
            side: if t.m { Side::Sell } else { Side::Buy },
            ts_exchange_us: us_from_ms(t.T),
            ts_recv_us,
        }));
    }
    if kind.starts_with("depth") {
        return match scan_depth(symbols, data) {
            Some(diff) => Ok(Frame::Depth(diff)),
            None => depth(symbols, data).map(Frame::Depth),
        };
    }
    if kind == "bookTicker" {
        let b = match scan_book_ticker(data) {
            Some(b) => b,
            None => json::<BookTicker<'_>>(data)?,
        };
        let ts = b.T.or(b.E).map_or(ts_recv_us, us_from_ms);
        return Ok(Frame::Bbo(Bbo {
            instrument: instrument(b.s)?,
            sequence: b.u,
            bid: Level {
                price: price("b", b.b)?,
                qty: qty("B", b.B)?,
            },
            ask: Level {
                price: price("a", b.a)?,
                qty: qty("A", b.A)?,
            },
            ts_exchange_us: ts,
            ts_recv_us,
        }));
    }
    if kind.starts_with("kline") {
        let k: KlineFrame<'_> = json(data)?;
        let interval_s = interval_seconds(k.k.i).ok_or_else(|| Reject::new("json", format!("interval {}", k.k.i)))?;
        return Ok(Frame::Candle(Candle {
            instrument: instrument(k.s)?,
            interval_s,
            open_time_ms: k.k.t,
            open: price("o", k.k.o)?,
            high: price("h", k.k.h)?,
            low: price("l", k.k.l)?,
            close: price("c", k.k.c)?,
            volume: qty("v", k.k.v)?,
            trades: k.k.n,
            closed: k.k.x,
            ts_recv_us,
        }));
    }
    if kind.starts_with("markPrice") {
        let m: MarkPrice<'_> = json(data)?;
        return Ok(Frame::Funding(Funding {
            instrument: instrument(m.s)?,
            funding_rate: crate::venues::number("r", m.r)?,
            mark_price: price("p", m.p)?,
            index_price: m.i.map(|i| price("i", i)).transpose()?,
            next_funding_ms: m.T,
            ts_exchange_us: us_from_ms(m.E),
            ts_recv_us,
        }));
    }
    if kind == "forceOrder" {
        let f: ForceOrder<'_> = json(data)?;
        let o = f.o;
        return Ok(Frame::Liquidation(Liquidation {
            instrument: instrument(o.s)?,
            side: match o.S {
                "BUY" => Side::Buy,
                "SELL" => Side::Sell,
                other => return Err(Reject::new("json", format!("side '{other}'"))),
            },
            price: price("ap", o.ap.unwrap_or(o.p))?,
            qty: qty("z", o.z.unwrap_or(o.q))?,
            order_id: None,
            ts_exchange_us: us_from_ms(o.T),
            ts_recv_us,
        }));
    }
    Err(Reject::new("unknown_stream", stream.to_owned()))
}

#[derive(Deserialize)]
#[allow(non_snake_case)]
struct MarkPrice<'a> {
    E: i64,
    s: &'a str,
    p: &'a str,
    #[serde(default)]
    i: Option<&'a str>,
    r: &'a str,
    T: i64,
}

#[derive(Deserialize)]
struct ForceOrder<'a> {
    #[serde(borrow)]
    o: ForceOrderBody<'a>,
}

#[derive(Deserialize)]
#[allow(non_snake_case)]
struct ForceOrderBody<'a> {
    s: &'a str,
    S: &'a str,
    q: &'a str,
    p: &'a str,
    #[serde(default)]
    ap: Option<&'a str>,
    #[serde(default)]
    z: Option<&'a str>,
    T: i64,
}

#[derive(Deserialize)]
#[allow(non_snake_case)]
struct RawOpenInterest<'a> {
    openInterest: &'a str,
    symbol: &'a str,
    time: i64,
}

/// A `/fapi/v1/openInterest` answer.
pub fn parse_open_interest(symbols: &Symbols, body: &str, ts_recv_us: i64) -> Result<OpenInterest, Reject> {
    let o: RawOpenInterest<'_> = json(body)?;
    Ok(OpenInterest {
        instrument: symbols
            .get(o.symbol)
            .cloned()
            .ok_or_else(|| Reject::new("unknown_symbol", o.symbol.to_owned()))?,
        open_interest: qty("openInterest", o.openInterest)?,
        ts_exchange_us: us_from_ms(o.time),
        ts_recv_us,
    })
}

/// A REST depth snapshot: `lastUpdateId` and the levels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub last_update_id: u64,
    pub bids: Vec<Level>,
    pub asks: Vec<Level>,
    pub ts_exchange_us: Option<i64>,
}

#[derive(Deserialize)]
#[allow(non_snake_case)]
struct RawSnapshot<'a> {
    lastUpdateId: u64,
    #[serde(default)]
    T: Option<i64>,
    #[serde(borrow)]
    bids: Vec<[&'a str; 2]>,
    #[serde(borrow)]
    asks: Vec<[&'a str; 2]>,
}

pub fn parse_snapshot(body: &str) -> Result<Snapshot, Reject> {
    let s: RawSnapshot<'_> = json(body)?;
    Ok(Snapshot {
        last_update_id: s.lastUpdateId,
        bids: levels("bids", &s.bids)?,
        asks: levels("asks", &s.asks)?,
        ts_exchange_us: s.T.map(us_from_ms),
    })
}

#[cfg(test)]
mod tests {
    use super::super::Flavor;
    use super::*;

    /// On every recorded frame, what the scanner reads is what serde
    /// reads; and the scanner reads the usual frames (else it is no faster).
    #[test]
    fn scanned_frames_read_as_serde_reads_them() {
        let mut scanned = 0;
        for name in ["BINANCE.ws.1.0", "BINANCE_FUTURES.ws.1.0"] {
            let frames = crate::venues::scan::recorded_frames(name);
            let ids: Vec<String> = frames
                .iter()
                .filter_map(|f| serde_json::from_str::<serde_json::Value>(f).ok())
                .filter_map(|v| v["data"]["s"].as_str().map(str::to_owned))
                .collect();
            let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
            let flavor = if name.contains("FUTURES") {
                Flavor::Futures
            } else {
                Flavor::Spot
            };
            let symbols = Symbols::new("binance", flavor, &ids);
            for frame in &frames {
                let Some((stream, data)) = split_envelope(frame) else {
                    continue;
                };
                let kind = stream_kind(stream);
                let read = if kind == "aggTrade" {
                    scan_agg_trade(data).map(|t| assert_eq!(Some(t), serde_json::from_str(data).ok(), "{frame}"))
                } else if kind == "bookTicker" {
                    scan_book_ticker(data).map(|b| assert_eq!(Some(b), serde_json::from_str(data).ok(), "{frame}"))
                } else if kind.starts_with("depth") {
                    scan_depth(&symbols, data).map(|d| assert_eq!(Some(d), depth(&symbols, data).ok(), "{frame}"))
                } else {
                    continue;
                };
                assert!(read.is_some(), "the scanner left a usual frame to serde: {frame}");
                scanned += 1;
            }
            if frames.is_empty() {
                return;
            }
        }
        assert!(scanned > 1500, "{scanned} frames scanned");
    }

    #[test]
    fn kline_intervals_are_read_and_odd_ones_refused() {
        assert_eq!(interval_seconds("1m"), Some(60));
        assert_eq!(interval_seconds("4h"), Some(14_400));
        assert_eq!(interval_seconds("1w"), Some(604_800));
        // Found by the binance_frame fuzz target: a multi-byte last
        // character, and a count whose seconds overflow.
        assert_eq!(interval_seconds("1\u{592}"), None);
        assert_eq!(interval_seconds("\u{592}"), None);
        assert_eq!(interval_seconds("9999999w"), None);
        assert_eq!(interval_seconds(""), None);
        assert_eq!(interval_seconds("m"), None);
    }

    #[test]
    fn a_depth_diff_whose_range_is_reversed_is_rejected() {
        let s = Symbols::new("binance", Flavor::Futures, &["BTCUSDT"]);
        let diff = |first: u64, last: u64| {
            format!(
                r#"{{"stream":"btcusdt@depth@100ms","data":{{"e":"depthUpdate","E":2,"T":1,"s":"BTCUSDT","U":{first},"u":{last},"pu":9,"b":[["1.5","2"]],"a":[]}}}}"#
            )
        };
        assert!(matches!(parse(&s, &diff(10, 12), 1), Ok(Frame::Depth(d)) if (d.first, d.last) == (10, 12)));
        let Err(reject) = parse(&s, &diff(12, 10), 1) else {
            panic!("a reversed range is accepted")
        };
        assert_eq!(reject.reason, "sequence");
        assert!(
            reject.detail.contains("BTCUSDT") && reject.detail.contains("12"),
            "{}",
            reject.detail
        );
    }

    #[test]
    fn futures_funding_liquidations_and_open_interest() {
        let s = Symbols::new("binance", Flavor::Futures, &["BTCUSDT"]);
        // Frames as Binance's USDⓈ-M documentation shows them.
        let mark = r#"{"stream":"btcusdt@markPrice@1s","data":{"e":"markPriceUpdate","E":1562305380000,"s":"BTCUSDT","p":"11794.15000000","i":"11784.62659091","P":"11784.25641265","r":"0.00038167","T":1562306400000}}"#;
        let Frame::Funding(f) = parse(&s, mark, 1).unwrap() else {
            panic!("not funding")
        };
        assert_eq!(f.funding_rate.to_string(), "0.00038167");
        assert_eq!(f.mark_price.to_string(), "11794.15000000");
        assert_eq!(f.next_funding_ms, 1_562_306_400_000);
        let liquidation = r#"{"stream":"btcusdt@forceOrder","data":{"e":"forceOrder","E":1568014460893,"o":{"s":"BTCUSDT","S":"SELL","o":"LIMIT","f":"IOC","q":"0.014","p":"9910","ap":"9910","X":"FILLED","l":"0.014","z":"0.014","T":1568014460893}}}"#;
        let Frame::Liquidation(l) = parse(&s, liquidation, 1).unwrap() else {
            panic!("not a liquidation")
        };
        assert_eq!(
            (l.side, l.price.to_string(), l.qty.to_string()),
            (Side::Sell, "9910".into(), "0.014".into())
        );
        let oi = parse_open_interest(
            &s,
            r#"{"openInterest":"10659.509","symbol":"BTCUSDT","time":1589437530011}"#,
            1,
        )
        .unwrap();
        assert_eq!(oi.open_interest.to_string(), "10659.509");
        assert_eq!(
            parse_open_interest(&s, r#"{"openInterest":"1","symbol":"ETHUSDT","time":1}"#, 1)
                .unwrap_err()
                .reason,
            "unknown_symbol"
        );
    }

    fn symbols() -> Symbols {
        Symbols::new("binance", Flavor::Spot, &["NKNUSDT"])
    }

    #[test]
    fn trades_keep_exact_decimals_and_taker_side() {
        let frame = r#"{"stream":"nknusdt@aggTrade","data":{"e":"aggTrade","E":1,"s":"NKNUSDT","a":15683430,"p":"0.35280000","q":"58.00000000","f":1,"l":1,"T":1633998523963,"m":true,"M":true}}"#;
        let Frame::Trade(t) = parse(&symbols(), frame, 5).unwrap() else {
            panic!("not a trade")
        };
        assert_eq!(t.instrument.symbol, "NKN-USDT");
        assert_eq!(t.price.to_string(), "0.35280000");
        assert_eq!(t.qty.to_string(), "58.00000000");
        assert_eq!(t.side, Side::Sell);
        assert_eq!(
            (t.trade_id.as_str(), t.ts_exchange_us, t.ts_recv_us),
            ("15683430", 1_633_998_523_963_000, 5)
        );
    }

    #[test]
    fn bad_frames_are_rejected_by_reason() {
        let s = symbols();
        let case = |frame: &str| parse(&s, frame, 0).unwrap_err().reason;
        assert_eq!(case("not json"), "json");
        assert_eq!(
            case(r#"{"stream":"nknusdt@aggTrade","data":{"s":"NKNUSDT","a":1,"p":"0","q":"1","T":1,"m":true}}"#),
            "price"
        );
        assert_eq!(
            case(r#"{"stream":"nknusdt@aggTrade","data":{"s":"NKNUSDT","a":1,"p":"1","q":"-1","T":1,"m":true}}"#),
            "qty"
        );
        assert_eq!(
            case(r#"{"stream":"nknusdt@aggTrade","data":{"s":"NKNUSDT","a":1,"p":"x1","q":"1","T":1,"m":true}}"#),
            "number"
        );
        assert_eq!(
            case(r#"{"stream":"btcusdt@aggTrade","data":{"s":"BTCUSDT","a":1,"p":"1","q":"1","T":1,"m":true}}"#),
            "unknown_symbol"
        );
        assert_eq!(case(r#"{"stream":"nknusdt@trade","data":{}}"#), "unknown_stream");
        assert_eq!(parse(&s, r#"{"result":null,"id":1}"#, 0).unwrap(), Frame::Control);
    }
}
