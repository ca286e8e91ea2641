//! `cargo xtask <command>`: developer automation for moat (matklad's xtask
//! pattern: one binary aliased in `.cargo/config.toml`, one module per
//! subcommand, few dependencies, no async runtime).

mod audit;
mod bench;
mod deploy;
mod fuzz;
mod sbom;
mod test;
mod up;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Developer automation for moat: a local stack, the tests, benchmarks,
/// chaos and fuzz runs, deployment checks.
#[derive(Parser)]
#[command(name = "cargo xtask", bin_name = "cargo xtask")]
#[command(
    after_help = "Environment: MOAT_DEV_NATS_PORT (4222), MOAT_DEV_NATS_MONITOR_PORT (8222), \
MOAT_DEV_CLICKHOUSE_PORT (8123), MOAT_DEV_EXCHANGE_PORT (9443), MOAT_DEV_GANACHE_PORT (8545), \
MOAT_DEV_PROMETHEUS_PORT (9095): ports of what \
`up` starts; MOAT_ENGINES_DIR: where NATS and ClickHouse are installed (target/moat-engines)."
)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build, start NATS (JetStream), ClickHouse, the local exchange and every
    /// service; wait for health; Ctrl-C stops everything.
    Up {
        /// Leave the stack running (`cargo xtask status`, `cargo xtask down`).
        #[arg(long, short)]
        detach: bool,
        /// TLS and mutual TLS with the development CA (`cargo xtask certs`):
        /// the gateway's gRPC and HTTP, strategies' client certificates,
        /// and gateway to state.
        #[arg(long)]
        tls: bool,
    },
    /// Stop a stack started with `up --detach`.
    Down,
    /// A development CA and a certificate for every service and for the
    /// `dev` strategy under target/moat-dev/tls (kept while valid).
    Certs,
    /// Show the processes and health of a detached stack.
    Status,
    /// Start real NATS, ClickHouse and PostgreSQL on free ports and run every
    /// unit and integration test.
    Test {
        /// Passed to `cargo test` (e.g. `-- --nocapture`).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Release build, real NATS and ClickHouse, each figure beside a baseline
    /// measured in the same run; a full run rewrites BENCHMARKS.md.
    Bench {
        /// Sections to run, comma-separated: parse, replay, state, durability,
        /// storage, writer, gateway, rpc, load (default: all).
        #[arg(long, value_name = "SECTIONS")]
        only: Option<String>,
        /// Seconds each sustained-load rate is held.
        #[arg(long, value_name = "N", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
        load_secs: u64,
    },
    /// The whole stack under a steady feed, each component SIGKILLed for SECS
    /// and restarted in turn; prints recovery times, strategy errors, trades
    /// sent vs stored and the gaps announced.
    Chaos {
        /// Outage per fault, in seconds.
        #[arg(default_value_t = 10.0)]
        secs: f64,
        /// Faults in order, repeats allowed (default: all): exchange,
        /// collector, nats, storage-writer, clickhouse, state, rpc-upstream.
        faults: Vec<String>,
    },
    /// Build the cargo-fuzz targets with coverage instrumentation and run
    /// each for SECS on a corpus seeded from ../shared/fixtures.
    Fuzz {
        /// Seconds per target (20), then target names (default: all).
        #[arg(trailing_var_arg = true)]
        args: Vec<String>,
    },
    /// docker compose on deploy/compose (`up` builds and detaches; `config` validates).
    Compose {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
        args: Vec<String>,
    },
    /// Validate the Helm charts and the compose file offline (deploy/validate.py).
    Helm,
    /// The supply chain, offline: cargo deny (advisories from the RustSec
    /// snapshot, licences, duplicate versions, sources), then every
    /// service's SBOM into target/sbom.
    Audit,
    /// A CycloneDX SBOM (JSON) of each service binary.
    Sbom {
        /// Where `<package>.cdx.json` files go.
        #[arg(long, default_value = "target/sbom")]
        out: PathBuf,
        /// Packages (`moat-gateway`, …); every service when none.
        packages: Vec<String>,
    },
}

fn main() -> ExitCode {
    let args = Args::parse();
    let (name, result) = match args.command {
        Command::Up { detach, tls } => ("up", up::up(detach, tls)),
        Command::Down => ("down", up::down()),
        Command::Certs => ("certs", up::certs().map(|_| ())),
        Command::Status => ("status", up::status()),
        Command::Test { args } => ("test", test::run(&args)),
        Command::Bench { only, load_secs } => ("bench", bench::run(only.as_deref(), load_secs)),
        Command::Chaos { secs, faults } => ("chaos", chaos(secs, &faults)),
        Command::Fuzz { args } => ("fuzz", fuzz::run(&args)),
        Command::Compose { args } => ("compose", deploy::compose(&args)),
        Command::Helm => ("helm", deploy::helm()),
        Command::Audit => ("audit", audit::run()),
        Command::Sbom { out, packages } => ("sbom", sbom::run_for(&out, &packages)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("xtask {name}: {error}");
            ExitCode::FAILURE
        }
    }
}

/// The chaos test at full length: each outage `secs` long, the faults
/// named (every one once when none is).
fn chaos(secs: f64, faults: &[String]) -> Result<(), String> {
    if secs <= 0.0 || !secs.is_finite() {
        return Err(format!("chaos {secs}: expected the outage in seconds, e.g. 10"));
    }
    moat_devstack::engines::ensure_all()?;
    cargo(&["build", "--bins"])?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = std::process::Command::new(&cargo)
        .args([
            "test",
            "-p",
            "moat-integration-tests",
            "--test",
            "chaos",
            "--",
            "--nocapture",
        ])
        .env("MOAT_CHAOS_OUTAGE_SECS", secs.to_string())
        // The test knows the fault names and refuses an unknown one.
        .env("MOAT_CHAOS_FAULTS", faults.join(","))
        .current_dir(root())
        .status()
        .map_err(|e| format!("running {cargo}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("the chaos run failed with {status}"))
    }
}

/// The workspace root (xtask lives one level below it).
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask sits inside the workspace")
        .to_owned()
}

/// Runs `cargo` with `args` in the workspace root, inheriting the terminal.
pub fn cargo(args: &[&str]) -> Result<(), String> {
    cargo_with_env(args, &[])
}

/// [`cargo`] with extra environment variables.
pub fn cargo_with_env(args: &[&str], env: &[(&str, &str)]) -> Result<(), String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = std::process::Command::new(&cargo)
        .args(args)
        .envs(env.iter().copied())
        .current_dir(root())
        .status()
        .map_err(|e| format!("running {cargo}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("`cargo {}` failed with {status}", args.join(" ")))
    }
}
