//! A local exchange server that serves a recording in the venue's own
//! protocol: the received WebSocket frames to a client that connects, and
//! the recorded REST answers matched by endpoint and symbol (so a recording
//! from an older host or API version still answers).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;
use tokio::sync::Notify;

use crate::recording::{Record, parse_line};

/// Replay pace.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Speed {
    Max,
    /// Real time multiplied by the factor (1.0 = as recorded).
    Factor(f64),
}

/// The parts of a recording the server needs.
#[derive(Debug, Default, Clone)]
pub struct Recording {
    /// Every WebSocket URL opened (a query may name the subscription).
    pub ws_urls: Vec<String>,
    /// Frames the recorded client sent (its subscriptions).
    pub sent: Vec<String>,
    pub frames: Vec<(f64, String)>,
    /// `(path, symbol, body)` of each REST answer.
    pub rest: Vec<(String, Option<String>, String)>,
}

impl Recording {
    pub fn load(texts: &[String]) -> Recording {
        let mut r = Recording::default();
        for text in texts {
            for line in text.lines() {
                match parse_line(line) {
                    Some(Record::Open { url, .. }) => r.ws_urls.push(url.to_owned()),
                    Some(Record::Received { ts, payload }) => r.frames.push((ts, payload.to_owned())),
                    Some(Record::Sent { payload, .. }) => r.sent.push(payload.to_owned()),
                    Some(Record::Rest { url, body, .. }) => {
                        let (path, query) = url
                            .split_once("://")
                            .map_or(url, |(_, rest)| rest.split_once('/').map_or("", |(_, p)| p))
                            .split_once('?')
                            .unwrap_or((url, ""));
                        let symbol = query
                            .split('&')
                            .find_map(|kv| kv.strip_prefix("symbol=").or_else(|| kv.strip_prefix("instId=")))
                            .map(str::to_owned);
                        r.rest
                            .push((format!("/{}", path.trim_start_matches('/')), symbol, body.to_owned()));
                    }
                    _ => {}
                }
            }
        }
        r.frames.sort_by(|a, b| a.0.total_cmp(&b.0));
        r
    }

    /// The venue symbols the recorded client subscribed to: Binance's from
    /// the stream URL, OKX's from its `subscribe` arguments.
    pub fn subscribed_symbols(&self) -> Vec<String> {
        let mut symbols = Vec::new();
        for sent in &self.sent {
            let Ok(request) = serde_json::from_str::<serde_json::Value>(sent) else {
                continue;
            };
            // Coinbase: {"type":"subscribe","product_ids":[…]}.
            for id in request["product_ids"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|v| v.as_str())
            {
                if !symbols.iter().any(|s| s == id) {
                    symbols.push(id.to_owned());
                }
            }
            for arg in request["args"].as_array().into_iter().flatten() {
                if let Some(id) = arg["instId"].as_str()
                    && !symbols.iter().any(|s| s == id)
                {
                    symbols.push(id.to_owned());
                }
            }
        }
        for url in &self.ws_urls {
            let streams = url.split("streams=").nth(1).unwrap_or_default();
            for stream in streams.split('/') {
                let symbol = stream.split('@').next().unwrap_or_default().to_ascii_uppercase();
                if !symbol.is_empty() && !symbols.contains(&symbol) {
                    symbols.push(symbol);
                }
            }
        }
        symbols
    }
}

struct Shared {
    recording: Recording,
    speed: Speed,
    /// Notified (and set) when a client has been sent every frame.
    done: Notify,
    finished: std::sync::atomic::AtomicBool,
    /// Stops the server and drops every connection (a venue going away).
    stop: tokio_util::sync::CancellationToken,
}

/// A running replay server.
pub struct ReplayServer {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
}

impl ReplayServer {
    pub async fn start(listener: TcpListener, recording: Recording, speed: Speed) -> std::io::Result<ReplayServer> {
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            recording,
            speed,
            done: Notify::new(),
            finished: std::sync::atomic::AtomicBool::new(false),
            stop: tokio_util::sync::CancellationToken::new(),
        });
        let app = Router::new()
            .route("/stream", get(ws))
            .route("/ws", get(ws))
            .route("/ws/v5/public", get(ws))
            .route("/", get(ws))
            .fallback(get(rest))
            .with_state(shared.clone());
        let stop = shared.stop.clone();
        tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, app)
                .with_graceful_shutdown(stop.cancelled_owned())
                .await
            {
                tracing::error!(%error, "replay server stopped");
            }
        });
        Ok(ReplayServer { addr, shared })
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}", self.addr)
    }

    pub fn http_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Closes the listener and every connection, as a venue outage would.
    pub fn stop(&self) {
        self.shared.stop.cancel();
    }

    /// Resolves once a client has been sent the whole recording (at once
    /// if that already happened).
    pub async fn finished(&self) {
        loop {
            let notified = self.shared.done.notified();
            if self.shared.finished.load(std::sync::atomic::Ordering::Acquire) {
                return;
            }
            notified.await;
        }
    }
}

async fn ws(State(shared): State<Arc<Shared>>, upgrade: WebSocketUpgrade) -> Response {
    upgrade.on_upgrade(move |socket| serve_frames(shared, socket))
}

async fn serve_frames(shared: Arc<Shared>, mut socket: WebSocket) {
    let frames = &shared.recording.frames;
    let start = tokio::time::Instant::now();
    let first_ts = frames.first().map_or(0.0, |f| f.0);
    for (ts, frame) in frames {
        if let Speed::Factor(factor) = shared.speed {
            let offset = Duration::from_secs_f64(((ts - first_ts) / factor).max(0.0));
            tokio::select! {
                () = tokio::time::sleep_until(start + offset) => {}
                () = shared.stop.cancelled() => return,
            }
        }
        if shared.stop.is_cancelled() || socket.send(Message::Text(frame.clone().into())).await.is_err() {
            return;
        }
    }
    shared.finished.store(true, std::sync::atomic::Ordering::Release);
    shared.done.notify_waiters();
    // Keep the connection open (as a quiet venue would) until the client
    // leaves or the server stops.
    loop {
        tokio::select! {
            message = socket.recv() => match message {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            },
            () = shared.stop.cancelled() => break,
        }
    }
}

async fn rest(State(shared): State<Arc<Shared>>, uri: Uri, Query(query): Query<Vec<(String, String)>>) -> Response {
    let symbol = query
        .iter()
        .find(|(k, _)| k == "symbol" || k == "instId")
        .map(|(_, v)| v.to_ascii_uppercase());
    // Match the endpoint's last path segment (`depth`) and the symbol, so a
    // recording of `/api/v3/depth` also answers `/fapi/v1/depth` requests.
    let last = uri.path().rsplit('/').next().unwrap_or_default();
    let found = shared.recording.rest.iter().find(|(path, s, _)| {
        path.rsplit('/').next() == Some(last)
            && (symbol.is_none() || s.as_ref().map(|s| s.to_ascii_uppercase()) == symbol)
    });
    match found {
        Some((_, _, body)) => ([(axum::http::header::CONTENT_TYPE, "application/json")], body.clone()).into_response(),
        None => (StatusCode::NOT_FOUND, format!("no recorded answer for {uri}")).into_response(),
    }
}
