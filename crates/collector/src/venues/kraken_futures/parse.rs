//! Kraken Futures frames to normalized events. Numbers are JSON numbers,
//! read exactly from their text.

use moat_common_types::model::{Level, Trade};
use moat_common_types::{Instrument, Side, us_from_ms};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::venues::{side, Instruments, Reject, json, json_price, json_qty};

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
    Trade(Trade),
    Book(BookMessage),
    /// Answers, `info`, heartbeats, `ticker_lite` (prices without sizes:
    /// the BBO comes from the checked book instead), and a product's
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
            Ok(Frame::Trade(Trade {
                instrument: symbols.instrument(t.product_id)?,
                trade_id: t.uid.to_owned(),
                price: json_price("price", t.price)?,
                qty: json_qty("qty", t.qty)?,
                side: side(t.side)?,
                ts_exchange_us: us_from_ms(t.time),
                ts_recv_us,
            }))
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
        let Frame::Trade(t) = parse(&s, trade, 1).unwrap() else { panic!() };
        assert_eq!((t.trade_id.as_str(), t.side), ("e2429e31", Side::Buy));
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
        assert_eq!(parse(&s, r#"{"event":"info","version":1}"#, 0).unwrap(), Frame::Control);
        let refused = r#"{"event":"error","message":"Invalid product id"}"#;
        assert_eq!(parse(&s, refused, 0).unwrap_err().reason, "refused");
        let other = r#"{"feed":"trade","product_id":"PI_XBTUSD","uid":"1","side":"buy","time":1,"qty":1,"price":1}"#;
        assert_eq!(parse(&s, other, 0).unwrap_err().reason, "unknown_symbol");
    }
}
