//! NATS: reachable, its version, JetStream, the stream and the writer's lag.

use std::time::Duration;

use super::{NATS_FLOOR, Report, at_least};
use crate::gateway::error_chain;
use crate::ops::Endpoints;

pub(super) async fn nats(report: &mut Report, e: &Endpoints, max_lag: u64) {
    let fix = "start nats-server with JetStream (`nats-server -js`), or point --nats / MOAT_NATS at it";
    let client = match e
        .nats_tls
        .options()
        .connection_timeout(Duration::from_secs(3))
        .connect(&e.nats)
        .await
    {
        Ok(c) => {
            let version = c.server_info().version;
            if at_least(&version, NATS_FLOOR) {
                report.pass("nats", format!("reachable at {}, nats-server {version}", e.nats));
            } else {
                report.fail(
                    "nats",
                    format!("{} runs nats-server {version}, older than moat supports", e.nats),
                    format!("upgrade nats-server to {}.{} or newer", NATS_FLOOR.0, NATS_FLOOR.1),
                );
            }
            c
        }
        Err(error) => {
            report.fail("nats", format!("{} unreachable: {}", e.nats, error_chain(&error)), fix);
            for name in ["jetstream", "stream MARKET_DATA", "storage-writer consumer lag"] {
                report.fail(name, "not checked: NATS is unreachable", fix);
            }
            return;
        }
    };
    let js = async_nats::jetstream::new(client);
    match tokio::time::timeout(Duration::from_secs(3), js.query_account()).await {
        Ok(Ok(account)) => report.pass("jetstream", format!("enabled, {} streams", account.streams)),
        Ok(Err(error)) => report.fail(
            "jetstream",
            format!("not enabled: {}", error_chain(&error)),
            "restart nats-server with JetStream (-js, or a jetstream block in its config)",
        ),
        Err(_) => report.fail(
            "jetstream",
            "no answer within 3 s",
            "restart nats-server with JetStream (-js, or a jetstream block in its config)",
        ),
    }
    let stream_name = moat_common_types::subject::STREAM;
    let expected = moat_common_types::subject::STREAM_SUBJECTS;
    match js.get_stream(stream_name).await {
        Ok(mut stream) => match stream.info().await {
            Ok(info) if !info.config.subjects.iter().any(|s| s == expected) => report.fail(
                "stream MARKET_DATA",
                format!("subjects {:?} do not include {expected}", info.config.subjects),
                format!("nats stream edit {stream_name} --subjects '{expected}'"),
            ),
            Ok(info) if !info.config.allow_atomic_publish => report.warn(
                "stream MARKET_DATA",
                "atomic batches are off: the collector publishes message by message, one disk sync each",
                "restart moat-collector on nats-server 2.12 or later (it turns allow_atomic on)",
            ),
            Ok(info) => report.pass(
                "stream MARKET_DATA",
                format!(
                    "subjects {:?}, {} messages, atomic batches on",
                    info.config.subjects, info.state.messages
                ),
            ),
            Err(error) => report.fail("stream MARKET_DATA", error.to_string(), "check NATS's log"),
        },
        Err(error) => report.fail(
            "stream MARKET_DATA",
            format!("missing: {error}"),
            "start moat-collector once (it creates the stream), or `nats stream add MARKET_DATA --subjects 'md.>'`",
        ),
    }
    match crate::ops::consumer_lag(&e.nats, &e.nats_tls, &e.consumer).await {
        Ok((pending, _)) if pending > max_lag => report.warn(
            "storage-writer consumer lag",
            format!("{pending} messages waiting (more than {max_lag})"),
            "add storage-writer replicas or check ClickHouse insert latency (storage-writer /metrics)",
        ),
        Ok((pending, acks)) => report.pass(
            "storage-writer consumer lag",
            format!("{pending} waiting, {acks} in flight"),
        ),
        Err(error) => report.fail(
            "storage-writer consumer lag",
            format!("consumer {}: {error}", e.consumer),
            "start moat-storage-writer (it creates its durable consumer)",
        ),
    }
}
