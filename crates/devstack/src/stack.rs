//! The whole stack as users run it, each part its own process: NATS,
//! ClickHouse, the local exchange (`moat-collector exchange`, a generated
//! session in Binance's protocol), the collector reading it as venue
//! [`EXCHANGE`], the storage-writer, the state service and the gateway.
//!
//! `cargo xtask up` starts it on the documented ports; the end-to-end,
//! doctor, chaos and durability tests and the load benchmark start it on
//! free ports. Both read the shipped `config/` files, with the addresses of
//! this stack laid over them as environment variables, so the tests run the
//! configuration users start from.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::prometheus::{ALERT_RULES, Prometheus};
use crate::{ClickHouse, ManagedProcess, NATS_SYNC_INTERVAL, Nats, Result, ensure_port_free, free_port};

/// The collector's name for the local exchange.
pub const EXCHANGE: &str = "local";
/// Venue symbols of the local exchange, with their starting prices.
pub const SYMBOLS: &[&str] = &["BTCUSDT=60000.00", "ETHUSDT=3000.00", "SOLUSDT=150.000"];
/// The parts this module starts as processes, in start order: the gateway
/// is subscribed to NATS before the collector publishes its first book
/// snapshots (a later subscriber would wait for the periodic republish).
pub const PARTS: [&str; 5] = ["exchange", "state", "storage-writer", "gateway", "collector"];

/// The NATS users of moat's services, least privilege (a test keeps it
/// equal to `moat_common_types::nats::USERS`).
pub const NATS_USERS: &str = "deploy/nats/users.conf";

/// How long a part may take to answer its health check.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(60);

/// Where the stack listens, all on 127.0.0.1.
#[derive(Debug, Clone)]
pub struct Ports {
    /// nats-server's client and monitoring ports; `None` picks free ones
    /// (and a cluster always does).
    pub nats: Option<(u16, u16)>,
    /// ClickHouse's HTTP port when the stack runs its own; `None` picks a
    /// free one.
    pub clickhouse: Option<u16>,
    pub exchange: u16,
    pub collector_http: u16,
    pub writer_http: u16,
    pub state_http: u16,
    pub state_grpc: u16,
    pub gateway_http: u16,
    pub gateway_grpc: u16,
    pub prometheus: u16,
}

impl Ports {
    /// The ports README documents for `cargo xtask up`.
    pub const DEV: Ports = Ports {
        nats: Some((4222, 8222)),
        clickhouse: Some(8123),
        exchange: 9443,
        collector_http: 8080,
        writer_http: 8081,
        state_http: 9091,
        state_grpc: 50052,
        gateway_http: 9090,
        gateway_grpc: 50051,
        prometheus: 9095,
    };

    /// Free ports, so that stacks of several tests run side by side.
    pub fn free() -> Ports {
        Ports {
            nats: None,
            clickhouse: None,
            exchange: free_port(),
            collector_http: free_port(),
            writer_http: free_port(),
            state_http: free_port(),
            state_grpc: free_port(),
            gateway_http: free_port(),
            gateway_grpc: free_port(),
            prometheus: free_port(),
        }
    }
}

/// What to start.
#[derive(Debug, Clone)]
pub struct StackSpec {
    /// The workspace: `config/` is read from here.
    pub root: PathBuf,
    /// Where the service binaries are (`target/debug` or a release folder).
    pub bin_dir: PathBuf,
    /// Data and logs of every part.
    pub dir: PathBuf,
    pub ports: Ports,
    /// 1 for one nats-server, 3 for a cluster with `MARKET_DATA` on three
    /// replicas (the production topology).
    pub nats_nodes: usize,
    /// JetStream's `sync_interval` of a single server (a cluster keeps
    /// [`NATS_SYNC_INTERVAL`]).
    pub nats_sync_interval: String,
    /// An already running ClickHouse (its HTTP URL) instead of one of the
    /// stack's own.
    pub clickhouse_url: Option<String>,
    /// The ClickHouse database the services write and read.
    pub database: String,
    /// The local exchange's symbols, `VENUESYMBOL=starting price`.
    pub symbols: Vec<String>,
    /// Trades per second per symbol from the local exchange.
    pub trades_per_second: u32,
    /// The upstream of chain `ethereum`; without one the chain is off.
    pub ethereum_upstream: Option<String>,
    /// `(strategy id, token)` pairs the gateway accepts.
    pub tokens: Vec<(String, String)>,
    /// `RUST_LOG` of the services; `None` keeps the caller's.
    pub log_filter: Option<String>,
    /// Notice a silent venue within 3 s, reconnect within 2 s and probe RPC
    /// upstreams every 500 ms, so fault tests see recovery quickly.
    pub quick_recovery: bool,
    /// Run Prometheus, scraping every service at this interval with moat's
    /// alert rules ([`ALERT_RULES`]) evaluated as often.
    pub prometheus: Option<Duration>,
    /// More configuration for the services, as environment overrides
    /// (`MOAT_GATEWAY__LIMITS__BURST`, …), applied after the stack's own.
    /// Each key names its service, so every part is given all of them.
    pub overrides: Vec<(String, String)>,
    /// Certificates of the development CA ([`crate::certs`]): TLS and
    /// mutual TLS on the gateway's listeners and between gateway and state.
    /// `None` runs them in plaintext, said explicitly in their config.
    pub tls: Option<crate::certs::Certs>,
}

impl StackSpec {
    /// The defaults for a workspace at `root` running its debug binaries,
    /// with data under `dir`.
    pub fn new(root: &Path, dir: &Path, ports: Ports) -> StackSpec {
        let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
        StackSpec {
            root: root.to_owned(),
            bin_dir: target.join("debug"),
            dir: dir.to_owned(),
            ports,
            nats_nodes: 1,
            nats_sync_interval: NATS_SYNC_INTERVAL.to_owned(),
            clickhouse_url: None,
            database: "moat".to_owned(),
            symbols: SYMBOLS.iter().map(|s| (*s).to_owned()).collect(),
            trades_per_second: 20,
            ethereum_upstream: None,
            tokens: Vec::new(),
            log_filter: None,
            quick_recovery: false,
            prometheus: None,
            overrides: Vec::new(),
            tls: None,
        }
    }
}

/// A running stack. Dropping it stops the services in reverse start order,
/// then ClickHouse and NATS.
pub struct Stack {
    pub spec: StackSpec,
    processes: BTreeMap<&'static str, ManagedProcess>,
    /// The nats-server nodes, the first one first.
    pub nats: Vec<Nats>,
    /// The stack's own ClickHouse (none when it uses a running one).
    pub clickhouse: Option<ClickHouse>,
    pub clickhouse_url: String,
    /// The state service's database.
    pub database_url: String,
    /// Prometheus, when the spec asks for it.
    pub prometheus: Option<Prometheus>,
}

impl Stack {
    /// Starts every part and waits until each answers its health check.
    pub fn start(spec: StackSpec) -> Result<Stack> {
        for sub in ["nats", "clickhouse", "logs"] {
            let path = spec.dir.join(sub);
            std::fs::create_dir_all(&path).map_err(|e| format!("creating {}: {e}", path.display()))?;
        }
        let nats = match (spec.nats_nodes, &spec.tls) {
            (1, Some(certs)) => {
                let file = spec.root.join(NATS_USERS);
                let users = std::fs::read_to_string(&file).map_err(|e| format!("reading {}: {e}", file.display()))?;
                vec![Nats::start_tls(&spec.dir.join("nats"), spec.ports.nats, certs, &users)?]
            }
            (n, Some(_)) => return Err(format!("a TLS stack runs one nats-server, not {n}")),
            (1, None) => vec![Nats::start_with(
                &spec.dir.join("nats"),
                spec.ports.nats,
                &spec.nats_sync_interval,
            )?],
            (n, None) => Nats::cluster(&spec.dir.join("nats"), n)?,
        };
        let (clickhouse, clickhouse_url) = match &spec.clickhouse_url {
            Some(url) => (None, url.clone()),
            None => {
                let own = match spec.ports.clickhouse {
                    Some(port) => ClickHouse::start_on(&spec.dir.join("clickhouse"), port)?,
                    None => ClickHouse::start(&spec.dir.join("clickhouse"))?,
                };
                let url = own.url();
                (Some(own), url)
            }
        };
        let tokens: String = spec
            .tokens
            .iter()
            .map(|(id, token)| format!("{id} {token}\n"))
            .collect();
        let tokens_file = spec.dir.join("tokens");
        std::fs::write(&tokens_file, format!("# strategy tokens of this stack\n{tokens}"))
            .map_err(|e| format!("writing {}: {e}", tokens_file.display()))?;
        let database_url = format!("sqlite://{}?mode=rwc", spec.dir.join("state.db").display());
        let mut stack = Stack {
            spec,
            processes: BTreeMap::new(),
            nats,
            clickhouse,
            clickhouse_url,
            database_url,
            prometheus: None,
        };
        stack.migrate()?;
        for name in PARTS {
            stack.spawn(name)?;
            stack.wait_healthy(name)?;
        }
        if let Some(interval) = stack.spec.prometheus {
            // Last, so its first scrape finds every service up.
            let targets: Vec<(String, String)> = ["collector", "storage-writer", "state", "gateway"]
                .iter()
                .map(|name| (format!("moat-{name}"), stack.probe_addr(name)))
                .collect();
            stack.prometheus = Some(Prometheus::start(
                &stack.spec.dir.join("prometheus"),
                stack.spec.ports.prometheus,
                &stack.spec.root.join(ALERT_RULES),
                &targets,
                interval,
                stack.spec.tls.as_ref().map(|c| c.ca.as_path()),
            )?);
        }
        Ok(stack)
    }

    /// Every NATS server of the stack, comma-separated, as services take it.
    pub fn nats_url(&self) -> String {
        self.nats.iter().map(Nats::url).collect::<Vec<_>>().join(",")
    }

    /// `host:port` of a part's health endpoint (its HTTP listener).
    pub fn http_addr(&self, name: &str) -> String {
        let p = &self.spec.ports;
        let port = match name {
            "exchange" => p.exchange,
            "collector" => p.collector_http,
            "storage-writer" => p.writer_http,
            "state" => p.state_http,
            "gateway" => p.gateway_http,
            other => panic!("{other} is not one of the stack's parts {PARTS:?}"),
        };
        format!("127.0.0.1:{port}")
    }

    /// Where part `name`'s health and metrics are read: [`Stack::http_addr`],
    /// as `https://…` when it serves them over TLS.
    pub fn probe_addr(&self, name: &str) -> String {
        match (&self.spec.tls, name) {
            (Some(_), "gateway") => format!("https://{}", self.http_addr(name)),
            _ => self.http_addr(name),
        }
    }

    fn health_path(name: &str) -> &'static str {
        if name == "exchange" { "/moat/stats" } else { "/health" }
    }

    /// The command that starts part `name`.
    pub fn command(&self, name: &str) -> Command {
        let spec = &self.spec;
        let (binary, args, env) = match name {
            "exchange" => {
                let mut args = vec![
                    "exchange".to_owned(),
                    "--listen".to_owned(),
                    self.http_addr("exchange"),
                    "--trades-per-second".to_owned(),
                    spec.trades_per_second.to_string(),
                ];
                for symbol in &spec.symbols {
                    args.extend(["--symbol".to_owned(), symbol.clone()]);
                }
                ("moat-collector", args, Vec::new())
            }
            "collector" => ("moat-collector", Vec::new(), self.collector_env()),
            "storage-writer" => ("moat-storage-writer", Vec::new(), self.writer_env()),
            "state" => ("moat-state", Vec::new(), self.state_env()),
            "gateway" => ("moat-gateway", Vec::new(), self.gateway_env()),
            other => panic!("{other} is not one of the stack's parts {PARTS:?}"),
        };
        let mut cmd = Command::new(spec.bin_dir.join(binary));
        cmd.current_dir(&spec.root)
            .args(args)
            .env("MOAT_CONFIG_DIR", spec.root.join("config"))
            .envs(env)
            .envs(spec.overrides.iter().map(|(k, v)| (k, v)));
        if let Some(filter) = &spec.log_filter {
            cmd.env("RUST_LOG", filter);
        }
        cmd
    }

    fn collector_env(&self) -> Vec<(&'static str, String)> {
        let spec = &self.spec;
        let symbols: Vec<String> = spec
            .symbols
            .iter()
            .map(|s| format!("\"{}\"", s.split('=').next().unwrap_or_default()))
            .collect();
        let recovery = if spec.quick_recovery {
            ",stale_after=\"3s\",backoff_max=\"2s\""
        } else {
            ""
        };
        let venue = format!(
            "[{{kind=\"binance\",exchange=\"{EXCHANGE}\",ws_url=\"ws://{a}\",rest_url=\"http://{a}\",symbols=[{}],\
             open_interest_interval=\"0s\"{recovery}}}]",
            symbols.join(","),
            a = self.http_addr("exchange"),
        );
        vec![
            ("MOAT_COLLECTOR__NATS__URL", self.nats_url()),
            ("MOAT_COLLECTOR__STREAM__REPLICAS", self.nats.len().to_string()),
            ("MOAT_COLLECTOR__HTTP__LISTEN", self.http_addr("collector")),
            ("MOAT_COLLECTOR__VENUES", venue),
        ]
        .into_iter()
        .chain(self.nats_tls_env(
            [
                "MOAT_COLLECTOR__NATS__TLS__CA",
                "MOAT_COLLECTOR__NATS__TLS__CERT",
                "MOAT_COLLECTOR__NATS__TLS__KEY",
            ],
            "collector",
        ))
        .collect()
    }

    /// With TLS, a service's `nats.tls`: the CA and its own certificate,
    /// which names its NATS user.
    fn nats_tls_env(&self, [ca, cert, key]: [&'static str; 3], identity: &str) -> Vec<(&'static str, String)> {
        let Some(certs) = &self.spec.tls else {
            return Vec::new();
        };
        let pair = certs.pair(identity);
        vec![
            (ca, certs.ca.display().to_string()),
            (cert, pair.cert.display().to_string()),
            (key, pair.key.display().to_string()),
        ]
    }

    fn writer_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("MOAT_STORAGE_WRITER__NATS__URL", self.nats_url()),
            ("MOAT_STORAGE_WRITER__STREAM__REPLICAS", self.nats.len().to_string()),
            ("MOAT_STORAGE_WRITER__CLICKHOUSE__URL", self.clickhouse_url.clone()),
            ("MOAT_STORAGE_WRITER__CLICKHOUSE__DATABASE", self.spec.database.clone()),
            ("MOAT_STORAGE_WRITER__HTTP__LISTEN", self.http_addr("storage-writer")),
        ]
        .into_iter()
        .chain(self.nats_tls_env(
            [
                "MOAT_STORAGE_WRITER__NATS__TLS__CA",
                "MOAT_STORAGE_WRITER__NATS__TLS__CERT",
                "MOAT_STORAGE_WRITER__NATS__TLS__KEY",
            ],
            "storage-writer",
        ))
        .collect()
    }

    fn state_env(&self) -> Vec<(&'static str, String)> {
        let spec = &self.spec;
        let mut env = vec![
            (
                "MOAT_STATE__GRPC__LISTEN",
                format!("127.0.0.1:{}", spec.ports.state_grpc),
            ),
            ("MOAT_STATE__HTTP__LISTEN", self.http_addr("state")),
            ("MOAT_STATE__DATABASE__URL", self.database_url.clone()),
        ];
        match &spec.tls {
            None => env.push(("MOAT_STATE__TLS__PLAINTEXT", "true".to_owned())),
            Some(certs) => {
                let pair = certs.pair("state");
                env.extend([
                    ("MOAT_STATE__TLS__CERT", pair.cert.display().to_string()),
                    ("MOAT_STATE__TLS__KEY", pair.key.display().to_string()),
                    ("MOAT_STATE__TLS__CLIENT_CA", certs.ca.display().to_string()),
                    ("MOAT_STATE__TLS__ALLOWED_CLIENTS", "[\"moat-gateway\"]".to_owned()),
                ]);
            }
        }
        env
    }

    fn gateway_env(&self) -> Vec<(&'static str, String)> {
        let spec = &self.spec;
        let mut env = vec![
            (
                "MOAT_GATEWAY__GRPC__LISTEN",
                format!("127.0.0.1:{}", spec.ports.gateway_grpc),
            ),
            ("MOAT_GATEWAY__HTTP__LISTEN", self.http_addr("gateway")),
            ("MOAT_GATEWAY__NATS__URL", self.nats_url()),
            ("MOAT_GATEWAY__CLICKHOUSE__URL", self.clickhouse_url.clone()),
            ("MOAT_GATEWAY__CLICKHOUSE__DATABASE", spec.database.clone()),
            (
                "MOAT_GATEWAY__AUTH__TOKENS_FILE",
                spec.dir.join("tokens").display().to_string(),
            ),
        ];
        match &spec.tls {
            None => env.extend([
                ("MOAT_GATEWAY__TLS__PLAINTEXT", "true".to_owned()),
                (
                    "MOAT_GATEWAY__STATE__ENDPOINT",
                    format!("http://127.0.0.1:{}", spec.ports.state_grpc),
                ),
            ]),
            Some(certs) => {
                let pair = certs.pair("gateway");
                let (cert, key) = (pair.cert.display().to_string(), pair.key.display().to_string());
                let ca = certs.ca.display().to_string();
                env.extend([
                    ("MOAT_GATEWAY__TLS__CERT", cert.clone()),
                    ("MOAT_GATEWAY__TLS__KEY", key.clone()),
                    // Strategies present a certificate of the same CA.
                    ("MOAT_GATEWAY__TLS__CLIENT_CA", ca.clone()),
                    (
                        "MOAT_GATEWAY__STATE__ENDPOINT",
                        format!("https://localhost:{}", spec.ports.state_grpc),
                    ),
                    ("MOAT_GATEWAY__STATE__TLS__CA", ca),
                    ("MOAT_GATEWAY__STATE__TLS__CERT", cert),
                    ("MOAT_GATEWAY__STATE__TLS__KEY", key),
                ]);
            }
        }
        env.extend(self.nats_tls_env(
            [
                "MOAT_GATEWAY__NATS__TLS__CA",
                "MOAT_GATEWAY__NATS__TLS__CERT",
                "MOAT_GATEWAY__NATS__TLS__KEY",
            ],
            "gateway",
        ));
        match &spec.ethereum_upstream {
            Some(url) => env.push(("MOAT_GATEWAY__RPC__CHAINS__ETHEREUM__UPSTREAMS", format!("[\"{url}\"]"))),
            // A chain without an upstream is off, not failing.
            None => env.push(("MOAT_GATEWAY__RPC__CHAINS__ETHEREUM__ENABLED", "false".to_owned())),
        }
        if spec.quick_recovery {
            env.push(("MOAT_GATEWAY__RPC__HEALTH_CHECK_INTERVAL", "500ms".to_owned()));
        }
        env
    }

    /// Creates the ClickHouse tables (`moat-storage-writer migrate`).
    fn migrate(&self) -> Result<()> {
        let out = self
            .command("storage-writer")
            .arg("migrate")
            .output()
            .map_err(|e| format!("running moat-storage-writer migrate: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "moat-storage-writer migrate failed with {}:\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }

    /// Starts (or starts again) part `name`, without waiting for it.
    pub fn spawn(&mut self, name: &'static str) -> Result<()> {
        let addr = self.http_addr(name);
        let port = addr.rsplit(':').next().and_then(|p| p.parse().ok()).unwrap_or(0);
        ensure_port_free(port, name)?;
        let process = ManagedProcess::spawn(name, self.command(name), &self.log(name))?;
        self.processes.insert(name, process);
        Ok(())
    }

    /// Waits until part `name` answers its health check
    /// ([`ManagedProcess::wait_ready`]).
    pub fn wait_healthy(&mut self, name: &'static str) -> Result<()> {
        let addr = self.probe_addr(name);
        let process = self
            .processes
            .get_mut(name)
            .ok_or_else(|| format!("{name} is not started"))?;
        process.wait_ready(&addr, Self::health_path(name), HEALTH_TIMEOUT)
    }

    /// SIGKILLs part `name`, as a crash would.
    pub fn kill(&mut self, name: &str) {
        if let Some(mut process) = self.processes.remove(name) {
            process.kill();
        }
    }

    /// The process id of a running part: one of [`PARTS`], `nats` (the
    /// first node) or `clickhouse` (when the stack runs its own).
    pub fn pid(&self, name: &str) -> Option<u32> {
        match name {
            "nats" => self.nats.first().and_then(Nats::pid),
            "clickhouse" => self.clickhouse.as_ref().and_then(ClickHouse::pid),
            _ => self.processes.get(name).and_then(ManagedProcess::pid),
        }
    }

    /// The log file of a part (every run of it, appended).
    pub fn log(&self, name: &str) -> PathBuf {
        self.spec.dir.join("logs").join(format!("{name}.log"))
    }

    /// The last lines of a part's log, for failure messages.
    pub fn log_tail(&self, name: &str) -> String {
        let text = std::fs::read_to_string(self.log(name)).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// The first part whose process has exited, if any.
    pub fn exited(&self) -> Option<&'static str> {
        self.processes
            .iter()
            .find(|(_, process)| !process.is_running_now())
            .map(|(name, _)| *name)
    }

    /// Leaves every process running after this handle is gone; returns
    /// `(name, pid, health address)` of each in start order, for a later
    /// stop by pid.
    pub fn detach(mut self) -> Vec<(String, u32, String)> {
        let mut parts = Vec::new();
        for nats in std::mem::take(&mut self.nats) {
            let addr = nats.monitor_addr();
            parts.push(("nats-server".to_owned(), nats.detach().unwrap_or(0), addr));
        }
        if let Some(clickhouse) = self.clickhouse.take() {
            let addr = clickhouse.http_addr();
            parts.push(("clickhouse-server".to_owned(), clickhouse.detach().unwrap_or(0), addr));
        }
        for name in PARTS {
            let addr = self.probe_addr(name);
            if let Some(process) = self.processes.remove(name) {
                parts.push((name.to_owned(), process.detach().unwrap_or(0), addr));
            }
        }
        // Last in start order, so a stop in reverse order stops it first.
        if let Some(prometheus) = self.prometheus.take() {
            let addr = prometheus.addr();
            parts.push(("prometheus".to_owned(), prometheus.detach().unwrap_or(0), addr));
        }
        parts
    }
}

impl Drop for Stack {
    /// Services first, in reverse start order, so they drain into live
    /// dependencies; then ClickHouse and NATS.
    fn drop(&mut self) {
        if let Some(mut prometheus) = self.prometheus.take() {
            prometheus.stop();
        }
        for name in PARTS.iter().rev() {
            if let Some(mut process) = self.processes.remove(name) {
                process.stop();
            }
        }
        if let Some(mut clickhouse) = self.clickhouse.take() {
            clickhouse.stop();
        }
        for nats in &mut self.nats {
            nats.stop();
        }
    }
}

/// Starts ganache (installed with `npm ci` in `tests/peers` under `root`)
/// on `port`, logging to `log`, and waits until it listens.
pub fn start_ganache(root: &Path, port: u16, log: &Path) -> Result<ManagedProcess> {
    let cmd = crate::ganache_command(root, port)?;
    let addr = format!("127.0.0.1:{port}");
    ensure_port_free(port, "ganache")?;
    let mut process = ManagedProcess::spawn("ganache", cmd, log)?;
    let deadline = Instant::now() + HEALTH_TIMEOUT;
    while std::net::TcpStream::connect(&addr).is_err() {
        if !process.is_running() {
            return Err(format!("ganache exited during start-up:\n{}", process.log_tail(15)));
        }
        if Instant::now() > deadline {
            return Err(format!("ganache did not listen on {addr} within 60 s"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(process)
}
