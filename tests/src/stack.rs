//! The whole stack as users run it (`moat_devstack::stack`), on free ports
//! with a scratch folder, ganache as chain `ethereum`'s upstream and the
//! helpers the end-to-end, doctor, chaos and durability tests and the load
//! benchmark share.

use std::ops::{Deref, DerefMut};
use std::process::Command;
use std::time::Duration;

use moat_devstack::http_get;
pub use moat_devstack::stack::{EXCHANGE, SYMBOLS};
use moat_devstack::stack::{Ports, StackSpec};
use serde_json::Value;

use crate::{Ganache, TestClickHouse, bin, eventually, ganache, scratch, unique};

/// The token of the stack's strategy `e2e`.
pub const TOKEN: &str = "stack-token-0123456789abcdef";

/// How to start the stack.
#[derive(Debug, Clone)]
pub struct StackOptions {
    /// Trades per second per symbol from the local exchange.
    pub trades_per_second: u32,
    /// A ClickHouse of the stack's own (to stop it), not the shared one.
    pub own_clickhouse: bool,
    /// Services logging at this level (RUST_LOG).
    pub log: &'static str,
    /// Three nats-server nodes in one cluster, `MARKET_DATA` on three
    /// replicas (the production topology), instead of one server.
    pub nats_cluster: bool,
    /// JetStream's `sync_interval` on a single server (the harness's
    /// setting unless a benchmark compares another).
    pub nats_sync_interval: String,
    /// The local exchange's symbols (`VENUESYMBOL=price`), [`SYMBOLS`] by default.
    pub symbols: Vec<String>,
    /// Prometheus scraping every service each second, with moat's alert
    /// rules evaluated as often.
    pub prometheus: bool,
    /// `(strategy id, token)` pairs accepted beside `e2e` ([`TOKEN`]).
    pub tokens: Vec<(String, String)>,
    /// Configuration overrides of the services (`MOAT_GATEWAY__…`).
    pub overrides: Vec<(String, String)>,
    /// TLS and mutual TLS with a development CA of the stack's own
    /// (`cargo xtask up --tls`); its files are under `<dir>/tls`.
    pub tls: bool,
}

impl Default for StackOptions {
    fn default() -> Self {
        StackOptions {
            trades_per_second: 20,
            own_clickhouse: false,
            log: "warn",
            nats_cluster: false,
            nats_sync_interval: moat_devstack::NATS_SYNC_INTERVAL.to_owned(),
            symbols: SYMBOLS.iter().map(|s| (*s).to_owned()).collect(),
            prometheus: false,
            tokens: Vec::new(),
            overrides: Vec::new(),
            tls: false,
        }
    }
}

/// A running stack; everything stops at drop. It derefs to
/// [`moat_devstack::stack::Stack`] for the parts (`kill`, `spawn`, `pid`,
/// `nats`, `clickhouse`, `spec.ports`, `spec.database`).
pub struct Stack {
    inner: moat_devstack::stack::Stack,
    /// Chain `ethereum`'s upstream.
    pub node: Ganache,
    _shared_clickhouse: Option<TestClickHouse>,
    /// Data and logs; removed last.
    pub dir: tempfile::TempDir,
}

impl Deref for Stack {
    type Target = moat_devstack::stack::Stack;
    fn deref(&self) -> &Self::Target {
        &self.inner
    }
}

impl DerefMut for Stack {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.inner
    }
}

impl Stack {
    pub async fn start(options: StackOptions) -> Stack {
        let dir = scratch();
        let shared = (!options.own_clickhouse).then(TestClickHouse::get);
        let node = ganache().await;
        let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut spec = StackSpec::new(&root, dir.path(), Ports::free());
        if let Some(bin_dir) = std::env::var_os("MOAT_BIN_DIR") {
            spec.bin_dir = bin_dir.into();
        }
        spec.nats_nodes = if options.nats_cluster { 3 } else { 1 };
        spec.nats_sync_interval = options.nats_sync_interval;
        spec.clickhouse_url = shared.as_ref().map(|ch| ch.url.clone());
        spec.database = unique("stack");
        spec.symbols = options.symbols;
        spec.trades_per_second = options.trades_per_second;
        spec.ethereum_upstream = Some(node.url.clone());
        spec.tokens = vec![("e2e".to_owned(), TOKEN.to_owned())];
        spec.tokens.extend(options.tokens);
        spec.overrides = options.overrides;
        spec.log_filter = Some(options.log.to_owned());
        spec.quick_recovery = true;
        spec.prometheus = options.prometheus.then_some(Duration::from_secs(1));
        if options.tls {
            let (certs, _) = moat_devstack::certs::ensure(&dir.path().join("tls")).expect("development certificates");
            spec.tls = Some(certs);
        }
        let inner = tokio::task::block_in_place(|| moat_devstack::stack::Stack::start(spec))
            .unwrap_or_else(|e| panic!("starting the stack: {e}"));
        Stack {
            inner,
            node,
            _shared_clickhouse: shared,
            dir,
        }
    }

    /// `http://127.0.0.1:<port>` of the gateway's gRPC listener.
    pub fn gateway_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.spec.ports.gateway_grpc)
    }

    /// `http://127.0.0.1:<port>` of a part's HTTP listener.
    pub fn http_url(&self, name: &str) -> String {
        format!("http://{}", self.http_addr(name))
    }

    /// Starts (or starts again) part `name`.
    pub fn spawn(&mut self, name: &'static str) {
        self.inner
            .spawn(name)
            .unwrap_or_else(|e| panic!("starting {name}: {e}"));
    }

    /// `GET /moat/stats` of the local exchange.
    pub fn exchange_stats(&self) -> Value {
        let r = http_get(&self.http_addr("exchange"), "/moat/stats", Duration::from_secs(5))
            .expect("local exchange reachable");
        serde_json::from_str(&r.body).expect("stats are JSON")
    }

    /// `POST /moat/<path>` to the local exchange (`rate?trades_per_second=0`
    /// pauses the feed, `disconnect` drops every connection).
    pub fn exchange_control(&self, path: &str) {
        let r = moat_devstack::http_post(
            &self.http_addr("exchange"),
            &format!("/moat/{path}"),
            "",
            Duration::from_secs(5),
        )
        .expect("local exchange reachable");
        assert!(r.is_success(), "POST /moat/{path}: {} {}", r.status, r.body);
    }

    /// Runs SQL on the stack's ClickHouse.
    pub fn query(&self, sql: &str) -> String {
        let addr = self.clickhouse_url.trim_start_matches("http://");
        let r = moat_devstack::http_post(addr, "/", sql, Duration::from_secs(30)).expect("ClickHouse reachable");
        assert!(r.is_success(), "ClickHouse answered {} to {sql}: {}", r.status, r.body);
        r.body.trim().to_owned()
    }

    /// The stack's `MARKET_DATA` stream, on a connection of its own.
    async fn market_data(&self) -> Result<async_nats::jetstream::stream::Stream, String> {
        let servers = moat_common_types::nats::server_addrs(&self.nats_url()).map_err(|e| e.to_string())?;
        let client = async_nats::connect(servers).await.map_err(|e| e.to_string())?;
        async_nats::jetstream::new(client)
            .get_stream(moat_common_types::subject::STREAM)
            .await
            .map_err(|e| e.to_string())
    }

    /// The ids of the `symbol` trades JetStream holds strictly between
    /// `after` and `before`. When stored trade ids have a hole, this tells a
    /// trade that never reached JetStream from one the storage-writer did
    /// not store.
    pub async fn jetstream_trade_ids(&self, symbol: &str, after: u64, before: u64) -> Result<Vec<u64>, String> {
        use async_nats::jetstream::consumer::{AckPolicy, pull};
        use futures::StreamExt;
        use moat_common_types::subject::Subject;
        use moat_common_types::{Kind, Market, MarketEvent};

        let stream = self.market_data().await?;
        let subject = Subject::new(Kind::Trade, EXCHANGE, Market::Spot, symbol).map_err(|e| e.to_string())?;
        let consumer = stream
            .create_consumer(pull::Config {
                filter_subject: subject.to_string(),
                ack_policy: AckPolicy::None,
                ..Default::default()
            })
            .await
            .map_err(|e| e.to_string())?;
        let mut ids = Vec::new();
        loop {
            let mut batch = consumer
                .fetch()
                .max_messages(1_000)
                .expires(Duration::from_secs(1))
                .messages()
                .await
                .map_err(|e| e.to_string())?;
            let mut fetched = 0;
            while let Some(message) = batch.next().await {
                let message = message.map_err(|e| e.to_string())?;
                fetched += 1;
                let events = moat_common_types::proto_conv::decode_message(message.headers.as_ref(), &message.payload)
                    .unwrap_or_default();
                for event in events {
                    if let MarketEvent::Trade(t) = event
                        && let Ok(id) = t.trade_id.parse::<u64>()
                        && after < id
                        && id < before
                    {
                        ids.push(id);
                    }
                }
            }
            if fetched == 0 {
                return Ok(ids);
            }
        }
    }

    /// Whether the storage-writer has stored and acknowledged every message
    /// in JetStream: its consumer has none left to deliver and none
    /// delivered but unacknowledged (a message stranded by a fault waits
    /// `ack_wait` for its redelivery, so this can take that long).
    pub async fn writer_caught_up(&self) -> Result<bool, String> {
        let stream = self.market_data().await?;
        // The stack runs the writer with its default consumer name.
        let consumer = moat_storage_writer::config::BatchConfig::default().consumer;
        let info = stream.consumer_info(consumer).await.map_err(|e| e.to_string())?;
        Ok(info.num_pending == 0 && info.num_ack_pending == 0)
    }

    /// The lines of a service's log (every run of it) that contain one of
    /// `needles`, the last `max` of them.
    pub fn log_lines(&self, name: &str, needles: &[&str], max: usize) -> String {
        let text = std::fs::read_to_string(self.log(name)).unwrap_or_default();
        let lines: Vec<&str> = text.lines().filter(|l| needles.iter().any(|n| l.contains(n))).collect();
        lines[lines.len().saturating_sub(max)..].join("\n")
    }

    /// Distinct trades of the local exchange stored in ClickHouse and the
    /// rows a `FINAL` query shows for them (equal when nothing is doubled).
    pub fn stored_trades(&self) -> (u64, u64) {
        let db = &self.spec.database;
        let answer = self.query(&format!(
            "SELECT uniqExact(symbol, trade_id), (SELECT count() FROM {db}.trades FINAL WHERE exchange = '{EXCHANGE}') \
             FROM {db}.trades WHERE exchange = '{EXCHANGE}'"
        ));
        let mut parts = answer.split_whitespace().map(|n| n.parse::<u64>().expect("a count"));
        (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
    }

    /// Arguments naming every part of the stack for `moat doctor`.
    pub fn doctor_args(&self, token: &str) -> Vec<String> {
        vec![
            format!("--gateway={}", self.gateway_url()),
            format!("--gateway-http={}", self.http_url("gateway")),
            format!("--collector-http={}", self.http_url("collector")),
            format!("--storage-writer-http={}", self.http_url("storage-writer")),
            format!("--state-http={}", self.http_url("state")),
            format!("--nats={}", self.nats[0].url()),
            format!("--nats-monitor=http://{}", self.nats[0].monitor_addr()),
            format!("--clickhouse={}", self.clickhouse_url),
            format!("--clickhouse-database={}", self.spec.database),
            format!("--database-url={}", self.database_url),
            // The shared ClickHouse may run elsewhere; the scratch folder
            // stands for its disk.
            format!("--clickhouse-data-dir={}", self.dir.path().display()),
            format!("--token={token}"),
        ]
    }

    /// Runs the `moat` CLI against the gateway as strategy `e2e`; returns
    /// its exit code, stdout and stderr.
    pub fn moat(&self, args: &[&str]) -> (i32, String, String) {
        let out = Command::new(bin("moat"))
            .args(args)
            .arg(format!("--gateway={}", self.gateway_url()))
            .env("MOAT_TOKEN", TOKEN)
            .output()
            .expect("running moat");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Waits until `moat doctor` passes every check and returns its report.
    /// The host's free disk is not the stack's health (a nearly full CI
    /// disk must not fail the tests), so only the 1 GiB floor applies here;
    /// the doctor test moves the percentage lines itself.
    pub async fn doctor_green(&self, within: Duration) -> Value {
        let mut args = self.doctor_args(TOKEN);
        args.push("--disk-fail-below=0".into());
        eventually("doctor all green", within, || {
            let args = args.clone();
            async move {
                let (code, report) = tokio::task::spawn_blocking(move || doctor(&args)).await.ok()?;
                if code != 0 {
                    eprintln!("doctor not green yet: {:?}", failures(&report));
                }
                (code == 0).then_some(report)
            }
        })
        .await
    }
}

/// Runs `moat doctor --json` with `args`; returns its exit code and report.
pub fn doctor(args: &[String]) -> (i32, Value) {
    let out = Command::new(bin("moat"))
        .arg("doctor")
        .arg("--json")
        .args(args)
        .env_remove("DATABASE_URL")
        .output()
        .expect("running moat doctor");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "doctor printed no JSON ({e}): {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap_or(-1), report)
}

/// The check named `name` of a doctor report.
pub fn check<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .find(|c| c["check"] == name)
        .unwrap_or_else(|| panic!("no check {name:?} in {report:#}"))
}

/// `check: detail` of every failed check.
pub fn failures(report: &Value) -> Vec<String> {
    report["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .filter(|c| c["status"] == "fail")
        .map(|c| format!("{}: {}", c["check"], c["detail"]))
        .collect()
}
