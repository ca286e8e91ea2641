//! `moat-bench`: the benchmarks behind `cargo xtask bench`. Every figure is
//! printed beside a baseline measured in the same run on the same machine,
//! as a Markdown table row, so ratios survive a change of hardware.
//!
//! Needs `MOAT_BENCH_NATS_URL`, `MOAT_BENCH_CLICKHOUSE_URL` (started by
//! xtask) and the exchange recordings (`MOAT_EXCHANGE_FIXTURES`). The
//! sustained-load run starts a whole stack from the binaries in
//! `MOAT_BIN_DIR`. `MOAT_BENCH_ONLY=writer,load` runs only those sections
//! (parse, replay, state, durability, storage, writer, gateway, rpc, load,
//! live);
//! `MOAT_BENCH_PARSE_VENUES="Kraken,Bitstamp"` limits the parse section to
//! the recordings whose label starts with one of those.
//!
//! The report goes to stdout after the line [`REPORT`]; what comes before
//! it (services' own output) is not part of it.

mod bare_proxy;
mod durability;
mod gateway;
mod gateway_process;
mod load;
mod metrics;
mod parse;
mod replay;
mod rpc;
mod state;
mod storage;
mod writer;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::StreamExt;

struct Row {
    what: String,
    figure: String,
    baseline: String,
    ratio: f64,
}

/// The line after which stdout holds the Markdown report.
const REPORT: &str = "<!-- moat-bench report -->";

fn print(rows: &[Row], load: Option<&(load::Outcome, load::Outcome)>) {
    println!("{REPORT}");
    println!("| benchmark | moat | baseline (same run) | ratio |");
    println!("| --- | --- | --- | --- |");
    for r in rows {
        println!("| {} | {} | {} | {:.2} |", r.what, r.figure, r.baseline, r.ratio);
    }
    if let Some((load, unsynced)) = load {
        println!(
            "\nSustained load, each rate held {} s through the whole stack (release binaries, one process \
             per service, default configuration, JetStream `sync_interval` {}), {} symbols with a depth \
             diff and a book ticker each every 100 ms beside the trades:\n",
            load.hold.as_secs(),
            moat_devstack::NATS_SYNC_INTERVAL,
            load.symbols
        );
        print!("{}", load.table());
        println!(
            "\nPull requests the writer gave up on because NATS had not ended them in time, over the whole ladder: {}",
            load.fetches_overdue
        );
        println!(
            "\nThe same ladder with JetStream `sync_interval` 2m (nats-server's default), from the rate below the one held above:\n"
        );
        print!("{}", unsynced.table());
        println!(
            "\nPull requests given up on over that ladder: {}",
            unsynced.fetches_overdue
        );
    }
}

fn fixtures() -> PathBuf {
    std::env::var_os("MOAT_EXCHANGE_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures/exchanges"))
}

/// Fetches `n` messages from `consumer` 10,000 per request, acking each
/// (nothing else done with them); returns messages per second.
async fn drain_rate(
    consumer: &async_nats::jetstream::consumer::Consumer<async_nats::jetstream::consumer::pull::Config>,
    n: u64,
) -> anyhow::Result<f64> {
    let started = Instant::now();
    let mut got = 0u64;
    while got < n {
        let mut messages = consumer
            .fetch()
            .max_messages(10_000)
            .expires(Duration::from_secs(1))
            .messages()
            .await
            .map_err(|e| anyhow::anyhow!("fetching: {e}"))?;
        while let Some(message) = messages.next().await {
            let message = message.map_err(|e| anyhow::anyhow!("fetching: {e}"))?;
            message.ack().await.map_err(|e| anyhow::anyhow!("acking: {e}"))?;
            got += 1;
        }
    }
    Ok(n as f64 / started.elapsed().as_secs_f64())
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

/// `MOAT_BENCH_LOAD_SECS`: how long each rate is held (60 s).
fn load_secs() -> anyhow::Result<u64> {
    Ok(std::env::var("MOAT_BENCH_LOAD_SECS")
        .ok()
        .map(|s| s.parse::<u64>().context("MOAT_BENCH_LOAD_SECS is a number of seconds"))
        .transpose()?
        .unwrap_or(60))
}

/// Trades/s per symbol of the live-path comparison's rates, over
/// [`LIVE_SYMBOLS`] symbols: rates the design before the live lane holds on
/// the harness's JetStream sync.
const LIVE_RATES: (u32, u32) = (10, 50);
const LIVE_SYMBOLS: usize = 10;

/// The live path (collector receipt → what feeds the gateway's cache) at
/// the same rates on two stacks: the design as it is (events batched into
/// JetStream messages, each event also alone on the live lane, which the
/// gateway reads) beside the design before the live lane (one event per
/// JetStream message, `publisher.max_batch_events = 1`, read where the
/// gateway read it then: the stream's own subjects).
async fn live_before_after(rows: &mut Vec<Row>) -> anyhow::Result<()> {
    let hold = Duration::from_secs(load_secs()?);
    let (from, to) = LIVE_RATES;
    let setup = |overrides: Vec<(String, String)>, lane: String| load::Setup {
        sync_interval: moat_devstack::NATS_SYNC_INTERVAL,
        from,
        to,
        symbols: Some(LIVE_SYMBOLS),
        overrides,
        lane,
    };
    // Both stacks run at once, so a stall of the machine (a few
    // milliseconds, which is the scale of these p99s) falls on both sides
    // of a row alike; run one after the other, the same rate gave ratios
    // from 0.49 to 1.05 across three runs.
    eprintln!("bench: live path, the design as it is beside the design before the live lane, at once");
    let now = tokio::spawn(load::run(
        hold,
        setup(Vec::new(), moat_common_types::subject::live("md.trade.>")),
    ));
    let before = tokio::spawn(load::run(
        hold,
        setup(
            // One event per message, and a round as soon as a slot is
            // free: rounds were not paced then.
            vec![
                ("MOAT_COLLECTOR__PUBLISHER__MAX_BATCH_EVENTS".into(), "1".into()),
                ("MOAT_COLLECTOR__PUBLISHER__ROUND_INTERVAL".into(), "0s".into()),
            ],
            "md.trade.>".into(),
        ),
    ));
    let (now, before) = (now.await??, before.await??);
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let held = |s: &load::Step| {
        s.failed
            .as_ref()
            .map_or_else(String::new, |why| format!("; not held: {why}"))
    };
    for (a, b) in now.steps.iter().zip(&before.steps) {
        // Labelled by the rates the exchange was asked for: the events the
        // collector counts in a step start after the step does.
        let trades = (a.rate / LIVE_SYMBOLS as f64).round() as usize * LIVE_SYMBOLS;
        let books = load::BOOK_EVENTS_PER_SYMBOL * LIVE_SYMBOLS;
        rows.push(Row {
            what: format!(
                "whole stack: live path p99 at {} events/s ({trades} trades/s and {books} book events/s over {LIVE_SYMBOLS} symbols), collector receipt → a plain subscriber of what the gateway's cache reads",
                trades + books
            ),
            figure: format!(
                "live lane: p50 {:.1} ms, p99 {:.1} ms; the gateway's cache p99 ≤ {}; {:.0} events/s counted{}",
                ms(a.lane_p50),
                ms(a.lane_p99),
                a.live_p99.map_or_else(|| "n/a".to_owned(), |d| format!("{:.0} ms", ms(d))),
                a.events_total,
                held(a)
            ),
            baseline: format!(
                "p50 {:.1} ms, p99 {:.1} ms (the design before the live lane: one event per JetStream message, read on the stream's subjects; {:.0} events/s counted{})",
                ms(b.lane_p50),
                ms(b.lane_p99),
                b.events_total,
                held(b)
            ),
            ratio: a.lane_p99.as_secs_f64() / b.lane_p99.as_secs_f64(),
        });
    }
    Ok(())
}

/// Sustained load, reported beside the storage-writer's own rate and the
/// GetPrice p99 of a quiet feed.
async fn sustained_load(
    rows: &mut Vec<Row>,
    writer_rate: Option<f64>,
) -> anyhow::Result<(load::Outcome, load::Outcome)> {
    let hold = load_secs()?;
    // A ladder can start higher (trades/s per symbol), to look at one rate.
    let from = std::env::var("MOAT_BENCH_LOAD_FROM")
        .ok()
        .map(|s| s.parse::<u32>().context("MOAT_BENCH_LOAD_FROM is trades/s per symbol"))
        .transpose()?
        .unwrap_or(0);
    let outcome = load::run(
        Duration::from_secs(hold),
        load::Setup::ladder(moat_devstack::NATS_SYNC_INTERVAL, from),
    )
    .await?;
    // The same ladder on nats-server's default sync, from the rate held
    // above: what the durability of every acknowledgement costs the stack.
    eprintln!("bench: sustained load again, JetStream syncing every 2 minutes");
    let from = outcome
        .held()
        .map_or(0, |s| (s.rate / outcome.symbols as f64 * 0.95) as u32);
    let unsynced = load::run(Duration::from_secs(hold), load::Setup::ladder("2m", from)).await?;
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    match outcome.held() {
        Some(held) => {
            let (baseline, ratio) = writer_rate.map_or_else(
                || ("not measured (run the writer section too)".to_owned(), f64::NAN),
                |w| {
                    (
                        format!("{w:.0} rows/s (storage-writer alone draining JetStream, above)"),
                        held.rate / w,
                    )
                },
            );
            rows.push(Row {
                what: format!(
                    "whole stack: highest feed held {hold} s with lag p50 ≤ 250 ms and p99 ≤ 1 s and nothing lost (exchange → ClickHouse)"
                ),
                figure: format!(
                    "{:.0} events/s ({:.0} of them trades; lag p50 {:.0} ms, p99 {:.0} ms)",
                    held.events_total,
                    held.rate,
                    ms(held.lag_p50),
                    ms(held.lag_p99)
                ),
                baseline,
                ratio,
            });
            if let (Some(live), Some(quiet)) = (held.live_p99, outcome.steps.first().and_then(|s| s.live_p99)) {
                rows.push(Row {
                    what: "whole stack: live path p99 (collector receipt → gateway cache) at that load".into(),
                    figure: format!("{:.0} ms", ms(live)),
                    baseline: format!("{:.0} ms (the ladder's lowest rate)", ms(quiet)),
                    ratio: live.as_secs_f64() / quiet.as_secs_f64(),
                });
            }
            rows.push(Row {
                what: "whole stack: GetPrice p99 during that load".into(),
                figure: format!("{:.2} ms", ms(held.price_p99)),
                baseline: format!("{:.2} ms (feed paused)", ms(outcome.idle_price_p99)),
                ratio: held.price_p99.as_secs_f64() / outcome.idle_price_p99.as_secs_f64(),
            });
        }
        None => eprintln!("bench: the stack held none of the rates tried"),
    }
    let held = |o: &load::Outcome| o.held().map_or(0.0, |s| s.rate);
    rows.push(Row {
        what: format!(
            "whole stack: highest feed held {hold} s, JetStream sync_interval {}",
            moat_devstack::NATS_SYNC_INTERVAL
        ),
        figure: format!("{:.0} trades/s", held(&outcome)),
        baseline: format!(
            "{:.0} trades/s (sync_interval 2m, nats-server's default)",
            held(&unsynced)
        ),
        ratio: held(&outcome) / held(&unsynced),
    });
    Ok((outcome, unsynced))
}

/// The benchmarks behind `cargo xtask bench` (which builds this in release
/// mode, starts NATS and ClickHouse and sets the environment below). Each
/// figure is printed beside a baseline measured in the same run.
///
/// Environment: MOAT_BENCH_NATS_URL and MOAT_BENCH_CLICKHOUSE_URL (required),
/// MOAT_BENCH_ONLY (sections: parse, replay, state, durability, storage,
/// writer, gateway, rpc, load, live), MOAT_BENCH_LOAD_SECS, MOAT_BENCH_NGINX,
/// MOAT_BIN_DIR, MOAT_EXCHANGE_FIXTURES.
#[derive(clap::Parser)]
#[command(name = "moat-bench", version)]
struct Args {
    /// Run only a bare hyper reverse proxy from LISTEN to UPSTREAM (the
    /// RPC section starts one as a baseline).
    #[arg(long, num_args = 2, value_names = ["LISTEN", "UPSTREAM"])]
    bare_proxy: Option<Vec<String>>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Args = moat_common_types::config::parse_args();
    if let Some([listen, upstream]) = args.bare_proxy.as_deref() {
        return bare_proxy::serve(listen.parse()?, upstream.parse()?).await;
    }
    let nats_url =
        std::env::var("MOAT_BENCH_NATS_URL").context("MOAT_BENCH_NATS_URL is not set (run cargo xtask bench)")?;
    let ch_url = std::env::var("MOAT_BENCH_CLICKHOUSE_URL").context("MOAT_BENCH_CLICKHOUSE_URL is not set")?;
    let only = std::env::var("MOAT_BENCH_ONLY").unwrap_or_default();
    let wanted = |section: &str| only.is_empty() || only.split(',').any(|s| s.trim() == section);
    let mut rows = Vec::new();
    if wanted("parse") {
        eprintln!("bench: collector parsing");
        parse::collector_parse(&mut rows)?;
    }
    if wanted("replay") {
        eprintln!("bench: replay into NATS");
        replay::replay_to_nats(&mut rows, &nats_url).await?;
    }
    if wanted("state") {
        eprintln!("bench: state service");
        state::state(&mut rows).await?;
    }
    if wanted("durability") {
        eprintln!("bench: JetStream with and without a sync before every ack");
        durability::run(&mut rows).await?;
    }
    if wanted("storage") {
        eprintln!("bench: bytes on disk, schema v2 and v3");
        storage::run(&mut rows, &ch_url).await?;
    }
    let mut writer_rate = None;
    if wanted("writer") {
        eprintln!("bench: storage-writer");
        writer_rate = Some(writer::writer(&mut rows, &nats_url, &ch_url).await?);
    }
    if wanted("gateway") {
        eprintln!("bench: gateway");
        gateway::gateway(&mut rows, &nats_url).await?;
    }
    if wanted("rpc") {
        eprintln!("bench: RPC proxy");
        rpc::rpc_proxy(&mut rows, &nats_url).await?;
    }
    let load = if wanted("load") {
        eprintln!("bench: sustained load");
        Some(sustained_load(&mut rows, writer_rate).await?)
    } else {
        None
    };
    if wanted("live") {
        live_before_after(&mut rows).await?;
    }
    print(&rows, load.as_ref());
    Ok(())
}
