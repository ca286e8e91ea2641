//! OKX v5 public frames: trades, tickers, books with checksums, funding,
//! mark price, open interest, option summaries.
#![no_main]

use libfuzzer_sys::fuzz_target;
use moat_collector::venues::okx::parse::{Frame, parse};
use moat_collector::venues::okx::symbols;
use moat_common_types::MarketEvent;
use moat_fuzz::{OKX, names_reason, round_trips, text};

fuzz_target!(|data: &[u8]| {
    let Some(frame) = text(data) else { return };
    let symbols = symbols("okx", OKX)
        .all_known()
        .expect("the recordings' symbols normalize");
    match parse(&symbols, frame, 1) {
        Ok(Frame::Trades(trades)) => trades.into_iter().for_each(|t| round_trips(MarketEvent::Trade(t))),
        Ok(Frame::Bbo(b)) => round_trips(MarketEvent::Bbo(b)),
        Ok(Frame::Funding(f)) => round_trips(MarketEvent::Funding(f)),
        Ok(Frame::OpenInterest(o)) => round_trips(MarketEvent::OpenInterest(o)),
        Ok(Frame::OptionSummary(tickers)) => tickers
            .into_iter()
            .for_each(|t| round_trips(MarketEvent::OptionTicker(t))),
        Ok(Frame::Book(_) | Frame::MarkPrice { .. } | Frame::Control) => {}
        Err(reject) => names_reason(reject.reason),
    }
});
