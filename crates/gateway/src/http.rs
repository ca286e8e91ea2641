//! `POST /rpc/{chain}`: plain JSON-RPC for standard web3 clients, with the
//! same auth, allowlists, limits and audit as the gRPC `RpcService`.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Extension;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use moat_common_types::tls::{PeerCerts, check_client};
use moat_common_types::{Error, ErrorCode};
use rustls::pki_types::CertificateDer;
use serde_json::value::RawValue;
use tracing::Instrument;

use crate::auth::token_from;
use crate::call::Call;
use crate::rpc::{Body, Request, codes, error_response, json_rpc_code};
use crate::services::{Gateway, Rpc};

pub fn routes(gateway: Arc<Gateway>) -> Router {
    let limit = gateway.config.server.max_body_bytes;
    Router::new()
        .route("/rpc/{chain}", post(rpc))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(gateway)
}

fn json_response(status: StatusCode, body: Bytes) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// A refusal of the whole request: HTTP status from the error code, a
/// JSON-RPC error body, and `Retry-After` when rate limited.
fn refusal(error: &Error) -> Response {
    let status = StatusCode::from_u16(error.code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = json_response(
        status,
        error_response(RawValue::NULL, json_rpc_code(error), &error.message),
    );
    if error.code == ErrorCode::ResourceExhausted
        && let Some(secs) = error
            .message
            .rsplit("retry after ")
            .next()
            .and_then(|s| s.trim_end_matches('s').parse::<f64>().ok())
        && let Ok(value) = HeaderValue::from_str(&format!("{}", secs.ceil().max(1.0) as u64))
    {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    response
}

async fn rpc(
    State(g): State<Arc<Gateway>>,
    Path(chain): Path<String>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    certs: Option<Extension<PeerCerts>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let span = tracing::info_span!(
        "http.server",
        otel.name = "POST /rpc/{chain}",
        otel.kind = "server",
        chain = %chain.chars().take(32).collect::<String>(),
    );
    moat_common_types::telemetry::extract(&span, |k| {
        headers.get(k).and_then(|v| v.to_str().ok()).map(str::to_owned)
    });
    let certs = certs.map(|Extension(PeerCerts(c))| c);
    rpc_call(g, chain, peer, certs, headers, body).instrument(span).await
}

async fn rpc_call(
    g: Arc<Gateway>,
    chain: String,
    peer: SocketAddr,
    certs: Option<Arc<Vec<CertificateDer<'static>>>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let traceparent = headers.get("traceparent").and_then(|v| v.to_str().ok());
    let mut call = Call::start(&g.metrics, "http", "rpc", g.request_cap(), Some(peer.ip()), traceparent);
    let token = token_from(|k| headers.get(k).and_then(|v| v.to_str().ok()));
    let strategy = match check_client(&g.config.tls, certs.as_deref().map(Vec::as_slice), "moat-gateway")
        .and_then(|()| g.admit(token, Some(peer.ip())))
        .and_then(|s| g.rpc.chain(&chain).map(|_| s))
    {
        Ok(s) => s,
        Err(error) => {
            // Audited with what it tried: the chain, and the method of a
            // single call.
            let method = match crate::rpc::parse_body(&body, g.rpc.max_batch()) {
                Ok(Body::One(Request {
                    call: Ok((method, _)), ..
                })) => Some(method.into_owned()),
                _ => None,
            };
            call.attempted(&chain, method.as_deref());
            let response = refusal(&error);
            call.finish::<()>(&Err(error));
            return response;
        }
    };
    call.authenticated(&strategy);
    let (response, outcome) = match crate::rpc::parse_body(&body, g.rpc.max_batch()) {
        Err((code, error)) => {
            call.finish::<()>(&Err(error.clone()));
            return json_response(
                StatusCode::BAD_REQUEST,
                error_response(RawValue::NULL, code, &error.message),
            );
        }
        Ok(Body::One(request)) => one(&g, &mut call, &strategy, &chain, request).await,
        Ok(Body::Batch(requests)) => {
            let mut answers = Vec::with_capacity(2 + 64 * requests.len());
            let mut first_error = None;
            answers.push(b'[');
            for (i, request) in requests.into_iter().enumerate() {
                let (answer, error) = one(&g, &mut call, &strategy, &chain, request).await;
                first_error = first_error.or(error);
                if i > 0 {
                    answers.push(b',');
                }
                answers.extend_from_slice(&answer);
            }
            answers.push(b']');
            (Bytes::from(answers), first_error)
        }
    };
    match outcome {
        Some(error) => call.finish::<()>(&Err(error)),
        None => call.finish::<()>(&Ok(())),
    }
    json_response(StatusCode::OK, response)
}

/// Answers one JSON-RPC request object; the error, if any, is for the audit.
async fn one(
    g: &Gateway,
    call: &mut Call,
    strategy: &crate::auth::Strategy,
    chain: &str,
    request: Request<'_>,
) -> (Bytes, Option<Error>) {
    let Request { id, call: parsed } = request;
    let (method, params) = match parsed {
        Ok(call) => call,
        Err(error) => return (error_response(id, codes::INVALID_REQUEST, &error.message), Some(error)),
    };
    match Rpc::proxy(g, call, strategy, chain, &method, params, id).await {
        // The upstream echoes the id it was sent; the client sees its own
        // whatever the upstream answered with.
        Ok(answer) => (answer.with_id(id), None),
        Err(error) => (error_response(id, json_rpc_code(&error), &error.message), Some(error)),
    }
}
