//! Prometheus on the whole stack, with moat's alert rules: every service is
//! scraped, no alert is active while the stack is healthy, every query of
//! the shipped Grafana dashboards returns data, and stopping the
//! storage-writer makes its alert (MoatServiceDown) pending.

use std::time::Duration;

use moat_integration_tests::eventually;
use moat_integration_tests::stack::{Stack, StackOptions};
use serde_json::Value;

const SERVICES: [&str; 4] = ["moat-collector", "moat-storage-writer", "moat-state", "moat-gateway"];

async fn api(http: &reqwest::Client, prometheus: &str, path: &str, query: &[(&str, &str)]) -> Option<Value> {
    let answer: Value = http
        .get(format!("{prometheus}/api/v1/{path}"))
        .query(query)
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    (answer["status"] == "success").then(|| answer["data"].clone())
}

/// `(dashboard, panel, expr)` of every query of the shipped dashboards.
fn dashboard_queries() -> Vec<(String, String, String)> {
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/helm/moat/files/dashboards");
    let mut queries = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("the dashboards folder")
        .map(|e| e.expect("a dashboard file").path())
        .collect();
    files.sort();
    for file in files {
        let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(&file).expect("readable"))
            .unwrap_or_else(|e| panic!("{} is not JSON: {e}", file.display()));
        let title = dashboard["title"].as_str().expect("a dashboard title").to_owned();
        for panel in dashboard["panels"].as_array().expect("panels") {
            for target in panel["targets"].as_array().expect("targets") {
                queries.push((
                    title.clone(),
                    panel["title"].as_str().expect("a panel title").to_owned(),
                    target["expr"].as_str().expect("an expr").to_owned(),
                ));
            }
        }
    }
    queries
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn prometheus_watches_the_stack_and_the_dashboards_have_data() {
    let mut stack = Stack::start(StackOptions {
        prometheus: true,
        ..StackOptions::default()
    })
    .await;
    let prometheus = stack.prometheus.as_ref().expect("the stack runs Prometheus").url();
    let http = reqwest::Client::new();

    let targets = eventually("every service scraped and up", Duration::from_secs(60), || {
        let (http, prometheus) = (http.clone(), prometheus.clone());
        async move {
            let data = api(&http, &prometheus, "targets", &[]).await?;
            let targets = data["activeTargets"].as_array()?.clone();
            let up = targets.iter().filter(|t| t["health"] == "up").count();
            (up == SERVICES.len() && targets.len() == SERVICES.len()).then_some(targets)
        }
    })
    .await;
    for service in SERVICES {
        assert!(
            targets.iter().any(|t| t["labels"]["job"] == service),
            "no target for {service}: {targets:#?}"
        );
    }

    // Traffic of each kind the dashboards show: prices, state, RPC.
    for args in [
        &["price", "BTC", "--quote", "USDT"][..],
        &["state", "put", "monitoring"][..],
        &["state", "get"][..],
    ] {
        let (code, out, err) = stack.moat(args);
        assert_eq!(code, 0, "moat {args:?}: {out}{err}");
    }
    let rpc = http
        .post(format!("{}/rpc/ethereum", stack.http_url("gateway")))
        .bearer_auth(moat_integration_tests::stack::TOKEN)
        .json(&serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "eth_blockNumber", "params": []}))
        .send()
        .await
        .expect("the gateway answers");
    assert!(rpc.status().is_success(), "eth_blockNumber: {}", rpc.status());

    // Every alert is loaded and none is pending or firing on a healthy stack.
    let rules = eventually("the alert rules evaluated", Duration::from_secs(30), || {
        let (http, prometheus) = (http.clone(), prometheus.clone());
        async move {
            let data = api(&http, &prometheus, "rules", &[("type", "alert")]).await?;
            let rules: Vec<Value> = data["groups"]
                .as_array()?
                .iter()
                .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
                .collect();
            rules
                .iter()
                .all(|r| r["lastEvaluation"].as_str().is_some_and(|t| !t.starts_with("0001")))
                .then_some(rules)
        }
    })
    .await;
    assert!(rules.len() >= 16, "expected moat's alert rules, found {}", rules.len());
    let active: Vec<String> = rules
        .iter()
        .filter(|r| r["state"] != "inactive")
        .map(|r| format!("{} ({}): {}", r["name"], r["state"], r["alerts"]))
        .collect();
    assert!(active.is_empty(), "alerts active on a healthy stack: {active:#?}");

    // Every dashboard query parses and returns series (rates need a few
    // scrapes after the traffic above).
    let queries = dashboard_queries();
    assert!(
        queries.len() >= 25,
        "expected the shipped dashboards, found {} queries",
        queries.len()
    );
    for (dashboard, panel, expr) in &queries {
        let what = format!("{dashboard} / {panel}: {expr}");
        eventually(&what, Duration::from_secs(30), || {
            let (http, prometheus, expr) = (http.clone(), prometheus.clone(), expr.clone());
            async move {
                let data = api(&http, &prometheus, "query", &[("query", &expr)]).await?;
                (!data["result"].as_array()?.is_empty()).then_some(())
            }
        })
        .await;
    }

    // A stopped storage-writer: its scrape fails and MoatServiceDown waits
    // out its `for` as pending.
    stack.kill("storage-writer");
    let alert = eventually(
        "MoatServiceDown for the storage-writer",
        Duration::from_secs(30),
        || {
            let (http, prometheus) = (http.clone(), prometheus.clone());
            async move {
                let data = api(&http, &prometheus, "alerts", &[]).await?;
                data["alerts"]
                    .as_array()?
                    .iter()
                    .find(|a| a["labels"]["alertname"] == "MoatServiceDown")
                    .cloned()
            }
        },
    )
    .await;
    assert_eq!(alert["labels"]["job"], "moat-storage-writer", "{alert:#}");
    assert_eq!(alert["state"], "pending", "{alert:#}");
    assert!(
        alert["annotations"]["runbook_url"]
            .as_str()
            .is_some_and(|u| u.ends_with("#alert-moatservicedown")),
        "{alert:#}"
    );
}
