//! `moat-collector [--config PATH] [serve]` runs the service;
//! `moat-collector replay --exchange <binance|binance-futures|okx|coinbase> [--emit jsonl]
//! [--book-top] [--speed max|1x|<factor>x] FILE...` serves a recording from a
//! local exchange server and runs the real connector against it.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use moat_collector::config::{CollectorConfig, VenueConfig};
use moat_collector::metrics::Metrics;
use moat_collector::replay::{Recording, ReplayServer, Speed};
use moat_collector::sink::{JsonLines, Sink};
use moat_collector::status::StreamStatus;
use moat_common_types::config::{load_or_exit, sources_from_args};
use moat_common_types::{http::shutdown_token, telemetry};
use tokio_util::sync::CancellationToken;

const USAGE: &str = "usage: moat-collector [--config PATH] [serve]
       moat-collector replay --exchange <binance|binance-futures|okx|coinbase> [--emit jsonl] [--book-top] [--speed max|1x|<n>x] FILE...";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _telemetry = telemetry::init("moat-collector");
    let (sources, args) = sources_from_args("collector", std::env::args().skip(1));
    let config: CollectorConfig = load_or_exit(&sources);
    match args.first().map(String::as_str) {
        None | Some("serve") => {
            let http = tokio::net::TcpListener::bind(config.http.listen)
                .await
                .with_context(|| format!("binding http.listen {}", config.http.listen))?;
            moat_collector::run(config, http, shutdown_token()).await
        }
        Some("replay") => replay(config, &args[1..]).await,
        Some(other) => {
            eprintln!("unknown command '{other}'\n{USAGE}");
            std::process::exit(64);
        }
    }
}

async fn replay(config: CollectorConfig, args: &[String]) -> anyhow::Result<()> {
    let mut exchange = None;
    let (mut jsonl, mut book_top, mut speed, mut files) = (false, false, Speed::Max, Vec::new());
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--exchange" => exchange = it.next().cloned(),
            "--emit" => match it.next().map(String::as_str) {
                Some("jsonl") => jsonl = true,
                other => bail!("--emit {other:?}: only jsonl is supported\n{USAGE}"),
            },
            "--book-top" => book_top = true,
            "--speed" => {
                let value = it.next().map(String::as_str).unwrap_or_default();
                speed = match value {
                    "max" => Speed::Max,
                    v => Speed::Factor(
                        v.trim_end_matches('x')
                            .parse()
                            .ok()
                            .filter(|f: &f64| *f > 0.0)
                            .with_context(|| format!("--speed {v:?}: expected max, 1x or a factor like 10x"))?,
                    ),
                };
            }
            file => files.push(file.to_owned()),
        }
    }
    let kind = exchange.with_context(|| format!("--exchange is required\n{USAGE}"))?;
    let (exchange, ws_path) = match kind.as_str() {
        "binance" | "binance-futures" => ("binance", ""),
        "okx" => ("okx", "/ws/v5/public"),
        "coinbase" => ("coinbase", "/"),
        _ => bail!("--exchange {kind:?}: this build replays binance, binance-futures, okx and coinbase"),
    };
    if files.is_empty() {
        bail!("no recording given\n{USAGE}");
    }
    let texts = files
        .iter()
        .map(|f| std::fs::read_to_string(f).with_context(|| format!("reading {f}")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let recording = Recording::load(&texts);
    let symbols = recording.subscribed_symbols();
    if symbols.is_empty() {
        bail!("the recording has no WebSocket subscription to derive symbols from");
    }
    let server = ReplayServer::start(tokio::net::TcpListener::bind("127.0.0.1:0").await?, recording, speed).await?;
    let venue = moat_collector::venue_connector(&VenueConfig {
        kind: kind.clone(),
        exchange: exchange.into(),
        ws_url: format!("{}{ws_path}", server.ws_url()),
        rest_url: server.http_url(),
        symbols,
        ..VenueConfig::default()
    })?;
    let metrics = Metrics::new();
    let token = CancellationToken::new();
    let status = StreamStatus::new(exchange);
    let (sink, publisher): (Arc<dyn Sink>, _) = if jsonl {
        (Arc::new(JsonLines::new(book_top)), None)
    } else {
        let client = moat_common_types::nats::connect(&config.nats.url, "moat-collector-replay").await?;
        let js = async_nats::jetstream::new(client);
        moat_common_types::nats::ensure_stream(&js, &Default::default())
            .await
            .map_err(|e| anyhow::anyhow!("creating the stream on {}: {e}", config.nats.url))?;
        let queue = moat_collector::publisher::EventQueue::new(config.nats.buffer_capacity, metrics.clone());
        let publisher = tokio::spawn(moat_collector::publisher::run_publisher(
            js,
            queue.clone(),
            config.nats.max_ack_inflight,
            moat_collector::publisher::EventSampler::new(config.nats.trace_ratio),
            metrics.clone(),
            token.clone().cancelled_owned(),
            Duration::from_secs(30),
        ));
        (queue as Arc<dyn Sink>, Some(publisher))
    };
    let connector = tokio::spawn(venue.run(sink, status.clone(), metrics, token.clone()));
    server.finished().await;
    // The server has sent everything; stop once the connector has been
    // quiet for a moment (snapshot answers and the last frames are in).
    let mut last = u64::MAX;
    for _ in 0..100 {
        let now: u64 = status.last_event_age_ms(0).map_or(0, |age| (-age) as u64);
        if now == last {
            break;
        }
        last = now;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    token.cancel();
    connector.await?;
    if let Some(publisher) = publisher {
        publisher.await?;
    }
    Ok(())
}
