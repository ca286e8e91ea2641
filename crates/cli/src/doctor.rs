//! `moat doctor`: every step of the troubleshooting guide as a check that
//! passes, warns or fails, each failure with its fix. Checks never stop at
//! the first failure: with NATS down, the ClickHouse and service checks
//! still report.

use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use futures::StreamExt;
use moat_common_types::MarketEvent;
use moat_proto::gateway::v1 as pb;
use serde_json::{Value, json};

use crate::Global;
use crate::gateway::{authed, error_chain};
use crate::ops::{Endpoints, collector_rates, get, http_client, metric_by};

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
    let http = http_client(Duration::from_secs_f64(global.timeout.min(5.0)));

    gateway_grpc(&mut report, global).await;
    services(&mut report, &http, e).await;
    addresses(&mut report, global, e).await;
    nats(&mut report, e, args.max_lag).await;
    clickhouse(&mut report, &http, e).await;
    venues(&mut report, &http, global, e).await;
    database(&mut report, args.database_url.as_deref()).await;
    upstreams(&mut report, &http, e).await;
    clock_skew(&mut report, &e.nats, args.max_skew_ms).await;
    disks(&mut report, &http, args).await;

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

async fn gateway_grpc(report: &mut Report, global: &Global) {
    const NAME: &str = "gateway gRPC health";
    let fix = "start moat-gateway (cargo xtask up), or point --gateway / MOAT_GATEWAY at it";
    let channel = match crate::gateway::connect(global).await {
        Ok(c) => c,
        Err(error) => return report.fail(NAME, format!("{error:#}"), fix),
    };
    let mut client = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    match client
        .check(tonic_health::pb::HealthCheckRequest { service: String::new() })
        .await
    {
        Ok(r) if r.get_ref().status == tonic_health::pb::health_check_response::ServingStatus::Serving as i32 => {
            report.pass(NAME, format!("SERVING at {}", global.gateway));
        }
        Ok(r) => report.fail(
            NAME,
            format!("status {:?}", r.get_ref().status()),
            "see the gateway's log",
        ),
        Err(status) => report.fail(NAME, format!("{:?}: {}", status.code(), status.message()), fix),
    }
    // The token: a cheap authenticated call that touches no state.
    let mut market = moat_proto::gateway::v1::market_service_client::MarketServiceClient::new(channel);
    match global.token.as_deref() {
        None | Some("") => report.warn(
            "gateway token",
            "no token given: the token and book checks are skipped",
            "pass --token or set MOAT_TOKEN",
        ),
        Some(_) => {
            let request = authed(
                global,
                pb::GetCandlesRequest {
                    exchange: "doctor".into(),
                    symbol: "CHECK-TOKEN".into(),
                    interval: "no-such-interval".into(),
                    from_ms: 0,
                    to_ms: 0,
                },
            );
            match request {
                Err(error) => report.fail(
                    "gateway token",
                    format!("{error:#}"),
                    "use the token from the gateway's tokens file",
                ),
                Ok(request) => match market.get_candles(request).await {
                    Err(s) if s.code() == tonic::Code::Unauthenticated => report.fail(
                        "gateway token",
                        format!("refused: {}", s.message()),
                        "the token is not in the gateway's auth.tokens / auth.tokens_file: use the strategy's token",
                    ),
                    Err(s) if s.code() == tonic::Code::ResourceExhausted => report.fail(
                        "gateway token",
                        format!("refused: {}", s.message()),
                        "too many failed attempts or calls: wait for the lockout or rate limit to pass",
                    ),
                    // The bogus interval is refused only after authentication.
                    Ok(_) | Err(_) => report.pass("gateway token", "accepted"),
                },
            }
        }
    }
}

async fn services(report: &mut Report, http: &reqwest::Client, e: &Endpoints) {
    for (service, base) in e.services() {
        let name = format!("{service} /health");
        match get(http, &format!("{base}/health")).await {
            Ok((200, _)) => report.pass(name, format!("healthy at {base}")),
            Ok((status, body)) => {
                let failing = serde_json::from_str::<Value>(&body)
                    .ok()
                    .and_then(|v| v["checks"].as_object().cloned())
                    .map(|checks| {
                        checks
                            .iter()
                            .filter(|(_, c)| c["status"] != "ok")
                            .map(|(k, c)| format!("{k}: {}", c["error"].as_str().unwrap_or("failing")))
                            .collect::<Vec<_>>()
                            .join("; ")
                    })
                    .unwrap_or_else(|| body.trim().to_owned());
                report.fail(
                    name,
                    format!("HTTP {status}: {failing}"),
                    format!("fix the dependency named above; moat-{service}'s log has the details"),
                );
            }
            Err(error) => report.fail(
                name,
                format!("{base}: {error}"),
                format!("start moat-{service}, or point its address option at it (moat doctor --help)"),
            ),
        }
        let name = format!("{service} /metrics");
        match get(http, &format!("{base}/metrics")).await {
            Ok((200, body)) => report.pass(
                name,
                format!(
                    "Prometheus metrics served ({} series)",
                    body.lines().filter(|l| !l.starts_with('#')).count()
                ),
            ),
            Ok((status, _)) => report.fail(
                name,
                format!("HTTP {status}"),
                "the metrics endpoint must be served on the service's HTTP port",
            ),
            Err(error) => report.fail(name, error, format!("start moat-{service}")),
        }
    }
}

/// `host:port` of a URL, for the resolve-and-connect check.
fn host_port(url: &str, default_port: u16) -> Option<String> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split('/').next()?;
    let authority = authority.rsplit('@').next()?;
    if authority.is_empty() {
        return None;
    }
    Some(
        if authority
            .rsplit_once(':')
            .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
        {
            authority.to_owned()
        } else {
            format!("{authority}:{default_port}")
        },
    )
}

async fn addresses(report: &mut Report, global: &Global, e: &Endpoints) {
    let mut targets = vec![("gateway gRPC", global.gateway.as_str(), 50051)];
    for (service, base) in e.services() {
        targets.push((service, base, 80));
    }
    targets.push(("nats", e.nats.as_str(), 4222));
    targets.push(("clickhouse", e.clickhouse.as_str(), 8123));
    for (what, url, default_port) in targets {
        let name = format!("address of {what}");
        let Some(addr) = host_port(url, default_port) else {
            report.fail(
                name,
                format!("{url:?} has no host"),
                "give a URL such as http://host:port",
            );
            continue;
        };
        let resolved = match tokio::net::lookup_host(addr.as_str()).await {
            Ok(addrs) => addrs.collect::<Vec<_>>(),
            Err(error) => {
                report.fail(
                    name,
                    format!("{addr} does not resolve: {error}"),
                    "check the host name and DNS",
                );
                continue;
            }
        };
        let Some(first) = resolved.first().copied() else {
            report.fail(
                name,
                format!("{addr} resolves to nothing"),
                "check the host name and DNS",
            );
            continue;
        };
        match tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(first)).await {
            Ok(Ok(_)) => report.pass(name, format!("{addr} ({first}) accepts connections")),
            Ok(Err(error)) => report.fail(
                name,
                format!("{addr} ({first}) refuses connections: {error}"),
                format!("start {what} or correct its address"),
            ),
            Err(_) => report.fail(
                name,
                format!("{addr} ({first}) does not answer within 2 s"),
                "a firewall or a hung process: check the host and port",
            ),
        }
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

async fn nats(report: &mut Report, e: &Endpoints, max_lag: u64) {
    let fix = "start nats-server with JetStream (`nats-server -js`), or point --nats / MOAT_NATS at it";
    let client = match async_nats::ConnectOptions::new()
        .connection_timeout(Duration::from_secs(3))
        .connect(&e.nats)
        .await
    {
        Ok(c) => {
            let version = c.server_info().version;
            if at_least(&version, NATS_FLOOR) {
                report.pass("nats", format!("reachable at {}, nats-server {version}", e.nats));
            } else {
                report.fail(
                    "nats",
                    format!("{} runs nats-server {version}, older than moat supports", e.nats),
                    format!("upgrade nats-server to {}.{} or newer", NATS_FLOOR.0, NATS_FLOOR.1),
                );
            }
            c
        }
        Err(error) => {
            report.fail("nats", format!("{} unreachable: {}", e.nats, error_chain(&error)), fix);
            for name in ["jetstream", "stream MARKET_DATA", "storage-writer consumer lag"] {
                report.fail(name, "not checked: NATS is unreachable", fix);
            }
            return;
        }
    };
    let js = async_nats::jetstream::new(client);
    match tokio::time::timeout(Duration::from_secs(3), js.query_account()).await {
        Ok(Ok(account)) => report.pass("jetstream", format!("enabled, {} streams", account.streams)),
        Ok(Err(error)) => report.fail(
            "jetstream",
            format!("not enabled: {}", error_chain(&error)),
            "restart nats-server with JetStream (-js, or a jetstream block in its config)",
        ),
        Err(_) => report.fail(
            "jetstream",
            "no answer within 3 s",
            "restart nats-server with JetStream (-js, or a jetstream block in its config)",
        ),
    }
    let stream_name = moat_common_types::subject::STREAM;
    let expected = moat_common_types::subject::STREAM_SUBJECTS;
    match js.get_stream(stream_name).await {
        Ok(mut stream) => match stream.info().await {
            Ok(info) if info.config.subjects.iter().any(|s| s == expected) => report.pass(
                "stream MARKET_DATA",
                format!("subjects {:?}, {} messages", info.config.subjects, info.state.messages),
            ),
            Ok(info) => report.fail(
                "stream MARKET_DATA",
                format!("subjects {:?} do not include {expected}", info.config.subjects),
                format!("nats stream edit {stream_name} --subjects '{expected}'"),
            ),
            Err(error) => report.fail("stream MARKET_DATA", error.to_string(), "check NATS's log"),
        },
        Err(error) => report.fail(
            "stream MARKET_DATA",
            format!("missing: {error}"),
            "start moat-collector once (it creates the stream), or `nats stream add MARKET_DATA --subjects 'md.>'`",
        ),
    }
    match crate::ops::consumer_lag(&e.nats, &e.consumer).await {
        Ok((pending, _)) if pending > max_lag => report.warn(
            "storage-writer consumer lag",
            format!("{pending} messages waiting (more than {max_lag})"),
            "add storage-writer replicas or check ClickHouse insert latency (storage-writer /metrics)",
        ),
        Ok((pending, acks)) => report.pass(
            "storage-writer consumer lag",
            format!("{pending} waiting, {acks} in flight"),
        ),
        Err(error) => report.fail(
            "storage-writer consumer lag",
            format!("consumer {}: {error}", e.consumer),
            "start moat-storage-writer (it creates its durable consumer)",
        ),
    }
}

/// Runs SQL over ClickHouse's HTTP interface.
async fn clickhouse_query(http: &reqwest::Client, url: &str, sql: &str) -> Result<String, String> {
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

async fn clickhouse(report: &mut Report, http: &reqwest::Client, e: &Endpoints) {
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

async fn venues(report: &mut Report, http: &reqwest::Client, global: &Global, e: &Endpoints) {
    let status = match get(http, &format!("{}/status", e.collector_http)).await {
        Ok((200, body)) => serde_json::from_str::<Value>(&body).unwrap_or(Value::Null),
        Ok((status, _)) => {
            report.fail(
                "exchange connections",
                format!("collector /status answered HTTP {status}"),
                "see the collector's log",
            );
            return;
        }
        Err(error) => {
            report.fail(
                "exchange connections",
                format!("collector unreachable: {error}"),
                "start moat-collector or set --collector-http",
            );
            return;
        }
    };
    let venues = status["venues"].as_array().cloned().unwrap_or_default();
    if venues.is_empty() {
        report.fail(
            "exchange connections",
            "the collector has no venue configured",
            "add [[venues]] to config/collector.toml (or enable [sim])",
        );
        return;
    }
    let rates = collector_rates(http, &e.collector_http).await.unwrap_or_default();
    let channel = match global.token.as_deref() {
        Some(t) if !t.is_empty() => crate::gateway::connect(global).await.ok(),
        _ => None,
    };
    for venue in &venues {
        let exchange = venue["exchange"].as_str().unwrap_or_default();
        let name = format!("exchange {exchange}");
        if venue["connected"].as_bool() != Some(true) {
            report.fail(
                format!("{name} connection"),
                "not connected",
                "see the collector's log for the venue's errors; reconnects back off up to backoff_max_ms",
            );
        } else {
            report.pass(format!("{name} connection"), "connected");
        }
        match rates.get(exchange) {
            Some(rate) if *rate > 0.0 => report.pass(format!("{name} rate"), format!("{rate:.0} messages/s")),
            _ => report.fail(
                format!("{name} rate"),
                "no messages in the last second",
                "the connection is up but silent: check the subscribed symbols and the collector's rejects metric",
            ),
        }
        let Some(channel) = channel.clone() else { continue };
        let mut market = moat_proto::gateway::v1::market_service_client::MarketServiceClient::new(channel);
        let symbols: Vec<&str> = venue["streams"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s["symbol"].as_str())
            .take(10)
            .collect();
        let mut invalid = Vec::new();
        let mut valid = 0;
        for symbol in &symbols {
            let request = authed(
                global,
                pb::GetOrderBookRequest {
                    exchange: exchange.to_owned(),
                    symbol: (*symbol).to_owned(),
                    depth: 1,
                },
            );
            let Ok(request) = request else { break };
            match tokio::time::timeout(Duration::from_secs(2), market.get_order_book(request)).await {
                Ok(Ok(book)) if book.get_ref().valid => valid += 1,
                Ok(Ok(_)) => invalid.push(*symbol),
                // No book for this stream (trades only), or no answer.
                Ok(Err(_)) | Err(_) => {}
            }
        }
        if !invalid.is_empty() {
            report.fail(
                format!("{name} books"),
                format!("invalid (resyncing): {}", invalid.join(", ")),
                "a book stays invalid until a new snapshot applies: check moat_collector_book_resyncs_total by reason",
            );
        } else if valid > 0 {
            report.pass(format!("{name} books"), format!("{valid} books valid"));
        } else if !symbols.is_empty() {
            report.warn(
                format!("{name} books"),
                format!("the gateway has no book yet for {}", symbols.join(", ")),
                "a gateway started after the collector gets every book within the collector's book_snapshot_interval_ms (30 s)",
            );
        }
    }
}

async fn database(report: &mut Report, url: Option<&str>) {
    const NAME: &str = "state database";
    let Some(url) = url.filter(|u| !u.is_empty()) else {
        report.warn(
            NAME,
            "DATABASE_URL is not set here: moat-state uses its own setting (default sqlite://moat-state.db)",
            "export DATABASE_URL as moat-state sees it (sqlite://… or postgres://…) to check it",
        );
        return;
    };
    let scheme = url.split(':').next().unwrap_or_default();
    let result: Result<(), String> = async {
        if scheme.starts_with("postgres") {
            use sqlx::Connection;
            let mut conn = sqlx::PgConnection::connect(url).await.map_err(|e| e.to_string())?;
            let mut tx = conn.begin().await.map_err(|e| e.to_string())?;
            sqlx::query("CREATE TABLE moat_doctor_probe (x INT)")
                .execute(&mut *tx)
                .await
                .map_err(|e| format!("cannot write: {e}"))?;
            tx.rollback().await.map_err(|e| e.to_string())
        } else if scheme == "sqlite" {
            use sqlx::Connection;
            let mut conn = sqlx::SqliteConnection::connect(url).await.map_err(|e| e.to_string())?;
            // Takes the write lock without changing anything.
            sqlx::query("BEGIN IMMEDIATE")
                .execute(&mut conn)
                .await
                .map_err(|e| format!("cannot write: {e}"))?;
            sqlx::query("ROLLBACK")
                .execute(&mut conn)
                .await
                .map_err(|e| e.to_string())?;
            Ok(())
        } else {
            Err(format!("scheme {scheme:?} is neither sqlite nor postgres"))
        }
    }
    .await;
    let shown = redact(url);
    match result {
        Ok(()) => report.pass(NAME, format!("{shown} is writable")),
        Err(error) => report.fail(
            NAME,
            format!("{shown}: {error}"),
            "check the server, the credentials and that the user may write (moat-state needs to)",
        ),
    }
}

/// The URL with any password replaced.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let userinfo = &url[s + 3..at];
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{}{user}:***{}", &url[..s + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}

async fn upstreams(report: &mut Report, http: &reqwest::Client, e: &Endpoints) {
    let body = match get(http, &format!("{}/metrics", e.gateway_http)).await {
        Ok((200, body)) => body,
        _ => {
            report.fail(
                "rpc upstreams",
                "not checked: the gateway's /metrics is unreachable",
                "start moat-gateway or set --gateway-http",
            );
            return;
        }
    };
    let total = metric_by(&body, "moat_gateway_rpc_upstreams", "chain");
    let healthy = metric_by(&body, "moat_gateway_rpc_upstreams_healthy", "chain");
    if total.is_empty() {
        report.warn(
            "rpc upstreams",
            "the gateway allows no chain",
            "add chains under [rpc.chains] in gateway.toml",
        );
    }
    for (chain, n) in &total {
        let name = format!("rpc chain {chain}");
        let up = healthy.get(chain).copied().unwrap_or(0.0);
        if *n == 0.0 {
            report.fail(
                name,
                "allowed but no upstream is configured",
                format!("add upstreams under [rpc.chains.{chain}] in gateway.toml, or set enabled = false"),
            );
        } else if up == 0.0 {
            report.fail(
                name,
                format!("none of {n} upstreams answers eth_chainId with the chain's id"),
                "check the upstream URLs and the gateway's log (upstream ejected / serves another chain)",
            );
        } else {
            report.pass(name, format!("{up} of {n} upstreams healthy"));
        }
    }
}

async fn clock_skew(report: &mut Report, nats: &str, max_skew_ms: i64) {
    const NAME: &str = "clock skew";
    let sampled: Result<Vec<i64>, String> = async {
        let client = async_nats::ConnectOptions::new()
            .connection_timeout(Duration::from_secs(3))
            .connect(nats)
            .await
            .map_err(|e| error_chain(&e))?;
        let mut subscription = client.subscribe("md.>").await.map_err(|e| e.to_string())?;
        let mut skews = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
        while skews.len() < 50 {
            let Ok(Some(message)) = tokio::time::timeout_at(deadline, subscription.next()).await else {
                break;
            };
            match moat_common_types::proto_conv::decode(&message.payload) {
                Ok(MarketEvent::Trade(t)) => skews.push(t.ts_recv_ms - t.ts_exchange_ms),
                Ok(MarketEvent::Bbo(b)) => skews.push(b.ts_recv_ms - b.ts_exchange_ms),
                _ => {}
            }
        }
        Ok(skews)
    }
    .await;
    match sampled {
        Err(error) => report.fail(NAME, format!("not checked: {error}"), "start NATS; see the nats check"),
        Ok(skews) if skews.is_empty() => report.warn(
            NAME,
            "no trade or BBO event in 3 s to compare clocks with",
            "check the exchange connections",
        ),
        Ok(mut skews) => {
            skews.sort_unstable();
            let median = skews[skews.len() / 2];
            let detail = format!(
                "receive time minus exchange time: median {median} ms over {} events",
                skews.len()
            );
            if median.abs() > max_skew_ms * 10 {
                report.fail(NAME, detail, "synchronise the clock (chrony or systemd-timesyncd)");
            } else if median.abs() > max_skew_ms {
                report.warn(
                    NAME,
                    detail,
                    "synchronise the clock (chrony or systemd-timesyncd), or check network delay",
                );
            } else {
                report.pass(NAME, detail);
            }
        }
    }
}

async fn disks(report: &mut Report, http: &reqwest::Client, args: &DoctorArgs) {
    let nats_dir = match &args.nats_data_dir {
        Some(dir) => Some(dir.clone()),
        None => match get(http, &format!("{}/varz", args.endpoints.nats_monitor)).await {
            Ok((200, body)) => serde_json::from_str::<Value>(&body).ok().and_then(|v| {
                v["jetstream"]["config"]["store_dir"]
                    .as_str()
                    .map(std::path::PathBuf::from)
            }),
            _ => None,
        },
    };
    let clickhouse_dir = match &args.clickhouse_data_dir {
        Some(dir) => Some(dir.clone()),
        None => clickhouse_query(
            http,
            &args.endpoints.clickhouse,
            "SELECT path FROM system.disks WHERE name = 'default'",
        )
        .await
        .ok()
        .filter(|p| !p.is_empty())
        .map(std::path::PathBuf::from),
    };
    for (what, dir, flag) in [
        ("nats", nats_dir, "--nats-data-dir"),
        ("clickhouse", clickhouse_dir, "--clickhouse-data-dir"),
    ] {
        let name = format!("free disk for {what}");
        let Some(dir) = dir else {
            report.warn(name, "data folder unknown", format!("pass {flag}"));
            continue;
        };
        match nix::sys::statvfs::statvfs(&dir) {
            Ok(fs) => {
                let free = fs.blocks_available().saturating_mul(fs.fragment_size());
                let total = fs.blocks().saturating_mul(fs.fragment_size());
                let detail = format!(
                    "{}: {:.1} GiB free ({:.0} %)",
                    dir.display(),
                    free as f64 / GIB as f64,
                    free_percent(free, total)
                );
                match disk_status(free, total, args.disk_warn_below, args.disk_fail_below) {
                    Status::Pass => report.pass(name, detail),
                    Status::Warn => report.warn(
                        name,
                        format!("{detail}, under the {} % warning line", args.disk_warn_below),
                        "free space or grow the volume soon (or set --disk-warn-below)",
                    ),
                    Status::Fail => report.fail(
                        name,
                        detail,
                        "free space or grow the volume: the server stops writing when it is full",
                    ),
                }
            }
            Err(error) => report.warn(
                name,
                format!("{}: {error} (the folder may be on another host)", dir.display()),
                format!("run doctor on the server's host, or pass {flag}"),
            ),
        }
    }
}

const GIB: u64 = 1 << 30;

fn free_percent(free: u64, total: u64) -> f64 {
    if total == 0 {
        0.0
    } else {
        free as f64 * 100.0 / total as f64
    }
}

/// A data folder's verdict: under 1 GiB or `fail_below` percent free
/// fails, under `warn_below` percent warns.
fn disk_status(free: u64, total: u64, warn_below: f64, fail_below: f64) -> Status {
    let percent = free_percent(free, total);
    if free < GIB || percent < fail_below {
        Status::Fail
    } else if percent < warn_below {
        Status::Warn
    } else {
        Status::Pass
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

    #[test]
    fn disk_verdicts_follow_the_thresholds() {
        let tb = 1024 * GIB;
        assert_eq!(disk_status(500 * GIB, tb, 10.0, 5.0), Status::Pass);
        assert_eq!(disk_status(92 * GIB, tb, 10.0, 5.0), Status::Warn);
        assert_eq!(disk_status(40 * GIB, tb, 10.0, 5.0), Status::Fail);
        // A lower warning line passes the same disk.
        assert_eq!(disk_status(92 * GIB, tb, 5.0, 2.0), Status::Pass);
        // Under 1 GiB fails whatever the share.
        assert_eq!(disk_status(GIB / 2, GIB, 0.0, 0.0), Status::Fail);
        assert_eq!(disk_status(0, 0, 0.0, 0.0), Status::Fail);
    }

    #[test]
    fn addresses_come_from_urls() {
        assert_eq!(
            host_port("http://127.0.0.1:9090", 80).as_deref(),
            Some("127.0.0.1:9090")
        );
        assert_eq!(
            host_port("nats://user:pw@nats.svc:4222", 4222).as_deref(),
            Some("nats.svc:4222")
        );
        assert_eq!(host_port("http://gateway/path", 80).as_deref(), Some("gateway:80"));
        assert_eq!(host_port("http://", 80), None);
    }

    #[test]
    fn passwords_never_print() {
        assert_eq!(
            redact("postgres://moat:secret@db:5432/moat"),
            "postgres://moat:***@db:5432/moat"
        );
        assert_eq!(
            redact("sqlite:///var/lib/moat/state.db"),
            "sqlite:///var/lib/moat/state.db"
        );
    }
}
