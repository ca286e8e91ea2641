//! JetStream → storage-writer → ClickHouse on real servers: exactly N rows
//! for N events, through duplicates, redelivery of stored trades, a poison
//! message or a poison event inside a batch, a SIGKILLed writer (alone or
//! beside a second replica) and a ClickHouse outage; a pull request the
//! server ends late, and a message delivered twice into one batch.

use std::process::{Child, Command};
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream;
use moat_common_types::model::{Instrument, Trade};
use moat_common_types::nats::{StreamSettings, ensure_stream};
use moat_common_types::proto_conv::{EVENTS_HEADER, batch_message, encode};
use moat_common_types::subject::{Subject, msg_id};
use moat_common_types::{Decimal, Market, MarketEvent, Side};
use moat_integration_tests::{TestClickHouse, bin, eventually, listener, own_nats, scratch, unique};
use moat_storage_writer::config::WriterConfig;
use tokio_util::sync::CancellationToken;

fn trade(symbol: &str, i: u64) -> MarketEvent {
    MarketEvent::Trade(Trade {
        instrument: Instrument::new("test", Market::Spot, symbol, symbol.replace('-', "")),
        trade_id: i.to_string(),
        price: Decimal::new(6_000_000 + (i % 100) as i64, 2),
        qty: Decimal::new(1 + i as i64, 4),
        side: if i.is_multiple_of(2) { Side::Buy } else { Side::Sell },
        // Microseconds that are not whole milliseconds, as Coinbase sends.
        ts_exchange_us: 1_700_000_000_000_000 + i as i64 * 1_001,
        ts_recv_us: 1_700_000_000_100_123 + i as i64 * 1_001,
    })
}

/// Publishes with at most 1,000 acks outstanding (the JetStream context
/// blocks new publishes while its own in-flight limit is reached).
async fn publish(js: &jetstream::Context, events: impl IntoIterator<Item = MarketEvent>) {
    let mut acks = Vec::new();
    for event in events {
        let mut headers = HeaderMap::new();
        headers.insert("Nats-Msg-Id", msg_id(&event).as_str());
        let subject = Subject::for_event(&event).unwrap().to_string();
        acks.push(
            js.publish_with_headers(subject, headers, encode(&event).into())
                .await
                .unwrap(),
        );
        if acks.len() == 1_000 {
            for ack in acks.drain(..) {
                ack.await.unwrap();
            }
        }
    }
    for ack in acks {
        ack.await.unwrap();
    }
}

/// Publishes `events` (all of one subject) as the collector does under
/// load: `per_message` events to a message, with the batch's id.
async fn publish_batched(js: &jetstream::Context, events: &[MarketEvent], per_message: usize) {
    let mut acks = Vec::new();
    for chunk in events.chunks(per_message) {
        let (headers, payload) = batch_message(chunk);
        let subject = Subject::for_event(&chunk[0]).unwrap().to_string();
        acks.push(js.publish_with_headers(subject, headers, payload).await.unwrap());
    }
    for ack in acks {
        ack.await.unwrap();
    }
}

fn writer_config(nats_url: &str, ch_url: &str, db: &str) -> WriterConfig {
    let mut config = WriterConfig::default();
    config.nats.url = nats_url.into();
    config.clickhouse.url = ch_url.into();
    config.clickhouse.database = db.into();
    config.writer.batch_size = 2_000;
    config.writer.max_inflight = 10_000;
    config.writer.flush_interval = std::time::Duration::from_millis(200);
    config.writer.max_backoff = std::time::Duration::from_millis(500);
    config
}

async fn migrate(config: &WriterConfig) {
    moat_storage_writer::migrate(config, false).await.unwrap();
}

/// Waits until the writer's consumer has acked everything in the stream:
/// every insert it made has returned, views included.
async fn all_acked(stream: &jetstream::stream::Stream, consumer: &str) {
    eventually("every message acked", Duration::from_secs(30), || async {
        let info = stream.consumer_info(consumer).await.ok()?;
        (info.num_ack_pending == 0 && info.num_pending == 0).then_some(())
    })
    .await;
}

fn distinct_trades(ch: &TestClickHouse, db: &str, symbol: &str) -> u64 {
    ch.count(&format!(
        "SELECT count() FROM (SELECT trade_id FROM {db}.trades FINAL WHERE symbol = '{symbol}')"
    ))
}

fn raw_trades(ch: &TestClickHouse, db: &str, symbol: &str) -> u64 {
    ch.count(&format!(
        "SELECT uniqExact(trade_id) FROM {db}.trades WHERE symbol = '{symbol}'"
    ))
}

#[tokio::test]
async fn n_events_become_exactly_n_rows_even_when_republished() {
    let (nats, _dir) = own_nats();
    let ch = TestClickHouse::get();
    let db = unique("pipe");
    let config = writer_config(&nats.url(), &ch.url, &db);
    migrate(&config).await;
    let client = async_nats::connect(nats.url()).await.unwrap();
    let js = jetstream::new(client);
    let stream = ensure_stream(&js, &StreamSettings::default()).await.unwrap();

    let token = CancellationToken::new();
    let consumer_name = config.writer.consumer.clone();
    let writer = tokio::spawn(moat_storage_writer::run(config, listener().await, token.clone()));

    const N: u64 = 5_000;
    publish(&js, (0..N).map(|i| trade("BTC-USDT", i))).await;
    // A reconnecting collector republishes: JetStream drops the repeats.
    publish(&js, (0..1_000).map(|i| trade("BTC-USDT", i))).await;

    let stored = eventually("all trades stored", Duration::from_secs(60), || async {
        let n = distinct_trades(&ch, &db, "BTC-USDT");
        (n >= N).then_some(n)
    })
    .await;
    assert_eq!(stored, N);
    all_acked(&stream, &consumer_name).await;
    assert_eq!(ch.count(&format!("SELECT count() FROM {db}.trades FINAL")), N);
    // Values arrive exactly as published (compared as decimals: how many
    // trailing zeros ClickHouse prints depends on its release).
    let row = ch.query(&format!(
        "SELECT toString(price), toString(qty), side FROM {db}.trades FINAL WHERE trade_id = '7'"
    ));
    let fields: Vec<&str> = row.split('\t').collect();
    let decimal = |s: &str| s.parse::<Decimal>().unwrap_or_else(|e| panic!("{s:?} in {row:?}: {e}"));
    assert_eq!(fields.len(), 3, "{row:?}");
    assert_eq!(decimal(fields[0]), decimal("60000.07"), "price in {row:?}");
    assert_eq!(decimal(fields[1]), decimal("0.0008"), "qty in {row:?}");
    assert_eq!(fields[2], "sell", "side in {row:?}");
    // Timestamps keep their microseconds.
    let MarketEvent::Trade(sent) = trade("BTC-USDT", 7) else {
        unreachable!()
    };
    assert_eq!(
        ch.query(&format!(
            "SELECT toUnixTimestamp64Micro(ts_exchange), toUnixTimestamp64Micro(ts_recv) FROM {db}.trades FINAL \
             WHERE trade_id = '7'"
        )),
        format!("{}\t{}", sent.ts_exchange_us, sent.ts_recv_us)
    );
    // The 1-minute candles see every trade once.
    let candle_trades = ch.count(&format!(
        "SELECT countMerge(trades) FROM {db}.candles_1m WHERE symbol = 'BTC-USDT'"
    ));
    assert_eq!(candle_trades, N);

    token.cancel();
    writer.await.unwrap().unwrap();
    ch.query(&format!("DROP DATABASE {db}"));
}

/// An option ticker is stored with its terms' symbol and every field it
/// carries; a field the venue left out is NULL, not zero.
#[tokio::test]
async fn option_tickers_are_stored_with_absent_fields_as_null() {
    use moat_common_types::model::{OptionContract, OptionTicker};
    let (nats, _dir) = own_nats();
    let ch = TestClickHouse::get();
    let db = unique("options");
    let config = writer_config(&nats.url(), &ch.url, &db);
    migrate(&config).await;
    let js = jetstream::new(async_nats::connect(nats.url()).await.unwrap());
    ensure_stream(&js, &StreamSettings::default()).await.unwrap();
    let token = CancellationToken::new();
    let writer = tokio::spawn(moat_storage_writer::run(config, listener().await, token.clone()));

    let d = |s: &str| s.parse::<Decimal>().unwrap();
    let instrument = Instrument::new("deribit", Market::Option, "BTC-BTC-210924-8000-P", "BTC-24SEP21-8000-P")
        .with_option(Some(OptionContract {
            expiry: "210924".into(),
            strike: d("8000"),
            right: moat_common_types::symbol::OptionRight::Put,
            settlement: "BTC".into(),
        }));
    let ticker = |i: i64| {
        MarketEvent::OptionTicker(OptionTicker {
            instrument: instrument.clone(),
            mark_price: d("0.00090376"),
            mark_iv: Some(d("1.4278")),
            bid_iv: None,
            ask_iv: Some(d("1.5271")),
            underlying_price: Some(d("32366.75")),
            delta: Some(d("-0.00407")),
            gamma: Some(d("0")),
            vega: Some(d("1.62145")),
            theta: Some(d("-1.82613")),
            rho: None,
            ts_exchange_us: 1_626_993_722_929_000 + i * 1_000,
            ts_recv_us: 1_626_993_723_840_792 + i * 1_000,
        })
    };
    publish(&js, (0..3).map(ticker)).await;
    // Republished (a reconnecting collector): still three rows.
    publish(&js, (0..3).map(ticker)).await;
    let table = format!("{db}.option_tickers FINAL WHERE symbol = 'BTC-BTC-210924-8000-P'");
    eventually("option tickers stored", Duration::from_secs(60), || async {
        (ch.count(&format!("SELECT count() FROM {table}")) == 3).then_some(())
    })
    .await;
    let row = ch.query(&format!(
        "SELECT market, toString(mark_price), toString(mark_iv), bid_iv IS NULL, toString(delta), toString(gamma), \
         rho IS NULL, toUnixTimestamp64Micro(ts_exchange) FROM {table} ORDER BY ts_exchange LIMIT 1"
    ));
    let fields: Vec<&str> = row.split('\t').collect();
    assert_eq!(fields.len(), 8, "{row:?}");
    assert_eq!(fields[0], "option");
    for (i, wanted) in [(1, "0.00090376"), (2, "1.4278"), (4, "-0.00407"), (5, "0")] {
        assert_eq!(d(fields[i]), d(wanted), "field {i} of {row:?}");
    }
    assert_eq!((fields[3], fields[6]), ("1", "1"), "absent fields are NULL: {row:?}");
    assert_eq!(fields[7], "1626993722929000");
    token.cancel();
    writer.await.unwrap().unwrap();
    ch.query(&format!("DROP DATABASE {db}"));
}

#[tokio::test]
async fn poison_message_is_dead_lettered_and_the_rest_flows() {
    let (nats, _dir) = own_nats();
    let ch = TestClickHouse::get();
    let db = unique("poison");
    let config = writer_config(&nats.url(), &ch.url, &db);
    migrate(&config).await;
    let client = async_nats::connect(nats.url()).await.unwrap();
    let js = jetstream::new(client.clone());
    ensure_stream(&js, &StreamSettings::default()).await.unwrap();
    let mut dlq = client.subscribe("md.dlq.>").await.unwrap();

    let token = CancellationToken::new();
    let writer = tokio::spawn(moat_storage_writer::run(config, listener().await, token.clone()));

    publish(&js, (0..100).map(|i| trade("ETH-USDT", i))).await;
    js.publish(
        "md.trade.test.spot.ETH-USDT",
        bytes::Bytes::from_static(b"\x08\xff\xff garbage"),
    )
    .await
    .unwrap()
    .await
    .unwrap();
    publish(&js, (100..200).map(|i| trade("ETH-USDT", i))).await;

    let dead = tokio::time::timeout(Duration::from_secs(30), futures::StreamExt::next(&mut dlq))
        .await
        .expect("a dead letter within 30 s")
        .unwrap();
    assert_eq!(dead.subject.as_str(), "md.dlq.undecodable");
    assert_eq!(&dead.payload[..], b"\x08\xff\xff garbage");
    let headers = dead.headers.unwrap();
    assert_eq!(
        headers.get("Moat-Original-Subject").unwrap().as_str(),
        "md.trade.test.spot.ETH-USDT"
    );

    eventually("trades after the poison", Duration::from_secs(30), || async {
        (distinct_trades(&ch, &db, "ETH-USDT") == 200).then_some(())
    })
    .await;
    token.cancel();
    writer.await.unwrap().unwrap();
    ch.query(&format!("DROP DATABASE {db}"));
}

#[tokio::test]
async fn a_poison_event_inside_a_batch_is_dead_lettered_alone() {
    let (nats, _dir) = own_nats();
    let ch = TestClickHouse::get();
    let db = unique("poisonbatch");
    let config = writer_config(&nats.url(), &ch.url, &db);
    let consumer_name = config.writer.consumer.clone();
    migrate(&config).await;
    let client = async_nats::connect(nats.url()).await.unwrap();
    let js = jetstream::new(client.clone());
    let stream = ensure_stream(&js, &StreamSettings::default()).await.unwrap();
    let mut dlq = client.subscribe("md.dlq.>").await.unwrap();

    let token = CancellationToken::new();
    let writer = tokio::spawn(moat_storage_writer::run(config, listener().await, token.clone()));

    // 300 events in three messages; the 150th has a negative price, which
    // no consumer accepts.
    let mut events: Vec<MarketEvent> = (0..300).map(|i| trade("XRP-USDT", i)).collect();
    if let MarketEvent::Trade(t) = &mut events[150] {
        t.price = Decimal::new(-1, 0);
    }
    publish_batched(&js, &events, 100).await;

    let dead = tokio::time::timeout(Duration::from_secs(30), futures::StreamExt::next(&mut dlq))
        .await
        .expect("a dead letter within 30 s")
        .unwrap();
    assert_eq!(dead.subject.as_str(), "md.dlq.undecodable");
    let headers = dead.headers.clone().unwrap();
    assert_eq!(headers.get("Moat-Dlq-Event-Index").unwrap().as_str(), "50");
    assert!(headers.get(EVENTS_HEADER).is_none(), "the dead letter is one event");
    assert!(
        headers.get("Moat-Dlq-Error").unwrap().as_str().contains("trade.price"),
        "{headers:?}"
    );
    // The dead letter is the event as it came, readable on its own.
    let raw = moat_common_types::proto_conv::message_events(None, &dead.payload).unwrap();
    assert_eq!(raw.len(), 1);

    eventually("the other 299 trades", Duration::from_secs(30), || async {
        (distinct_trades(&ch, &db, "XRP-USDT") == 299).then_some(())
    })
    .await;
    all_acked(&stream, &consumer_name).await;
    token.cancel();
    writer.await.unwrap().unwrap();
    ch.query(&format!("DROP DATABASE {db}"));
}

#[tokio::test]
async fn a_redelivered_trade_already_stored_is_counted_once() {
    use async_nats::jetstream::AckKind;
    use async_nats::jetstream::consumer::{AckPolicy, pull};
    use futures::StreamExt;
    use moat_common_types::proto_conv::decode;

    let (nats, _dir) = own_nats();
    let ch = TestClickHouse::get();
    let db = unique("redeliver");
    let config = writer_config(&nats.url(), &ch.url, &db);
    migrate(&config).await;
    let js = jetstream::new(async_nats::connect(nats.url()).await.unwrap());
    let stream = ensure_stream(&js, &StreamSettings::default()).await.unwrap();
    const N: u64 = 1_000;
    publish(&js, (0..N).map(|i| trade("ADA-USDT", i))).await;

    // A writer that stopped between insert and ack: the trades of the first
    // 100 messages are stored, and the messages come back unacked.
    let consumer = stream
        .create_consumer(pull::Config {
            durable_name: Some(config.writer.consumer.clone()),
            filter_subject: moat_common_types::subject::STREAM_SUBJECTS.into(),
            ack_policy: AckPolicy::Explicit,
            ..Default::default()
        })
        .await
        .unwrap();
    let mut fetched = consumer
        .fetch()
        .max_messages(100)
        .expires(Duration::from_secs(5))
        .messages()
        .await
        .unwrap();
    let mut values = Vec::new();
    while let Some(message) = fetched.next().await {
        let message = message.unwrap();
        let Ok(MarketEvent::Trade(t)) = decode(&message.payload) else {
            panic!("not a trade: {}", message.subject)
        };
        values.push(format!(
            "('{}', '{}', '{}', '{}', '{}', {}, {}, '{}', fromUnixTimestamp64Micro({}), fromUnixTimestamp64Micro({}))",
            t.instrument.exchange,
            t.instrument.market.as_str(),
            t.instrument.symbol,
            t.instrument.venue_symbol,
            t.trade_id,
            t.price,
            t.qty,
            t.side.as_str(),
            t.ts_exchange_us,
            t.ts_recv_us
        ));
        message.ack_with(AckKind::Nak(None)).await.unwrap();
    }
    assert_eq!(values.len(), 100);
    ch.query(&format!(
        "INSERT INTO {db}.trades (exchange, market, symbol, venue_symbol, trade_id, price, qty, side, ts_exchange, ts_recv) \
         VALUES {}",
        values.join(", ")
    ));

    let token = CancellationToken::new();
    let consumer_name = config.writer.consumer.clone();
    let writer = tokio::spawn(moat_storage_writer::run(config, listener().await, token.clone()));
    eventually("every trade stored", Duration::from_secs(60), || async {
        (distinct_trades(&ch, &db, "ADA-USDT") == N).then_some(())
    })
    .await;
    // A part of `trades` can be visible before the view's part of the same
    // insert; the writer acks only once the whole insert returned.
    all_acked(&stream, &consumer_name).await;
    // The view aggregates each insert: a trade inserted again would count
    // twice there for good, whatever merges do to `trades`.
    let candle_trades = ch.count(&format!(
        "SELECT countMerge(trades) FROM {db}.candles_1m WHERE symbol = 'ADA-USDT'"
    ));
    assert_eq!(candle_trades, N, "trades counted by candles_1m");
    assert_eq!(ch.count(&format!("SELECT count() FROM {db}.trades")), N);

    token.cancel();
    writer.await.unwrap().unwrap();
    ch.query(&format!("DROP DATABASE {db}"));
}

fn spawn_writer(nats_url: &str, ch_url: &str, db: &str) -> Child {
    Command::new(bin("moat-storage-writer"))
        .env("MOAT_CONFIG_DIR", "/nonexistent")
        .env("MOAT_STORAGE_WRITER__NATS__URL", nats_url)
        .env("MOAT_STORAGE_WRITER__CLICKHOUSE__URL", ch_url)
        .env("MOAT_STORAGE_WRITER__CLICKHOUSE__DATABASE", db)
        .env("MOAT_STORAGE_WRITER__HTTP__LISTEN", "127.0.0.1:0")
        .env("MOAT_STORAGE_WRITER__WRITER__BATCH_SIZE", "500")
        .env("MOAT_STORAGE_WRITER__WRITER__MAX_INFLIGHT", "2000")
        .env("MOAT_STORAGE_WRITER__WRITER__FLUSH_INTERVAL", "100ms")
        .env("MOAT_STORAGE_WRITER__WRITER__ACK_WAIT", "5s")
        .env("RUST_LOG", "warn")
        .spawn()
        .unwrap()
}

#[tokio::test]
async fn writer_killed_mid_stream_loses_and_duplicates_nothing() {
    let (nats, _dir) = own_nats();
    let ch = TestClickHouse::get();
    let db = unique("kill");
    migrate(&writer_config(&nats.url(), &ch.url, &db)).await;
    let js = jetstream::new(async_nats::connect(nats.url()).await.unwrap());
    ensure_stream(&js, &StreamSettings::default()).await.unwrap();

    const N: u64 = 20_000;
    let mut writer = spawn_writer(&nats.url(), &ch.url, &db);
    publish(&js, (0..N / 2).map(|i| trade("SOL-USDT", i))).await;
    eventually("some rows before the kill", Duration::from_secs(30), || async {
        (raw_trades(&ch, &db, "SOL-USDT") > 0).then_some(())
    })
    .await;
    writer.kill().unwrap(); // SIGKILL
    writer.wait().unwrap();
    publish(&js, (N / 2..N).map(|i| trade("SOL-USDT", i))).await;

    let mut writer = spawn_writer(&nats.url(), &ch.url, &db);
    eventually("every trade after the restart", Duration::from_secs(90), || async {
        (raw_trades(&ch, &db, "SOL-USDT") == N).then_some(())
    })
    .await;
    // Redelivered rows collapse: exactly one row per event in queries.
    assert_eq!(distinct_trades(&ch, &db, "SOL-USDT"), N);
    writer.kill().unwrap();
    writer.wait().unwrap();
    ch.query(&format!("DROP DATABASE {db}"));
}

#[tokio::test(flavor = "multi_thread")]
async fn clickhouse_outage_holds_messages_until_it_returns() {
    let (nats, _dir) = own_nats();
    // This test stops ClickHouse, so it needs a server of its own.
    let ch_dir = scratch();
    let mut clickhouse = moat_devstack::ClickHouse::start(ch_dir.path()).unwrap();
    let ch_url = clickhouse.url();
    let db = unique("outage");
    let config = writer_config(&nats.url(), &ch_url, &db);
    migrate(&config).await;
    let js = jetstream::new(async_nats::connect(nats.url()).await.unwrap());
    ensure_stream(&js, &StreamSettings::default()).await.unwrap();
    let token = CancellationToken::new();
    let writer = tokio::spawn(moat_storage_writer::run(config, listener().await, token.clone()));

    publish(&js, (0..1_000).map(|i| trade("BTC-USDT", i))).await;
    let count = |sql: String| {
        let addr = ch_url.trim_start_matches("http://").to_owned();
        moat_devstack::http_post(&addr, "/", &sql, Duration::from_secs(5))
            .ok()
            .filter(|r| r.is_success())
            .and_then(|r| r.body.trim().parse::<u64>().ok())
    };
    let distinct = format!("SELECT count() FROM (SELECT trade_id FROM {db}.trades FINAL)");
    eventually("first rows", Duration::from_secs(30), || async {
        (count(distinct.clone()) == Some(1_000)).then_some(())
    })
    .await;

    tokio::task::block_in_place(|| clickhouse.stop());
    publish(&js, (1_000..3_000).map(|i| trade("BTC-USDT", i))).await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    tokio::task::block_in_place(|| clickhouse.restart()).unwrap();

    eventually("rows after the outage", Duration::from_secs(60), || async {
        (count(distinct.clone()) == Some(3_000)).then_some(())
    })
    .await;
    token.cancel();
    writer.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_message_delivered_to_a_pull_request_given_up_on_is_not_stranded() {
    use futures::StreamExt;
    use moat_storage_writer::pull::Puller;
    use tokio::time::Instant;

    let (nats, _dir) = own_nats();
    let client = async_nats::connect(nats.url()).await.unwrap();
    // Stands in for a NATS 2.9 consumer that does not end a pull request at
    // its expiry and delivers to it after the writer gave up on it.
    let mut requests = client.subscribe("test.pull.next").await.unwrap();
    client.flush().await.unwrap();
    let server = client.clone();
    let responder = tokio::spawn(async move {
        let first = requests.next().await.expect("a first pull request");
        let second = requests
            .next()
            .await
            .expect("a second pull request once the first was given up");
        server
            .publish(first.reply.clone().expect("a reply inbox"), "late".into())
            .await
            .unwrap();
        server.flush().await.unwrap();
        (first.reply, second.reply)
    });

    let metrics = moat_storage_writer::metrics::Metrics::new();
    let mut puller = Puller::new(
        client.clone(),
        jetstream::new(client),
        "test.pull.next".into(),
        metrics.fetches_overdue.clone(),
    )
    .await
    .unwrap();
    // The first batch ends at its deadline with the request still open.
    let pulled = puller
        .next(10, Instant::now() + Duration::from_millis(100))
        .await
        .unwrap();
    assert!(pulled.is_none(), "{pulled:?}");
    // The next batch gives the request up, asks again, and gets what the
    // old request delivered late.
    let pulled = puller.next(10, Instant::now() + Duration::from_secs(5)).await.unwrap();
    let Some(message) = pulled else {
        panic!("the late delivery was lost: {pulled:?}")
    };
    assert_eq!(&message.payload[..], b"late");
    assert_eq!(metrics.fetches_overdue.get(), 1, "the request given up on is counted");
    let (first, second) = responder.await.unwrap();
    assert_eq!(first, second, "every request replies to the same inbox");
}

#[tokio::test]
async fn a_message_delivered_twice_into_one_batch_is_stored_once() {
    let (nats, _dir) = own_nats();
    let ch = TestClickHouse::get();
    let db = unique("twice");
    let mut config = writer_config(&nats.url(), &ch.url, &db);
    // A batch open longer than the ack wait: JetStream redelivers its
    // messages into the same pull request while their first copies are
    // still in the batch.
    config.writer.flush_interval = std::time::Duration::from_millis(4_000);
    config.writer.ack_wait = std::time::Duration::from_millis(1_000);
    migrate(&config).await;
    let js = jetstream::new(async_nats::connect(nats.url()).await.unwrap());
    let stream = ensure_stream(&js, &StreamSettings::default()).await.unwrap();
    publish(&js, (0..3).map(|i| trade("SOL-USDT", i))).await;

    let token = CancellationToken::new();
    let consumer_name = config.writer.consumer.clone();
    let writer = tokio::spawn(moat_storage_writer::run(config, listener().await, token.clone()));
    // The redelivery happens before the batch is flushed.
    eventually("a redelivery into the open batch", Duration::from_secs(4), || async {
        let info = stream.consumer_info(&consumer_name).await.ok()?;
        let stored = ch.count(&format!("SELECT count() FROM {db}.trades"));
        assert_eq!(stored, 0, "the batch was flushed before the redelivery: {info:?}");
        (info.num_redelivered > 0).then_some(())
    })
    .await;

    all_acked(&stream, &consumer_name).await;
    // The raw table and the candles, which aggregate at insert and never
    // collapse a repeat, hold each trade once.
    assert_eq!(ch.count(&format!("SELECT count() FROM {db}.trades")), 3);
    assert_eq!(
        ch.count(&format!(
            "SELECT countMerge(trades) FROM {db}.candles_1m WHERE symbol = 'SOL-USDT'"
        )),
        3
    );

    token.cancel();
    writer.await.unwrap().unwrap();
    ch.query(&format!("DROP DATABASE {db}"));
}

#[tokio::test(flavor = "multi_thread")]
async fn two_writer_replicas_store_everything_once_when_one_is_killed_under_load() {
    let (nats, _dir) = own_nats();
    let ch = TestClickHouse::get();
    let db = unique("replicas");
    migrate(&writer_config(&nats.url(), &ch.url, &db)).await;
    let js = jetstream::new(async_nats::connect(nats.url()).await.unwrap());
    ensure_stream(&js, &StreamSettings::default()).await.unwrap();

    const N: u64 = 40_000;
    let events: Vec<MarketEvent> = (0..N).map(|i| trade("DOT-USDT", i)).collect();
    let mut first = spawn_writer(&nats.url(), &ch.url, &db);
    let mut second = spawn_writer(&nats.url(), &ch.url, &db);
    // A steady feed, in batches as the collector sends them under load.
    let feed = {
        let js = js.clone();
        tokio::spawn(async move {
            for part in events.chunks(2_000) {
                publish_batched(&js, part, 50).await;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    eventually("a quarter stored", Duration::from_secs(60), || async {
        (raw_trades(&ch, &db, "DOT-USDT") >= N / 4).then_some(())
    })
    .await;
    first.kill().unwrap(); // SIGKILL, mid-feed
    first.wait().unwrap();
    feed.await.unwrap();

    // The survivor takes over what the other held once ack_wait expires.
    eventually("every trade", Duration::from_secs(90), || async {
        (raw_trades(&ch, &db, "DOT-USDT") == N).then_some(())
    })
    .await;
    assert_eq!(distinct_trades(&ch, &db, "DOT-USDT"), N);
    assert_eq!(
        ch.count(&format!(
            "SELECT count() FROM {db}.trades FINAL WHERE symbol = 'DOT-USDT'"
        )),
        N
    );
    // Candles aggregate at insert: each trade counted exactly once.
    eventually("candles count every trade once", Duration::from_secs(30), || async {
        let counted = ch.count(&format!(
            "SELECT countMerge(trades) FROM {db}.candles_1m WHERE symbol = 'DOT-USDT'"
        ));
        (counted == N).then_some(())
    })
    .await;
    second.kill().unwrap();
    second.wait().unwrap();
    ch.query(&format!("DROP DATABASE {db}"));
}
