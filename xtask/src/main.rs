//! `cargo xtask <command>`: developer automation for moat (matklad's xtask
//! pattern: one binary aliased in `.cargo/config.toml`, one module per
//! subcommand, few dependencies, no async runtime).

mod bench;
mod deploy;
mod fuzz;
mod stack;
mod test;
mod up;

use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "usage: cargo xtask <command>

commands:
  up [--detach]   build, start NATS (JetStream), ClickHouse, the local exchange and
                  every service; wait for health; Ctrl-C stops everything
  down            stop a stack started with `up --detach`
  status          show the processes and health of a detached stack
  test [ARGS]     start real NATS, ClickHouse and PostgreSQL on free ports and run
                  every unit and integration test (ARGS go to `cargo test`)
  compose ARGS    docker compose on deploy/compose (up builds and detaches; config validates)
  helm            validate the Helm charts and the compose file offline (deploy/validate.py)
  bench [--only SECTIONS] [--load-secs N]
                  release build, real NATS and ClickHouse, each figure beside a baseline
                  measured in the same run; results written to BENCHMARKS.md. SECTIONS:
                  parse,replay,state,durability,storage,writer,gateway,rpc,load (all); N: seconds each
                  sustained-load rate is held (60)
  chaos [SECS] [FAULT...]
                  the whole stack under a steady feed, each component SIGKILLed for
                  SECS (10) and restarted in turn; prints recovery times, strategy
                  errors, trades sent vs stored and the gaps announced. FAULTs (all,
                  in this order; repeats allowed): exchange,collector,nats,
                  storage-writer,clickhouse,state,rpc-upstream
  fuzz [SECS] [TARGET...]
                  build the cargo-fuzz targets in fuzz/ with coverage instrumentation and
                  run each for SECS (20) on a corpus seeded from ../shared/fixtures

environment:
  MOAT_DEV_NATS_PORT (4222), MOAT_DEV_NATS_MONITOR_PORT (8222),
  MOAT_DEV_CLICKHOUSE_PORT (8123), MOAT_DEV_EXCHANGE_PORT (9443), MOAT_DEV_GANACHE_PORT
  (8545): ports of what `up` starts";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (command, rest) = match args.split_first() {
        Some((c, rest)) => (c.as_str(), rest),
        None => ("help", &[][..]),
    };
    let result = match command {
        "up" => up::up(rest.iter().any(|a| a == "--detach" || a == "-d")),
        "down" => up::down(),
        "status" => up::status(),
        "test" => test::run(rest),
        "bench" => bench::run(rest),
        "chaos" => chaos(rest),
        "fuzz" => fuzz::run(rest),
        "compose" => deploy::compose(rest),
        "helm" => deploy::helm(),
        "help" | "--help" | "-h" => {
            println!("{USAGE}");
            Ok(())
        }
        other => Err(format!("unknown command '{other}'\n\n{USAGE}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("xtask {command}: {error}");
            ExitCode::FAILURE
        }
    }
}

/// The chaos test at full length: each outage `SECS` long, the faults
/// named (every one once when none is).
fn chaos(args: &[String]) -> Result<(), String> {
    let (secs, faults) = match args.split_first() {
        Some((first, rest)) if first.parse::<f64>().is_ok() => (first.as_str(), rest),
        _ => ("10", args),
    };
    secs.parse::<f64>()
        .ok()
        .filter(|s| *s > 0.0)
        .ok_or_else(|| format!("chaos {secs:?}: expected the outage in seconds, e.g. 10"))?;
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
        .env("MOAT_CHAOS_OUTAGE_SECS", secs)
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
