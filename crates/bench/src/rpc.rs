//! JSON-RPC through the gateway beside the upstream itself and nginx.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

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
    config.tls = moat_gateway::config::ServerTlsConfig::plaintext();
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

pub(crate) const RPC_CONCURRENCY: usize = 32;

/// Requests per second and sorted latencies of `RPC_CONCURRENCY` clients
/// each posting `body` to `url` 300 times.
pub(crate) async fn throughput(
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
