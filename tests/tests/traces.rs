//! One trace across services, seen by a real OTLP/gRPC receiver: the
//! services run as their own processes and export over OTLP exactly as in
//! production; the receiver is a `TraceService` server in this test.

use std::process::{Command, Stdio};
use std::time::Duration;

use moat_integration_tests::otlp::Receiver;
use moat_integration_tests::{Process, TestClickHouse, bin, eventually, own_nats, scratch, unique};
use moat_proto::gateway::v1 as pb;
use moat_proto::gateway::v1::state_service_client::StateServiceClient;

fn spawn(binary: &str, args: &[&str], env: &[(String, String)], otlp: &str) -> Process {
    let child = Command::new(bin(binary))
        .args(args)
        .env("MOAT_CONFIG_DIR", "/nonexistent")
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", otlp)
        // Export batches quickly so the test does not wait for the default 5 s.
        .env("OTEL_BSP_SCHEDULE_DELAY", "200")
        .env("RUST_LOG", "warn")
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdout(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {binary}: {e}"));
    Process(child)
}

fn kv(key: &str, value: impl ToString) -> (String, String) {
    (key.to_owned(), value.to_string())
}

#[tokio::test(flavor = "multi_thread")]
async fn gateway_call_reaching_the_state_service_is_one_trace() {
    let receiver = Receiver::default();
    let otlp = receiver.start().await;
    let (nats, _nats_dir) = own_nats();
    let dir = scratch();
    let (state_port, gateway_port) = (moat_devstack::free_port(), moat_devstack::free_port());
    let _state = spawn(
        "moat-state",
        &[],
        &[
            kv("MOAT_STATE__GRPC__LISTEN", format!("127.0.0.1:{state_port}")),
            kv("MOAT_STATE__HTTP__LISTEN", "127.0.0.1:0"),
            kv("MOAT_STATE__TLS__PLAINTEXT", true),
            kv(
                "MOAT_STATE__DATABASE__URL",
                format!("sqlite://{}/state.db", dir.path().display()),
            ),
        ],
        &otlp,
    );
    let strategy = unique("traced");
    let token = "trace-test-token-0123456789";
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, format!("{strategy} {token}\n")).unwrap();
    let _gateway = spawn(
        "moat-gateway",
        &[],
        &[
            kv("MOAT_GATEWAY__GRPC__LISTEN", format!("127.0.0.1:{gateway_port}")),
            kv("MOAT_GATEWAY__HTTP__LISTEN", "127.0.0.1:0"),
            kv("MOAT_GATEWAY__NATS__URL", nats.url()),
            kv("MOAT_GATEWAY__TLS__PLAINTEXT", true),
            kv(
                "MOAT_GATEWAY__STATE__ENDPOINT",
                format!("http://127.0.0.1:{state_port}"),
            ),
            kv("MOAT_GATEWAY__AUTH__TOKENS_FILE", tokens.display()),
        ],
        &otlp,
    );

    let endpoint = format!("http://127.0.0.1:{gateway_port}");
    let channel = eventually("gateway accepting gRPC", Duration::from_secs(30), || {
        let endpoint = endpoint.clone();
        async move {
            tonic::transport::Endpoint::from_shared(endpoint)
                .ok()?
                .connect()
                .await
                .ok()
        }
    })
    .await;
    let client = StateServiceClient::new(channel);
    let saved = eventually("SaveState through the gateway", Duration::from_secs(30), || {
        let mut client = client.clone();
        async move {
            let mut request = tonic::Request::new(pb::SaveStateRequest {
                data: b"traced".to_vec().into(),
                expected_version: 0,
                ..Default::default()
            });
            request
                .metadata_mut()
                .insert("authorization", format!("Bearer {token}").parse().unwrap());
            client.save_state(request).await.ok()
        }
    })
    .await;
    assert_eq!(saved.get_ref().version, 1);

    let (parent, child) = eventually(
        "a moat-state span parented by a moat-gateway span",
        Duration::from_secs(30),
        || async { receiver.linked("moat-gateway", "moat-state") },
    )
    .await;
    assert_eq!(parent.name, "moat.gateway.v1.StateService/SaveState");
    assert_eq!(child.name, "moat.state.v1.StateStore/save");
    assert_eq!(parent.trace_id, child.trace_id);
    assert!(
        parent.parent_span_id.is_empty(),
        "the gateway span is the root of a call the client did not trace"
    );
    drop(client);
}

#[tokio::test(flavor = "multi_thread")]
async fn market_event_trace_continues_from_collector_to_storage_writer() {
    let receiver = Receiver::default();
    let otlp = receiver.start().await;
    let (nats, _nats_dir) = own_nats();
    let ch = TestClickHouse::get();
    let db = unique("traces");
    let writer_env = vec![
        kv("MOAT_STORAGE_WRITER__NATS__URL", nats.url()),
        kv("MOAT_STORAGE_WRITER__CLICKHOUSE__URL", &ch.url),
        kv("MOAT_STORAGE_WRITER__CLICKHOUSE__DATABASE", &db),
        kv("MOAT_STORAGE_WRITER__HTTP__LISTEN", "127.0.0.1:0"),
        kv("MOAT_STORAGE_WRITER__WRITER__FLUSH_INTERVAL", "100ms"),
    ];
    let status = Command::new(bin("moat-storage-writer"))
        .arg("migrate")
        .env("MOAT_CONFIG_DIR", "/nonexistent")
        .envs(writer_env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .status()
        .unwrap();
    assert!(status.success(), "migrate failed");
    let _collector = spawn(
        "moat-collector",
        &[],
        &[
            kv("MOAT_COLLECTOR__NATS__URL", nats.url()),
            kv("MOAT_COLLECTOR__PUBLISHER__TRACE_RATIO", 1),
            kv("MOAT_COLLECTOR__HTTP__LISTEN", "127.0.0.1:0"),
            kv("MOAT_COLLECTOR__SIM__ENABLED", true),
        ],
        &otlp,
    );
    let _writer = spawn("moat-storage-writer", &[], &writer_env, &otlp);

    let (parent, child) = eventually(
        "a moat-storage-writer span parented by a moat-collector span",
        Duration::from_secs(60),
        || async { receiver.linked("moat-collector", "moat-storage-writer") },
    )
    .await;
    assert!(parent.name.starts_with("publish md."), "{}", parent.name);
    assert!(child.name.starts_with("store md."), "{}", child.name);
    assert_eq!(parent.trace_id, child.trace_id);
    ch.query(&format!("DROP DATABASE {db}"));
}
