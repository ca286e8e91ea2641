//! Bybit v5 frames to normalized events, strings borrowed from the frame.

use moat_common_types::model::{Level, Liquidation, Trade};
use moat_common_types::{Decimal, Instrument, Side, us_from_ms};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::venues::scan::{Scan, once};
use crate::venues::{Instruments, Reject, json, number, price, qty, side, text_levels};

/// An `orderbook` message, ready for [`crate::book::SequencedBook`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BookMessage {
    pub instrument: Instrument,
    pub snapshot: bool,
    pub bids: Vec<Level>,
    pub asks: Vec<Level>,
    /// The update id: each delta's is the one before it plus one.
    pub update_id: u64,
    pub ts_exchange_us: i64,
}

/// The fields of a `tickers` message that moat keeps; a delta carries only
/// what changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ticker {
    pub mark_price: Option<Decimal>,
    pub index_price: Option<Decimal>,
    pub funding_rate: Option<Decimal>,
    pub next_funding_ms: Option<i64>,
    pub open_interest: Option<Decimal>,
}

/// What one frame carried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    Trades(Vec<Trade>),
    Book(BookMessage),
    Ticker {
        instrument: Instrument,
        ticker: Ticker,
        ts_exchange_us: i64,
    },
    Liquidations(Vec<Liquidation>),
    /// Subscription answers, pongs, and channels moat does not keep.
    Control,
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(default)]
    topic: Option<&'a str>,
    #[serde(rename = "type", default)]
    kind: Option<&'a str>,
    #[serde(default)]
    ts: Option<i64>,
    #[serde(borrow, default)]
    data: Option<&'a RawValue>,
    #[serde(default)]
    success: Option<bool>,
    #[serde(default)]
    ret_msg: Option<String>,
    #[serde(default)]
    op: Option<&'a str>,
}

#[derive(Deserialize)]
struct RawTrade<'a> {
    #[serde(rename = "T")]
    time: i64,
    s: &'a str,
    #[serde(rename = "S")]
    side: &'a str,
    v: &'a str,
    p: &'a str,
    i: &'a str,
}

#[derive(Deserialize)]
struct RawBook<'a> {
    s: &'a str,
    #[serde(borrow)]
    b: Vec<[&'a str; 2]>,
    #[serde(borrow)]
    a: Vec<[&'a str; 2]>,
    u: u64,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawTicker<'a> {
    symbol: &'a str,
    #[serde(default)]
    mark_price: Option<&'a str>,
    #[serde(default)]
    index_price: Option<&'a str>,
    #[serde(default)]
    funding_rate: Option<&'a str>,
    #[serde(default)]
    next_funding_time: Option<&'a str>,
    #[serde(default)]
    open_interest: Option<&'a str>,
}

#[derive(Deserialize)]
struct RawLiquidation<'a> {
    #[serde(rename = "T")]
    time: i64,
    s: &'a str,
    #[serde(rename = "S")]
    side: &'a str,
    v: &'a str,
    p: &'a str,
}



/// A push read in one pass: its topic, type, time and data, the data's
/// fields those of every topic moat reads (which are required depends on
/// the topic, which comes first in the frame but is known only after it).
#[derive(Deserialize, Debug, PartialEq)]
struct Push<'a> {
    topic: &'a str,
    #[serde(rename = "type", default)]
    kind: Option<&'a str>,
    #[serde(default)]
    ts: Option<i64>,
    #[serde(borrow)]
    data: Data<'a>,
}

/// A push's data, by its shape: an object (a book or a ticker) or an
/// array (trades, liquidations, candles).
#[derive(Debug, PartialEq)]
enum Data<'a> {
    Object(Object<'a>),
    Items(Vec<Item<'a>>),
}

impl<'de: 'a, 'a> Deserialize<'de> for Data<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for Visitor<'a> {
            type Value = Data<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an object or an array")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                Object::deserialize(serde::de::value::MapAccessDeserializer::new(map)).map(Data::Object)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
                Vec::deserialize(serde::de::value::SeqAccessDeserializer::new(seq)).map(Data::Items)
            }
        }
        deserializer.deserialize_any(Visitor(std::marker::PhantomData))
    }
}

/// The fields of a book (`s`, `b`, `a`, `u`) and of a ticker.
#[derive(Deserialize, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
struct Object<'a> {
    #[serde(default)]
    s: Option<&'a str>,
    #[serde(borrow, default)]
    b: Option<Vec<[&'a str; 2]>>,
    #[serde(borrow, default)]
    a: Option<Vec<[&'a str; 2]>>,
    #[serde(default)]
    u: Option<u64>,
    #[serde(default)]
    symbol: Option<&'a str>,
    #[serde(default)]
    mark_price: Option<&'a str>,
    #[serde(default)]
    index_price: Option<&'a str>,
    #[serde(default)]
    funding_rate: Option<&'a str>,
    #[serde(default)]
    next_funding_time: Option<&'a str>,
    #[serde(default)]
    open_interest: Option<&'a str>,
}

/// The fields of a trade and of a liquidation (a liquidation has no `i`).
#[derive(Deserialize, Debug, Default, PartialEq)]
struct Item<'a> {
    #[serde(rename = "T", default)]
    time: Option<i64>,
    #[serde(default)]
    s: Option<&'a str>,
    #[serde(rename = "S", default)]
    side: Option<&'a str>,
    #[serde(default)]
    v: Option<&'a str>,
    #[serde(default)]
    p: Option<&'a str>,
    #[serde(default)]
    i: Option<&'a str>,
}

/// [`Push`] read by [`Scan`]; `None` leaves the frame to serde.
fn scan_push(frame: &str) -> Option<Push<'_>> {
    let mut scan = Scan::new(frame);
    let (mut topic, mut kind, mut ts, mut data) = (None, None, None, None);
    scan.object(|scan, key| match key {
        "topic" => once(&mut topic, scan.str()),
        "type" => once(&mut kind, scan.str()),
        "ts" => once(&mut ts, scan.i64()),
        "data" => once(&mut data, scan_data(scan)),
        _ => scan.skip(),
    })?;
    scan.end()?;
    Some(Push {
        topic: topic?,
        kind,
        ts,
        data: data?,
    })
}

fn scan_data<'a>(scan: &mut Scan<'a>) -> Option<Data<'a>> {
    if !scan.at_object()? {
        let mut items = Vec::new();
        scan.array(|scan| {
            let mut t = Item::default();
            scan.object(|scan, key| match key {
                "T" => once(&mut t.time, scan.i64()),
                "s" => once(&mut t.s, scan.str()),
                "S" => once(&mut t.side, scan.str()),
                "v" => once(&mut t.v, scan.str()),
                "p" => once(&mut t.p, scan.str()),
                "i" => once(&mut t.i, scan.str()),
                _ => scan.skip(),
            })?;
            items.push(t);
            Some(())
        })?;
        return Some(Data::Items(items));
    }
    let mut o = Object::default();
    scan.object(|scan, key| match key {
        "s" => once(&mut o.s, scan.str()),
        "b" => once(&mut o.b, scan.tuples()),
        "a" => once(&mut o.a, scan.tuples()),
        "u" => once(&mut o.u, scan.u64()),
        "symbol" => once(&mut o.symbol, scan.str()),
        "markPrice" => once(&mut o.mark_price, scan.str()),
        "indexPrice" => once(&mut o.index_price, scan.str()),
        "fundingRate" => once(&mut o.funding_rate, scan.str()),
        "nextFundingTime" => once(&mut o.next_funding_time, scan.str()),
        "openInterest" => once(&mut o.open_interest, scan.str()),
        _ => scan.skip(),
    })?;
    Some(Data::Object(o))
}

/// Reads a push in one pass: `None` when the frame is not a push of the
/// usual shape (an answer, a malformed frame, a field missing), which the
/// full parse then reads, to the same outcome or a named error.
fn one_pass(symbols: &Instruments, frame: &str, ts_recv_us: i64) -> Option<Result<Frame, Reject>> {
    let push: Push<'_> = scan_push(frame).or_else(|| serde_json::from_str(frame).ok())?;
    let ts = push.ts.map(us_from_ms);
    match (push.topic.split('.').next().unwrap_or_default(), push.data) {
        ("publicTrade", Data::Items(items)) => {
            let raw = items
                .iter()
                .map(|t| {
                    Some(RawTrade {
                        time: t.time?,
                        s: t.s?,
                        side: t.side?,
                        v: t.v?,
                        p: t.p?,
                        i: t.i?,
                    })
                })
                .collect::<Option<Vec<_>>>()?;
            Some(trades(symbols, &raw, ts_recv_us))
        }
        ("orderbook", Data::Object(o)) => {
            let raw = RawBook {
                s: o.s?,
                b: o.b?,
                a: o.a?,
                u: o.u?,
            };
            Some(book(symbols, push.topic, push.kind, &raw, ts.unwrap_or(ts_recv_us)))
        }
        ("tickers", Data::Object(o)) => {
            let raw = RawTicker {
                symbol: o.symbol?,
                mark_price: o.mark_price,
                index_price: o.index_price,
                funding_rate: o.funding_rate,
                next_funding_time: o.next_funding_time,
                open_interest: o.open_interest,
            };
            Some(ticker(symbols, &raw, ts.unwrap_or(ts_recv_us)))
        }
        ("kline", _) => Some(Ok(Frame::Control)),
        _ => None,
    }
}

fn trades(symbols: &Instruments, raw: &[RawTrade<'_>], ts_recv_us: i64) -> Result<Frame, Reject> {
    let trades = raw
        .iter()
        .map(|t| {
            Ok(Trade {
                instrument: symbols.instrument(t.s)?,
                trade_id: t.i.to_owned(),
                price: price("p", t.p)?,
                qty: qty("v", t.v)?,
                side: side(t.side)?,
                ts_exchange_us: us_from_ms(t.time),
                ts_recv_us,
            })
        })
        .collect::<Result<_, Reject>>()?;
    Ok(Frame::Trades(trades))
}

fn book(
    symbols: &Instruments,
    topic: &str,
    kind: Option<&str>,
    raw: &RawBook<'_>,
    ts_exchange_us: i64,
) -> Result<Frame, Reject> {
    let snapshot = match kind {
        Some("snapshot") => true,
        Some("delta") => false,
        other => return Err(Reject::new("unknown_frame", format!("{topic}: type {other:?}"))),
    };
    Ok(Frame::Book(BookMessage {
        instrument: symbols.instrument(raw.s)?,
        snapshot,
        bids: text_levels("b", &raw.b)?,
        asks: text_levels("a", &raw.a)?,
        update_id: raw.u,
        ts_exchange_us,
    }))
}

fn ticker(symbols: &Instruments, raw: &RawTicker<'_>, ts_exchange_us: i64) -> Result<Frame, Reject> {
    let next_funding_ms = raw
        .next_funding_time
        .filter(|v| !v.is_empty())
        .map(|v| {
            v.parse::<i64>()
                .map_err(|_| Reject::new("number", format!("nextFundingTime {v:?}")))
        })
        .transpose()?;
    Ok(Frame::Ticker {
        instrument: symbols.instrument(raw.symbol)?,
        ticker: Ticker {
            mark_price: optional("markPrice", raw.mark_price)?,
            index_price: optional("indexPrice", raw.index_price)?,
            funding_rate: optional("fundingRate", raw.funding_rate)?,
            next_funding_ms,
            open_interest: optional("openInterest", raw.open_interest)?,
        },
        ts_exchange_us,
    })
}

/// An optional decimal field; an empty string (which Bybit sends for
/// fields that do not apply) is absent.
fn optional(field: &'static str, value: Option<&str>) -> Result<Option<Decimal>, Reject> {
    value.filter(|v| !v.is_empty()).map(|v| number(field, v)).transpose()
}

/// Parses one text frame received at `ts_recv_us`.
pub fn parse(symbols: &Instruments, frame: &str, ts_recv_us: i64) -> Result<Frame, Reject> {
    if let Some(parsed) = one_pass(symbols, frame, ts_recv_us) {
        return parsed;
    }
    let envelope: Envelope<'_> = json(frame)?;
    let Some(topic) = envelope.topic else {
        return match (envelope.success, envelope.op) {
            (Some(false), _) => Err(Reject::new(
                "refused",
                envelope.ret_msg.unwrap_or_else(|| "the venue refused a request".into()),
            )),
            (Some(true), _) | (_, Some("pong" | "ping" | "subscribe" | "unsubscribe")) => Ok(Frame::Control),
            _ => Err(Reject::new("unknown_frame", "neither a topic nor an answer")),
        };
    };
    let data = envelope
        .data
        .ok_or_else(|| Reject::new("missing_field", format!("{topic}: no data")))?
        .get();
    let channel = topic.split('.').next().unwrap_or_default();
    let ts = envelope.ts.map(us_from_ms);
    match channel {
        "publicTrade" => {
            let raw: Vec<RawTrade<'_>> = json(data)?;
            trades(symbols, &raw, ts_recv_us)
        }
        "orderbook" => {
            let raw: RawBook<'_> = json(data)?;
            book(symbols, topic, envelope.kind, &raw, ts.unwrap_or(ts_recv_us))
        }
        "tickers" => {
            let raw: RawTicker<'_> = json(data)?;
            ticker(symbols, &raw, ts.unwrap_or(ts_recv_us))
        }
        "allLiquidation" | "liquidation" => {
            let raw: Vec<RawLiquidation<'_>> = json(data)?;
            let liquidations = raw
                .iter()
                .map(|l| {
                    // `S` is the side of the position liquidated: a long
                    // (Buy) is closed by a sell order, which is the side
                    // moat records, as Binance's forceOrder does.
                    let side = match side(l.side)? {
                        Side::Buy => Side::Sell,
                        Side::Sell => Side::Buy,
                    };
                    Ok(Liquidation {
                        instrument: symbols.instrument(l.s)?,
                        side,
                        price: price("p", l.p)?,
                        qty: qty("v", l.v)?,
                        order_id: None,
                        ts_exchange_us: us_from_ms(l.time),
                        ts_recv_us,
                    })
                })
                .collect::<Result<_, Reject>>()?;
            Ok(Frame::Liquidations(liquidations))
        }
        "kline" => Ok(Frame::Control),
        _ => Err(Reject::new("unknown_frame", format!("topic {topic}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// On every recorded frame, what the scanner reads is what serde
    /// reads; and it reads every push (else it is no faster).
    #[test]
    fn scanned_frames_read_as_serde_reads_them() {
        let frames: Vec<String> = ["BYBIT.ws.2.0", "BYBIT.ws.3.0"]
            .into_iter()
            .flat_map(crate::venues::scan::recorded_frames)
            .collect();
        let mut scanned = 0;
        for frame in &frames {
            let serde = serde_json::from_str::<Push<'_>>(frame).ok();
            match scan_push(frame) {
                Some(push) => {
                    assert_eq!(Some(push), serde, "{frame}");
                    scanned += 1;
                }
                None => assert!(serde.is_none(), "the scanner left a push to serde: {frame}"),
            }
        }
        assert!(frames.is_empty() || scanned > 3_000, "{scanned} of {} scanned", frames.len());
    }

    fn linear() -> Instruments {
        super::super::symbols("bybit", &["linear:BTCUSDT"]).all_known().unwrap()
    }

    #[test]
    fn trades_books_tickers_and_liquidations_read_as_the_venue_documents() {
        let s = linear();
        let trade = r#"{"topic":"publicTrade.BTCUSDT","type":"snapshot","ts":1786310819681,"data":[{"T":1786310819680,"s":"BTCUSDT","S":"Sell","v":"0.004","p":"65114.20","L":"MinusTick","i":"a9188a0a","BT":false}]}"#;
        let Frame::Trades(trades) = parse(&s, trade, 7).unwrap() else {
            panic!()
        };
        assert_eq!(trades[0].instrument.symbol, "BTC-USDT-PERP");
        assert_eq!(trades[0].trade_id, "a9188a0a");
        assert_eq!(trades[0].side, Side::Sell);
        assert_eq!(trades[0].price, "65114.20".parse::<Decimal>().unwrap());
        assert_eq!(trades[0].ts_exchange_us, 1_786_310_819_680_000);

        let delta = r#"{"topic":"orderbook.200.BTCUSDT","type":"delta","ts":1786310818130,"data":{"s":"BTCUSDT","b":[["65093.10","0"]],"a":[["65116.80","0.002"]],"u":15076953,"seq":753843913870},"cts":1}"#;
        let Frame::Book(book) = parse(&s, delta, 7).unwrap() else {
            panic!()
        };
        assert!(!book.snapshot);
        assert_eq!(book.update_id, 15_076_953);
        assert!(book.bids[0].qty.is_zero());

        let ticker = r#"{"topic":"tickers.BTCUSDT","type":"snapshot","data":{"symbol":"BTCUSDT","markPrice":"65117.44","indexPrice":"65137.76","openInterest":"59891.732","nextFundingTime":"1786320000000","fundingRate":"0.0001","preOpenPrice":""},"cs":1,"ts":1786310817583}"#;
        let Frame::Ticker { ticker, .. } = parse(&s, ticker, 7).unwrap() else {
            panic!()
        };
        assert_eq!(ticker.funding_rate, Some("0.0001".parse().unwrap()));
        assert_eq!(ticker.next_funding_ms, Some(1_786_320_000_000));

        let liquidation = r#"{"topic":"allLiquidation.BTCUSDT","type":"snapshot","ts":1,"data":[{"T":1739502302929,"s":"BTCUSDT","S":"Buy","v":"0.003","p":"43511.70"}]}"#;
        let Frame::Liquidations(l) = parse(&s, liquidation, 7).unwrap() else {
            panic!()
        };
        assert_eq!(l[0].side, Side::Sell, "a long liquidated is sold");
    }

    #[test]
    fn refusals_and_unknown_symbols_are_rejects_that_name_them() {
        let s = linear();
        let refused =
            r#"{"success":false,"ret_msg":"error:handler not found","conn_id":"x","req_id":"","op":"subscribe"}"#;
        let reject = parse(&s, refused, 0).unwrap_err();
        assert_eq!(reject.reason, "refused");
        assert!(reject.detail.contains("handler not found"));
        let other = r#"{"topic":"publicTrade.ETHUSDT","type":"snapshot","ts":1,"data":[{"T":1,"s":"ETHUSDT","S":"Buy","v":"1","p":"1","i":"1"}]}"#;
        assert_eq!(parse(&s, other, 0).unwrap_err().reason, "unknown_symbol");
        let pong = r#"{"success":true,"ret_msg":"pong","conn_id":"x","op":"ping"}"#;
        assert_eq!(parse(&s, pong, 0).unwrap(), Frame::Control);
        let bad_side =
            r#"{"topic":"publicTrade.BTCUSDT","ts":1,"data":[{"T":1,"s":"BTCUSDT","S":"Up","v":"1","p":"1","i":"1"}]}"#;
        assert_eq!(parse(&s, bad_side, 0).unwrap_err().reason, "side");
    }
}
