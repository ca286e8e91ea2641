//! The collector's publisher on a real NATS that goes away and comes back:
//! events are held in the bounded queue and delivered once, in full.

use std::time::Duration;

use moat_collector::config::PublisherConfig;
use moat_collector::metrics::Metrics;
use moat_collector::publisher::{EventQueue, run_publisher};
use moat_common_types::model::{Instrument, Trade};
use moat_common_types::nats::{StreamSettings, ensure_stream};
use moat_common_types::{Decimal, Market, MarketEvent, Side};
use moat_integration_tests::{eventually, own_nats, stream_events};
use tokio_util::sync::CancellationToken;

fn trade(i: u64) -> MarketEvent {
    trade_of("BTC-USDT", i)
}

fn trade_of(symbol: &str, i: u64) -> MarketEvent {
    MarketEvent::Trade(Trade {
        instrument: Instrument::new("test", Market::Spot, symbol, symbol.replace('-', "")),
        trade_id: i.to_string(),
        price: Decimal::new(6_000_000, 2),
        qty: Decimal::ONE,
        side: Side::Buy,
        ts_exchange_us: i as i64,
        ts_recv_us: i as i64,
    })
}

/// Events the stream holds (messages carry one or several).
async fn stored(url: &str) -> Option<u64> {
    let client = async_nats::connect(url).await.ok()?;
    let js = async_nats::jetstream::new(client);
    Some(stream_events(&js, "MARKET_DATA").await.ok()?.len() as u64)
}

/// A NATS server of the test's own, with `MARKET_DATA` made as the
/// collector makes it: the server (keep it alive), its folder, its URL and a
/// JetStream context on it.
async fn own_stream() -> (
    moat_devstack::Nats,
    tempfile::TempDir,
    String,
    async_nats::jetstream::Context,
) {
    let (nats, dir) = own_nats();
    let url = nats.url();
    let client = async_nats::connect(&url).await.unwrap();
    let js = async_nats::jetstream::new(client);
    ensure_stream(&js, &StreamSettings::default()).await.unwrap();
    (nats, dir, url, js)
}

/// The publisher as the collector runs it, until the token is cancelled.
fn spawn_publisher(
    js: async_nats::jetstream::Context,
    queue: &std::sync::Arc<EventQueue>,
    metrics: &Metrics,
) -> (tokio::task::JoinHandle<()>, CancellationToken) {
    spawn_publisher_with(js, queue, metrics, PublisherConfig::default())
}

fn spawn_publisher_with(
    js: async_nats::jetstream::Context,
    queue: &std::sync::Arc<EventQueue>,
    metrics: &Metrics,
    config: PublisherConfig,
) -> (tokio::task::JoinHandle<()>, CancellationToken) {
    let token = CancellationToken::new();
    let publisher = tokio::spawn(run_publisher(
        js,
        queue.clone(),
        config,
        metrics.clone(),
        token.clone().cancelled_owned(),
        Duration::from_secs(30),
    ));
    (publisher, token)
}

#[tokio::test(flavor = "multi_thread")]
async fn nats_outage_buffers_then_delivers_every_event_once() {
    let (mut nats, _dir) = own_nats();
    let url = nats.url();
    let config = moat_common_types::infra::NatsConfig {
        url: url.clone(),
        ..Default::default()
    };
    let client = moat_common_types::nats::connect(&config, "moat-collector", "test-collector")
        .await
        .unwrap();
    let js = async_nats::jetstream::new(client);
    ensure_stream(&js, &StreamSettings::default()).await.unwrap();

    let metrics = Metrics::new();
    let queue = EventQueue::new(10_000, metrics.clone());
    let (publisher, token) = spawn_publisher(js, &queue, &metrics);

    for i in 0..1_000 {
        queue.push(trade(i));
    }
    eventually("the first events stored", Duration::from_secs(20), || async {
        (stored(&url).await == Some(1_000)).then_some(())
    })
    .await;

    tokio::task::block_in_place(|| nats.stop());
    // The venue keeps producing while NATS is away; nothing blocks.
    for i in 1_000..3_000 {
        queue.push(trade(i));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    tokio::task::block_in_place(|| nats.restart()).unwrap();

    eventually("every event after the outage", Duration::from_secs(60), || async {
        (stored(&url).await == Some(3_000)).then_some(())
    })
    .await;
    assert_eq!(metrics.queue_dropped.get(), 0, "the bound was not reached");
    token.cancel();
    publisher.await.unwrap();
    // Republished events were deduplicated by their Nats-Msg-Id.
    assert_eq!(stored(&url).await, Some(3_000));
}

#[tokio::test]
async fn a_full_queue_drops_the_oldest_and_counts_it() {
    let metrics = Metrics::new();
    let queue = EventQueue::new(100, metrics.clone());
    for i in 0..150 {
        queue.push(trade(i));
    }
    assert_eq!(queue.len(), 100);
    assert_eq!(metrics.queue_dropped.get(), 50);
    assert_eq!(metrics.queue_depth.get(), 100);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_event_too_large_to_publish_is_dropped_and_counted_and_the_rest_goes_out() {
    use moat_common_types::model::{BookSnapshot, Level};

    let (nats, _dir) = own_nats();
    let url = nats.url();
    // Connected (not retrying in the background), so the server's INFO is known.
    let client = async_nats::connect(&url).await.unwrap();
    let max_payload = client.server_info().max_payload;
    assert!(max_payload > 0);
    let js = async_nats::jetstream::new(client);
    ensure_stream(&js, &StreamSettings::default()).await.unwrap();

    let MarketEvent::Trade(first) = trade(0) else {
        unreachable!()
    };
    // A level takes more than 5 bytes once encoded.
    let levels = max_payload / 5;
    let huge = MarketEvent::BookSnapshot(BookSnapshot {
        instrument: first.instrument,
        sequence: 1,
        bids: (0..levels)
            .map(|i| Level {
                price: Decimal::new(i as i64 + 1, 2),
                qty: Decimal::ONE,
            })
            .collect(),
        asks: Vec::new(),
        ts_exchange_us: 1,
        ts_recv_us: 1,
    });
    assert!(
        moat_common_types::proto_conv::encode(&huge).len() > max_payload,
        "the snapshot must exceed the server's max payload"
    );

    let metrics = Metrics::new();
    let queue = EventQueue::new(10_000, metrics.clone());
    // All in one batch: the trades after the snapshot are taken with it.
    for i in 0..100 {
        queue.push(trade(i));
    }
    queue.push(huge);
    for i in 100..200 {
        queue.push(trade(i));
    }
    let (publisher, token) = spawn_publisher(js, &queue, &metrics);
    eventually("every trade stored", Duration::from_secs(20), || async {
        (stored(&url).await == Some(200)).then_some(())
    })
    .await;
    assert_eq!(
        metrics.rejects.with_label_values(&["test", "too_large"]).get(),
        1,
        "the snapshot is counted as rejected"
    );
    assert!(queue.is_empty(), "nothing is left to retry");
    token.cancel();
    publisher.await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn events_queued_together_go_out_batched_by_subject_in_order() {
    let (_nats, _dir, url, js) = own_stream().await;

    // Queued before the publisher starts, so its first round takes them all:
    // two subjects interleaved, more events than one message may carry.
    let metrics = Metrics::new();
    let queue = EventQueue::new(10_000, metrics.clone());
    let per_symbol = PublisherConfig::default().max_batch_events as u64 + 500;
    for i in 0..per_symbol {
        queue.push(trade_of("BTC-USDT", i));
        queue.push(trade_of("ETH-USDT", i));
    }
    let (publisher, token) = spawn_publisher(js.clone(), &queue, &metrics);
    let total = 2 * per_symbol;
    eventually("every event stored", Duration::from_secs(20), || async {
        (stored(&url).await == Some(total)).then_some(())
    })
    .await;
    token.cancel();
    publisher.await.unwrap();

    let mut stream = js.get_stream("MARKET_DATA").await.unwrap();
    let messages = stream.info().await.unwrap().state.messages;
    assert_eq!(messages, 4, "two full messages and two with the rest, one subject each");
    assert_eq!(metrics.messages_published.get(), 4);
    let events = stream_events(&js, "MARKET_DATA").await.unwrap();
    for symbol in ["BTC-USDT", "ETH-USDT"] {
        let ids: Vec<u64> = events
            .iter()
            .filter_map(|e| match e {
                MarketEvent::Trade(t) if t.instrument.symbol == symbol => t.trade_id.parse().ok(),
                _ => None,
            })
            .collect();
        assert_eq!(
            ids,
            (0..per_symbol).collect::<Vec<_>>(),
            "{symbol}: every trade once, in order"
        );
    }
}

/// Trades 0..`total` queued one every 10 ms to a publisher run with
/// `config`, until the stream holds them all; its metrics, and the time
/// from the first push to the last event stored.
async fn trickle(
    url: &str,
    js: &async_nats::jetstream::Context,
    config: PublisherConfig,
    total: u64,
) -> (Metrics, Duration) {
    let metrics = Metrics::new();
    let queue = EventQueue::new(10_000, metrics.clone());
    let (publisher, token) = spawn_publisher_with(js.clone(), &queue, &metrics, config);
    let started = std::time::Instant::now();
    for i in 0..total {
        queue.push(trade(i));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    eventually("every event stored", Duration::from_secs(20), || async {
        (stored(url).await == Some(total)).then_some(())
    })
    .await;
    let spent = started.elapsed();
    token.cancel();
    publisher.await.unwrap();
    (metrics, spent)
}

#[tokio::test(flavor = "multi_thread")]
async fn rounds_start_at_most_once_per_round_interval() {
    let (_nats, _dir, url, js) = own_stream().await;

    // One event every 10 ms for 1.5 s: unpaced, each would leave in a round
    // of its own as soon as it is queued (the server stores one in about a
    // millisecond); paced at 300 ms, they go in a handful of rounds.
    let interval = Duration::from_millis(300);
    let config = PublisherConfig {
        round_interval: interval,
        ..PublisherConfig::default()
    };
    let total = 150;
    let (metrics, spent) = trickle(&url, &js, config, total).await;
    let rounds = metrics.round_messages.get_sample_count();
    let most = spent.as_millis() / interval.as_millis() + 2;
    assert!(
        rounds as u128 <= most,
        "{rounds} rounds in {spent:?}: at most one per {interval:?} ({most})"
    );
    assert!(
        rounds >= 2,
        "{rounds} rounds in {spent:?}: events went on while they were queued, not all at the end"
    );
    assert_eq!(
        metrics.messages_published.get(),
        rounds,
        "one subject: one message a round"
    );
    let events = stream_events(&js, "MARKET_DATA").await.unwrap();
    let ids: Vec<u64> = events
        .iter()
        .filter_map(|e| match e {
            MarketEvent::Trade(t) => t.trade_id.parse().ok(),
            _ => None,
        })
        .collect();
    assert_eq!(ids, (0..total).collect::<Vec<_>>(), "every trade once, in order");
}

#[tokio::test(flavor = "multi_thread")]
async fn one_event_per_message_is_not_paced() {
    let (_nats, _dir, url, js) = own_stream().await;

    // Replicas of one venue publish one event per message, outside atomic
    // batches: waiting would save the server nothing, so rounds go at once.
    let config = PublisherConfig {
        round_interval: Duration::from_millis(300),
        max_batch_events: 1,
        ..PublisherConfig::default()
    };
    let total = 50;
    let (metrics, _) = trickle(&url, &js, config, total).await;
    let rounds = metrics.round_messages.get_sample_count();
    assert!(
        rounds > 10,
        "{rounds} rounds for {total} events queued 10 ms apart: paced"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_live_lane_carries_every_event_alone_before_the_stream_has_it() {
    let (nats, _dir) = own_nats();
    let client = async_nats::connect(nats.url()).await.unwrap();
    let mut live = client.subscribe("live.md.>").await.unwrap();
    client.flush().await.unwrap();

    let metrics = Metrics::new();
    let (queue, lane) = EventQueue::with_live(10_000, metrics.clone(), client.clone());
    let lane = tokio::spawn(lane);
    // No publisher runs: the stream gets nothing, the live lane everything.
    for i in 0..500 {
        queue.push(trade_of(if i % 2 == 0 { "BTC-USDT" } else { "ETH-USDT" }, i));
    }
    let mut seen = Vec::new();
    while seen.len() < 500 {
        let message = tokio::time::timeout(Duration::from_secs(10), futures::StreamExt::next(&mut live))
            .await
            .expect("live events within 10 s")
            .unwrap();
        assert!(message.headers.is_none(), "a live message is one plain event");
        let event = moat_common_types::proto_conv::decode(&message.payload).unwrap();
        let MarketEvent::Trade(t) = &event else {
            panic!("not a trade: {}", message.subject)
        };
        assert_eq!(
            message.subject.as_str(),
            format!("live.md.trade.test.spot.{}", t.instrument.symbol)
        );
        seen.push(t.trade_id.parse::<u64>().unwrap());
    }
    assert_eq!(seen, (0..500).collect::<Vec<_>>(), "every event once, in order");
    assert_eq!(queue.len(), 500, "the stream's copies still wait for the publisher");
    assert_eq!(metrics.live_dropped.get(), 0);
    drop(queue);
    tokio::time::timeout(Duration::from_secs(5), lane)
        .await
        .expect("the lane ends with its queue")
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_round_holding_an_event_already_stored_goes_message_by_message() {
    let (_nats, _dir, url, js) = own_stream().await;

    // Stored before, with its own id: as a collector replica (or a lost
    // ack) would have left it.
    let early = trade_of("SOL-USDT", 7);
    let (headers, payload) = moat_common_types::proto_conv::batch_message(std::slice::from_ref(&early));
    js.publish_with_headers("md.trade.test.spot.SOL-USDT", headers, payload)
        .await
        .unwrap()
        .await
        .unwrap();

    // One round: the same event alone on its subject, beside other subjects.
    let metrics = Metrics::new();
    let queue = EventQueue::new(10_000, metrics.clone());
    for i in 0..50 {
        queue.push(trade_of("BTC-USDT", i));
        queue.push(trade_of("ETH-USDT", i));
    }
    queue.push(early);
    let (publisher, token) = spawn_publisher(js.clone(), &queue, &metrics);
    eventually("the round stored", Duration::from_secs(20), || async {
        (stored(&url).await == Some(101)).then_some(())
    })
    .await;
    token.cancel();
    publisher.await.unwrap();
    // The atomic batch was refused whole for the duplicate id; sent one by
    // one, everything else is stored and the duplicate is dropped.
    let events = stream_events(&js, "MARKET_DATA").await.unwrap();
    assert_eq!(events.len(), 101, "100 new trades and the one stored before, once");
    assert_eq!(metrics.publish_errors.get(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stream_without_atomic_batches_still_gets_every_event() {
    use async_nats::jetstream::stream;
    let (nats, _dir) = own_nats();
    let url = nats.url();
    let client = async_nats::connect(&url).await.unwrap();
    let js = async_nats::jetstream::new(client);
    // Made by an operator, atomic batches off; the publisher is not told.
    js.create_stream(stream::Config {
        name: "MARKET_DATA".into(),
        subjects: vec!["md.>".into()],
        ..Default::default()
    })
    .await
    .unwrap();

    let metrics = Metrics::new();
    let queue = EventQueue::new(10_000, metrics.clone());
    for i in 0..300 {
        queue.push(trade_of(["BTC-USDT", "ETH-USDT", "SOL-USDT"][i as usize % 3], i));
    }
    let (publisher, token) = spawn_publisher(js.clone(), &queue, &metrics);
    eventually("every event stored", Duration::from_secs(20), || async {
        (stored(&url).await == Some(300)).then_some(())
    })
    .await;
    token.cancel();
    publisher.await.unwrap();
    assert_eq!(stream_events(&js, "MARKET_DATA").await.unwrap().len(), 300);
    // ensure_stream turns atomic batches on for an existing stream.
    let mut s = ensure_stream(&js, &StreamSettings::default()).await.unwrap();
    assert!(s.info().await.unwrap().config.allow_atomic_publish);
}
