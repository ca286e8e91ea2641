//! The `moat.state.v1.StateStore` gRPC service: validation, limits, metrics.

use std::time::Instant;

use moat_common_types::grpc::{extract_trace, to_status};
use moat_common_types::http::register;
use moat_common_types::{Error, ErrorCode};
use moat_proto::state::v1 as pb;
use moat_proto::state::v1::state_store_server::StateStore;
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};
use tonic::{Request, Response, Status};
use tracing::Instrument;

use crate::cache::LatestCache;
use crate::config::LimitsConfig;
use crate::store::Store;

/// Longest strategy id accepted.
pub const MAX_ID_LEN: usize = 128;

/// Checks a strategy id against `^[a-zA-Z0-9_:-]{1,128}$`.
pub fn validate_strategy_id(id: &str) -> Result<(), Error> {
    let ok = !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b':' | b'-'));
    if ok {
        Ok(())
    } else {
        let shown: String = id.chars().take(140).collect();
        Err(Error::invalid_argument(format!(
            "strategy id {shown:?} is invalid: expected 1-{MAX_ID_LEN} characters from [a-zA-Z0-9_:-], got {} characters",
            id.chars().count()
        )))
    }
}

/// Longest media type kept with a state.
pub const MAX_CONTENT_TYPE_LEN: usize = 127;

/// Checks a media type: empty, or up to [`MAX_CONTENT_TYPE_LEN`] printable
/// ASCII characters (`application/json`, `text/plain; charset=utf-8`).
pub fn validate_content_type(content_type: &str) -> Result<(), Error> {
    if content_type.len() <= MAX_CONTENT_TYPE_LEN && content_type.bytes().all(|b| b == b' ' || b.is_ascii_graphic()) {
        Ok(())
    } else {
        let shown: String = content_type.chars().take(140).collect();
        Err(Error::invalid_argument(format!(
            "content type {shown:?} is invalid: expected at most {MAX_CONTENT_TYPE_LEN} printable ASCII characters"
        )))
    }
}

#[derive(Clone)]
pub struct Metrics {
    pub requests: IntCounterVec,
    pub latency: HistogramVec,
    pub bytes: HistogramVec,
}

impl Metrics {
    pub fn new(registry: &Registry) -> Metrics {
        Metrics {
            requests: register(
                registry,
                IntCounterVec::new(
                    Opts::new("moat_state_requests_total", "state operations by operation and status"),
                    &["op", "status"],
                )
                .expect("valid metric"),
            ),
            latency: register(
                registry,
                HistogramVec::new(
                    HistogramOpts::new("moat_state_request_seconds", "state operation latency")
                        .buckets(prometheus::exponential_buckets(0.0002, 2.0, 16).expect("valid buckets")),
                    &["op"],
                )
                .expect("valid metric"),
            ),
            bytes: register(
                registry,
                HistogramVec::new(
                    HistogramOpts::new("moat_state_bytes", "size of the state saved or loaded, in bytes")
                        .buckets(prometheus::exponential_buckets(64.0, 4.0, 10).expect("valid buckets")),
                    &["op"],
                )
                .expect("valid metric"),
            ),
        }
    }
}

pub struct StateService {
    pub store: Store,
    pub limits: LimitsConfig,
    pub metrics: Metrics,
    /// Latest versions in memory, when this service is the only writer.
    pub cache: Option<LatestCache>,
}

impl StateService {
    async fn observe<T>(
        &self,
        op: &'static str,
        metadata: &tonic::metadata::MetadataMap,
        work: impl std::future::Future<Output = Result<T, Error>>,
    ) -> Result<Response<T>, Status> {
        let span = tracing::info_span!(
            "state",
            otel.name = format!("moat.state.v1.StateStore/{op}"),
            otel.kind = "server",
            op
        );
        extract_trace(&span, metadata);
        let started = Instant::now();
        let result = work.instrument(span).await;
        self.metrics
            .latency
            .with_label_values(&[op])
            .observe(started.elapsed().as_secs_f64());
        let status = match &result {
            Ok(_) => "ok",
            Err(e) => e.code.as_str(),
        };
        self.metrics.requests.with_label_values(&[op, status]).inc();
        match result {
            Ok(value) => Ok(Response::new(value)),
            Err(error) => {
                if error.code == ErrorCode::Internal || error.code == ErrorCode::Unavailable {
                    tracing::error!(op, error = %error, "state operation failed");
                }
                Err(to_status(&error))
            }
        }
    }
}

#[tonic::async_trait]
impl StateStore for StateService {
    async fn save(&self, request: Request<pb::SaveRequest>) -> Result<Response<pb::SaveResponse>, Status> {
        let (metadata, _, r) = request.into_parts();
        self.observe("save", &metadata, async {
            validate_strategy_id(&r.strategy_id)?;
            validate_content_type(&r.content_type)?;
            if r.data.len() > self.limits.max_state_bytes {
                return Err(Error::invalid_argument(format!(
                    "state of {} bytes exceeds the limit of {} bytes",
                    r.data.len(),
                    self.limits.max_state_bytes
                )));
            }
            self.metrics
                .bytes
                .with_label_values(&["save"])
                .observe(r.data.len() as f64);
            let _writing = match &self.cache {
                Some(cache) => Some(cache.writes.lock().await),
                None => None,
            };
            let stored = self
                .store
                .save(&r.strategy_id, r.data, &r.content_type, r.expected_version)
                .await?;
            let response = pb::SaveResponse {
                version: stored.version,
                sha256: stored.sha256.clone(),
                saved_at_ms: stored.saved_at_ms,
            };
            if let Some(cache) = &self.cache {
                cache.put(&r.strategy_id, stored);
            }
            Ok(response)
        })
        .await
    }

    async fn load(&self, request: Request<pb::LoadRequest>) -> Result<Response<pb::LoadResponse>, Status> {
        let (metadata, _, r) = request.into_parts();
        self.observe("load", &metadata, async {
            validate_strategy_id(&r.strategy_id)?;
            let cached = self
                .cache
                .as_ref()
                .and_then(|c| c.get(&r.strategy_id))
                .filter(|s| r.version == 0 || r.version == s.version);
            let response = match cached {
                Some(s) => pb::LoadResponse {
                    version: s.version,
                    data: s.data.clone(),
                    sha256: s.sha256.clone(),
                    saved_at_ms: s.saved_at_ms,
                    content_type: s.content_type.clone(),
                },
                None => {
                    let stored = match (&self.cache, r.version) {
                        (Some(cache), 0) => {
                            let _writing = cache.writes.lock().await;
                            let stored = self.store.load(&r.strategy_id, 0).await?;
                            cache.put(&r.strategy_id, stored.clone());
                            stored
                        }
                        _ => self.store.load(&r.strategy_id, r.version).await?,
                    };
                    pb::LoadResponse {
                        version: stored.version,
                        data: stored.data,
                        sha256: stored.sha256,
                        saved_at_ms: stored.saved_at_ms,
                        content_type: stored.content_type,
                    }
                }
            };
            self.metrics
                .bytes
                .with_label_values(&["load"])
                .observe(response.data.len() as f64);
            Ok(response)
        })
        .await
    }

    async fn delete(&self, request: Request<pb::DeleteRequest>) -> Result<Response<pb::DeleteResponse>, Status> {
        let (metadata, _, r) = request.into_parts();
        self.observe("delete", &metadata, async {
            validate_strategy_id(&r.strategy_id)?;
            let _writing = match &self.cache {
                Some(cache) => Some(cache.writes.lock().await),
                None => None,
            };
            let deleted_versions = self.store.delete(&r.strategy_id).await?;
            if let Some(cache) = &self.cache {
                cache.remove(&r.strategy_id);
            }
            Ok(pb::DeleteResponse { deleted_versions })
        })
        .await
    }

    async fn list_versions(
        &self,
        request: Request<pb::ListVersionsRequest>,
    ) -> Result<Response<pb::ListVersionsResponse>, Status> {
        let (metadata, _, r) = request.into_parts();
        self.observe("list_versions", &metadata, async {
            validate_strategy_id(&r.strategy_id)?;
            let versions = self
                .store
                .list_versions(&r.strategy_id)
                .await?
                .into_iter()
                .map(|v| pb::VersionInfo {
                    version: v.version,
                    sha256: v.sha256,
                    size: v.size,
                    saved_at_ms: v.saved_at_ms,
                    content_type: v.content_type,
                })
                .collect();
            Ok(pb::ListVersionsResponse { versions })
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strategy_ids_follow_the_pattern() {
        for ok in ["a", "alpha_1", "team:alpha-2", &"x".repeat(128)] {
            assert!(validate_strategy_id(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a b", "a/b", "ä", "a.b", &"x".repeat(129)] {
            let err = validate_strategy_id(bad).unwrap_err();
            assert_eq!(err.code, ErrorCode::InvalidArgument);
            assert!(err.message.contains("[a-zA-Z0-9_:-]"), "{}", err.message);
        }
    }

    #[test]
    fn content_types_are_short_printable_ascii() {
        for ok in ["", "application/json", "text/plain; charset=utf-8", &"x".repeat(127)] {
            assert!(validate_content_type(ok).is_ok(), "{ok}");
        }
        for bad in ["a\nb", "ä", "tab\there", &"x".repeat(128)] {
            let err = validate_content_type(bad).unwrap_err();
            assert_eq!(err.code, ErrorCode::InvalidArgument);
            assert!(err.message.contains("printable ASCII"), "{}", err.message);
        }
    }
}
