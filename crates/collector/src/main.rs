//! `moat-collector [--config PATH] [serve]` runs the service;
//! `moat-collector replay --exchange <binance|binance-futures|okx|coinbase> [--emit jsonl]
//! [--book-top] [--speed max|1x|<factor>x] FILE...` serves a recording from a
//! local exchange server and runs the real connector against it;
//! `moat-collector record --exchange <kind> [--ws-url URL] [--rest-url URL]
//! [--duration SECONDS] --out FILE SYMBOL...` writes a venue's live traffic
//! in the recording format that `replay` serves;
//! `moat-collector exchange [--listen ADDR] [--symbol SYMBOL=PRICE]...
//! [--trades-per-second N]` runs a local exchange with a generated session
//! in Binance's protocol (the feed of `cargo xtask up`).

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
       moat-collector replay --exchange <binance|binance-futures|okx|coinbase> [--emit jsonl] [--book-top] [--speed max|1x|<n>x] FILE...
       moat-collector record --exchange <binance|binance-futures|okx|coinbase> [--ws-url URL] [--rest-url URL] [--duration SECONDS] --out FILE SYMBOL...
       moat-collector exchange [--listen ADDR] [--symbol SYMBOL=PRICE]... [--trades-per-second N]";

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
        Some("exchange") => exchange(&args[1..]).await,
        Some("record") => record(&args[1..]).await,
        Some(other) => {
            eprintln!("unknown command '{other}'\n{USAGE}");
            std::process::exit(64);
        }
    }
}

/// The value after an option such as `--out`, or an error naming it.
fn option_value(option: &str, value: Option<&String>) -> anyhow::Result<String> {
    value
        .cloned()
        .with_context(|| format!("{option} needs a value\n{USAGE}"))
}

/// The public endpoints of a venue kind: WebSocket and REST base URLs.
fn venue_urls(kind: &str) -> anyhow::Result<(&'static str, &'static str)> {
    Ok(match kind {
        "binance" => ("wss://stream.binance.com:9443", "https://api.binance.com"),
        "binance-futures" => ("wss://fstream.binance.com", "https://fapi.binance.com"),
        "okx" => ("wss://ws.okx.com:8443/ws/v5/public", "https://www.okx.com"),
        "coinbase" => (
            "wss://ws-feed.exchange.coinbase.com",
            "https://api.exchange.coinbase.com",
        ),
        _ => bail!("--exchange {kind:?}: expected binance, binance-futures, okx or coinbase"),
    })
}

/// Runs the real connector against a venue and writes its traffic (every
/// connection, subscription, frame and REST answer) to a recording, until
/// `--duration` passes or SIGINT/SIGTERM.
async fn record(args: &[String]) -> anyhow::Result<()> {
    let (mut kind, mut ws_url, mut rest_url, mut out, mut duration) = (None, None, None, None, None);
    let mut symbols = Vec::new();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = || option_value(arg, it.next());
        match arg.as_str() {
            "--exchange" => kind = Some(value()?),
            "--ws-url" => ws_url = Some(value()?),
            "--rest-url" => rest_url = Some(value()?),
            "--out" => out = Some(value()?),
            "--duration" => {
                let v = value()?;
                let seconds: f64 = v
                    .trim_end_matches('s')
                    .parse()
                    .ok()
                    .filter(|s: &f64| *s > 0.0)
                    .with_context(|| format!("--duration {v:?}: expected seconds, e.g. 60 or 60s"))?;
                duration = Some(Duration::from_secs_f64(seconds));
            }
            s if s.starts_with("--") => bail!("unknown option {s:?}\n{USAGE}"),
            symbol => symbols.push(symbol.to_owned()),
        }
    }
    let kind = kind.with_context(|| format!("--exchange is required\n{USAGE}"))?;
    let out = out.with_context(|| format!("--out FILE is required\n{USAGE}"))?;
    if symbols.is_empty() {
        bail!("name at least one venue symbol to record (BTCUSDT, BTC-USDT-SWAP, BTC-USD)\n{USAGE}");
    }
    let (default_ws, default_rest) = venue_urls(&kind)?;
    let exchange = if kind == "binance-futures" {
        "binance"
    } else {
        kind.as_str()
    };
    let venue = VenueConfig {
        kind: kind.clone(),
        exchange: exchange.into(),
        ws_url: ws_url.unwrap_or_else(|| default_ws.into()),
        rest_url: rest_url.unwrap_or_else(|| default_rest.into()),
        symbols: symbols.clone(),
        ..VenueConfig::default()
    };
    let recorder = moat_collector::recording::Recorder::create(std::path::Path::new(&out))
        .with_context(|| format!("creating {out}"))?;
    recorder.configuration(&serde_json::json!({"exchange": kind, "symbols": symbols}).to_string());
    let token = shutdown_token();
    let metrics = Metrics::new();
    let counter = Arc::new(moat_collector::sink::Counter::default());
    let mut tasks = tokio::task::JoinSet::new();
    for connector in moat_collector::venue_connectors(&venue)? {
        let connector = connector.with_recorder(recorder.clone());
        let sink: Arc<dyn Sink> = counter.clone();
        tasks.spawn(connector.run(sink, StreamStatus::new(exchange), metrics.clone(), token.clone()));
    }
    eprintln!("recording {kind} {} to {out}; Ctrl-C stops", symbols.join(","));
    let flusher = {
        let (recorder, token) = (recorder.clone(), token.clone());
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(1));
            while !token.is_cancelled() {
                tokio::select! {
                    _ = every.tick() => {}
                    () = token.cancelled() => {}
                }
                if let Err(error) = recorder.flush() {
                    tracing::error!(%error, "flushing the recording failed");
                }
            }
        })
    };
    match duration {
        Some(d) => {
            tokio::select! {
                () = tokio::time::sleep(d) => token.cancel(),
                () = token.cancelled() => {}
            }
        }
        None => token.cancelled().await,
    }
    while tasks.join_next().await.is_some() {}
    flusher.await?;
    recorder.flush().with_context(|| format!("writing {out}"))?;
    eprintln!(
        "recorded to {out}; {} events normalized on the way",
        counter.events.load(std::sync::atomic::Ordering::Relaxed)
    );
    Ok(())
}

/// Runs the generated local exchange until SIGINT or SIGTERM.
async fn exchange(args: &[String]) -> anyhow::Result<()> {
    let mut listen = "127.0.0.1:9443".to_owned();
    let (mut symbols, mut rate) = (Vec::new(), 20u32);
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = || option_value(arg, it.next());
        match arg.as_str() {
            "--listen" => listen = value()?,
            "--symbol" => {
                symbols.push(moat_collector::exchange::GeneratedSymbol::parse(&value()?).map_err(anyhow::Error::msg)?)
            }
            "--trades-per-second" => {
                let v = value()?;
                rate = v
                    .parse()
                    .ok()
                    .filter(|r| (1..=1_000_000).contains(r))
                    .with_context(|| format!("--trades-per-second {v:?}: expected 1 to 1000000"))?;
            }
            other => bail!("unknown argument {other:?}\n{USAGE}"),
        }
    }
    if symbols.is_empty() {
        symbols = moat_collector::exchange::GeneratedSymbol::defaults();
    }
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .with_context(|| format!("binding --listen {listen}"))?;
    let exchange = moat_collector::exchange::GeneratedExchange::start(listener, &symbols, rate).await?;
    tracing::info!(
        ws = %exchange.ws_url(),
        rest = %exchange.http_url(),
        symbols = symbols.len(),
        trades_per_second = rate,
        "local exchange serving a generated session in Binance's protocol"
    );
    shutdown_token().cancelled().await;
    // Dropping the exchange stops it.
    drop(exchange);
    Ok(())
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
