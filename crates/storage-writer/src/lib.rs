//! moat-storage-writer: a durable JetStream pull consumer on `MARKET_DATA`
//! that batches events into ClickHouse and acks only what ClickHouse stored.

pub mod config;
pub mod metrics;
pub mod pull;
pub mod rows;
pub mod schema;
pub mod writer;

use std::time::Duration;

use anyhow::Context;
use async_nats::jetstream::{self, consumer};
use moat_common_types::http::{Health, router, serve};
use moat_common_types::nats::{connect, ensure_stream};
use moat_common_types::subject::STREAM_SUBJECTS;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::{ClickHouseConfig, WriterConfig};
use crate::metrics::Metrics;
use crate::pull::Puller;
use crate::writer::Writer;

/// A ClickHouse client for RowBinary without the crate's schema validation:
/// rows carry `Decimal` and `DateTime64` columns as the plain scaled
/// integers RowBinary encodes them as, which that validation refuses. The
/// pipeline and schema tests check that every table takes its rows.
pub fn clickhouse_client(config: &ClickHouseConfig) -> clickhouse::Client {
    let client = clickhouse::Client::default()
        .with_url(&config.url)
        .with_user(&config.user)
        .with_password(config.password())
        .with_database(&config.database)
        .with_validation(false);
    if config.cluster.is_empty() {
        client
    } else {
        // An insert into a Distributed table returns once every shard has
        // its rows, so an ack still means "stored".
        client.with_setting("insert_distributed_sync", "1")
    }
}

/// Applies the ClickHouse migrations (`moat-storage-writer migrate`).
pub async fn migrate(config: &WriterConfig, recreate: bool) -> anyhow::Result<Vec<u32>> {
    let client = clickhouse_client(&config.clickhouse);
    let layout = schema::Layout::from_config(&config.clickhouse.cluster);
    let db = &config.clickhouse.database;
    let context = || format!("migrating ClickHouse database {db} at {}", config.clickhouse.url);
    let applied = schema::migrate(&client, db, layout, recreate)
        .await
        .with_context(context)?;
    schema::ttl::apply(&client, db, layout, &config.ttl)
        .await
        .with_context(context)?;
    schema::merges::apply(&client, db, layout, config.merges.selector_base)
        .await
        .with_context(context)?;
    Ok(applied)
}

/// Runs the writer until `shutdown` is cancelled.
pub async fn run(config: WriterConfig, http: TcpListener, shutdown: CancellationToken) -> anyhow::Result<()> {
    let metrics = Metrics::new();
    let clickhouse = clickhouse_client(&config.clickhouse);
    let nats = connect(&config.nats, "moat-storage-writer", "moat-storage-writer")
        .await
        .with_context(|| format!("connecting to NATS at {}", config.nats.url))?;
    let js = jetstream::new(nats.clone());

    let health = Health::new("storage-writer").nats(&nats).check("clickhouse", {
        let client = clickhouse.clone();
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
    });
    let app = router(health, metrics.registry.clone());
    let http_task = tokio::spawn(serve(http, app, shutdown.clone().cancelled_owned()));

    // NATS or the stream may not be there yet when services start together.
    let settings = config.stream.settings();
    let (consumer, puller) = loop {
        let attempt = async {
            let stream = ensure_stream(&js, &settings).await?;
            let consumer = stream
                .get_or_create_consumer(
                    &config.writer.consumer,
                    consumer::pull::Config {
                        durable_name: Some(config.writer.consumer.clone()),
                        filter_subject: STREAM_SUBJECTS.to_owned(),
                        ack_policy: consumer::AckPolicy::Explicit,
                        ack_wait: config.writer.ack_wait,
                        max_ack_pending: config.writer.max_inflight,
                        deliver_policy: consumer::DeliverPolicy::All,
                        ..Default::default()
                    },
                )
                .await?;
            let info = consumer.cached_info();
            let puller = Puller::new(
                nats.clone(),
                js.clone(),
                pull::next_subject(&info.stream_name, &info.name),
                metrics.fetches_overdue.clone(),
            )
            .await?;
            Ok::<_, async_nats::Error>((consumer, puller))
        };
        match attempt.await {
            Ok(opened) => break opened,
            Err(error) => {
                tracing::warn!(%error, "cannot open the durable consumer yet");
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_millis(500)) => {}
                    () = shutdown.cancelled() => return Ok(()),
                }
            }
        }
    };

    // Consumer lag for /metrics.
    let pending_task = {
        let (mut consumer, metrics, token) = (consumer.clone(), metrics.clone(), shutdown.clone());
        tokio::spawn(async move {
            while !token.is_cancelled() {
                if let Ok(info) = consumer.info().await {
                    metrics.pending.set(info.num_pending as i64);
                }
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(2)) => {}
                    () = token.cancelled() => {}
                }
            }
        })
    };

    tracing::info!(consumer = %config.writer.consumer, database = %config.clickhouse.database, "storage-writer consuming");
    Writer {
        js,
        nats: nats.clone(),
        clickhouse,
        batch: config.writer.clone(),
        metrics,
    }
    .run(puller, shutdown.clone())
    .await;
    pending_task.await.ok();
    http_task.await??;
    Ok(())
}
