//! `moat`: prices, books, candles, EVM RPC and state for strategies through
//! the gateway; `tail`, `status` and `doctor` for operators.

mod doctor;
mod gateway;
mod ops;
mod output;
mod strategy;

use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "moat",
    version,
    about = "moat for strategies and operators",
    max_term_width = 100
)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

/// Options every command understands.
#[derive(Args, Debug, Clone)]
pub struct Global {
    /// Gateway gRPC address.
    #[arg(long, env = "MOAT_GATEWAY", default_value = "http://127.0.0.1:50051", global = true)]
    pub gateway: String,
    /// The strategy's bearer token.
    #[arg(long, env = "MOAT_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
    /// Seconds to wait for an answer.
    #[arg(long, default_value_t = 10.0, global = true)]
    pub timeout: f64,
    /// CA certificate (PEM) of the gateway's certificate: TLS to the gateway
    /// (also turned on by an https:// --gateway, with the system's roots).
    #[arg(long, env = "MOAT_TLS_CA", global = true)]
    pub ca: Option<std::path::PathBuf>,
    /// The strategy's certificate (PEM), for a gateway that asks for one.
    #[arg(long, env = "MOAT_TLS_CERT", global = true, requires = "key")]
    pub cert: Option<std::path::PathBuf>,
    /// The key of --cert (PEM).
    #[arg(long, env = "MOAT_TLS_KEY", global = true, requires = "cert")]
    pub key: Option<std::path::PathBuf>,
}

impl Global {
    /// Whether calls to the gateway go over TLS.
    pub fn tls(&self) -> bool {
        self.ca.is_some() || self.gateway.starts_with("https://")
    }

    /// `--cert` and `--key` read, when given.
    pub fn identity(&self) -> anyhow::Result<Option<(String, String)>> {
        match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => Ok(Some((read(cert)?, read(key)?))),
            _ => Ok(None),
        }
    }
}

/// A PEM file, or an error naming it.
pub fn read(path: &std::path::Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Price of a token: median over fresh exchange sources.
    Price {
        /// ETH, BTC, WETH…
        #[arg(value_name = "TOKEN")]
        asset: String,
        #[arg(long, default_value = "USD")]
        quote: String,
        /// Map wrapped tokens for this chain (WETH on arbitrum → ETH).
        #[arg(long)]
        chain: Option<String>,
    },
    /// Prices of several tokens at once.
    Prices {
        #[arg(required = true)]
        #[arg(value_name = "TOKEN")]
        assets: Vec<String>,
        #[arg(long, default_value = "USD")]
        quote: String,
        #[arg(long)]
        chain: Option<String>,
    },
    /// The live order book of a symbol on an exchange.
    Book {
        exchange: String,
        symbol: String,
        #[arg(long, default_value_t = 10)]
        depth: u32,
    },
    /// Candles from history, e.g. `moat candles binance BTC-USDT 1m --since 1h`.
    Candles {
        exchange: String,
        symbol: String,
        /// 1m, 5m, 15m, 1h, 4h or 1d.
        interval: String,
        /// How far back: 90s, 30m, 1h, 2d.
        #[arg(long, default_value = "1h")]
        since: String,
    },
    /// One EVM JSON-RPC call, e.g. `moat rpc ethereum eth_getBalance '["0x…","latest"]'`.
    Rpc {
        chain: String,
        method: String,
        /// JSON array of parameters.
        params: Option<String>,
    },
    /// The strategy's saved state.
    #[command(subcommand)]
    State(StateCommand),
    /// Live market events from NATS, decoded, e.g. `moat tail 'md.trade.binance.>'`.
    Tail(ops::TailArgs),
    /// One screen: services, venue connections, rates and lag.
    Status(ops::Endpoints),
    /// Runs every check of the troubleshooting guide; non-zero exit on a failure.
    Doctor(doctor::DoctorArgs),
}

#[derive(Subcommand, Debug)]
pub enum StateCommand {
    /// Prints the latest state (or `--version N`) to stdout.
    Get {
        #[arg(long, default_value_t = 0)]
        version: u64,
    },
    /// Saves DATA, or the contents of `--file` (`-` for stdin).
    Put {
        data: Option<String>,
        #[arg(long, conflicts_with = "data")]
        file: Option<std::path::PathBuf>,
        /// Refuse unless the current version is this one (0: no state yet).
        #[arg(long)]
        expected_version: Option<u64>,
    },
    /// Deletes every version.
    Rm,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let global = cli.global;
    let result = match cli.command {
        Command::Price { asset, quote, chain } => strategy::price(&global, vec![asset], quote, chain).await,
        Command::Prices { assets, quote, chain } => strategy::price(&global, assets, quote, chain).await,
        Command::Book {
            exchange,
            symbol,
            depth,
        } => strategy::book(&global, exchange, symbol, depth).await,
        Command::Candles {
            exchange,
            symbol,
            interval,
            since,
        } => strategy::candles(&global, exchange, symbol, interval, &since).await,
        Command::Rpc { chain, method, params } => strategy::rpc(&global, chain, method, params).await,
        Command::State(command) => strategy::state(&global, command).await,
        Command::Tail(args) => ops::tail(&global, args).await,
        Command::Status(endpoints) => ops::status(&global, &endpoints).await,
        Command::Doctor(args) => return doctor::run(&global, &args).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("moat: {error:#}");
            ExitCode::FAILURE
        }
    }
}
