//! Helpers shared by the integration tests: the dependency servers, unique
//! names, service binaries and polling with a deadline.
//!
//! `cargo xtask test` starts NATS, ClickHouse and PostgreSQL once and passes
//! their URLs in `MOAT_TEST_*`; without them (a plain `cargo test`) each
//! test starts the servers it needs through `moat-devstack`.

pub mod otlp;
pub mod stack;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use moat_devstack::{ClickHouse, Nats, Postgres, http_post};

/// A unique lowercase name for databases, consumers and strategy ids.
pub fn unique(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}_{}_{}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        moat_common_types::now_ms() % 1_000_000
    )
}

/// A scratch folder removed at drop.
pub fn scratch() -> tempfile::TempDir {
    tempfile::Builder::new().prefix("moat-it-").tempdir().expect("temp dir")
}

/// Path of a built binary of the workspace (`cargo xtask test` builds them
/// before running the tests). `MOAT_BIN_DIR` points elsewhere, such as the
/// release binaries `cargo xtask bench` runs the stack from.
pub fn bin(name: &str) -> PathBuf {
    let dir = match std::env::var_os("MOAT_BIN_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => {
            let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
            let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
            target.join("debug")
        }
    };
    let path = dir.join(name);
    assert!(
        path.is_file(),
        "{} is not built: run `cargo build --bins` first (`cargo xtask test` does)",
        path.display()
    );
    path
}

/// The real exchange recordings: `MOAT_EXCHANGE_FIXTURES` or
/// `../shared/fixtures/exchanges`, read in place; `None`, with a note that
/// the test was skipped, when neither exists.
pub fn fixtures() -> Option<PathBuf> {
    let dir = std::env::var_os("MOAT_EXCHANGE_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures/exchanges"));
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!(
            "SKIPPED: no exchange recordings at {} (set MOAT_EXCHANGE_FIXTURES)",
            dir.display()
        );
        None
    }
}

/// Polls `check` every 50 ms until it returns `Some` or `within` passes.
pub async fn eventually<T, F, Fut>(what: &str, within: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            start.elapsed() < within,
            "timed out after {within:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// ClickHouse for a test: the shared server, or one of its own.
pub struct TestClickHouse {
    pub url: String,
    _own: Option<(ClickHouse, tempfile::TempDir)>,
}

impl TestClickHouse {
    pub fn get() -> TestClickHouse {
        if let Some(url) = std::env::var("MOAT_TEST_CLICKHOUSE_URL").ok().filter(|u| !u.is_empty()) {
            return TestClickHouse { url, _own: None };
        }
        let dir = scratch();
        let ch = ClickHouse::start(dir.path()).expect("starting clickhouse-server");
        TestClickHouse {
            url: ch.url(),
            _own: Some((ch, dir)),
        }
    }

    /// Runs SQL and returns the trimmed body; panics with ClickHouse's message.
    pub fn query(&self, sql: &str) -> String {
        let addr = self.url.trim_start_matches("http://");
        let r = http_post(addr, "/", sql, Duration::from_secs(30)).expect("ClickHouse reachable");
        assert!(r.is_success(), "ClickHouse answered {} to {sql}: {}", r.status, r.body);
        r.body.trim().to_owned()
    }

    pub fn count(&self, sql: &str) -> u64 {
        self.query(sql).parse().unwrap_or_else(|_| panic!("not a count: {sql}"))
    }
}

/// A NATS server of the test's own: streams bind `md.>`, so tests that
/// create `MARKET_DATA` cannot share one server.
pub fn own_nats() -> (Nats, tempfile::TempDir) {
    let dir = scratch();
    let nats = Nats::start(dir.path()).expect("starting nats-server");
    (nats, dir)
}

/// Every event `stream` holds, in stream order: the events of each
/// message, whether it carries one or a batch. Fails on a message that
/// cannot be read, so a test never counts past a corrupt one.
pub async fn stream_events(
    js: &async_nats::jetstream::Context,
    stream: &str,
) -> Result<Vec<moat_common_types::MarketEvent>, String> {
    let mut stream = js.get_stream(stream).await.map_err(|e| e.to_string())?;
    let state = stream.info().await.map_err(|e| e.to_string())?.state.clone();
    let mut events = Vec::new();
    if state.messages == 0 {
        return Ok(events);
    }
    for sequence in state.first_sequence..=state.last_sequence {
        // A sequence may have been deleted (a duplicate is never stored, but
        // an operator may purge); only messages that exist are read.
        let Ok(message) = stream.get_raw_message(sequence).await else {
            continue;
        };
        let decoded = moat_common_types::proto_conv::decode_message(Some(&message.headers), &message.payload)
            .map_err(|e| format!("stream sequence {sequence} on {}: {}", message.subject, e.message))?;
        events.extend(decoded);
    }
    Ok(events)
}

/// PostgreSQL for a test: the shared server, or one of its own.
pub struct TestPostgres {
    pub url: String,
    _own: Option<(Postgres, tempfile::TempDir)>,
}

impl TestPostgres {
    pub fn get() -> TestPostgres {
        if let Some(url) = std::env::var("MOAT_TEST_DATABASE_URL").ok().filter(|u| !u.is_empty()) {
            return TestPostgres { url, _own: None };
        }
        let dir = tempfile::Builder::new()
            .prefix("moat-pg-")
            .tempdir_in("/tmp")
            .expect("temp dir");
        let pg = Postgres::start(dir.path()).expect("starting postgres");
        TestPostgres {
            url: pg.url(),
            _own: Some((pg, dir)),
        }
    }
}

/// A bound listener on 127.0.0.1 with an OS-chosen port.
pub async fn listener() -> tokio::net::TcpListener {
    tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind port 0")
}

/// A local EVM node (ganache from `tests/peers`), killed on drop.
pub struct Ganache {
    child: std::process::Child,
    pub url: String,
}

impl Drop for Ganache {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `tests/peers`: the npm and PyPI test peers.
pub fn peers_dir() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("peers")
}

/// Starts ganache on a free port with chain id 1 and the deterministic wallet.
pub async fn ganache() -> Ganache {
    Ganache::start_on(moat_devstack::free_port()).await
}

impl Ganache {
    /// Starts ganache on `port` and waits until it answers.
    pub async fn start_on(port: u16) -> Ganache {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
        let child = moat_devstack::ganache_command(&root, port)
            .unwrap_or_else(|e| panic!("{e} (.ci/run does)"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let url = format!("http://127.0.0.1:{port}");
        let node = Ganache { child, url };
        let client = reqwest::Client::new();
        eventually("ganache answering", Duration::from_secs(60), || {
            let (client, url) = (client.clone(), node.url.clone());
            async move {
                let r = client
                    .post(url)
                    .json(&serde_json::json!({"jsonrpc":"2.0","id":1,"method":"eth_chainId","params":[]}))
                    .send()
                    .await
                    .ok()?;
                r.status().is_success().then_some(())
            }
        })
        .await;
        node
    }

    /// SIGKILLs the node.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts a fresh node on the same port.
    pub async fn restart(&mut self) {
        self.kill();
        let port = self
            .url
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("a port");
        *self = Ganache::start_on(port).await;
    }
}

/// A service process started by a test, killed when the test ends.
pub struct Process(pub std::process::Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `message` as a gRPC request carrying `token` as `authorization: Bearer`.
pub fn authed<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("a token is ASCII"),
    );
    request
}
