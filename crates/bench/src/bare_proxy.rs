//! A bare HTTP/1.1 reverse proxy on hyper, the HTTP stack the gateway is
//! built on: each request's body is passed to one upstream over pooled
//! keep-alive connections and the answer's body passed back, with nothing
//! else (no auth, allowlists, limits, JSON, metrics or audit). It runs as a
//! process of its own (`moat-bench --bare-proxy LISTEN UPSTREAM`), so the
//! RPC bench can tell what the chosen stack costs from what moat adds.

use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};

pub(crate) async fn serve(listen: SocketAddr, upstream: hyper::Uri) -> anyhow::Result<()> {
    // As the gateway's client connects: no Nagle delay.
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client: Client<HttpConnector, Full<Bytes>> = Client::builder(TokioExecutor::new()).build(connector);
    let listener = tokio::net::TcpListener::bind(listen).await?;
    loop {
        let (stream, _) = listener.accept().await?;
        stream.set_nodelay(true)?;
        let (client, upstream) = (client.clone(), upstream.clone());
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
                let (client, upstream) = (client.clone(), upstream.clone());
                async move {
                    let (parts, body) = request.into_parts();
                    let body = body.collect().await?.to_bytes();
                    let mut forward = hyper::Request::post(upstream).body(Full::new(body))?;
                    if let Some(kind) = parts.headers.get(hyper::header::CONTENT_TYPE) {
                        forward.headers_mut().insert(hyper::header::CONTENT_TYPE, kind.clone());
                    }
                    let answer = client.request(forward).await?;
                    let (parts, body) = answer.into_parts();
                    let body = body.collect().await?.to_bytes();
                    Ok::<_, anyhow::Error>(hyper::Response::from_parts(parts, Full::new(body)))
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
