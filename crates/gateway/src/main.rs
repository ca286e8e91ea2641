//! `moat-gateway [--config PATH]`: telemetry, config, listeners, run until a signal.

use clap::Parser;
use moat_common_types::config::{ConfigArgs, load_or_exit, parse_args};
use moat_common_types::{http::shutdown_token, telemetry};
use moat_gateway::config::GatewayConfig;

/// mimalloc: glibc's allocator kept GetPrice's tail waiting on its arena
/// lock (memory freed on another thread than the one that took it, as
/// tonic and hyper do with every buffer).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The strategies' only door: market data, the allowlisted EVM JSON-RPC
/// proxy and strategy state over gRPC, JSON-RPC at `POST /rpc/{chain}`.
#[derive(Parser)]
#[command(name = "moat-gateway", version)]
struct Args {
    #[command(flatten)]
    config: ConfigArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Args = parse_args();
    let _telemetry = telemetry::init("moat-gateway");
    let config: GatewayConfig = load_or_exit(&args.config.sources("gateway"));
    let grpc = config.grpc.bind("grpc").await?;
    let http = config.http.bind("http").await?;
    moat_gateway::run(config, grpc, http, shutdown_token()).await
}
