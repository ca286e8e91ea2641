//! The HTTP server loop every service uses for its HTTP/1.1 surface, with a header-read timeout (a client that opens a connection
//! and dribbles its headers is cut off), an idle timeout for keep-alive
//! connections, and a graceful drain on shutdown.
//!
//! The two timeouts are kept apart on purpose. A connection waiting between
//! requests is normal and may stay open for `idle_timeout`, which defaults
//! to longer than the 60 s idle timeout of common proxies and load
//! balancers, so that the proxy closes first and never sends a request into
//! a connection the server is closing. A request whose first byte arrived
//! must have complete headers within `header_read_timeout`.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::ConnectInfo;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::Service;

use crate::tls::{PeerCerts, TlsServer};

/// Connection timeouts of an HTTP server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServerTimeouts {
    /// From a request's first byte to its last header line.
    pub header_read: Duration,
    /// A connection with no request in flight and nothing received for this
    /// long is closed.
    pub idle: Duration,
}

impl Default for ServerTimeouts {
    fn default() -> Self {
        ServerTimeouts {
            header_read: Duration::from_secs(10),
            idle: Duration::from_secs(75),
        }
    }
}

/// What a connection's watchdog sees: bytes read, requests in flight.
struct Activity {
    epoch: Instant,
    /// Milliseconds since `epoch` of the last read that returned bytes.
    last_read_ms: AtomicU64,
    /// Milliseconds since `epoch` of the first byte read while no request
    /// was in flight (the start of the next request's headers); 0 = none.
    head_started_ms: AtomicU64,
    in_flight: AtomicUsize,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            epoch: Instant::now(),
            last_read_ms: AtomicU64::new(0),
            head_started_ms: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
        }
    }

    fn now_ms(&self) -> u64 {
        // +1 so that 0 keeps meaning "not set".
        self.epoch.elapsed().as_millis() as u64 + 1
    }

    fn read(&self) {
        let now = self.now_ms();
        self.last_read_ms.store(now, Ordering::Relaxed);
        if self.in_flight.load(Ordering::Acquire) == 0 {
            let _ = self
                .head_started_ms
                .compare_exchange(0, now, Ordering::AcqRel, Ordering::Relaxed);
        }
    }

    fn request_started(&self) {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.head_started_ms.store(0, Ordering::Release);
    }

    fn request_finished(&self) {
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
    }

    /// Why the connection should be closed now, if it should.
    fn expired(&self, timeouts: &ServerTimeouts) -> Option<&'static str> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        let now = self.now_ms();
        let head = self.head_started_ms.load(Ordering::Acquire);
        if head != 0 && now.saturating_sub(head) > timeouts.header_read.as_millis() as u64 {
            return Some("header_read_timeout");
        }
        let last = self.last_read_ms.load(Ordering::Relaxed).max(1);
        (now.saturating_sub(last) > timeouts.idle.as_millis() as u64).then_some("idle_timeout")
    }
}

/// A stream that reports reads to its connection's [`Activity`].
struct Watched<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(result, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.read();
        }
        result
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Marks a request in flight until its response future completes or is
/// dropped.
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.request_finished();
    }
}

/// Serves `router` on `listener` until `shutdown` resolves, then stops
/// accepting and lets in-flight requests finish.
pub async fn serve_with(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
    timeouts: ServerTimeouts,
) -> io::Result<()> {
    serve_tls(listener, router, shutdown, timeouts, None).await
}

/// [`serve_with`], through TLS when `tls` is given: each connection's
/// handshake runs in its own task, and a refused one is counted and logged
/// by [`TlsServer`].
pub async fn serve_tls(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
    timeouts: ServerTimeouts,
    tls: Option<Arc<TlsServer>>,
) -> io::Result<()> {
    let stop = CancellationToken::new();
    let connections = TaskTracker::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(error) => {
                    // Out of file descriptors and the like: back off, keep serving.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let (router, stop) = (router.clone(), stop.clone());
        match &tls {
            None => connections.spawn(connection(stream, peer, None, router, timeouts, stop)),
            Some(tls) => {
                let tls = tls.clone();
                connections.spawn(async move {
                    if let Some(stream) = tls.accept(stream, peer).await {
                        let certs = stream
                            .get_ref()
                            .1
                            .peer_certificates()
                            .map(|c| PeerCerts(Arc::new(c.to_vec())));
                        connection(stream, peer, certs, router, timeouts, stop).await;
                    }
                })
            }
        };
    }
    stop.cancel();
    connections.close();
    connections.wait().await;
    Ok(())
}

async fn connection<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
    stream: S,
    peer: SocketAddr,
    certs: Option<PeerCerts>,
    router: Router,
    timeouts: ServerTimeouts,
    stop: CancellationToken,
) {
    let activity = Arc::new(Activity::new());
    let io = TokioIo::new(Watched {
        inner: stream,
        activity: activity.clone(),
    });
    let service = {
        let activity = activity.clone();
        hyper::service::service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            if let Some(certs) = &certs {
                request.extensions_mut().insert(certs.clone());
            }
            activity.request_started();
            let guard = InFlight(activity.clone());
            let mut router = router.clone();
            async move {
                let response = router.call(request).await;
                drop(guard);
                response
            }
        })
    };
    let conn = hyper::server::conn::http1::Builder::new().serve_connection(io, service);
    tokio::pin!(conn);
    let tick = (timeouts.header_read.min(timeouts.idle) / 4).clamp(Duration::from_millis(10), Duration::from_secs(1));
    let mut watchdog = tokio::time::interval(tick);
    let mut draining = false;
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(error) = result {
                    tracing::debug!(%peer, %error, "connection ended with an error");
                }
                return;
            }
            () = stop.cancelled(), if !draining => {
                draining = true;
                conn.as_mut().graceful_shutdown();
            }
            _ = watchdog.tick() => {
                if let Some(reason) = activity.expired(&timeouts) {
                    tracing::debug!(%peer, reason, "closing connection");
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    async fn server(timeouts: ServerTimeouts) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let router = Router::new().route(
            "/peer",
            axum::routing::get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move { peer.to_string() }),
        );
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(serve_with(
            listener,
            router,
            async {
                let _ = rx.await;
            },
            timeouts,
        ));
        (addr, tx)
    }

    /// Reads until the server closes the connection; returns what it sent.
    async fn read_until_closed(stream: &mut TcpStream, within: Duration) -> Option<String> {
        let mut buf = Vec::new();
        match tokio::time::timeout(within, stream.read_to_end(&mut buf)).await {
            Ok(_) => Some(String::from_utf8_lossy(&buf).into_owned()),
            Err(_) => None,
        }
    }

    #[tokio::test]
    async fn slow_headers_are_cut_off_but_idle_connections_stay() {
        let timeouts = ServerTimeouts {
            header_read: Duration::from_millis(300),
            idle: Duration::from_secs(3),
        };
        let (addr, _stop) = server(timeouts).await;

        // Half a request line, then nothing: closed after the header timeout.
        let mut slow = TcpStream::connect(addr).await.unwrap();
        slow.write_all(b"GET /peer HTTP/1.1\r\nhost: x\r\n").await.unwrap();
        let started = Instant::now();
        assert!(read_until_closed(&mut slow, Duration::from_secs(2)).await.is_some());
        assert!(started.elapsed() >= Duration::from_millis(300));

        // A keep-alive connection idle for longer than the header timeout
        // still serves its next request, and sees the peer address.
        let mut idle = TcpStream::connect(addr).await.unwrap();
        let request = b"GET /peer HTTP/1.1\r\nhost: x\r\n\r\n";
        idle.write_all(request).await.unwrap();
        let mut buf = [0u8; 512];
        let n = idle.read(&mut buf).await.unwrap();
        let first = String::from_utf8_lossy(&buf[..n]).into_owned();
        assert!(first.starts_with("HTTP/1.1 200"), "{first}");
        assert!(first.contains(&idle.local_addr().unwrap().to_string()), "{first}");
        tokio::time::sleep(Duration::from_millis(900)).await;
        idle.write_all(b"GET /peer HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            .await
            .unwrap();
        let second = read_until_closed(&mut idle, Duration::from_secs(2)).await.unwrap();
        assert!(second.starts_with("HTTP/1.1 200"), "{second}");
    }

    #[tokio::test]
    async fn idle_connections_close_after_the_idle_timeout() {
        let timeouts = ServerTimeouts {
            header_read: Duration::from_millis(200),
            idle: Duration::from_millis(600),
        };
        let (addr, _stop) = server(timeouts).await;
        let mut idle = TcpStream::connect(addr).await.unwrap();
        let started = Instant::now();
        assert_eq!(
            read_until_closed(&mut idle, Duration::from_secs(3)).await.as_deref(),
            Some("")
        );
        assert!(
            started.elapsed() >= Duration::from_millis(600),
            "{:?}",
            started.elapsed()
        );
    }
}
