//! `moat doctor` against a whole stack started here: every service as its
//! own process on free ports, real NATS, ClickHouse and ganache, the local
//! exchange as the venue.

use std::process::Command;
use std::time::Duration;

use moat_integration_tests::bin;
use moat_integration_tests::stack::{Stack, StackOptions, TOKEN, check, doctor, failures};
use serde_json::Value;

#[tokio::test(flavor = "multi_thread")]
async fn doctor_passes_on_a_healthy_stack_and_names_what_breaks() {
    let mut stack = Stack::start(StackOptions::default()).await;
    let (good, wrong) = (stack.doctor_args(TOKEN), stack.doctor_args("not-the-token"));
    let run = |args: Vec<String>| async move { tokio::task::spawn_blocking(move || doctor(&args)).await.unwrap() };

    // Healthy: every check passes (the stack needs a few seconds to fill).
    let healthy = stack.doctor_green(Duration::from_secs(90)).await;
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
        "exchange local connection",
        "exchange local rate",
        "exchange local books",
        "state database",
        "rpc chain ethereum",
        "clock skew",
        "collector /metrics",
    ] {
        assert_eq!(
            check(&healthy, name)["status"],
            "pass",
            "{name}: {:#}",
            check(&healthy, name)
        );
    }

    // Free disk depends on the machine, not on the stack: the check must
    // find the JetStream folder from the NATS monitor and measure it, and
    // its thresholds must move the verdict.
    let nats_dir = stack.dir.path().join("nats").display().to_string();
    let disk = check(&healthy, "free disk for nats");
    assert_ne!(disk["status"], "fail", "{disk:#}");
    let detail = disk["detail"].as_str().unwrap();
    assert!(detail.starts_with(&nats_dir) && detail.contains("GiB free"), "{disk:#}");
    let (code, report) = run([
        good.clone(),
        vec!["--disk-warn-below=100".into(), "--disk-fail-below=0".into()],
    ]
    .concat())
    .await;
    assert_eq!(code, 0, "a warning alone keeps doctor green: {report:#}");
    let disk = check(&report, "free disk for nats");
    assert_eq!(disk["status"], "warn", "{disk:#}");
    assert!(
        disk["detail"]
            .as_str()
            .unwrap()
            .contains("under the 100 % warning line"),
        "{disk:#}"
    );
    let (code, report) = run([good.clone(), vec!["--disk-fail-below=100".into()]].concat()).await;
    assert_ne!(code, 0);
    let disk = check(&report, "free disk for nats");
    assert_eq!(disk["status"], "fail", "{disk:#}");
    assert!(disk["fix"].as_str().unwrap().contains("stops writing"), "{disk:#}");

    // The strategy-side commands against the same stack.
    let gateway = format!("--gateway={}", stack.gateway_url());
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
    let (code, out, err) = moat(&["--json", "book", "local", "BTC-USDT", "--depth", "3"], TOKEN);
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
            .args(["tail", "md.trade.local.>", "--count", "3", "--nats"])
            .arg(stack.nats[0].url())
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(
        out.lines().filter(|l| l.starts_with("trade local ")).count(),
        3,
        "{out}"
    );

    // `moat status`: every service up, the local venue connected with a rate.
    let out = Command::new(bin("moat"))
        .args(["status", "--json"])
        .args(&good[0..9])
        .output()
        .unwrap();
    let status: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out:?}"));
    for service in status["services"].as_array().unwrap() {
        assert_eq!(service["state"], "up", "{service}");
    }
    assert_eq!(status["venues"][0]["connected"], true, "{status}");
    assert!(status["events_per_second"]["local"].as_f64().unwrap() > 0.0, "{status}");

    // A wrong token is reported as such.
    let (code, report) = run(wrong.clone()).await;
    assert_ne!(code, 0);
    let token = check(&report, "gateway token");
    assert_eq!(token["status"], "fail");
    assert!(token["detail"].as_str().unwrap().contains("refused"), "{token}");
    assert!(token["fix"].as_str().unwrap().contains("auth.tokens"), "{token}");

    // A missing ClickHouse table is named.
    stack.query(&format!("DROP TABLE {}.funding", stack.spec.database));
    let (code, report) = run(good.clone()).await;
    assert_ne!(code, 0);
    let tables = check(&report, "clickhouse tables");
    assert_eq!(tables["status"], "fail");
    assert!(tables["detail"].as_str().unwrap().contains("funding"), "{tables}");
    assert!(tables["fix"].as_str().unwrap().contains("migrate"), "{tables}");

    // NATS stopped: its checks fail with their fix, the others still report.
    tokio::task::block_in_place(|| stack.nats[0].stop());
    let (code, report) = run(good.clone()).await;
    assert_ne!(code, 0);
    for name in ["nats", "jetstream", "stream MARKET_DATA"] {
        let c = check(&report, name);
        assert_eq!(c["status"], "fail", "{c}");
        assert!(c["fix"].as_str().unwrap().contains("nats-server"), "{c}");
    }
    assert_eq!(check(&report, "clickhouse")["status"], "pass");
    assert_eq!(check(&report, "state /health")["status"], "pass");
    assert_eq!(check(&report, "gateway gRPC health")["status"], "pass");
    stack.query(&format!("DROP DATABASE {}", stack.spec.database));
}

#[test]
fn an_unreachable_gateway_is_named() {
    let dead = format!("http://127.0.0.1:{}", moat_devstack::free_port());
    let out = Command::new(bin("moat"))
        .args(["price", "ETH", "--gateway", &dead, "--token", "x"])
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(0));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("cannot reach the gateway at {dead}")), "{err}");
}
