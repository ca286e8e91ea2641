//! Bitstamp WebSocket v2 frames and REST order books to normalized events.

use moat_common_types::model::{Level, Trade};
use moat_common_types::{Instrument, Side};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::venues::scan::{Scan, once};
use crate::venues::{Instruments, Reject, json, price, qty, text_levels};

/// A diff or a REST snapshot of one pair's book.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BookMessage {
    pub instrument: Instrument,
    pub bids: Vec<Level>,
    pub asks: Vec<Level>,
    /// The venue's time of the book, in µs: what joins diffs to a snapshot.
    pub microtimestamp: i64,
}

/// What one frame carried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    Trade(Trade),
    Diff(BookMessage),
    /// Bitstamp asks its clients to reconnect (maintenance).
    Reconnect,
    /// Subscription answers, heartbeats.
    Control,
}

#[derive(Deserialize)]
struct Envelope<'a> {
    event: &'a str,
    #[serde(default)]
    channel: &'a str,
    #[serde(borrow)]
    data: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct RawTrade<'a> {
    id: u64,
    amount_str: &'a str,
    price_str: &'a str,
    #[serde(rename = "type")]
    side: u8,
    microtimestamp: &'a str,
}

#[derive(Deserialize)]
struct RawBook<'a> {
    microtimestamp: &'a str,
    #[serde(borrow)]
    bids: Vec<[&'a str; 2]>,
    #[serde(borrow)]
    asks: Vec<[&'a str; 2]>,
}

/// A frame whose data is a trade or a book change, read in one pass: the
/// fields of both, each optional.
#[derive(Deserialize, Debug, PartialEq)]
struct OnePass<'a> {
    event: &'a str,
    #[serde(default)]
    channel: &'a str,
    #[serde(borrow)]
    data: OnePassData<'a>,
}

#[derive(Deserialize, Debug, PartialEq)]
struct OnePassData<'a> {
    #[serde(default)]
    id: Option<u64>,
    #[serde(default)]
    amount_str: Option<&'a str>,
    #[serde(default)]
    price_str: Option<&'a str>,
    #[serde(rename = "type", default)]
    side: Option<u8>,
    microtimestamp: &'a str,
    #[serde(borrow, default)]
    bids: Option<Vec<[&'a str; 2]>>,
    #[serde(borrow, default)]
    asks: Option<Vec<[&'a str; 2]>>,
}

/// [`OnePass`] read by [`Scan`]; `None` leaves the frame to serde.
fn scan_one_pass(frame: &str) -> Option<OnePass<'_>> {
    book_change(frame).or_else(|| scan_object(frame))
}

/// A book change in the layout Bitstamp writes every one of them (most of
/// what the venue sends), its keys matched in that order; `None` for any
/// other layout, which [`scan_object`] reads.
fn book_change(frame: &str) -> Option<OnePass<'_>> {
    let mut scan = Scan::new(frame);
    scan.after(r#"{"data":{"timestamp":"#, Scan::str)?;
    let microtimestamp = scan.after(r#","microtimestamp":"#, Scan::str)?;
    let bids = scan.after(r#","bids":"#, Scan::tuples)?;
    let asks = scan.after(r#","asks":"#, Scan::tuples)?;
    let channel = scan.after(r#"},"channel":"#, Scan::str)?;
    scan.literal(r#","event":"data"}"#)?;
    scan.end()?;
    Some(OnePass {
        event: "data",
        channel,
        data: OnePassData {
            id: None,
            amount_str: None,
            price_str: None,
            side: None,
            microtimestamp,
            bids: Some(bids),
            asks: Some(asks),
        },
    })
}

/// [`OnePass`] read by [`Scan`] whatever the order of its keys.
fn scan_object(frame: &str) -> Option<OnePass<'_>> {
    let mut scan = Scan::new(frame);
    let (mut event, mut channel, mut data) = (None, None, None);
    scan.object(|scan, key| match key {
        "data" => once(&mut data, scan_data(scan)),
        "channel" => once(&mut channel, scan.str()),
        "event" => once(&mut event, scan.str()),
        _ => scan.skip(),
    })?;
    scan.end()?;
    Some(OnePass {
        event: event?,
        channel: channel.unwrap_or_default(),
        data: data?,
    })
}

fn scan_data<'a>(scan: &mut Scan<'a>) -> Option<OnePassData<'a>> {
    let (mut id, mut amount, mut price, mut side, mut micros) = (None, None, None, None, None);
    let (mut bids, mut asks) = (None, None);
    scan.object(|scan, key| match key {
        "id" => once(&mut id, scan.u64()),
        "amount_str" => once(&mut amount, scan.str()),
        "price_str" => once(&mut price, scan.str()),
        "type" => once(&mut side, scan.u64().and_then(|t| u8::try_from(t).ok())),
        "microtimestamp" => once(&mut micros, scan.str()),
        "bids" => once(&mut bids, scan.tuples()),
        "asks" => once(&mut asks, scan.tuples()),
        _ => scan.skip(),
    })?;
    Some(OnePassData {
        id,
        amount_str: amount,
        price_str: price,
        side,
        microtimestamp: micros?,
        bids,
        asks,
    })
}

/// Reads a trade or a book change in one pass; `None` for any other frame
/// (or a malformed one), which the full parse then reads.
fn one_pass(symbols: &Instruments, frame: &str, ts_recv_us: i64) -> Option<Result<Frame, Reject>> {
    let m = match scan_one_pass(frame) {
        Some(m) => m,
        None => serde_json::from_str(frame).ok()?,
    };
    let d = m.data;
    match m.event {
        "trade" => {
            let raw = RawTrade {
                id: d.id?,
                amount_str: d.amount_str?,
                price_str: d.price_str?,
                side: d.side?,
                microtimestamp: d.microtimestamp,
            };
            Some(trade(symbols, m.channel, &raw, ts_recv_us))
        }
        "data" => {
            let raw = RawBook {
                microtimestamp: d.microtimestamp,
                bids: d.bids?,
                asks: d.asks?,
            };
            Some(pair(symbols, m.channel, "diff_order_book_").and_then(|i| book(i, &raw)).map(Frame::Diff))
        }
        _ => None,
    }
}

fn trade(symbols: &Instruments, channel: &str, t: &RawTrade<'_>, ts_recv_us: i64) -> Result<Frame, Reject> {
    Ok(Frame::Trade(Trade {
        instrument: pair(symbols, channel, "live_trades_")?,
        trade_id: t.id.to_string(),
        price: price("price_str", t.price_str)?,
        qty: qty("amount_str", t.amount_str)?,
        side: match t.side {
            0 => Side::Buy,
            1 => Side::Sell,
            other => return Err(Reject::new("side", format!("type {other} is neither 0 (buy) nor 1 (sell)"))),
        },
        ts_exchange_us: micros(t.microtimestamp)?,
        ts_recv_us,
    }))
}

#[derive(Deserialize)]
struct RawError {
    #[serde(default)]
    message: Option<String>,
}

fn micros(value: &str) -> Result<i64, Reject> {
    value
        .parse()
        .map_err(|_| Reject::new("number", format!("microtimestamp {value:?}")))
}


fn book(instrument: Instrument, raw: &RawBook<'_>) -> Result<BookMessage, Reject> {
    Ok(BookMessage {
        instrument,
        bids: text_levels("bids", &raw.bids)?,
        asks: text_levels("asks", &raw.asks)?,
        microtimestamp: micros(raw.microtimestamp)?,
    })
}

/// The pair a channel is about: `diff_order_book_btcusd` → `BTCUSD`.
fn pair(symbols: &Instruments, channel: &str, prefix: &str) -> Result<Instrument, Reject> {
    let pair = channel
        .strip_prefix(prefix)
        .ok_or_else(|| Reject::new("unknown_frame", format!("channel {channel}")))?;
    symbols.instrument(&pair.to_ascii_uppercase())
}

/// Parses one text frame received at `ts_recv_us`.
pub fn parse(symbols: &Instruments, frame: &str, ts_recv_us: i64) -> Result<Frame, Reject> {
    if let Some(parsed) = one_pass(symbols, frame, ts_recv_us) {
        return parsed;
    }
    let envelope: Envelope<'_> = json(frame)?;
    let data = || {
        envelope
            .data
            .map(RawValue::get)
            .ok_or_else(|| Reject::new("missing_field", format!("{}: no data", envelope.event)))
    };
    match envelope.event {
        "trade" => {
            let t: RawTrade<'_> = json(data()?)?;
            trade(symbols, envelope.channel, &t, ts_recv_us)
        }
        "data" => {
            let raw: RawBook<'_> = json(data()?)?;
            Ok(Frame::Diff(book(pair(symbols, envelope.channel, "diff_order_book_")?, &raw)?))
        }
        "bts:request_reconnect" => Ok(Frame::Reconnect),
        "bts:error" => {
            let e: RawError = json(data()?)?;
            Err(Reject::new(
                "refused",
                e.message.unwrap_or_else(|| "the venue refused a request".into()),
            ))
        }
        _ => Ok(Frame::Control),
    }
}

/// A REST `order_book` answer for `pair`.
pub fn parse_snapshot(symbols: &Instruments, pair: &str, body: &str) -> Result<BookMessage, Reject> {
    let raw: RawBook<'_> = json(body)?;
    book(symbols.instrument(pair)?, &raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// On every recorded frame, what the scanner reads is what serde
    /// reads; and it reads the trades and diffs (else it is no faster).
    #[test]
    fn scanned_frames_read_as_serde_reads_them() {
        let frames = crate::venues::scan::recorded_frames("BITSTAMP.ws.1.0");
        let mut scanned = 0;
        for frame in &frames {
            let serde = serde_json::from_str::<OnePass<'_>>(frame).ok();
            match scan_one_pass(frame) {
                Some(m) => {
                    assert_eq!(Some(&m), serde.as_ref(), "{frame}");
                    scanned += usize::from(matches!(m.event, "data" | "trade"));
                }
                None => assert!(
                    !serde.is_some_and(|m| matches!(m.event, "data" | "trade")),
                    "the scanner left a usual frame to serde: {frame}"
                ),
            }
        }
        assert!(frames.is_empty() || scanned > 700, "{scanned} of {} scanned", frames.len());
        // Book changes are read by their layout, as the rest reads them.
        let mut changes = 0;
        for frame in &frames {
            if let Some(m) = book_change(frame) {
                assert_eq!(Some(m), scan_object(frame), "{frame}");
                changes += 1;
            }
        }
        assert!(frames.is_empty() || changes > 600, "{changes} book changes read by their layout");
    }

    #[test]
    fn trades_diffs_and_snapshots_read_as_the_venue_documents() {
        let s = super::super::symbols("bitstamp", &["ethusd"]).all_known().unwrap();
        let trade = r#"{"data":{"id":216000477,"timestamp":"1641343699","amount":0.0792,"amount_str":"0.07920000","price":3805.44,"price_str":"3805.44","type":0,"microtimestamp":"1641343699596000","buy_order_id":1,"sell_order_id":2},"channel":"live_trades_ethusd","event":"trade"}"#;
        let Frame::Trade(t) = parse(&s, trade, 1).unwrap() else { panic!() };
        assert_eq!((t.trade_id.as_str(), t.side), ("216000477", Side::Buy));
        assert_eq!(t.instrument.symbol, "ETH-USD");
        assert_eq!(t.qty.to_string(), "0.07920000");
        let diff = r#"{"data":{"timestamp":"1641343691","microtimestamp":"1641343691244908","bids":[["3802.9","1"]],"asks":[["3803.1","0"]]},"channel":"diff_order_book_ethusd","event":"data"}"#;
        let Frame::Diff(d) = parse(&s, diff, 1).unwrap() else { panic!() };
        assert_eq!(d.microtimestamp, 1_641_343_691_244_908);
        assert_eq!((d.bids.len(), d.asks.len()), (1, 1));
        let snapshot = r#"{"timestamp": "1641343695", "microtimestamp": "1641343695681418", "bids": [["3802.90", "0.6"]], "asks": [["3803.00", "1"]]}"#;
        assert_eq!(parse_snapshot(&s, "ETHUSD", snapshot).unwrap().microtimestamp, 1_641_343_695_681_418);
        let reconnect = r#"{"event":"bts:request_reconnect","channel":"","data":""}"#;
        assert_eq!(parse(&s, reconnect, 0).unwrap(), Frame::Reconnect);
        let ok = r#"{"event":"bts:subscription_succeeded","channel":"diff_order_book_ethusd","data":{}}"#;
        assert_eq!(parse(&s, ok, 0).unwrap(), Frame::Control);
        let other = r#"{"data":{"microtimestamp":"1","bids":[],"asks":[]},"channel":"diff_order_book_btcusd","event":"data"}"#;
        assert_eq!(parse(&s, other, 0).unwrap_err().reason, "unknown_symbol");
    }
}
