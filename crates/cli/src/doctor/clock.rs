//! Clock skew between the exchanges and this machine.

use std::time::Duration;

use moat_common_types::MarketEvent;

use futures::StreamExt;

use super::Report;
use crate::gateway::error_chain;

pub(super) async fn clock_skew(report: &mut Report, nats: &str, tls: &crate::ops::NatsTls, max_skew_ms: i64) {
    const NAME: &str = "clock skew";
    let sampled: Result<Vec<i64>, String> = async {
        let client = tls
            .options()
            .connection_timeout(Duration::from_secs(3))
            .connect(nats)
            .await
            .map_err(|e| error_chain(&e))?;
        let mut subscription = client
            .subscribe(moat_common_types::subject::live("md.>"))
            .await
            .map_err(|e| e.to_string())?;
        let mut skews = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
        while skews.len() < 50 {
            let Ok(Some(message)) = tokio::time::timeout_at(deadline, subscription.next()).await else {
                break;
            };
            let events = moat_common_types::proto_conv::decode_message(message.headers.as_ref(), &message.payload)
                .unwrap_or_default();
            for event in events {
                match event {
                    MarketEvent::Trade(t) => skews.push((t.ts_recv_us - t.ts_exchange_us) / 1_000),
                    MarketEvent::Bbo(b) => skews.push((b.ts_recv_us - b.ts_exchange_us) / 1_000),
                    _ => {}
                }
            }
        }
        Ok(skews)
    }
    .await;
    match sampled {
        Err(error) => report.fail(NAME, format!("not checked: {error}"), "start NATS; see the nats check"),
        Ok(skews) if skews.is_empty() => report.warn(
            NAME,
            "no trade or BBO event in 3 s to compare clocks with",
            "check the exchange connections",
        ),
        Ok(mut skews) => {
            skews.sort_unstable();
            let median = skews[skews.len() / 2];
            let detail = format!(
                "receive time minus exchange time: median {median} ms over {} events",
                skews.len()
            );
            if median.abs() > max_skew_ms * 10 {
                report.fail(NAME, detail, "synchronise the clock (chrony or systemd-timesyncd)");
            } else if median.abs() > max_skew_ms {
                report.warn(
                    NAME,
                    detail,
                    "synchronise the clock (chrony or systemd-timesyncd), or check network delay",
                );
            } else {
                report.pass(NAME, detail);
            }
        }
    }
}
