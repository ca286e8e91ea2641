//! The audit log: one JSON line per call on stdout, written by a thread of
//! its own.
//!
//! A call hands its line to a bounded queue and goes on; the writer thread
//! takes every line queued, writes them in one buffered write and flushes,
//! a millisecond apart while calls keep coming, so a line reaches stdout
//! within about a millisecond of its call and nothing waits for the
//! terminal or pipe on the request path. Printing from the calls instead held stdout's lock
//! through a write syscall per line, with every worker thread queueing on
//! it. When the queue is full (stdout cannot keep up) a call waits, as it
//! did with direct printing: audit lines are never dropped.

use std::io::Write;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::time::Duration;

use serde::Serialize;

/// Bytes a call's line is written into at first: a `GetPrice` line is about
/// 200, an RPC line with its chain and method some 60 more. A longer line
/// grows its buffer.
const LINE_CAPACITY: usize = 320;

/// Lines queued before a call waits for the writer.
const QUEUE: usize = 16 * 1024;

enum Message {
    Line(Vec<u8>),
    /// Everything queued before is written and flushed; then the writer answers.
    Flush(SyncSender<()>),
}

/// Where audit lines go. Cloning it shares the one writer.
#[derive(Clone)]
pub struct AuditLog {
    queue: SyncSender<Message>,
}

/// One audit line.
#[derive(Serialize)]
pub struct Line<'a> {
    pub event: &'static str,
    pub timestamp: i64,
    pub service: &'static str,
    pub method: &'static str,
    pub strategy_id: Option<&'a str>,
    pub status: &'a str,
    pub latency_ms: f64,
    pub trace_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chain: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rpc_method: Option<&'a str>,
}

/// The audit line of a tokens-file reload: what changed, by strategy id,
/// or why the file was refused (the last good tokens stay in force).
#[derive(Serialize)]
pub struct TokensReload<'a> {
    /// `tokens_reloaded` or `tokens_reload_failed`.
    pub event: &'static str,
    pub timestamp: i64,
    pub file: &'a str,
    pub trace_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub strategies: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tokens: Option<usize>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    pub added: &'a [String],
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    pub removed: &'a [String],
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    pub changed: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<&'a str>,
}

impl AuditLog {
    /// Starts the writer thread, writing to stdout.
    pub fn stdout() -> AuditLog {
        AuditLog::to(std::io::stdout())
    }

    /// Starts the writer thread, writing to `out`.
    pub fn to(out: impl Write + Send + 'static) -> AuditLog {
        let (queue, lines) = sync_channel(QUEUE);
        std::thread::Builder::new()
            .name("moat-audit".into())
            .spawn(move || write_lines(lines, out))
            .expect("spawning the audit writer thread");
        AuditLog { queue }
    }

    /// Queues `line` ([`Line`] or [`TokensReload`]).
    pub fn write(&self, line: &impl Serialize) {
        let mut text = Vec::with_capacity(LINE_CAPACITY);
        match serde_json::to_writer(&mut text, line) {
            // The writer only stops when every sender is gone.
            Ok(()) => {
                let _ = self.queue.send(Message::Line(text));
            }
            Err(error) => tracing::error!(%error, "encoding an audit line failed"),
        }
    }

    /// Waits (up to `within`) until every line queued so far is written.
    pub fn flush(&self, within: Duration) -> bool {
        let (done, wait) = sync_channel(1);
        self.queue.send(Message::Flush(done)).is_ok() && wait.recv_timeout(within).is_ok()
    }
}

/// How long the writer sleeps between batches while lines keep coming.
const BATCH_PAUSE: Duration = Duration::from_millis(1);

fn write_lines(lines: Receiver<Message>, out: impl Write) {
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, out);
    let mut acks = Vec::new();
    // Parked in `recv` only while idle: the first line after a quiet spell
    // wakes the thread, then it drains the queue once a millisecond until a
    // pause brings nothing. Senders then never pay for waking it (a futex
    // call and a context switch per line, when it parked after each line).
    while let Ok(first) = lines.recv() {
        let mut next = Some(first);
        loop {
            let mut wrote = false;
            while let Some(message) = next {
                match message {
                    Message::Line(text) => {
                        let _ = out.write_all(&text);
                        let _ = out.write_all(b"\n");
                    }
                    Message::Flush(ack) => acks.push(ack),
                }
                wrote = true;
                next = lines.try_recv().ok();
            }
            if let Err(error) = out.flush() {
                eprintln!("moat-gateway: writing audit lines to stdout failed: {error}");
            }
            for ack in acks.drain(..) {
                let _ = ack.send(());
            }
            if !wrote {
                break;
            }
            std::thread::sleep(BATCH_PAUSE);
            next = lines.try_recv().ok();
        }
    }
    let _ = out.flush();
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn line(n: i64, chain: Option<&str>) -> Line<'_> {
        Line {
            event: "gateway_request",
            timestamp: n,
            service: "RpcService",
            method: "Call",
            strategy_id: Some("alpha"),
            status: "ok",
            latency_ms: 0.25,
            trace_id: "4bf92f3577b34da6a3ce929d0e0e4736",
            chain,
            rpc_method: chain.map(|_| "eth_call"),
        }
    }

    #[test]
    fn every_line_is_written_whole_and_in_order() {
        let out = Shared::default();
        let log = AuditLog::to(out.clone());
        let writers: Vec<_> = (0..4)
            .map(|w| {
                let log = log.clone();
                std::thread::spawn(move || {
                    for i in 0..1_000 {
                        log.write(&line(w * 1_000 + i, (i % 2 == 0).then_some("ethereum")));
                    }
                })
            })
            .collect();
        for w in writers {
            w.join().unwrap();
        }
        assert!(log.flush(Duration::from_secs(5)));
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines.len(), 4_000);
        for w in 0..4 {
            let mine: Vec<i64> = lines
                .iter()
                .map(|l| l["timestamp"].as_i64().unwrap())
                .filter(|t| t / 1_000 == w)
                .collect();
            assert_eq!(
                mine,
                (w * 1_000..(w + 1) * 1_000).collect::<Vec<_>>(),
                "writer {w} in order"
            );
        }
        let first = &lines[0];
        assert_eq!(first["strategy_id"], "alpha");
        assert!(
            lines.iter().any(|l| l.get("chain").is_none()),
            "absent fields are left out"
        );
    }
}
