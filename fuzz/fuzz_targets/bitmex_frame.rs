//! BitMEX table messages: order book rows, trades, quotes, instrument
//! rows, liquidations, answers.
#![no_main]

use libfuzzer_sys::fuzz_target;
use moat_collector::venues::bitmex::parse::{Frame, parse};
use moat_collector::venues::bitmex::symbols;
use moat_common_types::MarketEvent;
use moat_fuzz::{BITMEX, names_reason, round_trips, text};

fuzz_target!(|data: &[u8]| {
    let Some(frame) = text(data) else { return };
    let symbols = symbols("bitmex", BITMEX)
        .all_known()
        .expect("the recordings' symbols normalize");
    match parse(&symbols, frame, 1) {
        Ok(Frame::Trades(trades)) => trades.into_iter().for_each(|t| round_trips(MarketEvent::Trade(t))),
        Ok(Frame::Bbos(bbos)) => bbos.into_iter().for_each(|b| round_trips(MarketEvent::Bbo(b))),
        Ok(Frame::Liquidations(l)) => l.into_iter().for_each(|l| round_trips(MarketEvent::Liquidation(l))),
        Ok(Frame::Books(books)) => {
            assert!(
            books.iter().flat_map(|b| &b.rows).all(|r| !r.size.is_sign_negative()
                && r.price.is_none_or(|p| p > moat_common_types::Decimal::ZERO)),
            "a row out of range: {books:?}"
        )
        }
        Ok(Frame::Instruments(_) | Frame::Control) => {}
        Err(reject) => names_reason(reject.reason),
    }
});
