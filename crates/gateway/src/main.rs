//! `moat-gateway [--config PATH]`: telemetry, config, listeners, run until a signal.

use anyhow::Context;
use moat_common_types::config::{load_or_exit, sources_from_args};
use moat_common_types::{http::shutdown_token, telemetry};
use moat_gateway::config::GatewayConfig;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _telemetry = telemetry::init("moat-gateway");
    let (sources, _args) = sources_from_args("gateway", std::env::args().skip(1));
    let config: GatewayConfig = load_or_exit(&sources);
    let grpc = tokio::net::TcpListener::bind(config.grpc.listen)
        .await
        .with_context(|| format!("binding grpc.listen {}", config.grpc.listen))?;
    let http = tokio::net::TcpListener::bind(config.http.listen)
        .await
        .with_context(|| format!("binding http.listen {}", config.http.listen))?;
    moat_gateway::run(config, grpc, http, shutdown_token()).await
}
