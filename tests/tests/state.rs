//! The state service on real SQLite and PostgreSQL: optimistic concurrency,
//! limits, restarts and SIGKILL during a burst of saves.

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use moat_integration_tests::{TestPostgres, bin, eventually, listener, scratch, unique};
use moat_proto::state::v1::state_store_client::StateStoreClient;
use moat_proto::state::v1::{LoadRequest, SaveRequest};
use moat_state::config::StateConfig;
use tokio_util::sync::CancellationToken;
use tonic::Code;
use tonic::transport::Channel;

struct Running {
    addr: SocketAddr,
    token: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Running {
    async fn stop(self) {
        self.token.cancel();
        self.task.await.unwrap().unwrap();
    }
}

async fn start(url: &str) -> Running {
    let mut config = StateConfig::default();
    config.tls = moat_state::config::ServerTlsConfig::plaintext();
    config.database.url = url.to_owned();
    config.limits.max_state_bytes = 1024;
    config.limits.keep_versions = std::num::NonZeroU32::new(3).unwrap();
    let grpc = listener().await;
    let addr = grpc.local_addr().unwrap();
    let token = CancellationToken::new();
    let task = tokio::spawn(moat_state::run(config, grpc, listener().await, token.clone()));
    Running { addr, token, task }
}

async fn client(addr: SocketAddr) -> StateStoreClient<Channel> {
    eventually("state service accepting", Duration::from_secs(20), || async {
        StateStoreClient::connect(format!("http://{addr}")).await.ok()
    })
    .await
}

fn save(id: &str, data: &[u8], expected: u64) -> SaveRequest {
    SaveRequest {
        strategy_id: id.into(),
        data: data.to_vec().into(),
        expected_version: expected,
        ..Default::default()
    }
}

async fn concurrency_and_limits(url: &str) {
    let running = start(url).await;
    let mut c = client(running.addr).await;
    let id = unique("strat");

    let v1 = c.save(save(&id, b"one", 0)).await.unwrap().into_inner();
    assert_eq!(v1.version, 1);
    assert_eq!(v1.sha256, moat_state::store::sha256_hex(b"one"));

    // Two writers holding version 1 race: exactly one wins.
    let (mut a, mut b) = (c.clone(), c.clone());
    let (ra, rb) = tokio::join!(a.save(save(&id, b"from a", 1)), b.save(save(&id, b"from b", 1)));
    let (ok, err) = match (ra, rb) {
        (Ok(ok), Err(err)) | (Err(err), Ok(ok)) => (ok.into_inner(), err),
        (ra, rb) => panic!("exactly one save must win: {ra:?} {rb:?}"),
    };
    assert_eq!(ok.version, 2);
    assert_eq!(err.code(), Code::Aborted);
    assert!(
        err.message().contains("expected version 1, current version is 2"),
        "{}",
        err.message()
    );

    let loaded = c
        .load(LoadRequest {
            strategy_id: id.clone(),
            version: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(loaded.version, 2);
    assert_eq!(loaded.sha256, moat_state::store::sha256_hex(&loaded.data));

    // Limits answer INVALID_ARGUMENT naming the limit and the actual size.
    let err = c.save(save(&id, &[7u8; 1025], 2)).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(err.message(), "state of 1025 bytes exceeds the limit of 1024 bytes");
    let err = c.save(save("bad id!", b"x", 0)).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("\"bad id!\""), "{}", err.message());

    // Only the last 3 versions are kept.
    for v in 2..6 {
        c.save(save(&id, format!("v{}", v + 1).as_bytes(), v)).await.unwrap();
    }
    let versions = c
        .list_versions(moat_proto::state::v1::ListVersionsRequest {
            strategy_id: id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .versions;
    assert_eq!(versions.iter().map(|v| v.version).collect::<Vec<_>>(), [4, 5, 6]);
    let err = c
        .load(LoadRequest {
            strategy_id: id.clone(),
            version: 1,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let v5 = c
        .load(LoadRequest {
            strategy_id: id.clone(),
            version: 5,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(v5.data, &b"v5"[..]);
    assert_eq!(v5.content_type, "", "saved without a media type");

    // A media type is kept with its version, and a bad one is refused.
    let mut typed = save(&id, b"{\"n\":7}", 6);
    typed.content_type = "application/json".to_owned();
    c.save(typed).await.unwrap();
    let loaded = c
        .load(LoadRequest {
            strategy_id: id.clone(),
            version: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((loaded.version, loaded.content_type.as_str()), (7, "application/json"));
    let mut bad = save(&id, b"x", 7);
    bad.content_type = "text/plain\n".to_owned();
    let err = c.save(bad).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("content type"), "{}", err.message());

    let deleted = c
        .delete(moat_proto::state::v1::DeleteRequest {
            strategy_id: id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(deleted.deleted_versions, 3);
    assert_eq!(
        c.load(LoadRequest {
            strategy_id: id,
            version: 0
        })
        .await
        .unwrap_err()
        .code(),
        Code::NotFound
    );
    running.stop().await;
}

#[tokio::test]
async fn sqlite_concurrency_and_limits() {
    let dir = scratch();
    concurrency_and_limits(&format!("sqlite://{}", dir.path().join("s.db").display())).await;
}

#[tokio::test]
async fn postgres_concurrency_and_limits() {
    let pg = TestPostgres::get();
    concurrency_and_limits(&pg.url).await;
}

#[tokio::test]
async fn state_survives_a_restart() {
    let dir = scratch();
    let url = format!("sqlite://{}", dir.path().join("s.db").display());
    let id = unique("restart");
    let running = start(&url).await;
    let mut c = client(running.addr).await;
    c.save(save(&id, b"kept", 0)).await.unwrap();
    running.stop().await;

    let running = start(&url).await;
    let mut c = client(running.addr).await;
    let loaded = c
        .load(LoadRequest {
            strategy_id: id,
            version: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((loaded.version, &loaded.data[..]), (1, &b"kept"[..]));
    running.stop().await;
}

async fn sigkill_during_burst(url: &str) {
    let id = unique("burst");
    let spawn = || {
        let grpc = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let child = Command::new(bin("moat-state"))
            .env("MOAT_CONFIG_DIR", "/nonexistent")
            .env("MOAT_STATE__DATABASE__URL", url)
            .env("MOAT_STATE__TLS__PLAINTEXT", "true")
            .env("MOAT_STATE__GRPC__LISTEN", grpc.to_string())
            .env("MOAT_STATE__HTTP__LISTEN", "127.0.0.1:0")
            .env("MOAT_STATE__LIMITS__KEEP_VERSIONS", "100000")
            .env("RUST_LOG", "warn")
            .spawn()
            .unwrap();
        (child, grpc)
    };
    let (mut child, addr) = spawn();
    let mut c = client(addr).await;
    let mut acked: Vec<(u64, Vec<u8>)> = Vec::new();
    let mut expected = 0;
    let killer = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        child.kill().unwrap();
        child.wait().unwrap();
    });
    loop {
        let data = format!("state number {}", expected + 1).into_bytes();
        match c.save(save(&id, &data, expected)).await {
            Ok(r) => {
                expected = r.into_inner().version;
                acked.push((expected, data));
            }
            Err(_) => break,
        }
    }
    killer.await.unwrap();
    assert!(acked.len() > 1, "the burst should save something before the kill");

    let (mut child, addr) = spawn();
    let mut c = client(addr).await;
    let latest = c
        .load(LoadRequest {
            strategy_id: id.clone(),
            version: 0,
        })
        .await
        .unwrap()
        .into_inner();
    let (last_version, last_data) = acked.last().unwrap();
    // The save in flight at the kill may or may not have committed.
    assert!(
        latest.version == *last_version || latest.version == last_version + 1,
        "latest {} vs acked {last_version}",
        latest.version
    );
    for (version, data) in &acked {
        let got = c
            .load(LoadRequest {
                strategy_id: id.clone(),
                version: *version,
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(&got.data, data, "acknowledged version {version} changed");
    }
    if latest.version == *last_version {
        assert_eq!(&latest.data, last_data);
    }
    child.kill().unwrap();
    child.wait().unwrap();
}

#[tokio::test]
async fn sqlite_sigkill_during_burst_loses_no_acknowledged_version() {
    let dir = scratch();
    sigkill_during_burst(&format!("sqlite://{}", dir.path().join("s.db").display())).await;
}

#[tokio::test]
async fn postgres_sigkill_during_burst_loses_no_acknowledged_version() {
    let pg = TestPostgres::get();
    sigkill_during_burst(&pg.url).await;
}
