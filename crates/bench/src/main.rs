//! `moat-bench`: the benchmarks behind `cargo xtask bench`. Every figure is
//! printed beside a baseline measured in the same run on the same machine,
//! as a Markdown table row, so ratios survive a change of hardware.
//!
//! Needs `MOAT_BENCH_NATS_URL`, `MOAT_BENCH_CLICKHOUSE_URL` (started by
//! xtask) and the exchange recordings (`MOAT_EXCHANGE_FIXTURES`). The
//! sustained-load run starts a whole stack from the binaries in
//! `MOAT_BIN_DIR`. `MOAT_BENCH_ONLY=writer,load` runs only those sections
//! (parse, replay, state, durability, storage, writer, gateway, rpc, load).
//!
//! The report goes to stdout after the line [`REPORT`]; what comes before
//! it (services' own output) is not part of it.

mod durability;
mod load;
mod storage;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::StreamExt;
use moat_collector::recording::{Record, parse_line};
use moat_collector::venues::binance::parse::{Frame, parse};
use moat_collector::venues::binance::{Flavor, Symbols};
use moat_common_types::MarketEvent;
use tokio_util::sync::CancellationToken;

struct Row {
    what: String,
    figure: String,
    baseline: String,
    ratio: f64,
}

/// The line after which stdout holds the Markdown report.
const REPORT: &str = "<!-- moat-bench report -->";

fn print(rows: &[Row], load: Option<&(load::Outcome, load::Outcome)>) {
    println!("{REPORT}");
    println!("| benchmark | moat | baseline (same run) | ratio |");
    println!("| --- | --- | --- | --- |");
    for r in rows {
        println!("| {} | {} | {} | {:.2} |", r.what, r.figure, r.baseline, r.ratio);
    }
    if let Some((load, unsynced)) = load {
        println!(
            "\nSustained load, each rate held {} s through the whole stack (release binaries, one process \
             per service, storage-writer `flush_interval_ms` 200, JetStream `sync_interval` {}):\n",
            load.hold.as_secs(),
            moat_devstack::NATS_SYNC_INTERVAL
        );
        print!("{}", load.table());
        println!(
            "\nPull requests the writer gave up on because NATS had not ended them in time, over the whole ladder: {}",
            load.fetches_overdue
        );
        println!("\nThe same ladder with JetStream `sync_interval` 2m (nats-server's default), from 1,500 trades/s:\n");
        print!("{}", unsynced.table());
        println!(
            "\nPull requests given up on over that ladder: {}",
            unsynced.fetches_overdue
        );
    }
}

fn fixtures() -> PathBuf {
    std::env::var_os("MOAT_EXCHANGE_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures/exchanges"))
}

/// Fetches `n` messages from `consumer` 10,000 per request, acking each
/// (nothing else done with them); returns messages per second.
async fn drain_rate(
    consumer: &async_nats::jetstream::consumer::Consumer<async_nats::jetstream::consumer::pull::Config>,
    n: u64,
) -> anyhow::Result<f64> {
    let started = Instant::now();
    let mut got = 0u64;
    while got < n {
        let mut messages = consumer
            .fetch()
            .max_messages(10_000)
            .expires(Duration::from_secs(1))
            .messages()
            .await
            .map_err(|e| anyhow::anyhow!("fetching: {e}"))?;
        while let Some(message) = messages.next().await {
            let message = message.map_err(|e| anyhow::anyhow!("fetching: {e}"))?;
            message.ack().await.map_err(|e| anyhow::anyhow!("acking: {e}"))?;
            got += 1;
        }
    }
    Ok(n as f64 / started.elapsed().as_secs_f64())
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

/// Parse + normalize + protobuf-encode of recorded Binance futures frames,
/// beside a bare `serde_json::Value` parse of the same frames.
fn collector_parse(rows: &mut Vec<Row>) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(fixtures().join("BINANCE_FUTURES.ws.1.0")).context("reading the recording")?;
    let mut frames = Vec::new();
    let mut symbols = Vec::new();
    for line in text.lines() {
        match parse_line(line) {
            Some(Record::Received { payload, .. }) => frames.push(payload.to_owned()),
            Some(Record::Open { url, .. }) => {
                for s in url.split("streams=").nth(1).unwrap_or_default().split('/') {
                    let s = s.split('@').next().unwrap_or_default().to_ascii_uppercase();
                    if !symbols.contains(&s) {
                        symbols.push(s);
                    }
                }
            }
            _ => {}
        }
    }
    let refs: Vec<&str> = symbols.iter().map(String::as_str).collect();
    let symbols = Symbols::new("binance", Flavor::Futures, &refs)?;
    let trades: Vec<&String> = frames.iter().filter(|f| f.contains("\"e\":\"aggTrade\"")).collect();
    for (label, set) in [
        ("all frames", frames.iter().collect::<Vec<_>>()),
        ("trade frames", trades),
    ] {
        let rounds = (400_000 / set.len().max(1)).max(1);
        let started = Instant::now();
        let mut bytes = 0usize;
        for _ in 0..rounds {
            for frame in &set {
                if let Ok(frame) = parse(&symbols, frame, 0) {
                    let event = match frame {
                        Frame::Trade(t) => MarketEvent::Trade(t),
                        Frame::Bbo(b) => MarketEvent::Bbo(b),
                        Frame::Candle(c) => MarketEvent::Candle(c),
                        Frame::Funding(f) => MarketEvent::Funding(f),
                        Frame::Liquidation(l) => MarketEvent::Liquidation(l),
                        Frame::Depth(_) | Frame::Control => continue,
                    };
                    bytes += moat_common_types::proto_conv::encode(&event).len();
                }
            }
        }
        let ours = (rounds * set.len()) as f64 / started.elapsed().as_secs_f64();
        let started = Instant::now();
        let mut keys = 0usize;
        for _ in 0..rounds {
            for frame in &set {
                let v: serde_json::Value = serde_json::from_str(frame)?;
                keys += v.as_object().map_or(0, |o| o.len());
            }
        }
        let bare = (rounds * set.len()) as f64 / started.elapsed().as_secs_f64();
        std::hint::black_box((bytes, keys));
        rows.push(Row {
            what: format!("collector: parse+normalize+encode, Binance futures {label}, 1 core"),
            figure: format!("{:.0} msg/s", ours),
            baseline: format!("{:.0} msg/s (serde_json::Value parse)", bare),
            ratio: ours / bare,
        });
    }
    Ok(())
}

/// State save/load through moat-state's gRPC, beside raw sqlx on the same
/// SQLite settings (WAL, synchronous=FULL).
async fn state(rows: &mut Vec<Row>) -> anyhow::Result<()> {
    use moat_proto::state::v1::state_store_client::StateStoreClient;
    use moat_proto::state::v1::{LoadRequest, SaveRequest};
    let dir = tempfile::tempdir()?;
    let mut config = moat_state::config::StateConfig::default();
    config.database.url = format!("sqlite://{}", dir.path().join("state.db").display());
    config.limits.max_state_bytes = 2 * 1024 * 1024;
    let grpc = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = grpc.local_addr()?;
    let token = CancellationToken::new();
    let http = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    tokio::spawn(moat_state::run(config, grpc, http, token.clone()));
    let mut client = loop {
        if let Ok(c) = StateStoreClient::connect(format!("http://{addr}")).await {
            break c.max_decoding_message_size(8 * 1024 * 1024);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let raw = sqlx::sqlite::SqlitePoolOptions::new()
        .connect_with(
            sqlx::sqlite::SqliteConnectOptions::new()
                .filename(dir.path().join("raw.db"))
                .create_if_missing(true)
                .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
                .synchronous(sqlx::sqlite::SqliteSynchronous::Full),
        )
        .await?;
    sqlx::query("CREATE TABLE t (id TEXT, version INTEGER, data BLOB, PRIMARY KEY (id, version))")
        .execute(&raw)
        .await?;
    for (size, n) in [(1024usize, 400usize), (1024 * 1024, 40)] {
        let data = vec![7u8; size];
        let id = format!("bench-{size}");
        let (mut save, mut load, mut raw_insert, mut raw_select) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for v in 0..n as u64 {
            let t = Instant::now();
            client
                .save(SaveRequest {
                    strategy_id: id.clone(),
                    data: data.clone(),
                    expected_version: v,
                })
                .await?;
            save.push(t.elapsed());
            let t = Instant::now();
            client
                .load(LoadRequest {
                    strategy_id: id.clone(),
                    version: 0,
                })
                .await?;
            load.push(t.elapsed());
            let t = Instant::now();
            sqlx::query("INSERT INTO t (id, version, data) VALUES ($1, $2, $3)")
                .bind(&id)
                .bind(v as i64)
                .bind(&data)
                .execute(&raw)
                .await?;
            raw_insert.push(t.elapsed());
            let t = Instant::now();
            let _: (Vec<u8>,) = sqlx::query_as("SELECT data FROM t WHERE id = $1 ORDER BY version DESC LIMIT 1")
                .bind(&id)
                .fetch_one(&raw)
                .await?;
            raw_select.push(t.elapsed());
        }
        for list in [&mut save, &mut load, &mut raw_insert, &mut raw_select] {
            list.sort();
        }
        let label = if size == 1024 { "1 KiB" } else { "1 MiB" };
        for (op, ours, base, base_name) in [
            ("save", &save, &raw_insert, "raw sqlx insert"),
            ("load", &load, &raw_select, "raw sqlx select"),
        ] {
            let (p50, p99) = (percentile(ours, 0.5), percentile(ours, 0.99));
            let (b50, b99) = (percentile(base, 0.5), percentile(base, 0.99));
            rows.push(Row {
                what: format!("state: {op} {label} (gRPC, SQLite WAL full sync)"),
                figure: format!(
                    "p50 {:.3} ms, p99 {:.3} ms",
                    p50.as_secs_f64() * 1e3,
                    p99.as_secs_f64() * 1e3
                ),
                baseline: format!(
                    "{base_name}: p50 {:.3} ms, p99 {:.3} ms",
                    b50.as_secs_f64() * 1e3,
                    b99.as_secs_f64() * 1e3
                ),
                ratio: p50.as_secs_f64() / b50.as_secs_f64(),
            });
        }
    }
    token.cancel();
    Ok(())
}

/// A recording replayed at maximum speed through the real connector and the
/// publisher into JetStream (events acknowledged per second, from the
/// connection until the last ack), beside a bare pipelined JetStream publish
/// of the same events with the same headers.
async fn replay_to_nats(rows: &mut Vec<Row>, nats_url: &str) -> anyhow::Result<()> {
    use moat_collector::config::VenueConfig;
    use moat_collector::metrics::Metrics;
    use moat_collector::publisher::{EventQueue, EventSampler, run_publisher};
    use moat_collector::replay::{Recording, ReplayServer, Speed};
    use moat_collector::status::StreamStatus;

    struct Collect(std::sync::Mutex<Vec<MarketEvent>>);
    impl moat_collector::sink::Sink for Collect {
        fn emit(&self, event: MarketEvent) {
            self.0.lock().expect("collect lock").push(event);
        }
    }

    let text = std::fs::read_to_string(fixtures().join("COINBASE.ws.28.0")).context("reading COINBASE.ws.28.0")?;
    let recording = Recording::load(&[text]);
    let symbols = recording.subscribed_symbols();
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
            kind: "coinbase".into(),
            exchange: "coinbase".into(),
            ws_url: format!("{}/", server.ws_url()),
            symbols: symbols.clone(),
            ..VenueConfig::default()
        })?;
        let metrics = Metrics::new();
        let token = CancellationToken::new();
        let queue = EventQueue::new(1_000_000, metrics.clone());
        let collect = std::sync::Arc::new(Collect(std::sync::Mutex::new(Vec::new())));
        let sink: std::sync::Arc<dyn moat_collector::sink::Sink> =
            if run == 0 { collect.clone() } else { queue.clone() };
        let publisher = tokio::spawn(run_publisher(
            js.clone(),
            queue.clone(),
            4096,
            EventSampler::new(0.0),
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

fn trade(i: u64) -> MarketEvent {
    use moat_common_types::model::{Instrument, Trade};
    MarketEvent::Trade(Trade {
        instrument: Instrument {
            exchange: "bench".into(),
            market: moat_common_types::Market::Spot,
            symbol: "BTC-USDT".into(),
            venue_symbol: "BTCUSDT".into(),
        },
        trade_id: i.to_string(),
        price: rust_decimal::Decimal::new(6_000_000 + (i % 1000) as i64, 2),
        qty: rust_decimal::Decimal::new(1 + (i % 100) as i64, 3),
        side: moat_common_types::Side::Buy,
        ts_exchange_ms: 1_700_000_000_000 + i as i64,
        ts_recv_ms: 1_700_000_000_000 + i as i64,
    })
}

/// JetStream → storage-writer → ClickHouse rows per second, beside a bare
/// `clickhouse`-crate insert of the same rows.
/// Returns the writer's rows per second draining the stream.
async fn writer(rows: &mut Vec<Row>, nats_url: &str, ch_url: &str) -> anyhow::Result<f64> {
    use moat_storage_writer::rows::TableRow;
    const N: u64 = 200_000;
    let db = format!("bench_{}", std::process::id());
    let mut config = moat_storage_writer::config::WriterConfig::default();
    config.nats.url = nats_url.into();
    config.clickhouse.url = ch_url.into();
    config.clickhouse.database = db.clone();
    moat_storage_writer::migrate(&config, true).await?;
    let client = moat_storage_writer::clickhouse_client(&config.clickhouse);

    // Baseline: the same rows inserted directly in 50k-row batches.
    let table_rows: Vec<_> = (0..N)
        .map(|i| match TableRow::from_event(&trade(i)) {
            Ok(TableRow::Trade(t)) => t,
            _ => unreachable!("a trade makes a trade row"),
        })
        .collect();
    client.query("CREATE TABLE bare AS trades").execute().await?;
    let started = Instant::now();
    for chunk in table_rows.chunks(50_000) {
        let mut insert = client.insert::<moat_storage_writer::rows::TradeRow>("bare").await?;
        for row in chunk {
            insert.write(row).await?;
        }
        insert.end().await?;
    }
    let bare = N as f64 / started.elapsed().as_secs_f64();

    // Publish first, then time the writer draining the stream.
    let nats = async_nats::connect(nats_url).await?;
    let js = async_nats::jetstream::new(nats);
    let _ = js.delete_stream("MARKET_DATA").await;
    moat_common_types::nats::ensure_stream(&js, &Default::default())
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut acks = Vec::new();
    for i in 0..N {
        let event = trade(i);
        let subject = moat_common_types::subject::Subject::for_event(&event)?.to_string();
        acks.push(
            js.publish(subject, moat_common_types::proto_conv::encode(&event).into())
                .await?,
        );
        if acks.len() == 2_000 {
            for a in acks.drain(..) {
                a.await?;
            }
        }
    }
    for a in acks {
        a.await?;
    }
    // Second baseline: JetStream alone, the same messages fetched in the
    // writer's request size and acked one by one with nothing inserted.
    let drain = {
        use async_nats::jetstream::consumer::{AckPolicy, pull};
        let consumer = js
            .get_stream("MARKET_DATA")
            .await?
            .create_consumer(pull::Config {
                durable_name: Some("bench-drain".into()),
                ack_policy: AckPolicy::Explicit,
                max_ack_pending: 200_000,
                ..Default::default()
            })
            .await?;
        drain_rate(&consumer, N).await?
    };
    let token = CancellationToken::new();
    let started = Instant::now();
    let http = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let task = tokio::spawn(moat_storage_writer::run(config, http, token.clone()));
    loop {
        let n: u64 = client.query("SELECT count() FROM trades").fetch_one().await?;
        if n >= N {
            break;
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(300),
            "writer stored only {n} of {N} rows in 300 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let ours = N as f64 / started.elapsed().as_secs_f64();
    rows.push(Row {
        what: format!("storage-writer: {N} trades JetStream → ClickHouse, acked after insert"),
        figure: format!("{ours:.0} rows/s"),
        baseline: format!("{bare:.0} rows/s (bare clickhouse-crate insert, 50k batches)"),
        ratio: ours / bare,
    });
    rows.push(Row {
        what: format!("storage-writer: the same {N} trades, beside JetStream alone"),
        figure: format!("{ours:.0} rows/s"),
        baseline: format!("{drain:.0} msgs/s (fetched 10k per request and acked, nothing inserted)"),
        ratio: ours / drain,
    });

    // End-to-end lag at a steady 5,000 events/s: publish a probe among the
    // load and poll until ClickHouse returns it. Baseline: the same poll
    // after a direct single-row insert (the floor set by ClickHouse).
    let load_token = CancellationToken::new();
    let load = {
        let (js, token) = (js.clone(), load_token.clone());
        tokio::spawn(async move {
            let mut i = N;
            let mut tick = tokio::time::interval(Duration::from_millis(10));
            while !token.is_cancelled() {
                tick.tick().await;
                for _ in 0..50 {
                    let event = trade(i);
                    i += 1;
                    let subject = "md.trade.bench.spot.BTC-USDT".to_owned();
                    if js
                        .publish(subject, moat_common_types::proto_conv::encode(&event).into())
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            }
        })
    };
    let visible = |id: String| {
        let client = client.clone();
        async move {
            loop {
                let n: u64 = client
                    .query("SELECT count() FROM trades WHERE trade_id = ?")
                    .bind(&id)
                    .fetch_one()
                    .await
                    .unwrap_or(0);
                if n > 0 {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    };
    let (mut lags, mut floors) = (Vec::new(), Vec::new());
    for k in 0..20u64 {
        let mut probe = trade(10_000_000_000 + k);
        if let MarketEvent::Trade(t) = &mut probe {
            t.trade_id = format!("probe-{k}");
        }
        let t = Instant::now();
        js.publish(
            "md.trade.bench.spot.BTC-USDT",
            moat_common_types::proto_conv::encode(&probe).into(),
        )
        .await?
        .await?;
        tokio::time::timeout(Duration::from_secs(30), visible(format!("probe-{k}"))).await?;
        lags.push(t.elapsed());

        let row = match TableRow::from_event(&probe) {
            Ok(TableRow::Trade(mut r)) => {
                r.trade_id = format!("floor-{k}");
                r
            }
            _ => unreachable!("a trade makes a trade row"),
        };
        let t = Instant::now();
        let mut insert = client.insert::<moat_storage_writer::rows::TradeRow>("trades").await?;
        insert.write(&row).await?;
        insert.end().await?;
        visible(format!("floor-{k}")).await;
        floors.push(t.elapsed());
    }
    load_token.cancel();
    load.await?;
    lags.sort();
    floors.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    rows.push(Row {
        what: "storage-writer: publish → queryable row at 5,000 events/s (flush_interval 1 s)".into(),
        figure: format!(
            "p50 {:.0} ms, p99 {:.0} ms",
            ms(percentile(&lags, 0.5)),
            ms(percentile(&lags, 0.99))
        ),
        baseline: format!(
            "p50 {:.1} ms, p99 {:.1} ms (direct single-row insert until visible)",
            ms(percentile(&floors, 0.5)),
            ms(percentile(&floors, 0.99))
        ),
        ratio: percentile(&lags, 0.5).as_secs_f64() / percentile(&floors, 0.5).as_secs_f64(),
    });
    token.cancel();
    task.await??;
    client.query(&format!("DROP DATABASE {db}")).execute().await?;
    Ok(ours)
}

/// GetPrice through the gateway (auth, rate limit, cache, audit) beside a
/// bare tonic unary call (grpc.health.v1 Check) on the same server.
async fn gateway(rows: &mut Vec<Row>, nats_url: &str) -> anyhow::Result<()> {
    use moat_proto::gateway::v1::GetPriceRequest;
    use moat_proto::gateway::v1::market_service_client::MarketServiceClient;
    const TOKEN: &str = "bench-token-0123456789abcdef";
    let token_value = TOKEN;
    let mut config = moat_gateway::config::GatewayConfig::default();
    config.nats.url = nats_url.into();
    config.auth.tokens = vec![moat_gateway::config::TokenConfig {
        strategy_id: "bench".into(),
        token: token_value.into(),
    }];
    config.limits.requests_per_second = 1e9;
    config.limits.burst = 1e9;
    let grpc = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = grpc.local_addr()?;
    let token = CancellationToken::new();
    tokio::spawn(moat_gateway::run(
        config,
        grpc,
        tokio::net::TcpListener::bind("127.0.0.1:0").await?,
        token.clone(),
    ));
    let nats = async_nats::connect(nats_url).await?;
    let channel = loop {
        if let Ok(c) = tonic::transport::Channel::from_shared(format!("http://{addr}"))?
            .connect()
            .await
        {
            break c;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let request = move || {
        let mut r = tonic::Request::new(GetPriceRequest {
            token: "BTC".into(),
            quote: "USD".into(),
            chain: None,
        });
        r.metadata_mut()
            .insert("authorization", format!("Bearer {TOKEN}").parse().expect("ascii"));
        r
    };
    // Feed one price and wait until the cache has it.
    let mut market = MarketServiceClient::new(channel.clone());
    loop {
        let event = moat_common_types::MarketEvent::Bbo(moat_common_types::model::Bbo {
            instrument: moat_common_types::Instrument {
                exchange: "bench".into(),
                market: moat_common_types::Market::Spot,
                symbol: "BTC-USDT".into(),
                venue_symbol: "BTCUSDT".into(),
            },
            sequence: 1,
            bid: moat_common_types::model::Level {
                price: 60000.into(),
                qty: 1.into(),
            },
            ask: moat_common_types::model::Level {
                price: 60001.into(),
                qty: 1.into(),
            },
            ts_exchange_ms: moat_common_types::now_ms() + 3_600_000,
            ts_recv_ms: moat_common_types::now_ms(),
        });
        nats.publish(
            "md.bbo.bench.spot.BTC-USDT",
            moat_common_types::proto_conv::encode(&event).into(),
        )
        .await?;
        if market.get_price(request()).await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    const CONCURRENCY: usize = 32;
    const PER_TASK: usize = 1_000;
    async fn drive<F, Fut>(call: F) -> (f64, Vec<Duration>)
    where
        F: Fn() -> Fut + Clone + Send + 'static,
        Fut: std::future::Future<Output = bool> + Send,
    {
        let started = Instant::now();
        let tasks: Vec<_> = (0..CONCURRENCY)
            .map(|_| {
                let call = call.clone();
                tokio::spawn(async move {
                    let mut lat = Vec::with_capacity(PER_TASK);
                    for _ in 0..PER_TASK {
                        let t = Instant::now();
                        assert!(call().await, "call failed during the benchmark");
                        lat.push(t.elapsed());
                    }
                    lat
                })
            })
            .collect();
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.expect("bench task"));
        }
        let rps = all.len() as f64 / started.elapsed().as_secs_f64();
        all.sort();
        (rps, all)
    }
    let ch = channel.clone();
    let (ours, lat) = drive(move || {
        let mut c = MarketServiceClient::new(ch.clone());
        let r = request();
        async move { c.get_price(r).await.is_ok() }
    })
    .await;
    let ch = channel.clone();
    let (bare, bare_lat) = drive(move || {
        let mut c = tonic_health::pb::health_client::HealthClient::new(ch.clone());
        async move {
            c.check(tonic_health::pb::HealthCheckRequest { service: String::new() })
                .await
                .is_ok()
        }
    })
    .await;
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    rows.push(Row {
        what: format!("gateway: GetPrice, {CONCURRENCY} concurrent clients, one connection"),
        figure: format!(
            "{ours:.0} req/s, p50 {:.3} ms, p99 {:.3} ms",
            ms(percentile(&lat, 0.5)),
            ms(percentile(&lat, 0.99))
        ),
        baseline: format!(
            "{bare:.0} req/s, p50 {:.3} ms, p99 {:.3} ms (bare tonic unary: grpc.health Check)",
            ms(percentile(&bare_lat, 0.5)),
            ms(percentile(&bare_lat, 0.99))
        ),
        ratio: ours / bare,
    });
    token.cancel();
    Ok(())
}

/// JSON-RPC through the gateway (auth, allowlist, limits, audit, proxy)
/// beside the same call straight to the upstream (ganache from tests/peers).
async fn rpc_proxy(rows: &mut Vec<Row>, nats_url: &str) -> anyhow::Result<()> {
    let ganache = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/peers/node_modules/.bin/ganache");
    if !ganache.exists() {
        eprintln!("bench: RPC proxy skipped: run `npm ci` in tests/peers for ganache");
        return Ok(());
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    /// Kills the node whichever way the benchmark ends.
    struct Node(std::process::Child);
    impl Drop for Node {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _node = Node(
        std::process::Command::new(ganache)
            .args(["--port", &port.to_string(), "--host", "127.0.0.1", "--logging.quiet"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()?,
    );
    let upstream = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let body = serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "eth_blockNumber", "params": []});
    let started = Instant::now();
    while http.post(&upstream).json(&body).send().await.is_err() {
        anyhow::ensure!(started.elapsed() < Duration::from_secs(60), "ganache did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    const TOKEN: &str = "bench-token-0123456789abcdef";
    let mut config = moat_gateway::config::GatewayConfig::default();
    config.nats.url = nats_url.into();
    config.auth.tokens = vec![moat_gateway::config::TokenConfig {
        strategy_id: "bench".into(),
        token: TOKEN.into(),
    }];
    config.limits.requests_per_second = 1e9;
    config.limits.burst = 1e9;
    config.limits.rpc_requests_per_second = 1e9;
    config.limits.rpc_burst = 1e9;
    config.rpc.chains.get_mut("ethereum").expect("default chain").upstreams = vec![upstream.clone()];
    let grpc = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let gw_http = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let gateway = format!("http://{}/rpc/ethereum", gw_http.local_addr()?);
    let token = CancellationToken::new();
    tokio::spawn(moat_gateway::run(config, grpc, gw_http, token.clone()));
    while http.post(&gateway).bearer_auth(TOKEN).json(&body).send().await.is_err() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let measure = |url: String, auth: bool| {
        let (http, body) = (http.clone(), body.clone());
        async move {
            let mut lat = Vec::new();
            for _ in 0..1_000 {
                let mut request = http.post(&url).json(&body);
                if auth {
                    request = request.bearer_auth(TOKEN);
                }
                let t = Instant::now();
                let answer: serde_json::Value = request.send().await?.json().await?;
                lat.push(t.elapsed());
                anyhow::ensure!(answer.get("result").is_some(), "no result: {answer}");
            }
            lat.sort();
            Ok::<_, anyhow::Error>(lat)
        }
    };
    let direct = measure(upstream.clone(), false).await?;
    let proxied = measure(gateway.clone(), true).await?;
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    rows.push(Row {
        what: "gateway: eth_blockNumber through POST /rpc/ethereum, sequential".into(),
        figure: format!(
            "p50 {:.3} ms, p99 {:.3} ms (adds {:.3} ms at p50)",
            ms(percentile(&proxied, 0.5)),
            ms(percentile(&proxied, 0.99)),
            ms(percentile(&proxied, 0.5)) - ms(percentile(&direct, 0.5))
        ),
        baseline: format!(
            "p50 {:.3} ms, p99 {:.3} ms (same call straight to ganache)",
            ms(percentile(&direct, 0.5)),
            ms(percentile(&direct, 0.99))
        ),
        ratio: percentile(&proxied, 0.5).as_secs_f64() / percentile(&direct, 0.5).as_secs_f64(),
    });
    match Nginx::start(port).await {
        Ok(nginx) => {
            let through_nginx = format!("http://127.0.0.1:{}/", nginx.port);
            let (nginx_rps, nginx_lat) = throughput(&http, through_nginx, None, &body).await?;
            let (ours, lat) = throughput(&http, gateway, Some(TOKEN), &body).await?;
            rows.push(Row {
                what: format!("gateway: eth_blockNumber through POST /rpc/ethereum, {RPC_CONCURRENCY} concurrent clients"),
                figure: format!(
                    "{ours:.0} req/s, p50 {:.3} ms, p99 {:.3} ms",
                    ms(percentile(&lat, 0.5)),
                    ms(percentile(&lat, 0.99))
                ),
                baseline: format!(
                    "{nginx_rps:.0} req/s, p50 {:.3} ms, p99 {:.3} ms (nginx proxy_pass to the same ganache, keep-alive)",
                    ms(percentile(&nginx_lat, 0.5)),
                    ms(percentile(&nginx_lat, 0.99))
                ),
                ratio: ours / nginx_rps,
            });
        }
        Err(error) => eprintln!("bench: nginx comparison skipped: {error}"),
    }
    token.cancel();
    Ok(())
}

const RPC_CONCURRENCY: usize = 32;

/// Requests per second and sorted latencies of `RPC_CONCURRENCY` clients
/// each posting `body` to `url` 300 times.
async fn throughput(
    http: &reqwest::Client,
    url: String,
    token: Option<&'static str>,
    body: &serde_json::Value,
) -> anyhow::Result<(f64, Vec<Duration>)> {
    let started = Instant::now();
    let tasks: Vec<_> = (0..RPC_CONCURRENCY)
        .map(|_| {
            let (http, url, body) = (http.clone(), url.clone(), body.clone());
            tokio::spawn(async move {
                let mut lat = Vec::with_capacity(300);
                for _ in 0..300 {
                    let mut request = http.post(&url).json(&body);
                    if let Some(token) = token {
                        request = request.bearer_auth(token);
                    }
                    let t = Instant::now();
                    let answer: serde_json::Value = request.send().await?.json().await?;
                    lat.push(t.elapsed());
                    anyhow::ensure!(answer.get("result").is_some(), "no result from {url}: {answer}");
                }
                Ok(lat)
            })
        })
        .collect();
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await??);
    }
    let rps = all.len() as f64 / started.elapsed().as_secs_f64();
    all.sort();
    Ok((rps, all))
}

/// nginx as a plain reverse proxy (`proxy_pass` with upstream keep-alive)
/// in a folder of its own, stopped on drop.
struct Nginx {
    child: std::process::Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Nginx {
    async fn start(upstream_port: u16) -> anyhow::Result<Nginx> {
        let binary = std::env::var("MOAT_BENCH_NGINX").unwrap_or_default();
        anyhow::ensure!(!binary.is_empty(), "nginx is not installed (apt-get install nginx)");
        let dir = tempfile::Builder::new().prefix("moat-bench-nginx-").tempdir()?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let d = dir.path().display();
        let conf = format!(
            "worker_processes auto;\n\
             error_log {d}/error.log;\n\
             pid {d}/nginx.pid;\n\
             events {{ worker_connections 1024; }}\n\
             http {{\n\
               access_log off;\n\
               client_body_temp_path {d}/body; proxy_temp_path {d}/proxy;\n\
               fastcgi_temp_path {d}/fastcgi; uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;\n\
               upstream node {{ server 127.0.0.1:{upstream_port}; keepalive 64; }}\n\
               server {{\n\
                 listen 127.0.0.1:{port};\n\
                 location / {{ proxy_pass http://node; proxy_http_version 1.1; proxy_set_header Connection \"\"; }}\n\
               }}\n\
             }}\n"
        );
        let path = dir.path().join("nginx.conf");
        std::fs::write(&path, conf)?;
        let child = std::process::Command::new(binary)
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(&path)
            .args(["-g", "daemon off;"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()?;
        let nginx = Nginx { child, port, _dir: dir };
        let started = Instant::now();
        while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
            anyhow::ensure!(started.elapsed() < Duration::from_secs(10), "nginx did not start");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(nginx)
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sustained load, reported beside the storage-writer's own rate and the
/// GetPrice p99 of a quiet feed.
async fn sustained_load(
    rows: &mut Vec<Row>,
    writer_rate: Option<f64>,
) -> anyhow::Result<(load::Outcome, load::Outcome)> {
    let hold = std::env::var("MOAT_BENCH_LOAD_SECS")
        .ok()
        .map(|s| s.parse::<u64>().context("MOAT_BENCH_LOAD_SECS is a number of seconds"))
        .transpose()?
        .unwrap_or(60);
    let outcome = load::run(Duration::from_secs(hold), moat_devstack::NATS_SYNC_INTERVAL, 0).await?;
    // The same ladder on nats-server's default sync, from 1,500 trades/s:
    // what the durability of every acknowledgement costs the whole stack.
    eprintln!("bench: sustained load again, JetStream syncing every 2 minutes");
    let unsynced = load::run(Duration::from_secs(hold), "2m", 500).await?;
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    match outcome.held() {
        Some(held) => {
            let (baseline, ratio) = writer_rate.map_or_else(
                || ("not measured (run the writer section too)".to_owned(), f64::NAN),
                |w| {
                    (
                        format!("{w:.0} rows/s (storage-writer alone draining JetStream, above)"),
                        held.rate / w,
                    )
                },
            );
            rows.push(Row {
                what: format!(
                    "whole stack: highest feed held {hold} s with lag ≤ 1 s and nothing lost (exchange → ClickHouse)"
                ),
                figure: format!(
                    "{:.0} trades/s (lag p50 {:.0} ms, max {:.0} ms)",
                    held.rate,
                    ms(held.lag_p50),
                    ms(held.lag_max)
                ),
                baseline,
                ratio,
            });
            rows.push(Row {
                what: "whole stack: GetPrice p99 during that load".into(),
                figure: format!("{:.2} ms", ms(held.price_p99)),
                baseline: format!("{:.2} ms (feed paused)", ms(outcome.idle_price_p99)),
                ratio: held.price_p99.as_secs_f64() / outcome.idle_price_p99.as_secs_f64(),
            });
        }
        None => eprintln!("bench: the stack held none of the rates tried"),
    }
    let held = |o: &load::Outcome| o.held().map_or(0.0, |s| s.rate);
    rows.push(Row {
        what: format!(
            "whole stack: highest feed held {hold} s, JetStream sync_interval {}",
            moat_devstack::NATS_SYNC_INTERVAL
        ),
        figure: format!("{:.0} trades/s", held(&outcome)),
        baseline: format!(
            "{:.0} trades/s (sync_interval 2m, nats-server's default)",
            held(&unsynced)
        ),
        ratio: held(&outcome) / held(&unsynced),
    });
    Ok((outcome, unsynced))
}

/// The benchmarks behind `cargo xtask bench` (which builds this in release
/// mode, starts NATS and ClickHouse and sets the environment below). Each
/// figure is printed beside a baseline measured in the same run.
///
/// Environment: MOAT_BENCH_NATS_URL and MOAT_BENCH_CLICKHOUSE_URL (required),
/// MOAT_BENCH_ONLY (sections: parse, replay, state, durability, storage,
/// writer, gateway, rpc, load), MOAT_BENCH_LOAD_SECS, MOAT_BENCH_NGINX,
/// MOAT_BIN_DIR, MOAT_EXCHANGE_FIXTURES.
#[derive(clap::Parser)]
#[command(name = "moat-bench", version)]
struct Args {}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let Args {} = moat_common_types::config::parse_args();
    let nats_url =
        std::env::var("MOAT_BENCH_NATS_URL").context("MOAT_BENCH_NATS_URL is not set (run cargo xtask bench)")?;
    let ch_url = std::env::var("MOAT_BENCH_CLICKHOUSE_URL").context("MOAT_BENCH_CLICKHOUSE_URL is not set")?;
    let only = std::env::var("MOAT_BENCH_ONLY").unwrap_or_default();
    let wanted = |section: &str| only.is_empty() || only.split(',').any(|s| s.trim() == section);
    let mut rows = Vec::new();
    if wanted("parse") {
        eprintln!("bench: collector parsing");
        collector_parse(&mut rows)?;
    }
    if wanted("replay") {
        eprintln!("bench: replay into NATS");
        replay_to_nats(&mut rows, &nats_url).await?;
    }
    if wanted("state") {
        eprintln!("bench: state service");
        state(&mut rows).await?;
    }
    if wanted("durability") {
        eprintln!("bench: JetStream with and without a sync before every ack");
        durability::run(&mut rows).await?;
    }
    if wanted("storage") {
        eprintln!("bench: bytes on disk, schema v2 and v3");
        storage::run(&mut rows, &ch_url).await?;
    }
    let mut writer_rate = None;
    if wanted("writer") {
        eprintln!("bench: storage-writer");
        writer_rate = Some(writer(&mut rows, &nats_url, &ch_url).await?);
    }
    if wanted("gateway") {
        eprintln!("bench: gateway");
        gateway(&mut rows, &nats_url).await?;
    }
    if wanted("rpc") {
        eprintln!("bench: RPC proxy");
        rpc_proxy(&mut rows, &nats_url).await?;
    }
    let load = if wanted("load") {
        eprintln!("bench: sustained load");
        Some(sustained_load(&mut rows, writer_rate).await?)
    } else {
        None
    };
    print(&rows, load.as_ref());
    Ok(())
}
