//! `moat doctor` against a whole stack started here: every service as its
//! own process on free ports, real NATS, ClickHouse and ganache.

use std::process::{Command, Stdio};
use std::time::Duration;

use moat_integration_tests::{Process, TestClickHouse, bin, eventually, ganache, own_nats, scratch, unique};
use serde_json::Value;

const TOKEN: &str = "doctor-token-0123456789abcdef";

fn spawn(binary: &str, env: &[(&str, String)]) -> Process {
    let child = Command::new(bin(binary))
        .env("MOAT_CONFIG_DIR", "/nonexistent")
        .env("RUST_LOG", "warn")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdout(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {binary}: {e}"));
    Process(child)
}

fn port() -> u16 {
    moat_devstack::free_port()
}

/// Runs `moat doctor --json` with `args`; returns its exit code and report.
fn doctor(args: &[String]) -> (i32, Value) {
    let out = Command::new(bin("moat"))
        .arg("doctor")
        .arg("--json")
        .args(args)
        .env_remove("DATABASE_URL")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "doctor printed no JSON ({e}): {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap_or(-1), report)
}

fn check<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == name)
        .unwrap_or_else(|| panic!("no check {name:?} in {report:#}"))
}

fn failures(report: &Value) -> Vec<String> {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["status"] == "fail")
        .map(|c| format!("{}: {}", c["check"], c["detail"]))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn doctor_passes_on_a_healthy_stack_and_names_what_breaks() {
    let (mut nats, nats_dir) = own_nats();
    let ch = TestClickHouse::get();
    let node = ganache().await;
    let dir = scratch();
    let db = unique("doctor");

    let writer_env = [
        ("MOAT_STORAGE_WRITER__NATS__URL", nats.url()),
        ("MOAT_STORAGE_WRITER__CLICKHOUSE__URL", ch.url.clone()),
        ("MOAT_STORAGE_WRITER__CLICKHOUSE__DATABASE", db.clone()),
        ("MOAT_STORAGE_WRITER__WRITER__FLUSH_INTERVAL_MS", "200".into()),
    ];
    let migrated = Command::new(bin("moat-storage-writer"))
        .arg("migrate")
        .env("MOAT_CONFIG_DIR", "/nonexistent")
        .envs(writer_env.iter().map(|(k, v)| (*k, v.as_str())))
        .status()
        .unwrap();
    assert!(migrated.success());

    let (collector_http, writer_http, state_http, state_grpc, gateway_http, gateway_grpc) =
        (port(), port(), port(), port(), port(), port());
    let _collector = spawn(
        "moat-collector",
        &[
            ("MOAT_COLLECTOR__NATS__URL", nats.url()),
            ("MOAT_COLLECTOR__HTTP__LISTEN", format!("127.0.0.1:{collector_http}")),
            ("MOAT_COLLECTOR__SIM__ENABLED", "true".into()),
        ],
    );
    let mut env = writer_env.to_vec();
    env.push(("MOAT_STORAGE_WRITER__HTTP__LISTEN", format!("127.0.0.1:{writer_http}")));
    let _writer = spawn("moat-storage-writer", &env);
    let database_url = format!("sqlite://{}/state.db?mode=rwc", dir.path().display());
    let _state = spawn(
        "moat-state",
        &[
            ("MOAT_STATE__GRPC__LISTEN", format!("127.0.0.1:{state_grpc}")),
            ("MOAT_STATE__HTTP__LISTEN", format!("127.0.0.1:{state_http}")),
            ("MOAT_STATE__DATABASE__URL", database_url.clone()),
        ],
    );
    // Only ethereum is allowed, with ganache as its upstream.
    let mut gateway_toml = format!(
        "[clickhouse]\nurl = \"{}\"\ndatabase = \"{db}\"\n\n[rpc]\nhealth_check_interval_ms = 500\n\n\
         [rpc.chains.ethereum]\nchain_id = 1\nupstreams = [\"{}\"]\n",
        ch.url, node.url
    );
    for chain in [
        "arbitrum",
        "base",
        "optimism",
        "polygon",
        "avalanche",
        "bsc",
        "sonic",
        "plasma",
        "blast",
        "mantle",
        "berachain",
    ] {
        gateway_toml.push_str(&format!("\n[rpc.chains.{chain}]\nenabled = false\n"));
    }
    let gateway_config = dir.path().join("gateway.toml");
    std::fs::write(&gateway_config, gateway_toml).unwrap();
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, format!("doctor {TOKEN}\n")).unwrap();
    let _gateway = spawn(
        "moat-gateway",
        &[
            ("MOAT_GATEWAY_CONFIG", gateway_config.display().to_string()),
            ("MOAT_GATEWAY__GRPC__LISTEN", format!("127.0.0.1:{gateway_grpc}")),
            ("MOAT_GATEWAY__HTTP__LISTEN", format!("127.0.0.1:{gateway_http}")),
            ("MOAT_GATEWAY__NATS__URL", nats.url()),
            (
                "MOAT_GATEWAY__STATE__ENDPOINT",
                format!("http://127.0.0.1:{state_grpc}"),
            ),
            ("MOAT_GATEWAY__AUTH__TOKENS_FILE", tokens.display().to_string()),
        ],
    );

    let base: Vec<String> = vec![
        format!("--gateway=http://127.0.0.1:{gateway_grpc}"),
        format!("--gateway-http=http://127.0.0.1:{gateway_http}"),
        format!("--collector-http=http://127.0.0.1:{collector_http}"),
        format!("--storage-writer-http=http://127.0.0.1:{writer_http}"),
        format!("--state-http=http://127.0.0.1:{state_http}"),
        format!("--nats={}", nats.url()),
        format!("--nats-monitor=http://{}", nats.monitor_addr()),
        format!("--clickhouse={}", ch.url),
        format!("--clickhouse-database={db}"),
        format!("--database-url={database_url}"),
        // The shared ClickHouse may run elsewhere; the scratch folder
        // stands for its disk.
        format!("--clickhouse-data-dir={}", nats_dir.path().display()),
    ];
    let args = |token: &str| -> Vec<String> {
        let mut args = base.clone();
        args.push(format!("--token={token}"));
        args
    };
    let run = |args: Vec<String>| async move { tokio::task::spawn_blocking(move || doctor(&args)).await.unwrap() };

    // Healthy: every check passes (the stack needs a few seconds to fill).
    let healthy = eventually("doctor all green", Duration::from_secs(60), || {
        let args = args(TOKEN);
        async move {
            let (code, report) = run(args).await;
            if code != 0 {
                eprintln!("doctor not green yet: {:?}", failures(&report));
            }
            (code == 0).then_some(report)
        }
    })
    .await;
    assert!(failures(&healthy).is_empty(), "{:#}", healthy);
    for name in [
        "gateway gRPC health",
        "gateway token",
        "nats",
        "jetstream",
        "stream MARKET_DATA",
        "storage-writer consumer lag",
        "clickhouse tables",
        "clickhouse recent rows",
        "exchange sim connection",
        "exchange sim rate",
        "exchange sim books",
        "state database",
        "rpc chain ethereum",
        "clock skew",
        "free disk for nats",
        "collector /metrics",
    ] {
        assert_eq!(
            check(&healthy, name)["status"],
            "pass",
            "{name}: {:#}",
            check(&healthy, name)
        );
    }

    // The strategy-side commands against the same stack.
    let gateway = format!("--gateway=http://127.0.0.1:{gateway_grpc}");
    let moat = |args: &[&str], token: &str| {
        let out = Command::new(bin("moat"))
            .args(args)
            .arg(&gateway)
            .env("MOAT_TOKEN", token)
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, out, err) = moat(&["state", "put", "hello from the cli"], TOKEN);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("saved version 1"), "{out}");
    let (_, out, _) = moat(&["state", "get"], TOKEN);
    assert_eq!(out, "hello from the cli");
    let (code, out, err) = moat(&["--json", "rpc", "ethereum", "eth_chainId"], TOKEN);
    assert_eq!(code, 0, "{err}");
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap()["result"], "0x1");
    let (code, out, err) = moat(&["--json", "book", "sim", "BTC-USDT", "--depth", "3"], TOKEN);
    assert_eq!(code, 0, "{err}");
    let book: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(book["valid"], true, "{book}");
    assert_eq!(book["bids"].as_array().unwrap().len(), 3, "{book}");
    let (code, _, err) = moat(&["rpc", "ethereum", "debug_traceTransaction"], TOKEN);
    assert_ne!(code, 0);
    assert!(err.contains("method 'debug_traceTransaction' is not allowed"), "{err}");
    let (code, _, err) = moat(&["state", "get"], "wrong-token");
    assert_ne!(code, 0);
    assert!(
        err.contains("Unauthenticated") && err.contains("refused the token"),
        "{err}"
    );
    let (code, out, err) = {
        let out = Command::new(bin("moat"))
            .args(["tail", "md.trade.sim.>", "--count", "3", "--nats"])
            .arg(nats.url())
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out.lines().filter(|l| l.starts_with("trade sim ")).count(), 3, "{out}");

    // `moat status`: every service up, the sim venue connected with a rate.
    let out = Command::new(bin("moat"))
        .args(["status", "--json"])
        .args(&base[0..9])
        .output()
        .unwrap();
    let status: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out:?}"));
    for service in status["services"].as_array().unwrap() {
        assert_eq!(service["state"], "up", "{service}");
    }
    assert_eq!(status["venues"][0]["connected"], true, "{status}");
    assert!(status["events_per_second"]["sim"].as_f64().unwrap() > 0.0, "{status}");

    // A wrong token is reported as such.
    let (code, report) = run(args("not-the-token")).await;
    assert_ne!(code, 0);
    let token = check(&report, "gateway token");
    assert_eq!(token["status"], "fail");
    assert!(token["detail"].as_str().unwrap().contains("refused"), "{token}");
    assert!(token["fix"].as_str().unwrap().contains("auth.tokens"), "{token}");

    // A missing ClickHouse table is named.
    ch.query(&format!("DROP TABLE {db}.funding"));
    let (code, report) = run(args(TOKEN)).await;
    assert_ne!(code, 0);
    let tables = check(&report, "clickhouse tables");
    assert_eq!(tables["status"], "fail");
    assert!(tables["detail"].as_str().unwrap().contains("funding"), "{tables}");
    assert!(tables["fix"].as_str().unwrap().contains("migrate"), "{tables}");

    // NATS stopped: its checks fail with their fix, the others still report.
    tokio::task::block_in_place(|| nats.stop());
    let (code, report) = run(args(TOKEN)).await;
    assert_ne!(code, 0);
    for name in ["nats", "jetstream", "stream MARKET_DATA"] {
        let c = check(&report, name);
        assert_eq!(c["status"], "fail", "{c}");
        assert!(c["fix"].as_str().unwrap().contains("nats-server"), "{c}");
    }
    assert_eq!(check(&report, "clickhouse")["status"], "pass");
    assert_eq!(check(&report, "state /health")["status"], "pass");
    assert_eq!(check(&report, "gateway gRPC health")["status"], "pass");
    ch.query(&format!("DROP DATABASE {db}"));
}

#[test]
fn an_unreachable_gateway_is_named() {
    let dead = format!("http://127.0.0.1:{}", port());
    let out = Command::new(bin("moat"))
        .args(["price", "ETH", "--gateway", &dead, "--token", "x"])
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(0));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("cannot reach the gateway at {dead}")), "{err}");
}
