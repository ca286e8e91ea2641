//! Kraken Futures frames to normalized events. Numbers are JSON numbers,
//! read exactly from their text.

use moat_common_types::model::{Funding, Level, Liquidation, OpenInterest, Trade};
use moat_common_types::{Decimal, Instrument, Market, Side, us_from_ms};
use serde::Deserialize;

use crate::venues::scan::{Scan, once};
use crate::venues::{Instruments, JsonNumber, Reject, json, number, price, qty, side};

/// A `book_snapshot` or one `book` level update, ready for the connector's
/// book.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BookMessage {
    pub instrument: Instrument,
    pub snapshot: bool,
    pub bids: Vec<Level>,
    pub asks: Vec<Level>,
    /// Each product's updates carry the `seq` after the one before.
    pub seq: u64,
    pub ts_exchange_us: i64,
}

/// What one frame carried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A trade, and the liquidation it was (`"type":"liquidation"`).
    Trade(Trade, Option<Liquidation>),
    Book(BookMessage),
    /// The `ticker` feed: a perpetual's funding (with mark and index
    /// price), and open interest.
    Ticker {
        funding: Option<Funding>,
        open_interest: Option<OpenInterest>,
    },
    /// Answers, `info`, heartbeats, `ticker_lite`, the prices of `ticker`
    /// (the BBO comes from the checked book instead), and a product's
    /// earlier trades (`trade_snapshot`), which moat does not publish again.
    Control,
}

#[derive(Deserialize)]
struct Head<'a> {
    #[serde(default)]
    feed: Option<&'a str>,
    #[serde(default)]
    event: Option<&'a str>,
    #[serde(default)]
    message: Option<String>,
}

/// Every field moat reads of any feed, read in one pass over the frame;
/// which are required depends on the feed. Kraken leaves a ticker field
/// out when it is zero (the documented rule for the funding rates).
#[derive(Deserialize, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
struct Message<'a> {
    #[serde(default)]
    feed: Option<&'a str>,
    #[serde(default)]
    event: Option<&'a str>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default, rename = "product_id")]
    product_id: Option<&'a str>,
    /// Trades: the fill's id, the taker's side, and `fill`,
    /// `liquidation`, `termination` or `block`.
    #[serde(default)]
    uid: Option<&'a str>,
    #[serde(default)]
    side: Option<&'a str>,
    #[serde(rename = "type", default)]
    kind: Option<&'a str>,
    /// Trades and tickers (ms).
    #[serde(default)]
    time: Option<i64>,
    #[serde(borrow, default)]
    qty: Option<JsonNumber<'a>>,
    #[serde(borrow, default)]
    price: Option<JsonNumber<'a>>,
    /// Books: each product's updates carry the `seq` after the one before.
    #[serde(default)]
    seq: Option<u64>,
    #[serde(default)]
    timestamp: Option<i64>,
    #[serde(borrow, default)]
    bids: Option<Vec<RawLevel<'a>>>,
    #[serde(borrow, default)]
    asks: Option<Vec<RawLevel<'a>>>,
    #[serde(borrow, default)]
    mark_price: Option<JsonNumber<'a>>,
    #[serde(borrow, default)]
    index: Option<JsonNumber<'a>>,
    /// The funding rate as a fraction of the price (`funding_rate` is
    /// the same in the contract's currency per contract).
    #[serde(borrow, default, rename = "relative_funding_rate")]
    relative_funding_rate: Option<JsonNumber<'a>>,
    /// Milliseconds until the next funding.
    #[serde(borrow, default, rename = "next_funding_rate_time")]
    next_funding_rate_time: Option<JsonNumber<'a>>,
    #[serde(borrow, default)]
    open_interest: Option<JsonNumber<'a>>,
}

#[derive(Deserialize, Debug, PartialEq)]
struct RawLevel<'a> {
    #[serde(borrow)]
    price: JsonNumber<'a>,
    #[serde(borrow)]
    qty: JsonNumber<'a>,
}

/// [`Message`] read by [`Scan`]; `None` leaves the frame to serde, which
/// gives the answer (a refusal included).
fn scan_message(frame: &str) -> Option<Message<'_>> {
    level_update(frame).or_else(|| scan_object(frame))
}

/// A `book` level update in the layout Kraken writes every one of them
/// (most of what the venue sends), its keys matched in that order; `None`
/// for any other layout, which [`scan_object`] reads.
fn level_update(frame: &str) -> Option<Message<'_>> {
    let mut scan = Scan::new(frame);
    let product_id = scan.after(r#"{"feed":"book","product_id":"#, Scan::str)?;
    let side = scan.after(r#","side":"#, Scan::str)?;
    let seq = scan.after(r#","seq":"#, Scan::u64)?;
    let price = scan.after(r#","price":"#, Scan::json_number)?;
    let qty = scan.after(r#","qty":"#, Scan::json_number)?;
    let timestamp = scan.after(r#","timestamp":"#, Scan::i64)?;
    scan.literal("}")?;
    scan.end()?;
    Some(Message {
        feed: Some("book"),
        product_id: Some(product_id),
        side: Some(side),
        seq: Some(seq),
        price: Some(price),
        qty: Some(qty),
        timestamp: Some(timestamp),
        ..Message::default()
    })
}

/// [`Message`] read by [`Scan`] whatever the order of its keys.
fn scan_object(frame: &str) -> Option<Message<'_>> {
    let mut m = Message::default();
    let mut scan = Scan::new(frame);
    scan.object(|scan, key| match key {
        "feed" => once(&mut m.feed, scan.str()),
        "product_id" => once(&mut m.product_id, scan.str()),
        "side" => once(&mut m.side, scan.str()),
        "seq" => once(&mut m.seq, scan.u64()),
        "price" => once(&mut m.price, scan.json_number()),
        "qty" => once(&mut m.qty, scan.json_number()),
        "timestamp" => once(&mut m.timestamp, scan.i64()),
        "time" => once(&mut m.time, scan.i64()),
        "uid" => once(&mut m.uid, scan.str()),
        "type" => once(&mut m.kind, scan.str()),
        "event" => once(&mut m.event, scan.str()),
        "message" => once(&mut m.message, scan.str().map(str::to_owned)),
        "bids" => once(&mut m.bids, scan_levels(scan)),
        "asks" => once(&mut m.asks, scan_levels(scan)),
        "markPrice" => once(&mut m.mark_price, scan.json_number()),
        "index" => once(&mut m.index, scan.json_number()),
        "relative_funding_rate" => once(&mut m.relative_funding_rate, scan.json_number()),
        "next_funding_rate_time" => once(&mut m.next_funding_rate_time, scan.json_number()),
        "openInterest" => once(&mut m.open_interest, scan.json_number()),
        _ => scan.skip(),
    })?;
    scan.end()?;
    Some(m)
}

fn scan_levels<'a>(scan: &mut Scan<'a>) -> Option<Vec<RawLevel<'a>>> {
    let mut levels = Vec::new();
    scan.array(|scan| {
        let (mut price, mut qty) = (None, None);
        scan.object(|scan, key| match key {
            "price" => once(&mut price, scan.json_number()),
            "qty" => once(&mut qty, scan.json_number()),
            _ => scan.skip(),
        })?;
        levels.push(RawLevel {
            price: price?,
            qty: qty?,
        });
        Some(())
    })?;
    Some(levels)
}

/// The feeds moat reads.
const READ: [&str; 4] = ["trade", "book", "book_snapshot", "ticker"];

fn need<T>(feed: &str, field: &'static str, value: Option<T>) -> Result<T, Reject> {
    value.ok_or_else(|| Reject::new("missing_field", format!("{feed}: no {field}")))
}

fn levels(side: &'static str, raw: &[RawLevel<'_>]) -> Result<Vec<Level>, Reject> {
    raw.iter()
        .map(|l| {
            Ok(Level {
                price: price(side, l.price.0)?,
                qty: qty(side, l.qty.0)?,
            })
        })
        .collect()
}

/// Parses one text frame received at `ts_recv_us`.
pub fn parse(symbols: &Instruments, frame: &str, ts_recv_us: i64) -> Result<Frame, Reject> {
    let scanned = scan_message(frame).map(Ok);
    let m: Message<'_> = match scanned.unwrap_or_else(|| json(frame)) {
        Ok(m) => m,
        Err(error) => {
            // A shape the one-pass reader does not take is an error only
            // on a feed moat reads; anything else is read by its head.
            let head: Head<'_> = json(frame)?;
            return match (head.event, head.feed) {
                (Some(event), _) => control_event(event, head.message),
                (None, Some(feed)) if READ.contains(&feed) => Err(error),
                _ => Ok(Frame::Control),
            };
        }
    };
    if let Some(event) = m.event {
        return control_event(event, m.message);
    }
    let feed = m.feed.unwrap_or_default();
    if !READ.contains(&feed) {
        return Ok(Frame::Control);
    }
    let instrument = symbols.instrument(need(feed, "product_id", m.product_id)?)?;
    match feed {
        "trade" => {
            let trade = Trade {
                instrument,
                trade_id: need(feed, "uid", m.uid)?.to_owned(),
                price: price("price", need(feed, "price", m.price)?.0)?,
                qty: qty("qty", need(feed, "qty", m.qty)?.0)?,
                side: side(need(feed, "side", m.side)?)?,
                ts_exchange_us: us_from_ms(need(feed, "time", m.time)?),
                ts_recv_us,
            };
            // The liquidation engine's order is the taker: its side is
            // the trade's.
            let liquidation = (m.kind == Some("liquidation")).then(|| Liquidation {
                instrument: trade.instrument.clone(),
                side: trade.side,
                price: trade.price,
                qty: trade.qty,
                order_id: Some(trade.trade_id.clone()),
                ts_exchange_us: trade.ts_exchange_us,
                ts_recv_us,
            });
            Ok(Frame::Trade(trade, liquidation))
        }
        "book_snapshot" => Ok(Frame::Book(BookMessage {
            instrument,
            snapshot: true,
            bids: levels("bids", &need(feed, "bids", m.bids)?)?,
            asks: levels("asks", &need(feed, "asks", m.asks)?)?,
            seq: need(feed, "seq", m.seq)?,
            ts_exchange_us: us_from_ms(need(feed, "timestamp", m.timestamp)?),
        })),
        "book" => {
            let level = vec![Level {
                price: price("price", need(feed, "price", m.price)?.0)?,
                qty: qty("qty", need(feed, "qty", m.qty)?.0)?,
            }];
            let (bids, asks) = match side(need(feed, "side", m.side)?)? {
                Side::Buy => (level, Vec::new()),
                Side::Sell => (Vec::new(), level),
            };
            Ok(Frame::Book(BookMessage {
                instrument,
                snapshot: false,
                bids,
                asks,
                seq: need(feed, "seq", m.seq)?,
                ts_exchange_us: us_from_ms(need(feed, "timestamp", m.timestamp)?),
            }))
        }
        _ => {
            let time = need(feed, "time", m.time)?;
            let ts_exchange_us = us_from_ms(time);
            let decimal = |field: &'static str, raw: Option<JsonNumber<'_>>| raw.map(|r| number(field, r.0)).transpose();
            // Milliseconds, a JSON number (a string or a float past f64 is
            // refused, as a typed read refuses it).
            let until_funding = m
                .next_funding_rate_time
                .map(|ms| {
                    ms.0.parse::<f64>()
                        .ok()
                        .filter(|v| v.is_finite())
                        .ok_or_else(|| Reject::new("number", format!("next_funding_rate_time {:?}", ms.0)))
                })
                .transpose()?;
            let funding = match (instrument.market, m.mark_price) {
                (Market::Perp, Some(mark)) => Some(Funding {
                    instrument: instrument.clone(),
                    funding_rate: decimal("relative_funding_rate", m.relative_funding_rate)?.unwrap_or(Decimal::ZERO),
                    mark_price: price("markPrice", mark.0)?,
                    index_price: m.index.map(|i| price("index", i.0)).transpose()?,
                    next_funding_ms: until_funding
                        .filter(|ms| *ms >= 0.0)
                        .map_or(0, |ms| time.saturating_add(ms as i64)),
                    ts_exchange_us,
                    ts_recv_us,
                }),
                _ => None,
            };
            let open_interest = m
                .open_interest
                .map(|oi| {
                    Ok::<_, Reject>(OpenInterest {
                        instrument,
                        open_interest: qty("openInterest", oi.0)?,
                        ts_exchange_us,
                        ts_recv_us,
                    })
                })
                .transpose()?;
            Ok(Frame::Ticker { funding, open_interest })
        }
    }
}

/// An `event` message: a refusal is an error naming it, the rest are
/// answers.
fn control_event(event: &str, message: Option<String>) -> Result<Frame, Reject> {
    match event {
        "error" | "alert" => Err(Reject::new(
            "refused",
            message.unwrap_or_else(|| "the venue refused a request".into()),
        )),
        _ => Ok(Frame::Control),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// On every recorded frame, what the scanner reads is what serde
    /// reads; and it reads the feeds moat reads (else it is no faster).
    #[test]
    fn scanned_frames_read_as_serde_reads_them() {
        let frames = crate::venues::scan::recorded_frames("KRAKEN_FUTURES.ws.1.0");
        let mut scanned = 0;
        for frame in &frames {
            let serde = json::<Message<'_>>(frame).ok();
            match scan_message(frame) {
                Some(m) => {
                    assert_eq!(Some(&m), serde.as_ref(), "{frame}");
                    scanned += 1;
                }
                None => assert!(
                    !serde.and_then(|m| m.feed).is_some_and(|f| READ.contains(&f)),
                    "the scanner left a usual frame to serde: {frame}"
                ),
            }
        }
        assert!(frames.is_empty() || scanned > 7_000, "{scanned} of {} scanned", frames.len());
        // Level updates are read by their layout, as the rest reads them.
        let mut updates = 0;
        for frame in &frames {
            if let Some(m) = level_update(frame) {
                assert_eq!(Some(m), scan_object(frame), "{frame}");
                updates += 1;
            }
        }
        assert!(frames.is_empty() || updates > 7_000, "{updates} level updates read by their layout");
        // Where serde refuses, so does the scanner; an escape is left to serde.
        for text in [
            r#"{"feed":"book","seq":1,"seq":2}"#,
            r#"{"feed":"book","price":"1"}"#,
            r#"{"feed":"book","price":1.}"#,
            r#"{"feed":"book","seq":1.5}"#,
            r#"{"feed":"book"} x"#,
            r#"{"feed":"bo\u006fk"}"#,
        ] {
            assert_eq!(scan_message(text), None, "{text}");
        }
    }

    #[test]
    fn trades_books_and_tickers_read_as_the_venue_documents() {
        let s = super::super::symbols("kraken-futures", &["PI_LTCUSD"]).all_known().unwrap();
        let trade = r#"{"feed":"trade","product_id":"PI_LTCUSD","uid":"e2429e31","side":"buy","type":"fill","seq":5956,"time":1626994929946,"qty":320.0,"price":119.44}"#;
        let Frame::Trade(t, None) = parse(&s, trade, 1).unwrap() else { panic!() };
        assert_eq!((t.trade_id.as_str(), t.side), ("e2429e31", Side::Buy));
        let liquidation = trade.replace(r#""type":"fill""#, r#""type":"liquidation""#);
        let Frame::Trade(_, Some(l)) = parse(&s, &liquidation, 1).unwrap() else { panic!() };
        assert_eq!((l.side, l.qty.to_string(), l.order_id.as_deref()), (Side::Buy, "320.0".into(), Some("e2429e31")));
        assert_eq!((t.price.to_string(), t.qty.to_string()), ("119.44".into(), "320.0".into()));
        let update = r#"{"feed":"book","product_id":"PI_LTCUSD","side":"sell","seq":26660860,"price":119.5,"qty":0.0,"timestamp":1626994927744}"#;
        let Frame::Book(b) = parse(&s, update, 1).unwrap() else { panic!() };
        assert_eq!((b.seq, b.asks.len(), b.snapshot), (26_660_860, 1, false));
        assert!(b.asks[0].qty.is_zero());
        let snapshot = r#"{"feed":"book_snapshot","product_id":"PI_LTCUSD","timestamp":1,"seq":9,"tickSize":null,"bids":[{"price":119.3,"qty":2.0}],"asks":[{"price":119.6,"qty":1.0}]}"#;
        let Frame::Book(b) = parse(&s, snapshot, 1).unwrap() else { panic!() };
        assert!(b.snapshot && b.seq == 9);
        let ticker = r#"{"feed":"ticker_lite","product_id":"PI_LTCUSD","bid":119.3,"ask":119.6,"change":2.6}"#;
        assert_eq!(parse(&s, ticker, 1).unwrap(), Frame::Control);
        // The full ticker, as Kraken documents it.
        let ticker = r#"{"time":1612270825253,"feed":"ticker","product_id":"PI_LTCUSD","bid":119.3,"ask":119.6,"bid_size":42864.0,"ask_size":2300.0,"volume":262306237.0,"dtm":0,"leverage":"50x","index":119.45,"premium":0.1,"last":119.5,"change":2.99,"funding_rate":3.891007752e-9,"funding_rate_prediction":4.2233756e-9,"suspended":false,"tag":"perpetual","pair":"LTC:USD","openInterest":152222.0,"markPrice":119.47,"maturityTime":0,"relative_funding_rate":0.000136745876,"relative_funding_rate_prediction":0.000148285934,"next_funding_rate_time":1574753.0}"#;
        let Frame::Ticker { funding: Some(f), open_interest: Some(o) } = parse(&s, ticker, 1).unwrap() else { panic!() };
        assert_eq!((f.funding_rate.to_string(), f.mark_price.to_string()), ("0.000136745876".into(), "119.47".into()));
        assert_eq!(f.index_price.map(|p| p.to_string()).as_deref(), Some("119.45"));
        assert_eq!(f.next_funding_ms, 1_612_270_825_253 + 1_574_753, "the time until funding is counted from `time`");
        assert_eq!((o.open_interest.to_string(), o.ts_exchange_us), ("152222.0".into(), 1_612_270_825_253_000));
        // A zero funding rate is left out by the venue: it reads as zero.
        let no_rate = ticker.replace(r#""relative_funding_rate":0.000136745876,"#, "");
        let Frame::Ticker { funding: Some(f), .. } = parse(&s, &no_rate, 1).unwrap() else { panic!() };
        assert!(f.funding_rate.is_zero());
        // The time to funding is a number.
        let text = ticker.replace("1574753.0", r#""soon""#);
        assert_eq!(parse(&s, &text, 1).unwrap_err().reason, "number");
        assert_eq!(parse(&s, r#"{"event":"info","version":1}"#, 0).unwrap(), Frame::Control);
        let refused = r#"{"event":"error","message":"Invalid product id"}"#;
        assert_eq!(parse(&s, refused, 0).unwrap_err().reason, "refused");
        let other = r#"{"feed":"trade","product_id":"PI_XBTUSD","uid":"1","side":"buy","time":1,"qty":1,"price":1}"#;
        assert_eq!(parse(&s, other, 0).unwrap_err().reason, "unknown_symbol");
    }
}
