//! Deribit JSON-RPC notifications to normalized events. Numbers are JSON
//! numbers, read exactly from their text.

use moat_common_types::model::{Level, Liquidation, OptionTicker, Trade};
use moat_common_types::{Decimal, Instrument, Market, Side, us_from_ms};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::venues::scan::{Scan, once, or_serde};
use crate::venues::{Instruments, JsonNumber, Reject, json, number, price, qty, side};

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
    /// Options: mark price, implied volatilities, greeks, underlying price.
    pub option: Option<OptionTicker>,
    pub ts_exchange_us: i64,
}

/// What one frame carried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// Trades, and the liquidations among them.
    Trades(Vec<Trade>, Vec<Liquidation>),
    Book(BookMessage),
    Ticker(Box<Ticker>),
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

#[derive(Deserialize, Debug, PartialEq)]
struct RawTrade<'a> {
    trade_id: &'a str,
    instrument_name: &'a str,
    #[serde(borrow)]
    price: JsonNumber<'a>,
    #[serde(borrow)]
    amount: JsonNumber<'a>,
    direction: &'a str,
    timestamp: i64,
    /// On a liquidation trade, who was liquidated: `M` (the maker), `T`
    /// (the taker) or `MT` (both).
    #[serde(default)]
    liquidation: Option<&'a str>,
}

#[derive(Deserialize, Debug, PartialEq)]
struct RawBook<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    instrument_name: &'a str,
    timestamp: i64,
    change_id: u64,
    #[serde(default)]
    prev_change_id: Option<u64>,
    #[serde(borrow)]
    bids: Vec<(&'a str, JsonNumber<'a>, JsonNumber<'a>)>,
    #[serde(borrow)]
    asks: Vec<(&'a str, JsonNumber<'a>, JsonNumber<'a>)>,
}

#[derive(Deserialize, Debug, PartialEq)]
struct RawTicker<'a> {
    instrument_name: &'a str,
    timestamp: i64,
    #[serde(borrow, default)]
    best_bid_price: Option<JsonNumber<'a>>,
    #[serde(borrow, default)]
    best_bid_amount: Option<JsonNumber<'a>>,
    #[serde(borrow, default)]
    best_ask_price: Option<JsonNumber<'a>>,
    #[serde(borrow, default)]
    best_ask_amount: Option<JsonNumber<'a>>,
    #[serde(borrow, default)]
    mark_price: Option<JsonNumber<'a>>,
    #[serde(borrow, default)]
    index_price: Option<JsonNumber<'a>>,
    #[serde(borrow, default)]
    current_funding: Option<JsonNumber<'a>>,
    #[serde(borrow, default)]
    open_interest: Option<JsonNumber<'a>>,
    #[serde(borrow, default)]
    mark_iv: Option<JsonNumber<'a>>,
    #[serde(borrow, default)]
    bid_iv: Option<JsonNumber<'a>>,
    #[serde(borrow, default)]
    ask_iv: Option<JsonNumber<'a>>,
    #[serde(borrow, default)]
    underlying_price: Option<JsonNumber<'a>>,
    #[serde(borrow, default)]
    greeks: Option<Greeks<'a>>,
}

/// An option's greeks as Deribit sends them.
#[derive(Deserialize, Debug, Default, PartialEq)]
struct Greeks<'a> {
    #[serde(borrow, default)]
    delta: Option<JsonNumber<'a>>,
    #[serde(borrow, default)]
    gamma: Option<JsonNumber<'a>>,
    #[serde(borrow, default)]
    vega: Option<JsonNumber<'a>>,
    #[serde(borrow, default)]
    theta: Option<JsonNumber<'a>>,
    #[serde(borrow, default)]
    rho: Option<JsonNumber<'a>>,
}

fn levels(side: &'static str, raw: &[(&str, JsonNumber<'_>, JsonNumber<'_>)]) -> Result<Vec<Level>, Reject> {
    raw.iter()
        .map(|(action, p, q)| {
            let qty = match *action {
                "new" | "change" => qty(side, q.0)?,
                "delete" => Decimal::ZERO,
                other => return Err(Reject::new("unknown_frame", format!("book action {other:?}"))),
            };
            Ok(Level {
                price: price(side, p.0)?,
                qty,
            })
        })
        .collect()
}

/// A number Deribit may send as `null` (no best bid yet), which is read
/// as absent.
fn present(field: &'static str, raw: Option<JsonNumber<'_>>) -> Result<Option<Decimal>, Reject> {
    raw.filter(|r| r.0 != "null").map(|r| number(field, r.0)).transpose()
}

/// The liquidations of a trade flagged `liquidation`: one for each party
/// liquidated, with the side of its order (the taker's is the trade's
/// direction, the maker's the other), as Binance's `forceOrder` gives the
/// side of the liquidation order. The id is the trade's with `:T` or `:M`.
fn liquidated(trade: &Trade, who: &str) -> Result<Vec<Liquidation>, Reject> {
    if who.is_empty() || !who.chars().all(|c| c == 'M' || c == 'T') {
        return Err(Reject::new("unknown_frame", format!("liquidation {who:?}")));
    }
    let party = |party: char| Liquidation {
        instrument: trade.instrument.clone(),
        side: match (party, trade.side) {
            ('T', side) => side,
            (_, Side::Buy) => Side::Sell,
            (_, Side::Sell) => Side::Buy,
        },
        price: trade.price,
        qty: trade.qty,
        order_id: Some(format!("{}:{party}", trade.trade_id)),
        ts_exchange_us: trade.ts_exchange_us,
        ts_recv_us: trade.ts_recv_us,
    };
    Ok(['T', 'M'].into_iter().filter(|p| who.contains(*p)).map(party).collect())
}

/// An implied volatility, which Deribit quotes in percent, as a fraction.
/// Deribit sends 0 for the side of a book that has no order: that is no
/// volatility, not a volatility of zero.
fn volatility(field: &'static str, raw: Option<JsonNumber<'_>>) -> Result<Option<Decimal>, Reject> {
    Ok(present(field, raw)?.filter(|v| !v.is_zero()).map(|percent| {
        // Two places more of scale is the same number over 100, exactly,
        // without a division.
        let mut fraction = percent;
        match fraction.set_scale(percent.scale() + 2) {
            Ok(()) => fraction,
            Err(_) => percent / Decimal::ONE_HUNDRED,
        }
    }))
}

/// The option ticker of a `ticker` notification on an option.
fn option_ticker(
    instrument: &Instrument,
    raw: &RawTicker<'_>,
    ts_recv_us: i64,
) -> Result<Option<OptionTicker>, Reject> {
    let Some(mark_price) = present("mark_price", raw.mark_price)? else {
        return Ok(None);
    };
    if mark_price.is_sign_negative() {
        return Err(Reject::new("invalid_price", format!("mark_price {mark_price} is negative")));
    }
    let g = raw.greeks.as_ref();
    Ok(Some(OptionTicker {
        instrument: instrument.clone(),
        mark_price,
        mark_iv: volatility("mark_iv", raw.mark_iv)?,
        bid_iv: volatility("bid_iv", raw.bid_iv)?,
        ask_iv: volatility("ask_iv", raw.ask_iv)?,
        underlying_price: present("underlying_price", raw.underlying_price)?,
        delta: present("delta", g.and_then(|g| g.delta))?,
        gamma: present("gamma", g.and_then(|g| g.gamma))?,
        vega: present("vega", g.and_then(|g| g.vega))?,
        theta: present("theta", g.and_then(|g| g.theta))?,
        rho: present("rho", g.and_then(|g| g.rho))?,
        ts_exchange_us: us_from_ms(raw.timestamp),
        ts_recv_us,
    }))
}

/// Parses one text frame received at `ts_recv_us`.
pub fn parse(symbols: &Instruments, frame: &str, ts_recv_us: i64) -> Result<Frame, Reject> {
    // A notification as Deribit writes it is read in one pass over its
    // data; any other layout (other keys, another order, an answer) goes
    // through the full parse, to the same outcome.
    if let Some((channel, data)) = split_notification(frame)
        && let Ok(parsed) = parse_data(symbols, channel, data, ts_recv_us)
    {
        return Ok(parsed);
    }
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
    parse_data(symbols, channel, data, ts_recv_us)
}

/// `{"jsonrpc":"2.0","method":"subscription","params":{"channel":"<c>","data":<data>}}`
/// exactly as Deribit writes a notification: its channel and the text of
/// its data, found without a parse of the envelope (which would read the
/// data twice). `None` for any other layout.
fn split_notification(frame: &str) -> Option<(&str, &str)> {
    let rest = frame.strip_prefix(r#"{"jsonrpc":"2.0","method":"subscription","params":{"channel":""#)?;
    let (channel, rest) = rest.split_once('"')?;
    // An escape in the channel is left to the full parse (which refuses it,
    // rather than take it for an unknown channel).
    if channel.contains('\\') {
        return None;
    }
    let data = rest.strip_prefix(r#","data":"#)?.strip_suffix("}}")?;
    Some((channel, data))
}

/// Parses the data of a notification on `channel`.
fn parse_data(symbols: &Instruments, channel: &str, data: &str, ts_recv_us: i64) -> Result<Frame, Reject> {
    match channel.split('.').next().unwrap_or_default() {
        "trades" => {
            let raw: Vec<RawTrade<'_>> = or_serde(data, scan_trades)?;
            let mut trades = Vec::with_capacity(raw.len());
            let mut liquidations = Vec::new();
            for t in &raw {
                let trade = Trade {
                    instrument: symbols.instrument(t.instrument_name)?,
                    trade_id: t.trade_id.to_owned(),
                    price: price("price", t.price.0)?,
                    qty: qty("amount", t.amount.0)?,
                    side: side(t.direction)?,
                    ts_exchange_us: us_from_ms(t.timestamp),
                    ts_recv_us,
                };
                if let Some(who) = t.liquidation {
                    liquidations.extend(liquidated(&trade, who)?);
                }
                trades.push(trade);
            }
            Ok(Frame::Trades(trades, liquidations))
        }
        "book" => {
            let raw: RawBook<'_> = or_serde(data, scan_book)?;
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
            let raw: RawTicker<'_> = or_serde(data, |data| option_ticker_layout(data).or_else(|| scan_ticker(data)))?;
            let side = |price: Option<JsonNumber<'_>>, amount: Option<JsonNumber<'_>>, name: &'static str| {
                match (present(name, price)?, present(name, amount)?) {
                    (Some(price), Some(qty)) if price > Decimal::ZERO && qty > Decimal::ZERO => {
                        Ok::<_, Reject>(Some(Level { price, qty }))
                    }
                    _ => Ok(None),
                }
            };
            let bid = side(raw.best_bid_price, raw.best_bid_amount, "best_bid")?;
            let ask = side(raw.best_ask_price, raw.best_ask_amount, "best_ask")?;
            let instrument = symbols.instrument(raw.instrument_name)?;
            let option = match instrument.market {
                Market::Option => option_ticker(&instrument, &raw, ts_recv_us)?,
                _ => None,
            };
            Ok(Frame::Ticker(Box::new(Ticker {
                instrument,
                option,
                bbo: bid.zip(ask),
                mark_price: present("mark_price", raw.mark_price)?,
                index_price: present("index_price", raw.index_price)?,
                funding_rate: present("current_funding", raw.current_funding)?,
                open_interest: present("open_interest", raw.open_interest)?,
                ts_exchange_us: us_from_ms(raw.timestamp),
            })))
        }
        _ => Ok(Frame::Control),
    }
}

// The data of the usual notifications read by [`Scan`]; `None` leaves it
// to serde (the structs above), which gives the answer.

fn scan_trades(data: &str) -> Option<Vec<RawTrade<'_>>> {
    let mut scan = Scan::new(data);
    let mut trades = Vec::new();
    scan.array(|scan| {
        let (mut id, mut name, mut price, mut amount, mut direction, mut timestamp) = (None, None, None, None, None, None);
        let mut liquidation = None;
        scan.object(|scan, key| match key {
            "trade_id" => once(&mut id, scan.str()),
            "instrument_name" => once(&mut name, scan.str()),
            "price" => once(&mut price, scan.json_number()),
            "amount" => once(&mut amount, scan.json_number()),
            "direction" => once(&mut direction, scan.str()),
            "timestamp" => once(&mut timestamp, scan.i64()),
            "liquidation" => once(&mut liquidation, scan.nullable(Scan::str)),
            _ => scan.skip(),
        })?;
        trades.push(RawTrade {
            trade_id: id?,
            instrument_name: name?,
            price: price?,
            amount: amount?,
            direction: direction?,
            timestamp: timestamp?,
            liquidation: liquidation.flatten(),
        });
        Some(())
    })?;
    scan.end()?;
    Some(trades)
}

fn scan_book<'a>(data: &'a str) -> Option<RawBook<'a>> {
    let mut scan = Scan::new(data);
    let (mut kind, mut name, mut timestamp, mut change_id, mut prev) = (None, None, None, None, None);
    let (mut bids, mut asks) = (None, None);
    let levels = |scan: &mut Scan<'a>| {
        let mut levels = Vec::new();
        scan.array(|scan| {
            let mut level = (None, None, None);
            let mut n = 0;
            scan.array(|scan| {
                match n {
                    0 => level.0 = Some(scan.str()?),
                    1 => level.1 = Some(scan.json_number()?),
                    2 => level.2 = Some(scan.json_number()?),
                    _ => return None,
                }
                n += 1;
                Some(())
            })?;
            levels.push((level.0?, level.1?, level.2?));
            Some(())
        })?;
        Some(levels)
    };
    scan.object(|scan, key| match key {
        "type" => once(&mut kind, scan.str()),
        "instrument_name" => once(&mut name, scan.str()),
        "timestamp" => once(&mut timestamp, scan.i64()),
        "change_id" => once(&mut change_id, scan.u64()),
        "prev_change_id" => once(&mut prev, scan.nullable(Scan::u64)),
        "bids" => once(&mut bids, levels(scan)),
        "asks" => once(&mut asks, levels(scan)),
        _ => scan.skip(),
    })?;
    scan.end()?;
    Some(RawBook {
        kind: kind?,
        instrument_name: name?,
        timestamp: timestamp?,
        change_id: change_id?,
        prev_change_id: prev.flatten(),
        bids: bids?,
        asks: asks?,
    })
}

fn scan_ticker(data: &str) -> Option<RawTicker<'_>> {
    let mut scan = Scan::new(data);
    let (mut name, mut timestamp, mut greeks) = (None, None, None);
    let mut numbers: [Option<Option<JsonNumber<'_>>>; 12] = [None; 12];
    scan.object(|scan, key| match key {
        "instrument_name" => once(&mut name, scan.str()),
        "timestamp" => once(&mut timestamp, scan.i64()),
        "greeks" => once(&mut greeks, scan.nullable(scan_greeks)),
        _ => {
            let i = match key {
                "best_bid_price" => 0,
                "best_bid_amount" => 1,
                "best_ask_price" => 2,
                "best_ask_amount" => 3,
                "mark_price" => 4,
                "index_price" => 5,
                "current_funding" => 6,
                "open_interest" => 7,
                "mark_iv" => 8,
                "bid_iv" => 9,
                "ask_iv" => 10,
                "underlying_price" => 11,
                _ => return scan.skip(),
            };
            once(&mut numbers[i], scan.nullable(Scan::json_number))
        }
    })?;
    scan.end()?;
    let [bbp, bba, bap, baa, mark, index, funding, oi, mark_iv, bid_iv, ask_iv, underlying] = numbers.map(Option::flatten);
    Some(RawTicker {
        instrument_name: name?,
        timestamp: timestamp?,
        best_bid_price: bbp,
        best_bid_amount: bba,
        best_ask_price: bap,
        best_ask_amount: baa,
        mark_price: mark,
        index_price: index,
        current_funding: funding,
        open_interest: oi,
        mark_iv,
        bid_iv,
        ask_iv,
        underlying_price: underlying,
        greeks: greeks.flatten(),
    })
}

/// An option's ticker in the layout Deribit writes every one of them (most
/// of what an options feed sends), its keys matched in that order; `None`
/// for any other layout (a future's or perpetual's ticker, keys moved or
/// added), which [`scan_ticker`] reads.
fn option_ticker_layout(data: &str) -> Option<RawTicker<'_>> {
    let mut scan = Scan::new(data);
    fn number<'a>(scan: &mut Scan<'a>) -> Option<Option<JsonNumber<'a>>> {
        scan.nullable(Scan::json_number)
    }
    let underlying_price = scan.after(r#"{"underlying_price":"#, number)?;
    scan.after(r#","underlying_index":"#, Scan::skip)?;
    let timestamp = scan.after(r#","timestamp":"#, Scan::i64)?;
    scan.after(r#","stats":"#, Scan::skip)?;
    scan.after(r#","state":"#, Scan::skip)?;
    scan.after(r#","settlement_price":"#, Scan::skip)?;
    let open_interest = scan.after(r#","open_interest":"#, number)?;
    scan.after(r#","min_price":"#, Scan::skip)?;
    scan.after(r#","max_price":"#, Scan::skip)?;
    let mark_price = scan.after(r#","mark_price":"#, number)?;
    let mark_iv = scan.after(r#","mark_iv":"#, number)?;
    scan.after(r#","last_price":"#, Scan::skip)?;
    scan.after(r#","interest_rate":"#, Scan::skip)?;
    let instrument_name = scan.after(r#","instrument_name":"#, Scan::str)?;
    let index_price = scan.after(r#","index_price":"#, number)?;
    let vega = scan.after(r#","greeks":{"vega":"#, number)?;
    let theta = scan.after(r#","theta":"#, number)?;
    let rho = scan.after(r#","rho":"#, number)?;
    let gamma = scan.after(r#","gamma":"#, number)?;
    let delta = scan.after(r#","delta":"#, number)?;
    scan.after(r#"},"estimated_delivery_price":"#, Scan::skip)?;
    let bid_iv = scan.after(r#","bid_iv":"#, number)?;
    let best_bid_price = scan.after(r#","best_bid_price":"#, number)?;
    let best_bid_amount = scan.after(r#","best_bid_amount":"#, number)?;
    let best_ask_price = scan.after(r#","best_ask_price":"#, number)?;
    let best_ask_amount = scan.after(r#","best_ask_amount":"#, number)?;
    let ask_iv = scan.after(r#","ask_iv":"#, number)?;
    scan.literal("}")?;
    scan.end()?;
    Some(RawTicker {
        instrument_name,
        timestamp,
        best_bid_price,
        best_bid_amount,
        best_ask_price,
        best_ask_amount,
        mark_price,
        index_price,
        current_funding: None,
        open_interest,
        mark_iv,
        bid_iv,
        ask_iv,
        underlying_price,
        greeks: Some(Greeks {
            delta,
            gamma,
            vega,
            theta,
            rho,
        }),
    })
}

fn scan_greeks<'a>(scan: &mut Scan<'a>) -> Option<Greeks<'a>> {
    let mut g: [Option<Option<JsonNumber<'a>>>; 5] = [None; 5];
    scan.object(|scan, key| {
        let i = match key {
            "delta" => 0,
            "gamma" => 1,
            "vega" => 2,
            "theta" => 3,
            "rho" => 4,
            _ => return scan.skip(),
        };
        once(&mut g[i], scan.nullable(Scan::json_number))
    })?;
    let [delta, gamma, vega, theta, rho] = g.map(Option::flatten);
    Some(Greeks {
        delta,
        gamma,
        vega,
        theta,
        rho,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use moat_common_types::Side;

    /// On every recorded notification, what the scanner reads is what
    /// serde reads; and it reads them all (else it is no faster).
    #[test]
    fn scanned_frames_read_as_serde_reads_them() {
        let frames = crate::venues::scan::recorded_frames("DERIBIT.ws.1.0");
        let (mut scanned, mut by_layout) = (0, 0);
        for frame in &frames {
            let Some((channel, data)) = split_notification(frame) else {
                continue;
            };
            let read = match channel.split('.').next() {
                Some("trades") => scan_trades(data).map(|t| assert_eq!(Some(t), json(data).ok(), "{frame}")),
                Some("book") => scan_book(data).map(|b| assert_eq!(Some(b), json(data).ok(), "{frame}")),
                Some("ticker") => {
                    if let Some(t) = option_ticker_layout(data) {
                        assert_eq!(Some(t), json(data).ok(), "{frame}");
                        by_layout += 1;
                    }
                    scan_ticker(data).map(|t| assert_eq!(Some(t), json(data).ok(), "{frame}"))
                }
                _ => continue,
            };
            assert!(read.is_some(), "the scanner left a usual frame to serde: {frame}");
            scanned += 1;
        }
        assert!(frames.is_empty() || scanned > 130, "{scanned} of {} scanned", frames.len());
        // Option tickers are read by their layout, as the scanner reads them.
        assert!(frames.is_empty() || by_layout > 80, "{by_layout} tickers read by their layout");
        // Another layout is left to the scanner: a perpetual's ticker, a
        // key added, a value of another kind.
        let option = frames.iter().find_map(|f| split_notification(f).filter(|(c, _)| c.starts_with("ticker.")));
        if let Some((_, data)) = option {
            let added = data.replacen(r#","state":"#, r#","new_key":1,"state":"#, 1);
            assert_eq!(option_ticker_layout(&added), None);
            assert_eq!(scan_ticker(&added), json(&added).ok());
            let text = data.replacen(r#""mark_iv":"#, r#""mark_iv":"x","old":"#, 1);
            assert_eq!(option_ticker_layout(&text), None);
        }
        // Nulls read as absent, as serde reads them; a duplicate is left to serde.
        let ticker = r#"{"instrument_name":"X","timestamp":1,"best_bid_price":null,"greeks":null}"#;
        assert_eq!(scan_ticker(ticker), json(ticker).ok());
        assert!(scan_ticker(ticker).is_some());
        let twice = r#"{"instrument_name":"X","timestamp":1,"mark_price":null,"mark_price":1}"#;
        assert_eq!(scan_ticker(twice), None);
        assert!(json::<RawTicker<'_>>(twice).is_err());
    }

    #[test]
    fn volatilities_are_percent_over_a_hundred_exactly() {
        for percent in ["120.74", "0.5", "115", "1.0000000000000000000000000001", "99999999999999999999.99"] {
            let read = volatility("iv", Some(JsonNumber(percent))).unwrap().unwrap();
            let expected = percent.parse::<Decimal>().unwrap() / Decimal::ONE_HUNDRED;
            assert_eq!(read, expected, "{percent}");
        }
        assert_eq!(volatility("iv", Some(JsonNumber("0.0"))).unwrap(), None);
    }

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
        let Frame::Trades(t, liquidations) = parse(&s, trades, 1).unwrap() else { panic!() };
        assert_eq!((t[0].trade_id.as_str(), t[0].side, t[0].price.to_string()), ("ETH-123", Side::Sell, "32150.5".into()));
        assert!(liquidations.is_empty());
        // A trade that liquidated both parties: the taker sold, the maker's
        // liquidation order bought.
        let liquidation = trades.replace(r#""amount":10.0"#, r#""amount":10.0,"liquidation":"MT""#);
        let Frame::Trades(t, liquidations) = parse(&s, &liquidation, 1).unwrap() else { panic!() };
        assert_eq!(t.len(), 1, "the trade is still a trade");
        let sides: Vec<_> = liquidations.iter().map(|l| (l.order_id.clone().unwrap(), l.side)).collect();
        assert_eq!(sides, [("ETH-123:T".to_owned(), Side::Sell), ("ETH-123:M".to_owned(), Side::Buy)]);
        // A channel written with an escape is not taken for another one
        // (it was read as an unknown channel): the full parse refuses it.
        let escaped = trades.replace(r#""channel":"trades"#, r#""channel":"\u0074rades"#);
        assert_eq!(parse(&s, &escaped, 1).unwrap_err().reason, "json", "{escaped}");
        let odd = trades.replace(r#""amount":10.0"#, r#""amount":10.0,"liquidation":"X""#);
        assert_eq!(parse(&s, &odd, 1).unwrap_err().reason, "unknown_frame");
        let ticker = r#"{"jsonrpc":"2.0","method":"subscription","params":{"channel":"ticker.BTC-PERPETUAL.100ms","data":{"timestamp":1,"instrument_name":"BTC-PERPETUAL","best_bid_price":32150.0,"best_bid_amount":100.0,"best_ask_price":32150.5,"best_ask_amount":0.0,"mark_price":32151.1,"index_price":32140.2,"current_funding":0.0001,"open_interest":1000}}}"#;
        let Frame::Ticker(t) = parse(&s, ticker, 1).unwrap() else { panic!() };
        assert_eq!(t.bbo, None, "an empty ask side gives no BBO");
        assert_eq!(t.funding_rate, Some("0.0001".parse().unwrap()));
        assert_eq!(t.option, None, "a perpetual has no option ticker");
        let option = r#"{"jsonrpc":"2.0","method":"subscription","params":{"channel":"ticker.BTC-24SEP21-8000-P.raw","data":{"underlying_price":32366.75,"underlying_index":"BTC-24SEP21","timestamp":1626993722929,"open_interest":729.2,"mark_price":0.00090376,"mark_iv":142.78,"instrument_name":"BTC-24SEP21-8000-P","index_price":32201.67,"greeks":{"vega":1.62145,"theta":-1.82613,"rho":-0.27934,"gamma":0.0,"delta":-0.00407},"bid_iv":0.0,"best_bid_price":0.0005,"best_bid_amount":153.1,"best_ask_price":0.0015,"best_ask_amount":94.7,"ask_iv":152.71}}}"#;
        let Frame::Ticker(t) = parse(&s, option, 7).unwrap() else { panic!() };
        let o = t.option.expect("an option's ticker");
        let text = |d: Option<Decimal>| d.map(|d| d.normalize().to_string());
        assert_eq!(o.mark_price.to_string(), "0.00090376");
        assert_eq!(text(o.mark_iv).as_deref(), Some("1.4278"), "percent becomes a fraction");
        assert_eq!(o.bid_iv, None, "0 is no bid, not a volatility of 0");
        assert_eq!(text(o.ask_iv).as_deref(), Some("1.5271"));
        assert_eq!(text(o.underlying_price).as_deref(), Some("32366.75"));
        assert_eq!(text(o.delta).as_deref(), Some("-0.00407"));
        assert_eq!(text(o.gamma).as_deref(), Some("0"));
        assert_eq!(text(o.rho).as_deref(), Some("-0.27934"));
        assert_eq!((o.ts_exchange_us, o.ts_recv_us), (1_626_993_722_929_000, 7));
        let test = r#"{"jsonrpc":"2.0","method":"heartbeat","params":{"type":"test_request"}}"#;
        assert_eq!(parse(&s, test, 0).unwrap(), Frame::TestRequest);
        let refused = r#"{"jsonrpc":"2.0","id":1,"error":{"message":"Invalid params","code":-32602}}"#;
        assert_eq!(parse(&s, refused, 0).unwrap_err().reason, "refused");
        let answer = r#"{"jsonrpc":"2.0","id":0,"result":["book.BTC-PERPETUAL.raw"],"usIn":1}"#;
        assert_eq!(parse(&s, answer, 0).unwrap(), Frame::Control);
    }
}
