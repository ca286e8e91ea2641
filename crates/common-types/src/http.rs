//! The HTTP surface every service shares: `/health` (liveness plus readiness
//! of each dependency), `/health/live`, `/metrics` (Prometheus text format),
//! and the serve-until-shutdown loop.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::future::BoxFuture;
use prometheus::{Encoder, Registry, TextEncoder};
use serde_json::json;

/// How long one readiness check may take before it counts as failed.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

type CheckFn = Arc<dyn Fn() -> BoxFuture<'static, Result<(), String>> + Send + Sync>;

/// Readiness checks of one service, one per dependency.
#[derive(Clone)]
pub struct Health {
    service: String,
    checks: Vec<(String, CheckFn)>,
}

impl std::fmt::Debug for Health {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.checks.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("Health")
            .field("service", &self.service)
            .field("checks", &names)
            .finish()
    }
}

impl Health {
    pub fn new(service: &str) -> Health {
        Health {
            service: service.to_owned(),
            checks: Vec::new(),
        }
    }

    /// Adds a dependency check: `Ok` when ready, `Err` with the reason.
    pub fn check<F, Fut>(mut self, name: &str, check: F) -> Health
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        self.checks.push((name.to_owned(), Arc::new(move || Box::pin(check()))));
        self
    }

    /// Adds the readiness of a NATS connection under the name `nats`.
    pub fn nats(self, client: &async_nats::Client) -> Health {
        let client = client.clone();
        self.check("nats", move || {
            let state = client.connection_state();
            async move {
                match state {
                    async_nats::connection::State::Connected => Ok(()),
                    other => Err(format!("NATS connection is {other:?}")),
                }
            }
        })
    }

    /// Runs every check concurrently, each bounded by [`CHECK_TIMEOUT`]:
    /// `(check, outcome)` in the order the checks were added.
    pub async fn results(&self) -> Vec<(String, Result<(), String>)> {
        futures::future::join_all(self.checks.iter().map(|(name, check)| async move {
            let outcome = match tokio::time::timeout(CHECK_TIMEOUT, check()).await {
                Ok(result) => result,
                Err(_) => Err(format!("no answer within {} ms", CHECK_TIMEOUT.as_millis())),
            };
            (name.clone(), outcome)
        }))
        .await
    }

    /// The readiness answer: whether every check passed, and the JSON body.
    pub async fn report(&self) -> (bool, serde_json::Value) {
        let results = self.results().await;
        let ready = results.iter().all(|(_, r)| r.is_ok());
        let checks: serde_json::Map<String, serde_json::Value> = results
            .into_iter()
            .map(|(name, r)| {
                let v = match r {
                    Ok(()) => json!({"status": "ok"}),
                    Err(error) => json!({"status": "error", "error": error}),
                };
                (name, v)
            })
            .collect();
        let body = json!({
            "service": self.service,
            "status": if ready { "ok" } else { "unavailable" },
            "checks": checks,
        });
        (ready, body)
    }
}

#[derive(Clone)]
struct AppState {
    health: Health,
    registry: Registry,
    checks_up: prometheus::IntGaugeVec,
}

/// `/health`, `/health/live`, `/health/ready` and `/metrics`; services merge
/// their own routes into it.
///
/// `/metrics` runs the readiness checks too and exports each as
/// `moat_check_up{service, check}` (1 passing, 0 failing), so alerts see a
/// dependency (NATS, ClickHouse, the state service, a venue) go away.
pub fn router(health: Health, registry: Registry) -> Router {
    let checks_up = register(
        &registry,
        prometheus::IntGaugeVec::new(
            prometheus::Opts::new(
                "moat_check_up",
                "readiness checks of the service (a dependency or venue), 1 passing and 0 failing, run at each scrape",
            ),
            &["service", "check"],
        )
        .expect("valid metric"),
    );
    Router::new()
        .route("/health", get(ready))
        .route("/health/ready", get(ready))
        .route("/health/live", get(|| async { "ok" }))
        .route("/metrics", get(metrics))
        .with_state(AppState {
            health,
            registry,
            checks_up,
        })
}

async fn ready(State(state): State<AppState>) -> Response {
    let (ready, body) = state.health.report().await;
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(body)).into_response()
}

async fn metrics(State(state): State<AppState>) -> Response {
    for (check, outcome) in state.health.results().await {
        state
            .checks_up
            .with_label_values(&[state.health.service.as_str(), check.as_str()])
            .set(i64::from(outcome.is_ok()));
    }
    let mut buf = Vec::new();
    match TextEncoder::new().encode(&state.registry.gather(), &mut buf) {
        Ok(()) => ([(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)], buf).into_response(),
        Err(error) => (StatusCode::INTERNAL_SERVER_ERROR, error.to_string()).into_response(),
    }
}

/// Serves `router` on `listener` until `shutdown` resolves, then lets
/// in-flight requests finish; default header-read and idle timeouts.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    crate::server::serve_with(listener, router, shutdown, crate::server::ServerTimeouts::default()).await
}

/// Accepted connections of `listener` with `TCP_NODELAY` set, for
/// `tonic`'s `serve_with_incoming`: without it, small gRPC answers wait
/// for the peer's delayed ACK (about 40 ms).
pub fn incoming(
    listener: tokio::net::TcpListener,
) -> impl futures::Stream<Item = std::io::Result<tokio::net::TcpStream>> + Send + 'static {
    futures::stream::unfold(listener, |listener| async move {
        let accepted = listener.accept().await.map(|(stream, _)| stream);
        if let Ok(stream) = &accepted
            && let Err(error) = stream.set_nodelay(true)
        {
            tracing::debug!(%error, "cannot set TCP_NODELAY");
        }
        Some((accepted, listener))
    })
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
    tracing::info!("shutdown signal received");
}

/// A token cancelled on SIGINT or SIGTERM: the shutdown every service uses.
pub fn shutdown_token() -> tokio_util::sync::CancellationToken {
    let token = tokio_util::sync::CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        cancel.cancel();
    });
    token
}

/// Registers a collector, panicking only on a programming error (a metric
/// registered twice under the same name).
pub fn register<C: prometheus::core::Collector + Clone + 'static>(registry: &Registry, collector: C) -> C {
    registry
        .register(Box::new(collector.clone()))
        .expect("metric names are unique per registry");
    collector
}

/// Registers a gauge computed when it is scraped: `values` returns the
/// label values and the value of each series. For state the service keeps
/// anyway (venue connections, the cache's books), so nothing on the hot
/// path updates a metric.
pub fn register_computed<F>(registry: &Registry, name: &str, help: &str, labels: &[&str], values: F)
where
    F: Fn() -> Vec<(Vec<String>, f64)> + Send + Sync + 'static,
{
    let computed = Computed {
        opts: prometheus::Opts::new(name, help).variable_labels(labels.iter().map(|l| (*l).to_owned()).collect()),
        desc: prometheus::core::Desc::new(
            name.to_owned(),
            help.to_owned(),
            labels.iter().map(|l| (*l).to_owned()).collect(),
            std::collections::HashMap::new(),
        )
        .expect("valid metric"),
        values: Arc::new(values),
    };
    registry
        .register(Box::new(computed))
        .expect("metric names are unique per registry");
}

type ComputedValues = Arc<dyn Fn() -> Vec<(Vec<String>, f64)> + Send + Sync>;

/// A gauge family built afresh from [`register_computed`]'s function at
/// each scrape.
struct Computed {
    opts: prometheus::Opts,
    desc: prometheus::core::Desc,
    values: ComputedValues,
}

impl prometheus::core::Collector for Computed {
    fn desc(&self) -> Vec<&prometheus::core::Desc> {
        vec![&self.desc]
    }

    fn collect(&self) -> Vec<prometheus::proto::MetricFamily> {
        let labels: Vec<&str> = self.opts.variable_labels.iter().map(String::as_str).collect();
        let Ok(gauge) = prometheus::GaugeVec::new(self.opts.clone(), &labels) else {
            return Vec::new();
        };
        for (values, value) in (self.values)() {
            let values: Vec<&str> = values.iter().map(String::as_str).collect();
            if let Ok(series) = gauge.get_metric_with_label_values(&values) {
                series.set(value);
            }
        }
        prometheus::core::Collector::collect(&gauge)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn get_body(router: Router, path: &str) -> (u16, String) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(listener, router, async {
            let _ = rx.await;
        }));
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        stream
            .write_all(format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut text = String::new();
        stream.read_to_string(&mut text).await.unwrap();
        let _ = tx.send(());
        server.await.unwrap().unwrap();
        let status = text[9..12].parse().unwrap();
        let body = text.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned();
        (status, body)
    }

    #[tokio::test]
    async fn health_reports_each_dependency() {
        let health = Health::new("demo")
            .check("nats", || async { Ok(()) })
            .check("clickhouse", || async { Err("connection refused".to_owned()) });
        let (status, body) = get_body(router(health, Registry::new()), "/health").await;
        assert_eq!(status, 503);
        let v: serde_json::Value = serde_json::from_str(body.trim()).unwrap_or_else(|_| {
            // Chunked encoding: take the JSON between the chunk-size lines.
            let start = body.find('{').unwrap();
            let end = body.rfind('}').unwrap();
            serde_json::from_str(&body[start..=end]).unwrap()
        });
        assert_eq!(v["checks"]["nats"]["status"], "ok");
        assert_eq!(v["checks"]["clickhouse"]["error"], "connection refused");
        assert_eq!(v["status"], "unavailable");

        let healthy = Health::new("demo").check("nats", || async { Ok(()) });
        assert_eq!(get_body(router(healthy, Registry::new()), "/health").await.0, 200);
    }

    #[tokio::test]
    async fn a_hanging_check_fails_within_the_timeout() {
        let health = Health::new("demo").check("slow", std::future::pending);
        let started = std::time::Instant::now();
        let (ready, body) = health.report().await;
        assert!(!ready);
        assert!(started.elapsed() < CHECK_TIMEOUT + Duration::from_secs(1));
        assert!(body["checks"]["slow"]["error"].as_str().unwrap().contains("no answer"));
    }

    #[tokio::test]
    async fn metrics_are_prometheus_text() {
        let registry = Registry::new();
        let counter = register(
            &registry,
            prometheus::IntCounter::new("moat_demo_events_total", "events").unwrap(),
        );
        counter.inc_by(3);
        let (status, body) = get_body(router(Health::new("demo"), registry), "/metrics").await;
        assert_eq!(status, 200);
        assert!(body.contains("moat_demo_events_total 3"), "{body}");
    }

    #[tokio::test]
    async fn metrics_carry_each_check_and_computed_gauges() {
        let registry = Registry::new();
        let books = Arc::new(std::sync::atomic::AtomicU32::new(2));
        let seen = books.clone();
        register_computed(
            &registry,
            "moat_demo_books_invalid",
            "books",
            &["exchange"],
            move || {
                vec![(
                    vec!["binance".to_owned()],
                    f64::from(seen.load(std::sync::atomic::Ordering::Relaxed)),
                )]
            },
        );
        let health = Health::new("demo")
            .check("nats", || async { Ok(()) })
            .check("clickhouse", || async { Err("connection refused".to_owned()) });
        let app = router(health, registry);
        let (_, body) = get_body(app.clone(), "/metrics").await;
        assert!(
            body.contains(r#"moat_check_up{check="nats",service="demo"} 1"#),
            "{body}"
        );
        assert!(
            body.contains(r#"moat_check_up{check="clickhouse",service="demo"} 0"#),
            "{body}"
        );
        assert!(
            body.contains(r#"moat_demo_books_invalid{exchange="binance"} 2"#),
            "{body}"
        );
        // Computed at each scrape, not once.
        books.store(0, std::sync::atomic::Ordering::Relaxed);
        let (_, body) = get_body(app, "/metrics").await;
        assert!(
            body.contains(r#"moat_demo_books_invalid{exchange="binance"} 0"#),
            "{body}"
        );
    }
}
