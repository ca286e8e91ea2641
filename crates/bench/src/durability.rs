//! What JetStream's `sync_interval: always` costs: the same publishes and
//! acks against a server that syncs its files before every acknowledgement
//! (moat's setting) and one that syncs every two minutes (nats-server's
//! default, which a crash of the machine can cost the last writes).

use std::time::Instant;

use async_nats::jetstream::{self, consumer::pull, stream};
use futures::StreamExt;
use futures::stream::FuturesOrdered;
use moat_devstack::{NATS_SYNC_INTERVAL, Nats};

use crate::Row;

const MESSAGES: u64 = 200_000;
/// A trade event's size on the wire, about.
const PAYLOAD: usize = 120;

/// Publishes per second (4096 acks in flight) and consumed-and-acked
/// messages per second (10k per pull request) on a server with `sync`.
async fn rates(sync: &str) -> anyhow::Result<(f64, f64)> {
    let dir = tempfile::tempdir()?;
    let mut nats = Nats::start(dir.path()).map_err(anyhow::Error::msg)?;
    nats.sync_interval = sync.to_owned();
    nats.restart().map_err(anyhow::Error::msg)?;
    let js = jetstream::new(async_nats::connect(nats.url()).await?);
    let stream = js
        .create_stream(stream::Config {
            name: "SYNC".into(),
            subjects: vec!["sync.>".into()],
            ..Default::default()
        })
        .await?;
    let payload = bytes::Bytes::from(vec![7u8; PAYLOAD]);
    let started = Instant::now();
    let mut acks = FuturesOrdered::new();
    for i in 0..MESSAGES {
        acks.push_back(
            js.publish(format!("sync.{}", i % 16), payload.clone())
                .await?
                .into_future(),
        );
        if acks.len() >= 4096 {
            acks.next().await.transpose()?;
        }
    }
    while acks.next().await.transpose()?.is_some() {}
    let publish = MESSAGES as f64 / started.elapsed().as_secs_f64();

    let consumer = stream
        .create_consumer(pull::Config {
            durable_name: Some("drain".into()),
            ..Default::default()
        })
        .await?;
    let drain = crate::drain_rate(&consumer, MESSAGES).await?;
    Ok((publish, drain))
}

pub async fn run(rows: &mut Vec<Row>) -> anyhow::Result<()> {
    let (publish_synced, drain_synced) = rates(NATS_SYNC_INTERVAL).await?;
    let (publish_default, drain_default) = rates("2m").await?;
    rows.push(Row {
        what: format!("NATS: JetStream publishes acknowledged, sync_interval {NATS_SYNC_INTERVAL} ({MESSAGES} × {PAYLOAD} B, 4096 in flight)"),
        figure: format!("{publish_synced:.0} msg/s"),
        baseline: format!("{publish_default:.0} msg/s (sync_interval 2m, nats-server's default)"),
        ratio: publish_synced / publish_default,
    });
    rows.push(Row {
        what: format!("NATS: the same messages fetched and acked, sync_interval {NATS_SYNC_INTERVAL}"),
        figure: format!("{drain_synced:.0} msg/s"),
        baseline: format!("{drain_default:.0} msg/s (sync_interval 2m)"),
        ratio: drain_synced / drain_default,
    });
    Ok(())
}
