//! Rate limits and the authentication lockout, shared by gateway replicas.
//!
//! Behind a Kubernetes Service each replica sees only its share of a
//! strategy's calls, so buckets kept per replica would let a strategy make
//! N times its limit across N replicas. Instead every replica keeps its own
//! buckets on the request path (no network hop per call) and, every
//! `limits.share_interval`, publishes on core NATS what it admitted per
//! bucket and which peers failed to authenticate. Every other replica
//! spends those calls from its own buckets and counts those failures, so
//! the replicas together hold one limit. The price is the interval: a
//! replica learns of the others' calls up to one interval late, so the
//! total can run over the limit by about (replicas − 1) × rate × interval.
//!
//! NATS is not needed for a call to succeed: while the connection is down
//! each replica limits alone (`moat_gateway_limits_shared` is 0), and
//! reports are neither queued nor replayed later.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use async_nats::connection::State;
use futures::StreamExt;
use serde::{Deserialize, Serialize};

use crate::services::Gateway;

/// The core NATS subject of the reports.
pub const SUBJECT: &str = "moat.gateway.limits";

/// What one replica admitted and refused since its last report.
#[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
struct Report {
    /// The sending replica, so that it skips its own reports.
    replica: String,
    /// Calls admitted per strategy.
    #[serde(default, skip_serializing_if = "HashMap::is_empty")]
    calls: HashMap<String, u32>,
    /// RPC calls admitted per strategy and chain.
    #[serde(default, skip_serializing_if = "HashMap::is_empty")]
    rpc: HashMap<String, u32>,
    /// Failed authentications per peer.
    #[serde(default, skip_serializing_if = "HashMap::is_empty")]
    auth_failures: HashMap<IpAddr, u32>,
}

impl Report {
    fn is_empty(&self) -> bool {
        self.calls.is_empty() && self.rpc.is_empty() && self.auth_failures.is_empty()
    }
}

/// A name for this replica that no other one has.
pub fn replica_id() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_default();
    format!("{host}-{:016x}", rand::random::<u64>())
}

/// Publishes this replica's reports and applies the others' until the
/// task is aborted.
pub async fn run(gateway: Arc<Gateway>, nats: async_nats::Client, replica: String) {
    let every = gateway.config.limits.share_interval;
    let shared = gateway.metrics.limits_shared.clone();
    let mut subscription = loop {
        match nats.subscribe(SUBJECT).await {
            Ok(subscription) => break subscription,
            Err(error) => {
                shared.set(0);
                tracing::warn!(%error, "cannot subscribe to {SUBJECT}: limits are per replica until it works");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    };
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let connected = nats.connection_state() == State::Connected;
                shared.set(i64::from(connected));
                let report = collect(&gateway, &replica);
                // While disconnected, async-nats would queue the report and
                // send it much later; stale spending is worse than none.
                if connected && !report.is_empty() {
                    match serde_json::to_vec(&report) {
                        Ok(payload) => {
                            if let Err(error) = nats.publish(SUBJECT, payload.into()).await {
                                shared.set(0);
                                tracing::debug!(%error, "publishing the limits report failed");
                            }
                        }
                        Err(error) => tracing::error!(%error, "encoding the limits report failed"),
                    }
                }
            }
            message = subscription.next() => {
                let Some(message) = message else {
                    shared.set(0);
                    tracing::warn!("the {SUBJECT} subscription ended: limits are per replica from now on");
                    return;
                };
                match serde_json::from_slice::<Report>(&message.payload) {
                    Ok(report) if report.replica != replica => apply(&gateway, report),
                    Ok(_) => {}
                    Err(error) => tracing::warn!(%error, "ignoring a malformed limits report on {SUBJECT}"),
                }
            }
        }
    }
}

fn collect(gateway: &Gateway, replica: &str) -> Report {
    Report {
        replica: replica.to_owned(),
        calls: gateway.limiter.take_used().into_iter().collect(),
        rpc: gateway.rpc_limiter.take_used().into_iter().collect(),
        auth_failures: gateway.auth.take_failures().into_iter().collect(),
    }
}

fn apply(gateway: &Gateway, report: Report) {
    for (key, calls) in report.calls {
        gateway.limiter.spend_remote(&key, calls);
    }
    for (key, calls) in report.rpc {
        gateway.rpc_limiter.spend_remote(&key, calls);
    }
    for (peer, failures) in report.auth_failures {
        gateway.auth.record_remote_failures(peer, failures);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_round_trip_and_leave_out_what_is_empty() {
        let mut report = Report {
            replica: "gw-1".into(),
            ..Report::default()
        };
        assert!(report.is_empty());
        assert_eq!(serde_json::to_string(&report).unwrap(), r#"{"replica":"gw-1"}"#);
        report.calls.insert("alpha".into(), 3);
        report.auth_failures.insert("10.0.0.1".parse().unwrap(), 2);
        let text = serde_json::to_string(&report).unwrap();
        assert_eq!(serde_json::from_str::<Report>(&text).unwrap(), report);
        assert!(!report.is_empty());
    }
}
