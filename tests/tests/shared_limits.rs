//! Rate limits and lockouts hold across gateway replicas: two gateways on
//! one NATS admit a strategy's limit in total, not once each, and a peer
//! locked out at one is locked out at the other. Without NATS each replica
//! limits alone, says so in `moat_gateway_limits_shared`, and no call fails
//! because of it.

use std::time::{Duration, Instant};

use moat_devstack::{ManagedProcess, free_port, http_get};
use moat_integration_tests::stack::{EXCHANGE, Stack, StackOptions, TOKEN};
use moat_integration_tests::{authed, eventually};
use moat_proto::gateway::v1 as pb;
use moat_proto::gateway::v1::market_service_client::MarketServiceClient;
use tonic::Code;
use tonic::transport::Channel;

/// The strategy's limit: calls per second, and the burst.
const RATE: f64 = 20.0;
const BURST: f64 = 20.0;
/// How long each gateway is hammered.
const SPELL: Duration = Duration::from_secs(5);
const LOCKOUT: Duration = Duration::from_secs(2);

async fn client(port: u16) -> MarketServiceClient<Channel> {
    let channel = Channel::from_shared(format!("http://127.0.0.1:{port}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    MarketServiceClient::new(channel)
}

/// A call every gateway answers without NATS: the book of a symbol nobody
/// publishes (NOT_FOUND once admitted).
fn probe() -> pb::GetOrderBookRequest {
    pb::GetOrderBookRequest {
        exchange: EXCHANGE.to_owned(),
        symbol: "NOPE-USDT".to_owned(),
        depth: 1,
    }
}

/// Calls through every gateway at once for `SPELL`, four callers each;
/// returns how many were admitted. Anything but admitted (`NOT_FOUND`) or
/// refused by the limit (`RESOURCE_EXHAUSTED`) fails the test.
async fn hammer(ports: &[u16]) -> u64 {
    let until = Instant::now() + SPELL;
    let mut tasks = Vec::new();
    for &port in ports {
        for _ in 0..4 {
            let mut c = client(port).await;
            tasks.push(tokio::spawn(async move {
                let mut admitted = 0u64;
                while Instant::now() < until {
                    match c.get_order_book(authed(probe(), TOKEN)).await {
                        Err(status) if status.code() == Code::NotFound => admitted += 1,
                        Err(status) if status.code() == Code::ResourceExhausted => {
                            tokio::time::sleep(Duration::from_millis(2)).await;
                        }
                        other => panic!("gateway :{port} answered {other:?}"),
                    }
                }
                admitted
            }));
        }
    }
    let mut total = 0;
    for task in tasks {
        total += task.await.unwrap();
    }
    total
}

fn shared_gauge(http: &str) -> Option<f64> {
    let body = http_get(http, "/metrics", Duration::from_secs(5)).ok()?.body;
    body.lines()
        .find_map(|l| l.strip_prefix("moat_gateway_limits_shared "))
        .and_then(|v| v.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread")]
async fn two_gateways_hold_one_limit_and_limit_alone_without_nats() {
    let stack = Stack::start(StackOptions {
        overrides: vec![
            ("MOAT_GATEWAY__LIMITS__REQUESTS_PER_SECOND".to_owned(), RATE.to_string()),
            ("MOAT_GATEWAY__LIMITS__BURST".to_owned(), BURST.to_string()),
            ("MOAT_GATEWAY__AUTH__LOCKOUT".to_owned(), "2s".to_owned()),
        ],
        ..StackOptions::default()
    })
    .await;
    // A second replica of the same gateway, on ports of its own.
    let (grpc2, http2) = (free_port(), free_port());
    let http2 = format!("127.0.0.1:{http2}");
    let mut command = stack.command("gateway");
    command
        .env("MOAT_GATEWAY__GRPC__LISTEN", format!("127.0.0.1:{grpc2}"))
        .env("MOAT_GATEWAY__HTTP__LISTEN", &http2);
    let log = stack.dir.path().join("logs/gateway-2.log");
    let mut second = ManagedProcess::spawn("gateway-2", command, &log).unwrap();
    second.wait_ready(&http2, "/health", Duration::from_secs(60)).unwrap();
    let http1 = stack.http_addr("gateway");
    let grpc1 = stack.spec.ports.gateway_grpc;
    for http in [&http1, &http2] {
        eventually(
            "moat_gateway_limits_shared to be 1",
            Duration::from_secs(10),
            || async { (shared_gauge(http) == Some(1.0)).then_some(()) },
        )
        .await;
    }

    // Shared: about one limit in total. Alone, two replicas would admit
    // 2 × (RATE × 5 s + BURST) = 240.
    let one_limit = RATE * SPELL.as_secs_f64() + BURST;
    let admitted = hammer(&[grpc1, grpc2]).await as f64;
    println!("shared: {admitted} admitted through two gateways, one limit is {one_limit}");
    assert!(
        admitted <= one_limit * 1.3 && admitted >= one_limit * 0.7,
        "two gateways admitted {admitted} calls in {SPELL:?}; one limit is {one_limit}"
    );

    // A peer that fails at one gateway is locked out at the other.
    let (mut first, mut other) = (client(grpc1).await, client(grpc2).await);
    for _ in 0..10 {
        let refused = first.get_order_book(authed(probe(), "not-a-token")).await.unwrap_err();
        assert_eq!(refused.code(), Code::Unauthenticated);
    }
    eventually("the lockout to reach the other gateway", Duration::from_secs(5), || {
        let mut other = other.clone();
        async move {
            let status = other.get_order_book(authed(probe(), TOKEN)).await.unwrap_err();
            (status.code() == Code::ResourceExhausted && status.message().contains("failed authentication"))
                .then_some(())
        }
    })
    .await;
    tokio::time::sleep(LOCKOUT + Duration::from_millis(500)).await;
    assert_eq!(
        other.get_order_book(authed(probe(), TOKEN)).await.unwrap_err().code(),
        Code::NotFound,
        "the lockout ends"
    );

    // Without NATS each replica limits alone, says so, and calls go on.
    let nats = stack.pid("nats").expect("the stack's NATS runs");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(nats as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    for http in [&http1, &http2] {
        eventually(
            "moat_gateway_limits_shared to drop to 0",
            Duration::from_secs(10),
            || async { (shared_gauge(http) == Some(0.0)).then_some(()) },
        )
        .await;
    }
    let admitted = hammer(&[grpc1, grpc2]).await as f64;
    println!("alone: {admitted} admitted through two gateways without NATS");
    assert!(
        admitted >= one_limit * 1.6,
        "without NATS each gateway limits alone, so two admit about two limits; got {admitted} (one limit is {one_limit})"
    );
    drop(second);
}
