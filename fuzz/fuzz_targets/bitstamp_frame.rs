//! Bitstamp WebSocket v2 frames (trades, book diffs, events) and REST
//! order books.
#![no_main]

use libfuzzer_sys::fuzz_target;
use moat_collector::venues::bitstamp::parse::{Frame, parse, parse_snapshot};
use moat_collector::venues::bitstamp::symbols;
use moat_common_types::MarketEvent;
use moat_fuzz::{BITSTAMP, names_reason, round_trips, text};

fuzz_target!(|data: &[u8]| {
    let Some(frame) = text(data) else { return };
    let symbols = symbols("bitstamp", BITSTAMP)
        .all_known()
        .expect("the recordings' pairs normalize");
    let levels_sound = |book: &moat_collector::venues::bitstamp::parse::BookMessage| {
        book.bids
            .iter()
            .chain(&book.asks)
            .all(|l| l.price > moat_common_types::Decimal::ZERO && !l.qty.is_sign_negative())
    };
    match parse(&symbols, frame, 1) {
        Ok(Frame::Trade(t)) => round_trips(MarketEvent::Trade(t)),
        Ok(Frame::Diff(book)) => assert!(levels_sound(&book), "a level out of range: {book:?}"),
        Ok(Frame::Reconnect | Frame::Control) => {}
        Err(reject) => names_reason(reject.reason),
    }
    match parse_snapshot(&symbols, "ETHUSD", frame) {
        Ok(book) => assert!(levels_sound(&book), "a level out of range: {book:?}"),
        Err(reject) => names_reason(reject.reason),
    }
});
