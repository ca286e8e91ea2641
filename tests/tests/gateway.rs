//! The gateway against real peers: NATS, the state service, a local EVM
//! node (ganache from npm) and a real web3.py client.

use std::net::SocketAddr;
use std::process::Command;
use std::str::FromStr;
use std::time::{Duration, Instant};

use moat_common_types::model::{Bbo, Instrument, Level};
use moat_common_types::proto_conv::encode;
use moat_common_types::subject::Subject;
use moat_common_types::{Decimal, Market, MarketEvent, now_us};
use moat_gateway::config::{GatewayConfig, TokenConfig};
use moat_integration_tests::{authed, eventually, ganache, listener, own_nats, peers_dir, scratch};
use moat_proto::gateway::v1 as pb;
use moat_proto::gateway::v1::market_service_client::MarketServiceClient;
use moat_proto::gateway::v1::rpc_service_client::RpcServiceClient;
use moat_proto::gateway::v1::state_service_client::StateServiceClient;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use tonic::Code;
use tonic::transport::Channel;

const ALPHA: &str = "alpha-token-0123456789abcdef";
const BETA: &str = "beta-token-0123456789abcdef";

struct Stack {
    grpc: SocketAddr,
    http: SocketAddr,
    nats_url: String,
    token: CancellationToken,
    _nats: (moat_devstack::Nats, tempfile::TempDir),
    _dir: tempfile::TempDir,
}

impl Drop for Stack {
    fn drop(&mut self) {
        self.token.cancel();
    }
}

/// NATS, an in-process state service on SQLite and the gateway, with
/// `configure` applied to the gateway's config.
async fn stack(configure: impl FnOnce(&mut GatewayConfig)) -> Stack {
    let nats = own_nats();
    let dir = scratch();
    let token = CancellationToken::new();

    let mut state = moat_state::config::StateConfig::default();
    state.database.url = format!("sqlite://{}", dir.path().join("state.db").display());
    state.tls = moat_state::config::ServerTlsConfig::plaintext();
    let state_grpc = listener().await;
    let state_addr = state_grpc.local_addr().unwrap();
    tokio::spawn(moat_state::run(state, state_grpc, listener().await, token.clone()));

    let mut config = GatewayConfig::default();
    config.tls = moat_gateway::config::ServerTlsConfig::plaintext();
    config.nats.url = nats.0.url();
    config.state.endpoint = format!("http://{state_addr}");
    config.auth.tokens = vec![
        TokenConfig {
            strategy_id: "alpha".into(),
            token: ALPHA.into(),
        },
        TokenConfig {
            strategy_id: "beta".into(),
            token: BETA.into(),
        },
    ];
    config.rpc.timeout = std::time::Duration::from_millis(1_000);
    // These tests count the connections an upstream gets: no health probes.
    config.rpc.health_check_interval = std::time::Duration::from_millis(0);
    configure(&mut config);
    let grpc = listener().await;
    let http = listener().await;
    let (grpc_addr, http_addr) = (grpc.local_addr().unwrap(), http.local_addr().unwrap());
    tokio::spawn(moat_gateway::run(config, grpc, http, token.clone()));
    Stack {
        grpc: grpc_addr,
        http: http_addr,
        nats_url: nats.0.url(),
        token,
        _nats: nats,
        _dir: dir,
    }
}

async fn channel(addr: SocketAddr) -> Channel {
    eventually("gateway accepting", Duration::from_secs(20), || async {
        Channel::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
            .ok()
    })
    .await
}

#[tokio::test]
async fn tokens_decide_who_calls_and_failures_lock_out() {
    // The missing-token call below counts as the first of four failures.
    let s = stack(|c| c.auth.max_failures = 4.try_into().unwrap()).await;
    let mut state = StateServiceClient::new(channel(s.grpc).await);

    let err = state
        .load_state(pb::LoadStateRequest {
            version: 0,
            strategy_id: None,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    assert!(err.message().starts_with("missing token"), "{}", err.message());
    let mut x = tonic::Request::new(pb::LoadStateRequest {
        version: 0,
        strategy_id: None,
    });
    x.metadata_mut().insert("x-auth-token", ALPHA.parse().unwrap());
    assert_eq!(
        state.load_state(x).await.unwrap_err().code(),
        Code::NotFound,
        "x-auth-token works too"
    );

    for _ in 0..3 {
        let err = state
            .load_state(authed(
                pb::LoadStateRequest {
                    version: 0,
                    strategy_id: None,
                },
                "forged",
            ))
            .await
            .unwrap_err();
        assert_eq!((err.code(), err.message()), (Code::Unauthenticated, "invalid token"));
    }
    let err = state
        .load_state(authed(
            pb::LoadStateRequest {
                version: 0,
                strategy_id: None,
            },
            ALPHA,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted);
    assert!(
        err.message().contains("too many failed authentication attempts"),
        "{}",
        err.message()
    );
}

#[tokio::test]
async fn strategies_only_touch_their_own_state() {
    let s = stack(|_| {}).await;
    let mut state = StateServiceClient::new(channel(s.grpc).await);
    let saved = state
        .save_state(authed(
            pb::SaveStateRequest {
                data: b"alpha's".to_vec().into(),
                expected_version: 0,
                ..Default::default()
            },
            ALPHA,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(saved.version, 1);

    let err = state
        .load_state(authed(
            pb::LoadStateRequest {
                version: 0,
                strategy_id: None,
            },
            BETA,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "beta must not see alpha's state");
    let loaded = state
        .load_state(authed(
            pb::LoadStateRequest {
                version: 0,
                strategy_id: None,
            },
            ALPHA,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(loaded.data, &b"alpha's"[..]);

    let err = state
        .save_state(authed(
            pb::SaveStateRequest {
                data: b"stale".to_vec().into(),
                expected_version: 0,
                ..Default::default()
            },
            ALPHA,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Aborted);
    assert!(err.message().contains("current version is 1"), "{}", err.message());

    // beta deleting its (empty) state leaves alpha's alone.
    let deleted = state
        .delete_state(authed(pb::DeleteStateRequest { strategy_id: None }, BETA))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(deleted.deleted_versions, 0);
    assert!(
        state
            .load_state(authed(
                pb::LoadStateRequest {
                    version: 0,
                    strategy_id: None
                },
                ALPHA
            ))
            .await
            .is_ok()
    );
}

fn bbo(exchange: &str, symbol: &str, bid: &str, ask: &str) -> MarketEvent {
    let level = |p: &str| Level {
        price: Decimal::from_str(p).unwrap(),
        qty: Decimal::ONE,
    };
    MarketEvent::Bbo(Bbo {
        instrument: Instrument::new(exchange, Market::Spot, symbol, symbol),
        sequence: 1,
        bid: level(bid),
        ask: level(ask),
        ts_exchange_us: now_us(),
        ts_recv_us: now_us(),
    })
}

#[tokio::test]
async fn prices_come_from_live_nats_data() {
    let s = stack(|_| {}).await;
    let mut market = MarketServiceClient::new(channel(s.grpc).await);
    let nats = async_nats::connect(&s.nats_url).await.unwrap();
    let price = eventually("a price from NATS", Duration::from_secs(20), || {
        let (nats, mut market) = (nats.clone(), market.clone());
        async move {
            for event in [
                bbo("ex1", "ETH-USDT", "3000", "3001"),
                bbo("ex2", "ETH-USD", "3002", "3003"),
                bbo("ex3", "ETH-USDC", "3100", "3101"),
            ] {
                // On the live lane, as the collector publishes them.
                let subject = moat_common_types::subject::live(&Subject::for_event(&event).unwrap().to_string());
                nats.publish(subject, encode(&event).into()).await.unwrap();
            }
            nats.flush().await.unwrap();
            let request = pb::GetPriceRequest {
                token: "WETH".into(),
                quote: "USD".into(),
                chain: Some("arbitrum".into()),
            };
            let p = market.get_price(authed(request, ALPHA)).await.ok()?.into_inner();
            (p.sources.len() + p.outliers.len() == 3).then_some(p)
        }
    })
    .await;
    assert_eq!(price.price, "3001.5");
    assert_eq!(price.outliers.len(), 1);
    assert_eq!(price.outliers[0].exchange, "ex3");
    assert!(!price.stale);

    let err = market
        .get_price(authed(
            pb::GetPriceRequest {
                token: "NOPE".into(),
                quote: String::new(),
                chain: None,
            },
            ALPHA,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let _ = &mut market;
}

#[tokio::test]
async fn health_is_serving_and_reflection_lists_the_services() {
    let s = stack(|_| {}).await;
    let ch = channel(s.grpc).await;
    let mut health = tonic_health::pb::health_client::HealthClient::new(ch.clone());
    let status = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "moat.gateway.v1.MarketService".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .status;
    assert_eq!(
        status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );

    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    let mut reflection = ServerReflectionClient::new(ch);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut answers = reflection
        .server_reflection_info(futures::stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let answer = answers.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = answer.message_response else {
        panic!("no service list")
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for service in [
        "moat.gateway.v1.MarketService",
        "moat.gateway.v1.RpcService",
        "moat.gateway.v1.StateService",
        "grpc.health.v1.Health",
    ] {
        assert!(names.iter().any(|n| n == service), "{service} missing from {names:?}");
    }
}

/// A local EVM node: ganache from npm (`tests/peers`, installed by CI).
async fn post(http: SocketAddr, chain: &str, token: &str, body: Value) -> (u16, Option<String>, Value) {
    let r = reqwest::Client::new()
        .post(format!("http://{http}/rpc/{chain}"))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let retry = r.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned());
    (status, retry, r.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn web3_client_reads_and_sends_through_the_gateway() {
    let node = ganache().await;
    // The first upstream is dead: the gateway fails over to ganache.
    let dead = format!("http://127.0.0.1:{}", moat_devstack::free_port());
    let upstreams = vec![dead, node.url.clone()];
    let s = stack(move |c| c.rpc.chains.get_mut("ethereum").unwrap().upstreams = upstreams).await;
    let url = format!("http://{}/rpc/ethereum", s.http);
    channel(s.grpc).await;

    let out = tokio::task::spawn_blocking(move || {
        Command::new("python3")
            .arg(peers_dir().join("web3_client.py"))
            .args([&url, ALPHA])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "web3.py failed: {}\n{}",
        stdout,
        String::from_utf8_lossy(&out.stderr)
    );
    let result: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(result["chain_id"], 1);
    assert_eq!(result["balance_delta"], 12345);
    assert_eq!(result["tx_status"], 1);
    assert!(result["tx_block"].as_u64().unwrap() >= 1);

    // ethers (npm) through the same endpoint: reads, a mined transfer, and
    // the exact refusal of a method outside the allowlist.
    let url = format!("http://{}/rpc/ethereum", s.http);
    let out = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg(peers_dir().join("ethers_client.mjs"))
            .args([&url, BETA])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "ethers failed: {}\n{}",
        stdout,
        String::from_utf8_lossy(&out.stderr)
    );
    let result: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(result["chain_id"], 1);
    assert_eq!(result["balance_delta"], 777);
    assert_eq!(result["tx_status"], 1);
    assert_eq!(result["refused"], "method 'debug_traceTransaction' is not allowed");

    // The same proxy over gRPC.
    let mut rpc = RpcServiceClient::new(channel(s.grpc).await);
    let answer = rpc
        .call(authed(
            pb::RpcRequest {
                chain: "ethereum".into(),
                method: "eth_chainId".into(),
                params_json: String::new(),
            },
            BETA,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answer.result_json, "\"0x1\"");
}

#[tokio::test]
async fn rpc_refusals_are_exact() {
    let node = ganache().await;
    let upstream = vec![node.url.clone()];
    let s = stack(move |c| {
        c.rpc.chains.get_mut("ethereum").unwrap().upstreams = upstream;
        c.limits.rpc_requests_per_second = 1.0;
        c.limits.rpc_burst = 3.0;
    })
    .await;
    channel(s.grpc).await;

    let call = |method: &str| json!({"jsonrpc": "2.0", "id": 7, "method": method, "params": []});
    let (status, _, body) = post(s.http, "ethereum", ALPHA, call("debug_traceTransaction")).await;
    assert_eq!(status, 200);
    assert_eq!(
        body["error"]["message"],
        "method 'debug_traceTransaction' is not allowed"
    );
    assert_eq!(body["id"], 7);

    let (status, _, body) = post(s.http, "xyz", ALPHA, call("eth_blockNumber")).await;
    assert_eq!(status, 412);
    assert_eq!(body["error"]["message"], "Chain 'xyz' is not configured");

    let mut rpc = RpcServiceClient::new(channel(s.grpc).await);
    let err = rpc
        .call(authed(
            pb::RpcRequest {
                chain: "ethereum".into(),
                method: "debug_traceTransaction".into(),
                params_json: String::new(),
            },
            BETA,
        ))
        .await
        .unwrap_err();
    assert_eq!(
        (err.code(), err.message()),
        (Code::PermissionDenied, "method 'debug_traceTransaction' is not allowed")
    );
    let err = rpc
        .call(authed(
            pb::RpcRequest {
                chain: "xyz".into(),
                method: "eth_blockNumber".into(),
                params_json: String::new(),
            },
            BETA,
        ))
        .await
        .unwrap_err();
    assert_eq!(
        (err.code(), err.message()),
        (Code::FailedPrecondition, "Chain 'xyz' is not configured")
    );

    // The per-chain bucket holds 3; the next call is refused with a retry time.
    let mut refused = None;
    for _ in 0..5 {
        let (status, retry, body) = post(s.http, "ethereum", ALPHA, call("eth_blockNumber")).await;
        if status == 200 && body["error"]["code"] == -32005 {
            refused = Some((retry, body));
            break;
        }
    }
    let (_, body) = refused.expect("rate limit never fired");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("Rate limited, retry after"),
        "{body}"
    );

    let (status, _, body) = post(s.http, "ethereum", "forged-token", call("eth_blockNumber")).await;
    assert_eq!(status, 401);
    assert_eq!(body["error"]["message"], "invalid token");
}

#[tokio::test]
async fn black_holed_upstream_fails_within_the_timeout() {
    // Accepts connections and never answers.
    let hole = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let upstream = vec![format!("http://{}", hole.local_addr().unwrap())];
    let s = stack(move |c| {
        c.rpc.chains.get_mut("ethereum").unwrap().upstreams = upstream;
        c.rpc.timeout = std::time::Duration::from_millis(500);
        c.rpc.max_attempts = 1;
    })
    .await;
    channel(s.grpc).await;
    let started = Instant::now();
    let (_, _, body) = post(
        s.http,
        "ethereum",
        ALPHA,
        json!({"jsonrpc":"2.0","id":1,"method":"eth_blockNumber","params":[]}),
    )
    .await;
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_millis(2_000), "took {elapsed:?}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("did not answer within 500 ms"),
        "{body}"
    );
    drop(hole);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cancelled_client_call_aborts_the_upstream_request() {
    use std::io::Read;
    // An upstream that takes the request and never answers; it notes when
    // the gateway hangs up on it.
    let hole = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let upstream = vec![format!("http://{}", hole.local_addr().unwrap())];
    let (closed_tx, closed_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let (mut conn, _) = hole.accept().unwrap();
        let mut buf = [0u8; 4096];
        while conn.read(&mut buf).map(|n| n > 0).unwrap_or(false) {}
        let _ = closed_tx.send(Instant::now());
    });
    let s = stack(move |c| {
        c.rpc.chains.get_mut("ethereum").unwrap().upstreams = upstream;
        c.rpc.timeout = std::time::Duration::from_millis(20_000);
        c.rpc.max_attempts = 1;
    })
    .await;
    channel(s.grpc).await;

    let client = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let err = client
        .post(format!("http://{}/rpc/ethereum", s.http))
        .bearer_auth(ALPHA)
        .json(&json!({"jsonrpc":"2.0","id":1,"method":"eth_blockNumber","params":[]}))
        .send()
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err}");
    let cancelled_at = Instant::now();
    let closed_at = tokio::task::spawn_blocking(move || closed_rx.recv_timeout(Duration::from_secs(5)))
        .await
        .unwrap()
        .expect("the upstream request was not aborted within 5 s");
    assert!(closed_at.duration_since(cancelled_at) < Duration::from_secs(2));

    // The call is recorded as cancelled by the client, not as an upstream failure.
    let metrics = reqwest::get(format!("http://{}/metrics", s.http))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(r#"moat_gateway_requests_total{method="rpc",service="http",status="cancelled"} 1"#),
        "{metrics}"
    );
}

/// Two transfers signed by eth-account (web3.py) with ganache's deterministic
/// key 0, nonces 0 and 1, and the hashes eth-account reported for them.
const SIGNED: [(&str, &str); 2] = [
    (
        "0xf86580847735940082520894ffcf8fdee72ac11b5c542428b35eef5769c409f08230398026a0c113452f1e8ecfbcacf03bdaf1ea35379f82139933d445fbfa37bf2d82fee399a07c3f1c14adafee08b9ceab44ea59de8c2824ba3ff26e638f8c62629a4dc42c3a",
        "0x881322762b4c6339da553ba19fe4702ef327b3fe452243761970a04a2102840a",
    ),
    (
        "0xf86501847735940082520894ffcf8fdee72ac11b5c542428b35eef5769c409f08230398025a0788d6dae7b993e8fc1f5e2af6464df93da10e39b19456804b4bd5cf430a300f1a0595d204ce39a62bc8f42ba32ffe87677dca524681cd4d7bf33cbb43dcea7b822",
        "0x4870d65b4282e8b5e50635f7472108823c6c03453fe23959a965ea213cad3cf1",
    ),
];

/// An upstream answering `eth_sendRawTransaction` the way geth does when a
/// client resends: "already known" while the first copy is pending, "nonce
/// too low" once it is mined. ganache re-executes a resent transaction
/// instead (it bumps the nonce), so it cannot stand in for this case.
async fn resend_upstream(
    known: &'static str,
    mined: &'static str,
) -> (String, std::sync::Arc<std::sync::atomic::AtomicU32>) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};
    let sends = Arc::new(AtomicU32::new(0));
    let counter = sends.clone();
    let app = axum::Router::new().route(
        "/",
        axum::routing::post(move |axum::Json(request): axum::Json<Value>| {
            let counter = counter.clone();
            async move {
                let id = request["id"].clone();
                let param = request["params"][0].as_str().unwrap_or_default().to_owned();
                let answer = match request["method"].as_str().unwrap_or_default() {
                    "eth_sendRawTransaction" => {
                        counter.fetch_add(1, Ordering::SeqCst);
                        let message = if param == known {
                            "already known"
                        } else {
                            "nonce too low: next nonce 2, tx nonce 1"
                        };
                        json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32000, "message": message}})
                    }
                    // Only the mined transaction is found by hash.
                    "eth_getTransactionByHash" if param == mined => {
                        json!({"jsonrpc": "2.0", "id": id, "result": {"hash": mined, "blockNumber": "0x1"}})
                    }
                    "eth_getTransactionByHash" => json!({"jsonrpc": "2.0", "id": id, "result": null}),
                    _ => json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32601, "message": "unexpected"}}),
                };
                axum::Json(answer)
            }
        }),
    );
    let listener = listener().await;
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, sends)
}

#[tokio::test]
async fn a_resent_transaction_gets_its_hash_not_a_second_failure() {
    let [(known_raw, known_hash), (mined_raw, mined_hash)] = SIGNED;
    let (upstream, sends) = resend_upstream(known_raw, mined_hash).await;
    let s = stack(move |c| c.rpc.chains.get_mut("ethereum").unwrap().upstreams = vec![upstream]).await;
    channel(s.grpc).await;
    let send =
        |raw: &str, id: u32| json!({"jsonrpc": "2.0", "id": id, "method": "eth_sendRawTransaction", "params": [raw]});

    // Pending copy: "already known" means the node holds this very transaction.
    let (status, _, answer) = post(s.http, "ethereum", ALPHA, send(known_raw, 1)).await;
    assert_eq!(status, 200);
    assert_eq!(answer["result"], known_hash, "{answer}");
    assert_eq!(answer["id"], 1);

    // Mined copy: "nonce too low", and the node finds the transaction by hash.
    let (_, _, answer) = post(s.http, "ethereum", ALPHA, send(mined_raw, 2)).await;
    assert_eq!(answer["result"], mined_hash, "{answer}");

    // A different transaction with a used nonce is a real failure, passed through.
    let (_, _, answer) = post(
        s.http,
        "ethereum",
        ALPHA,
        send(known_raw.replace("26a0c1", "26a0c2").as_str(), 3),
    )
    .await;
    assert!(answer.get("result").is_none(), "{answer}");
    assert_eq!(answer["error"]["message"], "nonce too low: next nonce 2, tx nonce 1");
    // Each send reached the node once: nothing was retried.
    assert_eq!(sends.load(std::sync::atomic::Ordering::SeqCst), 3);
}

// Hostile requests, table-driven: each gets a clear error naming what was
// wrong, nothing panics, and the gateway keeps serving.

/// One hostile HTTP request and what the answer must be.
struct Case {
    what: &'static str,
    chain: &'static str,
    token: Option<&'static str>,
    body: Vec<u8>,
    status: u16,
    says: &'static str,
}

fn nested(depth: usize) -> Vec<u8> {
    let mut body = "[".repeat(depth);
    body.push_str(&"]".repeat(depth));
    body.into_bytes()
}

fn call(method: &str) -> Vec<u8> {
    format!(r#"{{"jsonrpc":"2.0","id":1,"method":"{method}","params":[]}}"#).into_bytes()
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_requests_get_clear_errors_and_the_gateway_keeps_serving() {
    let g = stack(|c| {
        // Forged tokens below must not lock the test's own peer out.
        c.auth.max_failures = 1_000.try_into().unwrap();
        c.rpc.chains.get_mut("ethereum").unwrap().upstreams = vec!["http://127.0.0.1:9".into()];
    })
    .await;
    // A connection per case: after answering 413 before reading the whole
    // body the server closes the connection, and a pooled client could
    // send the next case on it before it sees that.
    let http = reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap();
    let url = |chain: &str| format!("http://{}/rpc/{chain}", g.http);
    eventually("gateway HTTP up", Duration::from_secs(20), || async {
        http.get(format!("http://{}/health/live", g.http)).send().await.ok()
    })
    .await;

    let batch = |n: usize| {
        let one = String::from_utf8(call("eth_blockNumber")).unwrap();
        format!("[{}]", vec![one; n].join(",")).into_bytes()
    };
    let cases = vec![
        Case {
            what: "body over the 1 MiB limit",
            chain: "ethereum",
            token: Some(ALPHA),
            body: vec![b' '; 2 * 1024 * 1024],
            status: 413,
            says: "length limit exceeded",
        },
        Case {
            what: "JSON nested 100,000 deep",
            chain: "ethereum",
            token: Some(ALPHA),
            body: nested(100_000),
            status: 400,
            says: "body is not JSON: recursion limit exceeded",
        },
        Case {
            what: "invalid UTF-8",
            chain: "ethereum",
            token: Some(ALPHA),
            body: vec![b'{', 0xff, 0xfe, b'}'],
            status: 400,
            says: "body is not UTF-8",
        },
        Case {
            what: "not JSON at all",
            chain: "ethereum",
            token: Some(ALPHA),
            body: b"GET / HTTP/1.1".to_vec(),
            status: 400,
            says: "body is not JSON",
        },
        Case {
            what: "unknown chain",
            chain: "xyz",
            token: Some(ALPHA),
            body: call("eth_blockNumber"),
            status: 412,
            says: "Chain 'xyz' is not configured",
        },
        Case {
            what: "chain name with path tricks",
            chain: "..%2F..%2Fetc",
            token: Some(ALPHA),
            body: call("eth_blockNumber"),
            status: 412,
            says: "is not configured",
        },
        Case {
            what: "method outside the allowlist",
            chain: "ethereum",
            token: Some(ALPHA),
            body: call("debug_traceTransaction"),
            status: 200,
            says: "method 'debug_traceTransaction' is not allowed",
        },
        Case {
            what: "batch of 10,000",
            chain: "ethereum",
            token: Some(ALPHA),
            body: batch(10_000),
            status: 400,
            says: "batch of 10000 calls: expected 1 to 100",
        },
        Case {
            what: "empty batch",
            chain: "ethereum",
            token: Some(ALPHA),
            body: b"[]".to_vec(),
            status: 400,
            says: "batch of 0 calls",
        },
        Case {
            what: "request without a method",
            chain: "ethereum",
            token: Some(ALPHA),
            body: br#"{"jsonrpc":"2.0","id":1}"#.to_vec(),
            status: 200,
            // As the JSON body spells it.
            says: r#"request has no \"method\" string"#,
        },
        Case {
            what: "missing token",
            chain: "ethereum",
            token: None,
            body: call("eth_blockNumber"),
            status: 401,
            says: "missing token",
        },
        Case {
            what: "forged token",
            chain: "ethereum",
            token: Some("alpha-token-0123456789abcdeX"),
            body: call("eth_blockNumber"),
            status: 401,
            says: "invalid token",
        },
    ];
    for case in &cases {
        let mut request = http.post(url(case.chain)).body(case.body.clone());
        if let Some(token) = case.token {
            request = request.bearer_auth(token);
        }
        let response = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("{}: no answer: {e}", case.what));
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        assert_eq!(status, case.status, "{}: {text}", case.what);
        assert!(
            text.contains(case.says),
            "{}: expected {:?} in {text}",
            case.what,
            case.says
        );
    }

    // gRPC: a state over the limit, and another strategy's id in metadata.
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", g.grpc))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut state = StateServiceClient::new(channel);
    let err = state
        .save_state(authed(
            pb::SaveStateRequest {
                data: vec![7; 1_500_000].into(),
                expected_version: 0,
                ..Default::default()
            },
            ALPHA,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(
        err.message().contains("1500000"),
        "the size is named: {}",
        err.message()
    );
    let err = state
        .save_state(authed(
            pb::SaveStateRequest {
                data: vec![7; 8 * 1024 * 1024].into(),
                expected_version: 0,
                ..Default::default()
            },
            ALPHA,
        ))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err.code(),
            Code::OutOfRange | Code::ResourceExhausted | Code::InvalidArgument
        ),
        "{err:?}"
    );
    let mut spoofed = authed(
        pb::SaveStateRequest {
            data: b"alpha's".to_vec().into(),
            expected_version: 0,
            ..Default::default()
        },
        ALPHA,
    );
    spoofed.metadata_mut().insert("x-strategy-id", "beta".parse().unwrap());
    spoofed.metadata_mut().insert("strategy-id", "beta".parse().unwrap());
    state.save_state(spoofed).await.unwrap();
    let mut load = tonic::Request::new(pb::LoadStateRequest {
        version: 0,
        strategy_id: None,
    });
    load.metadata_mut()
        .insert("authorization", format!("Bearer {BETA}").parse().unwrap());
    let err = state.load_state(load).await.unwrap_err();
    assert_eq!(
        err.code(),
        Code::NotFound,
        "beta must not see what alpha saved: {err:?}"
    );

    // Still serving, over both surfaces.
    let mut health = tonic_health::pb::health_client::HealthClient::new(
        tonic::transport::Channel::from_shared(format!("http://{}", g.grpc))
            .unwrap()
            .connect()
            .await
            .unwrap(),
    );
    let serving = health
        .check(tonic_health::pb::HealthCheckRequest { service: String::new() })
        .await
        .unwrap();
    assert_eq!(serving.get_ref().status, 1, "SERVING");
    let live = http.get(format!("http://{}/health/live", g.http)).send().await.unwrap();
    assert_eq!(live.status(), 200);
}
