//! Every service's `/health` and `/metrics`.

use serde_json::Value;

use super::Report;
use crate::ops::{Endpoints, get};

pub(super) async fn services(report: &mut Report, http: &reqwest::Client, e: &Endpoints) {
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
