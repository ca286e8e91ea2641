//! Writing a venue's traffic in the recording format
//! ([`moat_localvenue::recording`], which also reads it back).

pub use moat_localvenue::recording::{Record, parse_line};

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
