//! OKX frames to normalized events. Strings are borrowed from the frame and
//! prices parsed straight into exact decimals.

use moat_common_types::model::{Bbo, Funding, Level, OpenInterest, OptionTicker, Trade};
use moat_common_types::{Instrument, Side, us_from_ms};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::Symbols;
use crate::venues::{Reject, json, number, price, qty};

/// A `books` message in venue terms, ready for [`super::book::OkxBook`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BookMessage {
    pub instrument: Instrument,
    pub snapshot: bool,
    pub bids: Vec<Level>,
    pub asks: Vec<Level>,
    /// CRC32 of the top 25 levels after applying this message.
    pub checksum: Option<i32>,
    pub seq_id: Option<i64>,
    pub prev_seq_id: Option<i64>,
    pub ts_exchange_us: i64,
}

/// What one frame carried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    Trades(Vec<Trade>),
    Bbo(Bbo),
    Book(BookMessage),
    Funding(Funding),
    /// The `mark-price` channel: the connector puts it into the funding
    /// events of the instrument.
    MarkPrice {
        instrument: moat_common_types::Instrument,
        mark_price: moat_common_types::Decimal,
        ts_exchange_us: i64,
    },
    OpenInterest(OpenInterest),
    /// The `opt-summary` channel: greeks and volatilities of every option
    /// of a family, those moat collects kept. Its mark price is zero: the
    /// connector fills in the last one from `mark-price`.
    OptionSummary(Vec<OptionTicker>),
    /// Subscription answers, `pong` and other control frames.
    Control,
}

#[derive(Deserialize)]
struct Arg<'a> {
    channel: &'a str,
    #[serde(rename = "instId", default)]
    inst_id: Option<&'a str>,
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow)]
    arg: Option<Arg<'a>>,
    #[serde(default)]
    action: Option<&'a str>,
    #[serde(default)]
    event: Option<&'a str>,
    #[serde(default)]
    msg: Option<String>,
    #[serde(borrow)]
    data: Option<&'a RawValue>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawTrade<'a> {
    inst_id: &'a str,
    trade_id: &'a str,
    px: &'a str,
    sz: &'a str,
    side: &'a str,
    ts: &'a str,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawTicker<'a> {
    inst_id: &'a str,
    bid_px: &'a str,
    bid_sz: &'a str,
    ask_px: &'a str,
    ask_sz: &'a str,
    ts: &'a str,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawBook<'a> {
    #[serde(borrow)]
    asks: Vec<LevelText<'a>>,
    #[serde(borrow)]
    bids: Vec<LevelText<'a>>,
    ts: &'a str,
    #[serde(default)]
    checksum: Option<i32>,
    #[serde(default)]
    seq_id: Option<i64>,
    #[serde(default)]
    prev_seq_id: Option<i64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawFunding<'a> {
    inst_id: &'a str,
    funding_rate: &'a str,
    #[serde(default)]
    next_funding_time: Option<&'a str>,
    #[serde(default)]
    funding_time: Option<&'a str>,
    #[serde(default)]
    ts: Option<&'a str>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawMarkPrice<'a> {
    inst_id: &'a str,
    mark_px: &'a str,
    ts: &'a str,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawOpenInterest<'a> {
    inst_id: &'a str,
    oi: &'a str,
    ts: &'a str,
}

/// One option of an `opt-summary` push. Of the two sets of greeks OKX
/// sends, the Black–Scholes ones (`…BS`, in the quote currency) are kept:
/// they are what other venues (Deribit) send as greeks.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawOptionSummary<'a> {
    inst_id: &'a str,
    #[serde(default)]
    mark_vol: Option<&'a str>,
    #[serde(default)]
    bid_vol: Option<&'a str>,
    #[serde(default)]
    ask_vol: Option<&'a str>,
    /// The forward price of the underlying at the option's expiry.
    #[serde(default)]
    fwd_px: Option<&'a str>,
    #[serde(default, rename = "deltaBS")]
    delta_bs: Option<&'a str>,
    #[serde(default, rename = "gammaBS")]
    gamma_bs: Option<&'a str>,
    #[serde(default, rename = "vegaBS")]
    vega_bs: Option<&'a str>,
    #[serde(default, rename = "thetaBS")]
    theta_bs: Option<&'a str>,
    ts: &'a str,
}

/// A number OKX may leave empty (`""`) when it has none.
fn maybe_number(field: &'static str, value: Option<&str>) -> Result<Option<moat_common_types::Decimal>, Reject> {
    value.filter(|v| !v.is_empty()).map(|v| number(field, v)).transpose()
}

/// A volatility: OKX sends 0 for a side with no order, which is no
/// volatility rather than one of zero.
fn volatility(field: &'static str, value: Option<&str>) -> Result<Option<moat_common_types::Decimal>, Reject> {
    Ok(maybe_number(field, value)?.filter(|v| !v.is_zero()))
}

fn millis(field: &'static str, value: &str) -> Result<i64, Reject> {
    value
        .parse()
        .map_err(|_| Reject::new("number", format!("{field}: '{value}' is not a millisecond timestamp")))
}

/// A millisecond timestamp field in microseconds, the unit of events.
fn micros(field: &'static str, value: &str) -> Result<i64, Reject> {
    millis(field, value).map(us_from_ms)
}

/// A book level as OKX sends it, `[price, size, …]` (the fields after the
/// size are deprecated or counts moat does not keep), read without a
/// vector of its own.
struct LevelText<'a> {
    price: &'a str,
    size: &'a str,
}

impl<'de: 'a, 'a> Deserialize<'de> for LevelText<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for Visitor<'a> {
            type Value = LevelText<'a>;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a level [price, size, …]")
            }

            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let missing = || serde::de::Error::custom("a book level has no price and size");
                let price = seq.next_element()?.ok_or_else(missing)?;
                let size = seq.next_element()?.ok_or_else(missing)?;
                while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
                Ok(LevelText { price, size })
            }
        }
        deserializer.deserialize_seq(Visitor(std::marker::PhantomData))
    }
}

fn levels(side: &'static str, raw: &[LevelText<'_>]) -> Result<Vec<Level>, Reject> {
    raw.iter()
        .map(|level| {
            Ok(Level {
                price: price(side, level.price)?,
                qty: qty(side, level.size)?,
            })
        })
        .collect()
}

/// Parses one text frame received at `ts_recv_us`.
pub fn parse(symbols: &Symbols, frame: &str, ts_recv_us: i64) -> Result<Frame, Reject> {
    if frame == "pong" {
        return Ok(Frame::Control);
    }
    // The usual layout is read in one pass. Anything it does not take
    // (other keys, another order, a refusal) goes through the full parse
    // below, so the outcome is the same either way.
    if let Some((arg, action, data)) = split_envelope(frame)
        && let Ok(parsed) = parse_data(symbols, &arg, action, data, ts_recv_us)
    {
        return Ok(parsed);
    }
    let envelope: Envelope<'_> = json(frame)?;
    if let Some(event) = envelope.event {
        if event == "error" {
            return Err(Reject::new(
                "venue_error",
                envelope.msg.unwrap_or_else(|| frame.to_owned()),
            ));
        }
        return Ok(Frame::Control);
    }
    let (Some(arg), Some(data)) = (envelope.arg, envelope.data) else {
        return Ok(Frame::Control);
    };
    parse_data(symbols, &arg, envelope.action, data.get(), ts_recv_us)
}

/// `{"arg":{"channel":"<c>","instId":"<id>"},["action":"<a>",]"data":<data>}`
/// exactly as OKX writes a push: its subscription, action and the text of
/// its data, found without a parse of the envelope (which would read the
/// data twice). `None` for any other layout.
fn split_envelope(frame: &str) -> Option<(Arg<'_>, Option<&str>, &str)> {
    let (channel, rest) = frame.strip_prefix("{\"arg\":{\"channel\":\"")?.split_once('"')?;
    let (inst_id, rest) = rest.strip_prefix(",\"instId\":\"")?.split_once('"')?;
    let rest = rest.strip_prefix("},")?;
    let (action, rest) = match rest.strip_prefix("\"action\":\"") {
        Some(rest) => {
            let (action, rest) = rest.split_once('"')?;
            (Some(action), rest.strip_prefix(',')?)
        }
        None => (None, rest),
    };
    let data = rest.strip_prefix("\"data\":")?.strip_suffix('}')?;
    let arg = Arg {
        channel,
        inst_id: Some(inst_id),
    };
    Some((arg, action, data))
}

/// Parses the data of a push on the subscription `arg`.
fn parse_data(
    symbols: &Symbols,
    arg: &Arg<'_>,
    action: Option<&str>,
    data: &str,
    ts_recv_us: i64,
) -> Result<Frame, Reject> {
    match arg.channel {
        "trades" => {
            let raw: Vec<RawTrade<'_>> = json(data)?;
            let trades = raw
                .iter()
                .map(|t| {
                    Ok(Trade {
                        instrument: symbols.instrument(t.inst_id)?,
                        trade_id: t.trade_id.to_owned(),
                        price: price("px", t.px)?,
                        qty: qty("sz", t.sz)?,
                        side: match t.side {
                            "buy" => Side::Buy,
                            "sell" => Side::Sell,
                            other => return Err(Reject::new("json", format!("side '{other}'"))),
                        },
                        ts_exchange_us: micros("ts", t.ts)?,
                        ts_recv_us,
                    })
                })
                .collect::<Result<Vec<_>, Reject>>()?;
            Ok(Frame::Trades(trades))
        }
        "tickers" => {
            let raw: Vec<RawTicker<'_>> = json(data)?;
            let t = raw.first().ok_or_else(|| Reject::new("json", "empty tickers data"))?;
            let ts = micros("ts", t.ts)?;
            Ok(Frame::Bbo(Bbo {
                instrument: symbols.instrument(t.inst_id)?,
                // Tickers carry no sequence; the exchange time orders them.
                sequence: ts as u64,
                bid: Level {
                    price: price("bidPx", t.bid_px)?,
                    qty: qty("bidSz", t.bid_sz)?,
                },
                ask: Level {
                    price: price("askPx", t.ask_px)?,
                    qty: qty("askSz", t.ask_sz)?,
                },
                ts_exchange_us: ts,
                ts_recv_us,
            }))
        }
        "books" | "books-l2-tbt" | "books50-l2-tbt" => {
            let inst_id = arg.inst_id.ok_or_else(|| Reject::new("json", "books without instId"))?;
            let raw: Vec<RawBook<'_>> = json(data)?;
            let b = raw.first().ok_or_else(|| Reject::new("json", "empty books data"))?;
            Ok(Frame::Book(BookMessage {
                instrument: symbols.instrument(inst_id)?,
                snapshot: action == Some("snapshot"),
                bids: levels("bids", &b.bids)?,
                asks: levels("asks", &b.asks)?,
                checksum: b.checksum,
                seq_id: b.seq_id,
                prev_seq_id: b.prev_seq_id,
                ts_exchange_us: micros("ts", b.ts)?,
            }))
        }
        "funding-rate" => {
            let raw: Vec<RawFunding<'_>> = json(data)?;
            let f = raw
                .first()
                .ok_or_else(|| Reject::new("json", "empty funding-rate data"))?;
            let ts = match f.ts.or(f.funding_time) {
                Some(ts) => micros("ts", ts)?,
                None => ts_recv_us,
            };
            Ok(Frame::Funding(Funding {
                instrument: symbols.instrument(f.inst_id)?,
                funding_rate: number("fundingRate", f.funding_rate)?,
                // The funding-rate channel carries no mark price: the
                // connector fills in the last one from `mark-price` (zero
                // until one arrived).
                mark_price: moat_common_types::Decimal::ZERO,
                index_price: None,
                next_funding_ms: f
                    .next_funding_time
                    .map(|t| millis("nextFundingTime", t))
                    .transpose()?
                    .unwrap_or(0),
                ts_exchange_us: ts,
                ts_recv_us,
            }))
        }
        "mark-price" => {
            let raw: Vec<RawMarkPrice<'_>> = json(data)?;
            let m = raw
                .first()
                .ok_or_else(|| Reject::new("json", "empty mark-price data"))?;
            Ok(Frame::MarkPrice {
                instrument: symbols.instrument(m.inst_id)?,
                mark_price: price("markPx", m.mark_px)?,
                ts_exchange_us: micros("ts", m.ts)?,
            })
        }
        "open-interest" => {
            let raw: Vec<RawOpenInterest<'_>> = json(data)?;
            let o = raw
                .first()
                .ok_or_else(|| Reject::new("json", "empty open-interest data"))?;
            Ok(Frame::OpenInterest(OpenInterest {
                instrument: symbols.instrument(o.inst_id)?,
                open_interest: qty("oi", o.oi)?,
                ts_exchange_us: micros("ts", o.ts)?,
                ts_recv_us,
            }))
        }
        "opt-summary" => {
            let raw: Vec<RawOptionSummary<'_>> = json(data)?;
            // A family holds every strike and expiry; moat keeps the
            // options it collects.
            let tickers = raw
                .iter()
                .filter_map(|o| symbols.get(o.inst_id).map(|instrument| (o, instrument)))
                .map(|(o, instrument)| {
                    Ok(OptionTicker {
                        instrument: instrument.clone(),
                        mark_price: moat_common_types::Decimal::ZERO,
                        mark_iv: volatility("markVol", o.mark_vol)?,
                        bid_iv: volatility("bidVol", o.bid_vol)?,
                        ask_iv: volatility("askVol", o.ask_vol)?,
                        underlying_price: maybe_number("fwdPx", o.fwd_px)?,
                        delta: maybe_number("deltaBS", o.delta_bs)?,
                        gamma: maybe_number("gammaBS", o.gamma_bs)?,
                        vega: maybe_number("vegaBS", o.vega_bs)?,
                        theta: maybe_number("thetaBS", o.theta_bs)?,
                        rho: None,
                        ts_exchange_us: micros("ts", o.ts)?,
                        ts_recv_us,
                    })
                })
                .collect::<Result<Vec<_>, Reject>>()?;
            Ok(Frame::OptionSummary(tickers))
        }
        _ => Ok(Frame::Control),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn symbols() -> Symbols {
        super::super::symbols("okx", &["BTC-USDT", "BTC-USDT-SWAP"])
            .all_known()
            .unwrap()
    }

    #[test]
    fn bad_input_is_rejected_by_reason() {
        let s = symbols();
        let trade = |px: &str, sz: &str, inst: &str| {
            format!(
                r#"{{"arg":{{"channel":"trades","instId":"{inst}"}},"data":[{{"instId":"{inst}","tradeId":"1","px":"{px}","sz":"{sz}","side":"buy","ts":"1"}}]}}"#
            )
        };
        assert_eq!(parse(&s, &trade("0", "1", "BTC-USDT"), 0).unwrap_err().reason, "price");
        assert_eq!(parse(&s, &trade("1", "-1", "BTC-USDT"), 0).unwrap_err().reason, "qty");
        assert_eq!(
            parse(&s, &trade("abc", "1", "BTC-USDT"), 0).unwrap_err().reason,
            "number"
        );
        assert_eq!(
            parse(&s, &trade("1", "1", "ETH-USDT"), 0).unwrap_err().reason,
            "unknown_symbol"
        );
        assert_eq!(parse(&s, "{not json", 0).unwrap_err().reason, "json");
        assert_eq!(
            parse(&s, r#"{"event":"error","code":"60012","msg":"Invalid request"}"#, 0)
                .unwrap_err()
                .reason,
            "venue_error"
        );
        assert_eq!(parse(&s, "pong", 0).unwrap(), Frame::Control);
    }

    #[test]
    fn mark_price_parses_and_bad_marks_are_refused() {
        let s = symbols();
        let mark = r#"{"arg":{"channel":"mark-price","instId":"BTC-USDT-SWAP"},"data":[{"instType":"SWAP","instId":"BTC-USDT-SWAP","markPx":"42310.6","ts":"1630049139746"}]}"#;
        let Frame::MarkPrice {
            instrument,
            mark_price,
            ts_exchange_us,
        } = parse(&s, mark, 5).unwrap()
        else {
            panic!("not a mark price")
        };
        assert_eq!(
            (instrument.symbol.as_str(), mark_price.to_string(), ts_exchange_us),
            ("BTC-USDT-PERP", "42310.6".to_owned(), 1_630_049_139_746_000)
        );
        let zero = mark.replace("42310.6", "0");
        assert_eq!(parse(&s, &zero, 5).unwrap_err().reason, "price");
    }

    #[test]
    fn funding_and_open_interest_parse() {
        let s = symbols();
        // Shapes from OKX's v5 documentation.
        let funding = r#"{"arg":{"channel":"funding-rate","instId":"BTC-USDT-SWAP"},"data":[{"fundingRate":"0.0001875391284828","fundingTime":"1700726400000","instId":"BTC-USDT-SWAP","instType":"SWAP","nextFundingTime":"1700755200000","ts":"1700724675402"}]}"#;
        let Frame::Funding(f) = parse(&s, funding, 5).unwrap() else {
            panic!("not funding")
        };
        assert_eq!(f.instrument.symbol, "BTC-USDT-PERP");
        assert_eq!(f.funding_rate.to_string(), "0.0001875391284828");
        assert_eq!(
            (f.next_funding_ms, f.ts_exchange_us),
            (1_700_755_200_000, 1_700_724_675_402_000)
        );
        let oi = r#"{"arg":{"channel":"open-interest","instId":"BTC-USDT-SWAP"},"data":[{"instId":"BTC-USDT-SWAP","instType":"SWAP","oi":"5000","oiCcy":"555.55","ts":"1597026383085"}]}"#;
        let Frame::OpenInterest(o) = parse(&s, oi, 5).unwrap() else {
            panic!("not open interest")
        };
        assert_eq!(o.open_interest.to_string(), "5000");
    }

    #[test]
    fn option_summaries_keep_the_collected_options_with_black_scholes_greeks() {
        let symbols = super::super::symbols("okx", &["BTC-USD-241013-70000-P"]);
        let summary = r#"{"arg":{"channel":"opt-summary","instFamily":"BTC-USD"},"data":[{"instType":"OPTION","instId":"BTC-USD-241013-70000-P","uly":"BTC-USD","delta":"-1.1180902625","gamma":"2.2361957091","vega":"0.0000000001","theta":"0.0000032334","lever":"8.465747567","markVol":"0.3675503331","bidVol":"0","askVol":"1.1669998535","realVol":"","deltaBS":"-0.9999672034","gammaBS":"0.0000000002","thetaBS":"28.2649858387","vegaBS":"0.0000114332","ts":"1728703155650","fwdPx":"62604.6993093463","volLv":"0.2044711229"},{"instType":"OPTION","instId":"BTC-USD-241013-71000-P","uly":"BTC-USD","markVol":"0.4","bidVol":"","askVol":"","deltaBS":"","gammaBS":"","thetaBS":"","vegaBS":"","ts":"1728703155650","fwdPx":""}]}"#;
        let Frame::OptionSummary(tickers) = parse(&symbols, summary, 9).unwrap() else {
            panic!()
        };
        assert_eq!(tickers.len(), 1, "options not collected are left out");
        let t = &tickers[0];
        assert_eq!(t.instrument.symbol, "BTC-USD-241013-70000-P");
        assert_eq!(t.mark_iv.unwrap().to_string(), "0.3675503331");
        assert_eq!(t.bid_iv, None, "0 is no bid");
        assert_eq!(t.delta.unwrap().to_string(), "-0.9999672034", "the Black-Scholes delta");
        assert_eq!(t.theta.unwrap().to_string(), "28.2649858387");
        assert_eq!(t.underlying_price.unwrap().to_string(), "62604.6993093463");
        assert_eq!((t.rho, t.ts_exchange_us), (None, 1_728_703_155_650_000));
        let bad = summary.replace("\"markVol\":\"0.3675503331\"", "\"markVol\":\"x\"");
        assert_eq!(parse(&symbols, &bad, 9).unwrap_err().reason, "number");
    }
}
