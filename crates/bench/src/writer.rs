//! The storage-writer: rows per second into ClickHouse beside a bare
//! insert and beside JetStream alone, and the lag to a queryable row.

use std::time::{Duration, Instant};

use moat_common_types::MarketEvent;
use tokio_util::sync::CancellationToken;

use crate::{Row, drain_rate, percentile};

pub(crate) fn trade(i: u64) -> MarketEvent {
    use moat_common_types::model::{Instrument, Trade};
    MarketEvent::Trade(Trade {
        instrument: Instrument::new("bench", moat_common_types::Market::Spot, "BTC-USDT", "BTCUSDT"),
        trade_id: i.to_string(),
        price: rust_decimal::Decimal::new(6_000_000 + (i % 1000) as i64, 2),
        qty: rust_decimal::Decimal::new(1 + (i % 100) as i64, 3),
        side: moat_common_types::Side::Buy,
        ts_exchange_us: (1_700_000_000_000 + i as i64) * 1_000,
        ts_recv_us: (1_700_000_000_000 + i as i64) * 1_000,
    })
}

/// JetStream → storage-writer → ClickHouse rows per second, beside a bare
/// `clickhouse`-crate insert of the same rows.
/// Returns the writer's rows per second draining the stream.
pub(crate) async fn writer(rows: &mut Vec<Row>, nats_url: &str, ch_url: &str) -> anyhow::Result<f64> {
    use moat_storage_writer::rows::TableRow;
    // Large enough that the writer's start (connecting, opening its
    // consumer) is a small part of the time measured.
    const N: u64 = 500_000;
    /// Events per message, as the collector batches them under load.
    const PER_MESSAGE: usize = 100;
    /// Events per message of the lag test: 10 ms of its 5,000 events/s.
    const LAG_BATCH: u64 = 50;
    let db = format!("bench_{}", std::process::id());
    let mut config = moat_storage_writer::config::WriterConfig::default();
    config.nats.url = nats_url.into();
    config.clickhouse.url = ch_url.into();
    config.clickhouse.database = db.clone();
    moat_storage_writer::migrate(&config, true).await?;
    let client = moat_storage_writer::clickhouse_client(&config.clickhouse);

    // Baseline: the same rows inserted directly in 50k-row batches.
    let table_rows: Vec<_> = (0..N)
        .map(|i| match TableRow::from_event(&trade(i)) {
            Ok(TableRow::Trade(t)) => t,
            _ => unreachable!("a trade makes a trade row"),
        })
        .collect();
    client.query("CREATE TABLE bare AS trades").execute().await?;
    let started = Instant::now();
    for chunk in table_rows.chunks(50_000) {
        let mut insert = client.insert::<moat_storage_writer::rows::TradeRow>("bare").await?;
        for row in chunk {
            insert.write(row).await?;
        }
        insert.end().await?;
    }
    let bare = N as f64 / started.elapsed().as_secs_f64();

    // Publish first, then time the writer draining the stream.
    let nats = async_nats::connect(nats_url).await?;
    let js = async_nats::jetstream::new(nats);
    let _ = js.delete_stream("MARKET_DATA").await;
    moat_common_types::nats::ensure_stream(&js, &Default::default())
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    // As the collector publishes under load: batches of one subject.
    let events: Vec<MarketEvent> = (0..N).map(trade).collect();
    let mut acks = Vec::new();
    for chunk in events.chunks(PER_MESSAGE) {
        let subject = moat_common_types::subject::Subject::for_event(&chunk[0])?.to_string();
        let (headers, payload) = moat_common_types::proto_conv::batch_message(chunk);
        acks.push(js.publish_with_headers(subject, headers, payload).await?);
        if acks.len() == 2_000 {
            for a in acks.drain(..) {
                a.await?;
            }
        }
    }
    for a in acks {
        a.await?;
    }
    let messages = N.div_ceil(PER_MESSAGE as u64);
    // Second baseline: JetStream alone, the same messages fetched in the
    // writer's request size and acked one by one with nothing inserted.
    let drain = {
        use async_nats::jetstream::consumer::{AckPolicy, pull};
        let consumer = js
            .get_stream("MARKET_DATA")
            .await?
            .create_consumer(pull::Config {
                durable_name: Some("bench-drain".into()),
                ack_policy: AckPolicy::Explicit,
                max_ack_pending: 200_000,
                ..Default::default()
            })
            .await?;
        drain_rate(&consumer, messages).await?
    };
    let token = CancellationToken::new();
    let started = Instant::now();
    let http = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let task = tokio::spawn(moat_storage_writer::run(config, http, token.clone()));
    loop {
        let n: u64 = client.query("SELECT count() FROM trades").fetch_one().await?;
        if n >= N {
            break;
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(300),
            "writer stored only {n} of {N} rows in 300 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let ours = N as f64 / started.elapsed().as_secs_f64();
    rows.push(Row {
        what: format!(
            "storage-writer: {N} trades JetStream → ClickHouse ({PER_MESSAGE} per message), acked after insert"
        ),
        figure: format!("{ours:.0} rows/s"),
        baseline: format!("{bare:.0} rows/s (bare clickhouse-crate insert, 50k batches)"),
        ratio: ours / bare,
    });
    rows.push(Row {
        what: format!("storage-writer: the same {N} trades, beside JetStream alone"),
        figure: format!("{ours:.0} rows/s"),
        baseline: format!(
            "{:.0} events/s ({drain:.0} msgs/s fetched 10k per request and acked, nothing inserted)",
            drain * PER_MESSAGE as f64
        ),
        ratio: ours / (drain * PER_MESSAGE as f64),
    });

    // End-to-end lag at a steady 5,000 events/s, published as the
    // collector publishes them (the events of each 10 ms in one message of
    // their subject): publish a probe among the load and poll until
    // ClickHouse returns it. Baseline: the same poll after a direct
    // single-row insert (the floor set by ClickHouse).
    let load_token = CancellationToken::new();
    let load = {
        let (js, token) = (js.clone(), load_token.clone());
        tokio::spawn(async move {
            let mut i = N;
            let mut tick = tokio::time::interval(Duration::from_millis(10));
            while !token.is_cancelled() {
                tick.tick().await;
                let events: Vec<MarketEvent> = (i..i + LAG_BATCH).map(trade).collect();
                i += LAG_BATCH;
                let (headers, payload) = moat_common_types::proto_conv::batch_message(&events);
                if js
                    .publish_with_headers("md.trade.bench.spot.BTC-USDT", headers, payload)
                    .await
                    .is_err()
                {
                    return;
                }
            }
        })
    };
    let visible = |id: String| {
        let client = client.clone();
        async move {
            loop {
                let n: u64 = client
                    .query("SELECT count() FROM trades WHERE trade_id = ?")
                    .bind(&id)
                    .fetch_one()
                    .await
                    .unwrap_or(0);
                if n > 0 {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    };
    let (mut lags, mut floors) = (Vec::new(), Vec::new());
    for k in 0..20u64 {
        let mut probe = trade(10_000_000_000 + k);
        if let MarketEvent::Trade(t) = &mut probe {
            t.trade_id = format!("probe-{k}");
        }
        let t = Instant::now();
        js.publish(
            "md.trade.bench.spot.BTC-USDT",
            moat_common_types::proto_conv::encode(&probe).into(),
        )
        .await?
        .await?;
        tokio::time::timeout(Duration::from_secs(30), visible(format!("probe-{k}"))).await?;
        lags.push(t.elapsed());

        let row = match TableRow::from_event(&probe) {
            Ok(TableRow::Trade(mut r)) => {
                r.trade_id = format!("floor-{k}");
                r
            }
            _ => unreachable!("a trade makes a trade row"),
        };
        let t = Instant::now();
        let mut insert = client.insert::<moat_storage_writer::rows::TradeRow>("trades").await?;
        insert.write(&row).await?;
        insert.end().await?;
        visible(format!("floor-{k}")).await;
        floors.push(t.elapsed());
    }
    load_token.cancel();
    load.await?;
    lags.sort();
    floors.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    rows.push(Row {
        what: format!(
            "storage-writer: publish → queryable row at 5,000 events/s ({LAG_BATCH} per message, default flush_interval)"
        ),
        figure: format!(
            "p50 {:.0} ms, p99 {:.0} ms",
            ms(percentile(&lags, 0.5)),
            ms(percentile(&lags, 0.99))
        ),
        baseline: format!(
            "p50 {:.1} ms, p99 {:.1} ms (direct single-row insert until visible)",
            ms(percentile(&floors, 0.5)),
            ms(percentile(&floors, 0.99))
        ),
        ratio: percentile(&lags, 0.5).as_secs_f64() / percentile(&floors, 0.5).as_secs_f64(),
    });
    token.cancel();
    task.await??;
    client.query(&format!("DROP DATABASE {db}")).execute().await?;
    Ok(ours)
}
