//! The real Binance connector against the generated local exchange: books
//! republished whole agree with the deltas before them, and a cut
//! connection is replaced, resubscribed, and the trades missed meanwhile are
//! published as a gap.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use moat_collector::config::VenueConfig;
use moat_collector::metrics::Metrics;
use moat_collector::sink::Sink;
use moat_collector::status::StreamStatus;
use moat_collector::venues::Kind;
use moat_common_types::MarketEvent;
use moat_common_types::model::Level;
use moat_localvenue::exchange::{GeneratedExchange, GeneratedSymbol};
use rust_decimal::Decimal;
use tokio_util::sync::CancellationToken;

#[derive(Default)]
struct Collect(Mutex<Vec<MarketEvent>>);

impl Sink for Collect {
    fn emit(&self, event: MarketEvent) {
        self.0.lock().unwrap().push(event);
    }
}

impl Collect {
    fn count(&self, f: impl Fn(&MarketEvent) -> bool) -> usize {
        self.0.lock().unwrap().iter().filter(|e| f(e)).count()
    }
}

fn apply(side: &mut BTreeMap<Decimal, Decimal>, levels: &[Level]) {
    for l in levels {
        if l.qty.is_zero() {
            side.remove(&l.price);
        } else {
            side.insert(l.price, l.qty);
        }
    }
}

fn side(levels: &[Level]) -> BTreeMap<Decimal, Decimal> {
    levels.iter().map(|l| (l.price, l.qty)).collect()
}

async fn wait_for(what: &str, within: Duration, check: impl Fn() -> bool) {
    let deadline = Instant::now() + within;
    while !check() {
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A generated exchange of one symbol (`BTCUSDT=60000.00`) at `rate`
/// trades/s, and the venue config of the real Binance connector for it.
async fn exchange_and_venue(spec: &str, rate: u32) -> (GeneratedExchange, VenueConfig) {
    let symbol = GeneratedSymbol::parse(spec).unwrap();
    let exchange = GeneratedExchange::start(
        tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        std::slice::from_ref(&symbol),
        rate,
    )
    .await
    .unwrap();
    let venue = VenueConfig {
        kind: Kind::Binance,
        exchange: "local".into(),
        ws_url: exchange.ws_url(),
        rest_url: exchange.http_url(),
        symbols: vec![symbol.venue_symbol],
        open_interest_interval: Duration::ZERO,
        backoff_max: Duration::from_millis(500),
        ..VenueConfig::default()
    };
    (exchange, venue)
}

#[tokio::test(flavor = "multi_thread")]
async fn republished_books_match_the_deltas_and_a_cut_connection_is_replaced_with_a_gap() {
    let (exchange, venue) = exchange_and_venue("BTCUSDT=60000.00", 1_000).await;
    let venue = moat_collector::venue_connector(&VenueConfig {
        book_snapshot_interval: Duration::from_millis(250),
        ..venue
    });
    let sink = Arc::new(Collect::default());
    let metrics = Metrics::new();
    let token = CancellationToken::new();
    let status = StreamStatus::new("local");
    let task = tokio::spawn(venue.run(sink.clone(), status.clone(), metrics.clone(), token.clone()));

    let snapshots = |s: &Collect| s.count(|e| matches!(e, MarketEvent::BookSnapshot(_)));
    wait_for("three republished books", Duration::from_secs(10), || {
        snapshots(&sink) >= 4
    })
    .await;

    // The venue goes away; the connector must come back on its own.
    let before = sink.count(|e| matches!(e, MarketEvent::Trade(_)));
    exchange.disconnect_all();
    wait_for("a reconnect", Duration::from_secs(10), || {
        metrics.reconnects.with_label_values(&["local"]).get() >= 1
    })
    .await;
    wait_for("trades after the reconnect", Duration::from_secs(10), || {
        sink.count(|e| matches!(e, MarketEvent::Trade(_))) > before + 100
    })
    .await;
    assert!(status.is_connected());
    token.cancel();
    task.await.unwrap();

    // Walk the events of each connection: every snapshot after the first
    // must equal the book the deltas before it built, at the same sequence.
    let events = sink.0.lock().unwrap();
    let (mut bids, mut asks, mut sequence) = (BTreeMap::new(), BTreeMap::new(), None::<u64>);
    let mut checked = 0;
    for event in events.iter() {
        match event {
            MarketEvent::BookSnapshot(s) => {
                if sequence == Some(s.sequence) {
                    assert_eq!(side(&s.bids), bids, "bids of the republished book at {}", s.sequence);
                    assert_eq!(side(&s.asks), asks, "asks of the republished book at {}", s.sequence);
                    checked += 1;
                }
                (bids, asks, sequence) = (side(&s.bids), side(&s.asks), Some(s.sequence));
            }
            MarketEvent::BookDelta(d) if sequence.is_some() => {
                apply(&mut bids, &d.bids);
                apply(&mut asks, &d.asks);
                sequence = Some(d.sequence);
            }
            _ => {}
        }
    }
    assert!(checked >= 3, "only {checked} republished books were checked");
    // Trades generated while the connector was away are lost by design:
    // every hole in the trade ids is announced by a gap event naming the
    // last id before it, and counted.
    let mut last = None::<u64>;
    let mut announced = None::<u64>;
    let mut holes = 0;
    for event in events.iter() {
        match event {
            MarketEvent::Gap(g) if g.reason == "trades" => announced = Some(g.last_sequence),
            MarketEvent::Trade(t) => {
                let id: u64 = t.trade_id.parse().unwrap();
                if let Some(prev) = last
                    && id != prev + 1
                {
                    assert_eq!(
                        announced,
                        Some(prev),
                        "trade ids jump from {prev} to {id} without a gap event"
                    );
                    holes += 1;
                }
                last = Some(id);
            }
            _ => {}
        }
    }
    let gaps = events
        .iter()
        .filter(|e| matches!(e, MarketEvent::Gap(g) if g.reason == "trades"))
        .count();
    eprintln!("{holes} hole(s) in the trade ids, {checked} republished books checked");
    assert_eq!(gaps, holes, "one gap event per hole");
    assert_eq!(metrics.gaps.with_label_values(&["local", "trades"]).get(), holes as u64);
}

/// A venue past its request weight answers 429 with `Retry-After`: the
/// connector waits what it was told before asking for the book again,
/// counts the refusals, and the book comes once the venue allows it.
#[tokio::test(flavor = "multi_thread")]
async fn a_rate_limited_snapshot_waits_the_retry_after_it_was_given() {
    let (exchange, venue) = exchange_and_venue("ETHUSDT=3000.00", 100).await;
    exchange.rate_limit_depth(2, 2);
    let venue = moat_collector::venue_connector(&venue);
    let sink = Arc::new(Collect::default());
    let metrics = Metrics::new();
    let token = CancellationToken::new();
    let started = Instant::now();
    let task = tokio::spawn(venue.run(sink.clone(), StreamStatus::new("local"), metrics.clone(), token.clone()));
    wait_for("the book after two refusals", Duration::from_secs(20), || {
        sink.count(|e| matches!(e, MarketEvent::BookSnapshot(_))) >= 1
    })
    .await;
    let waited = started.elapsed();
    token.cancel();
    task.await.unwrap();
    // Two refusals of 2 s each: not asked again sooner than told.
    assert!(waited >= Duration::from_millis(3_900), "the book came after {waited:?}");
    let refused = metrics
        .session_errors
        .with_label_values(&["local", "rate_limited"])
        .get();
    assert_eq!(refused, 2);
    // Trades flowed meanwhile: a refused snapshot does not end the session.
    assert!(sink.count(|e| matches!(e, MarketEvent::Trade(_))) > 0);
    assert_eq!(metrics.reconnects.with_label_values(&["local"]).get(), 0);
}
