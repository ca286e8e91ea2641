//! The recording line format (shared with the recordings in
//! `shared/fixtures/exchanges`): WebSocket opens, sent and received frames,
//! REST responses and the subscription that produced them.
//!
//! ```text
//! URL <-> T            a WebSocket connection to URL opened at unix time T
//! URL <- T: PAYLOAD    a frame the client sent
//! T: PAYLOAD           a frame the client received
//! URL -> T: BODY       a REST response body for a GET of URL
//! configuration: JSON  the subscription that produced the recording
//! ```

/// One line of a recording.
#[derive(Debug, Clone, PartialEq)]
pub enum Record<'a> {
    Open { url: &'a str, ts: f64 },
    Sent { url: &'a str, ts: f64, payload: &'a str },
    Received { ts: f64, payload: &'a str },
    Rest { url: &'a str, ts: f64, body: &'a str },
    Configuration(&'a str),
}

/// Parses one line; `None` for a line that is none of the above.
pub fn parse_line(line: &str) -> Option<Record<'_>> {
    let line = line.trim_end_matches(['\r', '\n']);
    if let Some(json) = line.strip_prefix("configuration: ") {
        return Some(Record::Configuration(json));
    }
    // Payloads contain ": " themselves: split on the first one only.
    let (head, payload) = match line.split_once(": ") {
        Some((h, p)) => (h, Some(p)),
        None => (line, None),
    };
    if let Some((url, ts)) = head.rsplit_once(" <-> ") {
        return Some(Record::Open {
            url,
            ts: ts.parse().ok()?,
        });
    }
    if let Some((url, ts)) = head.rsplit_once(" <- ") {
        return Some(Record::Sent {
            url,
            ts: ts.parse().ok()?,
            payload: payload?,
        });
    }
    if let Some((url, ts)) = head.rsplit_once(" -> ") {
        return Some(Record::Rest {
            url,
            ts: ts.parse().ok()?,
            body: payload?,
        });
    }
    Some(Record::Received {
        ts: head.parse().ok()?,
        payload: payload?,
    })
}

/// Writes a venue's traffic in the recording format (`moat-collector
/// record`): every connection opened, frame sent and received, and REST
/// answer. Cheap to clone; every connection of a venue shares one file.
#[derive(Clone)]
pub struct Recorder {
    out: std::sync::Arc<std::sync::Mutex<std::io::BufWriter<std::fs::File>>>,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Recorder")
    }
}

/// Unix time in seconds with microseconds, as the recordings carry it.
fn unix_seconds() -> f64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    (now.as_micros() as f64) / 1e6
}

impl Recorder {
    pub fn create(path: &std::path::Path) -> std::io::Result<Recorder> {
        let file = std::fs::File::create(path)?;
        Ok(Recorder {
            out: std::sync::Arc::new(std::sync::Mutex::new(std::io::BufWriter::with_capacity(1 << 16, file))),
        })
    }

    fn line(&self, line: std::fmt::Arguments<'_>) {
        use std::io::Write;
        let mut out = self.out.lock().expect("recording lock");
        if let Err(error) = out.write_fmt(line).and_then(|()| out.write_all(b"\n")) {
            tracing::error!(%error, "writing the recording failed");
        }
    }

    pub fn configuration(&self, json: &str) {
        self.line(format_args!("configuration: {json}"));
    }

    pub fn open(&self, url: &str) {
        self.line(format_args!("{url} <-> {}", unix_seconds()));
    }

    pub fn sent(&self, url: &str, payload: &str) {
        self.line(format_args!("{url} <- {}: {payload}", unix_seconds()));
    }

    /// A received text frame; a frame with a line break (never seen from a
    /// venue, but JSON allows one) is written on one line.
    pub fn received(&self, payload: &str) {
        if payload.contains('\n') {
            self.line(format_args!(
                "{}: {}",
                unix_seconds(),
                payload.replace(['\r', '\n'], " ")
            ));
        } else {
            self.line(format_args!("{}: {payload}", unix_seconds()));
        }
    }

    pub fn rest(&self, url: &str, body: &str) {
        self.line(format_args!(
            "{url} -> {}: {}",
            unix_seconds(),
            body.replace(['\r', '\n'], " ")
        ));
    }

    pub fn flush(&self) -> std::io::Result<()> {
        use std::io::Write;
        self.out.lock().expect("recording lock").flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_of_line_parses() {
        assert_eq!(
            parse_line("wss://x/ws <-> 1633998511.159679"),
            Some(Record::Open {
                url: "wss://x/ws",
                ts: 1633998511.159679
            })
        );
        assert_eq!(
            parse_line("wss://x/ws <- 1.5: {\"op\": \"subscribe\"}"),
            Some(Record::Sent {
                url: "wss://x/ws",
                ts: 1.5,
                payload: "{\"op\": \"subscribe\"}"
            })
        );
        assert_eq!(
            parse_line("1633998512.06: {\"a\": {\"b\": 1}}"),
            Some(Record::Received {
                ts: 1633998512.06,
                payload: "{\"a\": {\"b\": 1}}"
            })
        );
        assert_eq!(
            parse_line("https://api/depth?symbol=X -> 2.0: {\"lastUpdateId\":1}"),
            Some(Record::Rest {
                url: "https://api/depth?symbol=X",
                ts: 2.0,
                body: "{\"lastUpdateId\":1}"
            })
        );
        assert_eq!(parse_line("configuration: {}"), Some(Record::Configuration("{}")));
        assert_eq!(parse_line("garbage"), None);
    }

    #[test]
    fn a_recorder_writes_lines_the_parser_reads_back() {
        let dir = std::env::temp_dir().join(format!("moat-recorder-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("venue.rec");
        let recorder = Recorder::create(&path).unwrap();
        recorder.configuration(r#"{"kind":"okx"}"#);
        recorder.open("wss://x/ws");
        recorder.sent("wss://x/ws", r#"{"op": "subscribe"}"#);
        recorder.received("{\"a\":\n1}");
        recorder.rest("https://api/depth?symbol=X", r#"{"lastUpdateId": 1}"#);
        recorder.flush().unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let records: Vec<Record<'_>> = text.lines().map(|l| parse_line(l).unwrap()).collect();
        assert_eq!(records.len(), 5, "{text}");
        assert_eq!(records[0], Record::Configuration(r#"{"kind":"okx"}"#));
        assert!(matches!(records[1], Record::Open { url: "wss://x/ws", ts } if ts > 1.6e9));
        assert!(matches!(
            records[2],
            Record::Sent {
                payload: r#"{"op": "subscribe"}"#,
                ..
            }
        ));
        assert!(matches!(
            records[3],
            Record::Received {
                payload: "{\"a\": 1}",
                ..
            }
        ));
        assert!(matches!(
            records[4],
            Record::Rest {
                url: "https://api/depth?symbol=X",
                body: r#"{"lastUpdateId": 1}"#,
                ..
            }
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
