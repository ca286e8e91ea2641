//! Collector parsing: every recorded frame of each venue through parse,
//! normalize and protobuf encode, beside a typed serde parse of the same
//! frames ([`typed`]); and the JSON parsers that could do the reading,
//! each over the same typed structs.

mod typed;

use std::time::{Duration, Instant};

use anyhow::Context;
use moat_collector::venues::{binance, coinbase, okx};
use moat_common_types::MarketEvent;
use moat_common_types::model::{BookDelta, BookSnapshot, Level};
use moat_common_types::proto_conv::encode;
use moat_localvenue::replay::Recording;

use self::typed::{Kind, Pass, Venue};
use crate::{Row, fixtures};

/// One recording and the venue that speaks it.
struct Source {
    file: &'static str,
    venue: Venue,
    label: &'static str,
}

const SOURCES: [Source; 4] = [
    Source {
        file: "BINANCE.ws.1.0",
        venue: Venue::BinanceSpot,
        label: "Binance spot",
    },
    Source {
        file: "BINANCE_FUTURES.ws.1.0",
        venue: Venue::BinanceFutures,
        label: "Binance futures",
    },
    Source {
        file: "OKX.ws.1.0",
        venue: Venue::Okx,
        label: "OKX",
    },
    Source {
        file: "COINBASE.ws.28.0",
        venue: Venue::Coinbase,
        label: "Coinbase",
    },
];

/// A venue's parse, normalize and encode of one frame: the encoded bytes
/// of the events it made, `None` if the frame was refused.
enum Ours {
    Binance(binance::Symbols),
    Okx(okx::Symbols),
    Coinbase(coinbase::Symbols),
}

fn delta(
    instrument: moat_common_types::Instrument,
    sequence: u64,
    bids: Vec<Level>,
    asks: Vec<Level>,
    ts: i64,
) -> usize {
    encode(&MarketEvent::BookDelta(BookDelta {
        instrument,
        first_sequence: sequence,
        sequence,
        prev_sequence: sequence.saturating_sub(1),
        bids,
        asks,
        ts_exchange_us: ts,
        ts_recv_us: ts,
    }))
    .len()
}

fn snapshot(instrument: moat_common_types::Instrument, bids: Vec<Level>, asks: Vec<Level>, ts: i64) -> usize {
    encode(&MarketEvent::BookSnapshot(BookSnapshot {
        instrument,
        sequence: 0,
        bids,
        asks,
        ts_exchange_us: ts,
        ts_recv_us: ts,
    }))
    .len()
}

impl Ours {
    fn new(venue: Venue, recording: &Recording) -> anyhow::Result<Ours> {
        use moat_collector::venues::Kind as Protocol;
        let kind = match venue {
            Venue::BinanceSpot => Protocol::Binance,
            Venue::BinanceFutures => Protocol::BinanceFutures,
            Venue::Okx => Protocol::Okx,
            Venue::Coinbase => Protocol::Coinbase,
        };
        let symbols = (kind.spec().recorded_symbols)(recording);
        let ids: Vec<&str> = symbols.iter().map(String::as_str).collect();
        let known =
            |instruments: moat_collector::venues::Instruments| instruments.all_known().map_err(anyhow::Error::msg);
        Ok(match venue {
            Venue::BinanceSpot => Ours::Binance(binance::Symbols {
                flavor: binance::Flavor::Spot,
                instruments: known(binance::Symbols::new("binance", binance::Flavor::Spot, &ids).instruments)?,
            }),
            Venue::BinanceFutures => Ours::Binance(binance::Symbols {
                flavor: binance::Flavor::Futures,
                instruments: known(
                    binance::Symbols::new("binance-futures", binance::Flavor::Futures, &ids).instruments,
                )?,
            }),
            Venue::Okx => Ours::Okx(known(okx::symbols("okx", &ids))?),
            Venue::Coinbase => Ours::Coinbase(known(coinbase::symbols("coinbase", &ids))?),
        })
    }

    fn handle(&self, frame: &str) -> Option<usize> {
        const NOW: i64 = 1_700_000_000_000;
        match self {
            Ours::Binance(symbols) => {
                use binance::parse::Frame;
                Some(match binance::parse::parse(symbols, frame, NOW).ok()? {
                    Frame::Trade(t) => encode(&MarketEvent::Trade(t)).len(),
                    Frame::Bbo(b) => encode(&MarketEvent::Bbo(b)).len(),
                    Frame::Candle(c) => encode(&MarketEvent::Candle(c)).len(),
                    Frame::Funding(f) => encode(&MarketEvent::Funding(f)).len(),
                    Frame::Liquidation(l) => encode(&MarketEvent::Liquidation(l)).len(),
                    Frame::Depth(d) => delta(d.instrument, d.last, d.bids, d.asks, d.ts_exchange_us),
                    Frame::Control => 0,
                })
            }
            Ours::Okx(symbols) => {
                use okx::parse::Frame;
                Some(match okx::parse::parse(symbols, frame, NOW).ok()? {
                    Frame::Trades(trades) => trades.into_iter().map(|t| encode(&MarketEvent::Trade(t)).len()).sum(),
                    Frame::Bbo(b) => encode(&MarketEvent::Bbo(b)).len(),
                    Frame::Funding(f) => encode(&MarketEvent::Funding(f)).len(),
                    Frame::OpenInterest(o) => encode(&MarketEvent::OpenInterest(o)).len(),
                    Frame::OptionSummary(tickers) => tickers
                        .into_iter()
                        .map(|t| encode(&MarketEvent::OptionTicker(t)).len())
                        .sum(),
                    Frame::Book(b) if b.snapshot => snapshot(b.instrument, b.bids, b.asks, b.ts_exchange_us),
                    Frame::Book(b) => {
                        let sequence = b.seq_id.unwrap_or_default().max(0) as u64;
                        delta(b.instrument, sequence, b.bids, b.asks, b.ts_exchange_us)
                    }
                    Frame::MarkPrice { .. } | Frame::Control => 0,
                })
            }
            Ours::Coinbase(symbols) => {
                use coinbase::parse::Frame;
                Some(match coinbase::parse::parse(symbols, frame, NOW).ok()? {
                    Frame::Trade(t) => encode(&MarketEvent::Trade(t)).len(),
                    Frame::Bbo(b) => encode(&MarketEvent::Bbo(b)).len(),
                    Frame::Book(b) if b.snapshot => snapshot(b.instrument, b.bids, b.asks, b.ts_exchange_us),
                    Frame::Book(b) => delta(b.instrument, 0, b.bids, b.asks, b.ts_exchange_us),
                    Frame::Heartbeat(_) | Frame::Control => 0,
                })
            }
        }
    }

    fn pass(&self, frames: &[(Kind, &str)]) -> Pass {
        let mut pass = Pass::default();
        for (_, frame) in frames {
            match self.handle(frame) {
                Some(n) => pass.read += n,
                None => pass.failed += 1,
            }
        }
        pass
    }
}

/// Frames per second of `run` over `frames`: the best of several timed
/// rounds of about 100 ms (the least disturbed by the rest of the machine).
/// Fails if any frame failed to parse.
fn rate(what: &str, frames: &[(Kind, &str)], mut run: impl FnMut(&[(Kind, &str)]) -> Pass) -> anyhow::Result<f64> {
    let first = run(frames);
    anyhow::ensure!(
        first.failed == 0,
        "{what}: {} of {} frames failed to parse",
        first.failed,
        frames.len()
    );
    let started = Instant::now();
    let mut passes = 1u32;
    while started.elapsed() < Duration::from_millis(20) {
        std::hint::black_box(run(frames));
        passes += 1;
    }
    let per_round = passes.max(1) * 5;
    let mut best = 0f64;
    for _ in 0..5 {
        let started = Instant::now();
        for _ in 0..per_round {
            std::hint::black_box(run(frames));
        }
        best = best.max(f64::from(per_round) * frames.len() as f64 / started.elapsed().as_secs_f64());
    }
    Ok(best)
}

/// For each recording: moat's parse + normalize + encode beside a typed,
/// owned serde_json parse of the same frames; Binance futures trade frames
/// alone; and serde_json, sonic-rs and simd-json reading the same typed
/// structs with borrowed strings.
pub(crate) fn collector_parse(rows: &mut Vec<Row>) -> anyhow::Result<()> {
    let mut parsers = Vec::new();
    for source in &SOURCES {
        let path = fixtures().join(source.file);
        let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        let recording = Recording::load(&[text]);
        let ours = Ours::new(source.venue, &recording)?;
        let frames: Vec<(Kind, &str)> = recording
            .frames
            .iter()
            .map(|(_, f)| (typed::kind(source.venue, f), f.as_str()))
            .collect();
        let mut sets = vec![("all frames", frames.clone())];
        if source.venue == Venue::BinanceFutures {
            let trades = frames
                .iter()
                .filter(|(k, _)| *k == Kind::BinanceTrade)
                .copied()
                .collect();
            sets.push(("trade frames", trades));
        }
        for (set, frames) in sets {
            let label = format!("{} {set} ({} frames)", source.label, frames.len());
            // Taken in turns, so a slow spell of the machine cannot favour
            // one side.
            let (mut moat, mut serde) = (0f64, 0f64);
            for _ in 0..3 {
                moat = moat.max(rate(&label, &frames, |f| ours.pass(f))?);
                serde = serde.max(rate(&label, &frames, |f| typed::owned(&mut typed::SerdeJson, f))?);
            }
            rows.push(Row {
                what: format!("collector: parse+normalize+encode, {label}, 1 core"),
                figure: format!("{moat:.0} frames/s"),
                baseline: format!("{serde:.0} frames/s (typed serde_json parse, owned strings)"),
                ratio: moat / serde,
            });
        }
        let borrowed = rate(source.label, &frames, |f| typed::borrowed(&mut typed::SerdeJson, f))?;
        let sonic = rate(source.label, &frames, |f| typed::borrowed(&mut typed::SonicRs, f))?;
        let simd = rate(source.label, &frames, typed::simd_json_borrowed)?;
        parsers.push((source.label, borrowed, sonic, simd));
    }
    for (label, borrowed, sonic, simd) in parsers {
        for (name, figure) in [("sonic-rs", sonic), ("simd-json", simd)] {
            rows.push(Row {
                what: format!("JSON parser: {name}, typed borrowed, {label} all frames, 1 core"),
                figure: format!("{figure:.0} frames/s"),
                baseline: format!("{borrowed:.0} frames/s (serde_json, same structs)"),
                ratio: figure / borrowed,
            });
        }
    }
    Ok(())
}
