//! JSON-RPC through the gateway beside the upstream itself and nginx.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::gateway_process::{GatewayProcess, unlimited};
use crate::{Row, percentile};

/// JSON-RPC through the gateway (auth, allowlist, limits, audit, proxy)
/// beside the same call straight to the upstream (ganache from tests/peers).
pub(crate) async fn rpc_proxy(rows: &mut Vec<Row>, nats_url: &str) -> anyhow::Result<()> {
    let ganache = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/peers/node_modules/.bin/ganache");
    if !ganache.exists() {
        eprintln!("bench: RPC proxy skipped: run `npm ci` in tests/peers for ganache");
        return Ok(());
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let _node = Killed(
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
    config.tls = moat_gateway::config::ServerTlsConfig::plaintext();
    config.nats.url = nats_url.into();
    config.rpc.chains.get_mut("ethereum").expect("default chain").upstreams = vec![upstream.clone()];
    let process = GatewayProcess::start(unlimited(config, TOKEN)).await?;
    let gateway = format!("http://{}/rpc/ethereum", process.http);
    while http.post(&gateway).bearer_auth(TOKEN).json(&body).send().await.is_err() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let bare_listen = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let mut bare_process = Killed(
        std::process::Command::new(std::env::current_exe()?)
            .args(["--bare-proxy", &bare_listen.to_string(), &format!("{upstream}/")])
            .stdout(std::process::Stdio::null())
            .spawn()?,
    );
    let through_bare = format!("http://{bare_listen}/");
    let started = Instant::now();
    while http.post(&through_bare).json(&body).send().await.is_err() {
        if let Some(status) = bare_process.0.try_wait()? {
            anyhow::bail!("the bare proxy exited ({status}) at start");
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(20),
            "the bare proxy did not answer within 20 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
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
    let bare_proxied = measure(through_bare.clone(), false).await?;
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let direct_figure = format!(
        "p50 {:.3} ms, p99 {:.3} ms (same call straight to ganache)",
        ms(percentile(&direct, 0.5)),
        ms(percentile(&direct, 0.99))
    );
    for (what, through) in [
        (
            "gateway: eth_blockNumber through POST /rpc/ethereum, sequential",
            &proxied,
        ),
        (
            "bare hyper proxy (the gateway's HTTP stack alone): eth_blockNumber, sequential",
            &bare_proxied,
        ),
    ] {
        rows.push(Row {
            what: what.into(),
            figure: format!(
                "p50 {:.3} ms, p99 {:.3} ms (adds {:.3} ms at p50)",
                ms(percentile(through, 0.5)),
                ms(percentile(through, 0.99)),
                ms(percentile(through, 0.5)) - ms(percentile(&direct, 0.5))
            ),
            baseline: direct_figure.clone(),
            ratio: percentile(through, 0.5).as_secs_f64() / percentile(&direct, 0.5).as_secs_f64(),
        });
    }
    match Nginx::start(port).await {
        Ok(nginx) => {
            let through_nginx = format!("http://127.0.0.1:{}/", nginx.port);
            // Rounds of the three alternate, so a machine that speeds up or
            // slows down during the run moves them alike.
            let (mut ours, mut bare, mut nginx) = (Side::default(), Side::default(), Side::default());
            for _ in 0..ROUNDS {
                nginx.add(round(&http, &through_nginx, None, &body).await?);
                bare.add(round(&http, &through_bare, None, &body).await?);
                ours.add(round(&http, &gateway, Some(TOKEN), &body).await?);
            }
            let what = |through: &str| {
                format!(
                    "{through}: eth_blockNumber, {RPC_CONCURRENCY} concurrent clients ({ROUNDS} rounds alternating with the baseline)"
                )
            };
            let nginx_figure = format!("{} (nginx proxy_pass to the same ganache, keep-alive)", nginx.figure());
            rows.push(Row {
                what: what("gateway: POST /rpc/ethereum"),
                figure: ours.figure(),
                baseline: nginx_figure.clone(),
                ratio: ours.rate() / nginx.rate(),
            });
            rows.push(Row {
                what: what("gateway beside the HTTP stack it is built on"),
                figure: ours.figure(),
                baseline: format!(
                    "{} (a bare hyper proxy to the same ganache: no auth, JSON, limits or audit)",
                    bare.figure()
                ),
                ratio: ours.rate() / bare.rate(),
            });
            rows.push(Row {
                what: what("bare hyper proxy (the gateway's HTTP stack alone)"),
                figure: bare.figure(),
                baseline: nginx_figure,
                ratio: bare.rate() / nginx.rate(),
            });
        }
        Err(error) => eprintln!("bench: nginx comparison skipped: {error}"),
    }
    drop(process);
    Ok(())
}

const RPC_CONCURRENCY: usize = 32;
/// Calls per client in one round, and rounds per side.
const PER_ROUND: usize = 300;
const ROUNDS: usize = 6;

/// A child process killed whichever way the benchmark ends.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The rounds of one proxy: their time and every call's latency.
#[derive(Default)]
struct Side {
    time: Duration,
    latencies: Vec<Duration>,
}

impl Side {
    fn add(&mut self, (time, latencies): (Duration, Vec<Duration>)) {
        self.time += time;
        self.latencies.extend(latencies);
    }

    fn rate(&self) -> f64 {
        self.latencies.len() as f64 / self.time.as_secs_f64()
    }

    fn figure(&self) -> String {
        let mut sorted = self.latencies.clone();
        sorted.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        format!(
            "{:.0} req/s, p50 {:.3} ms, p99 {:.3} ms",
            self.rate(),
            ms(percentile(&sorted, 0.5)),
            ms(percentile(&sorted, 0.99))
        )
    }
}

/// One round: [`RPC_CONCURRENCY`] clients each posting `body` to `url`
/// [`PER_ROUND`] times; the round's time and every call's latency.
async fn round(
    http: &reqwest::Client,
    url: &str,
    token: Option<&'static str>,
    body: &serde_json::Value,
) -> anyhow::Result<(Duration, Vec<Duration>)> {
    let started = Instant::now();
    let tasks: Vec<_> = (0..RPC_CONCURRENCY)
        .map(|_| {
            let (http, url, body) = (http.clone(), url.to_owned(), body.clone());
            tokio::spawn(async move {
                let mut lat = Vec::with_capacity(PER_ROUND);
                for _ in 0..PER_ROUND {
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
    Ok((started.elapsed(), all))
}

/// nginx as a plain reverse proxy (`proxy_pass` with upstream keep-alive)
/// in a folder of its own, stopped on drop.
pub(crate) struct Nginx {
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
