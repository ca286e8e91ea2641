//! Kraken Futures frames: trades, book snapshots and level updates,
//! tickers, events.
#![no_main]

use libfuzzer_sys::fuzz_target;
use moat_collector::venues::kraken_futures::parse::{Frame, parse};
use moat_collector::venues::kraken_futures::symbols;
use moat_common_types::MarketEvent;
use moat_fuzz::{KRAKEN_FUTURES, names_reason, round_trips, text};

fuzz_target!(|data: &[u8]| {
    let Some(frame) = text(data) else { return };
    let symbols = symbols("kraken-futures", KRAKEN_FUTURES)
        .all_known()
        .expect("the recordings' products normalize");
    match parse(&symbols, frame, 1) {
        Ok(Frame::Trade(t, liquidation)) => {
            round_trips(MarketEvent::Trade(t));
            liquidation
                .into_iter()
                .for_each(|l| round_trips(MarketEvent::Liquidation(l)));
        }
        Ok(Frame::Book(book)) => assert!(
            book.bids
                .iter()
                .chain(&book.asks)
                .all(|l| l.price > moat_common_types::Decimal::ZERO && !l.qty.is_sign_negative()),
            "a level out of range: {book:?}"
        ),
        Ok(Frame::Ticker { funding, open_interest }) => {
            funding.into_iter().for_each(|f| round_trips(MarketEvent::Funding(f)));
            open_interest
                .into_iter()
                .for_each(|o| round_trips(MarketEvent::OpenInterest(o)));
        }
        Ok(Frame::Control) => {}
        Err(reject) => names_reason(reject.reason),
    }
});
