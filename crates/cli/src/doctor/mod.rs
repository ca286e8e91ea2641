//! `moat doctor`: every step of the troubleshooting guide as a check that
//! passes, warns or fails, each failure with its fix. Checks never stop at
//! the first failure: with NATS down, the ClickHouse and service checks
//! still report.

use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use serde_json::{Value, json};

use crate::Global;
use crate::ops::{Endpoints, http_client};

mod addresses;
mod certificates;
mod clickhouse;
mod clock;
mod database;
mod disk;
mod gateway;
mod nats;
mod services;
mod upstreams;
mod venues;

#[derive(Args, Debug)]
pub struct DoctorArgs {
    #[command(flatten)]
    pub endpoints: Endpoints,
    /// The state service's database (checked for writes).
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// JetStream storage folder (default: asked from the NATS monitor).
    #[arg(long)]
    pub nats_data_dir: Option<std::path::PathBuf>,
    /// ClickHouse data folder (default: asked from ClickHouse where it can tell).
    #[arg(long)]
    pub clickhouse_data_dir: Option<std::path::PathBuf>,
    /// Largest tolerated gap between exchange and local clocks.
    #[arg(long, default_value_t = 1000)]
    pub max_skew_ms: i64,
    /// Consumer backlog above which the storage-writer counts as lagging.
    #[arg(long, default_value_t = 100_000)]
    pub max_lag: u64,
    /// Free disk share (percent) below which a data folder is a warning.
    #[arg(long, value_name = "PERCENT", default_value_t = 10.0)]
    pub disk_warn_below: f64,
    /// Free disk share (percent) below which a data folder fails; under
    /// 1 GiB free always fails.
    #[arg(long, value_name = "PERCENT", default_value_t = 5.0)]
    pub disk_fail_below: f64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Status {
    Pass,
    Warn,
    Fail,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Status::Pass => "pass",
            Status::Warn => "warn",
            Status::Fail => "fail",
        }
    }
}

struct Check {
    name: String,
    status: Status,
    detail: String,
    fix: String,
}

#[derive(Default)]
struct Report {
    checks: Vec<Check>,
}

impl Report {
    fn pass(&mut self, name: impl Into<String>, detail: impl Into<String>) {
        self.add(name, Status::Pass, detail, "");
    }
    fn warn(&mut self, name: impl Into<String>, detail: impl Into<String>, fix: impl Into<String>) {
        self.add(name, Status::Warn, detail, fix);
    }
    fn fail(&mut self, name: impl Into<String>, detail: impl Into<String>, fix: impl Into<String>) {
        self.add(name, Status::Fail, detail, fix);
    }
    fn add(&mut self, name: impl Into<String>, status: Status, detail: impl Into<String>, fix: impl Into<String>) {
        self.checks.push(Check {
            name: name.into(),
            status,
            detail: detail.into(),
            fix: fix.into(),
        });
    }
}

pub async fn run(global: &Global, args: &DoctorArgs) -> ExitCode {
    let mut report = Report::default();
    let e = &args.endpoints;
    let http = http_client(global, Duration::from_secs_f64(global.timeout.min(5.0)));

    gateway::gateway_grpc(&mut report, global).await;
    certificates::certificates(&mut report, global).await;
    services::services(&mut report, &http, e).await;
    addresses::addresses(&mut report, global, e).await;
    nats::nats(&mut report, e, args.max_lag).await;
    clickhouse::clickhouse(&mut report, &http, e).await;
    venues::venues(&mut report, &http, global, e).await;
    database::database(&mut report, args.database_url.as_deref()).await;
    upstreams::upstreams(&mut report, &http, e).await;
    clock::clock_skew(&mut report, &e.nats, &e.nats_tls, args.max_skew_ms).await;
    disk::disks(&mut report, &http, args).await;

    let failed = report.checks.iter().filter(|c| c.status == Status::Fail).count();
    let warned = report.checks.iter().filter(|c| c.status == Status::Warn).count();
    if global.json {
        let checks: Vec<Value> = report
            .checks
            .iter()
            .map(|c| json!({"check": c.name, "status": c.status.as_str(), "detail": c.detail, "fix": c.fix}))
            .collect();
        crate::output::json(&json!({"ok": failed == 0, "failed": failed, "warned": warned, "checks": checks}));
    } else {
        for c in &report.checks {
            let tag = match c.status {
                Status::Pass => "PASS",
                Status::Warn => "WARN",
                Status::Fail => "FAIL",
            };
            println!("{tag}  {}: {}", c.name, c.detail);
            if c.status != Status::Pass && !c.fix.is_empty() {
                println!("      fix: {}", c.fix);
            }
        }
        println!(
            "\n{} checks: {} passed, {warned} warned, {failed} failed",
            report.checks.len(),
            report.checks.len() - warned - failed
        );
    }
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// The oldest releases moat supports (it is built and tested on the
/// releases `crates/devstack` pins).
const NATS_FLOOR: (u32, u32) = (2, 12);
const CLICKHOUSE_FLOOR: (u32, u32) = (25, 8);

/// Whether `version` (`2.15.1`, `v2.15.1`, `26.9.2.1`) is `floor` or newer.
fn at_least(version: &str, floor: (u32, u32)) -> bool {
    let mut parts = version
        .trim()
        .trim_start_matches('v')
        .split('.')
        .map(|p| p.parse::<u32>());
    match (parts.next(), parts.next()) {
        (Some(Ok(major)), Some(Ok(minor))) => (major, minor) >= floor,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_versions_are_compared_by_major_and_minor() {
        for (version, floor, ok) in [
            ("2.15.1", NATS_FLOOR, true),
            ("v2.12.0", NATS_FLOOR, true),
            ("2.9.25", NATS_FLOOR, false),
            ("26.9.2.1", CLICKHOUSE_FLOOR, true),
            ("25.8.1.5", CLICKHOUSE_FLOOR, true),
            ("24.8.14.39", CLICKHOUSE_FLOOR, false),
            ("18.16.1", CLICKHOUSE_FLOOR, false),
            ("unknown", CLICKHOUSE_FLOOR, false),
        ] {
            assert_eq!(at_least(version, floor), ok, "{version}");
        }
    }
}
