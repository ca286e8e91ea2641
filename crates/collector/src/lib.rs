//! moat-collector: venue connectors normalize market data and publish it to
//! the JetStream stream `MARKET_DATA` on `md.<kind>.<exchange>.<market>.<symbol>`.
//!
//! Connectors push into a bounded [`publisher::EventQueue`]; one publisher
//! task drains it with pipelined acks. The HTTP listener is passed in so
//! tests can bind port 0.

pub mod book;
pub mod config;
pub mod metrics;
pub mod publisher;
pub mod recording;
pub mod sink;
pub mod status;
pub mod venues;

use std::time::Duration;

use anyhow::Context;
use axum::Json;
use axum::routing::get;
use moat_common_types::http::{Health, router, serve};
use moat_common_types::nats::{StreamSettings, connect, ensure_stream};
use moat_common_types::now_us;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::CollectorConfig;
use crate::metrics::Metrics;
use crate::publisher::{EventQueue, run_publisher};
use crate::status::StreamStatus;

/// How long the publisher may drain its queue after a shutdown signal.
pub const DRAIN_GRACE: Duration = Duration::from_secs(5);
/// A venue whose newest event is older than this is reported unhealthy.
pub const STALE_AFTER_MS: i64 = 30_000;

/// A configured venue's connector, whatever its protocol.
#[derive(Debug)]
pub struct VenueConnector(Box<dyn venues::driver::Connector>);

impl VenueConnector {
    /// Writes everything the connector opens, sends and receives to
    /// `recorder` in the recording format.
    pub fn with_recorder(mut self, recorder: recording::Recorder) -> VenueConnector {
        self.0.set_recorder(recorder);
        self
    }

    /// The instruments it collects, and those it skipped.
    pub fn instruments(&self) -> &venues::Instruments {
        self.0.instruments()
    }

    /// Runs the venue's connections until `shutdown`, reconnecting.
    pub async fn run(
        self,
        sink: std::sync::Arc<dyn sink::Sink>,
        status: StreamStatus,
        metrics: Metrics,
        shutdown: CancellationToken,
    ) {
        self.0.run(sink, status, metrics, shutdown).await;
    }
}

/// The connectors of a configured venue: one per shard of symbols, each
/// shard on the kind of connection its symbols need and within the venue's
/// streams-per-connection limit.
pub fn venue_connectors(venue: &config::VenueConfig) -> Vec<VenueConnector> {
    let per_connection = match venue.symbols_per_connection {
        0 => venue.kind.limits().symbols_per_connection,
        n => n,
    };
    (venue.kind.spec().groups)(&venue.symbols)
        .iter()
        .flat_map(|group| venues::limits::shards(group, per_connection))
        .map(|symbols| {
            venue_connector(&config::VenueConfig {
                symbols,
                ..venue.clone()
            })
        })
        .collect()
}

/// The connector of a configured venue, all its symbols on one connection.
/// Symbols that cannot be normalized are skipped, and announced when it runs.
pub fn venue_connector(venue: &config::VenueConfig) -> VenueConnector {
    let spec = venue.kind.spec();
    let symbols: Vec<&str> = venue.symbols.iter().map(String::as_str).collect();
    let connection = venues::Connection {
        stale_after: venue.stale_after,
        max_connection_age: venue.max_connection_age,
        backoff_max: venue.backoff_max,
        limiter: venues::limits::ConnectionLimiter::for_kind(venue.kind),
        snapshot_every: (!venue.book_snapshot_interval.is_zero()).then_some(venue.book_snapshot_interval),
        recorder: None,
    };
    let mut config = venue.clone();
    if config.ws_url.is_empty() {
        config.ws_url = spec.ws_url.to_owned();
    }
    if config.rest_url.is_empty() {
        config.rest_url = spec.rest_url.to_owned();
    }
    if config.exchange.is_empty() {
        config.exchange = spec.exchange.to_owned();
    }
    let instruments = (spec.instruments)(&config.exchange, &symbols);
    VenueConnector((spec.connector)(&config, instruments, connection))
}

/// Seeds a venue's last trade ids from the newest trade of each symbol in
/// the stream, so trades missed while the collector was down are published
/// as a gap when it is back. A symbol with no trade stored starts fresh.
async fn seed_trade_ids(js: &async_nats::jetstream::Context, stream: &str, connector: &VenueConnector) {
    let Some(trade_ids) = connector.0.trade_ids() else {
        return;
    };
    let Ok(stream) = js.get_stream(stream).await else {
        return;
    };
    let instruments = connector.instruments();
    for venue_symbol in instruments.ids() {
        let Some(instrument) = instruments.get(venue_symbol) else {
            continue;
        };
        let Ok(subject) = moat_common_types::subject::Subject::new(
            moat_common_types::Kind::Trade,
            &instrument.exchange,
            instrument.market,
            &instrument.symbol,
        ) else {
            continue;
        };
        let Ok(message) = stream.get_last_raw_message_by_subject(&subject.to_string()).await else {
            continue;
        };
        let events = moat_common_types::proto_conv::decode_message(Some(&message.headers), &message.payload);
        if let Some(moat_common_types::MarketEvent::Trade(t)) = events.ok().and_then(|mut e| e.pop())
            && let Ok(id) = t.trade_id.parse()
        {
            tracing::info!(
                symbol = venue_symbol,
                last_trade_id = id,
                "resuming after the last stored trade"
            );
            trade_ids.seed(venue_symbol, id);
        }
    }
}

/// Runs the collector until `shutdown` is cancelled.
pub async fn run(config: CollectorConfig, http: TcpListener, shutdown: CancellationToken) -> anyhow::Result<()> {
    let metrics = Metrics::new();
    let client = connect(&config.nats, "moat-collector", "moat-collector")
        .await
        .with_context(|| format!("connecting to NATS at {}", config.nats.url))?;
    // The live lane has a connection of its own, so its small messages
    // never queue behind a round's batches in one socket.
    let live_client = connect(&config.nats, "moat-collector", "moat-collector-live")
        .await
        .with_context(|| format!("connecting to NATS at {}", config.nats.url))?;
    let js = async_nats::jetstream::new(client.clone());
    let settings = StreamSettings {
        name: config.stream.name.clone(),
        replicas: config.stream.replicas,
        ..StreamSettings::default()
    };
    // The stream must exist before the first publish; NATS may still be
    // starting, so keep trying rather than failing the service.
    let mut attempt = 0u32;
    loop {
        match ensure_stream(&js, &settings).await {
            Ok(_) => break,
            Err(error) => {
                attempt += 1;
                tracing::warn!(%error, attempt, stream = %settings.name, "cannot create stream yet");
                tokio::select! {
                    () = shutdown.cancelled() => return Ok(()),
                    () = tokio::time::sleep(Duration::from_millis(500)) => {}
                }
            }
        }
    }

    let (queue, live) = EventQueue::with_live(
        config.publisher.buffer_capacity.get(),
        metrics.clone(),
        live_client.clone(),
    );
    let live = tokio::spawn(live);
    let mut venues = Vec::new();
    let mut tasks = tokio::task::JoinSet::new();
    let mut configured = config.venues.clone();
    // Held until the collector stops: dropping it stops the exchange.
    let _sim = if config.sim.enabled {
        let sim = &config.sim;
        let (exchange, symbols) = moat_localvenue::sim::start(
            sim.symbols.iter().map(|s| (s.symbol.as_str(), s.price.as_str())),
            sim.trades_per_second,
        )
        .await
        .map_err(|e| anyhow::anyhow!("sim: {e}"))?;
        tracing::info!(ws = %exchange.ws_url(), exchange = %sim.exchange, "simulated exchange started");
        configured.push(config::VenueConfig {
            kind: venues::Kind::Binance,
            exchange: sim.exchange.clone(),
            ws_url: exchange.ws_url(),
            rest_url: exchange.http_url(),
            symbols,
            open_interest_interval: Duration::ZERO,
            ..config::VenueConfig::default()
        });
        Some(exchange)
    } else {
        None
    };
    for venue in &configured {
        let shards = venue_connectors(venue);
        let sharded = shards.len() > 1;
        for (i, connector) in shards.into_iter().enumerate() {
            seed_trade_ids(&js, &settings.name, &connector).await;
            let name = if sharded {
                format!("{}#{i}", venue.exchange)
            } else {
                venue.exchange.clone()
            };
            let status = StreamStatus::new(&name);
            venues.push(status.clone());
            let sink: std::sync::Arc<dyn sink::Sink> = queue.clone();
            let (metrics, token) = (metrics.clone(), shutdown.clone());
            tasks.spawn(connector.run(sink, status, metrics, token));
        }
    }
    let publisher = tokio::spawn(run_publisher(
        js,
        queue,
        config.publisher.clone(),
        metrics.clone(),
        shutdown.clone().cancelled_owned(),
        DRAIN_GRACE,
    ));

    let mut health = Health::new("collector").nats(&client);
    for venue in &venues {
        let venue = venue.clone();
        health = health.check(&format!("venue:{}", venue.exchange), move || {
            let age = venue.last_event_age_ms(now_us());
            async move {
                match age {
                    Some(age) if age <= STALE_AFTER_MS => Ok(()),
                    Some(age) => Err(format!("no event for {age} ms")),
                    None => Err("no event yet".to_owned()),
                }
            }
        });
    }
    register_venue_gauges(&metrics.registry, &venues);
    let status_venues = venues.clone();
    let app = router(health, metrics.registry.clone()).route(
        "/status",
        get(move || {
            let venues: Vec<serde_json::Value> = status_venues.iter().map(|v| v.to_json(now_us())).collect();
            async move { Json(serde_json::json!({ "venues": venues })) }
        }),
    );
    let addr = http.local_addr()?;
    tracing::info!(%addr, venues = venues.len(), "collector serving");
    serve(http, app, shutdown.clone().cancelled_owned()).await?;
    while tasks.join_next().await.is_some() {}
    publisher.await?;
    // The connectors and the publisher held the queue: the live lane ends.
    live.await?;
    live_client.flush().await.ok();
    client.flush().await.ok();
    tracing::info!("collector stopped");
    Ok(())
}

/// `moat_collector_venue_connected{exchange}` and
/// `moat_collector_last_event_timestamp_seconds{exchange}`, read from the
/// venues' status at each scrape (a sharded venue shows each connection
/// as `exchange#i`).
fn register_venue_gauges(registry: &prometheus::Registry, venues: &[StreamStatus]) {
    let connected = venues.to_vec();
    moat_common_types::http::register_computed(
        registry,
        "moat_collector_venue_connected",
        "1 while the venue connection is open and subscribed, 0 while it reconnects",
        &["exchange"],
        move || {
            connected
                .iter()
                .map(|v| (vec![v.exchange.clone()], f64::from(u8::from(v.is_connected()))))
                .collect()
        },
    );
    let newest = venues.to_vec();
    moat_common_types::http::register_computed(
        registry,
        "moat_collector_last_event_timestamp_seconds",
        "when the venue's newest event arrived (Unix seconds); `time() - this` is its freshness",
        &["exchange"],
        move || {
            newest
                .iter()
                .filter_map(|v| Some((vec![v.exchange.clone()], v.newest_event_us()? as f64 / 1e6)))
                .collect()
        },
    );
}
