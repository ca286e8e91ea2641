//! Deribit JSON-RPC notifications: books, trades, tickers, heartbeats,
//! errors, for options, futures and perpetuals.
#![no_main]

use libfuzzer_sys::fuzz_target;
use moat_collector::venues::deribit::parse::{Frame, parse};
use moat_collector::venues::deribit::symbols;
use moat_common_types::MarketEvent;
use moat_fuzz::{DERIBIT, names_reason, round_trips, text};

fuzz_target!(|data: &[u8]| {
    let Some(frame) = text(data) else { return };
    let symbols = symbols("deribit", DERIBIT)
        .all_known()
        .expect("the recordings' instruments normalize");
    match parse(&symbols, frame, 1) {
        Ok(Frame::Trades(trades, liquidations)) => {
            trades.into_iter().for_each(|t| round_trips(MarketEvent::Trade(t)));
            liquidations
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
        Ok(Frame::Ticker(t)) => {
            if let Some((bid, ask)) = t.bbo {
                assert!(bid.qty > moat_common_types::Decimal::ZERO && ask.qty > moat_common_types::Decimal::ZERO);
            }
            if let Some(option) = t.option {
                round_trips(MarketEvent::OptionTicker(option));
            }
        }
        Ok(Frame::TestRequest | Frame::Control) => {}
        Err(reject) => names_reason(reject.reason),
    }
});
