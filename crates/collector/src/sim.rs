//! The simulated venue: random-walk prices producing trades, BBO updates and
//! book snapshots, so a stack without network access has live data.

use std::sync::Arc;
use std::time::Duration;

use moat_common_types::model::{Bbo, BookSnapshot, Instrument, Level, Trade, parse_price};
use moat_common_types::{Decimal, Market, MarketEvent, Side, now_ms};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::config::SimConfig;
use crate::publisher::EventQueue;
use crate::status::StreamStatus;

struct SimBook {
    instrument: Instrument,
    mid: Decimal,
    tick: Decimal,
}

/// Runs the simulated feed until the task is dropped.
pub async fn run(config: SimConfig, queue: Arc<EventQueue>, status: StreamStatus) {
    let mut books: Vec<SimBook> = config
        .symbols
        .iter()
        .filter_map(|s| {
            let mid = parse_price("price", &s.price).ok()?;
            Some(SimBook {
                instrument: Instrument {
                    exchange: config.exchange.clone(),
                    market: Market::Spot,
                    symbol: s.symbol.clone(),
                    venue_symbol: s.symbol.replace('-', ""),
                },
                tick: Decimal::new(1, mid.scale()),
                mid,
            })
        })
        .collect();
    // Trade ids start at the boot time so a restarted simulator never reuses
    // an id that JetStream's duplicate window or ClickHouse already holds.
    let boot = now_ms() as u64;
    let mut seq: u64 = 0;
    let period = Duration::from_secs_f64(1.0 / f64::from(config.trades_per_second));
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut rng = StdRng::from_os_rng();
    status.set_connected(true);
    loop {
        ticker.tick().await;
        seq += 1;
        let now = now_ms();
        for book in &mut books {
            // A step of -2..=2 ticks keeps prices moving without drifting off.
            let step: i64 = rng.random_range(-2..=2);
            book.mid = (book.mid + book.tick * Decimal::from(step)).max(book.tick * Decimal::from(10));
            let side = if rng.random_bool(0.5) { Side::Buy } else { Side::Sell };
            let qty = Decimal::new(rng.random_range(1..5000), 4);
            let bid = book.mid - book.tick;
            let ask = book.mid + book.tick;
            queue.push(MarketEvent::Trade(Trade {
                instrument: book.instrument.clone(),
                trade_id: format!("{boot}{seq:09}"),
                price: if side == Side::Buy { ask } else { bid },
                qty,
                side,
                ts_exchange_ms: now,
                ts_recv_ms: now,
            }));
            queue.push(MarketEvent::Bbo(Bbo {
                instrument: book.instrument.clone(),
                sequence: boot * 1_000_000 + seq,
                bid: Level {
                    price: bid,
                    qty: Decimal::new(rng.random_range(1..100_000), 4),
                },
                ask: Level {
                    price: ask,
                    qty: Decimal::new(rng.random_range(1..100_000), 4),
                },
                ts_exchange_ms: now,
                ts_recv_ms: now,
            }));
            if seq.is_multiple_of(u64::from(config.trades_per_second)) {
                let level = |i: i64, rng: &mut StdRng| Level {
                    price: book.mid + book.tick * Decimal::from(i),
                    qty: Decimal::new(rng.random_range(1..100_000), 4),
                };
                queue.push(MarketEvent::BookSnapshot(BookSnapshot {
                    instrument: book.instrument.clone(),
                    sequence: boot * 1_000_000 + seq,
                    bids: (1..=10).map(|i| level(-i, &mut rng)).collect(),
                    asks: (1..=10).map(|i| level(i, &mut rng)).collect(),
                    ts_exchange_ms: now,
                    ts_recv_ms: now,
                }));
            }
            status.touch(&book.instrument.symbol, now);
        }
    }
}
