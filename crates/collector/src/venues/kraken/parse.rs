//! Kraken WebSocket v1 frames to normalized events. Channel messages are
//! arrays, `[channelID, data…, channelName, pair]`; events (heartbeats,
//! subscription answers) are objects.

use moat_common_types::model::{Bbo, Level, Trade};
use moat_common_types::{Instrument, Side};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::venues::scan::{Scan, once};
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

#[derive(Deserialize, Default)]
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

/// One trade of a `trade` message: `[price, volume, time, side, …]`, the
/// `i`th of its message.
fn trade(
    instrument: &Instrument,
    i: usize,
    [p, v, time, side]: [&str; 4],
    ts_recv_us: i64,
) -> Result<Trade, Reject> {
    let side = match side {
        "b" => Side::Buy,
        "s" => Side::Sell,
        other => return Err(Reject::new("side", format!("side {other:?} is neither b nor s"))),
    };
    Ok(Trade {
        instrument: instrument.clone(),
        // v1 trades carry no id: the time (µs, unique per pair in
        // practice) and the place in the message make one that a replay
        // gives again.
        trade_id: format!("{time}-{i}"),
        price: price("price", p)?,
        qty: qty("volume", v)?,
        side,
        ts_exchange_us: micros("time", time)?,
        ts_recv_us,
    })
}

fn ticker(instrument: Instrument, raw: &RawTicker<'_>, ts_recv_us: i64) -> Result<Frame, Reject> {
    Ok(Frame::Bbo(Bbo {
        instrument,
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

/// A `book-N` message gathered from its parts (an update may come as two
/// objects, asks then bids).
#[derive(Default)]
struct Book {
    bids: Vec<Level>,
    asks: Vec<Level>,
    checksum: Option<u32>,
    snapshot: bool,
    newest: i64,
}

impl Book {
    fn add(&mut self, raw: &RawBook<'_>) -> Result<(), Reject> {
        if let (Some(a), Some(b)) = (&raw.snapshot_asks, &raw.snapshot_bids) {
            self.snapshot = true;
            self.asks.extend(levels("as", a, &mut self.newest)?);
            self.bids.extend(levels("bs", b, &mut self.newest)?);
        }
        if let Some(a) = &raw.a {
            self.asks.extend(levels("a", a, &mut self.newest)?);
        }
        if let Some(b) = &raw.b {
            self.bids.extend(levels("b", b, &mut self.newest)?);
        }
        if let Some(c) = raw.c {
            self.checksum = Some(
                c.parse()
                    .map_err(|_| Reject::new("number", format!("checksum {c:?}")))?,
            );
        }
        Ok(())
    }

    fn finish(self, instrument: Instrument, depth: usize, ts_recv_us: i64) -> Frame {
        Frame::Book(BookMessage {
            instrument,
            snapshot: self.snapshot,
            bids: self.bids,
            asks: self.asks,
            checksum: self.checksum,
            depth,
            ts_exchange_us: if self.newest > 0 { self.newest } else { ts_recv_us },
        })
    }
}

/// The depth a `book-N` channel names.
fn depth(channel: &str) -> Result<usize, Reject> {
    channel["book-".len()..]
        .parse()
        .map_err(|_| Reject::new("unknown_frame", format!("channel {channel}")))
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
    match scan_channel(symbols, frame, ts_recv_us) {
        Some(parsed) => Ok(parsed),
        None => parse_channel(symbols, frame, ts_recv_us),
    }
}

/// A channel message read by serde: the answer for every frame, a refusal
/// included.
fn parse_channel(symbols: &Instruments, frame: &str, ts_recv_us: i64) -> Result<Frame, Reject> {
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
                .map(|(i, t)| match t.as_slice() {
                    [p, v, time, side, ..] => trade(&instrument, i, [p, v, time, side], ts_recv_us),
                    _ => Err(Reject::new(
                        "missing_field",
                        "a trade is [price, volume, time, side, …]",
                    )),
                })
                .collect::<Result<_, Reject>>()?;
            Ok(Frame::Trades(trades))
        }
        "ticker" => {
            let raw: RawTicker<'_> = json(data[0].get())?;
            ticker(instrument()?, &raw, ts_recv_us)
        }
        _ if channel.starts_with("book-") => {
            let depth = depth(channel)?;
            let mut book = Book::default();
            for part in data {
                book.add(&json(part.get())?)?;
            }
            Ok(book.finish(instrument()?, depth, ts_recv_us))
        }
        _ => Ok(Frame::Control),
    }
}

/// What a channel message's data is read as.
enum Channel {
    Trade,
    Ticker,
    Book(usize),
}

/// A channel message read by [`Scan`] in one pass; `None` leaves it to
/// [`parse_channel`], which gives the answer (a refusal included).
fn scan_channel(symbols: &Instruments, frame: &str, ts_recv_us: i64) -> Option<Frame> {
    // The channel's name comes after the data it says how to read: it is
    // taken from the end of the frame first (and checked when reached).
    let (rest, pair) = frame.strip_suffix("\"]")?.rsplit_once('"')?;
    let (_, channel) = rest.strip_suffix("\",")?.rsplit_once('"')?;
    let kind = match channel {
        "trade" => Channel::Trade,
        "ticker" => Channel::Ticker,
        _ if channel.starts_with("book-") => Channel::Book(depth(channel).ok()?),
        _ => return None,
    };
    let instrument = symbols.get(pair)?;
    let (mut trades, mut bbo, mut book) = (None, None, Book::default());
    let (mut at, mut parts, mut names) = (0, 0, [None; 2]);
    let mut scan = Scan::new(frame);
    scan.array(|scan| {
        at += 1;
        if at == 1 {
            return scan.u64().map(drop);
        }
        if scan.at_string()? {
            let name = names.iter_mut().find(|n| n.is_none())?;
            *name = Some(scan.str()?);
            return Some(());
        }
        if names[0].is_some() {
            return None;
        }
        parts += 1;
        match kind {
            Channel::Trade if parts == 1 => once(&mut trades, scan_trades(scan, instrument, ts_recv_us)),
            Channel::Ticker if parts == 1 => {
                let raw = scan_ticker(scan)?;
                once(&mut bbo, ticker(instrument.clone(), &raw, ts_recv_us).ok())
            }
            Channel::Book(_) => book.add(&scan_book(scan)?).ok(),
            _ => scan.skip(),
        }
    })?;
    scan.end()?;
    if names != [Some(channel), Some(pair)] || parts == 0 {
        return None;
    }
    match kind {
        Channel::Trade => trades.map(Frame::Trades),
        Channel::Ticker => bbo,
        Channel::Book(depth) => Some(book.finish(instrument.clone(), depth, ts_recv_us)),
    }
}

fn scan_trades(scan: &mut Scan<'_>, instrument: &Instrument, ts_recv_us: i64) -> Option<Vec<Trade>> {
    let mut trades = Vec::new();
    scan.array(|scan| {
        let mut fields = [""; 4];
        let mut n = 0;
        scan.array(|scan| {
            let field = scan.str()?;
            if let Some(slot) = fields.get_mut(n) {
                *slot = field;
            }
            n += 1;
            Some(())
        })?;
        if n < 4 {
            return None;
        }
        trades.push(trade(instrument, trades.len(), fields, ts_recv_us).ok()?);
        Some(())
    })?;
    Some(trades)
}

fn scan_ticker<'a>(scan: &mut Scan<'a>) -> Option<RawTicker<'a>> {
    let (mut a, mut b) = (None, None);
    let top = |scan: &mut Scan<'a>| {
        let (mut price, mut volume, mut n) = (None, None, 0);
        scan.array(|scan| {
            n += 1;
            match n {
                1 => price = Some(scan.str()?),
                2 => scan.skip()?,
                3 => volume = Some(scan.str()?),
                _ => return None,
            }
            Some(())
        })?;
        Some(RawTop(price?, serde::de::IgnoredAny, volume?))
    };
    scan.object(|scan, key| match key {
        "a" => once(&mut a, top(scan)),
        "b" => once(&mut b, top(scan)),
        _ => scan.skip(),
    })?;
    Some(RawTicker { a: a?, b: b? })
}

fn scan_book<'a>(scan: &mut Scan<'a>) -> Option<RawBook<'a>> {
    let levels = |scan: &mut Scan<'a>| {
        let mut levels = Vec::new();
        scan.array(|scan| {
            let mut fields = [""; 3];
            let mut n = 0;
            scan.array(|scan| {
                match fields.get_mut(n) {
                    Some(slot) => *slot = scan.str()?,
                    None => scan.skip()?,
                }
                n += 1;
                Some(())
            })?;
            if n < 3 {
                return None;
            }
            let [price, volume, time] = fields;
            levels.push(RawLevel { price, volume, time });
            Some(())
        })?;
        Some(levels)
    };
    let mut raw = RawBook::default();
    scan.object(|scan, key| match key {
        "as" => once(&mut raw.snapshot_asks, levels(scan)),
        "bs" => once(&mut raw.snapshot_bids, levels(scan)),
        "a" => once(&mut raw.a, levels(scan)),
        "b" => once(&mut raw.b, levels(scan)),
        "c" => once(&mut raw.c, scan.str()),
        _ => scan.skip(),
    })?;
    Some(raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs() -> Instruments {
        super::super::symbols("kraken", &["XMR/USD", "SC/EUR"])
            .all_known()
            .unwrap()
    }

    /// On every recorded channel message, what the scanner reads is what
    /// serde reads; and it reads every trade, ticker and book message
    /// (else it is no faster).
    #[test]
    fn scanned_frames_read_as_serde_reads_them() {
        let frames: Vec<String> = ["KRAKEN.ws.48.0", "KRAKEN.ws.49.0", "KRAKEN.ws.50.0"]
            .into_iter()
            .flat_map(crate::venues::scan::recorded_frames)
            .collect();
        let pairs: Vec<String> = frames
            .iter()
            .filter_map(|f| serde_json::from_str::<Vec<serde_json::Value>>(f).ok())
            .filter_map(|parts| parts.last()?.as_str().map(str::to_owned))
            .collect();
        let pairs: Vec<&str> = pairs.iter().map(String::as_str).collect();
        let s = super::super::symbols("kraken", &pairs);
        let mut scanned = 0;
        for frame in frames.iter().filter(|f| f.starts_with('[')) {
            let serde = parse_channel(&s, frame, 1);
            match scan_channel(&s, frame, 1) {
                Some(f) => {
                    assert_eq!(Ok(&f), serde.as_ref(), "{frame}");
                    scanned += 1;
                }
                None => assert!(
                    !matches!(serde, Ok(Frame::Trades(_) | Frame::Bbo(_) | Frame::Book(_))),
                    "the scanner left a usual frame to serde: {frame}"
                ),
            }
        }
        assert!(frames.is_empty() || scanned > 4_000, "{scanned} of {} scanned", frames.len());
        // What serde refuses, the scanner leaves to it.
        for text in [
            r#"[1,[["1","1","1.0","b"]],"trade","XMR/USD","x"]"#,
            r#"[1,[["1","1","1.0"]],"trade","XMR/USD"]"#,
            r#"[1,[["1","1","1.0","b",2]],"trade","XMR/USD"]"#,
            r#"[1,"trade","XMR/USD"]"#,
            r#"[1,{"a":[["1","1","1.0"]],"a":[]},"book-10","XMR/USD"]"#,
            r#"[1,{"a":["1",1,"1","2"],"b":["1",1,"1"]},"ticker","XMR/USD"]"#,
            r#"[1,{"a":[["1","1","1.0"]]},"book-10","XMR/USD"] "#,
        ] {
            let s = pairs_of(&["XMR/USD"]);
            assert_eq!(scan_channel(&s, text, 1), None, "{text}");
        }
    }

    fn pairs_of(ids: &[&str]) -> Instruments {
        super::super::symbols("kraken", ids)
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
