//! A recording replayed through the real connector and publisher into
//! JetStream, beside a bare pipelined publish.

use std::time::{Duration, Instant};

use anyhow::Context;
use moat_collector::venues::Kind;
use moat_common_types::MarketEvent;
use tokio_util::sync::CancellationToken;

use crate::{Row, fixtures};

/// A recording replayed at maximum speed through the real connector and the
/// publisher into JetStream (events acknowledged per second, from the
/// connection until the last ack), beside a bare pipelined JetStream publish
/// of the same events with the same headers.
pub(crate) async fn replay_to_nats(rows: &mut Vec<Row>, nats_url: &str) -> anyhow::Result<()> {
    use moat_collector::config::VenueConfig;
    use moat_collector::metrics::Metrics;
    use moat_collector::publisher::{EventQueue, run_publisher};
    use moat_collector::status::StreamStatus;
    use moat_localvenue::replay::{Recording, ReplayServer, Speed};

    struct Collect(std::sync::Mutex<Vec<MarketEvent>>);
    impl moat_collector::sink::Sink for Collect {
        fn emit(&self, event: MarketEvent) {
            self.0.lock().expect("collect lock").push(event);
        }
    }

    let text = std::fs::read_to_string(fixtures().join("COINBASE.ws.28.0")).context("reading COINBASE.ws.28.0")?;
    let recording = Recording::load(&[text]);
    let symbols = (Kind::Coinbase.spec().recorded_symbols)(&recording);
    let nats = async_nats::connect(nats_url).await?;
    let js = async_nats::jetstream::new(nats);
    let fresh_stream = || async {
        let _ = js.delete_stream("MARKET_DATA").await;
        moat_common_types::nats::ensure_stream(&js, &Default::default())
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))
    };
    const RUNS: usize = 3;
    let mut ours = Vec::new();
    let mut events_per_run = 0;
    let mut produced = Vec::new();
    for run in 0..RUNS {
        fresh_stream().await?;
        let server = ReplayServer::start(
            tokio::net::TcpListener::bind("127.0.0.1:0").await?,
            recording.clone(),
            Speed::Max,
        )
        .await?;
        let venue = moat_collector::venue_connector(&VenueConfig {
            kind: Kind::Coinbase,
            exchange: "coinbase".into(),
            ws_url: format!("{}/", server.ws_url()),
            symbols: symbols.clone(),
            ..VenueConfig::default()
        });
        let metrics = Metrics::new();
        let token = CancellationToken::new();
        let queue = EventQueue::new(1_000_000, metrics.clone());
        let collect = std::sync::Arc::new(Collect(std::sync::Mutex::new(Vec::new())));
        let sink: std::sync::Arc<dyn moat_collector::sink::Sink> =
            if run == 0 { collect.clone() } else { queue.clone() };
        let publisher = tokio::spawn(run_publisher(
            js.clone(),
            queue.clone(),
            moat_collector::config::PublisherConfig::default(),
            metrics.clone(),
            token.clone().cancelled_owned(),
            Duration::from_secs(30),
        ));
        let started = Instant::now();
        let connector = tokio::spawn(venue.run(sink, StreamStatus::new("coinbase"), metrics.clone(), token.clone()));
        tokio::time::timeout(Duration::from_secs(60), server.finished())
            .await
            .context("the replay did not finish in 60 s")?;
        if run == 0 {
            // A first pass collects the events for the baseline (and warms up).
            tokio::time::sleep(Duration::from_millis(500)).await;
            produced = std::mem::take(&mut *collect.0.lock().expect("collect lock"));
            events_per_run = produced.len() as u64;
        } else {
            let total = |c: &prometheus::IntCounterVec| -> u64 {
                moat_common_types::Kind::ALL
                    .iter()
                    .map(|k| c.with_label_values(&["coinbase", k.as_str()]).get())
                    .sum()
            };
            loop {
                if total(&metrics.published) >= events_per_run {
                    break;
                }
                anyhow::ensure!(
                    started.elapsed() < Duration::from_secs(60),
                    "only {} of {events_per_run} events acked in 60 s",
                    total(&metrics.published)
                );
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            ours.push(events_per_run as f64 / started.elapsed().as_secs_f64());
        }
        token.cancel();
        connector.await?;
        publisher.await?;
    }

    // Baseline: the same events, encoded, published with the same headers
    // and the same number of acks in flight.
    let mut bare = Vec::new();
    for _ in 1..RUNS {
        fresh_stream().await?;
        let started = Instant::now();
        let mut acks = std::collections::VecDeque::new();
        for event in &produced {
            let subject = moat_common_types::subject::Subject::for_event(event)?.to_string();
            let mut headers = async_nats::HeaderMap::new();
            headers.insert("Nats-Msg-Id", moat_common_types::subject::msg_id(event).as_str());
            let payload = moat_common_types::proto_conv::encode(event);
            acks.push_back(js.publish_with_headers(subject, headers, payload.into()).await?);
            if acks.len() >= 4096 {
                acks.pop_front().expect("an ack").await?;
            }
        }
        for ack in acks {
            ack.await?;
        }
        bare.push(events_per_run as f64 / started.elapsed().as_secs_f64());
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (ours, bare) = (median(&mut ours), median(&mut bare));
    rows.push(Row {
        what: format!(
            "collector: Coinbase recording ({} frames → {events_per_run} events) replayed at max speed through the connector into JetStream, acked",
            recording.frames.len()
        ),
        figure: format!("{ours:.0} events/s"),
        baseline: format!("{bare:.0} events/s (bare pipelined JetStream publish of the same events)"),
        ratio: ours / bare,
    });
    Ok(())
}
