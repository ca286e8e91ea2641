//! The gateway over TLS, as a process with certificates from the
//! development CA: real clients (tonic, openssl), mutual TLS for
//! strategies, certificates replaced while it runs, and every hostile
//! input at the TLS layer refused with a metric while it keeps serving.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use moat_devstack::certs::{Authority, Certs, Spec};
use moat_integration_tests::stack::{Stack, StackOptions, TOKEN as TOKEN_E2E, check, doctor};
use moat_integration_tests::{Process, authed, bin, eventually, own_nats, scratch};
use moat_proto::gateway::v1 as pb;
use moat_proto::gateway::v1::market_service_client::MarketServiceClient;
use moat_proto::state::v1::state_store_client::StateStoreClient;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tonic::Code;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

const TOKEN: &str = "tls-test-token-0123456789";

struct Gateway {
    _process: Process,
    grpc: u16,
    http: u16,
    ca: String,
}

/// Starts the gateway serving `gateway.pem` of `certs`, with `client_ca`
/// for mutual TLS when given.
fn start(dir: &Path, certs: &Certs, client_ca: Option<&Path>, nats: &str) -> Gateway {
    let (grpc, http) = (moat_devstack::free_port(), moat_devstack::free_port());
    let tokens = dir.join("tokens");
    std::fs::write(&tokens, format!("dev {TOKEN}\n")).unwrap();
    let pair = certs.pair("gateway");
    let mut command = Command::new(bin("moat-gateway"));
    command
        .env("MOAT_CONFIG_DIR", "/nonexistent")
        .env("MOAT_GATEWAY__GRPC__LISTEN", format!("127.0.0.1:{grpc}"))
        .env("MOAT_GATEWAY__HTTP__LISTEN", format!("127.0.0.1:{http}"))
        .env("MOAT_GATEWAY__NATS__URL", nats)
        .env("MOAT_GATEWAY__AUTH__TOKENS_FILE", &tokens)
        .env("MOAT_GATEWAY__TLS__CERT", &pair.cert)
        .env("MOAT_GATEWAY__TLS__KEY", &pair.key)
        .env("MOAT_GATEWAY__TLS__RELOAD_INTERVAL", "200ms")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(dir.join("gateway.log")).unwrap());
    if let Some(ca) = client_ca {
        command.env("MOAT_GATEWAY__TLS__CLIENT_CA", ca);
    }
    Gateway {
        _process: Process(command.spawn().expect("starting moat-gateway")),
        grpc,
        http,
        ca: std::fs::read_to_string(&certs.ca).unwrap(),
    }
}

impl Gateway {
    async fn channel(&self, identity: Option<Identity>) -> Channel {
        let mut tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&self.ca))
            .domain_name("localhost");
        if let Some(identity) = identity {
            tls = tls.identity(identity);
        }
        let endpoint = format!("https://127.0.0.1:{}", self.grpc);
        eventually("the gateway accepting TLS", Duration::from_secs(30), || {
            let (endpoint, tls) = (endpoint.clone(), tls.clone());
            async move {
                Channel::from_shared(endpoint)
                    .ok()?
                    .tls_config(tls)
                    .ok()?
                    .connect()
                    .await
                    .ok()
            }
        })
        .await
    }

    /// `/metrics` over TLS, as Prometheus would scrape it.
    async fn metrics(&self) -> String {
        let client = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(self.ca.as_bytes()).unwrap())
            .build()
            .unwrap();
        client
            .get(format!("https://localhost:{}/metrics", self.http))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    async fn failures(&self, listener: &str, reason: &str) -> u64 {
        let series = format!("moat_tls_handshake_failures_total{{listener=\"{listener}\",reason=\"{reason}\"}} ");
        self.metrics()
            .await
            .lines()
            .find_map(|l| l.strip_prefix(&series).and_then(|v| v.parse().ok()))
            .unwrap_or(0)
    }
}

/// `openssl s_client` (when the machine has it) reaches port `port` over
/// TLS 1.3 and verifies its certificate against `ca`.
fn openssl_says_tls13(port: u16, ca: &Path) {
    let Ok(out) = Command::new("openssl")
        .args(["s_client", "-connect", &format!("127.0.0.1:{port}"), "-CAfile"])
        .arg(ca)
        .args(["-servername", "localhost", "-brief"])
        .stdin(std::process::Stdio::null())
        .output()
    else {
        println!("no openssl here: the rustls client checks TLS 1.3 instead");
        return;
    };
    let text = String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("Protocol version: TLSv1.3"), "openssl s_client:\n{text}");
    assert!(text.contains("Verification: OK"), "openssl s_client:\n{text}");
}

/// A rustls client trusting `ca`, presenting `identity` when given.
fn client_config(ca: &str, identity: Option<(&str, &str)>) -> Arc<rustls::ClientConfig> {
    let provider = moat_common_types::tls::provider();
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let mut config = match identity {
        Some((cert, key)) => builder
            .with_client_auth_cert(
                CertificateDer::pem_slice_iter(cert.as_bytes())
                    .map(Result::unwrap)
                    .collect(),
                PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    Arc::new(config)
}

/// A TLS handshake with port `port` under `config`, asking for `name`; a
/// TLS 1.3 server reports a refused client certificate only on the first
/// read, so one is attempted.
async fn handshake(port: u16, config: Arc<rustls::ClientConfig>, name: &str) -> Result<String, String> {
    let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let connector = tokio_rustls::TlsConnector::from(config);
    let mut stream = connector
        .connect(ServerName::try_from(name.to_owned()).unwrap(), tcp)
        .await
        .map_err(|e| e.to_string())?;
    let version = format!("{:?}", stream.get_ref().1.protocol_version());
    stream
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .map_err(|e| e.to_string())?;
    let mut buf = [0u8; 64];
    match tokio::time::timeout(Duration::from_secs(2), stream.read(&mut buf)).await {
        Ok(Err(e)) => Err(e.to_string()),
        Ok(Ok(0)) => Err("closed".to_owned()),
        _ => Ok(version),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_gateway_serves_tls_and_refuses_what_is_not() {
    let (nats, _nats_dir) = own_nats();
    let dir = scratch();
    let (certs, _) = moat_devstack::certs::ensure(&dir.path().join("tls")).unwrap();
    let gateway = start(dir.path(), &certs, None, &nats.url());

    // A real client with the development CA calls it, over TLS 1.3.
    let channel = gateway.channel(None).await;
    let mut market = MarketServiceClient::new(channel.clone());
    let price = |token: &'static str| pb::GetPriceRequest {
        token: token.into(),
        quote: "USD".into(),
        ..Default::default()
    };
    let err = market.get_price(authed(price("ETH"), TOKEN)).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "authenticated, no price yet: {err:?}");
    let rustls_client = client_config(&gateway.ca, None);
    assert_eq!(
        handshake(gateway.grpc, rustls_client.clone(), "localhost")
            .await
            .as_deref(),
        Ok("Some(TLSv1_3)")
    );
    openssl_says_tls13(gateway.grpc, &certs.ca);

    // A plaintext HTTP/1 client is told, in HTTP, that the port speaks TLS.
    let mut plain = TcpStream::connect(("127.0.0.1", gateway.http)).await.unwrap();
    plain
        .write_all(b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    plain.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("this port speaks TLS"), "{answer}");
    // A plaintext gRPC client is refused.
    let plaintext_grpc = Channel::from_shared(format!("http://127.0.0.1:{}", gateway.grpc)).unwrap();
    let refused = match plaintext_grpc.connect().await {
        Ok(channel) => {
            let status = MarketServiceClient::new(channel)
                .get_price(authed(price("ETH"), TOKEN))
                .await
                .unwrap_err();
            println!("a plaintext gRPC client sees: {status:?}");
            status.code()
        }
        Err(error) => {
            println!("a plaintext gRPC client sees: {error:?}");
            Code::Unavailable
        }
    };
    assert_ne!(refused, Code::NotFound, "a plaintext call must not get through");
    // Bytes that are not TLS at all.
    let mut garbage = TcpStream::connect(("127.0.0.1", gateway.grpc)).await.unwrap();
    garbage.write_all(&[0x42; 64]).await.unwrap();
    let mut sink = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), garbage.read_to_end(&mut sink)).await;
    assert!(sink.is_empty(), "garbage gets no answer but a close");
    // A name the certificate does not hold.
    let wrong = handshake(gateway.grpc, rustls_client.clone(), "evil.example").await;
    assert!(wrong.is_err(), "{wrong:?}");
    // A client that does not trust the gateway's CA refuses it.
    let other = Authority::new("another CA", 30).unwrap();
    let untrusting = handshake(gateway.grpc, client_config(&other.cert_pem, None), "localhost").await;
    assert!(untrusting.unwrap_err().contains("UnknownIssuer"));

    for (listener, reason) in [
        ("http", "plaintext_http1"),
        ("grpc", "not_tls"),
        ("grpc", "wrong_sni"),
        ("grpc", "client_refused_server_cert"),
    ] {
        assert_eq!(gateway.failures(listener, reason).await, 1, "{listener} {reason}");
    }
    // A gRPC client may try again once it is sent away.
    assert!(gateway.failures("grpc", "plaintext_http2").await >= 1);
    // Through all that, the first connection still serves.
    let err = market.get_price(authed(price("BTC"), TOKEN)).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");

    // A new certificate is taken in while it runs: new handshakes get it,
    // the open connection keeps working.
    let before = std::fs::read(certs.pair("gateway").cert).unwrap();
    std::fs::remove_file(certs.pair("gateway").cert).unwrap();
    moat_devstack::certs::ensure(&certs.dir).unwrap();
    let after = std::fs::read(certs.pair("gateway").cert).unwrap();
    assert_ne!(before, after);
    let served = eventually("the new certificate served", Duration::from_secs(10), || {
        let config = rustls_client.clone();
        let port = gateway.grpc;
        let after = after.clone();
        async move {
            let tcp = TcpStream::connect(("127.0.0.1", port)).await.ok()?;
            let stream = tokio_rustls::TlsConnector::from(config)
                .connect(ServerName::try_from("localhost").unwrap(), tcp)
                .await
                .ok()?;
            let leaf = stream.get_ref().1.peer_certificates()?.first()?.to_vec();
            let expected = CertificateDer::from_pem_slice(&after).ok()?.to_vec();
            (leaf == expected).then_some(())
        }
    })
    .await;
    let () = served;
    let err = market.get_price(authed(price("SOL"), TOKEN)).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "the open connection still serves: {err:?}");
    assert!(
        gateway
            .metrics()
            .await
            .contains("moat_tls_reloads_total{listener=\"grpc\",result=\"ok\"} 1"),
        "the reload is counted"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn with_a_client_ca_strategies_need_a_certificate_it_signed() {
    let (nats, _nats_dir) = own_nats();
    let dir = scratch();
    let (certs, _) = moat_devstack::certs::ensure(&dir.path().join("tls")).unwrap();
    let gateway = start(dir.path(), &certs, Some(&certs.ca), &nats.url());
    let read = |p: &Path| std::fs::read_to_string(p).unwrap();
    let dev = certs.pair("dev");
    let identity = Identity::from_pem(read(&dev.cert), read(&dev.key));
    let price = || pb::GetPriceRequest {
        token: "ETH".into(),
        quote: "USD".into(),
        ..Default::default()
    };

    // With the strategy's certificate: in.
    let mut market = MarketServiceClient::new(gateway.channel(Some(identity)).await);
    let err = market.get_price(authed(price(), TOKEN)).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    // Without one: refused, saying why; /metrics stays open to probes.
    let mut anonymous = MarketServiceClient::new(gateway.channel(None).await);
    let err = anonymous.get_price(authed(price(), TOKEN)).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    assert!(
        err.message().starts_with("moat-gateway requires a client certificate"),
        "{}",
        err.message()
    );
    // A certificate from another CA, and an expired one of the right CA:
    // refused at the handshake.
    let other = Authority::new("another CA", 30).unwrap();
    let (key, cert) = other.issue(&Spec::for_days(&["dev"], false, 30)).unwrap();
    let foreign = handshake(
        gateway.grpc,
        client_config(&gateway.ca, Some((&cert, &key))),
        "localhost",
    )
    .await;
    assert!(foreign.is_err(), "{foreign:?}");
    let ca = moat_devstack::certs::authority(&certs.dir).unwrap();
    let now = time::OffsetDateTime::now_utc();
    let (key, cert) = ca
        .issue(&Spec {
            names: &["dev"],
            server: false,
            not_before: now - time::Duration::days(30),
            not_after: now - time::Duration::days(1),
        })
        .unwrap();
    let expired = handshake(
        gateway.grpc,
        client_config(&gateway.ca, Some((&cert, &key))),
        "localhost",
    )
    .await;
    assert!(expired.is_err(), "{expired:?}");
    assert_eq!(gateway.failures("grpc", "client_cert_unknown_ca").await, 1);
    assert_eq!(gateway.failures("grpc", "client_cert_expired").await, 1);
    let err = market.get_price(authed(price(), TOKEN)).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "still serving: {err:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn every_hop_of_the_tls_stack_speaks_mutual_tls() {
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let python = tokio::task::block_in_place(|| moat_devstack::peers::ensure_sdk_venv(&root))
        .unwrap_or_else(|e| panic!("installing the SDK: {e}"));
    let stack = Stack::start(StackOptions {
        tls: true,
        ..StackOptions::default()
    })
    .await;
    let certs = stack.spec.tls.clone().expect("a TLS stack");
    let dev = certs.pair("dev");
    let ports = &stack.spec.ports;

    // Real Python clients: grpcio with the development CA, web3.py over
    // https, and the SDK; a price needs the first trades, so it is retried.
    let script = root.join("tests/python/tls_clients.py");
    let read = eventually("Python clients over mutual TLS", Duration::from_secs(60), || {
        let mut command = Command::new(&python);
        command
            .arg(&script)
            .args([&certs.ca, &dev.cert, &dev.key])
            .arg(TOKEN_E2E)
            .args([ports.gateway_grpc.to_string(), ports.gateway_http.to_string()])
            .env("PYTHONDONTWRITEBYTECODE", "1");
        async move {
            let out = tokio::task::block_in_place(|| command.output()).ok()?;
            if !out.status.success() {
                println!(
                    "not yet: {}",
                    String::from_utf8_lossy(&out.stderr).lines().last().unwrap_or("")
                );
                return None;
            }
            serde_json::from_slice::<serde_json::Value>(&out.stdout).ok()
        }
    })
    .await;
    assert!(
        read["grpcio_price"]
            .as_str()
            .is_some_and(|p| p.parse::<f64>().unwrap() > 0.0),
        "{read}"
    );
    assert!(read["web3_block"].as_u64().is_some(), "{read}");
    assert!(
        read["state_version"].as_u64().is_some_and(|v| v >= 1),
        "through the gateway to state: {read}"
    );
    openssl_says_tls13(ports.gateway_grpc, &certs.ca);
    openssl_says_tls13(ports.gateway_http, &certs.ca);

    // The state service lets only the gateway in.
    let ca = Certificate::from_pem(std::fs::read_to_string(&certs.ca).unwrap());
    let state_channel = |identity: Option<Identity>| {
        let mut tls = ClientTlsConfig::new()
            .ca_certificate(ca.clone())
            .domain_name("localhost");
        if let Some(identity) = identity {
            tls = tls.identity(identity);
        }
        Channel::from_shared(format!("https://127.0.0.1:{}", ports.state_grpc))
            .unwrap()
            .tls_config(tls)
            .unwrap()
            .connect_lazy()
    };
    let load = moat_proto::state::v1::LoadRequest {
        strategy_id: "e2e".into(),
        ..Default::default()
    };
    let err = StateStoreClient::new(state_channel(None))
        .load(load.clone())
        .await
        .unwrap_err();
    assert_eq!(
        (err.code(), err.message()),
        (
            Code::Unauthenticated,
            "moat-state requires a client certificate naming moat-gateway (mutual TLS): connect with the certificate and key its CA signed"
        )
    );
    let read = |p: &Path| std::fs::read_to_string(p).unwrap();
    let strategy = Identity::from_pem(read(&dev.cert), read(&dev.key));
    let err = StateStoreClient::new(state_channel(Some(strategy)))
        .load(load.clone())
        .await
        .unwrap_err();
    assert_eq!(
        (err.code(), err.message()),
        (
            Code::PermissionDenied,
            "the client certificate names dev; moat-state serves only moat-gateway"
        )
    );
    let gateway = certs.pair("gateway");
    let answer = StateStoreClient::new(state_channel(Some(Identity::from_pem(
        read(&gateway.cert),
        read(&gateway.key),
    ))))
    .load(load)
    .await
    .expect("the gateway's certificate is let in");
    assert!(answer.get_ref().version >= 1);

    // Over NATS with TLS, each service as its own user: the storage-writer
    // stores what the collector publishes, and no service was refused a
    // subject it needs.
    eventually(
        "trades stored through NATS over TLS",
        Duration::from_secs(60),
        || async { (stack.stored_trades().0 > 0).then_some(()) },
    )
    .await;
    let nats_log = std::fs::read_to_string(stack.dir.path().join("nats/nats.log")).unwrap();
    assert!(
        !nats_log.contains("Permissions Violation"),
        "a service lacks a permission:\n{nats_log}"
    );

    // `moat doctor` with the CA and the strategy's certificate checks both.
    let mut args: Vec<String> = stack
        .doctor_args(TOKEN_E2E)
        .into_iter()
        .map(|a| a.replace("--gateway-http=http://", "--gateway-http=https://"))
        .collect();
    let operator = certs.pair("operator");
    args.extend([
        format!("--ca={}", certs.ca.display()),
        format!("--cert={}", dev.cert.display()),
        format!("--key={}", dev.key.display()),
        format!("--nats-ca={}", certs.ca.display()),
        format!("--nats-cert={}", operator.cert.display()),
        format!("--nats-key={}", operator.key.display()),
    ]);
    let (_, report) = tokio::task::spawn_blocking(move || doctor(&args)).await.unwrap();
    for name in [
        "gateway gRPC health",
        "gateway token",
        "gateway certificate",
        "strategy certificate",
        "nats",
    ] {
        assert_eq!(check(&report, name)["status"], "pass", "{name}: {report:#}");
    }
    let served = check(&report, "gateway certificate")["detail"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        served.starts_with("moat-gateway, gateway, localhost valid until "),
        "{served}"
    );
    assert!(served.ends_with(" days left)"), "{served}");
}

/// A NATS client logged in by the certificate of `who`, and the errors the
/// server sends it.
async fn nats_as(url: &str, certs: &Certs, who: &str) -> (async_nats::Client, Arc<std::sync::Mutex<Vec<String>>>) {
    let errors = Arc::new(std::sync::Mutex::new(Vec::new()));
    let pair = certs.pair(who);
    let seen = errors.clone();
    let client = async_nats::ConnectOptions::new()
        .require_tls(true)
        .add_root_certificates(certs.ca.clone())
        .add_client_certificate(pair.cert, pair.key)
        .custom_inbox_prefix(format!("_INBOX.moat-{who}"))
        .event_callback(move |event| {
            let seen = seen.clone();
            async move {
                if let async_nats::Event::ServerError(error) = event {
                    seen.lock().unwrap().push(error.to_string());
                }
            }
        })
        .connect(url)
        .await
        .unwrap_or_else(|e| panic!("{who} connecting: {e}"));
    (client, errors)
}

#[tokio::test(flavor = "multi_thread")]
async fn each_service_may_use_only_its_own_nats_subjects() {
    let dir = scratch();
    let (certs, _) = moat_devstack::certs::ensure(&dir.path().join("tls")).unwrap();
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let users = std::fs::read_to_string(root.join(moat_devstack::stack::NATS_USERS)).unwrap();
    let nats =
        tokio::task::block_in_place(|| moat_devstack::Nats::start_tls(&dir.path().join("nats"), None, &certs, &users))
            .unwrap();
    let url = nats.url();
    let refused = |errors: &Arc<std::sync::Mutex<Vec<String>>>, what: &str| {
        let errors = errors.clone();
        let what = what.to_owned();
        async move {
            eventually(&format!("NATS refusing {what}"), Duration::from_secs(10), || {
                let errors = errors.clone();
                let what = what.clone();
                async move { errors.lock().unwrap().iter().any(|e| e.contains(&what)).then_some(()) }
            })
            .await
        }
    };
    let bytes = |s: &'static str| bytes::Bytes::from_static(s.as_bytes());

    // The collector publishes market data and nothing else, and reads none.
    let (collector, errors) = nats_as(&url, &certs, "collector").await;
    let mut live = collector.subscribe("md.>").await.unwrap();
    collector.publish("moat.gateway.limits", bytes("{}")).await.unwrap();
    collector
        .publish("md.trade.local.spot.BTC-USDT", bytes("x"))
        .await
        .unwrap();
    collector.flush().await.unwrap();
    refused(&errors, "Permissions Violation for Subscription to \"md.>\"").await;
    refused(&errors, "Permissions Violation for Publish to \"moat.gateway.limits\"").await;
    assert_eq!(
        errors.lock().unwrap().len(),
        2,
        "md.trade.… is the collector's: {:?}",
        errors.lock().unwrap()
    );
    assert!(
        tokio::time::timeout(Duration::from_millis(300), futures::StreamExt::next(&mut live))
            .await
            .is_err(),
        "the refused subscription delivers nothing"
    );

    // The gateway reads the live lane, and publishes no market data.
    let (gateway, errors) = nats_as(&url, &certs, "gateway").await;
    let mut trades = gateway.subscribe("live.md.trade.>").await.unwrap();
    gateway
        .publish("md.trade.local.spot.BTC-USDT", bytes("forged"))
        .await
        .unwrap();
    gateway.flush().await.unwrap();
    refused(
        &errors,
        "Permissions Violation for Publish to \"md.trade.local.spot.BTC-USDT\"",
    )
    .await;
    collector
        .publish("live.md.trade.local.spot.BTC-USDT", bytes("t"))
        .await
        .unwrap();
    collector.flush().await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(5), futures::StreamExt::next(&mut trades))
        .await
        .expect("the gateway gets the live lane")
        .unwrap();
    assert_eq!(&got.payload[..], b"t");

    // The storage-writer publishes dead letters, not market data.
    let (writer, errors) = nats_as(&url, &certs, "storage-writer").await;
    writer.publish("md.dlq.decode", bytes("bad")).await.unwrap();
    writer
        .publish("md.trade.local.spot.BTC-USDT", bytes("forged"))
        .await
        .unwrap();
    writer.flush().await.unwrap();
    refused(
        &errors,
        "Permissions Violation for Publish to \"md.trade.local.spot.BTC-USDT\"",
    )
    .await;
    assert_eq!(errors.lock().unwrap().len(), 1, "{:?}", errors.lock().unwrap());

    // A client without a certificate is not let in at all.
    let anonymous = async_nats::ConnectOptions::new()
        .require_tls(true)
        .add_root_certificates(certs.ca.clone())
        .connect(&url)
        .await;
    assert!(anonymous.is_err(), "no certificate, no connection");
}
