//! `moat-collector [--config PATH]`: telemetry, config, listeners, run until a signal.

use anyhow::Context;
use moat_collector::config::CollectorConfig;
use moat_common_types::config::{load_or_exit, sources_from_args};
use moat_common_types::{http::shutdown_token, telemetry};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _telemetry = telemetry::init("moat-collector");
    let (sources, _args) = sources_from_args("collector", std::env::args().skip(1));
    let config: CollectorConfig = load_or_exit(&sources);
    let http = tokio::net::TcpListener::bind(config.http.listen)
        .await
        .with_context(|| format!("binding http.listen {}", config.http.listen))?;
    moat_collector::run(config, http, shutdown_token()).await
}
