//! ClickHouse rows of each table, built from decoded market events.
//!
//! Decimals go into `Decimal(38, 18)` columns as scaled 128-bit integers
//! (RowBinary's encoding), computed exactly from the decimal: a value with
//! more than 18 fractional digits or beyond the column's range is refused
//! here, with the reason, instead of being rounded or overflowing.
//! Timestamps are `DateTime64(6)` (microseconds since the epoch) and
//! `open_time` is `DateTime64(3)` (milliseconds), RowBinary's integers.

use clickhouse::Row;
use moat_common_types::model::{Level, MarketEvent, Side};
use moat_common_types::{Decimal, Instrument};
use serde::Serialize;

use crate::schema::DECIMAL_SCALE;

/// Why an event cannot become a row.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct RowError {
    pub field: &'static str,
    pub message: String,
}

/// `Decimal(38, 18)` as RowBinary's scaled integer.
pub fn scaled(field: &'static str, value: Decimal) -> Result<i128, RowError> {
    let scale = value.scale();
    if scale > DECIMAL_SCALE {
        return Err(RowError {
            field,
            message: format!("{value} has more than {DECIMAL_SCALE} decimal places"),
        });
    }
    let factor = 10i128.pow(DECIMAL_SCALE - scale);
    let limit = 10i128.pow(38);
    value
        .mantissa()
        .checked_mul(factor)
        .filter(|v| v.abs() < limit)
        .ok_or_else(|| RowError {
            field,
            message: format!("{value} does not fit Decimal(38, {DECIMAL_SCALE})"),
        })
}

fn side(side: Side) -> i8 {
    match side {
        Side::Buy => 1,
        Side::Sell => 2,
    }
}

#[derive(Debug, Clone, Row, Serialize)]
pub struct TradeRow {
    pub exchange: String,
    pub market: String,
    pub symbol: String,
    pub venue_symbol: String,
    pub trade_id: String,
    pub price: i128,
    pub qty: i128,
    pub side: i8,
    pub ts_exchange: i64,
    pub ts_recv: i64,
}

#[derive(Debug, Clone, Row, Serialize)]
pub struct BboRow {
    pub exchange: String,
    pub market: String,
    pub symbol: String,
    pub sequence: u64,
    pub bid_price: i128,
    pub bid_qty: i128,
    pub ask_price: i128,
    pub ask_qty: i128,
    pub ts_exchange: i64,
    pub ts_recv: i64,
}

#[derive(Debug, Clone, Row, Serialize)]
pub struct BookSnapshotRow {
    pub exchange: String,
    pub market: String,
    pub symbol: String,
    pub sequence: u64,
    pub bid_prices: Vec<i128>,
    pub bid_qtys: Vec<i128>,
    pub ask_prices: Vec<i128>,
    pub ask_qtys: Vec<i128>,
    pub ts_exchange: i64,
    pub ts_recv: i64,
}

#[derive(Debug, Clone, Row, Serialize)]
pub struct BookDeltaRow {
    pub exchange: String,
    pub market: String,
    pub symbol: String,
    pub first_sequence: u64,
    pub sequence: u64,
    pub prev_sequence: u64,
    pub bid_prices: Vec<i128>,
    pub bid_qtys: Vec<i128>,
    pub ask_prices: Vec<i128>,
    pub ask_qtys: Vec<i128>,
    pub ts_exchange: i64,
    pub ts_recv: i64,
}

#[derive(Debug, Clone, Row, Serialize)]
pub struct FundingRow {
    pub exchange: String,
    pub market: String,
    pub symbol: String,
    pub funding_rate: i128,
    pub mark_price: i128,
    pub index_price: Option<i128>,
    pub next_funding_ms: i64,
    pub ts_exchange: i64,
    pub ts_recv: i64,
}

#[derive(Debug, Clone, Row, Serialize)]
pub struct LiquidationRow {
    pub exchange: String,
    pub market: String,
    pub symbol: String,
    pub side: i8,
    pub price: i128,
    pub qty: i128,
    pub order_id: String,
    pub ts_exchange: i64,
    pub ts_recv: i64,
}

#[derive(Debug, Clone, Row, Serialize)]
pub struct OpenInterestRow {
    pub exchange: String,
    pub market: String,
    pub symbol: String,
    pub open_interest: i128,
    pub ts_exchange: i64,
    pub ts_recv: i64,
}

#[derive(Debug, Clone, Row, Serialize)]
pub struct OptionTickerRow {
    pub exchange: String,
    pub market: String,
    pub symbol: String,
    pub mark_price: i128,
    pub mark_iv: Option<i128>,
    pub bid_iv: Option<i128>,
    pub ask_iv: Option<i128>,
    pub underlying_price: Option<i128>,
    pub delta: Option<i128>,
    pub gamma: Option<i128>,
    pub vega: Option<i128>,
    pub theta: Option<i128>,
    pub rho: Option<i128>,
    pub ts_exchange: i64,
    pub ts_recv: i64,
}

#[derive(Debug, Clone, Row, Serialize)]
pub struct VenueCandleRow {
    pub exchange: String,
    pub market: String,
    pub symbol: String,
    pub interval_s: u32,
    pub open_time: i64,
    pub open: i128,
    pub high: i128,
    pub low: i128,
    pub close: i128,
    pub volume: i128,
    pub trades: u64,
    pub closed: u8,
    pub ts_recv: i64,
}

#[derive(Debug, Clone, Row, Serialize)]
pub struct GapRow {
    pub exchange: String,
    pub market: String,
    pub symbol: String,
    pub reason: String,
    pub last_sequence: u64,
    pub ts_recv: i64,
}

/// One row for one table, tagged by variant.
#[derive(Debug, Clone)]
pub enum TableRow {
    Trade(TradeRow),
    Bbo(BboRow),
    BookSnapshot(BookSnapshotRow),
    BookDelta(BookDeltaRow),
    Funding(FundingRow),
    Liquidation(LiquidationRow),
    OpenInterest(OpenInterestRow),
    OptionTicker(OptionTickerRow),
    VenueCandle(VenueCandleRow),
    Gap(GapRow),
}

type Levels = (Vec<i128>, Vec<i128>);

fn levels(field: &'static str, levels: &[Level]) -> Result<Levels, RowError> {
    let mut prices = Vec::with_capacity(levels.len());
    let mut qtys = Vec::with_capacity(levels.len());
    for l in levels {
        prices.push(scaled(field, l.price)?);
        qtys.push(scaled(field, l.qty)?);
    }
    Ok((prices, qtys))
}

fn ids(i: &Instrument) -> (String, String, String) {
    (i.exchange.clone(), i.market.as_str().to_owned(), i.symbol.clone())
}

impl TableRow {
    pub fn from_event(event: &MarketEvent) -> Result<TableRow, RowError> {
        let (exchange, market, symbol) = ids(event.instrument());
        Ok(match event {
            MarketEvent::Trade(t) => TableRow::Trade(TradeRow {
                exchange,
                market,
                symbol,
                venue_symbol: t.instrument.venue_symbol.clone(),
                trade_id: t.trade_id.clone(),
                price: scaled("price", t.price)?,
                qty: scaled("qty", t.qty)?,
                side: side(t.side),
                ts_exchange: t.ts_exchange_us,
                ts_recv: t.ts_recv_us,
            }),
            MarketEvent::Bbo(b) => TableRow::Bbo(BboRow {
                exchange,
                market,
                symbol,
                sequence: b.sequence,
                bid_price: scaled("bid_price", b.bid.price)?,
                bid_qty: scaled("bid_qty", b.bid.qty)?,
                ask_price: scaled("ask_price", b.ask.price)?,
                ask_qty: scaled("ask_qty", b.ask.qty)?,
                ts_exchange: b.ts_exchange_us,
                ts_recv: b.ts_recv_us,
            }),
            MarketEvent::BookSnapshot(b) => {
                let (bid_prices, bid_qtys) = levels("bids", &b.bids)?;
                let (ask_prices, ask_qtys) = levels("asks", &b.asks)?;
                TableRow::BookSnapshot(BookSnapshotRow {
                    exchange,
                    market,
                    symbol,
                    sequence: b.sequence,
                    bid_prices,
                    bid_qtys,
                    ask_prices,
                    ask_qtys,
                    ts_exchange: b.ts_exchange_us,
                    ts_recv: b.ts_recv_us,
                })
            }
            MarketEvent::BookDelta(b) => {
                let (bid_prices, bid_qtys) = levels("bids", &b.bids)?;
                let (ask_prices, ask_qtys) = levels("asks", &b.asks)?;
                TableRow::BookDelta(BookDeltaRow {
                    exchange,
                    market,
                    symbol,
                    first_sequence: b.first_sequence,
                    sequence: b.sequence,
                    prev_sequence: b.prev_sequence,
                    bid_prices,
                    bid_qtys,
                    ask_prices,
                    ask_qtys,
                    ts_exchange: b.ts_exchange_us,
                    ts_recv: b.ts_recv_us,
                })
            }
            MarketEvent::Funding(f) => TableRow::Funding(FundingRow {
                exchange,
                market,
                symbol,
                funding_rate: scaled("funding_rate", f.funding_rate)?,
                mark_price: scaled("mark_price", f.mark_price)?,
                index_price: f.index_price.map(|p| scaled("index_price", p)).transpose()?,
                next_funding_ms: f.next_funding_ms,
                ts_exchange: f.ts_exchange_us,
                ts_recv: f.ts_recv_us,
            }),
            MarketEvent::Liquidation(l) => TableRow::Liquidation(LiquidationRow {
                exchange,
                market,
                symbol,
                side: side(l.side),
                price: scaled("price", l.price)?,
                qty: scaled("qty", l.qty)?,
                order_id: l.order_id.clone().unwrap_or_default(),
                ts_exchange: l.ts_exchange_us,
                ts_recv: l.ts_recv_us,
            }),
            MarketEvent::OpenInterest(o) => TableRow::OpenInterest(OpenInterestRow {
                exchange,
                market,
                symbol,
                open_interest: scaled("open_interest", o.open_interest)?,
                ts_exchange: o.ts_exchange_us,
                ts_recv: o.ts_recv_us,
            }),
            MarketEvent::OptionTicker(t) => {
                let optional =
                    |field: &'static str, value: Option<Decimal>| value.map(|v| scaled(field, v)).transpose();
                TableRow::OptionTicker(OptionTickerRow {
                    exchange,
                    market,
                    symbol,
                    mark_price: scaled("mark_price", t.mark_price)?,
                    mark_iv: optional("mark_iv", t.mark_iv)?,
                    bid_iv: optional("bid_iv", t.bid_iv)?,
                    ask_iv: optional("ask_iv", t.ask_iv)?,
                    underlying_price: optional("underlying_price", t.underlying_price)?,
                    delta: optional("delta", t.delta)?,
                    gamma: optional("gamma", t.gamma)?,
                    vega: optional("vega", t.vega)?,
                    theta: optional("theta", t.theta)?,
                    rho: optional("rho", t.rho)?,
                    ts_exchange: t.ts_exchange_us,
                    ts_recv: t.ts_recv_us,
                })
            }
            MarketEvent::Candle(c) => TableRow::VenueCandle(VenueCandleRow {
                exchange,
                market,
                symbol,
                interval_s: c.interval_s,
                open_time: c.open_time_ms,
                open: scaled("open", c.open)?,
                high: scaled("high", c.high)?,
                low: scaled("low", c.low)?,
                close: scaled("close", c.close)?,
                volume: scaled("volume", c.volume)?,
                trades: c.trades,
                closed: u8::from(c.closed),
                ts_recv: c.ts_recv_us,
            }),
            MarketEvent::Gap(g) => TableRow::Gap(GapRow {
                exchange,
                market,
                symbol,
                reason: g.reason.clone(),
                last_sequence: g.last_sequence,
                ts_recv: g.ts_recv_us,
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn check(input: &str, expect: i128) {
        assert_eq!(
            scaled("p", Decimal::from_str(input).unwrap()).unwrap(),
            expect,
            "{input}"
        );
    }

    #[test]
    fn decimals_scale_exactly() {
        check("1", 1_000_000_000_000_000_000);
        check("0.35210000", 352_100_000_000_000_000);
        check("-0.00012", -120_000_000_000_000);
        check("0.000000000000000001", 1);
        check("60123.45", 60_123_450_000_000_000_000_000);
    }

    #[test]
    fn values_that_do_not_fit_are_refused_not_rounded() {
        let err = scaled("price", Decimal::from_str("0.0000000000000000001").unwrap()).unwrap_err();
        assert!(err.message.contains("more than 18 decimal places"), "{err}");
        let err = scaled("price", Decimal::from_str("100000000000000000000").unwrap()).unwrap_err();
        assert!(err.message.contains("does not fit"), "{err}");
        assert!(scaled("price", Decimal::from_str("99999999999999999999.99999999").unwrap()).is_ok());
    }
}
