//! A venue session's plumbing, the same for every venue: the WebSocket,
//! REST GETs, the typed error a session ends with, and the loop that
//! reconnects after it.

use std::time::Duration;

use crate::metrics::Metrics;
use crate::recording::Recorder;
use crate::venues::Connection;

/// Why a venue session (or one of its REST calls) failed. The reconnect
/// loop counts each by [`SessionError::reason`] and waits according to
/// [`SessionError::pause`]: a venue that asks for time (`Retry-After`) gets
/// it, and one that refuses the request itself (terminal) is not asked again soon.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    /// No connection: refused, DNS, TLS, or no answer in time.
    #[error("connecting to {url}: {detail}")]
    Connect { url: String, detail: String },
    /// Nothing arrived for longer than the venue's heartbeat allows.
    #[error("{url}: no frame for {} ms: connection stale", after.as_millis())]
    Stale { url: String, after: Duration },
    /// Reading or writing an open connection failed.
    #[error("{url}: {detail}")]
    Socket { url: String, detail: String },
    /// The venue answered with an HTTP error, to the WebSocket handshake or
    /// to a REST call.
    #[error("{method} {url}: HTTP {status}{}: {body}", retry_after.map(|d| format!(" (retry after {} s)", d.as_secs())).unwrap_or_default())]
    Http {
        method: &'static str,
        url: String,
        status: u16,
        retry_after: Option<Duration>,
        /// The start of the answer's body, which names the venue's reason.
        body: String,
    },
    /// A REST answer that is not what the venue documents.
    #[error("GET {url}: {detail}")]
    Answer { url: String, detail: String },
}

impl SessionError {
    /// A bounded metric label (`moat_collector_session_errors_total`).
    pub fn reason(&self) -> &'static str {
        match self {
            SessionError::Connect { .. } => "connect",
            SessionError::Stale { .. } => "stale",
            SessionError::Socket { .. } => "socket",
            SessionError::Http { status: 429 | 418, .. } => "rate_limited",
            SessionError::Http { status, .. } if *status >= 500 => "http_5xx",
            SessionError::Http { .. } => "http_4xx",
            SessionError::Answer { .. } => "answer",
        }
    }

    /// True when the same request will be refused again: an HTTP 4xx
    /// other than a timeout or a rate limit (a wrong URL, an unknown
    /// symbol, a refused account). Retrying it soon only spends the
    /// venue's request weight, so it is retried at the backoff's ceiling
    /// (a venue never stops the collector).
    pub fn is_terminal(&self) -> bool {
        matches!(self, SessionError::Http { status, .. } if (400..500).contains(status) && !matches!(status, 408 | 418 | 429))
    }

    /// How long the venue asked to be left alone (`Retry-After`).
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            SessionError::Http { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// How long to wait before trying again, given the backoff's own
    /// `pause` and its ceiling: at least what the venue asked for, and the
    /// ceiling after a terminal error.
    pub fn pause(&self, pause: Duration, ceiling: Duration) -> Duration {
        let floor = if self.is_terminal() { ceiling } else { Duration::ZERO };
        pause.max(self.retry_after().unwrap_or_default()).max(floor)
    }
}

/// `Retry-After` in seconds (the form venues send), if present.
fn retry_after(headers: &http::HeaderMap) -> Option<Duration> {
    headers
        .get(http::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

/// The start of a body, enough to name the venue's reason.
fn excerpt(body: &str) -> String {
    let mut end = body.len().min(200);
    while !body.is_char_boundary(end) {
        end -= 1;
    }
    body[..end].to_owned()
}

/// Runs `session` until `shutdown`, reconnecting after each end with
/// capped exponential backoff and full jitter; a session that lived a
/// minute starts the backoff over. A failed session is counted by reason
/// and waits at least what the venue asked for ([`SessionError::pause`]).
/// Every venue's connector uses it.
pub(crate) async fn reconnect_loop<F, Fut>(
    exchange: &str,
    connection: &Connection,
    metrics: &Metrics,
    shutdown: &tokio_util::sync::CancellationToken,
    mut session: F,
) where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), SessionError>>,
{
    let backoff = moat_common_types::backoff::Backoff::new(Duration::from_millis(100), connection.backoff_max);
    let mut attempt = 0u32;
    while !shutdown.is_cancelled() {
        tokio::select! {
            () = connection.limiter.acquire() => {}
            () = shutdown.cancelled() => break,
        }
        let started = std::time::Instant::now();
        let result = session().await;
        if shutdown.is_cancelled() {
            break;
        }
        metrics.reconnects.with_label_values(&[exchange]).inc();
        if started.elapsed() > Duration::from_secs(60) {
            attempt = 0;
        }
        let mut pause = backoff.pause(attempt);
        attempt = attempt.saturating_add(1);
        match result {
            Ok(()) => tracing::info!(exchange, "connection closed, reconnecting"),
            Err(error) => {
                metrics
                    .session_errors
                    .with_label_values(&[exchange, error.reason()])
                    .inc();
                pause = error.pause(pause, connection.backoff_max);
                if error.is_terminal() {
                    tracing::error!(exchange, %error, retry_in_s = pause.as_secs(), "venue refused the session");
                } else {
                    tracing::warn!(exchange, %error, retry_in_ms = pause.as_millis() as u64, "connection failed");
                }
            }
        }
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            () = shutdown.cancelled() => break,
        }
    }
}

/// What a connected WebSocket delivered next.
pub(crate) enum Incoming {
    Text(String),
    /// The venue or the connection ended the session cleanly.
    Closed,
}

/// A venue's WebSocket connection; with a recorder, everything opened,
/// sent and received is written to the recording.
pub(crate) struct Socket {
    ws: tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    url: String,
    recorder: Option<Recorder>,
}

/// Connects to `url` within 10 s and sends `subscribe`, if any.
pub(crate) async fn open(
    url: &str,
    subscribe: Option<String>,
    recorder: Option<&Recorder>,
) -> Result<Socket, SessionError> {
    use tokio_tungstenite::tungstenite::Error as WsError;
    let connect = |detail: String| SessionError::Connect {
        url: url.to_owned(),
        detail,
    };
    let (ws, _) = tokio::time::timeout(Duration::from_secs(10), tokio_tungstenite::connect_async(url))
        .await
        .map_err(|_| connect("no answer within 10 s".into()))?
        .map_err(|e| match e {
            // The venue answered the handshake with an HTTP error.
            WsError::Http(response) => SessionError::Http {
                method: "GET",
                url: url.to_owned(),
                status: response.status().as_u16(),
                retry_after: retry_after(response.headers()),
                body: excerpt(&String::from_utf8_lossy(response.body().as_deref().unwrap_or_default())),
            },
            other => connect(other.to_string()),
        })?;
    if let Some(r) = recorder {
        r.open(url);
    }
    let mut socket = Socket {
        ws,
        url: url.to_owned(),
        recorder: recorder.cloned(),
    };
    if let Some(message) = subscribe {
        socket.send_text(message).await?;
    }
    Ok(socket)
}

impl Socket {
    fn failed(&self, detail: String) -> SessionError {
        SessionError::Socket {
            url: self.url.clone(),
            detail,
        }
    }

    /// The next text frame, answering pings on the way; an error when
    /// nothing arrived for `stale_after` (the connection is dead) or
    /// reading failed.
    pub(crate) async fn next_text(&mut self, stale_after: Duration) -> Result<Incoming, SessionError> {
        use futures::{SinkExt, StreamExt};
        use tokio_tungstenite::tungstenite::Message;
        loop {
            let message = match tokio::time::timeout(stale_after, self.ws.next()).await {
                Err(_) => {
                    return Err(SessionError::Stale {
                        url: self.url.clone(),
                        after: stale_after,
                    });
                }
                Ok(None) => return Ok(Incoming::Closed),
                Ok(Some(Err(e))) => return Err(self.failed(format!("reading: {e}"))),
                Ok(Some(Ok(m))) => m,
            };
            match message {
                Message::Text(t) => {
                    if let Some(r) = &self.recorder {
                        r.received(t.as_str());
                    }
                    return Ok(Incoming::Text(t.as_str().to_owned()));
                }
                Message::Ping(p) => {
                    let _ = self.ws.send(Message::Pong(p)).await;
                }
                Message::Close(_) => return Ok(Incoming::Closed),
                _ => {}
            }
        }
    }

    pub(crate) async fn send_text(&mut self, text: String) -> Result<(), SessionError> {
        use futures::SinkExt;
        if let Some(r) = &self.recorder {
            r.sent(&self.url, &text);
        }
        let sent = self
            .ws
            .send(tokio_tungstenite::tungstenite::Message::Text(text.into()))
            .await;
        sent.map_err(|e| self.failed(format!("sending: {e}")))
    }

    pub(crate) async fn close(&mut self) {
        let _ = self.ws.close(None).await;
    }
}

/// GETs `url` and reads the body of a successful answer (recorded when
/// recording) with `parse`; an HTTP error keeps its status, `Retry-After`
/// and the start of the body, and an answer `parse` refuses is an
/// [`SessionError::Answer`] naming the URL.
pub(crate) async fn get_parsed<T, E: std::fmt::Display>(
    http: &reqwest::Client,
    url: &str,
    recorder: Option<&Recorder>,
    parse: impl FnOnce(&str) -> Result<T, E>,
) -> Result<T, SessionError> {
    let connect = |e: reqwest::Error| SessionError::Connect {
        url: url.to_owned(),
        detail: e.to_string(),
    };
    let response = http.get(url).send().await.map_err(connect)?;
    let status = response.status();
    let asked = retry_after(response.headers());
    let body = response.text().await.map_err(|e| SessionError::Socket {
        url: url.to_owned(),
        detail: format!("reading the answer: {e}"),
    })?;
    if !status.is_success() {
        return Err(SessionError::Http {
            method: "GET",
            url: url.to_owned(),
            status: status.as_u16(),
            retry_after: asked,
            body: excerpt(&body),
        });
    }
    if let Some(r) = recorder {
        r.rest(url, &body);
    }
    parse(&body).map_err(|e| SessionError::Answer {
        url: url.to_owned(),
        detail: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn http(status: u16, retry_after: Option<u64>) -> SessionError {
        SessionError::Http {
            method: "GET",
            url: "https://api.example/depth".into(),
            status,
            retry_after: retry_after.map(Duration::from_secs),
            body: "{\"code\":-1003}".into(),
        }
    }

    #[test]
    fn a_session_waits_what_the_venue_asks_and_long_after_a_refusal() {
        let (pause, ceiling) = (Duration::from_millis(200), Duration::from_secs(30));
        // A rate limit with Retry-After: at least what was asked.
        assert_eq!(http(429, Some(7)).pause(pause, ceiling), Duration::from_secs(7));
        assert_eq!(http(418, Some(120)).pause(pause, ceiling), Duration::from_secs(120));
        // Asked for less than the backoff: the backoff stands.
        assert_eq!(http(429, Some(0)).pause(pause, ceiling), pause);
        // A refusal (unknown symbol, wrong URL): the ceiling, not a hammer.
        assert!(http(400, None).is_terminal());
        assert_eq!(http(429, Some(7)).retry_after(), Some(Duration::from_secs(7)));
        assert_eq!(http(404, None).pause(pause, ceiling), ceiling);
        // Server errors, timeouts and rate limits are not refusals.
        for status in [408, 418, 429, 500, 503] {
            assert!(!http(status, None).is_terminal(), "{status}");
        }
        assert_eq!(http(503, None).pause(pause, ceiling), pause);
        let stale = SessionError::Stale {
            url: "wss://x".into(),
            after: Duration::from_secs(30),
        };
        assert_eq!(stale.pause(pause, ceiling), pause);
    }

    #[test]
    fn reasons_are_bounded_labels_and_messages_name_the_cause() {
        assert_eq!(http(429, Some(7)).reason(), "rate_limited");
        assert_eq!(http(418, None).reason(), "rate_limited");
        assert_eq!(http(502, None).reason(), "http_5xx");
        assert_eq!(http(400, None).reason(), "http_4xx");
        assert_eq!(
            http(429, Some(7)).to_string(),
            "GET https://api.example/depth: HTTP 429 (retry after 7 s): {\"code\":-1003}"
        );
        let stale = SessionError::Stale {
            url: "wss://x".into(),
            after: Duration::from_millis(1500),
        };
        assert_eq!(stale.reason(), "stale");
        assert_eq!(stale.to_string(), "wss://x: no frame for 1500 ms: connection stale");
    }

    #[test]
    fn retry_after_is_read_in_seconds_and_excerpts_cut_on_a_character() {
        let mut headers = http::HeaderMap::new();
        assert_eq!(retry_after(&headers), None);
        headers.insert(http::header::RETRY_AFTER, " 12 ".parse().unwrap());
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(12)));
        // An HTTP date is not what venues send: left to the backoff.
        headers.insert(
            http::header::RETRY_AFTER,
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&headers), None);
        let long = "é".repeat(150);
        assert!(excerpt(&long).len() <= 200 && long.starts_with(&excerpt(&long)));
    }
}
