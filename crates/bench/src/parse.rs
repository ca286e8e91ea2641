//! Collector parsing: recorded Binance futures frames through parse,
//! normalize and protobuf encode, beside an untyped JSON parse.

use std::time::Instant;

use anyhow::Context;
use moat_collector::recording::{Record, parse_line};
use moat_collector::venues::binance::parse::{Frame, parse};
use moat_collector::venues::binance::{Flavor, Symbols};
use moat_common_types::MarketEvent;

use crate::{Row, fixtures};

/// Parse + normalize + protobuf-encode of recorded Binance futures frames,
/// beside a bare `serde_json::Value` parse of the same frames.
pub(crate) fn collector_parse(rows: &mut Vec<Row>) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(fixtures().join("BINANCE_FUTURES.ws.1.0")).context("reading the recording")?;
    let mut frames = Vec::new();
    let mut symbols = Vec::new();
    for line in text.lines() {
        match parse_line(line) {
            Some(Record::Received { payload, .. }) => frames.push(payload.to_owned()),
            Some(Record::Open { url, .. }) => {
                for s in url.split("streams=").nth(1).unwrap_or_default().split('/') {
                    let s = s.split('@').next().unwrap_or_default().to_ascii_uppercase();
                    if !symbols.contains(&s) {
                        symbols.push(s);
                    }
                }
            }
            _ => {}
        }
    }
    let refs: Vec<&str> = symbols.iter().map(String::as_str).collect();
    let symbols = Symbols::new("binance", Flavor::Futures, &refs)?;
    let trades: Vec<&String> = frames.iter().filter(|f| f.contains("\"e\":\"aggTrade\"")).collect();
    for (label, set) in [
        ("all frames", frames.iter().collect::<Vec<_>>()),
        ("trade frames", trades),
    ] {
        let rounds = (400_000 / set.len().max(1)).max(1);
        let started = Instant::now();
        let mut bytes = 0usize;
        for _ in 0..rounds {
            for frame in &set {
                if let Ok(frame) = parse(&symbols, frame, 0) {
                    let event = match frame {
                        Frame::Trade(t) => MarketEvent::Trade(t),
                        Frame::Bbo(b) => MarketEvent::Bbo(b),
                        Frame::Candle(c) => MarketEvent::Candle(c),
                        Frame::Funding(f) => MarketEvent::Funding(f),
                        Frame::Liquidation(l) => MarketEvent::Liquidation(l),
                        Frame::Depth(_) | Frame::Control => continue,
                    };
                    bytes += moat_common_types::proto_conv::encode(&event).len();
                }
            }
        }
        let ours = (rounds * set.len()) as f64 / started.elapsed().as_secs_f64();
        let started = Instant::now();
        let mut keys = 0usize;
        for _ in 0..rounds {
            for frame in &set {
                let v: serde_json::Value = serde_json::from_str(frame)?;
                keys += v.as_object().map_or(0, |o| o.len());
            }
        }
        let bare = (rounds * set.len()) as f64 / started.elapsed().as_secs_f64();
        std::hint::black_box((bytes, keys));
        rows.push(Row {
            what: format!("collector: parse+normalize+encode, Binance futures {label}, 1 core"),
            figure: format!("{:.0} msg/s", ours),
            baseline: format!("{:.0} msg/s (serde_json::Value parse)", bare),
            ratio: ours / bare,
        });
    }
    Ok(())
}
