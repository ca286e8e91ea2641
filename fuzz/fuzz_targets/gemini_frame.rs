//! Gemini market data v2 frames: trades, book changes, heartbeats, errors.
#![no_main]

use libfuzzer_sys::fuzz_target;
use moat_collector::venues::gemini::parse::{Frame, parse};
use moat_collector::venues::gemini::symbols;
use moat_common_types::MarketEvent;
use moat_fuzz::{GEMINI, names_reason, round_trips, text};

fuzz_target!(|data: &[u8]| {
    let Some(frame) = text(data) else { return };
    let symbols = symbols("gemini", GEMINI)
        .all_known()
        .expect("the recordings' symbols normalize");
    match parse(&symbols, frame, 1) {
        Ok(Frame::Trade(t)) => round_trips(MarketEvent::Trade(t)),
        Ok(Frame::Book(book)) => assert!(
            book.bids
                .iter()
                .chain(&book.asks)
                .all(|l| l.price > moat_common_types::Decimal::ZERO && !l.qty.is_sign_negative()),
            "a level with a price not above zero or a negative quantity: {book:?}"
        ),
        Ok(Frame::Control) => {}
        Err(reject) => names_reason(reject.reason),
    }
});
