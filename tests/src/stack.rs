//! The whole stack as users run it, each part its own process on free
//! ports: the local exchange (`moat-collector exchange`, a generated session
//! in Binance's protocol), the collector reading it as venue `local`, NATS,
//! the storage-writer, ClickHouse, the state service, the gateway and
//! ganache. Used by the end-to-end, doctor and chaos tests.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use moat_devstack::{ClickHouse, ManagedProcess, Nats, free_port, http_get};
use serde_json::Value;

use crate::{Ganache, TestClickHouse, bin, eventually, ganache, scratch, unique};

/// The token of the stack's strategy `e2e`.
pub const TOKEN: &str = "stack-token-0123456789abcdef";
/// Venue symbols of the local exchange, with their starting prices.
pub const SYMBOLS: &[&str] = &["BTCUSDT=60000.00", "ETHUSDT=3000.00", "SOLUSDT=150.000"];
/// The collector's name for the local exchange.
pub const EXCHANGE: &str = "local";

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
        }
    }
}

/// How a service process is started again after a kill.
struct Recipe {
    binary: &'static str,
    args: Vec<String>,
    env: Vec<(String, String)>,
}

/// A running stack; everything stops at drop.
pub struct Stack {
    pub dir: tempfile::TempDir,
    /// The NATS server (the first node of a cluster).
    pub nats: Nats,
    /// The other nodes of a cluster (none for one server).
    pub nats_peers: Vec<Nats>,
    pub clickhouse_url: String,
    /// Set when the stack runs its own ClickHouse.
    pub own_clickhouse: Option<ClickHouse>,
    pub database: String,
    pub node: Ganache,
    pub exchange_addr: String,
    pub collector_http: u16,
    pub writer_http: u16,
    pub state_http: u16,
    pub state_grpc: u16,
    pub gateway_http: u16,
    pub gateway_grpc: u16,
    pub database_url: String,
    recipes: BTreeMap<&'static str, Recipe>,
    processes: BTreeMap<&'static str, ManagedProcess>,
    _shared_clickhouse: Option<TestClickHouse>,
}

impl Stack {
    pub async fn start(options: StackOptions) -> Stack {
        let dir = scratch();
        for sub in ["nats", "clickhouse"] {
            std::fs::create_dir_all(dir.path().join(sub)).expect("creating the stack's folders");
        }
        let (nats, nats_peers) = if options.nats_cluster {
            let mut nodes = Nats::cluster(&dir.path().join("nats"), 3).expect("starting a nats-server cluster");
            let first = nodes.remove(0);
            (first, nodes)
        } else {
            (
                Nats::start(&dir.path().join("nats")).expect("starting nats-server"),
                Vec::new(),
            )
        };
        let (shared, own) = if options.own_clickhouse {
            let ch = ClickHouse::start(&dir.path().join("clickhouse")).expect("starting clickhouse-server");
            (None, Some(ch))
        } else {
            (Some(TestClickHouse::get()), None)
        };
        let clickhouse_url = own
            .as_ref()
            .map_or_else(|| shared.as_ref().expect("one ClickHouse").url.clone(), ClickHouse::url);
        let node = ganache().await;
        let database = unique("stack");
        let database_url = format!("sqlite://{}/state.db?mode=rwc", dir.path().display());
        let exchange_addr = format!("127.0.0.1:{}", free_port());
        let (collector_http, writer_http, state_http, state_grpc, gateway_http, gateway_grpc) = (
            free_port(),
            free_port(),
            free_port(),
            free_port(),
            free_port(),
            free_port(),
        );
        let mut stack = Stack {
            dir,
            nats,
            nats_peers,
            clickhouse_url,
            own_clickhouse: own,
            database,
            node,
            exchange_addr,
            collector_http,
            writer_http,
            state_http,
            state_grpc,
            gateway_http,
            gateway_grpc,
            database_url,
            recipes: BTreeMap::new(),
            processes: BTreeMap::new(),
            _shared_clickhouse: shared,
        };
        stack.write_recipes(&options);

        let migrate = stack
            .command("storage-writer")
            .arg("migrate")
            .status()
            .expect("running migrate");
        assert!(migrate.success(), "moat-storage-writer migrate failed");
        for name in ["exchange", "state", "storage-writer", "gateway"] {
            stack.spawn(name);
        }
        // The gateway is ready (subscribed to NATS) before the collector
        // publishes its first book snapshots; a later one would wait for
        // the periodic republish.
        let gateway = format!("127.0.0.1:{}", stack.gateway_http);
        tokio::task::block_in_place(|| moat_devstack::wait_http_ok(&gateway, "/health", Duration::from_secs(60)))
            .unwrap_or_else(|e| panic!("the gateway did not become ready: {e}\n{}", stack.log_tail("gateway")));
        stack.spawn("collector");
        stack
    }

    fn write_recipes(&mut self, options: &StackOptions) {
        let log = ("RUST_LOG".to_owned(), options.log.to_owned());
        let mut exchange_args = vec![
            "exchange".to_owned(),
            "--listen".to_owned(),
            self.exchange_addr.clone(),
            "--trades-per-second".to_owned(),
            options.trades_per_second.to_string(),
        ];
        for s in &options.symbols {
            exchange_args.extend(["--symbol".to_owned(), s.clone()]);
        }
        let symbols: Vec<String> = options
            .symbols
            .iter()
            .map(|s| format!("\"{}\"", s.split('=').next().unwrap_or_default()))
            .collect();
        let venue = format!(
            "[{{kind=\"binance\",exchange=\"{EXCHANGE}\",ws_url=\"ws://{a}\",rest_url=\"http://{a}\",symbols=[{}],\
             open_interest_interval=\"0s\",stale_after=\"3s\",backoff_max=\"2s\"}}]",
            symbols.join(","),
            a = self.exchange_addr
        );
        let env = |pairs: &[(&str, String)]| -> Vec<(String, String)> {
            let mut env: Vec<(String, String)> = pairs.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect();
            env.push(log.clone());
            env.push(("MOAT_CONFIG_DIR".to_owned(), "/nonexistent".to_owned()));
            env
        };
        let nats = self.nats_url();
        let replicas = (1 + self.nats_peers.len()).to_string();
        self.recipes.insert(
            "exchange",
            Recipe {
                binary: "moat-collector",
                args: exchange_args,
                env: env(&[]),
            },
        );
        self.recipes.insert(
            "collector",
            Recipe {
                binary: "moat-collector",
                args: Vec::new(),
                env: env(&[
                    ("MOAT_COLLECTOR__NATS__URL", nats.clone()),
                    ("MOAT_COLLECTOR__STREAM__REPLICAS", replicas.clone()),
                    (
                        "MOAT_COLLECTOR__HTTP__LISTEN",
                        format!("127.0.0.1:{}", self.collector_http),
                    ),
                    ("MOAT_COLLECTOR__VENUES", venue),
                ]),
            },
        );
        self.recipes.insert(
            "storage-writer",
            Recipe {
                binary: "moat-storage-writer",
                args: Vec::new(),
                env: env(&[
                    ("MOAT_STORAGE_WRITER__NATS__URL", nats.clone()),
                    ("MOAT_STORAGE_WRITER__STREAM__REPLICAS", replicas),
                    ("MOAT_STORAGE_WRITER__CLICKHOUSE__URL", self.clickhouse_url.clone()),
                    ("MOAT_STORAGE_WRITER__CLICKHOUSE__DATABASE", self.database.clone()),
                    (
                        "MOAT_STORAGE_WRITER__HTTP__LISTEN",
                        format!("127.0.0.1:{}", self.writer_http),
                    ),
                ]),
            },
        );
        self.recipes.insert(
            "state",
            Recipe {
                binary: "moat-state",
                args: Vec::new(),
                env: env(&[
                    ("MOAT_STATE__GRPC__LISTEN", format!("127.0.0.1:{}", self.state_grpc)),
                    ("MOAT_STATE__HTTP__LISTEN", format!("127.0.0.1:{}", self.state_http)),
                    ("MOAT_STATE__DATABASE__URL", self.database_url.clone()),
                ]),
            },
        );
        // Only ethereum is allowed, with ganache as its upstream.
        let mut gateway_toml = format!(
            "[clickhouse]\nurl = \"{}\"\ndatabase = \"{}\"\n\n[rpc]\nhealth_check_interval = \"500ms\"\n\n\
             [rpc.chains.ethereum]\nchain_id = 1\nupstreams = [\"{}\"]\n",
            self.clickhouse_url, self.database, self.node.url
        );
        for chain in [
            "arbitrum",
            "base",
            "optimism",
            "polygon",
            "avalanche",
            "bsc",
            "sonic",
            "plasma",
            "blast",
            "mantle",
            "berachain",
        ] {
            gateway_toml.push_str(&format!("\n[rpc.chains.{chain}]\nenabled = false\n"));
        }
        let gateway_config = self.dir.path().join("gateway.toml");
        std::fs::write(&gateway_config, gateway_toml).expect("writing gateway.toml");
        let tokens = self.dir.path().join("tokens");
        std::fs::write(&tokens, format!("e2e {TOKEN}\n")).expect("writing tokens");
        self.recipes.insert(
            "gateway",
            Recipe {
                binary: "moat-gateway",
                args: Vec::new(),
                env: env(&[
                    ("MOAT_GATEWAY_CONFIG", gateway_config.display().to_string()),
                    ("MOAT_GATEWAY__GRPC__LISTEN", format!("127.0.0.1:{}", self.gateway_grpc)),
                    ("MOAT_GATEWAY__HTTP__LISTEN", format!("127.0.0.1:{}", self.gateway_http)),
                    ("MOAT_GATEWAY__NATS__URL", nats),
                    (
                        "MOAT_GATEWAY__STATE__ENDPOINT",
                        format!("http://127.0.0.1:{}", self.state_grpc),
                    ),
                    ("MOAT_GATEWAY__AUTH__TOKENS_FILE", tokens.display().to_string()),
                ]),
            },
        );
    }

    /// Every NATS server of the stack, comma-separated, as services take it.
    pub fn nats_url(&self) -> String {
        let mut urls = vec![self.nats.url()];
        urls.extend(self.nats_peers.iter().map(Nats::url));
        urls.join(",")
    }

    fn command(&self, name: &str) -> Command {
        let recipe = &self.recipes[name];
        let mut cmd = Command::new(bin(recipe.binary));
        cmd.args(&recipe.args).envs(recipe.env.iter().map(|(k, v)| (k, v)));
        cmd
    }

    /// Log file of a service.
    /// The process id of a running part: a service (`exchange`,
    /// `collector`, `storage-writer`, `state`, `gateway`), `nats` (the
    /// first node) or `clickhouse` (when the stack runs its own).
    pub fn pid(&self, name: &str) -> Option<u32> {
        match name {
            "nats" => self.nats.pid(),
            "clickhouse" => self.own_clickhouse.as_ref().and_then(ClickHouse::pid),
            _ => self.processes.get(name).and_then(ManagedProcess::pid),
        }
    }

    pub fn log(&self, name: &str) -> PathBuf {
        self.dir.path().join(format!("{name}.log"))
    }

    /// Starts (or starts again) a service process.
    pub fn spawn(&mut self, name: &'static str) {
        let process = ManagedProcess::spawn(name, self.command(name), &self.log(name))
            .unwrap_or_else(|e| panic!("starting {name}: {e}"));
        self.processes.insert(name, process);
    }

    /// SIGKILLs a service process.
    pub fn kill(&mut self, name: &'static str) {
        if let Some(mut process) = self.processes.remove(name) {
            process.kill();
        }
    }

    /// The last lines of a service's log, for failure messages.
    pub fn log_tail(&self, name: &str) -> String {
        self.processes
            .get(name)
            .map_or_else(|| format!("{name} is not running"), |p| p.log_tail(20))
    }

    /// `GET /moat/stats` of the local exchange.
    pub fn exchange_stats(&self) -> Value {
        let r = http_get(&self.exchange_addr, "/moat/stats", Duration::from_secs(5)).expect("local exchange reachable");
        serde_json::from_str(&r.body).expect("stats are JSON")
    }

    /// `POST /moat/<path>` to the local exchange (`rate?trades_per_second=0`
    /// pauses the feed, `disconnect` drops every connection).
    pub fn exchange_control(&self, path: &str) {
        let r = moat_devstack::http_post(
            &self.exchange_addr,
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
        let db = &self.database;
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
            format!("--gateway=http://127.0.0.1:{}", self.gateway_grpc),
            format!("--gateway-http=http://127.0.0.1:{}", self.gateway_http),
            format!("--collector-http=http://127.0.0.1:{}", self.collector_http),
            format!("--storage-writer-http=http://127.0.0.1:{}", self.writer_http),
            format!("--state-http=http://127.0.0.1:{}", self.state_http),
            format!("--nats={}", self.nats.url()),
            format!("--nats-monitor=http://{}", self.nats.monitor_addr()),
            format!("--clickhouse={}", self.clickhouse_url),
            format!("--clickhouse-database={}", self.database),
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
            .arg(format!("--gateway=http://127.0.0.1:{}", self.gateway_grpc))
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
