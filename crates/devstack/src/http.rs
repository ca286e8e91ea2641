//! A minimal blocking HTTP/1.0 client, enough for health probes and
//! ClickHouse queries without pulling an HTTP stack into xtask.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use crate::Result;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    pub status: u16,
    pub body: String,
}

impl HttpResponse {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

fn request(addr: &str, method: &str, path: &str, body: &[u8], timeout: Duration) -> Result<HttpResponse> {
    let target: SocketAddr = addr
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {addr}: {e}"))?
        .next()
        .ok_or_else(|| format!("{addr} resolves to no address"))?;
    let mut stream = TcpStream::connect_timeout(&target, timeout).map_err(|e| format!("connect to {addr}: {e}"))?;
    stream.set_read_timeout(Some(timeout)).map_err(|e| e.to_string())?;
    stream.set_write_timeout(Some(timeout)).map_err(|e| e.to_string())?;
    let head = format!(
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream
        .write_all(head.as_bytes())
        .and_then(|()| stream.write_all(body))
        .map_err(|e| format!("{method} {addr}{path}: {e}"))?;
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .map_err(|e| format!("{method} {addr}{path}: reading the answer: {e}"))?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("{method} {addr}{path}: not an HTTP answer: {head:.80}"))?;
    Ok(HttpResponse {
        status,
        body: body.to_owned(),
    })
}

/// `GET http://addr/path` with a timeout on connect, write and read.
pub fn http_get(addr: &str, path: &str, timeout: Duration) -> Result<HttpResponse> {
    request(addr, "GET", path, &[], timeout)
}

/// `POST http://addr/path` with `body`.
pub fn http_post(addr: &str, path: &str, body: &str, timeout: Duration) -> Result<HttpResponse> {
    request(addr, "POST", path, body.as_bytes(), timeout)
}

/// Polls `GET addr/path` until it answers 2xx or `deadline` passes; the
/// error carries the last answer or connection error.
pub fn wait_http_ok(addr: &str, path: &str, deadline: Duration) -> Result<HttpResponse> {
    let start = Instant::now();
    let mut last = String::from("no attempt");
    while start.elapsed() < deadline {
        match http_get(addr, path, Duration::from_secs(2)) {
            Ok(r) if r.is_success() => return Ok(r),
            Ok(r) => last = format!("HTTP {}: {}", r.status, r.body.trim()),
            Err(e) => last = e,
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(format!(
        "http://{addr}{path} not healthy after {:.1}s: {last}",
        deadline.as_secs_f64()
    ))
}
