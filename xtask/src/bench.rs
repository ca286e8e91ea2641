//! `cargo xtask bench [--only SECTIONS] [--load-secs N]`: release build of
//! `moat-bench` and the services, real NATS and ClickHouse on free ports,
//! and the results written to BENCHMARKS.md (only for a full run).

use moat_devstack::{ClickHouse, Nats, Package, engines, ensure_installed, peers};

use crate::{cargo, root};

const BEGIN: &str = "<!-- bench:begin -->";
const END: &str = "<!-- bench:end -->";
/// The sections `--only` picks from, in the order moat-bench runs them.
const SECTIONS: &[&str] = &[
    "parse",
    "replay",
    "state",
    "durability",
    "storage",
    "writer",
    "gateway",
    "rpc",
    "load",
    "live",
];
/// moat-bench prints its report after this line.
const REPORT: &str = "<!-- moat-bench report -->";

pub fn run(only: Option<&str>, load_secs: u64) -> Result<(), String> {
    let only = only.unwrap_or_default().to_owned();
    if !only.is_empty()
        && let Some(unknown) = only.split(',').find(|s| !SECTIONS.contains(&s.trim()))
    {
        return Err(format!(
            "--only: no section {unknown:?} (sections: {})",
            SECTIONS.join(",")
        ));
    }
    let load_secs = load_secs.to_string();
    ensure_installed(&[Package::NGINX])?;
    engines::ensure_all()?;
    // ganache is the RPC section's upstream.
    peers::ensure_node_peers(&root())?;
    // The services too: the sustained-load run starts them as processes.
    cargo(&["build", "--release", "--bins"])?;
    let dir = std::env::temp_dir().join(format!("moat-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let nats = Nats::start(&dir.join("nats"))?;
    let clickhouse = ClickHouse::start(&dir.join("clickhouse"))?;
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root().join("target"), std::path::PathBuf::from);
    let output = std::process::Command::new(target.join("release/moat-bench"))
        .current_dir(root())
        .env("MOAT_BENCH_NATS_URL", nats.url())
        .env("MOAT_BENCH_CLICKHOUSE_URL", clickhouse.url())
        .env(
            "MOAT_BENCH_NGINX",
            moat_devstack::find_binary(&Package::NGINX).unwrap_or_default(),
        )
        .env("MOAT_BIN_DIR", target.join("release"))
        .env("MOAT_BENCH_ONLY", &only)
        .env("MOAT_BENCH_LOAD_SECS", &load_secs)
        .env("RUST_LOG", "warn")
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(|e| format!("running moat-bench: {e}"))?;
    drop(clickhouse);
    drop(nats);
    let _ = std::fs::remove_dir_all(&dir);
    if !output.status.success() {
        return Err(format!("moat-bench failed with {}", output.status));
    }
    // Only the report: services running inside the benchmark (the
    // gateway's audit lines) also write to stdout before it.
    let stdout = String::from_utf8_lossy(&output.stdout);
    let table = stdout
        .split_once(REPORT)
        .map(|(_, report)| report.trim().to_owned() + "\n")
        .ok_or("moat-bench printed no report")?;
    println!("{table}");
    if !only.is_empty() {
        println!("a partial run (--only {only}): BENCHMARKS.md is left as it is");
        return Ok(());
    }

    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let date = std::process::Command::new("date")
        .arg("-u")
        .arg("+%Y-%m-%d")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    let section = format!(
        "{BEGIN}\nMeasured {date} with `cargo xtask bench` on {cores} cores (release build; nats-server {nats} and \
         ClickHouse {clickhouse} started by the harness on loopback).\n\n{table}{END}",
        nats = engines::NATS.release,
        clickhouse = engines::CLICKHOUSE.release,
    );
    let path = root().join("BENCHMARKS.md");
    let current = std::fs::read_to_string(&path).unwrap_or_default();
    let updated = match (current.find(BEGIN), current.find(END)) {
        (Some(b), Some(e)) if b < e => format!("{}{section}{}", &current[..b], &current[e + END.len()..]),
        _ => format!("{current}\n{section}\n"),
    };
    std::fs::write(&path, updated).map_err(|e| format!("writing {}: {e}", path.display()))?;
    println!("results written to {}", path.display());
    Ok(())
}
