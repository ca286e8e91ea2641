//! The gateway's GetPrice beside a bare tonic call.

use std::time::{Duration, Instant};

use crate::gateway_process::{GatewayProcess, unlimited};
use crate::{Row, percentile};

/// Publishes a BTC quote on the live lane until the gateway behind
/// `channel` prices BTC from it.
async fn feed_until_priced(
    nats: &async_nats::Client,
    channel: &tonic::transport::Channel,
    request: &impl Fn() -> tonic::Request<moat_proto::gateway::v1::GetPriceRequest>,
) -> anyhow::Result<()> {
    use moat_proto::gateway::v1::market_service_client::MarketServiceClient;
    let mut market = MarketServiceClient::new(channel.clone());
    loop {
        let event = moat_common_types::MarketEvent::Bbo(moat_common_types::model::Bbo {
            instrument: moat_common_types::Instrument::new(
                "bench",
                moat_common_types::Market::Spot,
                "BTC-USDT",
                "BTCUSDT",
            ),
            sequence: 1,
            bid: moat_common_types::model::Level {
                price: 60000.into(),
                qty: 1.into(),
            },
            ask: moat_common_types::model::Level {
                price: 60001.into(),
                qty: 1.into(),
            },
            ts_exchange_us: moat_common_types::now_us() + 3_600_000_000,
            ts_recv_us: moat_common_types::now_us(),
        });
        nats.publish(
            "live.md.bbo.bench.spot.BTC-USDT",
            moat_common_types::proto_conv::encode(&event).into(),
        )
        .await?;
        if market.get_price(request()).await.is_ok() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Starts a gateway process for strategy `bench` with `token`, unlimited,
/// serving `tls`.
async fn start(
    nats_url: &str,
    token: &str,
    tls: moat_gateway::config::ServerTlsConfig,
) -> anyhow::Result<GatewayProcess> {
    let mut config = moat_gateway::config::GatewayConfig {
        tls,
        ..Default::default()
    };
    config.nats.url = nats_url.into();
    GatewayProcess::start(unlimited(config, token)).await
}

/// Concurrent clients of the throughput rounds.
const CONCURRENCY: usize = 32;
/// Calls per client in one round; rounds of a figure and of its baseline
/// alternate, so a machine that speeds up or slows down during the run
/// moves both sides alike.
const PER_ROUND: usize = 250;
const ROUNDS: usize = 6;

/// One round: [`CONCURRENCY`] tasks making [`PER_ROUND`] calls each; the
/// round's time and every call's latency.
async fn drive<F, Fut>(call: F) -> (Duration, Vec<Duration>)
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let started = Instant::now();
    let tasks: Vec<_> = (0..CONCURRENCY)
        .map(|_| {
            let call = call.clone();
            tokio::spawn(async move {
                let mut lat = Vec::with_capacity(PER_ROUND);
                for _ in 0..PER_ROUND {
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
    (started.elapsed(), all)
}

/// Calls of `call` at `rate` per second for `span`, evenly spaced, each
/// timed from its release: an open loop (calls start on schedule whether or
/// not earlier ones have finished). One thread sleeps until each call is
/// due (the operating system's sleep, well under a millisecond off) and
/// hands it to a task. Tokio's timers tick in whole milliseconds: paced by
/// them, the calls of one millisecond all started at its tick, a burst that
/// measured queueing the pacing made, not the server. Latencies sorted.
async fn paced<F, Fut>(call: F, rate: f64, span: Duration) -> Vec<Duration>
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let calls = (rate * span.as_secs_f64()) as usize;
    let (due_tx, mut due_rx) = tokio::sync::mpsc::unbounded_channel::<Instant>();
    let pacer = std::thread::spawn(move || {
        let every = Duration::from_secs_f64(1.0 / rate);
        let start = Instant::now();
        for i in 0..calls {
            let due = start + every.mul_f64(i as f64);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            if due_tx.send(Instant::now()).is_err() {
                break;
            }
        }
    });
    let mut tasks = Vec::with_capacity(calls);
    // Timed from the release, so a wait for a worker thread counts too.
    while let Some(released) = due_rx.recv().await {
        let call = call.clone();
        tasks.push(tokio::spawn(async move {
            assert!(call().await, "call failed during the benchmark");
            released.elapsed()
        }));
    }
    pacer.join().expect("the pacing thread");
    let mut latencies = Vec::with_capacity(calls);
    for t in tasks {
        latencies.push(t.await.expect("bench task"));
    }
    latencies.sort();
    latencies
}

/// GetPrice through the gateway (auth, rate limit, cache, audit) beside a
/// bare tonic unary call (grpc.health.v1 Check) on the same server.
pub(crate) async fn gateway(rows: &mut Vec<Row>, nats_url: &str) -> anyhow::Result<()> {
    use moat_proto::gateway::v1::GetPriceRequest;
    use moat_proto::gateway::v1::market_service_client::MarketServiceClient;
    const TOKEN: &str = "bench-token-0123456789abcdef";
    let gateway = start(nats_url, TOKEN, moat_gateway::config::ServerTlsConfig::plaintext()).await?;
    let addr = gateway.grpc;
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
    feed_until_priced(&nats, &channel, &request).await?;
    let ours_call = {
        let ch = channel.clone();
        move || {
            let mut c = MarketServiceClient::new(ch.clone());
            let r = request();
            async move { c.get_price(r).await.is_ok() }
        }
    };
    let bare_call = {
        let ch = channel.clone();
        move || {
            let mut c = tonic_health::pb::health_client::HealthClient::new(ch.clone());
            async move {
                c.check(tonic_health::pb::HealthCheckRequest { service: String::new() })
                    .await
                    .is_ok()
            }
        }
    };
    let (mut ours_time, mut lat, mut bare_time, mut bare_lat) =
        (Duration::ZERO, Vec::new(), Duration::ZERO, Vec::new());
    for _ in 0..ROUNDS {
        let (t, l) = drive(ours_call.clone()).await;
        ours_time += t;
        lat.extend(l);
        let (t, l) = drive(bare_call.clone()).await;
        bare_time += t;
        bare_lat.extend(l);
    }
    lat.sort();
    bare_lat.sort();
    let ours = lat.len() as f64 / ours_time.as_secs_f64();
    let bare = bare_lat.len() as f64 / bare_time.as_secs_f64();

    // Half the peak rate, paced, GetPrice and then the bare call at the
    // same rate: the bare call's tail is what the machine and the client
    // add to any call at that rate.
    let half = ours / 2.0;
    let paced_for = Duration::from_secs(3);
    let paced_lat = paced(ours_call.clone(), half, paced_for).await;
    let paced_bare = paced(bare_call.clone(), half, paced_for).await;
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    rows.push(Row {
        what: format!(
            "gateway: GetPrice, {CONCURRENCY} concurrent clients, one connection ({ROUNDS} rounds alternating with the baseline)"
        ),
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
    rows.push(Row {
        what: format!(
            "gateway: GetPrice paced at half its peak ({half:.0} req/s evenly spaced for {paced_for:?}), one connection"
        ),
        figure: format!(
            "p50 {:.3} ms, p99 {:.3} ms",
            ms(percentile(&paced_lat, 0.5)),
            ms(percentile(&paced_lat, 0.99))
        ),
        baseline: "1 ms (the p99 target)".to_owned(),
        ratio: ms(percentile(&paced_lat, 0.99)) / 1.0,
    });
    rows.push(Row {
        what: format!("gateway: GetPrice paced at half its peak ({half:.0} req/s for {paced_for:?}), p99 against the bare call paced alike"),
        figure: format!("p99 {:.3} ms", ms(percentile(&paced_lat, 0.99))),
        baseline: format!(
            "p50 {:.3} ms, p99 {:.3} ms (bare tonic unary at the same rate, right after)",
            ms(percentile(&paced_bare, 0.5)),
            ms(percentile(&paced_bare, 0.99))
        ),
        ratio: percentile(&paced_lat, 0.99).as_secs_f64() / percentile(&paced_bare, 0.99).as_secs_f64(),
    });
    sdk_overhead(rows, &addr.to_string(), TOKEN);
    tls_beside_plaintext(rows, &nats, nats_url, TOKEN, (addr, channel), request).await?;
    drop(gateway);
    Ok(())
}

/// GetPrice over TLS 1.3 (a second gateway process on the same NATS, with
/// certificates of a development CA) beside the plaintext gateway, in
/// alternating rounds; and a new connection's first call on each.
async fn tls_beside_plaintext(
    rows: &mut Vec<Row>,
    nats: &async_nats::Client,
    nats_url: &str,
    token_value: &str,
    (plaintext_addr, plaintext): (std::net::SocketAddr, tonic::transport::Channel),
    request: impl Fn() -> tonic::Request<moat_proto::gateway::v1::GetPriceRequest> + Clone + Send + Sync + 'static,
) -> anyhow::Result<()> {
    use moat_proto::gateway::v1::market_service_client::MarketServiceClient;
    use tonic::transport::{Certificate, Channel, ClientTlsConfig};
    let dir = tempfile::tempdir()?;
    let (certs, _) = moat_devstack::certs::ensure(dir.path()).map_err(anyhow::Error::msg)?;
    let pair = certs.pair("gateway");
    let tls = moat_gateway::config::ServerTlsConfig {
        cert: pair.cert.display().to_string(),
        key: pair.key.display().to_string(),
        ..Default::default()
    };
    let secure_gateway = start(nats_url, token_value, tls).await?;
    let addr = secure_gateway.grpc;
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(std::fs::read_to_string(&certs.ca)?))
        .domain_name("localhost");
    let endpoint = Channel::from_shared(format!("https://{addr}"))?.tls_config(tls)?;
    let secure = loop {
        if let Ok(channel) = endpoint.connect().await {
            break channel;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // The second gateway's cache fills from the same live lane.
    feed_until_priced(nats, &secure, &request).await?;
    let get_price = |channel: Channel| {
        let request = request.clone();
        move || {
            let mut market = MarketServiceClient::new(channel.clone());
            let r = request();
            async move { market.get_price(r).await.is_ok() }
        }
    };
    let (mut tls_time, mut tls_lat, mut plain_time, mut plain_lat) =
        (Duration::ZERO, Vec::new(), Duration::ZERO, Vec::new());
    for _ in 0..ROUNDS {
        let (t, l) = drive(get_price(secure.clone())).await;
        tls_time += t;
        tls_lat.extend(l);
        let (t, l) = drive(get_price(plaintext.clone())).await;
        plain_time += t;
        plain_lat.extend(l);
    }
    tls_lat.sort();
    plain_lat.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let tls_rate = tls_lat.len() as f64 / tls_time.as_secs_f64();
    let plain_rate = plain_lat.len() as f64 / plain_time.as_secs_f64();
    rows.push(Row {
        what: format!("gateway over TLS 1.3: GetPrice, {CONCURRENCY} concurrent clients, one connection ({ROUNDS} rounds alternating)"),
        figure: format!(
            "{tls_rate:.0} req/s, p50 {:.3} ms, p99 {:.3} ms",
            ms(percentile(&tls_lat, 0.5)),
            ms(percentile(&tls_lat, 0.99))
        ),
        baseline: format!(
            "{plain_rate:.0} req/s, p50 {:.3} ms, p99 {:.3} ms (the same call in plaintext)",
            ms(percentile(&plain_lat, 0.5)),
            ms(percentile(&plain_lat, 0.99))
        ),
        ratio: tls_rate / plain_rate,
    });
    // A new connection and its first call, one after another.
    const CONNECTIONS: usize = 200;
    let plain_endpoint = Channel::from_shared(format!("http://{plaintext_addr}"))?;
    let setup = |endpoint: tonic::transport::Endpoint| {
        let request = request.clone();
        async move {
            let mut lat = Vec::with_capacity(CONNECTIONS);
            for _ in 0..CONNECTIONS {
                let t = Instant::now();
                let channel = endpoint.connect().await.expect("a connection");
                MarketServiceClient::new(channel)
                    .get_price(request())
                    .await
                    .expect("the first call");
                lat.push(t.elapsed());
            }
            lat.sort();
            lat
        }
    };
    let tls_setup = setup(endpoint).await;
    let plain_setup = setup(plain_endpoint).await;
    rows.push(Row {
        what: format!("gateway over TLS 1.3: a new connection and its first GetPrice ({CONNECTIONS} in a row)"),
        figure: format!(
            "p50 {:.3} ms, p99 {:.3} ms",
            ms(percentile(&tls_setup, 0.5)),
            ms(percentile(&tls_setup, 0.99))
        ),
        baseline: format!(
            "p50 {:.3} ms, p99 {:.3} ms (plaintext)",
            ms(percentile(&plain_setup, 0.5)),
            ms(percentile(&plain_setup, 0.99))
        ),
        ratio: percentile(&tls_setup, 0.5).as_secs_f64() / percentile(&plain_setup, 0.5).as_secs_f64(),
    });
    drop(secure_gateway);
    Ok(())
}

/// The Python SDK's `get_price` beside the raw grpcio stub call it wraps
/// (`sdk/python/benchmarks/overhead.py`), against the gateway at `addr`.
fn sdk_overhead(rows: &mut Vec<Row>, addr: &str, token: &str) {
    let what = "sdk: moat.GatewayClient.get_price (Python), sequential".to_owned();
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let measured = moat_devstack::peers::ensure_sdk_venv(&root).and_then(|python| {
        let out = std::process::Command::new(python)
            .arg(root.join("sdk/python/benchmarks/overhead.py"))
            .args([addr, token, "6000"])
            .output()
            .map_err(|e| format!("running overhead.py: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "overhead.py failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        serde_json::from_slice::<serde_json::Value>(&out.stdout)
            .map_err(|e| format!("overhead.py printed no JSON: {e}"))
    });
    match measured {
        Ok(v) => {
            let f = |side: &str, key: &str| v[side][key].as_f64().unwrap_or(f64::NAN);
            rows.push(Row {
                what,
                figure: format!(
                    "{:.0} calls/s, p50 {:.0} µs, p99 {:.0} µs",
                    f("sdk", "per_second"),
                    f("sdk", "p50_us"),
                    f("sdk", "p99_us")
                ),
                baseline: format!(
                    "{:.0} calls/s, p50 {:.0} µs, p99 {:.0} µs (raw grpcio stub GetPrice, same channel settings)",
                    f("raw", "per_second"),
                    f("raw", "p50_us"),
                    f("raw", "p99_us")
                ),
                ratio: f("sdk", "per_second") / f("raw", "per_second"),
            });
        }
        Err(error) => {
            eprintln!("bench: the SDK overhead was not measured: {error}");
            rows.push(Row {
                what,
                figure: format!("not measured: {error}"),
                baseline: String::new(),
                ratio: f64::NAN,
            });
        }
    }
}
