//! Binance spot and futures combined-stream frames.
#![no_main]

use libfuzzer_sys::fuzz_target;
use moat_collector::venues::binance::parse::{Frame, parse};
use moat_collector::venues::binance::{Flavor, Symbols};
use moat_common_types::MarketEvent;
use moat_fuzz::{BINANCE_DELIVERY, BINANCE_FUTURES, BINANCE_SPOT, names_reason, round_trips, text};

fuzz_target!(|data: &[u8]| {
    let Some(frame) = text(data) else { return };
    for (flavor, ids) in [
        (Flavor::Spot, BINANCE_SPOT),
        (Flavor::Futures, BINANCE_FUTURES),
        (Flavor::Delivery, BINANCE_DELIVERY),
    ] {
        let symbols = Symbols::new("binance", flavor, ids);
        assert!(symbols.skipped().is_empty(), "the recordings' symbols normalize");
        match parse(&symbols, frame, 1) {
            Ok(Frame::Trade(t)) => round_trips(MarketEvent::Trade(t)),
            Ok(Frame::Bbo(b)) => round_trips(MarketEvent::Bbo(b)),
            Ok(Frame::Candle(c)) => round_trips(MarketEvent::Candle(c)),
            Ok(Frame::Funding(f)) => round_trips(MarketEvent::Funding(f)),
            Ok(Frame::Liquidation(l)) => round_trips(MarketEvent::Liquidation(l)),
            Ok(Frame::Depth(d)) => assert!(d.first <= d.last, "diff ids out of order: {d:?}"),
            Ok(Frame::Control) => {}
            Err(reject) => names_reason(reject.reason),
        }
    }
});
