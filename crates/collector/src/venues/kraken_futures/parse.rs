//! Kraken Futures frames to normalized events. Numbers are JSON numbers,
//! read exactly from their text.

use moat_common_types::model::{Funding, Level, Liquidation, OpenInterest, Trade};
use moat_common_types::{Decimal, Instrument, Market, Side, us_from_ms};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::venues::{side, Instruments, Reject, json, json_number, json_price, json_qty};

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

#[derive(Deserialize)]
struct RawTrade<'a> {
    product_id: &'a str,
    uid: &'a str,
    side: &'a str,
    time: i64,
    /// `fill`, `liquidation`, `termination` or `block`.
    #[serde(rename = "type", default)]
    kind: Option<&'a str>,
    #[serde(borrow)]
    qty: &'a RawValue,
    #[serde(borrow)]
    price: &'a RawValue,
}

#[derive(Deserialize)]
struct RawLevel<'a> {
    #[serde(borrow)]
    price: &'a RawValue,
    #[serde(borrow)]
    qty: &'a RawValue,
}

#[derive(Deserialize)]
struct RawSnapshot<'a> {
    product_id: &'a str,
    timestamp: i64,
    seq: u64,
    #[serde(borrow)]
    bids: Vec<RawLevel<'a>>,
    #[serde(borrow)]
    asks: Vec<RawLevel<'a>>,
}

#[derive(Deserialize)]
struct RawUpdate<'a> {
    product_id: &'a str,
    side: &'a str,
    seq: u64,
    #[serde(borrow)]
    price: &'a RawValue,
    #[serde(borrow)]
    qty: &'a RawValue,
    timestamp: i64,
}

/// What moat reads of a `ticker` message. Kraken leaves a field out when
/// it is zero (the documented rule for the funding rates).
#[derive(Deserialize)]
struct RawTicker<'a> {
    product_id: &'a str,
    time: i64,
    #[serde(borrow, default, rename = "markPrice")]
    mark_price: Option<&'a RawValue>,
    #[serde(borrow, default)]
    index: Option<&'a RawValue>,
    /// The funding rate as a fraction of the price (`funding_rate` is
    /// the same in the contract's currency per contract).
    #[serde(borrow, default)]
    relative_funding_rate: Option<&'a RawValue>,
    /// Milliseconds until the next funding.
    #[serde(default)]
    next_funding_rate_time: Option<f64>,
    #[serde(borrow, default, rename = "openInterest")]
    open_interest: Option<&'a RawValue>,
}

fn levels(side: &'static str, raw: &[RawLevel<'_>]) -> Result<Vec<Level>, Reject> {
    raw.iter()
        .map(|l| {
            Ok(Level {
                price: json_price(side, l.price)?,
                qty: json_qty(side, l.qty)?,
            })
        })
        .collect()
}

/// Parses one text frame received at `ts_recv_us`.
pub fn parse(symbols: &Instruments, frame: &str, ts_recv_us: i64) -> Result<Frame, Reject> {
    let head: Head<'_> = json(frame)?;
    if let Some(event) = head.event {
        return match event {
            "error" | "alert" => Err(Reject::new(
                "refused",
                head.message.unwrap_or_else(|| "the venue refused a request".into()),
            )),
            _ => Ok(Frame::Control),
        };
    }
    match head.feed.unwrap_or_default() {
        "trade" => {
            let t: RawTrade<'_> = json(frame)?;
            let trade = Trade {
                instrument: symbols.instrument(t.product_id)?,
                trade_id: t.uid.to_owned(),
                price: json_price("price", t.price)?,
                qty: json_qty("qty", t.qty)?,
                side: side(t.side)?,
                ts_exchange_us: us_from_ms(t.time),
                ts_recv_us,
            };
            // The liquidation engine's order is the taker: its side is
            // the trade's.
            let liquidation = (t.kind == Some("liquidation")).then(|| Liquidation {
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
        "book_snapshot" => {
            let s: RawSnapshot<'_> = json(frame)?;
            Ok(Frame::Book(BookMessage {
                instrument: symbols.instrument(s.product_id)?,
                snapshot: true,
                bids: levels("bids", &s.bids)?,
                asks: levels("asks", &s.asks)?,
                seq: s.seq,
                ts_exchange_us: us_from_ms(s.timestamp),
            }))
        }
        "book" => {
            let u: RawUpdate<'_> = json(frame)?;
            let level = vec![Level {
                price: json_price("price", u.price)?,
                qty: json_qty("qty", u.qty)?,
            }];
            let (bids, asks) = match side(u.side)? {
                Side::Buy => (level, Vec::new()),
                Side::Sell => (Vec::new(), level),
            };
            Ok(Frame::Book(BookMessage {
                instrument: symbols.instrument(u.product_id)?,
                snapshot: false,
                bids,
                asks,
                seq: u.seq,
                ts_exchange_us: us_from_ms(u.timestamp),
            }))
        }
        "ticker" => {
            let t: RawTicker<'_> = json(frame)?;
            let instrument = symbols.instrument(t.product_id)?;
            let ts_exchange_us = us_from_ms(t.time);
            let number = |field: &'static str, raw: Option<&RawValue>| raw.map(|r| json_number(field, r)).transpose();
            let funding = match (instrument.market, t.mark_price) {
                (Market::Perp, Some(mark)) => Some(Funding {
                    instrument: instrument.clone(),
                    funding_rate: number("relative_funding_rate", t.relative_funding_rate)?.unwrap_or(Decimal::ZERO),
                    mark_price: json_price("markPrice", mark)?,
                    index_price: t.index.map(|i| json_price("index", i)).transpose()?,
                    next_funding_ms: t
                        .next_funding_rate_time
                        .filter(|ms| ms.is_finite() && *ms >= 0.0)
                        .map_or(0, |ms| t.time.saturating_add(ms as i64)),
                    ts_exchange_us,
                    ts_recv_us,
                }),
                _ => None,
            };
            let open_interest = t
                .open_interest
                .map(|oi| {
                    Ok::<_, Reject>(OpenInterest {
                        instrument,
                        open_interest: json_qty("openInterest", oi)?,
                        ts_exchange_us,
                        ts_recv_us,
                    })
                })
                .transpose()?;
            Ok(Frame::Ticker { funding, open_interest })
        }
        _ => Ok(Frame::Control),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(parse(&s, r#"{"event":"info","version":1}"#, 0).unwrap(), Frame::Control);
        let refused = r#"{"event":"error","message":"Invalid product id"}"#;
        assert_eq!(parse(&s, refused, 0).unwrap_err().reason, "refused");
        let other = r#"{"feed":"trade","product_id":"PI_XBTUSD","uid":"1","side":"buy","time":1,"qty":1,"price":1}"#;
        assert_eq!(parse(&s, other, 0).unwrap_err().reason, "unknown_symbol");
    }
}
