//! `cargo xtask test`: real dependencies on free ports, then every test.
//!
//! NATS, ClickHouse and PostgreSQL are started once and handed to the tests
//! through `MOAT_TEST_NATS_URL`, `MOAT_TEST_CLICKHOUSE_URL` and
//! `MOAT_TEST_DATABASE_URL`; each test makes its own stream, database or
//! schema names, so they run in parallel. Tests that kill or restart a
//! server start their own through `moat-devstack`.

use moat_devstack::{ClickHouse, Nats, Package, Postgres, ensure_installed};

use crate::{cargo, root};

pub fn run(extra: &[String]) -> Result<(), String> {
    ensure_installed(&[Package::NATS, Package::CLICKHOUSE, Package::POSTGRES])?;
    // Binaries first: integration tests run them as separate processes.
    cargo(&["build", "--bins"])?;

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

    let mut args = vec!["test", "--workspace", "--all-targets"];
    args.extend(extra.iter().map(String::as_str));
    let cargo_bin = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = std::process::Command::new(&cargo_bin)
        .args(&args)
        .current_dir(root())
        .env("MOAT_TEST_NATS_URL", nats.url())
        .env("MOAT_TEST_CLICKHOUSE_URL", clickhouse.url())
        .env("MOAT_TEST_DATABASE_URL", postgres.url())
        .status()
        .map_err(|e| format!("running cargo test: {e}"))?;

    drop(postgres);
    drop(clickhouse);
    drop(nats);
    let _ = std::fs::remove_dir_all(&dir);
    if status.success() {
        Ok(())
    } else {
        Err(format!("tests failed ({status})"))
    }
}
