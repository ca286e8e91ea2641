//! The services of a local stack: how each is started and probed.

use std::path::{Path, PathBuf};
use std::process::Command;

/// One moat service as `up` runs it.
pub struct Service {
    pub name: &'static str,
    pub binary: &'static str,
    /// Health endpoint address (host:port).
    pub health: &'static str,
    /// Endpoints shown in the table.
    pub endpoints: &'static str,
    /// Environment on top of `config/<name>.toml`.
    pub env: fn(&Deps) -> Vec<(String, String)>,
}

/// Where the dependencies listen.
pub struct Deps {
    pub nats_url: String,
    pub clickhouse_url: String,
    pub data_dir: PathBuf,
    /// `strategy_id token` lines for the gateway.
    pub tokens_file: PathBuf,
    /// The local EVM node serving chain `ethereum`, when Node.js is there.
    pub ethereum_upstream: Option<String>,
    /// The local exchange (`moat-collector exchange`), host:port.
    pub exchange: String,
}

/// Symbols the local exchange generates, as `SYMBOL=starting price`.
pub const EXCHANGE_SYMBOLS: &[&str] = &["BTCUSDT=60000.00", "ETHUSDT=3000.00", "SOLUSDT=150.000"];

pub const SERVICES: &[Service] = &[
    Service {
        name: "state",
        binary: "moat-state",
        health: "127.0.0.1:9091",
        endpoints: "gRPC 127.0.0.1:50052, HTTP http://127.0.0.1:9091/health",
        env: |deps| {
            let db = deps.data_dir.join("state.db");
            vec![("MOAT_STATE__DATABASE__URL".into(), format!("sqlite://{}", db.display()))]
        },
    },
    Service {
        name: "storage-writer",
        binary: "moat-storage-writer",
        health: "127.0.0.1:8081",
        endpoints: "HTTP http://127.0.0.1:8081/health",
        env: |deps| {
            vec![
                ("MOAT_STORAGE_WRITER__NATS__URL".into(), deps.nats_url.clone()),
                (
                    "MOAT_STORAGE_WRITER__CLICKHOUSE__URL".into(),
                    deps.clickhouse_url.clone(),
                ),
            ]
        },
    },
    Service {
        name: "gateway",
        binary: "moat-gateway",
        health: "127.0.0.1:9090",
        endpoints: "gRPC 127.0.0.1:50051, HTTP http://127.0.0.1:9090/health, /rpc/{chain}",
        env: |deps| {
            let mut env = vec![
                ("MOAT_GATEWAY__NATS__URL".into(), deps.nats_url.clone()),
                ("MOAT_GATEWAY__CLICKHOUSE__URL".into(), deps.clickhouse_url.clone()),
                (
                    "MOAT_GATEWAY__AUTH__TOKENS_FILE".into(),
                    deps.tokens_file.display().to_string(),
                ),
            ];
            match &deps.ethereum_upstream {
                Some(url) => env.push((
                    "MOAT_GATEWAY__RPC__CHAINS__ETHEREUM__UPSTREAMS".into(),
                    format!("[\"{url}\"]"),
                )),
                // A chain without an upstream is off, not failing.
                None => env.push(("MOAT_GATEWAY__RPC__CHAINS__ETHEREUM__ENABLED".into(), "false".into())),
            }
            env
        },
    },
    Service {
        name: "collector",
        binary: "moat-collector",
        health: "127.0.0.1:8080",
        endpoints: "HTTP http://127.0.0.1:8080/health, /status (venue `local`)",
        env: |deps| {
            let symbols: Vec<String> = EXCHANGE_SYMBOLS
                .iter()
                .map(|s| format!("\"{}\"", s.split('=').next().unwrap_or_default()))
                .collect();
            let venue = format!(
                "[{{kind=\"binance\",exchange=\"local\",ws_url=\"ws://{addr}\",rest_url=\"http://{addr}\",symbols=[{}],open_interest_interval=\"0s\"}}]",
                symbols.join(","),
                addr = deps.exchange
            );
            vec![
                ("MOAT_COLLECTOR__NATS__URL".into(), deps.nats_url.clone()),
                ("MOAT_COLLECTOR__VENUES".into(), venue),
            ]
        },
    },
];

/// Path of a built service binary.
pub fn binary(root: &Path, name: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
    target.join("debug").join(name)
}

pub fn command(root: &Path, service: &Service, deps: &Deps) -> Command {
    let mut cmd = Command::new(binary(root, service.binary));
    cmd.current_dir(root).envs((service.env)(deps));
    cmd
}
