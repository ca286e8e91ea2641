//! moat-gateway: the strategies' only door.
//!
//! gRPC `moat.gateway.v1` (MarketService, RpcService, StateService) with
//! `grpc.health.v1` and server reflection, and HTTP `/health`, `/metrics`
//! and `POST /rpc/{chain}`. Every call is authenticated by a per-strategy
//! token, rate limited, bounded by a deadline and written to the audit log.

pub mod audit;
pub mod auth;
pub mod cache;
pub mod call;
pub mod config;
pub mod http;
pub mod price;
pub mod ratelimit;
pub mod rpc;
pub mod services;
pub mod share;
pub mod tokens;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use moat_common_types::http::{Health, router};
use moat_common_types::server::{ServerTimeouts, serve_tls};
use moat_common_types::tls;
use moat_proto::gateway::v1::market_service_server::MarketServiceServer;
use moat_proto::gateway::v1::rpc_service_server::RpcServiceServer;
use moat_proto::gateway::v1::state_service_server::StateServiceServer;
use moat_proto::state::v1::state_store_client::StateStoreClient;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::auth::Auth;
use crate::cache::Cache;
use crate::call::Metrics;
use crate::config::GatewayConfig;
use crate::ratelimit::RateLimiter;
use crate::rpc::RpcProxy;
use crate::services::{Gateway, Market, Rpc, State};

/// HTTP/2 window of the gateway's connection to moat-state and of its own
/// gRPC server: room for a largest state (moat-state's default 1 MiB) and
/// its framing in one go.
const STATE_WINDOW: u32 = 2 * 1024 * 1024;
/// The largest HTTP/2 frame the gateway takes from moat-state.
const STATE_FRAME: u32 = 1024 * 1024;

/// Runs the gateway until `shutdown` is cancelled: build its parts, start
/// the background tasks, serve HTTP and gRPC, then stop the tasks.
pub async fn run(
    config: GatewayConfig,
    grpc: TcpListener,
    http: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    // Certificates first: a gateway that cannot serve TLS says so at once.
    let metrics = Arc::new(Metrics::new());
    let tls = tls_servers(&config.tls, &metrics.registry)?;
    let parts = build(config, metrics).await?;
    let background = spawn_background(&parts);
    let served = serve(&parts, grpc, http, tls, shutdown).await;
    for task in background {
        task.abort();
    }
    if !parts.gateway.metrics.audit.flush(Duration::from_secs(5)) {
        tracing::warn!("audit lines were still being written when the gateway stopped");
    }
    tracing::info!("gateway stopped");
    served
}

/// What the gateway is made of: the shared state every call sees, and the
/// clients the health checks probe.
struct Parts {
    gateway: Arc<Gateway>,
    nats: async_nats::Client,
    state_channel: tonic::transport::Channel,
    clickhouse: clickhouse::Client,
}

/// Connects to NATS (retrying in the background), prepares the lazy state
/// and ClickHouse clients, and builds the shared [`Gateway`].
async fn build(config: GatewayConfig, metrics: Arc<Metrics>) -> anyhow::Result<Parts> {
    let auth = Auth::new(&config.auth, &config.limits)?;
    if auth.strategies() == 0 {
        tracing::warn!(
            "no strategy tokens configured: every call will be refused (set auth.tokens or auth.tokens_file)"
        );
    }
    let nats = moat_common_types::nats::connect(&config.nats, "moat-gateway", "moat-gateway")
        .await
        .with_context(|| format!("connecting to NATS at {}", config.nats.url))?;
    let state_channel = tonic::transport::Channel::from_shared(config.state.endpoint.clone())
        .with_context(|| format!("state.endpoint {:?} is not a URI", config.state.endpoint))?
        .connect_timeout(config.state.timeout)
        .timeout(config.state.timeout)
        // Windows that hold a whole state (1 MiB by default), so a load
        // does not wait for window updates, and frames of up to 1 MiB, so
        // moat-state sends a large state in a few frames, not 64 of h2's
        // default 16 KiB (a 1 MiB load takes half the time).
        .initial_stream_window_size(Some(STATE_WINDOW))
        .initial_connection_window_size(Some(2 * STATE_WINDOW))
        .max_frame_size(Some(STATE_FRAME));
    let state_channel = match config.state.tls.tonic().map_err(anyhow::Error::msg)? {
        Some(tls) => state_channel
            .tls_config(tls)
            .context("state.tls: the TLS settings for moat-state")?,
        None => state_channel,
    }
    .connect_lazy();
    let clickhouse = clickhouse::Client::default()
        .with_url(&config.clickhouse.url)
        .with_user(&config.clickhouse.user)
        .with_password(config.clickhouse.password())
        .with_database(&config.clickhouse.database)
        .with_validation(false);
    let gateway = Arc::new(Gateway {
        auth,
        limiter: RateLimiter::new(config.limits.requests_per_second, config.limits.burst),
        rpc_limiter: RateLimiter::new(config.limits.rpc_requests_per_second, config.limits.rpc_burst),
        cache: Cache::default(),
        rpc: RpcProxy::new(&config.rpc)?,
        state: StateStoreClient::new(state_channel.clone()),
        clickhouse: clickhouse.clone(),
        nats: nats.clone(),
        metrics,
        config,
    });
    Ok(Parts {
        gateway,
        nats,
        state_channel,
        clickhouse,
    })
}

/// The live cache's NATS feed and the periodic upstream health checks.
fn spawn_background(parts: &Parts) -> Vec<tokio::task::JoinHandle<()>> {
    let feed = tokio::spawn({
        let (nats, cache) = (parts.nats.clone(), parts.gateway.cache.clone());
        let age = parts.gateway.metrics.live_age.clone();
        async move {
            if let Err(error) = cache::feed(nats, cache, age).await {
                tracing::error!(%error, "live cache feed stopped");
            }
        }
    });
    let upstream_checks = tokio::spawn({
        let gateway = parts.gateway.clone();
        let every = gateway.config.rpc.health_check_interval;
        async move {
            loop {
                if !every.is_zero() {
                    gateway.rpc.check_upstreams().await;
                }
                for (chain, total, healthy) in gateway.rpc.upstream_health() {
                    gateway.metrics.upstreams.with_label_values(&[&chain]).set(total as i64);
                    gateway
                        .metrics
                        .upstreams_healthy
                        .with_label_values(&[&chain])
                        .set(healthy as i64);
                }
                tokio::time::sleep(if every.is_zero() { Duration::from_secs(5) } else { every }).await;
            }
        }
    });
    let mut tasks = vec![feed, upstream_checks];
    parts
        .gateway
        .metrics
        .strategies
        .set(parts.gateway.auth.strategies() as i64);
    if !parts.gateway.config.auth.tokens_file.is_empty() {
        tasks.push(tokio::spawn(watch_tokens(parts.gateway.clone())));
    }
    if parts.gateway.config.limits.share {
        let replica = share::replica_id();
        tracing::info!(%replica, every = ?parts.gateway.config.limits.share_interval, "sharing rate limits with the other replicas on {}", share::SUBJECT);
        tasks.push(tokio::spawn(share::run(
            parts.gateway.clone(),
            parts.nats.clone(),
            replica,
        )));
    }
    tasks
}

/// Takes in changes of `auth.tokens_file` every `auth.reload_interval`:
/// each change, or a file refused, is one audit line and one log line.
async fn watch_tokens(gateway: Arc<Gateway>) {
    let file = gateway.config.auth.tokens_file.clone();
    let mut last_error: Option<String> = None;
    loop {
        tokio::time::sleep(gateway.config.auth.reload_interval).await;
        let result = tokio::task::spawn_blocking({
            let gateway = gateway.clone();
            move || gateway.auth.reload()
        })
        .await;
        let metrics = &gateway.metrics;
        let line = |event| audit::TokensReload {
            event,
            timestamp: moat_common_types::now_ms(),
            file: &file,
            trace_id: call::fresh_trace_id(),
            strategies: None,
            tokens: None,
            added: &[],
            removed: &[],
            changed: &[],
            error: None,
        };
        match result {
            Ok(Ok(None)) => {}
            Ok(Ok(Some(reloaded))) => {
                last_error = None;
                metrics.tokens_reloads.with_label_values(&["ok"]).inc();
                metrics.strategies.set(reloaded.strategies as i64);
                let changes = &reloaded.changes;
                tracing::info!(
                    strategies = reloaded.strategies,
                    tokens = reloaded.tokens,
                    added = ?changes.added,
                    removed = ?changes.removed,
                    changed = ?changes.changed,
                    "auth.tokens_file {file} reloaded"
                );
                metrics.audit.write(&audit::TokensReload {
                    strategies: Some(reloaded.strategies),
                    tokens: Some(reloaded.tokens),
                    added: &changes.added,
                    removed: &changes.removed,
                    changed: &changes.changed,
                    ..line("tokens_reloaded")
                });
            }
            Ok(Err(error)) => {
                let error = format!("{error:#}");
                // Said once per distinct problem, not at every check.
                if last_error.as_deref() != Some(error.as_str()) {
                    metrics.tokens_reloads.with_label_values(&["error"]).inc();
                    tracing::error!(%error, "auth.tokens_file refused; the tokens read last stay in force");
                    metrics.audit.write(&audit::TokensReload {
                        error: Some(&error),
                        ..line("tokens_reload_failed")
                    });
                    last_error = Some(error);
                }
            }
            Err(error) => tracing::error!(%error, "reloading auth.tokens_file panicked"),
        }
    }
}

/// `/health` of the gateway: NATS, the state service and ClickHouse.
fn health(parts: &Parts) -> Health {
    Health::new("gateway")
        .nats(&parts.nats)
        .check("state", {
            let channel = parts.state_channel.clone();
            move || {
                let mut client = tonic_health::pb::health_client::HealthClient::new(channel.clone());
                async move {
                    client
                        .check(tonic_health::pb::HealthCheckRequest { service: String::new() })
                        .await
                        .map(|_| ())
                        .map_err(|s| format!("{}: {}", s.code(), s.message()))
                }
            }
        })
        .check("clickhouse", {
            let client = parts.clickhouse.clone();
            move || {
                let client = client.clone();
                async move {
                    client
                        .query("SELECT 1")
                        .fetch_one::<u8>()
                        .await
                        .map(|_| ())
                        .map_err(|e| e.to_string())
                }
            }
        })
}

/// The TLS of the gRPC and HTTP listeners, watched for new certificates;
/// none when `tls.plaintext` says so.
type TlsPair = (Option<Arc<tls::TlsServer>>, Option<Arc<tls::TlsServer>>);

fn tls_servers(config: &tls::ServerTlsConfig, registry: &prometheus::Registry) -> anyhow::Result<TlsPair> {
    let metrics = tls::TlsMetrics::new(registry);
    Ok((
        tls::TlsServer::start("grpc", config, &["h2"], &metrics)?,
        tls::TlsServer::start("http", config, &["http/1.1"], &metrics)?,
    ))
}

/// Serves HTTP and gRPC until `shutdown`, then waits for both to drain.
async fn serve(
    parts: &Parts,
    grpc: TcpListener,
    http: TcpListener,
    (grpc_tls, http_tls): TlsPair,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let gateway = &parts.gateway;
    let cache = gateway.cache.clone();
    moat_common_types::http::register_computed(
        &gateway.metrics.registry,
        "moat_gateway_books_invalid",
        "books in the live cache that are invalid now (a gap broke them or they crossed) and wait for a snapshot, by exchange",
        &["exchange"],
        move || {
            cache
                .invalid_books()
                .into_iter()
                .map(|(exchange, n)| (vec![exchange], n as f64))
                .collect()
        },
    );
    let app = router(health(parts), gateway.metrics.registry.clone()).merge(http::routes(gateway.clone()));
    let timeouts = ServerTimeouts {
        header_read: gateway.config.server.header_read_timeout,
        idle: gateway.config.server.keepalive_idle,
    };
    let http_task = tokio::spawn(serve_tls(
        http,
        app,
        shutdown.clone().cancelled_owned(),
        timeouts,
        http_tls,
    ));
    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter.set_serving::<MarketServiceServer<Market>>().await;
    health_reporter.set_serving::<RpcServiceServer<Rpc>>().await;
    health_reporter.set_serving::<StateServiceServer<State>>().await;
    // Both reflection versions: grpcurl and older tools still ask v1alpha.
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(moat_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            // The shared descriptor set also holds moat.state.v1, which the
            // gateway does not serve: list only what it does.
            .with_service_name("moat.gateway.v1.MarketService")
            .with_service_name("moat.gateway.v1.RpcService")
            .with_service_name("moat.gateway.v1.StateService")
            .with_service_name("grpc.health.v1.Health")
    };
    let reflection_v1 = reflection().build_v1()?;
    let reflection_v1alpha = reflection().build_v1alpha()?;
    let keepalive = gateway.config.server.keepalive_idle;
    let max_message = gateway.config.server.max_body_bytes.max(2 * 1024 * 1024);
    let addr = grpc.local_addr()?;
    match gateway.config.tls.mode() {
        "plaintext" => tracing::warn!(%addr, "gateway serving gRPC and HTTP in plaintext (tls.plaintext = true)"),
        "tls" => tracing::info!(%addr, cert = %gateway.config.tls.cert, "gateway serving gRPC and HTTP with TLS"),
        _ => tracing::info!(
            %addr,
            cert = %gateway.config.tls.cert,
            client_ca = %gateway.config.tls.client_ca,
            required = gateway.config.tls.require_client_cert,
            "gateway serving gRPC and HTTP with mutual TLS"
        ),
    }
    // tonic's own timeout backs up each call's deadline (the client's
    // grpc-timeout capped by request_timeout), which answers first.
    let backstop = gateway.config.server.request_timeout + Duration::from_secs(1);
    let router = tonic::transport::Server::builder()
        .trace_fn(moat_common_types::grpc::server_span)
        .timeout(backstop)
        .tcp_keepalive(Some(keepalive))
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(Duration::from_secs(20)))
        .initial_stream_window_size(Some(STATE_WINDOW))
        .initial_connection_window_size(Some(2 * STATE_WINDOW))
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(MarketServiceServer::new(Market(gateway.clone())).max_decoding_message_size(max_message))
        .add_service(RpcServiceServer::new(Rpc(gateway.clone())).max_decoding_message_size(max_message))
        .add_service(StateServiceServer::new(State(gateway.clone())).max_decoding_message_size(max_message));
    tls::serve_grpc(router, grpc, grpc_tls, shutdown.clone().cancelled_owned()).await?;
    http_task.await??;
    Ok(())
}
