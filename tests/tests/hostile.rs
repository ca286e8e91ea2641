//! Hostile requests to the gateway, table-driven: each gets a clear error
//! naming what was wrong, nothing panics, and the gateway keeps serving.

use std::net::SocketAddr;
use std::time::Duration;

use moat_gateway::config::{GatewayConfig, TokenConfig};
use moat_integration_tests::{eventually, listener, own_nats, scratch};
use moat_proto::gateway::v1 as pb;
use moat_proto::gateway::v1::state_service_client::StateServiceClient;
use tokio_util::sync::CancellationToken;
use tonic::Code;

const ALPHA: &str = "alpha-token-0123456789abcdef";
const BETA: &str = "beta-token-0123456789abcdef";

struct Gateway {
    grpc: SocketAddr,
    http: SocketAddr,
    token: CancellationToken,
    _nats: (moat_devstack::Nats, tempfile::TempDir),
    _dir: tempfile::TempDir,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.token.cancel();
    }
}

async fn gateway() -> Gateway {
    let nats = own_nats();
    let dir = scratch();
    let token = CancellationToken::new();
    let mut state = moat_state::config::StateConfig::default();
    state.database.url = format!("sqlite://{}", dir.path().join("state.db").display());
    let state_grpc = listener().await;
    let state_addr = state_grpc.local_addr().unwrap();
    tokio::spawn(moat_state::run(state, state_grpc, listener().await, token.clone()));
    let mut config = GatewayConfig::default();
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
    // Forged tokens below must not lock the test's own peer out.
    config.auth.max_failures = 1_000;
    config.rpc.chains.get_mut("ethereum").unwrap().upstreams = vec!["http://127.0.0.1:9".into()];
    let (grpc, http) = (listener().await, listener().await);
    let (grpc_addr, http_addr) = (grpc.local_addr().unwrap(), http.local_addr().unwrap());
    tokio::spawn(moat_gateway::run(config, grpc, http, token.clone()));
    Gateway {
        grpc: grpc_addr,
        http: http_addr,
        token,
        _nats: nats,
        _dir: dir,
    }
}

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
    let g = gateway().await;
    let http = reqwest::Client::new();
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
    let authed = |message: pb::SaveStateRequest, token: &str| {
        let mut request = tonic::Request::new(message);
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
        request
    };
    let err = state
        .save_state(authed(
            pb::SaveStateRequest {
                data: vec![7; 1_500_000],
                expected_version: 0,
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
                data: vec![7; 8 * 1024 * 1024],
                expected_version: 0,
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
            data: b"alpha's".to_vec(),
            expected_version: 0,
        },
        ALPHA,
    );
    spoofed.metadata_mut().insert("x-strategy-id", "beta".parse().unwrap());
    spoofed.metadata_mut().insert("strategy-id", "beta".parse().unwrap());
    state.save_state(spoofed).await.unwrap();
    let mut load = tonic::Request::new(pb::LoadStateRequest { version: 0 });
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
