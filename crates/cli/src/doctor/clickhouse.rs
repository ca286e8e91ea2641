//! ClickHouse: reachable, its version, the database, tables and recent rows.

use super::{CLICKHOUSE_FLOOR, Report, at_least};
use crate::gateway::error_chain;
use crate::ops::Endpoints;

/// Runs SQL over ClickHouse's HTTP interface.
pub(super) async fn clickhouse_query(http: &reqwest::Client, url: &str, sql: &str) -> Result<String, String> {
    let response = http
        .post(url)
        .body(sql.to_owned())
        .send()
        .await
        .map_err(|e| error_chain(&e))?;
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    if status.is_success() {
        Ok(body.trim().to_owned())
    } else {
        Err(format!(
            "HTTP {status}: {}",
            body.trim().lines().next().unwrap_or_default()
        ))
    }
}

pub(super) async fn clickhouse(report: &mut Report, http: &reqwest::Client, e: &Endpoints) {
    let (url, db) = (&e.clickhouse, &e.clickhouse_database);
    let version = match clickhouse_query(http, url, "SELECT version()").await {
        Ok(version) => version,
        Err(error) => {
            let fix = "start clickhouse-server, or point --clickhouse / MOAT_CLICKHOUSE at its HTTP port";
            report.fail("clickhouse", format!("{url}: {error}"), fix);
            for name in ["clickhouse database", "clickhouse tables", "clickhouse recent rows"] {
                report.fail(name, "not checked: ClickHouse is unreachable", fix);
            }
            return;
        }
    };
    if at_least(&version, CLICKHOUSE_FLOOR) {
        report.pass("clickhouse", format!("answers at {url}, ClickHouse {version}"));
    } else {
        report.fail(
            "clickhouse",
            format!("{url} runs ClickHouse {version}, older than moat's schema needs"),
            format!(
                "upgrade ClickHouse to {}.{} or newer",
                CLICKHOUSE_FLOOR.0, CLICKHOUSE_FLOOR.1
            ),
        );
    }
    let migrate = "run `moat-storage-writer migrate` (cargo xtask up does)";
    match clickhouse_query(
        http,
        url,
        &format!("SELECT count() FROM system.databases WHERE name = '{db}'"),
    )
    .await
    {
        Ok(n) if n == "1" => report.pass("clickhouse database", format!("{db} exists")),
        Ok(_) => report.fail("clickhouse database", format!("database {db} does not exist"), migrate),
        Err(error) => report.fail("clickhouse database", error, migrate),
    }
    let present = clickhouse_query(
        http,
        url,
        &format!("SELECT name FROM system.tables WHERE database = '{db}'"),
    )
    .await
    .unwrap_or_default();
    let present: Vec<&str> = present.lines().collect();
    let missing: Vec<&str> = moat_storage_writer::schema::TABLES
        .iter()
        .copied()
        .filter(|t| !present.contains(t))
        .collect();
    if missing.is_empty() {
        report.pass(
            "clickhouse tables",
            format!("all {} tables present", moat_storage_writer::schema::TABLES.len()),
        );
    } else {
        report.fail(
            "clickhouse tables",
            format!("missing in {db}: {}", missing.join(", ")),
            migrate,
        );
    }
    let sql = format!(
        "SELECT (SELECT count() FROM {db}.trades WHERE ts_recv_ms > (toUnixTimestamp(now()) - 60) * 1000) \
         + (SELECT count() FROM {db}.bbo WHERE ts_recv_ms > (toUnixTimestamp(now()) - 60) * 1000)"
    );
    match clickhouse_query(http, url, &sql)
        .await
        .map(|n| n.parse::<u64>().unwrap_or(0))
    {
        Ok(0) => report.fail(
            "clickhouse recent rows",
            "no trade or BBO row received in the last minute",
            "check the collector's connections and the storage-writer (`moat status`)",
        ),
        Ok(n) => report.pass(
            "clickhouse recent rows",
            format!("{n} trade and BBO rows in the last minute"),
        ),
        Err(error) => report.fail("clickhouse recent rows", error, migrate),
    }
}
