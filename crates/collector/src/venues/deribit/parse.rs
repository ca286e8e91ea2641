//! Deribit JSON-RPC notifications to normalized events. Numbers are JSON
//! numbers, read exactly from their text.

use moat_common_types::model::{Level, Trade};
use moat_common_types::{Decimal, Instrument, us_from_ms};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::venues::{side, Instruments, Reject, json, json_number, json_price, json_qty};

/// A `book` notification, ready for the connector's book.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BookMessage {
    pub instrument: Instrument,
    pub snapshot: bool,
    /// Levels to set; a zero quantity deletes the level.
    pub bids: Vec<Level>,
    pub asks: Vec<Level>,
    pub change_id: u64,
    /// The change this one follows (changes only).
    pub prev_change_id: Option<u64>,
    pub ts_exchange_us: i64,
}

/// What moat keeps of a `ticker` notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ticker {
    pub instrument: Instrument,
    /// Best bid and ask, when both sides have one.
    pub bbo: Option<(Level, Level)>,
    pub mark_price: Option<Decimal>,
    pub index_price: Option<Decimal>,
    /// Perpetuals: the current funding rate.
    pub funding_rate: Option<Decimal>,
    pub open_interest: Option<Decimal>,
    pub ts_exchange_us: i64,
}

/// What one frame carried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    Trades(Vec<Trade>),
    Book(BookMessage),
    Ticker(Ticker),
    /// The venue checks the connection: answer with `public/test`.
    TestRequest,
    /// Answers to requests, heartbeats.
    Control,
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(default)]
    method: Option<&'a str>,
    #[serde(borrow, default)]
    params: Option<Params<'a>>,
    #[serde(default)]
    error: Option<RpcError>,
}

#[derive(Deserialize)]
struct Params<'a> {
    #[serde(default)]
    channel: Option<&'a str>,
    #[serde(rename = "type", default)]
    kind: Option<&'a str>,
    #[serde(borrow, default)]
    data: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct RpcError {
    #[serde(default)]
    message: String,
    #[serde(default)]
    code: i64,
}

#[derive(Deserialize)]
struct RawTrade<'a> {
    trade_id: &'a str,
    instrument_name: &'a str,
    #[serde(borrow)]
    price: &'a RawValue,
    #[serde(borrow)]
    amount: &'a RawValue,
    direction: &'a str,
    timestamp: i64,
}

#[derive(Deserialize)]
struct RawBook<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    instrument_name: &'a str,
    timestamp: i64,
    change_id: u64,
    #[serde(default)]
    prev_change_id: Option<u64>,
    #[serde(borrow)]
    bids: Vec<(&'a str, &'a RawValue, &'a RawValue)>,
    #[serde(borrow)]
    asks: Vec<(&'a str, &'a RawValue, &'a RawValue)>,
}

#[derive(Deserialize)]
struct RawTicker<'a> {
    instrument_name: &'a str,
    timestamp: i64,
    #[serde(borrow, default)]
    best_bid_price: Option<&'a RawValue>,
    #[serde(borrow, default)]
    best_bid_amount: Option<&'a RawValue>,
    #[serde(borrow, default)]
    best_ask_price: Option<&'a RawValue>,
    #[serde(borrow, default)]
    best_ask_amount: Option<&'a RawValue>,
    #[serde(borrow, default)]
    mark_price: Option<&'a RawValue>,
    #[serde(borrow, default)]
    index_price: Option<&'a RawValue>,
    #[serde(borrow, default)]
    current_funding: Option<&'a RawValue>,
    #[serde(borrow, default)]
    open_interest: Option<&'a RawValue>,
}

fn levels(side: &'static str, raw: &[(&str, &RawValue, &RawValue)]) -> Result<Vec<Level>, Reject> {
    raw.iter()
        .map(|(action, p, q)| {
            let qty = match *action {
                "new" | "change" => json_qty(side, q)?,
                "delete" => Decimal::ZERO,
                other => return Err(Reject::new("unknown_frame", format!("book action {other:?}"))),
            };
            Ok(Level {
                price: json_price(side, p)?,
                qty,
            })
        })
        .collect()
}

/// A number Deribit may send as `null` (no best bid yet).
fn present(field: &'static str, raw: Option<&RawValue>) -> Result<Option<Decimal>, Reject> {
    raw.filter(|r| r.get() != "null").map(|r| json_number(field, r)).transpose()
}

/// Parses one text frame received at `ts_recv_us`.
pub fn parse(symbols: &Instruments, frame: &str, ts_recv_us: i64) -> Result<Frame, Reject> {
    let envelope: Envelope<'_> = json(frame)?;
    if let Some(error) = envelope.error {
        return Err(Reject::new("refused", format!("{} (code {})", error.message, error.code)));
    }
    let (Some("subscription"), Some(params)) = (envelope.method, &envelope.params) else {
        return match (envelope.method, envelope.params.and_then(|p| p.kind)) {
            (Some("heartbeat"), Some("test_request")) => Ok(Frame::TestRequest),
            _ => Ok(Frame::Control),
        };
    };
    let channel = params.channel.unwrap_or_default();
    let data = params
        .data
        .ok_or_else(|| Reject::new("missing_field", format!("{channel}: no data")))?
        .get();
    match channel.split('.').next().unwrap_or_default() {
        "trades" => {
            let raw: Vec<RawTrade<'_>> = json(data)?;
            let trades = raw
                .iter()
                .map(|t| {
                    Ok(Trade {
                        instrument: symbols.instrument(t.instrument_name)?,
                        trade_id: t.trade_id.to_owned(),
                        price: json_price("price", t.price)?,
                        qty: json_qty("amount", t.amount)?,
                        side: side(t.direction)?,
                        ts_exchange_us: us_from_ms(t.timestamp),
                        ts_recv_us,
                    })
                })
                .collect::<Result<_, Reject>>()?;
            Ok(Frame::Trades(trades))
        }
        "book" => {
            let raw: RawBook<'_> = json(data)?;
            Ok(Frame::Book(BookMessage {
                instrument: symbols.instrument(raw.instrument_name)?,
                snapshot: match raw.kind {
                    "snapshot" => true,
                    "change" => false,
                    other => return Err(Reject::new("unknown_frame", format!("book type {other:?}"))),
                },
                bids: levels("bids", &raw.bids)?,
                asks: levels("asks", &raw.asks)?,
                change_id: raw.change_id,
                prev_change_id: raw.prev_change_id,
                ts_exchange_us: us_from_ms(raw.timestamp),
            }))
        }
        "ticker" => {
            let raw: RawTicker<'_> = json(data)?;
            let side = |price: Option<&RawValue>, amount: Option<&RawValue>, name: &'static str| {
                match (present(name, price)?, present(name, amount)?) {
                    (Some(price), Some(qty)) if price > Decimal::ZERO && qty > Decimal::ZERO => {
                        Ok::<_, Reject>(Some(Level { price, qty }))
                    }
                    _ => Ok(None),
                }
            };
            let bid = side(raw.best_bid_price, raw.best_bid_amount, "best_bid")?;
            let ask = side(raw.best_ask_price, raw.best_ask_amount, "best_ask")?;
            Ok(Frame::Ticker(Ticker {
                instrument: symbols.instrument(raw.instrument_name)?,
                bbo: bid.zip(ask),
                mark_price: present("mark_price", raw.mark_price)?,
                index_price: present("index_price", raw.index_price)?,
                funding_rate: present("current_funding", raw.current_funding)?,
                open_interest: present("open_interest", raw.open_interest)?,
                ts_exchange_us: us_from_ms(raw.timestamp),
            }))
        }
        _ => Ok(Frame::Control),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use moat_common_types::Side;

    fn options() -> Instruments {
        super::super::symbols("deribit", &["BTC-24SEP21-8000-P", "BTC-PERPETUAL"]).all_known().unwrap()
    }

    #[test]
    fn books_trades_and_tickers_read_as_the_venue_documents() {
        let s = options();
        let change = r#"{"jsonrpc":"2.0","method":"subscription","params":{"channel":"book.BTC-24SEP21-8000-P.raw","data":{"type":"change","timestamp":1626993724318,"prev_change_id":33195894164,"instrument_name":"BTC-24SEP21-8000-P","change_id":33195894355,"bids":[["delete",0.0005,0.0]],"asks":[["new",0.001,2.6]]}}}"#;
        let Frame::Book(b) = parse(&s, change, 1).unwrap() else { panic!() };
        assert_eq!((b.snapshot, b.change_id, b.prev_change_id), (false, 33_195_894_355, Some(33_195_894_164)));
        assert!(b.bids[0].qty.is_zero());
        assert_eq!(b.asks[0].price.to_string(), "0.001");
        assert_eq!(b.instrument.symbol, "BTC-BTC-210924-8000-P");
        let trades = r#"{"jsonrpc":"2.0","method":"subscription","params":{"channel":"trades.BTC-PERPETUAL.100ms","data":[{"trade_seq":1,"trade_id":"ETH-123","timestamp":1626993724318,"tick_direction":0,"price":32150.5,"instrument_name":"BTC-PERPETUAL","index_price":32140.2,"direction":"sell","amount":10.0}]}}"#;
        let Frame::Trades(t) = parse(&s, trades, 1).unwrap() else { panic!() };
        assert_eq!((t[0].trade_id.as_str(), t[0].side, t[0].price.to_string()), ("ETH-123", Side::Sell, "32150.5".into()));
        let ticker = r#"{"jsonrpc":"2.0","method":"subscription","params":{"channel":"ticker.BTC-PERPETUAL.100ms","data":{"timestamp":1,"instrument_name":"BTC-PERPETUAL","best_bid_price":32150.0,"best_bid_amount":100.0,"best_ask_price":32150.5,"best_ask_amount":0.0,"mark_price":32151.1,"index_price":32140.2,"current_funding":0.0001,"open_interest":1000}}}"#;
        let Frame::Ticker(t) = parse(&s, ticker, 1).unwrap() else { panic!() };
        assert_eq!(t.bbo, None, "an empty ask side gives no BBO");
        assert_eq!(t.funding_rate, Some("0.0001".parse().unwrap()));
        let test = r#"{"jsonrpc":"2.0","method":"heartbeat","params":{"type":"test_request"}}"#;
        assert_eq!(parse(&s, test, 0).unwrap(), Frame::TestRequest);
        let refused = r#"{"jsonrpc":"2.0","id":1,"error":{"message":"Invalid params","code":-32602}}"#;
        assert_eq!(parse(&s, refused, 0).unwrap_err().reason, "refused");
        let answer = r#"{"jsonrpc":"2.0","id":0,"result":["book.BTC-PERPETUAL.raw"],"usIn":1}"#;
        assert_eq!(parse(&s, answer, 0).unwrap(), Frame::Control);
    }
}
