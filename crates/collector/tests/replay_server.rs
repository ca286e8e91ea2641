//! The real Binance connector against the local exchange server replaying
//! a recording over WebSocket and REST.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod common;

use common::fixtures;
use moat_collector::config::VenueConfig;
use moat_collector::metrics::Metrics;
use moat_collector::sink::Sink;
use moat_collector::status::StreamStatus;
use moat_collector::venues::Kind;
use moat_common_types::MarketEvent;
use moat_localvenue::replay::{Recording, ReplayServer, Speed};
use tokio_util::sync::CancellationToken;

#[derive(Default)]
struct Collect(Mutex<Vec<MarketEvent>>);

impl Sink for Collect {
    fn emit(&self, event: MarketEvent) {
        self.0.lock().unwrap().push(event);
    }
}

/// Trades in a recording, counted from the raw frames.
fn recorded_trades(kind: &str, ws: &str) -> usize {
    if kind == "coinbase" {
        ws.lines()
            .filter(|l| l.contains(r#""type":"match""#) || l.contains(r#""type":"last_match""#))
            .count()
    } else if kind == "okx" {
        ws.lines()
            .filter(|l| l.contains(r#""channel":"trades""#) && l.contains(r#""data""#))
            .map(|l| l.matches(r#""tradeId""#).count())
            .sum()
    } else {
        ws.lines().filter(|l| l.contains("\"e\":\"aggTrade\"")).count()
    }
}

fn fixture_texts(name: &str, kind: &str) -> Option<Vec<String>> {
    let dir = fixtures()?;
    let files: Vec<String> = if kind == "coinbase" {
        vec![format!("{name}.ws.28.0")]
    } else if kind == "okx" {
        vec![format!("{name}.ws.1.0")]
    } else {
        vec![format!("{name}.ws.1.0"), format!("{name}.http.0.0")]
    };
    Some(
        files
            .iter()
            .map(|f| std::fs::read_to_string(dir.join(f)).unwrap())
            .collect(),
    )
}

/// The venue config of `kind` pointed at a replay server.
fn venue_at(kind: &str, server: &ReplayServer, symbols: &[String]) -> VenueConfig {
    let kind: Kind = kind.parse().unwrap();
    VenueConfig {
        kind,
        exchange: kind.spec().exchange.into(),
        ws_url: format!("{}{}", server.ws_url(), kind.spec().replay_path),
        rest_url: server.http_url(),
        symbols: symbols.to_vec(),
        ..VenueConfig::default()
    }
}

/// Serves `texts` from a replay server to the real connector of `kind` and
/// returns what it produced once it has every snapshot and
/// `expected_trades` trades (or 10 s passed).
async fn replay(kind: &str, texts: &[String], expected_trades: usize) -> (Vec<MarketEvent>, usize) {
    let recording = Recording::load(texts);
    let symbols = (kind.parse::<Kind>().unwrap().spec().recorded_symbols)(&recording);
    let server = ReplayServer::start(
        tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        recording,
        Speed::Max,
    )
    .await
    .unwrap();
    let venue = moat_collector::venue_connector(&venue_at(kind, &server, &symbols));
    let sink = Arc::new(Collect::default());
    let token = CancellationToken::new();
    let status = StreamStatus::new(kind);
    let task = tokio::spawn(venue.run(sink.clone(), status.clone(), Metrics::new(), token.clone()));
    tokio::time::timeout(Duration::from_secs(30), server.finished())
        .await
        .expect("replay finished");
    // The server has sent everything; wait (bounded) until the connector
    // has taken in every snapshot and trade.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (snapshots, trades) = {
            let events = sink.0.lock().unwrap();
            let count = |f: fn(&MarketEvent) -> bool| events.iter().filter(|e| f(e)).count();
            (
                count(|e| matches!(e, MarketEvent::BookSnapshot(_))),
                count(|e| matches!(e, MarketEvent::Trade(_))),
            )
        };
        if (snapshots == symbols.len() && trades >= expected_trades) || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Frames read after the last trade (book diffs) are still being
    // applied: wait until nothing new has come for 300 ms.
    let mut seen = usize::MAX;
    while Instant::now() < deadline {
        let now = sink.0.lock().unwrap().len();
        if now == seen {
            break;
        }
        seen = now;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(status.is_connected());
    token.cancel();
    task.await.unwrap();
    let events = std::mem::take(&mut *sink.0.lock().unwrap());
    (events, symbols.len())
}

async fn run(name: &str, kind: &str) {
    let Some(texts) = fixture_texts(name, kind) else { return };
    let expected_trades = recorded_trades(kind, &texts[0]);
    let (events, _) = replay(kind, &texts, expected_trades).await;
    let trades = events.iter().filter(|e| matches!(e, MarketEvent::Trade(_))).count();
    let deltas = events.iter().filter(|e| matches!(e, MarketEvent::BookDelta(_))).count();
    let gaps: Vec<_> = events.iter().filter(|e| matches!(e, MarketEvent::Gap(_))).collect();
    assert_eq!(trades, expected_trades, "{name}: trades");
    assert!(deltas > 0, "{name}: no book delta applied");
    assert!(gaps.is_empty(), "{name}: {gaps:?}");
    // Deltas of one book are published in sequence order (OKX's recording
    // predates seqId: its sequence is the exchange time, which may repeat).
    let mut last = std::collections::HashMap::new();
    for e in events.iter() {
        if let MarketEvent::BookDelta(d) = e {
            let prev = last.insert(d.instrument.symbol.clone(), d.sequence);
            let in_order = prev.is_none_or(|p| if kind == "okx" { p <= d.sequence } else { p < d.sequence });
            assert!(in_order, "{name}: deltas out of order");
        }
    }
}

/// `moat-collector record` against the local exchange server writes a
/// recording that replays to the same trades and books as the original.
#[tokio::test(flavor = "multi_thread")]
async fn a_recording_made_by_record_replays_like_the_original() {
    let Some(texts) = fixture_texts("BINANCE", "binance") else {
        return;
    };
    let recording = Recording::load(&texts);
    let symbols = (Kind::Binance.spec().recorded_symbols)(&recording);
    let frames = recording.frames.len();
    let server = ReplayServer::start(
        tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        recording,
        Speed::Max,
    )
    .await
    .unwrap();
    let out = std::env::temp_dir().join(format!("moat-record-{}.rec", std::process::id()));
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_moat-collector"));
    command
        .args(["record", "--exchange", "binance", "--duration", "4", "--out"])
        .arg(&out)
        .args(["--ws-url", &server.ws_url(), "--rest-url", &server.http_url()])
        .args(&symbols)
        .env("MOAT_CONFIG_DIR", "/nonexistent");
    let recorded = tokio::task::spawn_blocking(move || command.output())
        .await
        .unwrap()
        .unwrap();
    assert!(
        recorded.status.success(),
        "{}",
        String::from_utf8_lossy(&recorded.stderr)
    );
    let text = std::fs::read_to_string(&out).unwrap();
    std::fs::remove_file(&out).unwrap();
    let mine = Recording::load(std::slice::from_ref(&text));
    assert_eq!(mine.frames.len(), frames, "every frame the server sent is recorded");
    let sorted = |mut v: Vec<String>| {
        v.sort();
        v
    };
    assert_eq!(
        sorted((Kind::Binance.spec().recorded_symbols)(&mine)),
        sorted(symbols.clone())
    );
    assert_eq!(
        mine.rest.len(),
        symbols.len(),
        "one depth snapshot per symbol: {:?}",
        mine.rest
    );
    assert!(text.starts_with("configuration: "), "{}", &text[..100]);

    let expected_trades = recorded_trades("binance", &texts[0]);
    let (original, _) = replay("binance", &texts, expected_trades).await;
    let (again, _) = replay("binance", &[text], expected_trades).await;
    let trades = |events: &[MarketEvent]| -> Vec<(String, String, String)> {
        events
            .iter()
            .filter_map(|e| match e {
                MarketEvent::Trade(t) => Some((t.trade_id.clone(), t.price.to_string(), t.qty.to_string())),
                _ => None,
            })
            .collect()
    };
    assert_eq!(trades(&again).len(), expected_trades);
    assert_eq!(trades(&again), trades(&original));
    let last_books = |events: &[MarketEvent]| -> std::collections::BTreeMap<String, u64> {
        events
            .iter()
            .filter_map(|e| match e {
                MarketEvent::BookDelta(d) => Some((d.instrument.symbol.clone(), d.sequence)),
                _ => None,
            })
            .collect()
    };
    assert_eq!(last_books(&again), last_books(&original));
}

#[tokio::test]
async fn binance_spot_replay() {
    run("BINANCE", "binance").await;
}

#[tokio::test]
async fn okx_replay() {
    run("OKX", "okx").await;
}

#[tokio::test]
async fn coinbase_replay() {
    run("COINBASE", "coinbase").await;
}

#[tokio::test]
async fn binance_futures_replay() {
    run("BINANCE_FUTURES", "binance-futures").await;
}

#[tokio::test]
async fn venue_outage_reconnects_and_resubscribes_within_the_backoff_bound() {
    let Some(dir) = fixtures() else { return };
    let texts: Vec<String> = ["BINANCE.ws.1.0", "BINANCE.http.0.0"]
        .iter()
        .map(|f| std::fs::read_to_string(dir.join(f)).unwrap())
        .collect();
    let recording = Recording::load(&texts);
    let symbols = (Kind::Binance.spec().recorded_symbols)(&recording);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = ReplayServer::start(listener, recording.clone(), Speed::Max)
        .await
        .unwrap();
    let backoff_max = Duration::from_millis(500);
    let venue = moat_collector::venue_connector(&VenueConfig {
        kind: Kind::Binance,
        exchange: "binance".into(),
        ws_url: server.ws_url(),
        rest_url: server.http_url(),
        symbols: symbols.clone(),
        backoff_max,
        ..VenueConfig::default()
    });
    let sink = Arc::new(Collect::default());
    let token = CancellationToken::new();
    let status = StreamStatus::new("binance");
    let metrics = Metrics::new();
    let task = tokio::spawn(venue.run(sink.clone(), status.clone(), metrics.clone(), token.clone()));
    let snapshots = |sink: &Collect| {
        sink.0
            .lock()
            .unwrap()
            .iter()
            .filter(|e| matches!(e, MarketEvent::BookSnapshot(_)))
            .count()
    };
    let wait = |what: &'static str, f: Box<dyn Fn() -> bool + Send>| async move {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !f() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    let s = sink.clone();
    let n = symbols.len();
    wait("first snapshots", Box::new(move || snapshots(&s) == n)).await;

    // The venue goes away; the connector notices and keeps retrying.
    server.stop();
    let st = status.clone();
    wait("disconnect noticed", Box::new(move || !st.is_connected())).await;
    tokio::time::sleep(backoff_max).await;

    // The venue comes back on the same address: reconnect and resubscribe.
    let restarted = Instant::now();
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let _server = ReplayServer::start(listener, recording, Speed::Max).await.unwrap();
    let s = sink.clone();
    wait("snapshots after reconnect", Box::new(move || snapshots(&s) == 2 * n)).await;
    assert!(
        restarted.elapsed() < backoff_max + Duration::from_secs(2),
        "reconnect took {:?}",
        restarted.elapsed()
    );
    assert!(status.is_connected());
    assert!(metrics.reconnects.with_label_values(&["binance"]).get() >= 1);
    token.cancel();
    task.await.unwrap();
}

/// OKX sends funding and mark price on separate channels; the funding
/// events carry the latest mark price.
#[tokio::test]
async fn okx_funding_events_carry_the_latest_mark_price() {
    let text = [
        r#"wss://ws.okx.com:8443/ws/v5/public <-> 1700724675.0"#,
        r#"wss://ws.okx.com:8443/ws/v5/public <- 1700724675.1: {"op":"subscribe","args":[{"channel":"funding-rate","instId":"BTC-USDT-SWAP"}]}"#,
        r#"1700724675.2: {"arg":{"channel":"funding-rate","instId":"BTC-USDT-SWAP"},"data":[{"fundingRate":"0.0001","fundingTime":"1700726400000","instId":"BTC-USDT-SWAP","instType":"SWAP","nextFundingTime":"1700755200000","ts":"1700724675402"}]}"#,
        r#"1700724675.3: {"arg":{"channel":"mark-price","instId":"BTC-USDT-SWAP"},"data":[{"instType":"SWAP","instId":"BTC-USDT-SWAP","markPx":"37512.5","ts":"1700724675500"}]}"#,
        r#"1700724675.4: {"arg":{"channel":"mark-price","instId":"BTC-USDT-SWAP"},"data":[{"instType":"SWAP","instId":"BTC-USDT-SWAP","markPx":"37513.1","ts":"1700724675700"}]}"#,
        r#"1700724675.5: {"arg":{"channel":"funding-rate","instId":"BTC-USDT-SWAP"},"data":[{"fundingRate":"0.0002","fundingTime":"1700726400000","instId":"BTC-USDT-SWAP","instType":"SWAP","nextFundingTime":"1700755200000","ts":"1700724675900"}]}"#,
    ]
    .join("\n");
    let (events, _) = replay("okx", &[text], 0).await;
    let fundings: Vec<(String, String, i64)> = events
        .iter()
        .filter_map(|e| match e {
            MarketEvent::Funding(f) => Some((f.funding_rate.to_string(), f.mark_price.to_string(), f.ts_exchange_us)),
            _ => None,
        })
        .collect();
    // The venue's "ts" (ms) in µs.
    let expected = [
        ("0.0001", "0", 1_700_724_675_402_000),
        ("0.0001", "37512.5", 1_700_724_675_500_000),
        ("0.0001", "37513.1", 1_700_724_675_700_000),
        ("0.0002", "37513.1", 1_700_724_675_900_000),
    ];
    let expected: Vec<(String, String, i64)> = expected
        .iter()
        .map(|(r, m, t)| ((*r).to_owned(), (*m).to_owned(), *t))
        .collect();
    assert_eq!(fundings, expected);
}

/// OKX sends an option's greeks (`opt-summary`, per family) apart from its
/// mark price: the option ticker waits for the first mark price and then
/// carries the latest one.
#[tokio::test]
async fn okx_option_tickers_carry_the_latest_mark_price() {
    let id = "BTC-USD-241013-70000-P";
    let summary = |ts: u64, vol: &str| {
        format!(
            r#"{{"arg":{{"channel":"opt-summary","instFamily":"BTC-USD"}},"data":[{{"instType":"OPTION","instId":"{id}","uly":"BTC-USD","markVol":"{vol}","bidVol":"0.35","askVol":"0.38","deltaBS":"-0.41","gammaBS":"0.00002","thetaBS":"-80.5","vegaBS":"12.25","ts":"{ts}","fwdPx":"62604.5"}},{{"instType":"OPTION","instId":"BTC-USD-241013-71000-P","markVol":"0.4","ts":"{ts}"}}]}}"#
        )
    };
    let mark = |ts: u64, px: &str| {
        format!(
            r#"{{"arg":{{"channel":"mark-price","instId":"{id}"}},"data":[{{"instType":"OPTION","instId":"{id}","markPx":"{px}","ts":"{ts}"}}]}}"#
        )
    };
    let text = [
        "wss://ws.okx.com:8443/ws/v5/public <-> 1728703155.0".to_owned(),
        format!(r#"wss://ws.okx.com:8443/ws/v5/public <- 1728703155.1: {{"op":"subscribe","args":[{{"channel":"mark-price","instId":"{id}"}},{{"channel":"opt-summary","instFamily":"BTC-USD"}}]}}"#),
        format!("1728703155.2: {}", summary(1728703155200, "0.36")),
        format!("1728703155.3: {}", mark(1728703155300, "0.0125")),
        format!("1728703155.4: {}", summary(1728703155400, "0.37")),
        format!("1728703155.5: {}", mark(1728703155500, "0.013")),
        format!("1728703155.6: {}", summary(1728703155600, "0.38")),
    ]
    .join("\n");
    let (events, _) = replay("okx", &[text], 0).await;
    let tickers: Vec<(String, String, String, i64)> = events
        .iter()
        .filter_map(|e| match e {
            MarketEvent::OptionTicker(t) => Some((
                t.instrument.symbol.clone(),
                t.mark_price.to_string(),
                t.mark_iv.unwrap().to_string(),
                t.ts_exchange_us,
            )),
            _ => None,
        })
        .collect();
    let expected: Vec<(String, String, String, i64)> = [
        ("0.0125", "0.37", 1_728_703_155_400_000),
        ("0.013", "0.38", 1_728_703_155_600_000),
    ]
    .iter()
    .map(|(m, v, t)| (id.to_owned(), (*m).to_owned(), (*v).to_owned(), *t))
    .collect();
    assert_eq!(
        tickers, expected,
        "none before the first mark price; the other strike is not collected"
    );
    let Some(MarketEvent::OptionTicker(t)) = events.iter().find(|e| matches!(e, MarketEvent::OptionTicker(_))) else {
        unreachable!()
    };
    let option = t.instrument.option.as_ref().expect("the option's terms");
    assert_eq!((option.expiry.as_str(), option.settlement.as_str()), ("241013", "BTC"));
    assert_eq!(t.delta.unwrap().to_string(), "-0.41");
    assert_eq!(t.underlying_price.unwrap().to_string(), "62604.5");
}

/// An instrument moat cannot normalize (here an OKX spread) is skipped,
/// counted once as `unknown_instrument` and logged; every other instrument
/// of the session is collected as before, an option among them, with its
/// terms.
#[tokio::test(flavor = "multi_thread")]
async fn an_instrument_that_cannot_be_normalized_never_stops_the_venue() {
    let Some(texts) = fixture_texts("OKX", "okx") else {
        return;
    };
    let (spread, option) = ("BTC-USDT-250328-250627", "ETH-USD-220624-2000-C");
    let mut text = texts[0].clone();
    for (i, id) in [spread, option].into_iter().enumerate() {
        text.push_str(&format!(
            "\nwss://ws.okx.com:8443/ws/v5/public <- 1651584000.0: {{\"op\":\"subscribe\",\"args\":[{{\"channel\":\"trades\",\"instId\":\"{id}\"}}]}}\n\
             1651584000.{i}1: {{\"arg\":{{\"channel\":\"trades\",\"instId\":\"{id}\"}},\"data\":[{{\"instId\":\"{id}\",\"tradeId\":\"1\",\"px\":\"0.01\",\"sz\":\"1\",\"side\":\"buy\",\"ts\":\"1651584000100\"}}]}}\n"
        ));
    }
    // The recorded trades and the option's.
    let expected_trades = recorded_trades("okx", &texts[0]) + 1;
    let recording = Recording::load(&[text]);
    let symbols = (Kind::Okx.spec().recorded_symbols)(&recording);
    assert!(symbols.iter().any(|s| s == spread), "the session subscribes the spread");
    let server = ReplayServer::start(
        tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        recording,
        Speed::Max,
    )
    .await
    .unwrap();
    let venue = moat_collector::venue_connector(&venue_at("okx", &server, &symbols));
    assert_eq!(venue.instruments().skipped().len(), 1);
    let (sink, metrics, token) = (Arc::new(Collect::default()), Metrics::new(), CancellationToken::new());
    let task = tokio::spawn(venue.run(sink.clone(), StreamStatus::new("okx"), metrics.clone(), token.clone()));
    tokio::time::timeout(Duration::from_secs(30), server.finished())
        .await
        .expect("replay finished");
    let trades = || {
        let events = sink.0.lock().unwrap();
        events
            .iter()
            .filter_map(|e| match e {
                MarketEvent::Trade(t) => Some(t.clone()),
                _ => None,
            })
            .collect::<Vec<_>>()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while trades().len() < expected_trades && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    token.cancel();
    task.await.unwrap();
    let trades = trades();
    assert_eq!(trades.len(), expected_trades, "every trade of the other instruments");
    let option_trade = trades
        .iter()
        .find(|t| t.instrument.venue_symbol == option)
        .expect("the option's trade");
    assert_eq!(option_trade.instrument.market, moat_common_types::Market::Option);
    assert_eq!(option_trade.instrument.symbol, option);
    let terms = option_trade.instrument.option.as_ref().expect("option terms");
    assert_eq!((terms.expiry.as_str(), terms.settlement.as_str()), ("220624", "ETH"));
    let skipped = metrics.rejects.with_label_values(&["okx", "unknown_instrument"]).get();
    assert_eq!(skipped, 1, "the spread is counted once");
    let unknown = metrics.rejects.with_label_values(&["okx", "unknown_symbol"]).get();
    assert_eq!(unknown, 1, "its trade frame is refused, not published");
}
