//! Coinbase frames to normalized events. Strings are borrowed from the
//! frame and prices parsed straight into exact decimals.

use moat_common_types::model::{Bbo, Level, Trade};
use moat_common_types::{Instrument, Side};
use serde::Deserialize;

use super::Symbols;
use crate::venues::time::rfc3339_us;
use crate::venues::scan::{Scan, once};
use crate::venues::{text_levels, Reject, json, price, qty};

/// A `snapshot` or `l2update` in venue terms, ready for [`super::book::CoinbaseBook`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BookMessage {
    pub instrument: Instrument,
    pub snapshot: bool,
    pub bids: Vec<Level>,
    pub asks: Vec<Level>,
    pub ts_exchange_us: i64,
}

/// What one frame carried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    Trade(Trade),
    Bbo(Bbo),
    Book(BookMessage),
    /// A product is alive though quiet (`heartbeat`).
    Heartbeat(Instrument),
    /// Subscription answers and tickers without sizes.
    Control,
}

#[derive(Deserialize)]
struct Head<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    reason: Option<String>,
}

#[derive(Deserialize, Debug, PartialEq)]
struct Match<'a> {
    product_id: &'a str,
    trade_id: u64,
    price: &'a str,
    size: &'a str,
    /// The maker's side: the taker took the other one.
    side: &'a str,
    time: &'a str,
}

#[derive(Deserialize, Debug, PartialEq)]
struct Ticker<'a> {
    product_id: &'a str,
    #[serde(default)]
    sequence: Option<u64>,
    best_bid: &'a str,
    best_ask: &'a str,
    #[serde(default)]
    best_bid_size: Option<&'a str>,
    #[serde(default)]
    best_ask_size: Option<&'a str>,
    #[serde(default)]
    time: Option<&'a str>,
}

#[derive(Deserialize)]
struct Snapshot<'a> {
    product_id: &'a str,
    #[serde(borrow)]
    bids: Vec<[&'a str; 2]>,
    #[serde(borrow)]
    asks: Vec<[&'a str; 2]>,
    #[serde(default)]
    time: Option<&'a str>,
}

#[derive(Deserialize)]
struct Update<'a> {
    product_id: &'a str,
    #[serde(borrow)]
    changes: Vec<[&'a str; 3]>,
    time: &'a str,
}

#[derive(Deserialize)]
struct Heartbeat<'a> {
    product_id: &'a str,
}

// The frames a feed sends most, read by [`Scan`]; `None` leaves the frame
// to serde (the structs above), which gives the answer.

fn scan_match(frame: &str) -> Option<Match<'_>> {
    let mut scan = Scan::new(frame);
    let (mut product_id, mut trade_id, mut price, mut size, mut side, mut time) = (None, None, None, None, None, None);
    scan.object(|scan, key| match key {
        "product_id" => once(&mut product_id, scan.str()),
        "trade_id" => once(&mut trade_id, scan.u64()),
        "price" => once(&mut price, scan.str()),
        "size" => once(&mut size, scan.str()),
        "side" => once(&mut side, scan.str()),
        "time" => once(&mut time, scan.str()),
        _ => scan.skip(),
    })?;
    scan.end()?;
    Some(Match {
        product_id: product_id?,
        trade_id: trade_id?,
        price: price?,
        size: size?,
        side: side?,
        time: time?,
    })
}

/// An `l2update` read by [`Scan`] straight into levels; `None` for
/// anything [`update`] has to answer (a refusal included).
/// The frame's `type` has been read already, up to byte `at`.
fn scan_update(symbols: &Symbols, frame: &str, at: usize) -> Option<BookMessage> {
    let mut scan = Scan::from(frame, at);
    let (mut product_id, mut changes, mut time) = (None, None, None);
    scan.rest_of_object(|scan, key| match key {
        "product_id" => once(&mut product_id, scan.str()),
        "changes" => {
            let (mut bids, mut asks) = (Vec::new(), Vec::new());
            scan.array(|scan| {
                let [side, p, q] = scan.tuple()?;
                let level = Level {
                    price: price("price", p).ok()?,
                    qty: qty("size", q).ok()?,
                };
                match side {
                    "buy" => bids.push(level),
                    "sell" => asks.push(level),
                    _ => return None,
                }
                Some(())
            })?;
            once(&mut changes, Some((bids, asks)))
        }
        "time" => once(&mut time, scan.str()),
        _ => scan.skip(),
    })?;
    scan.end()?;
    let (bids, asks) = changes?;
    Some(BookMessage {
        instrument: symbols.get(product_id?)?.clone(),
        snapshot: false,
        bids,
        asks,
        ts_exchange_us: rfc3339_us(time?).ok()?,
    })
}

/// An `l2update` read by serde, with the reason of a refusal.
fn update(symbols: &Symbols, frame: &str) -> Result<BookMessage, Reject> {
    let u: Update<'_> = json(frame)?;
    let (mut bids, mut asks) = (Vec::new(), Vec::new());
    for [side, p, q] in &u.changes {
        let level = Level {
            price: price("price", p)?,
            qty: qty("size", q)?,
        };
        match *side {
            "buy" => bids.push(level),
            "sell" => asks.push(level),
            other => return Err(Reject::new("json", format!("change side '{other}'"))),
        }
    }
    Ok(BookMessage {
        instrument: symbols.instrument(u.product_id)?,
        snapshot: false,
        bids,
        asks,
        ts_exchange_us: rfc3339_us(u.time)?,
    })
}

/// A `snapshot` read by [`Scan`] straight into levels; `None` for
/// anything [`snapshot`] has to answer (a refusal included).
fn scan_snapshot(symbols: &Symbols, frame: &str, ts_recv_us: i64) -> Option<BookMessage> {
    let mut scan = Scan::new(frame);
    let (mut product_id, mut bids, mut asks, mut time) = (None, None, None, None);
    scan.object(|scan, key| match key {
        "product_id" => once(&mut product_id, scan.str()),
        "bids" => once(&mut bids, scan.levels("bids")),
        "asks" => once(&mut asks, scan.levels("asks")),
        "time" => once(&mut time, scan.str()),
        _ => scan.skip(),
    })?;
    scan.end()?;
    Some(BookMessage {
        instrument: symbols.get(product_id?)?.clone(),
        snapshot: true,
        bids: bids?,
        asks: asks?,
        ts_exchange_us: match time {
            Some(time) => rfc3339_us(time).ok()?,
            None => ts_recv_us,
        },
    })
}

/// A `snapshot` read by serde, with the reason of a refusal.
fn snapshot(symbols: &Symbols, frame: &str, ts_recv_us: i64) -> Result<BookMessage, Reject> {
    let s: Snapshot<'_> = json(frame)?;
    Ok(BookMessage {
        instrument: symbols.instrument(s.product_id)?,
        snapshot: true,
        bids: text_levels("bids", &s.bids)?,
        asks: text_levels("asks", &s.asks)?,
        ts_exchange_us: s.time.map(rfc3339_us).transpose()?.unwrap_or(ts_recv_us),
    })
}

fn scan_ticker(frame: &str) -> Option<Ticker<'_>> {
    let mut scan = Scan::new(frame);
    let (mut product_id, mut sequence, mut best_bid, mut best_ask) = (None, None, None, None);
    let (mut best_bid_size, mut best_ask_size, mut time) = (None, None, None);
    scan.object(|scan, key| match key {
        "product_id" => once(&mut product_id, scan.str()),
        "sequence" => once(&mut sequence, scan.u64()),
        "best_bid" => once(&mut best_bid, scan.str()),
        "best_ask" => once(&mut best_ask, scan.str()),
        "best_bid_size" => once(&mut best_bid_size, scan.str()),
        "best_ask_size" => once(&mut best_ask_size, scan.str()),
        "time" => once(&mut time, scan.str()),
        _ => scan.skip(),
    })?;
    scan.end()?;
    Some(Ticker {
        product_id: product_id?,
        sequence,
        best_bid: best_bid?,
        best_ask: best_ask?,
        best_bid_size,
        best_ask_size,
        time,
    })
}


/// Parses one text frame received at `ts_recv_us`.
pub fn parse(symbols: &Symbols, frame: &str, ts_recv_us: i64) -> Result<Frame, Reject> {
    // Coinbase writes `type` first: read it from there rather than parse
    // the whole frame once for it and again for its fields.
    const TYPE: &str = "{\"type\":\"";
    let kind = match frame.strip_prefix(TYPE).and_then(|rest| rest.split_once('"')) {
        Some((kind, _)) if kind != "error" && !kind.contains('\\') => kind,
        _ => json::<Head<'_>>(frame)?.kind,
    };
    // Where the members after `type` start, when it came first.
    let after_type = frame.starts_with(TYPE).then(|| TYPE.len() + kind.len() + 1);
    match kind {
        "match" | "last_match" => {
            let m = match scan_match(frame) {
                Some(m) => m,
                None => json::<Match<'_>>(frame)?,
            };
            Ok(Frame::Trade(Trade {
                instrument: symbols.instrument(m.product_id)?,
                trade_id: m.trade_id.to_string(),
                price: price("price", m.price)?,
                qty: qty("size", m.size)?,
                side: match m.side {
                    "buy" => Side::Sell,
                    "sell" => Side::Buy,
                    other => return Err(Reject::new("json", format!("side '{other}'"))),
                },
                ts_exchange_us: rfc3339_us(m.time)?,
                ts_recv_us,
            }))
        }
        "ticker" => {
            let t = match scan_ticker(frame) {
                Some(t) => t,
                None => json::<Ticker<'_>>(frame)?,
            };
            let instrument = symbols.instrument(t.product_id)?;
            let (Some(bid_size), Some(ask_size)) = (t.best_bid_size, t.best_ask_size) else {
                // The older feed sends no sizes: trades and the book carry it.
                return Ok(Frame::Control);
            };
            let ts = t.time.map(rfc3339_us).transpose()?.unwrap_or(ts_recv_us);
            Ok(Frame::Bbo(Bbo {
                instrument,
                sequence: t.sequence.unwrap_or(ts as u64),
                bid: Level {
                    price: price("best_bid", t.best_bid)?,
                    qty: qty("best_bid_size", bid_size)?,
                },
                ask: Level {
                    price: price("best_ask", t.best_ask)?,
                    qty: qty("best_ask_size", ask_size)?,
                },
                ts_exchange_us: ts,
                ts_recv_us,
            }))
        }
        "snapshot" => match scan_snapshot(symbols, frame, ts_recv_us) {
            Some(message) => Ok(Frame::Book(message)),
            None => snapshot(symbols, frame, ts_recv_us).map(Frame::Book),
        },
        "l2update" => match after_type.and_then(|at| scan_update(symbols, frame, at)) {
            Some(message) => Ok(Frame::Book(message)),
            None => update(symbols, frame).map(Frame::Book),
        },
        "heartbeat" => {
            let h: Heartbeat<'_> = json(frame)?;
            Ok(Frame::Heartbeat(symbols.instrument(h.product_id)?))
        }
        "error" => {
            let head: Head<'_> = json(frame)?;
            Err(Reject::new(
                "venue_error",
                format!(
                    "{}: {}",
                    head.message.unwrap_or_default(),
                    head.reason.unwrap_or_default()
                ),
            ))
        }
        _ => {
            json::<serde::de::IgnoredAny>(frame)?;
            Ok(Frame::Control)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// On every recorded frame, what the scanner reads is what serde
    /// reads; and the scanner reads the usual frames (else it is no faster).
    #[test]
    fn scanned_frames_read_as_serde_reads_them() {
        let frames = crate::venues::scan::recorded_frames("COINBASE.ws.28.0");
        let ids: Vec<String> = frames
            .iter()
            .filter_map(|f| serde_json::from_str::<serde_json::Value>(f).ok())
            .filter_map(|v| v["product_id"].as_str().map(str::to_owned))
            .collect();
        let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
        let symbols = crate::venues::coinbase::symbols("coinbase", &ids).all_known().unwrap();
        let mut scanned = 0;
        for frame in &frames {
            let read = if frame.starts_with("{\"type\":\"l2update\"") {
                scan_update(&symbols, frame, "{\"type\":\"l2update\"".len())
                    .map(|u| assert_eq!(Some(u), update(&symbols, frame).ok(), "{frame}"))
            } else if frame.starts_with("{\"type\":\"snapshot\"") {
                scan_snapshot(&symbols, frame, 7)
                    .map(|s| assert_eq!(Some(s), snapshot(&symbols, frame, 7).ok(), "{frame}"))
            } else if frame.starts_with("{\"type\":\"ticker\"") {
                scan_ticker(frame).map(|t| assert_eq!(Some(t), serde_json::from_str(frame).ok(), "{frame}"))
            } else if frame.starts_with("{\"type\":\"match\"") || frame.starts_with("{\"type\":\"last_match\"") {
                scan_match(frame).map(|m| assert_eq!(Some(m), serde_json::from_str(frame).ok(), "{frame}"))
            } else {
                continue;
            };
            assert!(read.is_some(), "the scanner left a usual frame to serde: {frame}");
            scanned += 1;
        }
        assert!(frames.is_empty() || scanned > 9900, "{scanned} frames scanned");
    }
    use crate::venues::coinbase::symbols;

    #[test]
    fn times_are_unix_microseconds() {
        assert_eq!(rfc3339_us("1970-01-01T00:00:00Z").unwrap(), 0);
        assert_eq!(
            rfc3339_us("2021-04-17T16:43:37.075687Z").unwrap(),
            1_618_677_817_075_687
        );
        assert_eq!(rfc3339_us("2024-02-29T12:34:56.5Z").unwrap(), 1_709_210_096_500_000);
        assert_eq!(
            rfc3339_us("2024-02-29T12:34:56.123456789Z").unwrap(),
            1_709_210_096_123_456
        );
        assert_eq!(rfc3339_us("2021-04-17 16:43:37Z").unwrap_err().reason, "number");
        assert!(rfc3339_us("2021-13-17T16:43:37Z").is_err());
    }

    #[test]
    fn bad_input_is_rejected_by_reason_and_taker_side_is_the_other() {
        let s = symbols("coinbase", &["BTC-USD"]).all_known().unwrap();
        let m = |px: &str, size: &str, product: &str| {
            format!(
                r#"{{"type":"match","trade_id":1,"price":"{px}","size":"{size}","side":"sell","product_id":"{product}","time":"2021-04-17T16:43:30.244075Z"}}"#
            )
        };
        let Frame::Trade(t) = parse(&s, &m("100.5", "2", "BTC-USD"), 0).unwrap() else {
            panic!("not a trade")
        };
        assert_eq!(t.side, Side::Buy, "a sell maker means a buying taker");
        assert_eq!(parse(&s, &m("0", "2", "BTC-USD"), 0).unwrap_err().reason, "price");
        assert_eq!(parse(&s, &m("1", "-2", "BTC-USD"), 0).unwrap_err().reason, "qty");
        assert_eq!(
            parse(&s, &m("1", "2", "ETH-USD"), 0).unwrap_err().reason,
            "unknown_symbol"
        );
        assert_eq!(parse(&s, "[1,2", 0).unwrap_err().reason, "json");
        assert_eq!(
            parse(
                &s,
                r#"{"type":"error","message":"Failed to subscribe","reason":"BAD-PAIR is not a valid product"}"#,
                0
            )
            .unwrap_err()
            .reason,
            "venue_error"
        );
    }
}
