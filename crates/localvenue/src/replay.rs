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
    /// The URL of the connection each of `sent` went on.
    pub sent_urls: Vec<String>,
    pub frames: Vec<(f64, String)>,
    /// The URL path of the connection each frame came on (`/v5/public/spot`),
    /// beside `frames`: a venue that needs several connections gets on each
    /// the frames recorded on its path.
    pub paths: Vec<String>,
    /// `(path, symbol, body)` of each REST answer.
    pub rest: Vec<(String, Option<String>, String)>,
}

impl Recording {
    pub fn load(texts: &[String]) -> Recording {
        let mut r = Recording::default();
        let mut frames = Vec::new();
        for text in texts {
            // Each file holds one connection's traffic, opened on its first line.
            let mut path = String::from("/");
            for line in text.lines() {
                match parse_line(line) {
                    Some(Record::Open { url, .. }) => {
                        path = url_path(url);
                        r.ws_urls.push(url.to_owned());
                    }
                    Some(Record::Received { ts, payload }) => frames.push((ts, payload.to_owned(), path.clone())),
                    Some(Record::Sent { url, payload, .. }) => {
                        r.sent.push(payload.to_owned());
                        r.sent_urls.push(url.to_owned());
                    }
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
        frames.sort_by(|a, b| a.0.total_cmp(&b.0));
        (r.frames, r.paths) = frames.into_iter().map(|(ts, frame, path)| ((ts, frame), path)).unzip();
        r
    }

    /// The frames recorded on `path`, or every frame when none was (a
    /// recording of one connection served on another path).
    fn frames_on<'a>(&'a self, path: &'a str) -> impl Iterator<Item = &'a (f64, String)> {
        let any = self.paths.iter().any(|p| p == path);
        self.frames
            .iter()
            .zip(&self.paths)
            .filter(move |(_, p)| !any || *p == path)
            .map(|(frame, _)| frame)
    }
}

/// The path of a WebSocket URL, without its query or a trailing slash
/// (`/` when it has none).
fn url_path(url: &str) -> String {
    let after_host = url.split_once("://").map_or(url, |(_, rest)| rest);
    let path = after_host.find('/').map_or("/", |i| &after_host[i..]);
    canonical(path.split('?').next().unwrap_or("/"))
}

/// `/v2/marketdata/` and `/v2/marketdata` are one path.
fn canonical(path: &str) -> String {
    match path.trim_end_matches('/') {
        "" => "/".to_owned(),
        trimmed => trimmed.to_owned(),
    }
}

struct Shared {
    recording: Recording,
    speed: Speed,
    /// Notified (and set) when clients have been sent every frame.
    done: Notify,
    /// The paths whose frames a client has been sent in full.
    served: std::sync::Mutex<std::collections::HashSet<String>>,
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
            served: Default::default(),
            finished: std::sync::atomic::AtomicBool::new(false),
            stop: tokio_util::sync::CancellationToken::new(),
        });
        // A WebSocket upgrade on any path is a venue connection; any other
        // GET asks for a recorded REST answer.
        let app = Router::new().fallback(get(route)).with_state(shared.clone());
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

    /// Resolves once clients have been sent the whole recording, every
    /// recorded connection's frames on its path (at once if that already
    /// happened).
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

async fn route(
    State(shared): State<Arc<Shared>>,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
    uri: Uri,
    query: Query<Vec<(String, String)>>,
) -> Response {
    match upgrade {
        Ok(upgrade) => {
            let path = canonical(uri.path());
            upgrade.on_upgrade(move |socket| serve_frames(shared, socket, path))
        }
        Err(_) => rest(shared, uri, query).await,
    }
}

async fn serve_frames(shared: Arc<Shared>, mut socket: WebSocket, path: String) {
    let start = tokio::time::Instant::now();
    let first_ts = shared.recording.frames.first().map_or(0.0, |f| f.0);
    for (ts, frame) in shared.recording.frames_on(&path) {
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
    let all_served = {
        let mut served = shared.served.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if shared.recording.paths.contains(&path) {
            served.insert(path);
        } else {
            served.extend(shared.recording.paths.iter().cloned());
        }
        shared.recording.paths.iter().all(|p| served.contains(p))
    };
    if all_served {
        shared.finished.store(true, std::sync::atomic::Ordering::Release);
        shared.done.notify_waiters();
    }
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

async fn rest(shared: Arc<Shared>, uri: Uri, Query(query): Query<Vec<(String, String)>>) -> Response {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_recorded_connection_is_served_on_its_own_path() {
        let linear = "wss://stream.bybit.com/v5/public/linear <-> 1.0\n2.0: linear-1\n4.0: linear-2\n";
        let spot = "wss://stream.bybit.com/v5/public/spot/ <-> 1.0\n3.0: spot-1\n";
        let recording = Recording::load(&[linear.to_owned(), spot.to_owned()]);
        let on = |path: &str| -> Vec<String> { recording.frames_on(path).map(|(_, f)| f.clone()).collect() };
        assert_eq!(on("/v5/public/linear"), ["linear-1", "linear-2"]);
        assert_eq!(
            on(&canonical("/v5/public/spot/")),
            ["spot-1"],
            "a trailing slash is the same path"
        );
        assert_eq!(
            on("/stream"),
            ["linear-1", "spot-1", "linear-2"],
            "an unknown path gets every frame"
        );
        assert_eq!(url_path("wss://x.example:9443/stream?streams=a@b"), "/stream");
        assert_eq!(url_path("wss://ws.kraken.com"), "/");
    }
}
