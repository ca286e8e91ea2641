//! `cargo xtask test`: real dependencies on free ports, then every test.
//!
//! NATS, ClickHouse and PostgreSQL are started once and handed to the tests
//! through `MOAT_TEST_NATS_URL`, `MOAT_TEST_CLICKHOUSE_URL` and
//! `MOAT_TEST_DATABASE_URL`; the Python and npm peers are installed first
//! (`target/moat-venv`, `tests/peers/node_modules`). Each test makes its own stream, database or
//! schema names, so they run in parallel. Tests that kill or restart a
//! server start their own through `moat-devstack`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use moat_devstack::{ClickHouse, Nats, Package, Postgres, engines, ensure_installed, peers};

use crate::{cargo, root};

pub fn run(extra: &[String]) -> Result<(), String> {
    ensure_installed(&[Package::POSTGRES, Package::PROMETHEUS, Package::PROMTOOL])?;
    engines::ensure_all()?;
    peers::ensure_node_peers(&root())?;
    let python_bin = peers::ensure_python_peers(&root())?;
    // Binaries first: integration tests run them as separate processes.
    // Built with every target, so they share their dependencies' features
    // with the tests and `cargo test` below compiles nothing again.
    cargo(&["build", "--workspace", "--all-targets"])?;

    // PostgreSQL refuses to run as root and its user must reach the data
    // folder, so the run's data lives under the system temp dir.
    let dir = std::env::temp_dir().join(format!("moat-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let nats = Nats::start(&dir.join("nats"))?;
    let clickhouse = ClickHouse::start(&dir.join("clickhouse"))?;
    let postgres = Postgres::start(&dir.join("postgres"))?;
    println!(
        "test dependencies: NATS {}, ClickHouse {}, PostgreSQL {}",
        nats.url(),
        clickhouse.url(),
        postgres.url()
    );

    // Every test binary runs even after one fails, so a CI run names every
    // failing test at once.
    let mut args = vec!["test", "--workspace", "--all-targets", "--no-fail-fast"];
    args.extend(extra.iter().map(String::as_str));
    let cargo_bin = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut child = std::process::Command::new(&cargo_bin)
        .args(&args)
        .current_dir(root())
        .env("MOAT_TEST_NATS_URL", nats.url())
        .env("MOAT_TEST_CLICKHOUSE_URL", clickhouse.url())
        .env("MOAT_TEST_DATABASE_URL", postgres.url())
        // The tests' `python3` is the venv holding web3.py and grpcio.
        .env("PATH", peers::path_with(&python_bin))
        .spawn()
        .map_err(|e| format!("running cargo test: {e}"))?;
    // On Ctrl-C or SIGTERM (a CI timeout), stop the tests and still take
    // the servers down below, so no process outlives the run.
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst))
        .map_err(|e| format!("installing the signal handler: {e}"))?;
    let status = loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            break Some(status);
        }
        if stop.load(Ordering::SeqCst) {
            eprintln!("interrupted: stopping the tests and the servers");
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };

    drop(postgres);
    drop(clickhouse);
    drop(nats);
    let _ = std::fs::remove_dir_all(&dir);
    match status {
        Some(status) if status.success() => Ok(()),
        Some(status) => Err(format!("tests failed ({status})")),
        None => Err("interrupted".into()),
    }
}
