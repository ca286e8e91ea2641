//! One call through the gateway: authentication, rate limits, deadline,
//! metrics and the audit line, with client cancellation told apart from
//! deadlines and upstream failures.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use moat_common_types::http::register;
use moat_common_types::{Error, ErrorCode};
use prometheus::{Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

use crate::audit::{AuditLog, Line};
use crate::auth::Strategy;

#[derive(Clone)]
pub struct Metrics {
    pub registry: Registry,
    pub requests: IntCounterVec,
    pub latency: HistogramVec,
    pub active: IntGauge,
    pub rpc: IntCounterVec,
    pub upstreams: IntGaugeVec,
    pub upstreams_healthy: IntGaugeVec,
    pub live_age: Histogram,
    pub rate_limited: IntCounterVec,
    pub by_strategy: IntCounterVec,
    pub limits_shared: IntGauge,
    pub tokens_reloads: IntCounterVec,
    pub strategies: IntGauge,
    /// Where each call's audit line goes.
    pub audit: AuditLog,
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        Metrics {
            audit: AuditLog::stdout(),
            requests: register(
                &registry,
                IntCounterVec::new(
                    Opts::new("moat_gateway_requests_total", "calls by service, method and status"),
                    &["service", "method", "status"],
                )
                .expect("valid metric"),
            ),
            latency: register(
                &registry,
                HistogramVec::new(
                    HistogramOpts::new("moat_gateway_request_seconds", "call latency by service and method")
                        // 0.5 s is a bucket edge: the latency SLO counts the calls under it.
                        .buckets(vec![
                            0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                        ]),
                    &["service", "method"],
                )
                .expect("valid metric"),
            ),
            active: register(
                &registry,
                IntGauge::new("moat_gateway_active_requests", "calls in progress").expect("valid metric"),
            ),
            rpc: register(
                &registry,
                // Methods come from the allowlist, so the label set is bounded.
                IntCounterVec::new(
                    Opts::new(
                        "moat_gateway_rpc_requests_total",
                        "proxied JSON-RPC calls by chain, method and status",
                    ),
                    &["chain", "method", "status"],
                )
                .expect("valid metric"),
            ),
            upstreams: register(
                &registry,
                IntGaugeVec::new(
                    Opts::new("moat_gateway_rpc_upstreams", "configured upstreams by chain"),
                    &["chain"],
                )
                .expect("valid metric"),
            ),
            upstreams_healthy: register(
                &registry,
                IntGaugeVec::new(
                    Opts::new(
                        "moat_gateway_rpc_upstreams_healthy",
                        "upstreams not ejected by chain (after the last health check)",
                    ),
                    &["chain"],
                )
                .expect("valid metric"),
            ),
            by_strategy: register(
                &registry,
                IntCounterVec::new(
                    Opts::new(
                        "moat_gateway_strategy_requests_total",
                        "authenticated calls by strategy, service and status",
                    ),
                    &["strategy", "service", "status"],
                )
                .expect("valid metric"),
            ),
            limits_shared: register(
                &registry,
                IntGauge::new(
                    "moat_gateway_limits_shared",
                    "1 while rate limits and lockouts are shared with the other replicas over NATS, 0 while this replica limits alone",
                )
                .expect("valid metric"),
            ),
            tokens_reloads: register(
                &registry,
                IntCounterVec::new(
                    Opts::new(
                        "moat_gateway_tokens_reloads_total",
                        "changes of auth.tokens_file taken in (ok) or refused (error, the last good tokens stay)",
                    ),
                    &["result"],
                )
                .expect("valid metric"),
            ),
            strategies: register(
                &registry,
                IntGauge::new("moat_gateway_strategies", "strategies that have at least one token").expect("valid metric"),
            ),
            rate_limited: register(
                &registry,
                IntCounterVec::new(
                    Opts::new(
                        "moat_gateway_rate_limited_total",
                        "calls refused by a strategy's rate limit (resource_exhausted), by strategy",
                    ),
                    &["strategy"],
                )
                .expect("valid metric"),
            ),
            live_age: register(
                &registry,
                Histogram::with_opts(
                    HistogramOpts::new(
                        "moat_gateway_live_event_age_seconds",
                        "from the collector receiving a venue frame to the live cache holding its event",
                    )
                    .buckets(prometheus::exponential_buckets(0.001, 2.0, 15).expect("valid buckets")),
                )
                .expect("valid metric"),
            ),
            registry,
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// A trace id for a line that belongs to no call.
pub fn fresh_trace_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// The trace id of a W3C `traceparent` (`00-<32 hex>-<16 hex>-<2 hex>`),
/// unless it is malformed or all zeros.
pub fn trace_id_of(traceparent: &str) -> Option<String> {
    let mut parts = traceparent.trim().split('-');
    let (version, trace_id, parent, flags) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex = |s: &str, len: usize| s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit());
    let valid = hex(version, 2)
        && version != "ff"
        && hex(trace_id, 32)
        && hex(parent, 16)
        && hex(flags, 2)
        && trace_id.bytes().any(|b| b != b'0');
    valid.then(|| trace_id.to_ascii_lowercase())
}

/// An in-flight call. Finishing it records the outcome; dropping it
/// unfinished (the client went away or the deadline cut it) records
/// `cancelled` or `deadline_exceeded`, whichever happened.
pub struct Call {
    pub service: &'static str,
    pub method: &'static str,
    pub strategy_id: Option<String>,
    pub chain: Option<String>,
    /// The JSON-RPC method tried, for the audit line, allowed or not.
    pub rpc_method: Option<String>,
    /// Whether `rpc_method` is on the allowlist, so that it may label a
    /// metric (a name a client made up may not).
    pub rpc_method_allowed: bool,
    pub peer: Option<IpAddr>,
    started: Instant,
    deadline: Instant,
    trace_id: String,
    metrics: Arc<Metrics>,
    done: bool,
}

impl Call {
    pub fn start(
        metrics: &Arc<Metrics>,
        service: &'static str,
        method: &'static str,
        timeout: Duration,
        peer: Option<IpAddr>,
        traceparent: Option<&str>,
    ) -> Call {
        metrics.active.inc();
        let started = Instant::now();
        // The exported trace's id when spans are exported; otherwise the
        // caller's (W3C traceparent) or a fresh one, so that every audit
        // line can be joined with the caller's logs.
        let trace_id = moat_common_types::telemetry::current_trace_id()
            .or_else(|| traceparent.and_then(trace_id_of))
            .unwrap_or_else(fresh_trace_id);
        Call {
            service,
            method,
            strategy_id: None,
            chain: None,
            rpc_method: None,
            rpc_method_allowed: false,
            peer,
            started,
            deadline: started + timeout,
            trace_id,
            metrics: metrics.clone(),
            done: false,
        }
    }

    /// The chain and JSON-RPC method this call tries, as the client sent
    /// them (cut to 64 characters), for the audit line.
    pub fn attempted(&mut self, chain: &str, method: Option<&str>) {
        let cut = |s: &str| s.chars().take(64).collect::<String>();
        self.chain = Some(cut(chain));
        self.rpc_method = method.map(cut);
        self.rpc_method_allowed = false;
    }

    pub fn authenticated(&mut self, strategy: &Strategy) {
        self.strategy_id = Some(strategy.id.clone());
    }

    pub fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    /// Runs `work` within the call's deadline.
    pub async fn within<T>(&self, work: impl std::future::Future<Output = Result<T, Error>>) -> Result<T, Error> {
        let budget = self.remaining();
        match tokio::time::timeout(budget, work).await {
            Ok(result) => result,
            Err(_) => Err(Error::new(
                ErrorCode::DeadlineExceeded,
                format!(
                    "deadline of {} ms exceeded",
                    self.deadline.duration_since(self.started).as_millis()
                ),
            )),
        }
    }

    pub fn finish<T>(mut self, result: &Result<T, Error>) {
        self.done = true;
        let status = match result {
            Ok(_) => "ok",
            Err(e) => e.code.as_str(),
        };
        if let Err(error) = result
            && matches!(
                error.code,
                ErrorCode::Internal | ErrorCode::Unavailable | ErrorCode::DeadlineExceeded
            )
        {
            tracing::warn!(service = self.service, method = self.method, code = %error.code, error = %error.message, "call failed");
        }
        self.record(status);
    }

    fn record(&self, status: &str) {
        self.metrics.active.dec();
        let elapsed = self.started.elapsed();
        self.metrics
            .requests
            .with_label_values(&[self.service, self.method, status])
            .inc();
        self.metrics
            .latency
            .with_label_values(&[self.service, self.method])
            .observe(elapsed.as_secs_f64());
        if let Some(strategy) = &self.strategy_id {
            self.metrics
                .by_strategy
                .with_label_values(&[strategy.as_str(), self.service, status])
                .inc();
            if status == ErrorCode::ResourceExhausted.as_str() {
                self.metrics.rate_limited.with_label_values(&[strategy.as_str()]).inc();
            }
        }
        if let (Some(chain), Some(method)) = (&self.chain, &self.rpc_method)
            && self.rpc_method_allowed
        {
            self.metrics
                .rpc
                .with_label_values(&[chain.as_str(), method.as_str(), status])
                .inc();
        }
        // Audit lines go to stdout, one JSON object each; logs go to stderr.
        self.metrics.audit.write(&Line {
            event: "gateway_request",
            timestamp: moat_common_types::now_ms(),
            service: self.service,
            method: self.method,
            strategy_id: self.strategy_id.as_deref(),
            status,
            latency_ms: (elapsed.as_secs_f64() * 1000.0 * 1000.0).round() / 1000.0,
            trace_id: &self.trace_id,
            chain: self.chain.as_deref(),
            rpc_method: self.rpc_method.as_deref(),
        });
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let status = if Instant::now() >= self.deadline {
            "deadline_exceeded"
        } else {
            "cancelled"
        };
        tracing::info!(
            service = self.service,
            method = self.method,
            status,
            "call abandoned before completion"
        );
        self.record(status);
    }
}

/// The deadline of a gRPC call: the client's `grpc-timeout`, capped by the
/// server's own limit.
pub fn grpc_deadline(metadata: &tonic::metadata::MetadataMap, cap: Duration) -> Duration {
    let Some(value) = metadata.get("grpc-timeout").and_then(|v| v.to_str().ok()) else {
        return cap;
    };
    // Metadata text is visible ASCII, so the unit is the last byte.
    let (digits, unit) = value.split_at(value.len().saturating_sub(1));
    let Ok(n) = digits.parse::<u64>() else { return cap };
    // The client's number: multiplied without overflowing.
    let requested = match unit {
        "H" => Duration::from_secs(n.saturating_mul(3600)),
        "M" => Duration::from_secs(n.saturating_mul(60)),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return cap,
    };
    requested.min(cap)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeout_is_honoured_and_capped() {
        let cap = Duration::from_secs(30);
        let mut md = tonic::metadata::MetadataMap::new();
        assert_eq!(grpc_deadline(&md, cap), cap);
        md.insert("grpc-timeout", "250m".parse().unwrap());
        assert_eq!(grpc_deadline(&md, cap), Duration::from_millis(250));
        md.insert("grpc-timeout", "5M".parse().unwrap());
        assert_eq!(grpc_deadline(&md, cap), cap);
        md.insert("grpc-timeout", "garbage".parse().unwrap());
        assert_eq!(grpc_deadline(&md, cap), cap);
        // Hours that overflow seconds are capped, not a panic.
        md.insert("grpc-timeout", "18446744073709551615H".parse().unwrap());
        assert_eq!(grpc_deadline(&md, cap), cap);
    }

    #[test]
    fn trace_ids_come_from_well_formed_traceparents_only() {
        let id = "4bf92f3577b34da6a3ce929d0e0e4736";
        assert_eq!(
            trace_id_of(&format!("00-{}-00f067aa0ba902b7-01", id.to_uppercase())).as_deref(),
            Some(id)
        );
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e47zz-00f067aa0ba902b7-01",
        ] {
            assert_eq!(trace_id_of(bad), None, "{bad}");
        }
    }
}
