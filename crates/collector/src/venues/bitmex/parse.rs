//! BitMEX table messages to normalized events. Numbers are JSON numbers,
//! read exactly from their text.

use moat_common_types::model::{Bbo, Level, Liquidation, Trade};
use moat_common_types::{Decimal, Instrument, Side};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::venues::time::rfc3339_us;
use crate::venues::scan::{Scan, once, or_serde};
use crate::venues::{Instruments, JsonNumber, Reject, json, number, price, qty, side};

/// What a book message does to levels, by `id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// The whole book.
    Partial,
    Insert,
    Update,
    Delete,
}

/// A level row of `orderBookL2`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LevelRow {
    pub id: u64,
    pub side: Side,
    /// Absent on updates and deletes: the price the id was inserted with.
    pub price: Option<Decimal>,
    pub size: Decimal,
}

/// An `orderBookL2` message for one symbol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BookMessage {
    pub instrument: Instrument,
    pub action: Action,
    pub rows: Vec<LevelRow>,
}

/// What an `instrument` row carries that moat keeps; each is absent when
/// the row does not change it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InstrumentRow {
    pub funding_rate: Option<Decimal>,
    pub mark_price: Option<Decimal>,
    pub index_price: Option<Decimal>,
    pub open_interest: Option<Decimal>,
    pub next_funding_us: Option<i64>,
    pub ts_exchange_us: Option<i64>,
}

/// What one frame carried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    Trades(Vec<Trade>),
    Bbos(Vec<Bbo>),
    /// Book messages, one per symbol the frame touches.
    Books(Vec<BookMessage>),
    Instruments(Vec<(Instrument, InstrumentRow)>),
    Liquidations(Vec<Liquidation>),
    /// Answers, `pong`, the welcome, and the `partial` of quotes.
    Control,
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(default)]
    table: Option<&'a str>,
    #[serde(default)]
    action: Option<&'a str>,
    #[serde(borrow, default)]
    data: Option<&'a RawValue>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
struct RawTrade<'a> {
    timestamp: &'a str,
    symbol: &'a str,
    side: &'a str,
    #[serde(borrow)]
    size: JsonNumber<'a>,
    #[serde(borrow)]
    price: JsonNumber<'a>,
    #[serde(rename = "trdMatchID")]
    trd_match_id: &'a str,
}

#[derive(Deserialize, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
struct RawQuote<'a> {
    timestamp: &'a str,
    symbol: &'a str,
    #[serde(borrow)]
    bid_size: Option<JsonNumber<'a>>,
    #[serde(borrow)]
    bid_price: Option<JsonNumber<'a>>,
    #[serde(borrow)]
    ask_price: Option<JsonNumber<'a>>,
    #[serde(borrow)]
    ask_size: Option<JsonNumber<'a>>,
}

#[derive(Deserialize, Debug, PartialEq)]
struct RawLevel<'a> {
    symbol: &'a str,
    id: u64,
    side: &'a str,
    #[serde(borrow, default)]
    size: Option<JsonNumber<'a>>,
    #[serde(borrow, default)]
    price: Option<JsonNumber<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawInstrument<'a> {
    symbol: &'a str,
    #[serde(default)]
    timestamp: Option<&'a str>,
    #[serde(borrow, default)]
    funding_rate: Option<JsonNumber<'a>>,
    #[serde(borrow, default)]
    mark_price: Option<JsonNumber<'a>>,
    #[serde(borrow, default)]
    indicative_settle_price: Option<JsonNumber<'a>>,
    #[serde(borrow, default)]
    open_interest: Option<JsonNumber<'a>>,
    #[serde(default)]
    funding_timestamp: Option<&'a str>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawLiquidation<'a> {
    order_id: &'a str,
    symbol: &'a str,
    side: &'a str,
    #[serde(borrow)]
    price: JsonNumber<'a>,
    #[serde(borrow)]
    leaves_qty: JsonNumber<'a>,
}


/// A field that is neither left out nor `null`.
fn given(raw: Option<JsonNumber<'_>>) -> Option<JsonNumber<'_>> {
    raw.filter(|r| r.0 != "null")
}

/// A number that may be `null` or left out.
fn present(field: &'static str, raw: Option<JsonNumber<'_>>) -> Result<Option<Decimal>, Reject> {
    given(raw).map(|r| number(field, r.0)).transpose()
}

/// Parses one text frame received at `ts_recv_us`.
pub fn parse(symbols: &Instruments, frame: &str, ts_recv_us: i64) -> Result<Frame, Reject> {
    if frame == "pong" {
        return Ok(Frame::Control);
    }
    // A message as BitMEX writes one is read in one pass over its data;
    // any other layout (a partial's keys, an answer) goes through the full
    // parse, to the same outcome.
    if let Some((table, action, data)) = split_message(frame)
        && let Ok(parsed) = parse_data(symbols, table, action, data, ts_recv_us)
    {
        return Ok(parsed);
    }
    let envelope: Envelope<'_> = json(frame)?;
    if let Some(error) = envelope.error {
        return Err(Reject::new("refused", error));
    }
    let (Some(table), Some(data)) = (envelope.table, envelope.data) else {
        return Ok(Frame::Control);
    };
    parse_data(symbols, table, envelope.action.unwrap_or_default(), data.get(), ts_recv_us)
}

/// `{"table":"<t>","action":"<a>","data":<data>}` exactly as BitMEX writes
/// a message: its table, action and the text of its data, found without a
/// parse of the envelope (which would read the data twice). `None` for any
/// other layout.
fn split_message(frame: &str) -> Option<(&str, &str, &str)> {
    let (table, rest) = frame.strip_prefix(r#"{"table":""#)?.split_once('"')?;
    let (action, rest) = rest.strip_prefix(r#","action":""#)?.split_once('"')?;
    // An escape in either is left to the full parse (which refuses it,
    // rather than take it for an unknown table).
    if table.contains('\\') || action.contains('\\') {
        return None;
    }
    let data = rest.strip_prefix(r#","data":"#)?.strip_suffix('}')?;
    Some((table, action, data))
}

/// Parses the data of a message of `table` and `action`.
fn parse_data(symbols: &Instruments, table: &str, action: &str, data: &str, ts_recv_us: i64) -> Result<Frame, Reject> {
    match (table, action) {
        // A `partial` holds the trades just before the subscription: they
        // fill what a reconnect missed, and storage keeps each once by id.
        ("trade", "insert" | "partial") => {
            let raw: Vec<RawTrade<'_>> = or_serde(data, scan_trades)?;
            let trades = raw
                .iter()
                .map(|t| {
                    Ok(Trade {
                        instrument: symbols.instrument(t.symbol)?,
                        trade_id: t.trd_match_id.to_owned(),
                        price: price("price", t.price.0)?,
                        qty: qty("size", t.size.0)?,
                        side: side(t.side)?,
                        ts_exchange_us: rfc3339_us(t.timestamp)?,
                        ts_recv_us,
                    })
                })
                .collect::<Result<_, Reject>>()?;
            Ok(Frame::Trades(trades))
        }
        ("quote", "insert") => {
            let raw: Vec<RawQuote<'_>> = or_serde(data, scan_quotes)?;
            let mut bbos = Vec::new();
            for q in &raw {
                let price_of = |field, raw: Option<JsonNumber<'_>>| given(raw).map(|r| price(field, r.0)).transpose();
                let size_of = |field, raw: Option<JsonNumber<'_>>| given(raw).map(|r| qty(field, r.0)).transpose();
                let bid = (price_of("bidPrice", q.bid_price)?, size_of("bidSize", q.bid_size)?);
                let ask = (price_of("askPrice", q.ask_price)?, size_of("askSize", q.ask_size)?);
                // A side with no order has no BBO.
                if let ((Some(bp), Some(bq)), (Some(ap), Some(aq))) = (bid, ask) {
                    bbos.push(Bbo {
                        instrument: symbols.instrument(q.symbol)?,
                        sequence: 0,
                        bid: Level { price: bp, qty: bq },
                        ask: Level { price: ap, qty: aq },
                        ts_exchange_us: rfc3339_us(q.timestamp)?,
                        ts_recv_us,
                    });
                }
            }
            Ok(Frame::Bbos(bbos))
        }
        ("orderBookL2" | "orderBookL2_25", _) => {
            let action = match action {
                "partial" => Action::Partial,
                "insert" => Action::Insert,
                "update" => Action::Update,
                "delete" => Action::Delete,
                other => return Err(Reject::new("unknown_frame", format!("{table} action {other:?}"))),
            };
            let raw: Vec<RawLevel<'_>> = or_serde(data, scan_levels)?;
            let mut books: Vec<BookMessage> = Vec::new();
            for l in &raw {
                let row = LevelRow {
                    id: l.id,
                    side: side(l.side)?,
                    price: l.price.map(|p| price("price", p.0)).transpose()?,
                    size: match (action, l.size) {
                        (Action::Delete, _) => Decimal::ZERO,
                        (_, Some(size)) => qty("size", size.0)?,
                        (_, None) => return Err(Reject::new("missing_field", format!("{table} {action:?}: no size"))),
                    },
                };
                match books.iter_mut().find(|b| b.instrument.venue_symbol == l.symbol) {
                    Some(book) => book.rows.push(row),
                    None => books.push(BookMessage {
                        instrument: symbols.instrument(l.symbol)?,
                        action,
                        rows: vec![row],
                    }),
                }
            }
            Ok(Frame::Books(books))
        }
        ("instrument", "partial" | "update" | "insert") => {
            let raw: Vec<RawInstrument<'_>> = json(data)?;
            let rows = raw
                .iter()
                .map(|i| {
                    Ok((
                        symbols.instrument(i.symbol)?,
                        InstrumentRow {
                            funding_rate: present("fundingRate", i.funding_rate)?,
                            mark_price: present("markPrice", i.mark_price)?,
                            index_price: present("indicativeSettlePrice", i.indicative_settle_price)?,
                            open_interest: present("openInterest", i.open_interest)?,
                            next_funding_us: i.funding_timestamp.map(rfc3339_us).transpose()?,
                            ts_exchange_us: i.timestamp.map(rfc3339_us).transpose()?,
                        },
                    ))
                })
                .collect::<Result<_, Reject>>()?;
            Ok(Frame::Instruments(rows))
        }
        ("liquidation", "insert") => {
            let raw: Vec<RawLiquidation<'_>> = json(data)?;
            let liquidations = raw
                .iter()
                .map(|l| {
                    Ok(Liquidation {
                        instrument: symbols.instrument(l.symbol)?,
                        side: side(l.side)?,
                        price: price("price", l.price.0)?,
                        qty: qty("leavesQty", l.leaves_qty.0)?,
                        order_id: Some(l.order_id.to_owned()),
                        ts_exchange_us: ts_recv_us,
                        ts_recv_us,
                    })
                })
                .collect::<Result<_, Reject>>()?;
            Ok(Frame::Liquidations(liquidations))
        }
        _ => Ok(Frame::Control),
    }
}

// The data of the usual messages read by [`Scan`]; `None` leaves it to
// serde (the structs above), which gives the answer.

/// The elements of an array, each read by `row`.
fn scan_rows<'a, T>(data: &'a str, mut row: impl FnMut(&mut Scan<'a>) -> Option<T>) -> Option<Vec<T>> {
    let mut scan = Scan::new(data);
    let mut rows = Vec::new();
    scan.array(|scan| {
        rows.push(row(scan)?);
        Some(())
    })?;
    scan.end()?;
    Some(rows)
}

fn scan_levels(data: &str) -> Option<Vec<RawLevel<'_>>> {
    scan_rows(data, |scan| {
        let (mut symbol, mut id, mut side, mut size, mut price) = (None, None, None, None, None);
        scan.object(|scan, key| match key {
            "symbol" => once(&mut symbol, scan.str()),
            "id" => once(&mut id, scan.u64()),
            "side" => once(&mut side, scan.str()),
            "size" => once(&mut size, scan.json_number()),
            "price" => once(&mut price, scan.json_number()),
            _ => scan.skip(),
        })?;
        Some(RawLevel {
            symbol: symbol?,
            id: id?,
            side: side?,
            size,
            price,
        })
    })
}

fn scan_trades(data: &str) -> Option<Vec<RawTrade<'_>>> {
    scan_rows(data, |scan| {
        let (mut timestamp, mut symbol, mut side, mut size, mut price, mut id) = (None, None, None, None, None, None);
        scan.object(|scan, key| match key {
            "timestamp" => once(&mut timestamp, scan.str()),
            "symbol" => once(&mut symbol, scan.str()),
            "side" => once(&mut side, scan.str()),
            "size" => once(&mut size, scan.json_number()),
            "price" => once(&mut price, scan.json_number()),
            "trdMatchID" => once(&mut id, scan.str()),
            _ => scan.skip(),
        })?;
        Some(RawTrade {
            timestamp: timestamp?,
            symbol: symbol?,
            side: side?,
            size: size?,
            price: price?,
            trd_match_id: id?,
        })
    })
}

fn scan_quotes<'a>(data: &'a str) -> Option<Vec<RawQuote<'a>>> {
    scan_rows(data, |scan| {
        let (mut timestamp, mut symbol) = (None, None);
        let (mut bid_size, mut bid_price, mut ask_price, mut ask_size) = (None, None, None, None);
        let number = |scan: &mut Scan<'a>| scan.nullable(Scan::json_number);
        scan.object(|scan, key| match key {
            "timestamp" => once(&mut timestamp, scan.str()),
            "symbol" => once(&mut symbol, scan.str()),
            "bidSize" => once(&mut bid_size, number(scan)),
            "bidPrice" => once(&mut bid_price, number(scan)),
            "askPrice" => once(&mut ask_price, number(scan)),
            "askSize" => once(&mut ask_size, number(scan)),
            _ => scan.skip(),
        })?;
        Some(RawQuote {
            timestamp: timestamp?,
            symbol: symbol?,
            bid_size: bid_size.flatten(),
            bid_price: bid_price.flatten(),
            ask_price: ask_price.flatten(),
            ask_size: ask_size.flatten(),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// On every recorded message, what the scanner reads is what serde
    /// reads; and it reads every book, trade and quote message (else it is
    /// no faster).
    #[test]
    fn scanned_frames_read_as_serde_reads_them() {
        let frames = crate::venues::scan::recorded_frames("BITMEX.ws.1.0");
        let mut scanned = 0;
        for frame in &frames {
            let Some((table, _, data)) = split_message(frame) else {
                continue;
            };
            let read = match table {
                "orderBookL2" => scan_levels(data).map(|l| assert_eq!(Some(l), json(data).ok(), "{frame}")),
                "trade" => scan_trades(data).map(|t| assert_eq!(Some(t), json(data).ok(), "{frame}")),
                "quote" => scan_quotes(data).map(|q| assert_eq!(Some(q), json(data).ok(), "{frame}")),
                _ => continue,
            };
            assert!(read.is_some(), "the scanner left a usual message to serde: {frame}");
            scanned += 1;
        }
        assert!(frames.is_empty() || scanned > 2_000, "{scanned} of {} scanned", frames.len());
    }

    fn symbols() -> Instruments {
        super::super::symbols("bitmex", &["SOLUSDT", "BCHUSD"]).all_known().unwrap()
    }

    #[test]
    fn book_rows_trades_and_quotes_read_as_the_venue_documents() {
        let s = symbols();
        let insert = r#"{"table":"orderBookL2","action":"insert","data":[{"symbol":"SOLUSDT","id":54899972480,"side":"Sell","size":991,"price":27.52}]}"#;
        let Frame::Books(b) = parse(&s, insert, 1).unwrap() else { panic!() };
        assert_eq!((b[0].action, b[0].rows[0].price.map(|p| p.to_string())), (Action::Insert, Some("27.52".into())));
        let update = r#"{"table":"orderBookL2","action":"update","data":[{"symbol":"SOLUSDT","id":54899972480,"side":"Sell","size":123},{"symbol":"BCHUSD","id":1,"side":"Buy","size":5}]}"#;
        let Frame::Books(b) = parse(&s, update, 1).unwrap() else { panic!() };
        assert_eq!(b.len(), 2, "one message per symbol");
        assert_eq!(b[0].rows[0].price, None);
        let delete = r#"{"table":"orderBookL2","action":"delete","data":[{"symbol":"BCHUSD","id":40199991245,"side":"Buy"}]}"#;
        let Frame::Books(b) = parse(&s, delete, 1).unwrap() else { panic!() };
        assert!(b[0].rows[0].size.is_zero());
        let trade = r#"{"table":"trade","action":"insert","data":[{"timestamp":"2021-07-22T22:36:10.014Z","symbol":"SOLUSDT","side":"Buy","size":52,"price":17.297,"trdMatchID":"39744121-c20e"}]}"#;
        let Frame::Trades(t) = parse(&s, trade, 1).unwrap() else { panic!() };
        assert_eq!((t[0].trade_id.as_str(), t[0].ts_exchange_us), ("39744121-c20e", 1_626_993_370_014_000));
        // A table written with an escape is not taken for another one (it
        // was read as an unknown table): the full parse refuses it.
        let escaped = trade.replace(r#""table":"trade""#, r#""table":"\u0074rade""#);
        assert_eq!(parse(&s, &escaped, 1).unwrap_err().reason, "json", "{escaped}");
        let quote = r#"{"table":"quote","action":"insert","data":[{"timestamp":"2021-07-22T22:36:10.014Z","symbol":"SOLUSDT","bidSize":750,"bidPrice":17.277,"askPrice":17.297,"askSize":123}]}"#;
        let Frame::Bbos(q) = parse(&s, quote, 1).unwrap() else { panic!() };
        assert_eq!(q[0].ask.qty.to_string(), "123");
        let zero = r#"{"table":"quote","action":"insert","data":[{"timestamp":"2021-07-22T22:36:10.886Z","symbol":"SOLUSDT","bidSize":859,"bidPrice":0.00001814,"askPrice":0.00,"askSize":1703}]}"#;
        assert_eq!(parse(&s, zero, 1).unwrap_err().reason, "price", "a zero price is refused");
        let history = r#"{"table":"trade","action":"partial","data":[]}"#;
        assert_eq!(parse(&s, history, 1).unwrap(), Frame::Trades(Vec::new()));
        assert_eq!(parse(&s, "pong", 1).unwrap(), Frame::Control);
        let refused = r#"{"status":400,"error":"Unknown table: orderBookL3","meta":{},"request":{}}"#;
        assert_eq!(parse(&s, refused, 1).unwrap_err().reason, "refused");
    }
}
