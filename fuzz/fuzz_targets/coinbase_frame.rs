//! Coinbase Exchange frames: matches, tickers, level2 snapshots and updates.
#![no_main]

use libfuzzer_sys::fuzz_target;
use moat_collector::venues::coinbase::parse::{Frame, parse};
use moat_collector::venues::coinbase::symbols;
use moat_common_types::MarketEvent;
use moat_fuzz::{COINBASE, names_reason, round_trips, text};

fuzz_target!(|data: &[u8]| {
    let Some(frame) = text(data) else { return };
    let symbols = symbols("coinbase", COINBASE)
        .all_known()
        .expect("the recordings' symbols normalize");
    match parse(&symbols, frame, 1) {
        Ok(Frame::Trade(t)) => round_trips(MarketEvent::Trade(t)),
        Ok(Frame::Bbo(b)) => round_trips(MarketEvent::Bbo(b)),
        Ok(Frame::Book(_) | Frame::Heartbeat(_) | Frame::Control) => {}
        Err(reject) => names_reason(reject.reason),
    }
});
