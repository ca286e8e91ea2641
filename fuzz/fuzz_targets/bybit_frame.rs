//! Bybit v5 public frames: trades, order book snapshots and deltas,
//! tickers, liquidations and answers.
#![no_main]

use libfuzzer_sys::fuzz_target;
use moat_collector::venues::bybit::parse::{Frame, parse};
use moat_collector::venues::bybit::symbols;
use moat_common_types::MarketEvent;
use moat_fuzz::{BYBIT, names_reason, round_trips, text};

fuzz_target!(|data: &[u8]| {
    let Some(frame) = text(data) else { return };
    let symbols = symbols("bybit", BYBIT)
        .all_known()
        .expect("the recordings' symbols normalize");
    match parse(&symbols, frame, 1) {
        Ok(Frame::Trades(trades)) => trades.into_iter().for_each(|t| round_trips(MarketEvent::Trade(t))),
        Ok(Frame::Liquidations(l)) => l.into_iter().for_each(|l| round_trips(MarketEvent::Liquidation(l))),
        Ok(Frame::Book(book)) => assert!(
            book.bids
                .iter()
                .chain(&book.asks)
                .all(|l| l.price > moat_common_types::Decimal::ZERO),
            "a level without a positive price: {book:?}"
        ),
        Ok(Frame::Ticker { .. } | Frame::Control) => {}
        Err(reject) => names_reason(reject.reason),
    }
});
