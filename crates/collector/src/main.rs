//! `moat-collector [--config PATH] [serve]` runs the service;
//! `moat-collector replay --exchange <venue> [--emit jsonl]
//! [--book-top] [--speed max|1x|<factor>x] FILE...` serves a recording from a
//! local exchange server and runs the real connector against it;
//! `moat-collector record --exchange <kind> [--ws-url URL] [--rest-url URL]
//! [--duration SECONDS] --out FILE SYMBOL...` writes a venue's live traffic
//! in the recording format that `replay` serves;
//! `moat-collector exchange [--listen ADDR] [--symbol SYMBOL=PRICE]...
//! [--trades-per-second N]` runs a local exchange with a generated session
//! in Binance's protocol (the feed of `cargo xtask up`).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use moat_collector::config::{CollectorConfig, VenueConfig};
use moat_collector::metrics::Metrics;
use moat_collector::sink::{JsonLines, Sink};
use moat_collector::status::StreamStatus;
use moat_collector::venues::Kind;
use moat_common_types::config::{ConfigArgs, load_or_exit, parse_args};
use moat_common_types::{http::shutdown_token, telemetry};
use moat_localvenue::replay::{Recording, ReplayServer, Speed};
use tokio_util::sync::CancellationToken;

/// mimalloc: every event's encoding, subject and id are allocated on a read
/// loop and freed on the publisher's task, and glibc's allocator was the
/// collector's hottest code under load (`_int_malloc`, `_int_free`,
/// `malloc_consolidate`). At 54,000 events/s the collector used 0.24 of a
/// core with it against 0.28-0.29, and the local exchange 0.20 against 0.22.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Collects live market data from exchanges, normalizes it and publishes it
/// to NATS JetStream; replays and records venue sessions; serves a local
/// exchange for development.
#[derive(Parser)]
#[command(name = "moat-collector", version)]
struct Args {
    #[command(flatten)]
    config: ConfigArgs,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the service until SIGINT or SIGTERM (the default).
    Serve,
    /// Serve a recording from a local exchange server and run the real
    /// connector against it, publishing to NATS or printing JSON lines.
    Replay {
        #[arg(long, value_enum)]
        exchange: Kind,
        /// Print events as JSON lines instead of publishing to NATS.
        #[arg(long, value_parser = ["jsonl"])]
        emit: Option<String>,
        /// With `--emit jsonl`: print the top of each book after every update.
        #[arg(long)]
        book_top: bool,
        /// `max`, `1x` (as recorded) or a factor such as `10x`.
        #[arg(long, default_value = "max", value_parser = parse_speed)]
        speed: Speed,
        /// Recording files (`shared/fixtures/exchanges` format).
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Run the connector against a venue and write its traffic in the
    /// recording format `replay` serves.
    Record {
        #[arg(long, value_enum)]
        exchange: Kind,
        /// WebSocket URL (default: the venue's public endpoint).
        #[arg(long)]
        ws_url: Option<String>,
        /// REST base URL (default: the venue's public endpoint).
        #[arg(long)]
        rest_url: Option<String>,
        /// Stop after this many seconds (default: at SIGINT or SIGTERM).
        #[arg(long, value_parser = parse_seconds)]
        duration: Option<Duration>,
        /// The recording to write.
        #[arg(long)]
        out: PathBuf,
        /// Venue symbols (BTCUSDT, BTC-USDT-SWAP, BTC-USD).
        #[arg(required = true)]
        symbols: Vec<String>,
    },
    /// Run a local exchange with a generated session in Binance's protocol
    /// (the feed of `cargo xtask up`).
    Exchange {
        #[arg(long, default_value = "127.0.0.1:9443")]
        listen: String,
        /// `SYMBOL=PRICE`, repeated (default: a few majors).
        #[arg(long = "symbol", value_parser = parse_symbol)]
        symbols: Vec<moat_localvenue::exchange::GeneratedSymbol>,
        #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
        trades_per_second: u32,
    },
}

fn parse_speed(value: &str) -> Result<Speed, String> {
    if value == "max" {
        return Ok(Speed::Max);
    }
    value
        .trim_end_matches('x')
        .parse()
        .ok()
        .filter(|f: &f64| *f > 0.0)
        .map(Speed::Factor)
        .ok_or_else(|| format!("{value:?}: expected max, 1x or a factor like 10x"))
}

fn parse_seconds(value: &str) -> Result<Duration, String> {
    value
        .trim_end_matches('s')
        .parse()
        .ok()
        .filter(|s: &f64| *s > 0.0)
        .map(Duration::from_secs_f64)
        .ok_or_else(|| format!("{value:?}: expected seconds, e.g. 60 or 60s"))
}

fn parse_symbol(value: &str) -> Result<moat_localvenue::exchange::GeneratedSymbol, String> {
    moat_localvenue::exchange::GeneratedSymbol::parse(value)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Args = parse_args();
    let _telemetry = telemetry::init("moat-collector");
    let config: CollectorConfig = load_or_exit(&args.config.sources("collector"));
    match args.command.unwrap_or(Command::Serve) {
        Command::Serve => {
            let http = config.http.bind("http").await?;
            moat_collector::run(config, http, shutdown_token()).await
        }
        Command::Replay {
            exchange,
            emit,
            book_top,
            speed,
            files,
        } => replay(config, exchange, emit.is_some(), book_top, speed, &files).await,
        Command::Exchange {
            listen,
            symbols,
            trades_per_second,
        } => run_exchange(&listen, symbols, trades_per_second).await,
        Command::Record {
            exchange,
            ws_url,
            rest_url,
            duration,
            out,
            symbols,
        } => record(exchange, ws_url, rest_url, duration, &out, symbols).await,
    }
}

/// Runs the real connector against a venue and writes its traffic (every
/// connection, subscription, frame and REST answer) to a recording, until
/// `--duration` passes or SIGINT/SIGTERM.
async fn record(
    kind: Kind,
    ws_url: Option<String>,
    rest_url: Option<String>,
    duration: Option<Duration>,
    out: &std::path::Path,
    symbols: Vec<String>,
) -> anyhow::Result<()> {
    let exchange = kind.spec().exchange;
    let venue = VenueConfig {
        kind,
        exchange: exchange.into(),
        ws_url: ws_url.unwrap_or_default(),
        rest_url: rest_url.unwrap_or_default(),
        symbols: symbols.clone(),
        ..VenueConfig::default()
    };
    let out_name = out.display().to_string();
    let recorder = moat_collector::recording::Recorder::create(out).with_context(|| format!("creating {out_name}"))?;
    recorder.configuration(&serde_json::json!({"exchange": kind.name(), "symbols": symbols}).to_string());
    let token = shutdown_token();
    let metrics = Metrics::new();
    let counter = Arc::new(moat_collector::sink::Counter::default());
    let mut tasks = tokio::task::JoinSet::new();
    for connector in moat_collector::venue_connectors(&venue) {
        let connector = connector.with_recorder(recorder.clone());
        let sink: Arc<dyn Sink> = counter.clone();
        tasks.spawn(connector.run(sink, StreamStatus::new(exchange), metrics.clone(), token.clone()));
    }
    eprintln!(
        "recording {} {} to {out_name}; Ctrl-C stops",
        kind.name(),
        symbols.join(",")
    );
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
    recorder.flush().with_context(|| format!("writing {out_name}"))?;
    eprintln!(
        "recorded to {out_name}; {} events normalized on the way",
        counter.events.load(std::sync::atomic::Ordering::Relaxed)
    );
    Ok(())
}

/// Runs the generated local exchange until SIGINT or SIGTERM.
async fn run_exchange(
    listen: &str,
    mut symbols: Vec<moat_localvenue::exchange::GeneratedSymbol>,
    rate: u32,
) -> anyhow::Result<()> {
    if symbols.is_empty() {
        symbols = moat_localvenue::exchange::GeneratedSymbol::defaults();
    }
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding --listen {listen}"))?;
    let exchange = moat_localvenue::exchange::GeneratedExchange::start(listener, &symbols, rate).await?;
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

async fn replay(
    config: CollectorConfig,
    kind: Kind,
    jsonl: bool,
    book_top: bool,
    speed: Speed,
    files: &[PathBuf],
) -> anyhow::Result<()> {
    let spec = kind.spec();
    let exchange = spec.exchange;
    let texts = files
        .iter()
        .map(|f| std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display())))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let recording = Recording::load(&texts);
    let symbols = (spec.recorded_symbols)(&recording);
    if symbols.is_empty() {
        bail!("the recording has no WebSocket subscription to derive symbols from");
    }
    let server = ReplayServer::start(tokio::net::TcpListener::bind("127.0.0.1:0").await?, recording, speed).await?;
    // One connection per kind of connection the venue needs (the server
    // serves each the frames recorded on its path).
    let connectors = moat_collector::venue_connectors(&VenueConfig {
        kind,
        exchange: exchange.into(),
        ws_url: format!("{}{}", server.ws_url(), spec.replay_path),
        rest_url: server.http_url(),
        symbols_per_connection: symbols.len(),
        symbols,
        ..VenueConfig::default()
    });
    let metrics = Metrics::new();
    let token = CancellationToken::new();
    let status = StreamStatus::new(exchange);
    let (sink, publisher): (Arc<dyn Sink>, _) = if jsonl {
        (Arc::new(JsonLines::new(book_top)), None)
    } else {
        let client = moat_common_types::nats::connect(&config.nats, "moat-collector", "moat-collector-replay").await?;
        let js = async_nats::jetstream::new(client.clone());
        moat_common_types::nats::ensure_stream(&js, &config.stream.settings())
            .await
            .map_err(|e| anyhow::anyhow!("creating the stream on {}: {e}", config.nats.url))?;
        let (queue, live) = moat_collector::publisher::EventQueue::with_live(
            config.publisher.buffer_capacity.get(),
            metrics.clone(),
            client.clone(),
        );
        tokio::spawn(live);
        let publisher = tokio::spawn(moat_collector::publisher::run_publisher(
            js,
            queue.clone(),
            config.publisher.clone(),
            metrics.clone(),
            token.clone().cancelled_owned(),
            Duration::from_secs(30),
        ));
        (queue as Arc<dyn Sink>, Some(publisher))
    };
    let mut running = tokio::task::JoinSet::new();
    for connector in connectors {
        running.spawn(connector.run(sink.clone(), status.clone(), metrics.clone(), token.clone()));
    }
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
    while let Some(done) = running.join_next().await {
        done?;
    }
    if let Some(publisher) = publisher {
        publisher.await?;
    }
    Ok(())
}
