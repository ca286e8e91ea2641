//! Collector parsing: every recorded frame of each venue through parse,
//! normalize and protobuf encode, beside a typed serde parse of the same
//! frames ([`typed`]); and the JSON parsers that could do the reading,
//! each over the same typed structs.

mod typed;

use std::time::{Duration, Instant};

use anyhow::Context;
use moat_collector::venues::{
    Instruments, binance, bitmex, bitstamp, bybit, coinbase, deribit, gemini, kraken, kraken_futures, okx,
};
use moat_common_types::MarketEvent;
use moat_common_types::model::{BookDelta, BookSnapshot, Level};
use moat_common_types::proto_conv::encode;
use moat_localvenue::replay::Recording;

use self::typed::{Kind, Pass, Venue};
use crate::{Row, fixtures};

/// One venue's recording (its files) and the venue that speaks it.
struct Source {
    files: &'static [&'static str],
    venue: Venue,
    label: &'static str,
}

const SOURCES: [Source; 12] = [
    Source {
        files: &["BINANCE.ws.1.0"],
        venue: Venue::BinanceSpot,
        label: "Binance spot",
    },
    Source {
        files: &["BINANCE_FUTURES.ws.1.0"],
        venue: Venue::BinanceFutures,
        label: "Binance futures",
    },
    Source {
        files: &["OKX.ws.1.0"],
        venue: Venue::Okx,
        label: "OKX",
    },
    Source {
        files: &["COINBASE.ws.28.0"],
        venue: Venue::Coinbase,
        label: "Coinbase",
    },
    Source {
        files: &["BINANCE_DELIVERY.ws.1.0"],
        venue: Venue::BinanceDelivery,
        label: "Binance COIN-M",
    },
    Source {
        files: &["BYBIT.ws.2.0", "BYBIT.ws.3.0"],
        venue: Venue::Bybit,
        label: "Bybit",
    },
    Source {
        files: &["KRAKEN.ws.48.0", "KRAKEN.ws.49.0", "KRAKEN.ws.50.0"],
        venue: Venue::Kraken,
        label: "Kraken",
    },
    Source {
        files: &["GEMINI.ws.1.0"],
        venue: Venue::Gemini,
        label: "Gemini",
    },
    Source {
        files: &["BITSTAMP.ws.1.0"],
        venue: Venue::Bitstamp,
        label: "Bitstamp",
    },
    Source {
        files: &["KRAKEN_FUTURES.ws.1.0"],
        venue: Venue::KrakenFutures,
        label: "Kraken Futures",
    },
    Source {
        files: &["DERIBIT.ws.1.0"],
        venue: Venue::Deribit,
        label: "Deribit",
    },
    Source {
        files: &["BITMEX.ws.1.0"],
        venue: Venue::Bitmex,
        label: "BitMEX",
    },
];

/// The venues the JSON parsers (sonic-rs, simd-json) are compared on.
const PARSER_SOURCES: usize = 4;

/// A venue's parse, normalize and encode of one frame: the encoded bytes
/// of the events it made, `None` if the frame was refused.
enum Ours {
    Binance(binance::Symbols),
    Okx(okx::Symbols),
    Coinbase(coinbase::Symbols),
    /// The venues whose parse reads [`Instruments`]: which one, and its ids.
    Other(Venue, Instruments),
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

fn snapshot_len(instrument: moat_common_types::Instrument, bids: Vec<Level>, asks: Vec<Level>, ts: i64) -> usize {
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
            Venue::BinanceDelivery => Protocol::BinanceDelivery,
            Venue::Okx => Protocol::Okx,
            Venue::Coinbase => Protocol::Coinbase,
            Venue::Bybit => Protocol::Bybit,
            Venue::Kraken => Protocol::Kraken,
            Venue::Gemini => Protocol::Gemini,
            Venue::Bitstamp => Protocol::Bitstamp,
            Venue::KrakenFutures => Protocol::KrakenFutures,
            Venue::Deribit => Protocol::Deribit,
            Venue::Bitmex => Protocol::Bitmex,
        };
        let spec = kind.spec();
        let symbols = (spec.recorded_symbols)(recording);
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
            Venue::BinanceDelivery => Ours::Binance(binance::Symbols {
                flavor: binance::Flavor::Delivery,
                instruments: known(
                    binance::Symbols::new("binance-delivery", binance::Flavor::Delivery, &ids).instruments,
                )?,
            }),
            Venue::Okx => Ours::Okx(known(okx::symbols("okx", &ids))?),
            Venue::Coinbase => Ours::Coinbase(known(coinbase::symbols("coinbase", &ids))?),
            other => Ours::Other(other, known((spec.instruments)(spec.exchange, &ids))?),
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
                    Frame::Book(b) if b.snapshot => snapshot_len(b.instrument, b.bids, b.asks, b.ts_exchange_us),
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
                    Frame::Book(b) if b.snapshot => snapshot_len(b.instrument, b.bids, b.asks, b.ts_exchange_us),
                    Frame::Book(b) => delta(b.instrument, 0, b.bids, b.asks, b.ts_exchange_us),
                    Frame::Heartbeat(_) | Frame::Control => 0,
                })
            }
            Ours::Other(venue, symbols) => other_venue(*venue, symbols, frame, NOW),
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

/// The encoded bytes of `events`.
fn encoded(events: impl IntoIterator<Item = MarketEvent>) -> usize {
    events.into_iter().map(|e| encode(&e).len()).sum()
}

/// [`Ours::handle`] for the venues whose parse reads [`Instruments`]. Book
/// messages are encoded as the snapshot or delta they carry; a ticker's
/// figures are parsed and normalized (the connector turns them into
/// funding and BBO events with state of its own). BitMEX's level updates
/// name their level by id, not price: they are parsed, and the book the
/// connector keeps finds the price.
fn other_venue(venue: Venue, symbols: &Instruments, frame: &str, now: i64) -> Option<usize> {
    let book = |instrument, snapshot: bool, bids, asks, ts| {
        if snapshot {
            snapshot_len(instrument, bids, asks, ts)
        } else {
            delta(instrument, 0, bids, asks, ts)
        }
    };
    Some(match venue {
        Venue::Bybit => match bybit::parse::parse(symbols, frame, now).ok()? {
            bybit::parse::Frame::Trades(t) => encoded(t.into_iter().map(MarketEvent::Trade)),
            bybit::parse::Frame::Liquidations(l) => encoded(l.into_iter().map(MarketEvent::Liquidation)),
            bybit::parse::Frame::Book(b) => book(b.instrument, b.snapshot, b.bids, b.asks, b.ts_exchange_us),
            bybit::parse::Frame::Ticker { .. } | bybit::parse::Frame::Control => 1,
        },
        Venue::Kraken => match kraken::parse::parse(symbols, frame, now).ok()? {
            kraken::parse::Frame::Trades(t) => encoded(t.into_iter().map(MarketEvent::Trade)),
            kraken::parse::Frame::Bbo(b) => encode(&MarketEvent::Bbo(b)).len(),
            kraken::parse::Frame::Book(b) => book(b.instrument, b.snapshot, b.bids, b.asks, b.ts_exchange_us),
            kraken::parse::Frame::Control => 1,
        },
        Venue::Gemini => match gemini::parse::parse(symbols, frame, now).ok()? {
            gemini::parse::Frame::Trade(t) => encode(&MarketEvent::Trade(t)).len(),
            gemini::parse::Frame::Book(b) => book(b.instrument, b.snapshot, b.bids, b.asks, now),
            gemini::parse::Frame::Control => 1,
        },
        Venue::Bitstamp => match bitstamp::parse::parse(symbols, frame, now).ok()? {
            bitstamp::parse::Frame::Trade(t) => encode(&MarketEvent::Trade(t)).len(),
            bitstamp::parse::Frame::Diff(b) => book(b.instrument, false, b.bids, b.asks, b.microtimestamp),
            bitstamp::parse::Frame::Reconnect | bitstamp::parse::Frame::Control => 1,
        },
        Venue::KrakenFutures => match kraken_futures::parse::parse(symbols, frame, now).ok()? {
            kraken_futures::parse::Frame::Trade(t, l) => {
                encode(&MarketEvent::Trade(t)).len() + encoded(l.map(MarketEvent::Liquidation))
            }
            kraken_futures::parse::Frame::Book(b) => book(b.instrument, b.snapshot, b.bids, b.asks, b.ts_exchange_us),
            kraken_futures::parse::Frame::Ticker { funding, open_interest } => {
                encoded(funding.map(MarketEvent::Funding)) + encoded(open_interest.map(MarketEvent::OpenInterest))
            }
            kraken_futures::parse::Frame::Control => 1,
        },
        Venue::Deribit => match deribit::parse::parse(symbols, frame, now).ok()? {
            deribit::parse::Frame::Trades(t, l) => {
                encoded(t.into_iter().map(MarketEvent::Trade)) + encoded(l.into_iter().map(MarketEvent::Liquidation))
            }
            deribit::parse::Frame::Book(b) => book(b.instrument, b.snapshot, b.bids, b.asks, b.ts_exchange_us),
            deribit::parse::Frame::Ticker(t) => 1 + encoded(t.option.map(MarketEvent::OptionTicker)),
            deribit::parse::Frame::TestRequest | deribit::parse::Frame::Control => 1,
        },
        Venue::Bitmex => match bitmex::parse::parse(symbols, frame, now).ok()? {
            bitmex::parse::Frame::Trades(t) => encoded(t.into_iter().map(MarketEvent::Trade)),
            bitmex::parse::Frame::Bbos(b) => encoded(b.into_iter().map(MarketEvent::Bbo)),
            bitmex::parse::Frame::Liquidations(l) => encoded(l.into_iter().map(MarketEvent::Liquidation)),
            bitmex::parse::Frame::Books(b) => b.iter().map(|m| m.rows.len()).sum(),
            bitmex::parse::Frame::Instruments(rows) => rows.len(),
            bitmex::parse::Frame::Control => 1,
        },
        Venue::BinanceSpot | Venue::BinanceFutures | Venue::BinanceDelivery | Venue::Okx | Venue::Coinbase => {
            unreachable!("{venue:?} has its own symbols")
        }
    })
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
    let venues = std::env::var("MOAT_BENCH_PARSE_VENUES").unwrap_or_default();
    let wanted = |label: &str| venues.is_empty() || venues.split(',').any(|v| label.starts_with(v.trim()));
    for (i, source) in SOURCES.iter().enumerate() {
        if !wanted(source.label) {
            continue;
        }
        let texts = source
            .files
            .iter()
            .map(|file| {
                let path = fixtures().join(file);
                std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let recording = Recording::load(&texts);
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
        if i >= PARSER_SOURCES {
            continue;
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
