//! moat-state: versioned strategy state behind gRPC `moat.state.v1.StateStore`.
//!
//! Only the gateway calls it; strategies reach it through the gateway's
//! `StateService`, which fixes the strategy id from the caller's token.

pub mod config;
pub mod service;
pub mod store;

use std::net::SocketAddr;

use anyhow::Context;
use moat_common_types::http::{Health, router, serve};
use moat_proto::state::v1::state_store_server::StateStoreServer;
use prometheus::Registry;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

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
    let store = Store::open(&config.database)
        .await
        .with_context(|| format!("opening state database {}", config::redact(&config.database.url)))?;
    let registry = Registry::new();
    let metrics = Metrics::new(&registry);

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
    let service = StateStoreServer::new(StateService {
        store: store.clone(),
        limits: config.limits.clone(),
        metrics,
    })
    // Room for the largest state plus framing, so an oversized state gets
    // our own message naming the limit rather than a transport error.
    .max_decoding_message_size(config.limits.max_state_bytes * 2 + 64 * 1024);
    let addr: SocketAddr = grpc.local_addr()?;
    tracing::info!(%addr, backend = store.backend(), "state service serving");
    tonic::transport::Server::builder()
        .add_service(health_service)
        .add_service(service)
        .serve_with_incoming_shutdown(
            moat_common_types::http::incoming(grpc),
            shutdown.clone().cancelled_owned(),
        )
        .await?;
    http_task.await??;
    store.close().await;
    tracing::info!("state service stopped");
    Ok(())
}
