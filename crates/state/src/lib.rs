//! moat-state: versioned strategy state behind gRPC `moat.state.v1.StateStore`.
//!
//! Only the gateway calls it; strategies reach it through the gateway's
//! `StateService`, which fixes the strategy id from the caller's token.
//! With mutual TLS (`tls.client_ca`, `tls.allowed_clients`), a caller
//! whose certificate does not name the gateway is refused.

pub mod cache;
pub mod config;
pub mod service;
pub mod store;

use std::net::SocketAddr;

use anyhow::Context;
use moat_common_types::http::{Health, router, serve};
use moat_common_types::tls::{TlsMetrics, TlsServer, check_client, serve_grpc};
use moat_proto::state::v1::state_store_server::StateStoreServer;
use prometheus::Registry;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::service::interceptor::InterceptedService;

use crate::config::StateConfig;
use crate::service::{Metrics, StateService};
use crate::store::Store;

/// Runs the state service until `shutdown` is cancelled.
pub async fn run(
    config: StateConfig,
    grpc: TcpListener,
    http: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let store = Store::open(&config.database, config.limits.keep_versions)
        .await
        .with_context(|| format!("opening state database {}", config::redact(&config.database.url)))?;
    let registry = Registry::new();
    let metrics = Metrics::new(&registry);
    let tls = TlsServer::start("grpc", &config.tls, &["h2"], &TlsMetrics::new(&registry))?;

    let health = Health::new("state").check(store.backend(), {
        let store = store.clone();
        move || {
            let store = store.clone();
            async move { store.ping().await }
        }
    });
    let http_task = tokio::spawn(serve(
        http,
        router(health, registry),
        shutdown.clone().cancelled_owned(),
    ));

    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter.set_serving::<StateStoreServer<StateService>>().await;
    let cache = (store.backend() == "sqlite" && config.limits.cache_bytes > 0)
        .then(|| cache::LatestCache::new(config.limits.cache_bytes));
    let service = StateStoreServer::new(StateService {
        store: store.clone(),
        limits: config.limits.clone(),
        metrics,
        cache,
    })
    // Room for the largest state plus framing, so an oversized state gets
    // our own message naming the limit rather than a transport error.
    .max_decoding_message_size(config.limits.max_state_bytes * 2 + 64 * 1024);
    // With a client CA, only the callers `tls.allowed_clients` names.
    let service = InterceptedService::new(service, {
        let tls = config.tls.clone();
        move |request: tonic::Request<()>| {
            let certs = request.peer_certs();
            check_client(&tls, certs.as_deref().map(Vec::as_slice), "moat-state")
                .map(|()| request)
                .map_err(|e| moat_common_types::grpc::to_status(&e))
        }
    });
    let addr: SocketAddr = grpc.local_addr()?;
    tracing::info!(%addr, backend = store.backend(), tls = config.tls.mode(), allowed_clients = ?config.tls.allowed_clients, "state service serving");
    // HTTP/2 flow-control windows that hold the largest state: with the
    // default 64 KiB a 1 MiB save waits for a dozen window updates.
    let window = window_for(config.limits.max_state_bytes);
    let router = tonic::transport::Server::builder()
        .initial_stream_window_size(Some(window))
        .initial_connection_window_size(Some(window.saturating_mul(2)))
        .add_service(health_service)
        .add_service(service);
    serve_grpc(router, grpc, tls, shutdown.clone().cancelled_owned()).await?;
    http_task.await??;
    store.close().await;
    tracing::info!("state service stopped");
    Ok(())
}

/// An HTTP/2 flow-control window that holds a message of `bytes` (and its
/// framing) at once, between 1 MiB and 1 GiB.
pub fn window_for(bytes: usize) -> u32 {
    let wanted = bytes.saturating_add(64 * 1024).clamp(1 << 20, 1 << 30);
    u32::try_from(wanted).unwrap_or(1 << 30)
}
