//! RPC chains with healthy upstreams.

use super::Report;
use crate::ops::{Endpoints, get, metric_by};

pub(super) async fn upstreams(report: &mut Report, http: &reqwest::Client, e: &Endpoints) {
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
