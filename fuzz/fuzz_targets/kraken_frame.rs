//! Kraken WebSocket v1 frames: trades, tickers, book snapshots and
//! updates with checksums, events.
#![no_main]

use libfuzzer_sys::fuzz_target;
use moat_collector::venues::kraken::parse::{Frame, parse};
use moat_collector::venues::kraken::symbols;
use moat_common_types::MarketEvent;
use moat_fuzz::{KRAKEN, names_reason, round_trips, text};

fuzz_target!(|data: &[u8]| {
    let Some(frame) = text(data) else { return };
    let symbols = symbols("kraken", KRAKEN)
        .all_known()
        .expect("the recordings' pairs normalize");
    match parse(&symbols, frame, 1) {
        Ok(Frame::Trades(trades)) => trades.into_iter().for_each(|t| round_trips(MarketEvent::Trade(t))),
        Ok(Frame::Bbo(b)) => round_trips(MarketEvent::Bbo(b)),
        Ok(Frame::Book(book)) => assert!(
            book.bids
                .iter()
                .chain(&book.asks)
                .all(|l| l.price > moat_common_types::Decimal::ZERO && !l.qty.is_sign_negative()),
            "a level with a price not above zero or a negative volume: {book:?}"
        ),
        Ok(Frame::Control) => {}
        Err(reject) => names_reason(reject.reason),
    }
});
