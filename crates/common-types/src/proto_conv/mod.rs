//! Conversions between the domain types and `moat.marketdata.v1` messages.
//!
//! Every NATS payload is a `MarketEvent` envelope, so one decoder serves all
//! subjects and a book snapshot is told from a delta without the subject.
//! Decoding validates: a missing instrument, an unknown enum or a malformed
//! decimal is an error naming the field, never a silently zeroed value.

use moat_proto::marketdata::v1 as pb;
use prost::Message;

use crate::error::Error;
use crate::model::*;

mod wire;

pub(crate) use wire::instrument_field;

use wire::decimal_text;

use crate::symbol::OptionRight;

fn market_to_pb(m: Market) -> pb::Market {
    match m {
        Market::Spot => pb::Market::Spot,
        Market::Perp => pb::Market::Perp,
        Market::Future => pb::Market::Future,
        Market::Option => pb::Market::Option,
    }
}

fn side_to_pb(s: Side) -> pb::Side {
    match s {
        Side::Buy => pb::Side::Buy,
        Side::Sell => pb::Side::Sell,
    }
}

fn side_from_pb(field: &str, v: i32) -> Result<Side, Error> {
    match pb::Side::try_from(v) {
        Ok(pb::Side::Buy) => Ok(Side::Buy),
        Ok(pb::Side::Sell) => Ok(Side::Sell),
        _ => Err(Error::invalid_argument(format!("{field}: side {v} is not buy or sell"))),
    }
}

impl From<&Instrument> for pb::Instrument {
    fn from(i: &Instrument) -> Self {
        pb::Instrument {
            exchange: i.exchange.clone(),
            market: market_to_pb(i.market) as i32,
            symbol: i.symbol.clone(),
            venue_symbol: i.venue_symbol.clone(),
            option: i.option.as_ref().map(|o| pb::OptionContract {
                expiry: o.expiry.clone(),
                strike: decimal_text(&o.strike),
                right: match o.right {
                    OptionRight::Call => pb::OptionRight::Call,
                    OptionRight::Put => pb::OptionRight::Put,
                } as i32,
                settlement_currency: o.settlement.clone(),
            }),
        }
    }
}

fn instrument_from_pb(i: Option<&pb::Instrument>) -> Result<Instrument, Error> {
    let i = i.ok_or_else(|| Error::invalid_argument("instrument is missing"))?;
    let market = match pb::Market::try_from(i.market) {
        Ok(pb::Market::Spot) => Market::Spot,
        Ok(pb::Market::Perp) => Market::Perp,
        Ok(pb::Market::Future) => Market::Future,
        Ok(pb::Market::Option) => Market::Option,
        _ => {
            return Err(Error::invalid_argument(format!(
                "instrument.market: {} is not spot, perp, future or option",
                i.market
            )));
        }
    };
    let option = match &i.option {
        None => None,
        Some(o) => Some(crate::model::OptionContract {
            expiry: o.expiry.clone(),
            strike: crate::model::parse_decimal("instrument.option.strike", &o.strike)?,
            right: match pb::OptionRight::try_from(o.right) {
                Ok(pb::OptionRight::Call) => OptionRight::Call,
                Ok(pb::OptionRight::Put) => OptionRight::Put,
                _ => {
                    return Err(Error::invalid_argument(format!(
                        "instrument.option.right: {} is not call or put",
                        o.right
                    )));
                }
            },
            settlement: o.settlement_currency.clone(),
        }),
    };
    if i.exchange.is_empty() || i.symbol.is_empty() {
        return Err(Error::invalid_argument(
            "instrument: exchange and symbol must not be empty",
        ));
    }
    Ok(Instrument::new(i.exchange.clone(), market, i.symbol.clone(), i.venue_symbol.clone()).with_option(option))
}

fn level_to_pb(l: &Level) -> pb::Level {
    pb::Level {
        price: decimal_text(&l.price),
        qty: decimal_text(&l.qty),
    }
}

fn levels_from_pb(field: &str, levels: &[pb::Level]) -> Result<Vec<Level>, Error> {
    levels
        .iter()
        .map(|l| {
            Ok(Level {
                price: parse_price(field, &l.price)?,
                qty: parse_qty(field, &l.qty)?,
            })
        })
        .collect()
}

/// A timestamp from a message: the microsecond field, or the millisecond
/// field that moat wrote before it carried microseconds.
fn micros(us: i64, legacy_ms: i64) -> i64 {
    if us != 0 { us } else { crate::us_from_ms(legacy_ms) }
}

fn opt_decimal(field: &str, s: &str) -> Result<Option<Decimal>, Error> {
    if s.is_empty() {
        Ok(None)
    } else {
        parse_decimal(field, s).map(Some)
    }
}

impl From<&MarketEvent> for pb::MarketEvent {
    fn from(event: &MarketEvent) -> Self {
        use pb::market_event::Event as E;
        let e = match event {
            MarketEvent::Trade(t) => E::Trade(pb::Trade {
                instrument: Some((&t.instrument).into()),
                trade_id: t.trade_id.clone(),
                price: decimal_text(&t.price),
                qty: decimal_text(&t.qty),
                side: side_to_pb(t.side) as i32,
                ts_exchange_us: t.ts_exchange_us,
                ts_recv_us: t.ts_recv_us,
                ts_exchange_ms: 0,
                ts_recv_ms: 0,
            }),
            MarketEvent::BookSnapshot(b) => E::BookSnapshot(pb::BookSnapshot {
                instrument: Some((&b.instrument).into()),
                sequence: b.sequence,
                bids: b.bids.iter().map(level_to_pb).collect(),
                asks: b.asks.iter().map(level_to_pb).collect(),
                ts_exchange_us: b.ts_exchange_us,
                ts_recv_us: b.ts_recv_us,
                ts_exchange_ms: 0,
                ts_recv_ms: 0,
            }),
            MarketEvent::BookDelta(b) => E::BookDelta(pb::BookDelta {
                instrument: Some((&b.instrument).into()),
                first_sequence: b.first_sequence,
                sequence: b.sequence,
                prev_sequence: b.prev_sequence,
                bids: b.bids.iter().map(level_to_pb).collect(),
                asks: b.asks.iter().map(level_to_pb).collect(),
                ts_exchange_us: b.ts_exchange_us,
                ts_recv_us: b.ts_recv_us,
                ts_exchange_ms: 0,
                ts_recv_ms: 0,
            }),
            MarketEvent::Bbo(b) => E::Bbo(pb::Bbo {
                instrument: Some((&b.instrument).into()),
                sequence: b.sequence,
                bid_price: decimal_text(&b.bid.price),
                bid_qty: decimal_text(&b.bid.qty),
                ask_price: decimal_text(&b.ask.price),
                ask_qty: decimal_text(&b.ask.qty),
                ts_exchange_us: b.ts_exchange_us,
                ts_recv_us: b.ts_recv_us,
                ts_exchange_ms: 0,
                ts_recv_ms: 0,
            }),
            MarketEvent::Funding(f) => E::Funding(pb::Funding {
                instrument: Some((&f.instrument).into()),
                funding_rate: decimal_text(&f.funding_rate),
                mark_price: decimal_text(&f.mark_price),
                index_price: f.index_price.map(|p| decimal_text(&p)).unwrap_or_default(),
                next_funding_ms: f.next_funding_ms,
                ts_exchange_us: f.ts_exchange_us,
                ts_recv_us: f.ts_recv_us,
                ts_exchange_ms: 0,
                ts_recv_ms: 0,
            }),
            MarketEvent::Liquidation(l) => E::Liquidation(pb::Liquidation {
                instrument: Some((&l.instrument).into()),
                side: side_to_pb(l.side) as i32,
                price: decimal_text(&l.price),
                qty: decimal_text(&l.qty),
                order_id: l.order_id.clone().unwrap_or_default(),
                ts_exchange_us: l.ts_exchange_us,
                ts_recv_us: l.ts_recv_us,
                ts_exchange_ms: 0,
                ts_recv_ms: 0,
            }),
            MarketEvent::OpenInterest(o) => E::OpenInterest(pb::OpenInterest {
                instrument: Some((&o.instrument).into()),
                open_interest: decimal_text(&o.open_interest),
                ts_exchange_us: o.ts_exchange_us,
                ts_recv_us: o.ts_recv_us,
                ts_exchange_ms: 0,
                ts_recv_ms: 0,
            }),
            MarketEvent::OptionTicker(t) => {
                let text = |d: Option<Decimal>| d.map(|d| decimal_text(&d)).unwrap_or_default();
                E::OptionTicker(pb::OptionTicker {
                    instrument: Some((&t.instrument).into()),
                    mark_price: decimal_text(&t.mark_price),
                    mark_iv: text(t.mark_iv),
                    bid_iv: text(t.bid_iv),
                    ask_iv: text(t.ask_iv),
                    underlying_price: text(t.underlying_price),
                    delta: text(t.delta),
                    gamma: text(t.gamma),
                    vega: text(t.vega),
                    theta: text(t.theta),
                    rho: text(t.rho),
                    ts_exchange_us: t.ts_exchange_us,
                    ts_recv_us: t.ts_recv_us,
                })
            }
            MarketEvent::Candle(c) => E::Candle(candle_to_pb(c)),
            MarketEvent::Gap(g) => E::Gap(pb::Gap {
                instrument: Some((&g.instrument).into()),
                reason: g.reason.clone(),
                last_sequence: g.last_sequence,
                ts_recv_us: g.ts_recv_us,
                ts_recv_ms: 0,
            }),
        };
        pb::MarketEvent { event: Some(e) }
    }
}

pub fn candle_to_pb(c: &Candle) -> pb::Candle {
    pb::Candle {
        instrument: Some((&c.instrument).into()),
        interval_s: c.interval_s,
        open_time_ms: c.open_time_ms,
        open: decimal_text(&c.open),
        high: decimal_text(&c.high),
        low: decimal_text(&c.low),
        close: decimal_text(&c.close),
        volume: decimal_text(&c.volume),
        trades: c.trades,
        closed: c.closed,
        ts_recv_us: c.ts_recv_us,
        ts_recv_ms: 0,
    }
}

pub fn trade_from_pb(t: &pb::Trade) -> Result<Trade, Error> {
    Ok(Trade {
        instrument: instrument_from_pb(t.instrument.as_ref())?,
        trade_id: t.trade_id.clone(),
        price: parse_price("trade.price", &t.price)?,
        qty: parse_qty("trade.qty", &t.qty)?,
        side: side_from_pb("trade.side", t.side)?,
        ts_exchange_us: micros(t.ts_exchange_us, t.ts_exchange_ms),
        ts_recv_us: micros(t.ts_recv_us, t.ts_recv_ms),
    })
}

impl TryFrom<&pb::MarketEvent> for MarketEvent {
    type Error = Error;

    fn try_from(event: &pb::MarketEvent) -> Result<MarketEvent, Error> {
        use pb::market_event::Event as E;
        let e = event
            .event
            .as_ref()
            .ok_or_else(|| Error::invalid_argument("market event carries no event"))?;
        Ok(match e {
            E::Trade(t) => MarketEvent::Trade(trade_from_pb(t)?),
            E::BookSnapshot(b) => MarketEvent::BookSnapshot(BookSnapshot {
                instrument: instrument_from_pb(b.instrument.as_ref())?,
                sequence: b.sequence,
                bids: levels_from_pb("book_snapshot.bids", &b.bids)?,
                asks: levels_from_pb("book_snapshot.asks", &b.asks)?,
                ts_exchange_us: micros(b.ts_exchange_us, b.ts_exchange_ms),
                ts_recv_us: micros(b.ts_recv_us, b.ts_recv_ms),
            }),
            E::BookDelta(b) => MarketEvent::BookDelta(BookDelta {
                instrument: instrument_from_pb(b.instrument.as_ref())?,
                first_sequence: b.first_sequence,
                sequence: b.sequence,
                prev_sequence: b.prev_sequence,
                bids: levels_from_pb("book_delta.bids", &b.bids)?,
                asks: levels_from_pb("book_delta.asks", &b.asks)?,
                ts_exchange_us: micros(b.ts_exchange_us, b.ts_exchange_ms),
                ts_recv_us: micros(b.ts_recv_us, b.ts_recv_ms),
            }),
            E::Bbo(b) => MarketEvent::Bbo(Bbo {
                instrument: instrument_from_pb(b.instrument.as_ref())?,
                sequence: b.sequence,
                bid: Level {
                    price: parse_price("bbo.bid_price", &b.bid_price)?,
                    qty: parse_qty("bbo.bid_qty", &b.bid_qty)?,
                },
                ask: Level {
                    price: parse_price("bbo.ask_price", &b.ask_price)?,
                    qty: parse_qty("bbo.ask_qty", &b.ask_qty)?,
                },
                ts_exchange_us: micros(b.ts_exchange_us, b.ts_exchange_ms),
                ts_recv_us: micros(b.ts_recv_us, b.ts_recv_ms),
            }),
            E::Funding(f) => MarketEvent::Funding(Funding {
                instrument: instrument_from_pb(f.instrument.as_ref())?,
                funding_rate: parse_decimal("funding.funding_rate", &f.funding_rate)?,
                mark_price: parse_price("funding.mark_price", &f.mark_price)?,
                index_price: opt_decimal("funding.index_price", &f.index_price)?,
                next_funding_ms: f.next_funding_ms,
                ts_exchange_us: micros(f.ts_exchange_us, f.ts_exchange_ms),
                ts_recv_us: micros(f.ts_recv_us, f.ts_recv_ms),
            }),
            E::Liquidation(l) => MarketEvent::Liquidation(Liquidation {
                instrument: instrument_from_pb(l.instrument.as_ref())?,
                side: side_from_pb("liquidation.side", l.side)?,
                price: parse_price("liquidation.price", &l.price)?,
                qty: parse_qty("liquidation.qty", &l.qty)?,
                order_id: (!l.order_id.is_empty()).then(|| l.order_id.clone()),
                ts_exchange_us: micros(l.ts_exchange_us, l.ts_exchange_ms),
                ts_recv_us: micros(l.ts_recv_us, l.ts_recv_ms),
            }),
            E::OpenInterest(o) => MarketEvent::OpenInterest(OpenInterest {
                instrument: instrument_from_pb(o.instrument.as_ref())?,
                open_interest: parse_qty("open_interest.open_interest", &o.open_interest)?,
                ts_exchange_us: micros(o.ts_exchange_us, o.ts_exchange_ms),
                ts_recv_us: micros(o.ts_recv_us, o.ts_recv_ms),
            }),
            E::OptionTicker(t) => MarketEvent::OptionTicker(OptionTicker {
                instrument: instrument_from_pb(t.instrument.as_ref())?,
                mark_price: parse_qty("option_ticker.mark_price", &t.mark_price)?,
                mark_iv: opt_decimal("option_ticker.mark_iv", &t.mark_iv)?,
                bid_iv: opt_decimal("option_ticker.bid_iv", &t.bid_iv)?,
                ask_iv: opt_decimal("option_ticker.ask_iv", &t.ask_iv)?,
                underlying_price: opt_decimal("option_ticker.underlying_price", &t.underlying_price)?,
                delta: opt_decimal("option_ticker.delta", &t.delta)?,
                gamma: opt_decimal("option_ticker.gamma", &t.gamma)?,
                vega: opt_decimal("option_ticker.vega", &t.vega)?,
                theta: opt_decimal("option_ticker.theta", &t.theta)?,
                rho: opt_decimal("option_ticker.rho", &t.rho)?,
                ts_exchange_us: t.ts_exchange_us,
                ts_recv_us: t.ts_recv_us,
            }),
            E::Candle(c) => MarketEvent::Candle(Candle {
                instrument: instrument_from_pb(c.instrument.as_ref())?,
                interval_s: c.interval_s,
                open_time_ms: c.open_time_ms,
                open: parse_price("candle.open", &c.open)?,
                high: parse_price("candle.high", &c.high)?,
                low: parse_price("candle.low", &c.low)?,
                close: parse_price("candle.close", &c.close)?,
                volume: parse_qty("candle.volume", &c.volume)?,
                trades: c.trades,
                closed: c.closed,
                ts_recv_us: micros(c.ts_recv_us, c.ts_recv_ms),
            }),
            E::Gap(g) => MarketEvent::Gap(Gap {
                instrument: instrument_from_pb(g.instrument.as_ref())?,
                reason: g.reason.clone(),
                last_sequence: g.last_sequence,
                ts_recv_us: micros(g.ts_recv_us, g.ts_recv_ms),
            }),
        })
    }
}

/// Encodes an event as the NATS payload, in one allocation for most
/// events (a book's is sized by its levels, so it is not grown level by
/// level).
pub fn encode(event: &MarketEvent) -> Vec<u8> {
    let levels = match event {
        MarketEvent::BookSnapshot(b) => b.bids.len() + b.asks.len(),
        MarketEvent::BookDelta(b) => b.bids.len() + b.asks.len(),
        _ => 0,
    };
    // A level is its key and length and two decimals of up to 20 digits
    // or so, each with its key and length.
    let mut out = Vec::with_capacity(128 + event.instrument().wire().len() + levels * 48);
    wire::write_event(&mut out, event);
    out
}

/// Decodes and validates the payload of a single-event message.
pub fn decode(payload: &[u8]) -> Result<MarketEvent, Error> {
    let message = pb::MarketEvent::decode(payload)
        .map_err(|e| Error::invalid_argument(format!("payload is not a moat.marketdata.v1.MarketEvent: {e}")))?;
    MarketEvent::try_from(&message)
}

/// The header that marks a message carrying an `EventBatch`; its value is
/// the number of events in it.
pub const EVENTS_HEADER: &str = "Moat-Events";

/// Bytes an event of `len` encoded bytes takes inside an `EventBatch`: its
/// field tag, its length and itself.
pub fn batched_len(len: usize) -> usize {
    1 + prost::length_delimiter_len(len) + len
}

/// Encoded events of one subject gathered into the payload of one message.
/// The events are encoded once ([`encode`]); a batch is their
/// concatenation as the repeated field of an `EventBatch`.
#[derive(Default)]
pub struct BatchPayload {
    /// The first event alone: the payload of a single-event message.
    first: Option<bytes::Bytes>,
    batch: Vec<u8>,
    count: usize,
}

impl BatchPayload {
    /// `EventBatch.events`, field 1, length-delimited.
    const EVENTS_TAG: u8 = (1 << 3) | 2;

    pub fn push(&mut self, event: bytes::Bytes) {
        self.batch.push(Self::EVENTS_TAG);
        prost::encoding::encode_varint(event.len() as u64, &mut self.batch);
        self.batch.extend_from_slice(&event);
        if self.first.is_none() {
            self.first = Some(event);
        }
        self.count += 1;
    }

    /// Events gathered.
    pub fn count(&self) -> usize {
        self.count
    }

    /// The payload's size as a batch.
    pub fn encoded_len(&self) -> usize {
        self.batch.len()
    }

    /// The payload, and the value of `Moat-Events` it must be sent with:
    /// none for a single event, which goes as a plain `MarketEvent` that
    /// every consumer reads.
    pub fn finish(self) -> (bytes::Bytes, Option<usize>) {
        match (self.count, self.first) {
            (1, Some(only)) => (only, None),
            (count, _) => (self.batch.into(), Some(count)),
        }
    }
}

/// The headers and payload of one message carrying `events` (all of one
/// subject, in order, at least one), as the collector publishes them.
pub fn batch_message(events: &[MarketEvent]) -> (async_nats::HeaderMap, bytes::Bytes) {
    let mut payload = BatchPayload::default();
    for event in events {
        payload.push(encode(event).into());
    }
    let (payload, count) = payload.finish();
    let mut headers = async_nats::HeaderMap::new();
    if let (Some(first), Some(last)) = (events.first(), events.last()) {
        let id = crate::subject::batch_msg_id(
            &crate::subject::msg_id(first),
            &crate::subject::msg_id(last),
            events.len(),
        );
        headers.insert("Nats-Msg-Id", id.as_str());
    }
    if let Some(count) = count {
        headers.insert(EVENTS_HEADER, count.to_string().as_str());
    }
    (headers, payload)
}

/// The events of one NATS message, not yet validated: one for a message
/// without `Moat-Events`, the batch for one with it. Fails when the payload
/// is not protobuf of the kind the header announces, or holds another
/// number of events than it says.
pub fn message_events(headers: Option<&async_nats::HeaderMap>, payload: &[u8]) -> Result<Vec<pb::MarketEvent>, Error> {
    let Some(count) = headers.and_then(|h| h.get(EVENTS_HEADER)) else {
        let event = pb::MarketEvent::decode(payload)
            .map_err(|e| Error::invalid_argument(format!("payload is not a moat.marketdata.v1.MarketEvent: {e}")))?;
        return Ok(vec![event]);
    };
    let count: usize = count
        .as_str()
        .parse()
        .map_err(|_| Error::invalid_argument(format!("header {EVENTS_HEADER}: '{}' is not a count", count.as_str())))?;
    let batch = pb::EventBatch::decode(payload)
        .map_err(|e| Error::invalid_argument(format!("payload is not a moat.marketdata.v1.EventBatch: {e}")))?;
    if batch.events.len() != count {
        return Err(Error::invalid_argument(format!(
            "header {EVENTS_HEADER} says {count} events but the payload holds {}",
            batch.events.len()
        )));
    }
    Ok(batch.events)
}

/// Encodes one event as [`message_events`] gave it, valid or not (a dead
/// letter keeps what came).
pub fn encode_raw(event: &pb::MarketEvent) -> Vec<u8> {
    event.encode_to_vec()
}

/// Decodes and validates every event of one NATS message; the first
/// invalid event fails the whole message.
pub fn decode_message(headers: Option<&async_nats::HeaderMap>, payload: &[u8]) -> Result<Vec<MarketEvent>, Error> {
    message_events(headers, payload)?
        .iter()
        .map(MarketEvent::try_from)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instrument() -> Instrument {
        Instrument::new("okx", Market::Perp, "UNI-USD-PERP", "UNI-USD-SWAP")
    }

    fn d(s: &str) -> Decimal {
        parse_decimal("test", s).unwrap()
    }

    fn samples() -> Vec<MarketEvent> {
        let level = |p: &str, q: &str| Level { price: d(p), qty: d(q) };
        vec![
            MarketEvent::Trade(Trade {
                instrument: instrument(),
                trade_id: "242720720".into(),
                price: d("6.0710"),
                qty: d("0.00012000"),
                side: Side::Sell,
                ts_exchange_us: 1652459225000,
                ts_recv_us: 1652459225503,
            }),
            MarketEvent::BookSnapshot(BookSnapshot {
                instrument: instrument(),
                sequence: 42,
                bids: vec![level("6.07", "10"), level("6.06", "3.5")],
                asks: vec![level("6.08", "1")],
                ts_exchange_us: 1,
                ts_recv_us: 2,
            }),
            MarketEvent::BookDelta(BookDelta {
                instrument: instrument(),
                first_sequence: 43,
                sequence: 45,
                prev_sequence: 42,
                bids: vec![level("6.07", "0")],
                asks: vec![],
                ts_exchange_us: 3,
                ts_recv_us: 4,
            }),
            MarketEvent::Bbo(Bbo {
                instrument: instrument(),
                sequence: 7,
                bid: level("6.07", "10"),
                ask: level("6.08", "2"),
                ts_exchange_us: 5,
                ts_recv_us: 6,
            }),
            MarketEvent::Funding(Funding {
                instrument: instrument(),
                funding_rate: d("-0.00012"),
                mark_price: d("6.075"),
                index_price: None,
                next_funding_ms: 1652486400000,
                ts_exchange_us: 7,
                ts_recv_us: 8,
            }),
            MarketEvent::Liquidation(Liquidation {
                instrument: instrument(),
                side: Side::Buy,
                price: d("6.1"),
                qty: d("100"),
                order_id: Some("x1".into()),
                ts_exchange_us: 9,
                ts_recv_us: 10,
            }),
            MarketEvent::OpenInterest(OpenInterest {
                instrument: instrument(),
                open_interest: d("123456.7"),
                ts_exchange_us: 11,
                ts_recv_us: 12,
            }),
            MarketEvent::OptionTicker(OptionTicker {
                instrument: Instrument::new("deribit", Market::Option, "BTC-BTC-210924-8000-P", "BTC-24SEP21-8000-P")
                    .with_option(Some(OptionContract {
                        expiry: "210924".into(),
                        strike: d("8000"),
                        right: OptionRight::Put,
                        settlement: "BTC".into(),
                    })),
                mark_price: d("0.00090376"),
                mark_iv: Some(d("1.4278")),
                bid_iv: Some(d("1.33")),
                ask_iv: None,
                underlying_price: Some(d("32366.75")),
                delta: Some(d("-0.00407")),
                gamma: Some(d("0")),
                vega: Some(d("1.62145")),
                theta: Some(d("-1.82613")),
                rho: None,
                ts_exchange_us: 1626993722929000,
                ts_recv_us: 1626993723840792,
            }),
            MarketEvent::Candle(Candle {
                instrument: instrument(),
                interval_s: 60,
                open_time_ms: 1652459220000,
                open: d("6.07"),
                high: d("6.09"),
                low: d("6.05"),
                close: d("6.08"),
                volume: d("1234.5"),
                trades: 17,
                closed: true,
                ts_recv_us: 13,
            }),
            MarketEvent::Gap(Gap {
                instrument: instrument(),
                reason: "sequence_gap".into(),
                last_sequence: 45,
                ts_recv_us: 14,
            }),
        ]
    }

    #[test]
    fn every_kind_round_trips_through_protobuf() {
        for event in samples() {
            let back = decode(&encode(&event)).unwrap();
            assert_eq!(back, event);
        }
    }

    /// The (µs, legacy ms) timestamp pairs of a message, of every kind.
    fn timestamp_pairs(message: &mut pb::MarketEvent) -> Vec<(&mut i64, &mut i64)> {
        use pb::market_event::Event as E;
        match message.event.as_mut().unwrap() {
            E::Trade(x) => vec![
                (&mut x.ts_exchange_us, &mut x.ts_exchange_ms),
                (&mut x.ts_recv_us, &mut x.ts_recv_ms),
            ],
            E::BookSnapshot(x) => vec![
                (&mut x.ts_exchange_us, &mut x.ts_exchange_ms),
                (&mut x.ts_recv_us, &mut x.ts_recv_ms),
            ],
            E::BookDelta(x) => vec![
                (&mut x.ts_exchange_us, &mut x.ts_exchange_ms),
                (&mut x.ts_recv_us, &mut x.ts_recv_ms),
            ],
            E::Bbo(x) => vec![
                (&mut x.ts_exchange_us, &mut x.ts_exchange_ms),
                (&mut x.ts_recv_us, &mut x.ts_recv_ms),
            ],
            E::Funding(x) => vec![
                (&mut x.ts_exchange_us, &mut x.ts_exchange_ms),
                (&mut x.ts_recv_us, &mut x.ts_recv_ms),
            ],
            E::Liquidation(x) => vec![
                (&mut x.ts_exchange_us, &mut x.ts_exchange_ms),
                (&mut x.ts_recv_us, &mut x.ts_recv_ms),
            ],
            E::OpenInterest(x) => vec![
                (&mut x.ts_exchange_us, &mut x.ts_exchange_ms),
                (&mut x.ts_recv_us, &mut x.ts_recv_ms),
            ],
            E::Candle(x) => vec![(&mut x.ts_recv_us, &mut x.ts_recv_ms)],
            E::Gap(x) => vec![(&mut x.ts_recv_us, &mut x.ts_recv_ms)],
            // Came after microseconds: no millisecond fields.
            E::OptionTicker(_) => vec![],
        }
    }

    /// A message written before events carried microseconds has only the
    /// millisecond fields: every kind reads them as whole thousands of µs.
    /// One that carries both is read from the microseconds.
    #[test]
    fn millisecond_messages_from_before_read_as_microseconds() {
        for event in samples() {
            let mut old = pb::MarketEvent::from(&event);
            if timestamp_pairs(&mut old).is_empty() {
                continue;
            }
            for (us, ms) in timestamp_pairs(&mut old) {
                (*us, *ms) = (0, 1_652_459_225_503);
            }
            let back = decode(&old.encode_to_vec()).unwrap();
            assert_eq!(back.ts_recv_us(), 1_652_459_225_503_000, "{back:?}");
            if !matches!(back, MarketEvent::Candle(_)) {
                assert_eq!(back.ts_exchange_us(), 1_652_459_225_503_000, "{back:?}");
            }
            let mut both = pb::MarketEvent::from(&event);
            for (_, ms) in timestamp_pairs(&mut both) {
                *ms = 1;
            }
            assert_eq!(decode(&both.encode_to_vec()).unwrap(), event);
        }
    }

    #[test]
    fn decimals_survive_as_written() {
        let MarketEvent::Trade(t) = &samples()[0] else {
            unreachable!()
        };
        let pb = pb::MarketEvent::from(&MarketEvent::Trade(t.clone()));
        let Some(pb::market_event::Event::Trade(pt)) = pb.event else {
            unreachable!()
        };
        assert_eq!(pt.price, "6.0710");
        assert_eq!(pt.qty, "0.00012000");
    }

    #[test]
    fn invalid_payloads_name_the_problem() {
        assert!(
            decode(b"\xff\xff\xff")
                .unwrap_err()
                .message
                .contains("not a moat.marketdata.v1.MarketEvent")
        );
        let empty = pb::MarketEvent { event: None }.encode_to_vec();
        assert_eq!(decode(&empty).unwrap_err().message, "market event carries no event");

        let mut bad_price = pb::MarketEvent::from(&samples()[0]);
        if let Some(pb::market_event::Event::Trade(t)) = &mut bad_price.event {
            t.price = "-1".into();
        }
        let err = decode(&bad_price.encode_to_vec()).unwrap_err();
        assert!(err.message.starts_with("trade.price"), "{}", err.message);

        let mut no_instrument = pb::MarketEvent::from(&samples()[0]);
        if let Some(pb::market_event::Event::Trade(t)) = &mut no_instrument.event {
            t.instrument = None;
        }
        assert_eq!(
            decode(&no_instrument.encode_to_vec()).unwrap_err().message,
            "instrument is missing"
        );
    }

    fn batch_of(events: &[MarketEvent]) -> (bytes::Bytes, Option<usize>) {
        let mut batch = BatchPayload::default();
        for event in events {
            batch.push(encode(event).into());
        }
        let expected_len: usize = events.iter().map(|e| batched_len(encode(e).len())).sum();
        assert_eq!(batch.encoded_len(), expected_len);
        batch.finish()
    }

    #[test]
    fn a_batch_round_trips_and_its_sizes_add_up() {
        let events = samples();
        let (payload, count) = batch_of(&events);
        assert_eq!(count, Some(events.len()));
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(EVENTS_HEADER, events.len().to_string().as_str());
        assert_eq!(decode_message(Some(&headers), &payload).unwrap(), events);
        // The same bytes as prost's own encoding of the batch.
        let expected = pb::EventBatch {
            events: events.iter().map(pb::MarketEvent::from).collect(),
        }
        .encode_to_vec();
        assert_eq!(&payload[..], &expected[..]);
        // One event goes without the header, as a plain MarketEvent.
        let (single, count) = batch_of(&events[..1]);
        assert_eq!(count, None);
        assert_eq!(&single[..], &encode(&events[0])[..]);
        assert_eq!(decode_message(None, &single).unwrap(), vec![events[0].clone()]);
    }

    #[test]
    fn a_batch_that_disagrees_with_its_header_is_refused() {
        let events = samples();
        let (payload, _) = batch_of(&events);
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(EVENTS_HEADER, "3");
        let err = decode_message(Some(&headers), &payload).unwrap_err();
        assert_eq!(
            err.message,
            format!(
                "header Moat-Events says 3 events but the payload holds {}",
                events.len()
            )
        );
        headers.insert(EVENTS_HEADER, "many");
        let err = decode_message(Some(&headers), &payload).unwrap_err();
        assert!(err.message.contains("'many' is not a count"), "{}", err.message);
    }
}
