//! BitMEX table messages to normalized events. Numbers are JSON numbers,
//! read exactly from their text.

use moat_common_types::model::{Bbo, Level, Liquidation, Trade};
use moat_common_types::{Decimal, Instrument, Side};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::venues::time::rfc3339_us;
use crate::venues::{side, Instruments, Reject, json, json_number, json_price, json_qty};

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

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawTrade<'a> {
    timestamp: &'a str,
    symbol: &'a str,
    side: &'a str,
    #[serde(borrow)]
    size: &'a RawValue,
    #[serde(borrow)]
    price: &'a RawValue,
    #[serde(rename = "trdMatchID")]
    trd_match_id: &'a str,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawQuote<'a> {
    timestamp: &'a str,
    symbol: &'a str,
    #[serde(borrow)]
    bid_size: Option<&'a RawValue>,
    #[serde(borrow)]
    bid_price: Option<&'a RawValue>,
    #[serde(borrow)]
    ask_price: Option<&'a RawValue>,
    #[serde(borrow)]
    ask_size: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct RawLevel<'a> {
    symbol: &'a str,
    id: u64,
    side: &'a str,
    #[serde(borrow, default)]
    size: Option<&'a RawValue>,
    #[serde(borrow, default)]
    price: Option<&'a RawValue>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawInstrument<'a> {
    symbol: &'a str,
    #[serde(default)]
    timestamp: Option<&'a str>,
    #[serde(borrow, default)]
    funding_rate: Option<&'a RawValue>,
    #[serde(borrow, default)]
    mark_price: Option<&'a RawValue>,
    #[serde(borrow, default)]
    indicative_settle_price: Option<&'a RawValue>,
    #[serde(borrow, default)]
    open_interest: Option<&'a RawValue>,
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
    price: &'a RawValue,
    #[serde(borrow)]
    leaves_qty: &'a RawValue,
}


/// A field that is neither left out nor `null`.
fn given(raw: Option<&RawValue>) -> Option<&RawValue> {
    raw.filter(|r| r.get() != "null")
}

/// A number that may be `null` or left out.
fn present(field: &'static str, raw: Option<&RawValue>) -> Result<Option<Decimal>, Reject> {
    given(raw).map(|r| json_number(field, r)).transpose()
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
    let data = rest.strip_prefix(r#","data":"#)?.strip_suffix('}')?;
    Some((table, action, data))
}

/// Parses the data of a message of `table` and `action`.
fn parse_data(symbols: &Instruments, table: &str, action: &str, data: &str, ts_recv_us: i64) -> Result<Frame, Reject> {
    match (table, action) {
        // A `partial` holds the trades just before the subscription: they
        // fill what a reconnect missed, and storage keeps each once by id.
        ("trade", "insert" | "partial") => {
            let raw: Vec<RawTrade<'_>> = json(data)?;
            let trades = raw
                .iter()
                .map(|t| {
                    Ok(Trade {
                        instrument: symbols.instrument(t.symbol)?,
                        trade_id: t.trd_match_id.to_owned(),
                        price: json_price("price", t.price)?,
                        qty: json_qty("size", t.size)?,
                        side: side(t.side)?,
                        ts_exchange_us: rfc3339_us(t.timestamp)?,
                        ts_recv_us,
                    })
                })
                .collect::<Result<_, Reject>>()?;
            Ok(Frame::Trades(trades))
        }
        ("quote", "insert") => {
            let raw: Vec<RawQuote<'_>> = json(data)?;
            let mut bbos = Vec::new();
            for q in &raw {
                let price = |field, raw: Option<&RawValue>| given(raw).map(|r| json_price(field, r)).transpose();
                let size = |field, raw: Option<&RawValue>| given(raw).map(|r| json_qty(field, r)).transpose();
                let bid = (price("bidPrice", q.bid_price)?, size("bidSize", q.bid_size)?);
                let ask = (price("askPrice", q.ask_price)?, size("askSize", q.ask_size)?);
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
            let raw: Vec<RawLevel<'_>> = json(data)?;
            let mut books: Vec<BookMessage> = Vec::new();
            for l in &raw {
                let row = LevelRow {
                    id: l.id,
                    side: side(l.side)?,
                    price: l.price.map(|p| json_price("price", p)).transpose()?,
                    size: match (action, l.size) {
                        (Action::Delete, _) => Decimal::ZERO,
                        (_, Some(size)) => json_qty("size", size)?,
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
                        price: json_price("price", l.price)?,
                        qty: json_qty("leavesQty", l.leaves_qty)?,
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

#[cfg(test)]
mod tests {
    use super::*;

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
