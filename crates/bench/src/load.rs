//! Sustained load: the whole stack as `cargo xtask up` runs it (release
//! binaries, each its own process, default configuration) fed by the local
//! exchange at rising rates over `MOAT_BENCH_LOAD_SYMBOLS` symbols (200):
//! trades at the step's rate, plus a depth diff and a book ticker per
//! symbol every 100 ms. Each step holds its rate for `MOAT_BENCH_LOAD_SECS`
//! (60), then pauses the feed and checks that every trade sent is stored
//! exactly once. A step holds when the end-to-end lag (exchange sent → row
//! queryable in ClickHouse) stayed within the default configuration's aims
//! (p50 ≤ 250 ms, p99 ≤ 1 s), nothing was lost or
//! doubled, no client was dropped by the exchange as too slow, and every
//! `GetPrice` succeeded. Each step also reports the events published by
//! kind, the CPU each process used, and the live path's p99 (collector
//! receipt → gateway cache, `moat_gateway_live_event_age_seconds`).
//!
//! The lag is read without scanning the growing table: every 100 ms the
//! bench samples the exchange's `trades_sent` and the rows of the active
//! ClickHouse parts (`system.parts`, the rows queries see). The lag at a
//! sample is how long ago the exchange had sent as many trades as are now
//! queryable. `MOAT_BENCH_LOAD_TRACE=1` prints every reading, with the
//! messages in JetStream, to tell a slow collector from a slow writer.

use std::time::{Duration, Instant};

use moat_integration_tests::stack::{SYMBOLS, Stack, StackOptions, TOKEN};

use crate::metrics::{Scrape, cpu_seconds};
use moat_proto::gateway::v1 as pb;
use moat_proto::gateway::v1::market_service_client::MarketServiceClient;
use tokio_util::sync::CancellationToken;

use crate::percentile;

/// Lag p99 above which a rate is not held.
const MAX_LAG: Duration = Duration::from_secs(1);
/// Lag p50 above which a rate is not held: the default configuration's
/// aims (p50 ≤ 250 ms, p99 ≤ 1 s) hold at every rate held.
const MAX_LAG_P50: Duration = Duration::from_millis(250);
/// Per-symbol trade rates tried, in order, until one is not held.
const LADDER: &[u32] = &[10, 25, 50, 100, 150, 200, 250, 300, 350, 400, 500, 750, 1_000];
/// Book events per symbol per second the local exchange sends besides
/// trades: a depth diff and a book ticker every 100 ms.
pub const BOOK_EVENTS_PER_SYMBOL: usize = 20;
/// How long a ladder that starts high feeds half its first rate first.
const WARM_UP: Duration = Duration::from_secs(15);
/// The processes whose CPU is reported.
const PROCESSES: &[&str] = &[
    "exchange",
    "collector",
    "nats",
    "storage-writer",
    "clickhouse",
    "gateway",
];

/// The bench's symbols: the stack's usual three and generated ones.
fn symbols(count: usize) -> Vec<String> {
    let mut out: Vec<String> = SYMBOLS.iter().map(|s| (*s).to_owned()).collect();
    out.extend((out.len()..count).map(|i| format!("X{i:03}USDT=100.00")));
    out.truncate(count.max(1));
    out
}

/// One rate tried.
pub struct Step {
    /// Trades per second the exchange actually sent (all symbols).
    pub rate: f64,
    pub sent: u64,
    pub stored: u64,
    pub lag_p50: Duration,
    pub lag_p99: Duration,
    pub lag_max: Duration,
    /// Events published per second by kind, and in all.
    pub events: Vec<(String, f64)>,
    pub events_total: f64,
    /// JetStream messages published per second (each one or more events).
    pub messages: f64,
    /// CPU per process, in cores (1.0 = one core busy).
    pub cpu: Vec<(&'static str, f64)>,
    /// Collector receipt → gateway cache, p99 over the step.
    pub live_p99: Option<Duration>,
    /// Collector receipt → a plain subscriber of the trades (on the live
    /// lane, or the subject [`Setup::lane`] names) in the bench process:
    /// p50 and p99 over the step.
    pub lane_p50: Duration,
    pub lane_p99: Duration,
    pub price_p99: Duration,
    pub price_calls: usize,
    /// Why the rate was not held; `None` when it was.
    pub failed: Option<String>,
}

/// The ladder and the quiet-feed GetPrice p99 it is compared with.
pub struct Outcome {
    pub steps: Vec<Step>,
    pub idle_price_p99: Duration,
    pub hold: Duration,
    pub symbols: usize,
    /// Pull requests the writer gave up on because the server had not
    /// ended them (`moat_storage_writer_fetches_overdue_total`).
    pub fetches_overdue: f64,
}

impl Outcome {
    /// The highest rate held.
    pub fn held(&self) -> Option<&Step> {
        self.steps
            .iter()
            .filter(|s| s.failed.is_none())
            .max_by(|a, b| a.rate.total_cmp(&b.rate))
    }

    /// The ladder as a Markdown table.
    pub fn table(&self) -> String {
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        let mut out = String::from(
            "| trades/s | events/s (by kind) | JetStream msgs/s | sent | stored (distinct) | lag p50 / p99 / max | live: lane p50 / p99, gateway p99 | CPU (cores) | GetPrice p99 | held |\n\
             | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n",
        );
        for s in &self.steps {
            let mix: Vec<String> = s.events.iter().map(|(k, r)| format!("{k} {r:.0}")).collect();
            let cpu: Vec<String> = s.cpu.iter().map(|(p, c)| format!("{p} {c:.2}")).collect();
            out.push_str(&format!(
                "| {:.0} | {:.0} ({}) | {:.0} | {} | {} | {:.0} / {:.0} / {:.0} ms | {:.1} / {:.1} ms, {} | {} | {:.2} ms ({} calls) | {} |\n",
                s.rate,
                s.events_total,
                mix.join(", "),
                s.messages,
                s.sent,
                s.stored,
                ms(s.lag_p50),
                ms(s.lag_p99),
                ms(s.lag_max),
                ms(s.lane_p50),
                ms(s.lane_p99),
                s.live_p99
                    .map_or_else(|| "n/a".to_owned(), |d| format!("{:.0} ms", ms(d))),
                cpu.join(", "),
                ms(s.price_p99),
                s.price_calls,
                s.failed
                    .as_deref()
                    .map_or_else(|| "yes".to_owned(), |why| format!("no: {why}")),
            ));
        }
        out
    }
}

/// What the exchange's `/moat/stats` and ClickHouse's parts say at one instant.
struct Reading {
    at: Instant,
    sent: u64,
    /// Messages in JetStream (trades and the other events); read only
    /// when tracing.
    published: u64,
    slow_clients_dropped: u64,
    connections_total: u64,
    queryable: u64,
}

struct Probe {
    /// `MOAT_BENCH_LOAD_TRACE` is set: print every reading.
    trace: bool,
    /// The trades' subject whose ages the step reports as the lane's.
    lane: String,
    http: reqwest::Client,
    jsz_url: String,
    stats_url: String,
    clickhouse_url: String,
    parts_sql: String,
}

impl Probe {
    fn new(stack: &Stack, trace: bool, lane: String) -> Probe {
        Probe {
            trace,
            lane,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .expect("an HTTP client"),
            stats_url: format!("{}/moat/stats", stack.http_url("exchange")),
            jsz_url: format!("http://{}/jsz", stack.nats[0].monitor_addr()),
            clickhouse_url: stack.clickhouse_url.clone(),
            parts_sql: format!(
                "SELECT sum(rows) FROM system.parts WHERE active AND database = '{}' AND table = 'trades'",
                stack.spec.database
            ),
        }
    }

    async fn read(&self) -> anyhow::Result<Reading> {
        let stats: serde_json::Value = self.http.get(&self.stats_url).send().await?.json().await?;
        let count = |key: &str| stats[key].as_u64().unwrap_or(0);
        let rows = self
            .http
            .post(&self.clickhouse_url)
            .body(self.parts_sql.clone())
            .send()
            .await?
            .error_for_status()?
            .text()
            .await?;
        let at = Instant::now();
        let published = if self.trace {
            let jsz: serde_json::Value = self.http.get(&self.jsz_url).send().await?.json().await?;
            jsz["messages"].as_u64().unwrap_or(0)
        } else {
            0
        };
        Ok(Reading {
            at,
            sent: count("trades_sent"),
            published,
            slow_clients_dropped: count("slow_clients_dropped"),
            connections_total: count("connections_total"),
            queryable: rows.trim().parse().unwrap_or(0),
        })
    }

    async fn set_rate(&self, per_symbol: u32) -> anyhow::Result<()> {
        let url = self.stats_url.replace("/moat/stats", "/moat/rate");
        self.http
            .post(format!("{url}?trades_per_second={per_symbol}"))
            .send()
            .await?
            .error_for_status()?;
        Ok(())
    }
}

/// How long before `reading` the exchange had sent as many trades as are
/// queryable in it, from the earlier readings (linear between two).
fn lag(history: &[(Instant, u64)], at: Instant, queryable: u64) -> Duration {
    let Some(i) = history.iter().position(|(_, sent)| *sent >= queryable) else {
        // Everything sent up to the last reading is queryable.
        return Duration::ZERO;
    };
    let (t1, s1) = history[i];
    let when = match i.checked_sub(1).map(|j| history[j]) {
        Some((t0, s0)) if s1 > s0 => {
            let fraction = (queryable - s0) as f64 / (s1 - s0) as f64;
            t0 + (t1 - t0).mul_f64(fraction)
        }
        _ => t1,
    };
    at.saturating_duration_since(when)
}

/// How old each trade on `subject` is when a plain subscriber in this
/// process gets it (now − the collector's receipt time), until `stop`.
async fn lane_ages(nats: String, subject: String, stop: CancellationToken) -> anyhow::Result<Vec<Duration>> {
    use futures::StreamExt;
    let config = moat_common_types::infra::NatsConfig {
        url: nats,
        ..Default::default()
    };
    let client = moat_common_types::nats::connect(&config, "moat-operator", "moat-bench-live").await?;
    let mut trades = client.subscribe(subject).await?;
    let mut ages = Vec::new();
    loop {
        let message = tokio::select! {
            () = stop.cancelled() => break,
            message = trades.next() => match message {
                Some(message) => message,
                None => break,
            },
        };
        let now = moat_common_types::now_us();
        if let Ok(events) = moat_common_types::proto_conv::decode_message(message.headers.as_ref(), &message.payload) {
            ages.extend(
                events
                    .iter()
                    .map(|e| Duration::from_micros((now - e.ts_recv_us()).max(0) as u64)),
            );
        }
    }
    Ok(ages)
}

/// GetPrice BTC/USDT every 10 ms until `stop`; latencies and errors.
async fn price_calls(gateway: String, stop: CancellationToken) -> (Vec<Duration>, Vec<String>) {
    let channel = tonic::transport::Endpoint::from_shared(gateway)
        .expect("a gateway address")
        .connect_lazy();
    let mut client = MarketServiceClient::new(channel);
    let (mut latencies, mut errors) = (Vec::new(), Vec::new());
    while !stop.is_cancelled() {
        let mut request = tonic::Request::new(pb::GetPriceRequest {
            token: "BTC".into(),
            quote: "USDT".into(),
            chain: None,
        });
        request.set_timeout(Duration::from_secs(2));
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {TOKEN}").parse().expect("ASCII"));
        let started = Instant::now();
        match client.get_price(request).await {
            Ok(_) => latencies.push(started.elapsed()),
            Err(status) => errors.push(status.message().to_owned()),
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    latencies.sort();
    (latencies, errors)
}

/// Pauses the feed and waits until the queryable rows stop growing; the
/// stored (distinct) trades and the rows a `FINAL` query shows.
async fn drain(stack: &Stack, probe: &Probe) -> anyhow::Result<(u64, u64)> {
    probe.set_rate(0).await?;
    let mut last = (Instant::now(), probe.read().await?.queryable);
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let r = probe.read().await?;
        if r.queryable >= r.sent {
            break;
        }
        if r.queryable != last.1 {
            last = (r.at, r.queryable);
        } else if last.0.elapsed() > Duration::from_secs(10) {
            break;
        }
    }
    Ok(tokio::task::block_in_place(|| stack.stored_trades()))
}

async fn step(stack: &Stack, probe: &Probe, per_symbol: u32, hold: Duration, symbols: usize) -> anyhow::Result<Step> {
    let gateway = stack.gateway_url();
    let collector_metrics = format!("{}/metrics", stack.http_url("collector"));
    let gateway_metrics = format!("{}/metrics", stack.http_url("gateway"));
    let pids: Vec<(&'static str, Option<u32>)> = PROCESSES.iter().map(|p| (*p, stack.pid(p))).collect();
    let cpu_before: Vec<f64> = pids.iter().map(|(_, pid)| pid.map_or(0.0, cpu_seconds)).collect();
    let published_before = Scrape::get(&probe.http, &collector_metrics).await?;
    let live_before = Scrape::get(&probe.http, &gateway_metrics).await?;
    let before = probe.read().await?;
    let stop = CancellationToken::new();
    let prices = tokio::spawn(price_calls(gateway, stop.clone()));
    let lane = tokio::spawn(lane_ages(stack.nats_url(), probe.lane.clone(), stop.clone()));
    probe.set_rate(per_symbol).await?;
    let started = Instant::now();
    let mut history: Vec<(Instant, u64)> = Vec::new();
    let mut lags = Vec::new();
    let mut last = before.sent;
    while started.elapsed() < hold {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let r = probe.read().await?;
        history.push((r.at, r.sent - before.sent));
        lags.push(lag(&history, r.at, r.queryable.saturating_sub(before.queryable)));
        if probe.trace {
            eprintln!(
                "{:6.1} s  sent {:>9}  in JetStream {:>9}  queryable {:>9}  lag {:>5} ms",
                started.elapsed().as_secs_f64(),
                r.sent - before.sent,
                r.published - before.published,
                r.queryable - before.queryable,
                lags.last().map_or(0, Duration::as_millis)
            );
        }
        last = r.sent;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let rate = (last - before.sent) as f64 / elapsed;
    let cpu: Vec<(&'static str, f64)> = pids
        .iter()
        .zip(&cpu_before)
        .map(|((name, pid), before)| (*name, (pid.map_or(0.0, cpu_seconds) - before) / elapsed))
        .collect();
    let published = Scrape::get(&probe.http, &collector_metrics)
        .await?
        .minus(&published_before);
    let events: Vec<(String, f64)> = published
        .by_label("moat_collector_published_total", "kind")
        .into_iter()
        .filter(|(_, n)| *n > 0.0)
        .map(|(kind, n)| (kind, n / elapsed))
        .collect();
    let events_total = events.iter().map(|(_, r)| r).sum();
    let messages = published.sum("moat_collector_messages_published_total") / elapsed;
    let live_p99 = Scrape::get(&probe.http, &gateway_metrics)
        .await?
        .minus(&live_before)
        .histogram_quantile("moat_gateway_live_event_age_seconds", 0.99)
        .map(Duration::from_secs_f64);
    stop.cancel();
    let (latencies, errors) = prices.await?;
    let mut lane = lane.await??;
    lane.sort();
    let (lane_p50, lane_p99) = if lane.is_empty() {
        (Duration::ZERO, Duration::ZERO)
    } else {
        (percentile(&lane, 0.5), percentile(&lane, 0.99))
    };
    let (stored, final_rows) = drain(stack, probe).await?;
    let after = probe.read().await?;
    lags.sort();
    let lag_max = lags.last().copied().unwrap_or_default();
    let lag_at = |q| {
        if lags.is_empty() {
            Duration::ZERO
        } else {
            percentile(&lags, q)
        }
    };
    let (lag_p50, lag_p99) = (lag_at(0.50), lag_at(0.99));
    let mut failed = Vec::new();
    if lag_p50 > MAX_LAG_P50 {
        failed.push(format!("lag p50 reached {} ms", lag_p50.as_millis()));
    }
    if lag_p99 > MAX_LAG {
        failed.push(format!("lag p99 reached {} ms", lag_p99.as_millis()));
    }
    if stored < after.sent {
        failed.push(format!("{} trades lost", after.sent - stored));
    }
    if final_rows != stored {
        failed.push(format!("{final_rows} rows for {stored} trades"));
    }
    if after.slow_clients_dropped > before.slow_clients_dropped {
        failed.push("the exchange dropped the collector as too slow".into());
    }
    if after.connections_total > before.connections_total {
        failed.push("the collector reconnected".into());
    }
    if let Some(e) = errors.first() {
        failed.push(format!("{} GetPrice errors (first: {e})", errors.len()));
    }
    if rate < f64::from(per_symbol) * symbols as f64 * 0.9 {
        failed.push("the local exchange could not generate faster".into());
    }
    Ok(Step {
        rate,
        sent: after.sent - before.sent,
        stored: stored.saturating_sub(before.sent),
        lag_p50,
        lag_p99,
        lag_max,
        events,
        events_total,
        messages,
        cpu,
        live_p99,
        lane_p50,
        lane_p99,
        price_p99: if latencies.is_empty() {
            Duration::ZERO
        } else {
            percentile(&latencies, 0.99)
        },
        price_calls: latencies.len(),
        failed: (!failed.is_empty()).then(|| failed.join("; ")),
    })
}

/// What a ladder runs on and which of its rates it tries.
pub struct Setup {
    /// JetStream's `sync_interval`.
    pub sync_interval: &'static str,
    /// Trades/s per symbol of the first rate tried, and of the last.
    pub from: u32,
    pub to: u32,
    /// Symbols fed; `None`: `MOAT_BENCH_LOAD_SYMBOLS` (200).
    pub symbols: Option<usize>,
    /// Configuration overrides of the services (`MOAT_COLLECTOR__…`).
    pub overrides: Vec<(String, String)>,
    /// The trades' subject a plain subscriber reads for the lane's ages:
    /// the live lane unless the comparison is with another path.
    pub lane: String,
}

impl Setup {
    /// The stack's default configuration, every rate from `from` up.
    pub fn ladder(sync_interval: &'static str, from: u32) -> Setup {
        Setup {
            sync_interval,
            from,
            to: u32::MAX,
            symbols: None,
            overrides: Vec::new(),
            lane: moat_common_types::subject::live("md.trade.>"),
        }
    }
}

/// Runs the ladder of `setup` on a stack of its own, up to the first rate
/// not held.
pub async fn run(hold: Duration, setup: Setup) -> anyhow::Result<Outcome> {
    let trace = std::env::var_os("MOAT_BENCH_LOAD_TRACE").is_some();
    let count = match setup.symbols {
        Some(count) => count,
        None => std::env::var("MOAT_BENCH_LOAD_SYMBOLS")
            .ok()
            .map(|s| s.parse::<usize>())
            .transpose()
            .map_err(|e| anyhow::anyhow!("MOAT_BENCH_LOAD_SYMBOLS is a number of symbols: {e}"))?
            .unwrap_or(200),
    };
    let symbols = symbols(count);
    let stack = Stack::start(StackOptions {
        symbols: symbols.clone(),
        trades_per_second: 1,
        own_clickhouse: true,
        // Traced runs keep the writer's per-batch timings.
        log: if trace {
            "warn,moat_storage_writer=debug"
        } else {
            "warn"
        },
        nats_cluster: false,
        nats_sync_interval: setup.sync_interval.to_owned(),
        prometheus: false,
        overrides: setup.overrides,
        ..StackOptions::default()
    })
    .await;
    let probe = Probe::new(&stack, trace, setup.lane);
    // Warm up until trades flow into ClickHouse; `drain` then pauses the
    // feed until every trade sent is stored (with the feed running, the
    // trades of the last few hundred milliseconds are always in flight),
    // then the quiet-feed GetPrice latency for comparison.
    let warm = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let r = probe.read().await?;
        if r.sent > 0 && r.queryable > 0 {
            break;
        }
        anyhow::ensure!(
            warm.elapsed() < Duration::from_secs(60),
            "the stack stored {} of {} trades after 60 s\n{}",
            r.queryable,
            r.sent,
            stack.log_tail("collector")
        );
    }
    let (stored, _) = drain(&stack, &probe).await?;
    let sent = probe.read().await?.sent;
    anyhow::ensure!(
        stored >= sent,
        "warming up, the stack stored {stored} of {sent} trades\n{}",
        stack.log_tail("storage-writer")
    );
    let stop = CancellationToken::new();
    let idle = tokio::spawn(price_calls(stack.gateway_url(), stop.clone()));
    tokio::time::sleep(Duration::from_secs(5)).await;
    stop.cancel();
    let (idle, errors) = idle.await?;
    anyhow::ensure!(
        errors.is_empty() && !idle.is_empty(),
        "GetPrice failed on a quiet feed: {errors:?}"
    );
    let mut outcome = Outcome {
        steps: Vec::new(),
        idle_price_p99: percentile(&idle, 0.99),
        hold,
        symbols: symbols.len(),
        fetches_overdue: f64::NAN,
    };
    let rates: Vec<u32> = LADDER
        .iter()
        .copied()
        .filter(|r| (setup.from..=setup.to).contains(r))
        .collect();
    // A ladder that starts above its lowest rate first feeds half its
    // first rate for a while and drains, as a climb from below would:
    // jumped into from a stack that never ran that fast, the first seconds
    // could take longer than the exchange's backlog for one client lasts
    // (about a second), and the exchange dropped the collector.
    if let Some(&first) = rates.first()
        && first > LADDER[0]
    {
        eprintln!("bench: warming up at {} trades/s", first / 2 * symbols.len() as u32);
        probe.set_rate(first / 2).await?;
        tokio::time::sleep(WARM_UP).await;
        drain(&stack, &probe).await?;
    }
    for per_symbol in rates {
        eprintln!(
            "bench: sustained load at {} trades/s for {} s",
            per_symbol as usize * symbols.len(),
            hold.as_secs()
        );
        let s = step(&stack, &probe, per_symbol, hold, symbols.len()).await?;
        let cpu: Vec<String> = s.cpu.iter().map(|(name, cores)| format!("{name} {cores:.2}")).collect();
        eprintln!(
            "bench: {:.0} events/s, {:.0} messages/s, lag p50 {} / p99 {} ms; CPU {}",
            s.events_total,
            s.messages,
            s.lag_p50.as_millis(),
            s.lag_p99.as_millis(),
            cpu.join(", ")
        );
        let failed = s.failed.clone();
        outcome.steps.push(s);
        if let Some(why) = failed {
            eprintln!("bench: not held: {why}");
            break;
        }
    }
    let metrics = probe
        .http
        .get(format!("{}/metrics", stack.http_url("storage-writer")))
        .send()
        .await?
        .text()
        .await?;
    outcome.fetches_overdue = metrics
        .lines()
        .find_map(|l| l.strip_prefix("moat_storage_writer_fetches_overdue_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(f64::NAN);
    if trace {
        let kept = std::env::temp_dir().join("moat-bench-load-storage-writer.log");
        std::fs::copy(stack.log("storage-writer"), &kept)?;
        eprintln!("bench: the storage-writer's log is in {}", kept.display());
    }
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_is_how_long_ago_the_queryable_count_was_sent() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let history = [(at(0), 0), (at(100), 1_000), (at(200), 2_000), (at(300), 3_000)];
        // 1,500 queryable at 300 ms: sent at 150 ms, 150 ms ago.
        assert_eq!(lag(&history, at(300), 1_500), Duration::from_millis(150));
        // All sent is queryable: no lag.
        assert_eq!(lag(&history, at(300), 3_000), Duration::from_millis(0));
        assert_eq!(lag(&history, at(300), 3_500), Duration::ZERO);
        // Nothing queryable yet: as old as the first reading.
        assert_eq!(lag(&history, at(300), 0), Duration::from_millis(300));
    }
}
