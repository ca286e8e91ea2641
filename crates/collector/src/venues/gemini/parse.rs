//! Gemini market data v2 frames to normalized events.

use moat_common_types::model::{Level, Trade};
use moat_common_types::{Instrument, Side, us_from_ms};
use serde::Deserialize;

use crate::venues::{side, Instruments, Reject, json, price, qty};

/// An `l2_updates` message, ready for the connector's book.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BookMessage {
    pub instrument: Instrument,
    /// The whole book: the first message of a subscription, the one that
    /// carries the symbol's earlier `trades`.
    pub snapshot: bool,
    pub bids: Vec<Level>,
    pub asks: Vec<Level>,
}

/// What one frame carried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    Trade(Trade),
    Book(BookMessage),
    /// Heartbeats and other control frames.
    Control,
}

#[derive(Deserialize)]
struct Head<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
}

#[derive(Deserialize)]
struct RawTrade<'a> {
    symbol: &'a str,
    event_id: u64,
    timestamp: i64,
    price: &'a str,
    quantity: &'a str,
    side: &'a str,
}

#[derive(Deserialize)]
struct RawBook<'a> {
    symbol: &'a str,
    #[serde(borrow)]
    changes: Vec<[&'a str; 3]>,
    #[serde(default)]
    trades: Option<serde::de::IgnoredAny>,
}

#[derive(Deserialize)]
struct RawError {
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    message: Option<String>,
}


/// A trade or a book change read in one pass: the fields of both, each
/// optional.
#[derive(Deserialize)]
struct OnePass<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    #[serde(default)]
    symbol: Option<&'a str>,
    #[serde(default)]
    event_id: Option<u64>,
    #[serde(default)]
    timestamp: Option<i64>,
    #[serde(default)]
    price: Option<&'a str>,
    #[serde(default)]
    quantity: Option<&'a str>,
    #[serde(default)]
    side: Option<&'a str>,
    #[serde(borrow, default)]
    changes: Option<Vec<[&'a str; 3]>>,
    #[serde(default)]
    trades: Option<serde::de::IgnoredAny>,
}

/// Reads a trade or a book change in one pass; `None` for any other frame
/// (or a field missing), which the full parse then reads.
fn one_pass(symbols: &Instruments, frame: &str, ts_recv_us: i64) -> Option<Result<Frame, Reject>> {
    let m: OnePass<'_> = serde_json::from_str(frame).ok()?;
    match m.kind {
        "trade" => {
            let raw = RawTrade {
                symbol: m.symbol?,
                event_id: m.event_id?,
                timestamp: m.timestamp?,
                price: m.price?,
                quantity: m.quantity?,
                side: m.side?,
            };
            Some(trade(symbols, &raw, ts_recv_us))
        }
        "l2_updates" => {
            let raw = RawBook {
                symbol: m.symbol?,
                changes: m.changes?,
                trades: m.trades,
            };
            Some(book(symbols, &raw))
        }
        _ => None,
    }
}

fn trade(symbols: &Instruments, t: &RawTrade<'_>, ts_recv_us: i64) -> Result<Frame, Reject> {
    Ok(Frame::Trade(Trade {
        instrument: symbols.instrument(t.symbol)?,
        trade_id: t.event_id.to_string(),
        price: price("price", t.price)?,
        qty: qty("quantity", t.quantity)?,
        side: side(t.side)?,
        ts_exchange_us: us_from_ms(t.timestamp),
        ts_recv_us,
    }))
}

fn book(symbols: &Instruments, raw: &RawBook<'_>) -> Result<Frame, Reject> {
    let (mut bids, mut asks) = (Vec::new(), Vec::new());
    for [s, p, q] in &raw.changes {
        let level = Level {
            price: price("price", p)?,
            qty: qty("quantity", q)?,
        };
        match side(s)? {
            Side::Buy => bids.push(level),
            Side::Sell => asks.push(level),
        }
    }
    Ok(Frame::Book(BookMessage {
        instrument: symbols.instrument(raw.symbol)?,
        snapshot: raw.trades.is_some(),
        bids,
        asks,
    }))
}

/// Parses one text frame received at `ts_recv_us`.
pub fn parse(symbols: &Instruments, frame: &str, ts_recv_us: i64) -> Result<Frame, Reject> {
    if let Some(parsed) = one_pass(symbols, frame, ts_recv_us) {
        return parsed;
    }
    let head: Head<'_> = json(frame)?;
    match head.kind {
        "trade" => trade(symbols, &json(frame)?, ts_recv_us),
        "l2_updates" => book(symbols, &json(frame)?),
        "error" => {
            let e: RawError = json(frame)?;
            Err(Reject::new(
                "refused",
                e.message.or(e.reason).unwrap_or_else(|| "the venue refused a request".into()),
            ))
        }
        _ => Ok(Frame::Control),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trades_and_book_changes_read_as_the_venue_documents() {
        let s = super::super::symbols("gemini", &["FILUSD"]).all_known().unwrap();
        let trade = r#"{"type":"trade","symbol":"FILUSD","event_id":45465842999,"timestamp":1624493681030,"price":"58.4998","quantity":"15.4053","side":"buy"}"#;
        let Frame::Trade(t) = parse(&s, trade, 1).unwrap() else { panic!() };
        assert_eq!((t.trade_id.as_str(), t.side), ("45465842999", Side::Buy));
        assert_eq!(t.ts_exchange_us, 1_624_493_681_030_000);
        let book = r#"{"type":"l2_updates","symbol":"FILUSD","changes":[["buy","58.49","1"],["sell","58.51","0"]]}"#;
        let Frame::Book(b) = parse(&s, book, 1).unwrap() else { panic!() };
        assert_eq!((b.bids.len(), b.asks.len(), b.snapshot), (1, 1, false));
        assert!(b.asks[0].qty.is_zero());
        let first = r#"{"type":"l2_updates","symbol":"FILUSD","changes":[["buy","58.49","1"]],"trades":[]}"#;
        let Frame::Book(b) = parse(&s, first, 1).unwrap() else { panic!() };
        assert!(b.snapshot, "the message with the earlier trades is the whole book");
        assert_eq!(parse(&s, r#"{"type":"heartbeat","timestamp":1}"#, 0).unwrap(), Frame::Control);
        let refused = r#"{"type":"error","reason":"InvalidJson","message":"subscription is malformed"}"#;
        assert_eq!(parse(&s, refused, 0).unwrap_err().reason, "refused");
        let other = r#"{"type":"trade","symbol":"BTCUSD","event_id":1,"timestamp":1,"price":"1","quantity":"1","side":"buy"}"#;
        assert_eq!(parse(&s, other, 0).unwrap_err().reason, "unknown_symbol");
    }
}
