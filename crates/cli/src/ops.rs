//! Operator commands: `tail` (live events) and `status` (one screen), and
//! the service addresses they and `doctor` share.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, anyhow};
use clap::Args;
use futures::StreamExt;
use moat_common_types::MarketEvent;
use moat_common_types::proto_conv::decode_message;
use serde_json::{Value, json};

use crate::Global;
use crate::gateway::error_chain;
use crate::output::{json as print_json, table};

/// TLS to NATS for an operator's commands (`tail`, `status`, `doctor`).
#[derive(Args, Debug, Clone)]
pub struct NatsTls {
    /// CA of the NATS server's certificate: TLS to NATS.
    #[arg(long, env = "MOAT_NATS_CA")]
    pub nats_ca: Option<std::path::PathBuf>,
    /// The operator's certificate, which names NATS user moat-operator.
    #[arg(long, env = "MOAT_NATS_CERT", requires = "nats_key")]
    pub nats_cert: Option<std::path::PathBuf>,
    /// The key of --nats-cert.
    #[arg(long, env = "MOAT_NATS_KEY", requires = "nats_cert")]
    pub nats_key: Option<std::path::PathBuf>,
}

impl NatsTls {
    /// Connection options with TLS when a CA is given, replies on the
    /// operator's own inboxes.
    pub fn options(&self) -> async_nats::ConnectOptions {
        let mut options = async_nats::ConnectOptions::new().custom_inbox_prefix("_INBOX.moat-operator");
        if let Some(ca) = &self.nats_ca {
            options = options.require_tls(true).add_root_certificates(ca.clone());
        }
        if let (Some(cert), Some(key)) = (&self.nats_cert, &self.nats_key) {
            options = options.add_client_certificate(cert.clone(), key.clone());
        }
        options
    }
}

/// Where the services and their dependencies answer.
#[derive(Args, Debug, Clone)]
pub struct Endpoints {
    /// Gateway HTTP (`/health`, `/metrics`).
    #[arg(long, env = "MOAT_GATEWAY_HTTP", default_value = "http://127.0.0.1:9090")]
    pub gateway_http: String,
    /// Collector HTTP (`/health`, `/metrics`, `/status`).
    #[arg(long, env = "MOAT_COLLECTOR_HTTP", default_value = "http://127.0.0.1:8080")]
    pub collector_http: String,
    /// Storage-writer HTTP (`/health`, `/metrics`).
    #[arg(long, env = "MOAT_STORAGE_WRITER_HTTP", default_value = "http://127.0.0.1:8081")]
    pub storage_writer_http: String,
    /// State service HTTP (`/health`, `/metrics`).
    #[arg(long, env = "MOAT_STATE_HTTP", default_value = "http://127.0.0.1:9091")]
    pub state_http: String,
    #[arg(long, env = "MOAT_NATS", default_value = "nats://127.0.0.1:4222")]
    pub nats: String,
    #[command(flatten)]
    pub nats_tls: NatsTls,
    /// NATS monitoring port (for the JetStream storage folder).
    #[arg(long, env = "MOAT_NATS_MONITOR", default_value = "http://127.0.0.1:8222")]
    pub nats_monitor: String,
    #[arg(long, env = "MOAT_CLICKHOUSE", default_value = "http://127.0.0.1:8123")]
    pub clickhouse: String,
    #[arg(long, env = "MOAT_CLICKHOUSE_DATABASE", default_value = "moat")]
    pub clickhouse_database: String,
    /// The storage-writer's durable consumer.
    #[arg(long, default_value = "moat-storage-writer")]
    pub consumer: String,
}

impl Endpoints {
    /// `(service, HTTP base URL)` of every moat service.
    pub fn services(&self) -> [(&'static str, &str); 4] {
        [
            ("gateway", self.gateway_http.as_str()),
            ("collector", self.collector_http.as_str()),
            ("storage-writer", self.storage_writer_http.as_str()),
            ("state", self.state_http.as_str()),
        ]
    }
}

pub fn http_client(global: &Global, timeout: Duration) -> reqwest::Client {
    let mut builder = reqwest::Client::builder().timeout(timeout);
    // The gateway's HTTP port speaks TLS when its gRPC port does.
    if let Some(ca) = global.ca.as_deref().and_then(|p| std::fs::read(p).ok())
        && let Ok(ca) = reqwest::Certificate::from_pem(&ca)
    {
        builder = builder.add_root_certificate(ca);
    }
    if let Ok(Some((cert, key))) = global.identity()
        && let Ok(identity) = reqwest::Identity::from_pem(format!("{cert}\n{key}").as_bytes())
    {
        builder = builder.identity(identity);
    }
    builder.build().expect("an HTTP client builds")
}

/// GET `url`: status and body, or the connection error in words.
pub async fn get(http: &reqwest::Client, url: &str) -> Result<(u16, String), String> {
    let response = http.get(url).send().await.map_err(|e| error_chain(&e))?;
    let status = response.status().as_u16();
    Ok((status, response.text().await.unwrap_or_default()))
}

/// Sums of a Prometheus counter or gauge by one label.
pub fn metric_by(text: &str, name: &str, label: &str) -> BTreeMap<String, f64> {
    let mut sums = BTreeMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some(rest) = line.strip_prefix(name) else { continue };
        let (labels, value) = match rest.strip_prefix('{') {
            Some(r) => match r.split_once("} ") {
                Some((labels, value)) => (labels, value),
                None => continue,
            },
            None if rest.starts_with(' ') => ("", rest.trim()),
            None => continue,
        };
        let Ok(value) = value.trim().parse::<f64>() else {
            continue;
        };
        let key = labels
            .split(',')
            .find_map(|kv| kv.strip_prefix(&format!("{label}=\"")))
            .map(|v| v.trim_end_matches('"').to_owned())
            .unwrap_or_default();
        *sums.entry(key).or_insert(0.0) += value;
    }
    sums
}

/// Events per second by exchange, from two samples of the collector's
/// `moat_collector_events_total` one second apart.
pub async fn collector_rates(http: &reqwest::Client, collector: &str) -> Result<BTreeMap<String, f64>, String> {
    let url = format!("{collector}/metrics");
    let sample = || async {
        let (status, body) = get(http, &url).await?;
        if status != 200 {
            return Err(format!("{url} answered HTTP {status}"));
        }
        Ok(metric_by(&body, "moat_collector_events_total", "exchange"))
    };
    let first = sample().await?;
    let started = std::time::Instant::now();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let second = sample().await?;
    let elapsed = started.elapsed().as_secs_f64();
    Ok(second
        .into_iter()
        .map(|(exchange, n)| {
            let before = first.get(&exchange).copied().unwrap_or(0.0);
            (exchange, (n - before) / elapsed)
        })
        .collect())
}

#[derive(Args, Debug)]
pub struct TailArgs {
    /// NATS subject with wildcards, e.g. `md.trade.binance.>`; its events
    /// are read from the live lane (`live.md.…`) as the collector has them.
    pub subject: String,
    #[arg(long, env = "MOAT_NATS", default_value = "nats://127.0.0.1:4222")]
    pub nats: String,
    #[command(flatten)]
    pub nats_tls: NatsTls,
    /// Stop after this many events.
    #[arg(long)]
    pub count: Option<usize>,
}

pub async fn tail(global: &Global, args: TailArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.subject.starts_with("md.") || args.subject == ">" || args.subject == "md.>",
        "subject {:?} is not market data: use md.<kind>.<exchange>.<market>.<symbol> with * and > wildcards",
        args.subject
    );
    let client = args
        .nats_tls
        .options()
        .name("moat-tail")
        .connection_timeout(Duration::from_secs(5))
        .connect(&args.nats)
        .await
        .map_err(|e| {
            anyhow!(
                "cannot reach NATS at {}: {} (set --nats or MOAT_NATS)",
                args.nats,
                error_chain(&e)
            )
        })?;
    // Events as the collector has them: the live lane, one event per
    // message, not the stream's batches.
    let live = match args.subject.as_str() {
        ">" => moat_common_types::subject::live("md.>"),
        subject => moat_common_types::subject::live(subject),
    };
    let mut messages = client
        .subscribe(live.clone())
        .await
        .with_context(|| format!("subscribing to {live}"))?;
    let mut seen = 0;
    while let Some(message) = messages.next().await {
        let events = match decode_message(message.headers.as_ref(), &message.payload) {
            Ok(events) => events,
            Err(error) => {
                eprintln!("{}: undecodable payload: {}", message.subject, error.message);
                Vec::new()
            }
        };
        for event in events {
            if global.json {
                println!("{}", event.to_json());
            } else {
                println!("{}", event_line(&event));
            }
            seen += 1;
            if args.count.is_some_and(|n| seen >= n) {
                return Ok(());
            }
        }
    }
    Ok(())
}

/// One readable line per event.
pub fn event_line(event: &MarketEvent) -> String {
    let i = event.instrument();
    let head = format!("{} {} {}", event.kind().as_str(), i.exchange, i.symbol);
    match event {
        MarketEvent::Trade(t) => format!(
            "{head} {} {} @ {}  id {}  {}",
            t.side.as_str(),
            t.qty,
            t.price,
            t.trade_id,
            crate::output::time(t.ts_exchange_us / 1_000)
        ),
        MarketEvent::Bbo(b) => format!(
            "{head} bid {} x {}  ask {} x {}",
            b.bid.price, b.bid.qty, b.ask.price, b.ask.qty
        ),
        MarketEvent::BookSnapshot(b) => format!(
            "{head} snapshot seq {}  {} bids  {} asks",
            b.sequence,
            b.bids.len(),
            b.asks.len()
        ),
        MarketEvent::BookDelta(b) => format!(
            "{head} delta seq {}  {} bid and {} ask changes",
            b.sequence,
            b.bids.len(),
            b.asks.len()
        ),
        MarketEvent::Gap(g) => format!("{head} GAP {} after seq {}", g.reason, g.last_sequence),
        other => format!("{head} {other:?}"),
    }
}

pub async fn status(global: &Global, endpoints: &Endpoints) -> anyhow::Result<()> {
    let http = http_client(global, Duration::from_secs_f64(global.timeout.min(5.0)));
    let mut services = Vec::new();
    for (name, base) in endpoints.services() {
        let state = match get(&http, &format!("{base}/health")).await {
            Ok((200, _)) => "up".to_owned(),
            Ok((status, body)) => format!("unhealthy (HTTP {status}): {}", body.trim()),
            Err(error) => format!("down: {error}"),
        };
        services.push(json!({"service": name, "url": base, "state": state}));
    }
    let venues = match get(&http, &format!("{}/status", endpoints.collector_http)).await {
        Ok((200, body)) => serde_json::from_str::<Value>(&body).ok().map(|v| v["venues"].clone()),
        _ => None,
    }
    .unwrap_or(Value::Array(Vec::new()));
    let rates = collector_rates(&http, &endpoints.collector_http)
        .await
        .unwrap_or_default();
    let lag = consumer_lag(&endpoints.nats, &endpoints.nats_tls, &endpoints.consumer).await;
    if global.json {
        print_json(&json!({
            "services": services, "venues": venues, "events_per_second": rates,
            "storage_writer_lag": match &lag { Ok((pending, acks)) => json!({"pending": pending, "ack_pending": acks}), Err(e) => json!({"error": e}) },
        }));
        return Ok(());
    }
    let rows: Vec<Vec<String>> = services
        .iter()
        .map(|s| {
            vec![
                s["service"].as_str().unwrap_or_default().to_owned(),
                s["url"].as_str().unwrap_or_default().to_owned(),
                s["state"].as_str().unwrap_or_default().to_owned(),
            ]
        })
        .collect();
    table(&["SERVICE", "URL", "STATE"], &rows);
    println!();
    let rows: Vec<Vec<String>> = venues
        .as_array()
        .into_iter()
        .flatten()
        .map(|v| {
            let exchange = v["exchange"].as_str().unwrap_or_default();
            let newest = v["streams"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|s| s["last_event_age_ms"].as_i64())
                .min();
            vec![
                exchange.to_owned(),
                if v["connected"].as_bool() == Some(true) {
                    "connected".into()
                } else {
                    "DISCONNECTED".into()
                },
                v["streams"].as_array().map_or(0, Vec::len).to_string(),
                newest.map_or("-".into(), |ms| format!("{ms} ms")),
                rates.get(exchange).map_or("-".into(), |r| format!("{r:.0}")),
            ]
        })
        .collect();
    table(&["VENUE", "CONNECTION", "STREAMS", "LAST EVENT", "EVENTS/S"], &rows);
    println!();
    match lag {
        Ok((pending, acks)) => {
            println!("storage-writer lag: {pending} messages not yet delivered, {acks} delivered but not yet stored")
        }
        Err(error) => println!("storage-writer lag: unknown ({error})"),
    }
    Ok(())
}

/// `(pending, ack pending)` of the storage-writer's durable consumer.
pub async fn consumer_lag(nats: &str, tls: &NatsTls, consumer: &str) -> Result<(u64, usize), String> {
    let client = tls
        .options()
        .connection_timeout(Duration::from_secs(3))
        .connect(nats)
        .await
        .map_err(|e| error_chain(&e))?;
    let js = async_nats::jetstream::new(client);
    let stream = js
        .get_stream(moat_common_types::subject::STREAM)
        .await
        .map_err(|e| e.to_string())?;
    let mut consumer: async_nats::jetstream::consumer::PullConsumer = stream
        .get_consumer(consumer)
        .await
        .map_err(|e| format!("consumer {consumer}: {e}"))?;
    let info = consumer.info().await.map_err(|e| e.to_string())?;
    Ok((info.num_pending, info.num_ack_pending))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_are_summed_by_label() {
        let text = "# HELP x\n\
            moat_collector_events_total{exchange=\"binance\",kind=\"trade\"} 10\n\
            moat_collector_events_total{exchange=\"binance\",kind=\"bbo\"} 5\n\
            moat_collector_events_total{exchange=\"okx\",kind=\"trade\"} 2\n\
            moat_collector_events_total_other{exchange=\"okx\"} 99\n\
            moat_gateway_active_requests 3\n";
        let by = metric_by(text, "moat_collector_events_total", "exchange");
        assert_eq!(by.get("binance"), Some(&15.0));
        assert_eq!(by.get("okx"), Some(&2.0));
        assert_eq!(by.len(), 2);
        assert_eq!(metric_by(text, "moat_gateway_active_requests", "x").get(""), Some(&3.0));
    }
}
