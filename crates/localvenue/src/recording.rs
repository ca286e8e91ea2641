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
}
