//! Every venue's connector against a reference: the real recorded sessions
//! in `shared/fixtures/exchanges`, replayed by `moat-collector replay
//! --emit jsonl --book-top`, must give the same trades (symbol, id, price,
//! quantity, side) and the same tops of book, update after update, as
//! cryptofeed 2.4.1 playing the same files back through its own
//! normalization (`tests/reference/cryptofeed_playback.py`).
//!
//! Where the two disagree and the venue's documentation sides with moat,
//! the case is written down in [`KNOWN`] with the reason. The script plays
//! each recorded connection on its own, as the venue served it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use moat_integration_tests::{bin, fixtures};
use rust_decimal::Decimal;

/// A venue's recording and the names both sides give it.
struct Session {
    /// `moat-collector replay --exchange`.
    kind: &'static str,
    /// cryptofeed's feed name.
    feed: &'static str,
    /// The REST file first (instruments and the `configuration:` line),
    /// then the recorded traffic.
    files: &'static [&'static str],
}

const SESSIONS: &[Session] = &[
    Session {
        kind: "binance",
        feed: "BINANCE",
        files: &["BINANCE.0", "BINANCE.http.0.0", "BINANCE.ws.1.0"],
    },
    Session {
        kind: "binance-futures",
        feed: "BINANCE_FUTURES",
        files: &[
            "BINANCE_FUTURES.0",
            "BINANCE_FUTURES.http.0.0",
            "BINANCE_FUTURES.ws.1.0",
        ],
    },
    Session {
        kind: "binance-delivery",
        feed: "BINANCE_DELIVERY",
        files: &[
            "BINANCE_DELIVERY.0",
            "BINANCE_DELIVERY.http.0.0",
            "BINANCE_DELIVERY.ws.1.0",
        ],
    },
    Session {
        kind: "okx",
        feed: "OKX",
        files: &["OKX.0", "OKX.ws.1.0"],
    },
    Session {
        kind: "bybit",
        feed: "BYBIT",
        files: &["BYBIT.0", "BYBIT.ws.2.0", "BYBIT.ws.3.0"],
    },
    Session {
        kind: "kraken",
        feed: "KRAKEN",
        files: &["KRAKEN.0", "KRAKEN.ws.48.0", "KRAKEN.ws.49.0", "KRAKEN.ws.50.0"],
    },
    Session {
        kind: "gemini",
        feed: "GEMINI",
        files: &["GEMINI.0", "GEMINI.ws.1.0"],
    },
    Session {
        kind: "bitstamp",
        feed: "BITSTAMP",
        files: &["BITSTAMP.0", "BITSTAMP.http.0.0", "BITSTAMP.ws.1.0"],
    },
    Session {
        kind: "kraken-futures",
        feed: "KRAKEN_FUTURES",
        files: &["KRAKEN_FUTURES.0", "KRAKEN_FUTURES.ws.1.0"],
    },
    Session {
        kind: "deribit",
        feed: "DERIBIT",
        files: &["DERIBIT.0", "DERIBIT.ws.1.0"],
    },
    Session {
        kind: "bitmex",
        feed: "BITMEX",
        files: &["BITMEX.0", "BITMEX.ws.1.0"],
    },
    // Not Coinbase: cryptofeed 2.4.1 speaks Coinbase Advanced Trade
    // (`level2`, `market_trades`, a `products` object), and the recording
    // is the Exchange feed (`l2update`, `match`, a products list) that moat
    // reads; its own tests check it frame by frame.
];

/// Disagreements that the venue's documentation decides for moat:
/// `(kind, what, why)`. Empty while moat and cryptofeed agree everywhere.
const KNOWN: &[(&str, &str, &str)] = &[];

/// A price level, and the best bid and ask after one book update.
type Level = (Decimal, Decimal);
type Top = (Option<Level>, Option<Level>);
type Trade = (String, Decimal, Decimal, String);

/// What one side made of a session.
#[derive(Debug, Default, PartialEq)]
struct Outcome {
    /// Per symbol, in order: `(id, price, quantity, side)`; the id is empty
    /// where the venue sends none (Kraken v1), and is then not compared.
    trades: BTreeMap<String, Vec<Trade>>,
    /// Per symbol, the tops of book in order, a repeated top kept once
    /// (one side may report an update that leaves the top as it was).
    tops: BTreeMap<String, Vec<Top>>,
}

fn decimal(v: &serde_json::Value) -> Decimal {
    let text = v.as_str().unwrap_or_else(|| panic!("a decimal string, got {v}"));
    text.parse::<Decimal>()
        .unwrap_or_else(|e| panic!("{text}: {e}"))
        .normalize()
}

fn level(v: &serde_json::Value) -> Option<Level> {
    v.as_array().map(|pair| (decimal(&pair[0]), decimal(&pair[1])))
}

/// Reads JSON lines of `trade` and `book_top` objects (both sides write
/// the same fields); other kinds are left out.
fn outcome(lines: &str) -> Outcome {
    let mut out = Outcome::default();
    for line in lines.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        let symbol = v["symbol"].as_str().unwrap_or_default().to_owned();
        match v["kind"].as_str() {
            Some("trade") => out.trades.entry(symbol).or_default().push((
                v["trade_id"].as_str().unwrap_or_default().to_owned(),
                decimal(&v["price"]),
                decimal(&v["qty"]),
                v["side"].as_str().unwrap_or_default().to_owned(),
            )),
            Some("book_top") => {
                let top = (level(&v["best_bid"]), level(&v["best_ask"]));
                let tops = out.tops.entry(symbol).or_default();
                if tops.last() != Some(&top) {
                    tops.push(top);
                }
            }
            _ => {}
        }
    }
    out
}

fn run(command: &mut Command) -> String {
    let output = command.output().unwrap_or_else(|e| panic!("running {command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("UTF-8 output")
}

fn moat(session: &Session, dir: &Path) -> Outcome {
    // The replay serves the traffic; the REST file holds instruments only.
    let files = session
        .files
        .iter()
        .filter(|f| f.contains(".ws.") || f.contains(".http."));
    outcome(&run(Command::new(bin("moat-collector"))
        .args(["replay", "--exchange", session.kind, "--emit", "jsonl", "--book-top"])
        .args(files.map(|f| dir.join(f)))
        .env("MOAT_CONFIG_DIR", "/nonexistent")
        .env("RUST_LOG", "warn")))
}

fn reference(python: &Path, session: &Session, dir: &Path) -> Outcome {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("reference/cryptofeed_playback.py");
    let scratch = moat_integration_tests::scratch();
    outcome(&run(Command::new(python)
        .arg(script)
        .arg(session.feed)
        .args(session.files.iter().map(|f| dir.join(f)))
        .current_dir(scratch.path())
        .env("PYTHONHASHSEED", "0")))
}

/// The first difference between two outcomes, named for a person.
fn difference(kind: &str, ours: &Outcome, theirs: &Outcome) -> Option<String> {
    let symbols: std::collections::BTreeSet<&String> = ours.trades.keys().chain(theirs.trades.keys()).collect();
    for symbol in symbols {
        let (a, b) = (ours.trades.get(symbol), theirs.trades.get(symbol));
        let (a, b) = (a.map_or(&[][..], Vec::as_slice), b.map_or(&[][..], Vec::as_slice));
        let same = |x: Option<&Trade>, y: Option<&Trade>| match (x, y) {
            (Some(x), Some(y)) => (y.0.is_empty() || x.0 == y.0) && (&x.1, &x.2, &x.3) == (&y.1, &y.2, &y.3),
            (x, y) => x == y,
        };
        if let Some(i) = (0..a.len().max(b.len())).find(|&i| !same(a.get(i), b.get(i))) {
            return Some(format!(
                "{kind} {symbol}: trade #{i} differs: moat {:?}, cryptofeed {:?} ({} against {} trades)",
                a.get(i),
                b.get(i),
                a.len(),
                b.len()
            ));
        }
    }
    let symbols: std::collections::BTreeSet<&String> = ours.tops.keys().chain(theirs.tops.keys()).collect();
    for symbol in symbols {
        let (a, b) = (ours.tops.get(symbol), theirs.tops.get(symbol));
        let (a, b) = (a.map_or(&[][..], Vec::as_slice), b.map_or(&[][..], Vec::as_slice));
        if let Some(i) = (0..a.len().max(b.len())).find(|&i| a.get(i) != b.get(i)) {
            return Some(format!(
                "{kind} {symbol}: top of book #{i} differs: moat {:?}, cryptofeed {:?} ({} against {} tops)",
                a.get(i),
                b.get(i),
                a.len(),
                b.len()
            ));
        }
    }
    None
}

#[test]
fn every_venue_replays_like_the_reference_feed_handler() {
    let Some(dir) = fixtures() else { return };
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let python = moat_devstack::peers::ensure_reference_venv(&root).expect("the reference feed handler installs");
    let mut failures = Vec::new();
    for session in SESSIONS {
        let (ours, theirs) = (moat(session, &dir), reference(&python, session, &dir));
        let trades: usize = theirs.trades.values().map(Vec::len).sum();
        let tops: usize = theirs.tops.values().map(Vec::len).sum();
        eprintln!("{}: {trades} trades and {tops} tops of book compared", session.kind);
        assert!(
            tops > 0,
            "{}: cryptofeed made no book; the comparison would prove nothing",
            session.kind
        );
        if let Some(difference) = difference(session.kind, &ours, &theirs)
            && !KNOWN
                .iter()
                .any(|(kind, what, _)| *kind == session.kind && difference.contains(what))
        {
            failures.push(difference);
        }
        let crossed = ours
            .tops
            .values()
            .flatten()
            .filter(|(bid, ask)| matches!((bid, ask), (Some(b), Some(a)) if b.0 >= a.0))
            .count();
        if crossed > 0 {
            failures.push(format!("{}: {crossed} crossed tops of book published", session.kind));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn a_difference_is_found_and_named() {
    let line = |price: &str| {
        format!(r#"{{"kind":"trade","symbol":"BTC-USDT","trade_id":"7","price":"{price}","qty":"1.50","side":"buy"}}"#)
    };
    let ours = outcome(&line("100.0"));
    assert_eq!(difference("x", &ours, &outcome(&line("100"))), None, "100.0 is 100");
    let no_id = line("100").replace(r#""trade_id":"7""#, r#""trade_id":null"#);
    assert_eq!(difference("x", &ours, &outcome(&no_id)), None, "no id to compare");
    let other_id = line("100").replace(r#""trade_id":"7""#, r#""trade_id":"8""#);
    assert!(difference("x", &ours, &outcome(&other_id)).is_some(), "ids differ");
    let found = difference("x", &ours, &outcome(&line("100.1"))).expect("a price differs");
    assert!(found.contains("BTC-USDT") && found.contains("trade #0"), "{found}");
    let top = |bid: &str| {
        format!(r#"{{"kind":"book_top","symbol":"ETH-USD","best_bid":["{bid}","1"],"best_ask":["3001","2"]}}"#)
    };
    let repeated = outcome(&format!("{}\n{}\n{}", top("3000"), top("3000"), top("2999")));
    assert_eq!(repeated.tops["ETH-USD"].len(), 2, "a repeated top is kept once");
    let found = difference("x", &repeated, &outcome(&top("3000"))).expect("a top is missing");
    assert!(found.contains("top of book #1"), "{found}");
}
