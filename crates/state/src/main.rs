//! `moat-state [--config PATH]`: telemetry, config, listeners, run until a signal.

use clap::Parser;
use moat_common_types::config::{ConfigArgs, load_or_exit, parse_args};
use moat_common_types::{http::shutdown_token, telemetry};
use moat_state::config::StateConfig;

/// Keeps each strategy's state (gRPC over SQLite or PostgreSQL), with
/// optimistic concurrency on a version number.
#[derive(Parser)]
#[command(name = "moat-state", version)]
struct Args {
    #[command(flatten)]
    config: ConfigArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Args = parse_args();
    let _telemetry = telemetry::init("moat-state");
    let config: StateConfig = load_or_exit(&args.config.sources("state"));
    let grpc = config.grpc.bind("grpc").await?;
    let http = config.http.bind("http").await?;
    moat_state::run(config, grpc, http, shutdown_token()).await
}
