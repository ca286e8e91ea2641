//! `MarketEvent`s written straight to protobuf, field by field, without
//! building the `moat.marketdata.v1` structs first (which costs an
//! allocation for every string, price and level). The collector encodes
//! every event it queues this way. The bytes are the ones prost writes for
//! the same event: the tests below compare the two on every kind.

use prost::encoding::WireType;

use crate::model::*;

/// Appends `value` as a base-128 varint.
fn encode_varint(mut value: u64, out: &mut Vec<u8>) {
    while value >= 0x80 {
        out.push(value as u8 | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn encode_key(tag: u32, wire_type: WireType, out: &mut Vec<u8>) {
    encode_varint(u64::from(tag << 3 | wire_type as u32), out);
}

/// Fields of one message being written, in tag order; a field at its
/// default value is left out, as proto3 (and prost) do.
struct Fields<'a>(&'a mut Vec<u8>);

impl Fields<'_> {
    fn bytes(&mut self, tag: u32, value: &[u8]) {
        if !value.is_empty() {
            encode_key(tag, WireType::LengthDelimited, self.0);
            encode_varint(value.len() as u64, self.0);
            self.0.extend_from_slice(value);
        }
    }

    fn string(&mut self, tag: u32, value: &str) {
        self.bytes(tag, value.as_bytes());
    }

    fn decimal(&mut self, tag: u32, value: &Decimal) {
        let mut buffer = [0u8; PLAIN_MAX];
        match plain_text(value, &mut buffer) {
            Some(text) => self.bytes(tag, text),
            None => self.string(tag, &value.to_string()),
        }
    }

    fn uint(&mut self, tag: u32, value: u64) {
        if value != 0 {
            encode_key(tag, WireType::Varint, self.0);
            encode_varint(value, self.0);
        }
    }

    fn int(&mut self, tag: u32, value: i64) {
        // int64 and int32 (enums) go as their two's complement.
        self.uint(tag, value as u64);
    }

    fn boolean(&mut self, tag: u32, value: bool) {
        self.uint(tag, u64::from(value));
    }

    /// A nested message: its length goes before it, so one byte is kept
    /// for it and the body moved along in the rare case it needs more.
    fn message(&mut self, tag: u32, body: impl FnOnce(&mut Fields<'_>)) {
        encode_key(tag, WireType::LengthDelimited, self.0);
        let at = self.0.len();
        self.0.push(0);
        body(&mut Fields(self.0));
        let len = self.0.len() - at - 1;
        if len < 0x80 {
            self.0[at] = len as u8;
            return;
        }
        let mut prefix = [0u8; 10];
        let (mut value, mut n) = (len as u64, 0);
        while value >= 0x80 {
            prefix[n] = value as u8 | 0x80;
            value >>= 7;
            n += 1;
        }
        prefix[n] = value as u8;
        self.0.splice(at..at + 1, prefix[..=n].iter().copied());
    }

    /// The instrument's bytes, written once when it was made
    /// ([`instrument_field`]).
    fn instrument(&mut self, i: &Instrument) {
        self.0.extend_from_slice(i.wire());
    }

    fn levels(&mut self, tag: u32, levels: &[Level]) {
        for l in levels {
            self.message(tag, |f| {
                f.decimal(1, &l.price);
                f.decimal(2, &l.qty);
            });
        }
    }
}

/// `fields` as field 1 of an event message (every event's `instrument`).
pub(crate) fn instrument_field(i: &InstrumentFields) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    Fields(&mut out).message(1, |f| {
        f.string(1, &i.exchange);
        f.int(2, market(i.market));
        f.string(3, &i.symbol);
        f.string(4, &i.venue_symbol);
        if let Some(o) = &i.option {
            f.message(5, |f| {
                f.string(1, &o.expiry);
                f.decimal(2, &o.strike);
                f.int(
                    3,
                    match o.right {
                        crate::symbol::OptionRight::Call => 1,
                        crate::symbol::OptionRight::Put => 2,
                    },
                );
                f.string(4, &o.settlement);
            });
        }
    });
    out
}

/// The longest text [`plain_text`] writes: a scale of 28 (the most a
/// `Decimal` has) with "-0." before it.
const PLAIN_MAX: usize = 32;

/// A decimal whose mantissa fits 64 bits as `Display` writes it
/// (`0.0012`, `12.5`, `7`, `0.00`, `-3.25`), written from the right into
/// `buffer`; `None` for other decimals (and a negative zero), which go
/// through `Display`.
fn plain_text<'b>(d: &Decimal, buffer: &'b mut [u8; PLAIN_MAX]) -> Option<&'b [u8]> {
    /// "00", "01", … "99": two digits at a time.
    const PAIRS: &[u8; 200] = b"0001020304050607080910111213141516171819\
        2021222324252627282930313233343536373839\
        4041424344454647484950515253545556575859\
        6061626364656667686970717273747576777879\
        8081828384858687888990919293949596979899";
    let mut m = u64::try_from(d.mantissa().unsigned_abs()).ok()?;
    let negative = d.is_sign_negative();
    if negative && m == 0 {
        return None;
    }
    /// Writes `m` (below 100) as two digits, ending at `at`.
    fn pair(buffer: &mut [u8; PLAIN_MAX], at: &mut usize, m: u64) {
        let pair = m as usize * 2;
        *at -= 2;
        buffer[*at..*at + 2].copy_from_slice(&PAIRS[pair..pair + 2]);
    }
    let mut at = buffer.len();
    // From the right: the `scale` fraction digits (zeros once the mantissa
    // runs out), the point, then the integer digits, at least one. Each
    // digit lands where it stays, so nothing is moved afterwards.
    let scale = d.scale() as usize;
    let mut fraction = scale;
    while fraction >= 2 {
        pair(buffer, &mut at, m % 100);
        m /= 100;
        fraction -= 2;
    }
    if fraction == 1 {
        at -= 1;
        buffer[at] = b'0' + (m % 10) as u8;
        m /= 10;
    }
    if scale > 0 {
        at -= 1;
        buffer[at] = b'.';
    }
    while m >= 100 {
        pair(buffer, &mut at, m % 100);
        m /= 100;
    }
    if m >= 10 {
        pair(buffer, &mut at, m);
    } else {
        at -= 1;
        buffer[at] = b'0' + m as u8;
    }
    if negative {
        at -= 1;
        buffer[at] = b'-';
    }
    Some(&buffer[at..])
}

/// `d` as `Display` writes it.
pub(crate) fn decimal_text(d: &Decimal) -> String {
    let mut buffer = [0u8; PLAIN_MAX];
    match plain_text(d, &mut buffer) {
        Some(text) => String::from_utf8_lossy(text).into_owned(),
        None => d.to_string(),
    }
}

fn market(m: Market) -> i64 {
    super::market_to_pb(m) as i64
}

fn side(s: Side) -> i64 {
    super::side_to_pb(s) as i64
}

/// Appends `event` as a `moat.marketdata.v1.MarketEvent` to `out`.
pub(crate) fn write_event(out: &mut Vec<u8>, event: &MarketEvent) {
    let mut f = Fields(out);
    match event {
        MarketEvent::Trade(t) => f.message(1, |f| {
            f.instrument(&t.instrument);
            f.string(2, &t.trade_id);
            f.decimal(3, &t.price);
            f.decimal(4, &t.qty);
            f.int(5, side(t.side));
            f.int(8, t.ts_exchange_us);
            f.int(9, t.ts_recv_us);
        }),
        MarketEvent::BookSnapshot(b) => f.message(2, |f| {
            f.instrument(&b.instrument);
            f.uint(2, b.sequence);
            f.levels(3, &b.bids);
            f.levels(4, &b.asks);
            f.int(7, b.ts_exchange_us);
            f.int(8, b.ts_recv_us);
        }),
        MarketEvent::BookDelta(b) => f.message(3, |f| {
            f.instrument(&b.instrument);
            f.uint(2, b.first_sequence);
            f.uint(3, b.sequence);
            f.uint(4, b.prev_sequence);
            f.levels(5, &b.bids);
            f.levels(6, &b.asks);
            f.int(9, b.ts_exchange_us);
            f.int(10, b.ts_recv_us);
        }),
        MarketEvent::Bbo(b) => f.message(4, |f| {
            f.instrument(&b.instrument);
            f.uint(2, b.sequence);
            f.decimal(3, &b.bid.price);
            f.decimal(4, &b.bid.qty);
            f.decimal(5, &b.ask.price);
            f.decimal(6, &b.ask.qty);
            f.int(9, b.ts_exchange_us);
            f.int(10, b.ts_recv_us);
        }),
        MarketEvent::Funding(x) => f.message(5, |f| {
            f.instrument(&x.instrument);
            f.decimal(2, &x.funding_rate);
            f.decimal(3, &x.mark_price);
            if let Some(index) = &x.index_price {
                f.decimal(4, index);
            }
            f.int(5, x.next_funding_ms);
            f.int(8, x.ts_exchange_us);
            f.int(9, x.ts_recv_us);
        }),
        MarketEvent::Liquidation(l) => f.message(6, |f| {
            f.instrument(&l.instrument);
            f.int(2, side(l.side));
            f.decimal(3, &l.price);
            f.decimal(4, &l.qty);
            f.string(5, l.order_id.as_deref().unwrap_or_default());
            f.int(8, l.ts_exchange_us);
            f.int(9, l.ts_recv_us);
        }),
        MarketEvent::OpenInterest(o) => f.message(7, |f| {
            f.instrument(&o.instrument);
            f.decimal(2, &o.open_interest);
            f.int(5, o.ts_exchange_us);
            f.int(6, o.ts_recv_us);
        }),
        MarketEvent::OptionTicker(t) => f.message(10, |f| {
            f.instrument(&t.instrument);
            f.decimal(2, &t.mark_price);
            for (field, (_, value)) in (3..).zip(t.optional_fields()) {
                if let Some(value) = &value {
                    f.decimal(field, value);
                }
            }
            f.int(12, t.ts_exchange_us);
            f.int(13, t.ts_recv_us);
        }),
        MarketEvent::Candle(c) => f.message(8, |f| {
            f.instrument(&c.instrument);
            f.uint(2, u64::from(c.interval_s));
            f.int(3, c.open_time_ms);
            f.decimal(4, &c.open);
            f.decimal(5, &c.high);
            f.decimal(6, &c.low);
            f.decimal(7, &c.close);
            f.decimal(8, &c.volume);
            f.uint(9, c.trades);
            f.boolean(10, c.closed);
            f.int(12, c.ts_recv_us);
        }),
        MarketEvent::Gap(g) => f.message(9, |f| {
            f.instrument(&g.instrument);
            f.string(2, &g.reason);
            f.uint(3, g.last_sequence);
            f.int(5, g.ts_recv_us);
        }),
    }
}

#[cfg(test)]
mod tests {
    use moat_proto::marketdata::v1 as pb;
    use prost::Message;

    use super::*;

    /// A small xorshift: the same events on every run.
    struct Draw(u64);

    impl Draw {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn int(&mut self) -> i64 {
            // Zero (left out on the wire), small, large and negative.
            match self.next() % 4 {
                0 => 0,
                1 => (self.next() % 300) as i64,
                2 => self.next() as i64,
                _ => -((self.next() % 1_000_000) as i64),
            }
        }

        fn decimal(&mut self) -> Decimal {
            let scale = (self.next() % 29) as u32;
            let mantissa = match self.next() % 7 {
                0 => 0,
                1 => i128::from(self.next() % 1000),
                2 => i128::from(self.next()),
                3 => i128::from(self.next()) << 30,
                4 => -i128::from(self.next()),
                5 => {
                    // A negative zero, as `-0.00` parses.
                    let mut zero = Decimal::new(0, scale);
                    zero.set_sign_negative(true);
                    return zero;
                }
                _ => -i128::from(self.next() % 1_000_000),
            };
            Decimal::from_i128_with_scale(mantissa, scale)
        }

        fn maybe_decimal(&mut self) -> Option<Decimal> {
            self.next().is_multiple_of(2).then(|| self.decimal())
        }

        fn text(&mut self) -> String {
            let len = (self.next() % 4) as usize * (1 + (self.next() % 70) as usize);
            (0..len).map(|_| char::from(b'a' + (self.next() % 26) as u8)).collect()
        }

        fn instrument(&mut self) -> Instrument {
            let market = Market::ALL[(self.next() % 4) as usize];
            let instrument = Instrument::new(self.text(), market, self.text(), self.text());
            if market != Market::Option {
                return instrument;
            }
            let strike = self.decimal().abs();
            instrument.with_option(Some(OptionContract {
                expiry: self.text(),
                strike,
                right: if self.next().is_multiple_of(2) {
                    crate::symbol::OptionRight::Call
                } else {
                    crate::symbol::OptionRight::Put
                },
                settlement: self.text(),
            }))
        }

        fn side(&mut self) -> Side {
            if self.next().is_multiple_of(2) {
                Side::Buy
            } else {
                Side::Sell
            }
        }

        fn levels(&mut self) -> Vec<Level> {
            // Up to 40 levels: some bodies pass 127 bytes and need a
            // longer length prefix.
            (0..self.next() % 40)
                .map(|_| Level {
                    price: self.decimal(),
                    qty: self.decimal(),
                })
                .collect()
        }

        fn event(&mut self, kind: u64) -> MarketEvent {
            let instrument = self.instrument();
            match kind {
                0 => MarketEvent::Trade(Trade {
                    instrument,
                    trade_id: self.text(),
                    price: self.decimal(),
                    qty: self.decimal(),
                    side: self.side(),
                    ts_exchange_us: self.int(),
                    ts_recv_us: self.int(),
                }),
                1 => MarketEvent::BookSnapshot(BookSnapshot {
                    instrument,
                    sequence: self.int() as u64,
                    bids: self.levels(),
                    asks: self.levels(),
                    ts_exchange_us: self.int(),
                    ts_recv_us: self.int(),
                }),
                2 => MarketEvent::BookDelta(BookDelta {
                    instrument,
                    first_sequence: self.int() as u64,
                    sequence: self.int() as u64,
                    prev_sequence: self.int() as u64,
                    bids: self.levels(),
                    asks: self.levels(),
                    ts_exchange_us: self.int(),
                    ts_recv_us: self.int(),
                }),
                3 => MarketEvent::Bbo(Bbo {
                    instrument,
                    sequence: self.int() as u64,
                    bid: Level {
                        price: self.decimal(),
                        qty: self.decimal(),
                    },
                    ask: Level {
                        price: self.decimal(),
                        qty: self.decimal(),
                    },
                    ts_exchange_us: self.int(),
                    ts_recv_us: self.int(),
                }),
                4 => MarketEvent::Funding(Funding {
                    instrument,
                    funding_rate: self.decimal(),
                    mark_price: self.decimal(),
                    index_price: (self.next().is_multiple_of(2)).then(|| self.decimal()),
                    next_funding_ms: self.int(),
                    ts_exchange_us: self.int(),
                    ts_recv_us: self.int(),
                }),
                5 => MarketEvent::Liquidation(Liquidation {
                    instrument,
                    side: self.side(),
                    price: self.decimal(),
                    qty: self.decimal(),
                    order_id: (self.next().is_multiple_of(2)).then(|| self.text()),
                    ts_exchange_us: self.int(),
                    ts_recv_us: self.int(),
                }),
                6 => MarketEvent::OpenInterest(OpenInterest {
                    instrument,
                    open_interest: self.decimal(),
                    ts_exchange_us: self.int(),
                    ts_recv_us: self.int(),
                }),
                7 => MarketEvent::Candle(Candle {
                    instrument,
                    interval_s: self.next() as u32 % 3 * 60,
                    open_time_ms: self.int(),
                    open: self.decimal(),
                    high: self.decimal(),
                    low: self.decimal(),
                    close: self.decimal(),
                    volume: self.decimal(),
                    trades: self.int() as u64,
                    closed: self.next().is_multiple_of(2),
                    ts_recv_us: self.int(),
                }),
                8 => MarketEvent::OptionTicker(OptionTicker {
                    instrument,
                    mark_price: self.decimal(),
                    mark_iv: self.maybe_decimal(),
                    bid_iv: self.maybe_decimal(),
                    ask_iv: self.maybe_decimal(),
                    underlying_price: self.maybe_decimal(),
                    delta: self.maybe_decimal(),
                    gamma: self.maybe_decimal(),
                    vega: self.maybe_decimal(),
                    theta: self.maybe_decimal(),
                    rho: self.maybe_decimal(),
                    ts_exchange_us: self.int(),
                    ts_recv_us: self.int(),
                }),
                _ => MarketEvent::Gap(Gap {
                    instrument,
                    reason: self.text(),
                    last_sequence: self.int() as u64,
                    ts_recv_us: self.int(),
                }),
            }
        }
    }

    /// Every kind, with fields at their defaults, small, large, negative
    /// and long: the bytes are prost's own for the same message.
    #[test]
    fn events_are_written_as_prost_writes_them() {
        let mut draw = Draw(0x9e37_79b9_7f4a_7c15);
        for i in 0..20_000u64 {
            let event = draw.event(i % 10);
            let mut ours = Vec::new();
            write_event(&mut ours, &event);
            let prost = pb::MarketEvent::from(&event).encode_to_vec();
            assert_eq!(ours, prost, "{event:?}");
        }
    }

    #[test]
    fn decimal_text_is_what_display_writes() {
        let mut draw = Draw(0x2545_f491_4f6c_dd1d);
        let mut values = vec![
            Decimal::ZERO,
            Decimal::MAX,
            Decimal::MIN,
            Decimal::new(-5, 3),
            -Decimal::ZERO,
        ];
        values.extend((0..20_000).map(|_| draw.decimal()));
        for d in values {
            assert_eq!(decimal_text(&d), d.to_string(), "{d:?}");
        }
    }
}
