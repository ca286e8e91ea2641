//! JetStream's durability as moat runs it: a nats-server killed with
//! SIGKILL keeps every publish it acknowledged and its consumers' ack state
//! (but for the last acks it confirmed, whose messages come again and the
//! storage-writer stores once); a three-node cluster with
//! `MARKET_DATA` on three replicas keeps the whole pipeline going, losing
//! nothing, when any one node dies.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::{self, consumer::pull, stream};
use futures::StreamExt;
use futures::stream::FuturesOrdered;
use moat_devstack::Nats;
use moat_integration_tests::stack::{Stack, StackOptions};
use moat_integration_tests::{eventually, scratch};
use tokio_util::sync::CancellationToken;

/// Publishes `dur.<n>` with 256 acks in flight until `stop` or an error,
/// recording the stream sequence of every publish the server acknowledged.
async fn publish_until_error(js: jetstream::Context, acked: Arc<Mutex<BTreeSet<u64>>>, stop: CancellationToken) {
    let mut in_flight = FuturesOrdered::new();
    let mut n = 0u64;
    loop {
        if stop.is_cancelled() {
            return;
        }
        while in_flight.len() < 256 {
            n += 1;
            match js.publish(format!("dur.{}", n % 8), n.to_string().into()).await {
                Ok(ack) => in_flight.push_back(ack.into_future()),
                Err(_) => return,
            }
        }
        match in_flight.next().await {
            Some(Ok(ack)) => {
                acked.lock().unwrap().insert(ack.sequence);
            }
            _ => return,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_server_keeps_every_acknowledged_publish_and_its_ack_state() {
    let dir = scratch();
    let mut nats = Nats::start(dir.path()).unwrap();
    let client = async_nats::connect(nats.url()).await.unwrap();
    let js = jetstream::new(client);
    let stream = js
        .create_stream(stream::Config {
            name: "DUR".into(),
            subjects: vec!["dur.>".into()],
            ..Default::default()
        })
        .await
        .unwrap();
    let consumer = stream
        .create_consumer(pull::Config {
            durable_name: Some("reader".into()),
            ack_policy: jetstream::consumer::AckPolicy::Explicit,
            ..Default::default()
        })
        .await
        .unwrap();

    let acked = Arc::new(Mutex::new(BTreeSet::new()));
    let stop = CancellationToken::new();
    let publisher = tokio::spawn(publish_until_error(js.clone(), acked.clone(), stop.clone()));
    // A reader acks each message and waits for the server to confirm it
    // (double ack): the confirmed acks must survive the kill.
    let confirmed = Arc::new(Mutex::new(BTreeSet::new()));
    let reader = {
        let confirmed = confirmed.clone();
        tokio::spawn(async move {
            let Ok(mut messages) = consumer.messages().await else {
                return;
            };
            while let Some(Ok(message)) = messages.next().await {
                let Ok(info) = message.info().map(|i| i.stream_sequence) else {
                    return;
                };
                if message.double_ack().await.is_err() {
                    return;
                }
                confirmed.lock().unwrap().insert(info);
            }
        })
    };
    eventually("publishes and acks under way", Duration::from_secs(60), || async {
        (acked.lock().unwrap().len() > 3_000 && confirmed.lock().unwrap().len() > 1_000).then_some(())
    })
    .await;
    tokio::task::block_in_place(|| nats.kill());
    stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(10), publisher).await;
    reader.abort();
    let acked = acked.lock().unwrap().clone();
    let confirmed = confirmed.lock().unwrap().clone();

    tokio::task::block_in_place(|| nats.restart()).unwrap();
    let client = async_nats::connect(nats.url()).await.unwrap();
    let js = jetstream::new(client);
    let mut stream = js.get_stream("DUR").await.unwrap();
    let state = stream.info().await.unwrap().state.clone();
    let last_acked = *acked.last().unwrap();
    assert!(
        state.last_sequence >= last_acked && state.messages >= last_acked,
        "{} publishes acknowledged (last sequence {last_acked}), but after the kill the stream holds {} messages up to {}",
        acked.len(),
        state.messages,
        state.last_sequence
    );
    // Acks confirmed in order. nats-server writes a consumer's ack state
    // after confirming the ack, even with `sync_interval: always`, so a
    // SIGKILL forgets the last ones it confirmed (measured on 2.15.1: 0 to 9
    // with `always`, more on a busy machine; 7 to 91 with the default
    // sync). Their messages are delivered again and the writer stores a
    // redelivery once (tests/tests/pipeline.rs), so no data is lost; what
    // must hold is that the ack state itself survives the kill.
    let floor = confirmed
        .iter()
        .zip(1u64..)
        .take_while(|(seq, expected)| **seq == *expected)
        .count() as u64;
    let info = stream.consumer_info("reader").await.unwrap();
    assert!(
        info.ack_floor.stream_sequence > 0 && floor > 1_000,
        "acks confirmed up to {floor}, but after the kill the consumer's ack floor is {}: its state was lost",
        info.ack_floor.stream_sequence
    );
    println!(
        "{} publishes acknowledged and {} stored; acks confirmed up to {floor}, ack floor {} after the SIGKILL \
         ({} confirmed acks forgotten)",
        acked.len(),
        state.messages,
        info.ack_floor.stream_sequence,
        floor.saturating_sub(info.ack_floor.stream_sequence)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_node_knows_its_peers() {
    let dir = scratch();
    let nodes = tokio::task::block_in_place(|| Nats::cluster(dir.path(), 3)).unwrap();
    // Every node sees the two others once the routes are up.
    for node in &nodes {
        let others: BTreeSet<String> = nodes
            .iter()
            .map(Nats::server_name)
            .filter(|name| *name != node.server_name())
            .map(str::to_owned)
            .collect();
        let monitor = node.monitor_addr();
        eventually(
            &format!("{} routed to {others:?}", node.server_name()),
            Duration::from_secs(20),
            || {
                let (monitor, others) = (monitor.clone(), others.clone());
                async move {
                    let routez = tokio::task::spawn_blocking(move || {
                        moat_devstack::http_get(&monitor, "/routez", Duration::from_secs(2))
                    })
                    .await
                    .ok()?
                    .ok()?;
                    let routez: serde_json::Value = serde_json::from_str(&routez.body).ok()?;
                    let seen: BTreeSet<String> = routez["routes"]
                        .as_array()?
                        .iter()
                        .filter_map(|r| r["remote_name"].as_str().map(str::to_owned))
                        .collect();
                    (seen == others).then_some(())
                }
            },
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_three_node_cluster_loses_nothing_when_any_node_dies() {
    let mut stack = Stack::start(StackOptions {
        trades_per_second: 100,
        nats_cluster: true,
        ..StackOptions::default()
    })
    .await;
    let stored = |stack: &Stack| tokio::task::block_in_place(|| stack.stored_trades().0);
    eventually("trades flowing into ClickHouse", Duration::from_secs(60), || async {
        (stored(&stack) > 300).then_some(())
    })
    .await;
    for node in 0..3 {
        let name = {
            let nats = if node == 0 {
                &mut stack.nats[0]
            } else {
                &mut stack.nats[node]
            };
            tokio::task::block_in_place(|| nats.kill());
            nats.server_name().to_owned()
        };
        // The writer carries on with a node gone: new trades keep arriving.
        let before = stored(&stack);
        eventually(
            &format!("trades stored while {name} is down"),
            Duration::from_secs(30),
            || async { (stored(&stack) > before + 300).then_some(()) },
        )
        .await;
        let nats = if node == 0 {
            &mut stack.nats[0]
        } else {
            &mut stack.nats[node]
        };
        tokio::task::block_in_place(|| nats.restart()).unwrap_or_else(|e| panic!("restarting {name}: {e}"));
        // The node catches up before the next one goes, as a rolling
        // restart would wait for it.
        let monitor = nats.monitor_addr();
        eventually(&format!("{name} current again"), Duration::from_secs(60), || {
            let monitor = monitor.clone();
            async move {
                let r = tokio::task::spawn_blocking(move || {
                    moat_devstack::http_get(&monitor, "/healthz", Duration::from_secs(2))
                })
                .await
                .ok()?
                .ok()?;
                r.is_success().then_some(())
            }
        })
        .await;
    }

    // Everything the exchange sent is stored exactly once, no gap announced.
    stack.exchange_control("rate?trades_per_second=0");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let sent = stack.exchange_stats()["trades_sent"].as_u64().unwrap();
    eventually("the writer caught up", Duration::from_secs(150), || async {
        (stack.writer_caught_up().await == Ok(true)).then_some(())
    })
    .await;
    let (distinct, visible) = tokio::task::block_in_place(|| stack.stored_trades());
    let gaps = stack.query(&format!("SELECT count() FROM {}.gaps", stack.spec.database));
    assert_eq!(
        (distinct, visible, gaps.as_str()),
        (sent, sent, "0"),
        "sent {sent}: stored distinct {distinct}, FINAL rows {visible}, gap events {gaps}"
    );
}
