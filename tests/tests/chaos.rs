//! Faults while a steady load runs: the local exchange feeds the whole
//! stack, a strategy client calls GetPrice, SaveState and an RPC method
//! throughout, and one component at a time is SIGKILLed and restarted (the
//! collector, NATS, the storage-writer, ClickHouse, the state service, the
//! gateway's RPC upstream) or the exchange connection is cut. For each
//! fault: the recovery time and the errors the strategy saw. At the end:
//! trades sent vs stored (distinct), duplicates visible in queries, and
//! every hole in the stored trade ids announced by a gap event.
//!
//! The test suite runs each outage for 2 s; `cargo xtask chaos` runs
//! `MOAT_CHAOS_OUTAGE_SECS` (10 by default) and prints the report table.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use moat_integration_tests::stack::{EXCHANGE, Stack, StackOptions, TOKEN};
use moat_proto::gateway::v1 as pb;
use moat_proto::gateway::v1::market_service_client::MarketServiceClient;
use moat_proto::gateway::v1::rpc_service_client::RpcServiceClient;
use moat_proto::gateway::v1::state_service_client::StateServiceClient;
use tokio_util::sync::CancellationToken;

fn authed<T>(message: T) -> tonic::Request<T> {
    let mut request = moat_integration_tests::authed(message, TOKEN);
    request.set_timeout(Duration::from_secs(2));
    request
}

/// What the strategy client saw: its errors with their time, and the last
/// state the gateway acknowledged.
#[derive(Default)]
struct Seen {
    errors: Vec<(Instant, String)>,
    calls: u64,
    saved: Option<(u64, Vec<u8>)>,
    last_save_ok: Option<Instant>,
    last_rpc_ok: Option<Instant>,
}

/// Calls GetPrice, SaveState and eth_blockNumber every 100 ms until `stop`.
async fn strategy(gateway: String, seen: Arc<Mutex<Seen>>, stop: CancellationToken) {
    let channel = tonic::transport::Endpoint::from_shared(gateway)
        .unwrap()
        .connect_timeout(Duration::from_secs(1))
        .connect_lazy();
    let mut market = MarketServiceClient::new(channel.clone());
    let mut state = StateServiceClient::new(channel.clone());
    let mut rpc = RpcServiceClient::new(channel);
    let mut n = 0u64;
    while !stop.is_cancelled() {
        n += 1;
        let price = market
            .get_price(authed(pb::GetPriceRequest {
                token: "BTC".into(),
                quote: "USDT".into(),
                chain: None,
            }))
            .await;
        let expected = seen.lock().unwrap().saved.as_ref().map_or(0, |s| s.0);
        let data = format!("step {n}").into_bytes();
        let saved = state
            .save_state(authed(pb::SaveStateRequest {
                data: data.clone().into(),
                expected_version: expected,
                ..Default::default()
            }))
            .await;
        let block = rpc
            .call(authed(pb::RpcRequest {
                chain: "ethereum".into(),
                method: "eth_blockNumber".into(),
                params_json: String::new(),
            }))
            .await;
        let now = Instant::now();
        let conflict = {
            let mut s = seen.lock().unwrap();
            s.calls += 3;
            if let Err(e) = price {
                s.errors.push((now, format!("GetPrice: {}", e.message())));
            }
            let conflict = match saved {
                Ok(r) => {
                    s.saved = Some((r.into_inner().version, data));
                    s.last_save_ok = Some(now);
                    false
                }
                Err(e) => {
                    s.errors.push((now, format!("SaveState: {}", e.message())));
                    matches!(e.code(), tonic::Code::Aborted | tonic::Code::FailedPrecondition)
                }
            };
            match block.map(tonic::Response::into_inner) {
                Ok(r) if r.error.is_none() => s.last_rpc_ok = Some(now),
                Ok(r) => s.errors.push((now, format!("eth_blockNumber: {:?}", r.error))),
                Err(e) => s.errors.push((now, format!("eth_blockNumber: {}", e.message()))),
            }
            conflict
        };
        if conflict {
            // A save whose answer was lost in the outage may have been
            // stored: take the latest version, which must not be older
            // than the last one acknowledged.
            if let Ok(latest) = state
                .load_state(authed(pb::LoadStateRequest {
                    version: 0,
                    strategy_id: None,
                }))
                .await
            {
                let latest = latest.into_inner();
                let mut s = seen.lock().unwrap();
                let acked = s.saved.as_ref().map_or(0, |v| v.0);
                assert!(
                    latest.version >= acked,
                    "state version {} after {acked} was acknowledged",
                    latest.version
                );
                s.saved = Some((latest.version, latest.data.to_vec()));
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Fault {
    Collector,
    Nats,
    StorageWriter,
    ClickHouse,
    State,
    RpcUpstream,
    ExchangeConnection,
}

impl Fault {
    const ALL: [Fault; 7] = [
        Fault::ExchangeConnection,
        Fault::Collector,
        Fault::Nats,
        Fault::StorageWriter,
        Fault::ClickHouse,
        Fault::State,
        Fault::RpcUpstream,
    ];

    /// The name `MOAT_CHAOS_FAULTS` (and `cargo xtask chaos`) takes.
    fn key(self) -> &'static str {
        match self {
            Fault::Collector => "collector",
            Fault::Nats => "nats",
            Fault::StorageWriter => "storage-writer",
            Fault::ClickHouse => "clickhouse",
            Fault::State => "state",
            Fault::RpcUpstream => "rpc-upstream",
            Fault::ExchangeConnection => "exchange",
        }
    }

    /// The faults to inject, in order: `MOAT_CHAOS_FAULTS` (comma-separated
    /// keys, repeats allowed) or, unset or empty, each fault once.
    fn from_env() -> Vec<Fault> {
        let list = std::env::var("MOAT_CHAOS_FAULTS").unwrap_or_default();
        if list.trim().is_empty() {
            return Fault::ALL.to_vec();
        }
        list.split(',')
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .map(|key| {
                Fault::ALL.into_iter().find(|f| f.key() == key).unwrap_or_else(|| {
                    let keys: Vec<&str> = Fault::ALL.iter().map(|f| f.key()).collect();
                    panic!("MOAT_CHAOS_FAULTS: unknown fault {key:?}; expected one of {keys:?}")
                })
            })
            .collect()
    }

    fn name(self) -> &'static str {
        match self {
            Fault::Collector => "collector SIGKILL",
            Fault::Nats => "NATS SIGKILL",
            Fault::StorageWriter => "storage-writer SIGKILL",
            Fault::ClickHouse => "ClickHouse SIGKILL",
            Fault::State => "state service SIGKILL",
            Fault::RpcUpstream => "RPC upstream (ganache) SIGKILL",
            Fault::ExchangeConnection => "exchange connection cut",
        }
    }
}

fn ms_now() -> i64 {
    moat_common_types::now_ms()
}

/// A trade received after `since_ms` is stored: the market-data path works.
fn fresh_trade_stored(stack: &Stack, since_ms: i64) -> bool {
    let sql = format!(
        "SELECT count() FROM {}.trades WHERE exchange = '{EXCHANGE}' AND ts_recv_ms > {since_ms}",
        stack.spec.database
    );
    let addr = stack.clickhouse_url.trim_start_matches("http://");
    moat_devstack::http_post(addr, "/", &sql, Duration::from_secs(5))
        .ok()
        .filter(|r| r.is_success())
        .and_then(|r| r.body.trim().parse::<u64>().ok())
        .is_some_and(|n| n > 0)
}

struct Row {
    fault: Fault,
    /// When the fault began and when the stack had recovered (unix ms).
    window_ms: (i64, i64),
    recovery: Duration,
    errors: usize,
    first_error: String,
}

async fn inject(stack: &mut Stack, fault: Fault, outage: Duration) {
    match fault {
        Fault::Collector => stack.kill("collector"),
        Fault::Nats => tokio::task::block_in_place(|| stack.nats[0].kill()),
        Fault::StorageWriter => stack.kill("storage-writer"),
        Fault::ClickHouse => tokio::task::block_in_place(|| stack.clickhouse.as_mut().unwrap().kill()),
        Fault::State => stack.kill("state"),
        Fault::RpcUpstream => stack.node.kill(),
        Fault::ExchangeConnection => stack.exchange_control("disconnect"),
    }
    tokio::time::sleep(outage).await;
    match fault {
        Fault::Collector => stack.spawn("collector"),
        Fault::Nats => tokio::task::block_in_place(|| stack.nats[0].restart()).expect("NATS restarts"),
        Fault::StorageWriter => stack.spawn("storage-writer"),
        Fault::ClickHouse => {
            tokio::task::block_in_place(|| stack.clickhouse.as_mut().unwrap().restart()).expect("ClickHouse restarts")
        }
        Fault::State => stack.spawn("state"),
        Fault::RpcUpstream => stack.node.restart().await,
        Fault::ExchangeConnection => {}
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn faults_one_at_a_time_lose_nothing_acknowledged() {
    let outage = Duration::from_secs_f64(
        std::env::var("MOAT_CHAOS_OUTAGE_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(2.0),
    );
    let faults = Fault::from_env();
    let mut stack = Stack::start(StackOptions {
        trades_per_second: 20,
        own_clickhouse: true,
        // Resumed trade ids and gap events are logged at info.
        log: "info",
        ..StackOptions::default()
    })
    .await;
    stack.doctor_green(Duration::from_secs(90)).await;

    let seen = Arc::new(Mutex::new(Seen::default()));
    let stop = CancellationToken::new();
    let client = tokio::spawn(strategy(stack.gateway_url(), seen.clone(), stop.clone()));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let baseline_errors = seen.lock().unwrap().errors.len();
    assert_eq!(
        baseline_errors,
        0,
        "errors before any fault: {:?}",
        seen.lock().unwrap().errors
    );

    let mut rows = Vec::new();
    for &fault in &faults {
        let started = Instant::now();
        let started_ms = ms_now();
        inject(&mut stack, fault, outage).await;
        let restarted = Instant::now();
        let restarted_ms = ms_now();
        let deadline = restarted + Duration::from_secs(120);
        loop {
            let recovered = match fault {
                Fault::State => seen.lock().unwrap().last_save_ok.is_some_and(|t| t > restarted),
                Fault::RpcUpstream => seen.lock().unwrap().last_rpc_ok.is_some_and(|t| t > restarted),
                _ => tokio::task::block_in_place(|| fresh_trade_stored(&stack, restarted_ms)),
            };
            if recovered {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{} not recovered 120 s after the restart\ncollector: {}\nstorage-writer: {}",
                fault.name(),
                stack.log_tail("collector"),
                stack.log_tail("storage-writer")
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let recovery = restarted.elapsed();
        // Let the stack settle before the next fault.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let s = seen.lock().unwrap();
        let window: Vec<&(Instant, String)> = s.errors.iter().filter(|(t, _)| *t >= started).collect();
        rows.push(Row {
            fault,
            window_ms: (started_ms, ms_now()),
            recovery,
            errors: window.len(),
            first_error: window.first().map(|(_, e)| e.clone()).unwrap_or_default(),
        });
    }

    // The feed stops; everything sent must end up stored or announced.
    stack.exchange_control("rate?trades_per_second=0");
    stop.cancel();
    client.await.unwrap();
    // The collector publishes what it has received within milliseconds.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let sent = stack.exchange_stats()["trades_sent"].as_u64().unwrap();
    // Everything JetStream holds is stored once the writer has acknowledged
    // it all; a message a fault stranded is redelivered after ack_wait.
    let deadline = Instant::now() + Duration::from_secs(150);
    loop {
        let caught_up = stack.writer_caught_up().await;
        if caught_up == Ok(true) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the storage-writer did not catch up with JetStream ({caught_up:?})\n{}",
            stack.log_lines("storage-writer", &["WARN", "ERROR"], 40)
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let (distinct, visible) = tokio::task::block_in_place(|| stack.stored_trades());
    assert_eq!(visible, distinct, "duplicates visible in a FINAL query");

    // Every hole in the stored trade ids of a symbol starts where a gap
    // event said trades were missed.
    let db = &stack.spec.database;
    let ids = stack.query(&format!(
        "SELECT symbol, toUInt64(trade_id) AS id, ts_recv_ms FROM {db}.trades FINAL WHERE exchange = '{EXCHANGE}' ORDER BY symbol, id"
    ));
    let gaps: BTreeSet<(String, u64)> = stack
        .query(&format!(
            "SELECT DISTINCT symbol, last_sequence FROM {db}.gaps WHERE exchange = '{EXCHANGE}' AND reason = 'trades'"
        ))
        .lines()
        .map(|l| {
            let (symbol, id) = l.split_once('\t').unwrap();
            (symbol.to_owned(), id.parse().unwrap())
        })
        .collect();
    let mut by_symbol: BTreeMap<String, Vec<(u64, i64)>> = BTreeMap::new();
    for line in ids.lines() {
        let mut cols = line.split('\t');
        let (symbol, id, ts) = (cols.next().unwrap(), cols.next().unwrap(), cols.next().unwrap());
        by_symbol
            .entry(symbol.to_owned())
            .or_default()
            .push((id.parse().unwrap(), ts.parse().unwrap()));
    }
    let fault_at = |ts: i64| {
        rows.iter()
            .find(|r| r.window_ms.0 - 1_000 <= ts && ts <= r.window_ms.1)
            .map(|r| r.fault)
    };
    // No fault may leave a hole that no gap event announces: a publish
    // JetStream acknowledged survives a SIGKILL of the server.
    let mut missing_in_holes = 0;
    let mut unannounced = Vec::new();
    for (symbol, ids) in &by_symbol {
        for pair in ids.windows(2) {
            let ((before, ts), (after, _)) = (pair[0], pair[1]);
            if after == before + 1 {
                continue;
            }
            missing_in_holes += after - before - 1;
            if !gaps.contains(&(symbol.clone(), before)) {
                unannounced.push((symbol.clone(), before, after, ts));
            }
        }
    }
    if !unannounced.is_empty() {
        let mut report = String::new();
        for (symbol, before, after, ts) in &unannounced {
            let in_jetstream = stack.jetstream_trade_ids(symbol, *before, *after).await;
            report.push_str(&format!(
                "{symbol}: trade ids jump from {before} to {after} (received at {ts} ms, during {:?}) and no gap event \
                 says so; JetStream holds {in_jetstream:?} of the missing ids\n",
                fault_at(*ts).map(Fault::name)
            ));
        }
        panic!(
            "{report}gaps announced: {gaps:?}\nfault windows (unix ms): {:?}\n\ncollector log:\n{}\n\nstorage-writer log:\n{}",
            rows.iter().map(|r| (r.fault.key(), r.window_ms)).collect::<Vec<_>>(),
            stack.log_lines("collector", &["WARN", "ERROR", "resuming", "connected", "serving"], 60),
            stack.log_lines("storage-writer", &["WARN", "ERROR", "consuming", "redelivered"], 60),
        );
    }
    let lost = sent.saturating_sub(distinct);
    assert!(
        lost <= missing_in_holes,
        "{lost} sent trades are not stored but the gap events cover only {missing_in_holes}"
    );
    // A fault of the strategy-facing path is felt by the strategy; a
    // market-data fault behind the gateway is not.
    for row in &rows {
        if matches!(row.fault, Fault::StorageWriter | Fault::ExchangeConnection) {
            assert_eq!(
                row.errors,
                0,
                "{}: the strategy saw {}",
                row.fault.name(),
                row.first_error
            );
        }
    }
    let (saved_version, saved_data) = seen.lock().unwrap().saved.clone().expect("a state was saved");
    let mut state = StateServiceClient::new(
        tonic::transport::Endpoint::from_shared(stack.gateway_url())
            .unwrap()
            .connect()
            .await
            .unwrap(),
    );
    let loaded = state
        .load_state(authed(pb::LoadStateRequest {
            version: 0,
            strategy_id: None,
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (loaded.version, loaded.data.to_vec()),
        (saved_version, saved_data),
        "the last acknowledged state"
    );

    let calls = seen.lock().unwrap().calls;
    println!(
        "\nchaos: outage {outage:?} per fault, steady feed 20 trades/s × 3 symbols, strategy calls every 100 ms ({calls} calls)\n"
    );
    println!("| fault | recovery after restart | strategy errors | first error |");
    println!("| --- | --- | --- | --- |");
    for row in &rows {
        println!(
            "| {} | {:.1} s | {} | {} |",
            row.fault.name(),
            row.recovery.as_secs_f64(),
            row.errors,
            row.first_error.replace('|', "/")
        );
    }
    println!(
        "\ntrades sent {sent}, stored (distinct) {distinct}, duplicates visible {}, not stored {lost}: \
         ids missing from the store {missing_in_holes}, every one announced by the {} gap events",
        visible - distinct,
        gaps.len(),
    );
}
