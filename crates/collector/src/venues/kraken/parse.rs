//! Kraken WebSocket v1 frames to normalized events. Channel messages are
//! arrays, `[channelID, data…, channelName, pair]`; events (heartbeats,
//! subscription answers) are objects.

use moat_common_types::model::{Bbo, Level, Trade};
use moat_common_types::{Instrument, Side};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::venues::{Instruments, Reject, json, price, qty};

/// A `book-N` message, ready for [`super::book::KrakenBook`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BookMessage {
    pub instrument: Instrument,
    pub snapshot: bool,
    pub bids: Vec<Level>,
    pub asks: Vec<Level>,
    /// The CRC32 of the top 10 levels after this update (updates only).
    pub checksum: Option<u32>,
    /// The subscribed depth (`book-1000`): levels beyond it are dropped.
    pub depth: usize,
    /// The newest level timestamp in the message.
    pub ts_exchange_us: i64,
}

/// What one frame carried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    Trades(Vec<Trade>),
    Bbo(Bbo),
    Book(BookMessage),
    /// Heartbeats, status and subscription answers, channels moat does not keep.
    Control,
}

#[derive(Deserialize)]
struct Event<'a> {
    event: &'a str,
    #[serde(default)]
    status: Option<&'a str>,
    #[serde(default, rename = "errorMessage")]
    error_message: Option<String>,
    #[serde(default)]
    pair: Option<&'a str>,
}

/// A level: `[price, volume, timestamp]`, and `"r"` on a republished one
/// (read without a vector of its own).
struct RawLevel<'a> {
    price: &'a str,
    volume: &'a str,
    time: &'a str,
}

impl<'de: 'a, 'a> Deserialize<'de> for RawLevel<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for Visitor<'a> {
            type Value = RawLevel<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a level [price, volume, timestamp, …]")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut next = |i| {
                    seq.next_element::<&'de str>()?
                        .ok_or_else(|| serde::de::Error::invalid_length(i, &self))
                };
                let (price, volume, time) = (next(0)?, next(1)?, next(2)?);
                while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
                Ok(RawLevel { price, volume, time })
            }
        }
        deserializer.deserialize_seq(Visitor(std::marker::PhantomData))
    }
}

#[derive(Deserialize)]
struct RawBook<'a> {
    #[serde(borrow, default, rename = "as")]
    snapshot_asks: Option<Vec<RawLevel<'a>>>,
    #[serde(borrow, default, rename = "bs")]
    snapshot_bids: Option<Vec<RawLevel<'a>>>,
    #[serde(borrow, default)]
    a: Option<Vec<RawLevel<'a>>>,
    #[serde(borrow, default)]
    b: Option<Vec<RawLevel<'a>>>,
    #[serde(default)]
    c: Option<&'a str>,
}

/// `[price, wholeLotVolume, lotVolume]` of the ticker's best bid or ask.
#[derive(Deserialize)]
struct RawTop<'a>(&'a str, serde::de::IgnoredAny, &'a str);

#[derive(Deserialize)]
struct RawTicker<'a> {
    #[serde(borrow)]
    a: RawTop<'a>,
    #[serde(borrow)]
    b: RawTop<'a>,
}

/// Kraken's `seconds.micros` timestamps in µs.
fn micros(field: &'static str, value: &str) -> Result<i64, Reject> {
    let bad = || Reject::new("number", format!("{field}: '{value}' is not a timestamp in seconds"));
    let (seconds, fraction) = value.split_once('.').unwrap_or((value, ""));
    let seconds: i64 = seconds.parse().map_err(|_| bad())?;
    if fraction.len() > 9 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    // The first six digits, padded with zeros: microseconds.
    let micros = fraction
        .bytes()
        .chain(std::iter::repeat(b'0'))
        .take(6)
        .fold(0i64, |n, digit| n * 10 + i64::from(digit - b'0'));
    seconds
        .checked_mul(1_000_000)
        .and_then(|s| s.checked_add(micros))
        .ok_or_else(bad)
}

fn levels(side: &'static str, raw: &[RawLevel<'_>], newest: &mut i64) -> Result<Vec<Level>, Reject> {
    raw.iter()
        .map(|level| {
            *newest = (*newest).max(micros("level timestamp", level.time)?);
            Ok(Level {
                price: price(side, level.price)?,
                qty: qty(side, level.volume)?,
            })
        })
        .collect()
}

/// Parses one text frame received at `ts_recv_us`.
pub fn parse(symbols: &Instruments, frame: &str, ts_recv_us: i64) -> Result<Frame, Reject> {
    if frame.starts_with('{') {
        let event: Event<'_> = json(frame)?;
        return match (event.event, event.status) {
            ("subscriptionStatus", Some("error")) | ("error", _) => Err(Reject::new(
                "refused",
                format!(
                    "{}: {}",
                    event.pair.unwrap_or("request"),
                    event.error_message.unwrap_or_else(|| "refused".into())
                ),
            )),
            _ => Ok(Frame::Control),
        };
    }
    let parts: Vec<&RawValue> = json(frame)?;
    let [_, data @ .., channel, pair] = parts.as_slice() else {
        return Err(Reject::new("unknown_frame", "a channel message has no data"));
    };
    let channel: &str = json(channel.get())?;
    let pair: &str = json(pair.get())?;
    if data.is_empty() {
        return Err(Reject::new("unknown_frame", format!("{channel}: no data")));
    }
    let instrument = || symbols.instrument(pair);
    match channel {
        "trade" => {
            let raw: Vec<Vec<&str>> = json(data[0].get())?;
            let instrument = instrument()?;
            let trades = raw
                .iter()
                .enumerate()
                .map(|(i, t)| {
                    let [p, v, time, side, ..] = t.as_slice() else {
                        return Err(Reject::new(
                            "missing_field",
                            "a trade is [price, volume, time, side, …]",
                        ));
                    };
                    let side = match *side {
                        "b" => Side::Buy,
                        "s" => Side::Sell,
                        other => return Err(Reject::new("side", format!("side {other:?} is neither b nor s"))),
                    };
                    Ok(Trade {
                        instrument: instrument.clone(),
                        // v1 trades carry no id: the time (µs, unique per
                        // pair in practice) and the place in the message
                        // make one that a replay gives again.
                        trade_id: format!("{time}-{i}"),
                        price: price("price", p)?,
                        qty: qty("volume", v)?,
                        side,
                        ts_exchange_us: micros("time", time)?,
                        ts_recv_us,
                    })
                })
                .collect::<Result<_, Reject>>()?;
            Ok(Frame::Trades(trades))
        }
        "ticker" => {
            let raw: RawTicker<'_> = json(data[0].get())?;
            Ok(Frame::Bbo(Bbo {
                instrument: instrument()?,
                sequence: 0,
                bid: Level {
                    price: price("b", raw.b.0)?,
                    qty: qty("b", raw.b.2)?,
                },
                ask: Level {
                    price: price("a", raw.a.0)?,
                    qty: qty("a", raw.a.2)?,
                },
                ts_exchange_us: ts_recv_us,
                ts_recv_us,
            }))
        }
        _ if channel.starts_with("book-") => {
            let depth = channel["book-".len()..]
                .parse()
                .map_err(|_| Reject::new("unknown_frame", format!("channel {channel}")))?;
            let (mut bids, mut asks, mut checksum, mut snapshot) = (Vec::new(), Vec::new(), None, false);
            let mut newest = 0;
            // An update may come as two objects, asks then bids.
            for part in data {
                let raw: RawBook<'_> = json(part.get())?;
                if let (Some(a), Some(b)) = (&raw.snapshot_asks, &raw.snapshot_bids) {
                    snapshot = true;
                    asks.extend(levels("as", a, &mut newest)?);
                    bids.extend(levels("bs", b, &mut newest)?);
                }
                if let Some(a) = &raw.a {
                    asks.extend(levels("a", a, &mut newest)?);
                }
                if let Some(b) = &raw.b {
                    bids.extend(levels("b", b, &mut newest)?);
                }
                if let Some(c) = raw.c {
                    checksum = Some(
                        c.parse()
                            .map_err(|_| Reject::new("number", format!("checksum {c:?}")))?,
                    );
                }
            }
            Ok(Frame::Book(BookMessage {
                instrument: instrument()?,
                snapshot,
                bids,
                asks,
                checksum,
                depth,
                ts_exchange_us: if newest > 0 { newest } else { ts_recv_us },
            }))
        }
        _ => Ok(Frame::Control),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs() -> Instruments {
        super::super::symbols("kraken", &["XMR/USD", "SC/EUR"])
            .all_known()
            .unwrap()
    }

    #[test]
    fn trades_tickers_and_books_read_as_the_venue_documents() {
        let s = pairs();
        let trade = r#"[993,[["354.11000000","0.89594024","1618678142.557535","s","l",""],["354.12","1","1618678142.5575","b","m",""]],"trade","XMR/USD"]"#;
        let Frame::Trades(t) = parse(&s, trade, 1).unwrap() else {
            panic!()
        };
        assert_eq!(t[0].instrument.symbol, "XMR-USD");
        assert_eq!((t[0].side, t[1].side), (Side::Sell, Side::Buy));
        assert_eq!(t[0].ts_exchange_us, 1_618_678_142_557_535);
        assert_eq!(t[1].ts_exchange_us, 1_618_678_142_557_500);
        assert_ne!(t[0].trade_id, t[1].trade_id);
        let ticker = r#"[1668,{"a":["13.253900",35,"35.72892241"],"b":["13.232900",185,"185.18432037"],"c":["13.2539","3.7"]},"ticker","XMR/USD"]"#;
        let Frame::Bbo(b) = parse(&s, ticker, 1).unwrap() else {
            panic!()
        };
        assert_eq!(b.ask.qty.to_string(), "35.72892241");
        let update = r#"[1920,{"a":[["0.042990","364630.28272081","1618678145.920470"]]},{"b":[["0.042990","0.00000000","1618678145.920708"]],"c":"4105471083"},"book-1000","SC/EUR"]"#;
        let Frame::Book(book) = parse(&s, update, 1).unwrap() else {
            panic!()
        };
        assert!(!book.snapshot);
        assert_eq!((book.asks.len(), book.bids.len(), book.depth), (1, 1, 1000));
        assert_eq!(book.checksum, Some(4_105_471_083));
        assert_eq!(book.ts_exchange_us, 1_618_678_145_920_708);
    }

    #[test]
    fn events_refusals_and_unknown_pairs() {
        let s = pairs();
        assert_eq!(parse(&s, r#"{"event":"heartbeat"}"#, 0).unwrap(), Frame::Control);
        let refused = r#"{"errorMessage":"Currency pair not supported","event":"subscriptionStatus","pair":"XBT/XYZ","status":"error","subscription":{"name":"trade"}}"#;
        let reject = parse(&s, refused, 0).unwrap_err();
        assert_eq!(reject.reason, "refused");
        assert!(reject.detail.contains("XBT/XYZ") && reject.detail.contains("not supported"));
        let other = r#"[1,[["1","1","1.0","b","l",""]],"trade","ETH/USD"]"#;
        assert_eq!(parse(&s, other, 0).unwrap_err().reason, "unknown_symbol");
        assert_eq!(parse(&s, "[1]", 0).unwrap_err().reason, "unknown_frame");
        let bad_time = r#"[1,[["1","1","yesterday","b","l",""]],"trade","XMR/USD"]"#;
        assert_eq!(parse(&s, bad_time, 0).unwrap_err().reason, "number");
    }
}
