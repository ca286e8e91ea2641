//! The gateway's identities against the real binary: tokens that change
//! while it runs, per-strategy policies, refused attempts in the audit,
//! and tokens kept out of every log, audit line, trace and error.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use moat_integration_tests::otlp::Receiver;
use moat_integration_tests::{Process, authed, bin, eventually, ganache, own_nats, scratch};
use moat_proto::gateway::v1 as pb;
use moat_proto::gateway::v1::market_service_client::MarketServiceClient;
use moat_proto::gateway::v1::rpc_service_client::RpcServiceClient;
use moat_proto::gateway::v1::state_service_client::StateServiceClient;
use serde_json::{Value, json};
use tonic::Code;
use tonic::transport::Channel;

const ALPHA: &str = "alpha-secret-token-5f1c9a7e";
const BETA: &str = "beta-secret-token-93ab04d2";
const GAMMA: &str = "gamma-secret-token-0c7d1e55";

/// A gateway process with its stdout (audit lines) and stderr (logs) in files.
struct Gateway {
    _process: Process,
    grpc: u16,
    http: u16,
    stdout: PathBuf,
    stderr: PathBuf,
}

impl Gateway {
    /// Starts `moat-gateway` with `gateway.toml` from `dir` and `env`.
    fn start(dir: &Path, env: &[(&str, String)]) -> Gateway {
        let (grpc, http) = (moat_devstack::free_port(), moat_devstack::free_port());
        let (stdout, stderr) = (dir.join("gateway.stdout"), dir.join("gateway.stderr"));
        let child = Command::new(bin("moat-gateway"))
            .env("MOAT_CONFIG_DIR", dir)
            .env("MOAT_GATEWAY__GRPC__LISTEN", format!("127.0.0.1:{grpc}"))
            .env("MOAT_GATEWAY__HTTP__LISTEN", format!("127.0.0.1:{http}"))
            .env("MOAT_GATEWAY__TLS__PLAINTEXT", "true")
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdout(std::fs::File::create(&stdout).unwrap())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .expect("starting moat-gateway");
        Gateway {
            _process: Process(child),
            grpc,
            http,
            stdout,
            stderr,
        }
    }

    async fn channel(&self) -> Channel {
        let endpoint = format!("http://127.0.0.1:{}", self.grpc);
        eventually("gateway accepting gRPC", Duration::from_secs(30), || {
            let endpoint = endpoint.clone();
            async move { Channel::from_shared(endpoint).ok()?.connect().await.ok() }
        })
        .await
    }

    /// POSTs a JSON-RPC body to `/rpc/{chain}` with `token`; the HTTP
    /// status and the body as JSON.
    async fn post(&self, chain: &str, token: &str, body: Value) -> (u16, Value) {
        let response = reqwest::Client::new()
            .post(format!("http://127.0.0.1:{}/rpc/{chain}", self.http))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .expect("the gateway answers HTTP");
        let status = response.status().as_u16();
        (status, response.json().await.expect("a JSON body"))
    }

    /// `/metrics`, as Prometheus scrapes it.
    async fn metrics(&self) -> String {
        reqwest::get(format!("http://127.0.0.1:{}/metrics", self.http))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// Every audit line written so far.
    fn audit(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.stdout)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}

fn rpc_request(chain: &str, method: &str) -> pb::RpcRequest {
    pb::RpcRequest {
        chain: chain.into(),
        method: method.into(),
        params_json: String::new(),
    }
}

fn call(method: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": []})
}

/// Replaces `path` the way a mounted secret changes: a new file renamed
/// over the old one.
fn replace(path: &Path, text: &str) {
    let next = path.with_extension("next");
    std::fs::write(&next, text).unwrap();
    std::fs::rename(&next, path).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_changed_tokens_file_takes_effect_without_a_restart() {
    let node = ganache().await;
    let (nats, _nats_dir) = own_nats();
    let dir = scratch();
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, format!("alpha {ALPHA}\n")).unwrap();
    std::fs::write(
        dir.path().join("gateway.toml"),
        format!(
            "[auth]\ntokens_file = {:?}\nreload_interval = \"200ms\"\n\
             [rpc]\nhealth_check_interval = \"0s\"\n[rpc.chains.ethereum]\nupstreams = [{:?}]\n",
            tokens.display().to_string(),
            node.url
        ),
    )
    .unwrap();
    let gateway = Gateway::start(dir.path(), &[("MOAT_GATEWAY__NATS__URL", nats.url())]);
    gateway.channel().await;
    let (status, body) = gateway.post("ethereum", ALPHA, call("eth_blockNumber")).await;
    assert_eq!((status, body["result"].is_string()), (200, true), "{body}");
    let (status, body) = gateway.post("ethereum", BETA, call("eth_blockNumber")).await;
    assert_eq!(
        (status, body["error"]["message"].as_str()),
        (401, Some("invalid token"))
    );

    // A token added is accepted within seconds.
    std::fs::write(&tokens, format!("alpha {ALPHA}\nbeta {BETA}\n")).unwrap();
    let added = Instant::now();
    eventually("beta's new token accepted", Duration::from_secs(10), || async {
        let (status, _) = gateway.post("ethereum", BETA, call("eth_blockNumber")).await;
        (status == 200).then_some(())
    })
    .await;
    println!("a token added was accepted after {:?}", added.elapsed());

    // A token removed is refused, here with the file renamed over.
    replace(&tokens, format!("beta {BETA}\n").as_str());
    eventually("alpha's removed token refused", Duration::from_secs(10), || async {
        let (status, _) = gateway.post("ethereum", ALPHA, call("eth_blockNumber")).await;
        (status == 401).then_some(())
    })
    .await;
    let mut rpc = RpcServiceClient::new(gateway.channel().await);
    let refused = rpc
        .call(authed(rpc_request("ethereum", "eth_blockNumber"), ALPHA))
        .await
        .unwrap_err();
    assert_eq!(
        (refused.code(), refused.message()),
        (Code::Unauthenticated, "invalid token")
    );

    // A broken file is refused whole: the tokens read last stay.
    replace(&tokens, format!("beta {BETA}\ngamma\n").as_str());
    let reloads = eventually("the broken file's audit line", Duration::from_secs(10), || async {
        let lines = gateway.audit();
        lines
            .iter()
            .any(|l| l["event"] == "tokens_reload_failed")
            .then_some(lines)
    })
    .await
    .into_iter()
    .filter(|l| l["event"] != "gateway_request")
    .collect::<Vec<_>>();
    let (status, _) = gateway.post("ethereum", BETA, call("eth_blockNumber")).await;
    assert_eq!(status, 200, "the last good tokens stay in force");

    let file = tokens.display().to_string();
    assert_eq!(reloads.len(), 3, "{reloads:?}");
    assert_eq!(reloads[0]["event"], "tokens_reloaded");
    assert_eq!(reloads[0]["file"], file.as_str());
    assert_eq!(reloads[0]["added"], json!(["beta"]));
    assert_eq!(
        (reloads[0]["strategies"].as_u64(), reloads[0]["tokens"].as_u64()),
        (Some(2), Some(2))
    );
    assert_eq!(reloads[1]["event"], "tokens_reloaded");
    assert_eq!(reloads[1]["removed"], json!(["alpha"]));
    assert_eq!(reloads[2]["event"], "tokens_reload_failed");
    assert_eq!(
        reloads[2]["error"],
        format!("{file} line 2: expected `strategy_id token [key=value …]`").as_str()
    );
    for line in &reloads {
        assert_eq!(line["trace_id"].as_str().map(str::len), Some(32), "{line}");
    }
    let metrics = gateway.metrics().await;
    for series in [
        "moat_gateway_tokens_reloads_total{result=\"ok\"} 2",
        "moat_gateway_tokens_reloads_total{result=\"error\"} 1",
        "moat_gateway_strategies 1",
    ] {
        assert!(metrics.contains(series), "{series} in\n{metrics}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn strategy_policies_bound_chains_methods_and_rates_and_refusals_are_audited() {
    let node = ganache().await;
    let (nats, _nats_dir) = own_nats();
    let dir = scratch();
    let tokens = dir.path().join("tokens");
    std::fs::write(
        &tokens,
        format!(
            "alpha {ALPHA} chains=ethereum methods=eth_blockNumber,eth_chainId rpc_requests_per_second=0.5 rpc_burst=3\n\
             beta {BETA}\n\
             gamma {GAMMA}\n"
        ),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("gateway.toml"),
        format!(
            "[auth]\ntokens_file = {:?}\n[auth.policies.gamma]\nchains = [\"arbitrum\"]\n\
             [rpc]\nhealth_check_interval = \"0s\"\n\
             [rpc.chains.ethereum]\nupstreams = [{url:?}]\n\
             [rpc.chains.arbitrum]\nchain_id = 1\nupstreams = [{url:?}]\n",
            tokens.display().to_string(),
            url = node.url
        ),
    )
    .unwrap();
    let gateway = Gateway::start(dir.path(), &[("MOAT_GATEWAY__NATS__URL", nats.url())]);
    let mut rpc = RpcServiceClient::new(gateway.channel().await);

    // alpha: its chain and its methods only.
    let (_, body) = gateway.post("ethereum", ALPHA, call("eth_blockNumber")).await;
    assert!(body["result"].is_string(), "{body}");
    let (_, body) = gateway.post("ethereum", ALPHA, call("eth_getBalance")).await;
    assert_eq!(
        body["error"]["message"],
        "strategy 'alpha' may not use method 'eth_getBalance' (its policy allows: eth_blockNumber, eth_chainId)"
    );
    let err = rpc
        .call(authed(rpc_request("arbitrum", "eth_blockNumber"), ALPHA))
        .await
        .unwrap_err();
    assert_eq!(
        (err.code(), err.message()),
        (
            Code::PermissionDenied,
            "strategy 'alpha' may not use chain 'arbitrum' (its policy allows: ethereum)"
        )
    );
    // Its own RPC bucket: 3 calls a burst (one spent above), then refused;
    // beta keeps the gateway's default (50/s, burst 100).
    let (_, body) = gateway.post("ethereum", ALPHA, call("eth_chainId")).await;
    assert_eq!(body["result"], "0x1");
    let (_, body) = gateway.post("ethereum", ALPHA, call("eth_chainId")).await;
    assert_eq!(body["result"], "0x1");
    let (status, body) = gateway.post("ethereum", ALPHA, call("eth_chainId")).await;
    assert_eq!(status, 200);
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("Rate limited, retry after ")),
        "{body}"
    );
    for _ in 0..10 {
        let (_, body) = gateway.post("ethereum", BETA, call("eth_blockNumber")).await;
        assert!(body["result"].is_string(), "{body}");
    }

    // gamma: a policy from the config file, for a token from the tokens file.
    let (_, body) = gateway.post("arbitrum", GAMMA, call("eth_blockNumber")).await;
    assert!(body["result"].is_string(), "{body}");
    let (_, body) = gateway.post("ethereum", GAMMA, call("eth_blockNumber")).await;
    assert_eq!(
        body["error"]["message"],
        "strategy 'gamma' may not use chain 'ethereum' (its policy allows: arbitrum)"
    );

    // Refusals outside any policy are audited with what was tried too.
    let (_, body) = gateway.post("ethereum", BETA, call("debug_traceTransaction")).await;
    assert_eq!(
        body["error"]["message"],
        "method 'debug_traceTransaction' is not allowed"
    );
    let (status, _) = gateway
        .post("ethereum", "not-a-token-at-all-123", call("debug_traceTransaction"))
        .await;
    assert_eq!(status, 401);

    let audit = eventually("the refusals' audit lines", Duration::from_secs(10), || async {
        let lines = gateway.audit();
        (lines.iter().filter(|l| l["event"] == "gateway_request").count() >= 20).then_some(lines)
    })
    .await;
    let find = |strategy: Option<&str>, method: &str, status: &str| {
        audit
            .iter()
            .find(|l| l["strategy_id"].as_str() == strategy && l["rpc_method"] == method && l["status"] == status)
            .unwrap_or_else(|| panic!("no audit line of {strategy:?} {method} {status} in {audit:#?}"))
    };
    let line = find(Some("alpha"), "eth_getBalance", "permission_denied");
    assert_eq!(line["chain"], "ethereum");
    let line = find(Some("alpha"), "eth_blockNumber", "permission_denied");
    assert_eq!((&line["chain"], &line["method"]), (&json!("arbitrum"), &json!("Call")));
    find(Some("alpha"), "eth_chainId", "resource_exhausted");
    find(Some("beta"), "debug_traceTransaction", "permission_denied");
    let line = find(None, "debug_traceTransaction", "unauthenticated");
    assert_eq!(line["chain"], "ethereum");
    for line in &audit {
        let id = line["trace_id"].as_str().unwrap_or_default();
        assert!(
            id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()),
            "every line has a trace id: {line}"
        );
    }
    // A method a client made up labels no metric series.
    let metrics = gateway.metrics().await;
    assert!(metrics.contains("moat_gateway_rpc_requests_total{chain=\"ethereum\",method=\"eth_getBalance\",status=\"permission_denied\"} 1"), "{metrics}");
    assert!(!metrics.contains("debug_traceTransaction"), "{metrics}");
}

#[tokio::test(flavor = "multi_thread")]
async fn tokens_appear_in_no_log_audit_line_trace_or_error() {
    let receiver = Receiver::default();
    let otlp = receiver.start().await;
    let node = ganache().await;
    let (nats, _nats_dir) = own_nats();
    let dir = scratch();
    let state_port = moat_devstack::free_port();
    let state_err = dir.path().join("state.stderr");
    let _state = Process(
        Command::new(bin("moat-state"))
            .env("MOAT_CONFIG_DIR", "/nonexistent")
            .env("MOAT_STATE__GRPC__LISTEN", format!("127.0.0.1:{state_port}"))
            .env("MOAT_STATE__HTTP__LISTEN", "127.0.0.1:0")
            .env("MOAT_STATE__TLS__PLAINTEXT", "true")
            .env(
                "MOAT_STATE__DATABASE__URL",
                format!("sqlite://{}/state.db", dir.path().display()),
            )
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", &otlp)
            .env("OTEL_BSP_SCHEDULE_DELAY", "200")
            .env("RUST_LOG", "debug")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&state_err).unwrap())
            .spawn()
            .unwrap(),
    );
    // Secrets the gateway must never repeat: the tokens it knows, tokens
    // it refuses, and a token on a line of the file it refuses.
    let wrong = "wrong-secret-token-77aa19c3";
    let in_bad_line = "badline-secret-token-4e02f6b1";
    // An RPC provider's key in an upstream URL, which is down.
    let upstream_key = "upstream-api-key-3f9e2c71";
    let secrets = [ALPHA, BETA, wrong, in_bad_line, upstream_key];
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, format!("alpha {ALPHA}\nbeta {BETA} methods=eth_call\n")).unwrap();
    std::fs::write(
        dir.path().join("gateway.toml"),
        format!(
            "[auth]\ntokens_file = {:?}\nreload_interval = \"200ms\"\n\
             [rpc]\nhealth_check_interval = \"0s\"\n[rpc.chains.ethereum]\nupstreams = [{:?}]\n\
             [rpc.chains.base]\nupstreams = [\"http://user:{upstream_key}@127.0.0.1:1/v2/{upstream_key}?key={upstream_key}\"]\n",
            tokens.display().to_string(),
            node.url
        ),
    )
    .unwrap();
    let gateway = Gateway::start(
        dir.path(),
        &[
            ("MOAT_GATEWAY__NATS__URL", nats.url()),
            (
                "MOAT_GATEWAY__STATE__ENDPOINT",
                format!("http://127.0.0.1:{state_port}"),
            ),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", otlp.clone()),
            ("OTEL_BSP_SCHEDULE_DELAY", "200".to_owned()),
            ("RUST_LOG", "debug".to_owned()),
        ],
    );
    let channel = gateway.channel().await;
    let mut answers: Vec<String> = Vec::new();
    let mut record = |what: String| answers.push(what);

    // Every service, with good tokens, wrong ones and malformed headers.
    let mut state = StateServiceClient::new(channel.clone());
    let saved = eventually("SaveState through the gateway", Duration::from_secs(30), || {
        let mut state = state.clone();
        async move {
            state
                .save_state(authed(
                    pb::SaveStateRequest {
                        data: b"{}".to_vec().into(),
                        ..Default::default()
                    },
                    ALPHA,
                ))
                .await
                .ok()
        }
    })
    .await;
    record(format!("{saved:?}"));
    for token in [ALPHA, wrong] {
        let answer = state.load_state(authed(pb::LoadStateRequest::default(), token)).await;
        record(format!("{answer:?}"));
    }
    let mut market = MarketServiceClient::new(channel.clone());
    for token in [ALPHA, BETA, wrong] {
        let answer = market
            .get_price(authed(
                pb::GetPriceRequest {
                    token: "ETH".into(),
                    quote: "USD".into(),
                    ..Default::default()
                },
                token,
            ))
            .await;
        record(format!("{answer:?}"));
    }
    let mut x_token = tonic::Request::new(pb::GetPriceRequest::default());
    x_token.metadata_mut().insert("x-auth-token", wrong.parse().unwrap());
    record(format!("{:?}", market.get_price(x_token).await));
    let mut basic = tonic::Request::new(pb::GetPriceRequest::default());
    basic
        .metadata_mut()
        .insert("authorization", format!("Basic {wrong}").parse().unwrap());
    record(format!("{:?}", market.get_price(basic).await));
    let mut rpc = RpcServiceClient::new(channel.clone());
    for (token, method) in [
        (ALPHA, "eth_blockNumber"),
        (BETA, "eth_blockNumber"),
        (wrong, "eth_call"),
    ] {
        let answer = rpc.call(authed(rpc_request("ethereum", method), token)).await;
        record(format!("{answer:?}"));
    }
    for token in [ALPHA, BETA, wrong] {
        let (status, body) = gateway.post("ethereum", token, call("eth_blockNumber")).await;
        record(format!("{status} {body}"));
    }
    let (status, body) = gateway.post("base", ALPHA, call("eth_blockNumber")).await;
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("upstream http://127.0.0.1:1 unreachable")),
        "the dead upstream is named by host: {body}"
    );
    record(format!("{status} {body}"));
    // A refused tokens file, one of whose lines holds a token.
    replace(&tokens, &format!("alpha {ALPHA}\nbeta {in_bad_line} colour=blue\n"));
    eventually("the refused file's audit line", Duration::from_secs(10), || async {
        gateway
            .audit()
            .iter()
            .any(|l| l["event"] == "tokens_reload_failed")
            .then_some(())
    })
    .await;
    // Everything exported: spans of both services, including refused calls.
    let dumps = eventually("spans of both services", Duration::from_secs(30), || async {
        let spans = receiver.spans();
        let exported = |service: &str| spans.iter().filter(|s| s.service == service).count();
        (exported("moat-gateway") >= 12 && exported("moat-state") >= 2).then(|| receiver.dumps())
    })
    .await;

    let audit = std::fs::read_to_string(&gateway.stdout).unwrap();
    let logs = std::fs::read_to_string(&gateway.stderr).unwrap() + &std::fs::read_to_string(&state_err).unwrap();
    assert!(audit.lines().count() >= 15, "the audit saw the calls:\n{audit}");
    assert!(logs.lines().count() >= 20, "debug logs were written:\n{logs}");
    assert!(answers.iter().any(|a| a.contains("invalid token")), "{answers:#?}");
    for (what, text) in [
        ("the audit lines", audit),
        ("the logs", logs),
        ("the exported traces", dumps.join("\n")),
        ("the answers and errors", answers.join("\n")),
    ] {
        for secret in secrets {
            assert!(!text.contains(secret), "{what} hold a token ({secret}):\n{text}");
        }
    }
}
