//! Each venue's connection, rate and books, from the collector.

use std::time::Duration;

use moat_proto::gateway::v1 as pb;
use serde_json::Value;

use super::Report;
use crate::Global;
use crate::gateway::authed;
use crate::ops::{Endpoints, collector_rates, get};

pub(super) async fn venues(report: &mut Report, http: &reqwest::Client, global: &Global, e: &Endpoints) {
    let status = match get(http, &format!("{}/status", e.collector_http)).await {
        Ok((200, body)) => serde_json::from_str::<Value>(&body).unwrap_or(Value::Null),
        Ok((status, _)) => {
            report.fail(
                "exchange connections",
                format!("collector /status answered HTTP {status}"),
                "see the collector's log",
            );
            return;
        }
        Err(error) => {
            report.fail(
                "exchange connections",
                format!("collector unreachable: {error}"),
                "start moat-collector or set --collector-http",
            );
            return;
        }
    };
    let venues = status["venues"].as_array().cloned().unwrap_or_default();
    if venues.is_empty() {
        report.fail(
            "exchange connections",
            "the collector has no venue configured",
            "add [[venues]] to config/collector.toml (or enable [sim])",
        );
        return;
    }
    let rates = collector_rates(http, &e.collector_http).await.unwrap_or_default();
    let channel = match global.token.as_deref() {
        Some(t) if !t.is_empty() => crate::gateway::connect(global).await.ok(),
        _ => None,
    };
    for venue in &venues {
        let exchange = venue["exchange"].as_str().unwrap_or_default();
        let name = format!("exchange {exchange}");
        if venue["connected"].as_bool() != Some(true) {
            report.fail(
                format!("{name} connection"),
                "not connected",
                "see the collector's log for the venue's errors; reconnects back off up to backoff_max",
            );
        } else {
            report.pass(format!("{name} connection"), "connected");
        }
        match rates.get(exchange) {
            Some(rate) if *rate > 0.0 => report.pass(format!("{name} rate"), format!("{rate:.0} messages/s")),
            _ => report.fail(
                format!("{name} rate"),
                "no messages in the last second",
                "the connection is up but silent: check the subscribed symbols and the collector's rejects metric",
            ),
        }
        let Some(channel) = channel.clone() else { continue };
        let mut market = moat_proto::gateway::v1::market_service_client::MarketServiceClient::new(channel);
        let symbols: Vec<&str> = venue["streams"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s["symbol"].as_str())
            .take(10)
            .collect();
        let mut invalid = Vec::new();
        let mut valid = 0;
        for symbol in &symbols {
            let request = authed(
                global,
                pb::GetOrderBookRequest {
                    exchange: exchange.to_owned(),
                    symbol: (*symbol).to_owned(),
                    depth: 1,
                },
            );
            let Ok(request) = request else { break };
            match tokio::time::timeout(Duration::from_secs(2), market.get_order_book(request)).await {
                Ok(Ok(book)) if book.get_ref().valid => valid += 1,
                Ok(Ok(_)) => invalid.push(*symbol),
                // No book for this stream (trades only), or no answer.
                Ok(Err(_)) | Err(_) => {}
            }
        }
        if !invalid.is_empty() {
            report.fail(
                format!("{name} books"),
                format!("invalid (resyncing): {}", invalid.join(", ")),
                "a book stays invalid until a new snapshot applies: check moat_collector_book_resyncs_total by reason",
            );
        } else if valid > 0 {
            report.pass(format!("{name} books"), format!("{valid} books valid"));
        } else if !symbols.is_empty() {
            report.warn(
                format!("{name} books"),
                format!("the gateway has no book yet for {}", symbols.join(", ")),
                "a gateway started after the collector gets every book within the collector's book_snapshot_interval (30s)",
            );
        }
    }
}
