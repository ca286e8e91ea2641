//! The gateway's gRPC health and the strategy token.

use moat_proto::gateway::v1 as pb;

use super::Report;
use crate::Global;
use crate::gateway::authed;

pub(super) async fn gateway_grpc(report: &mut Report, global: &Global) {
    const NAME: &str = "gateway gRPC health";
    let fix = "start moat-gateway (cargo xtask up), or point --gateway / MOAT_GATEWAY at it";
    let channel = match crate::gateway::connect(global).await {
        Ok(c) => c,
        Err(error) => return report.fail(NAME, format!("{error:#}"), fix),
    };
    let mut client = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    match client
        .check(tonic_health::pb::HealthCheckRequest { service: String::new() })
        .await
    {
        Ok(r) if r.get_ref().status == tonic_health::pb::health_check_response::ServingStatus::Serving as i32 => {
            report.pass(NAME, format!("SERVING at {}", global.gateway));
        }
        Ok(r) => report.fail(
            NAME,
            format!("status {:?}", r.get_ref().status()),
            "see the gateway's log",
        ),
        Err(status) => report.fail(NAME, format!("{:?}: {}", status.code(), status.message()), fix),
    }
    // The token: a cheap authenticated call that touches no state.
    let mut market = moat_proto::gateway::v1::market_service_client::MarketServiceClient::new(channel);
    match global.token.as_deref() {
        None | Some("") => report.warn(
            "gateway token",
            "no token given: the token and book checks are skipped",
            "pass --token or set MOAT_TOKEN",
        ),
        Some(_) => {
            let request = authed(
                global,
                pb::GetCandlesRequest {
                    exchange: "doctor".into(),
                    symbol: "CHECK-TOKEN".into(),
                    interval: "no-such-interval".into(),
                    from_ms: 0,
                    to_ms: 0,
                },
            );
            match request {
                Err(error) => report.fail(
                    "gateway token",
                    format!("{error:#}"),
                    "use the token from the gateway's tokens file",
                ),
                Ok(request) => match market.get_candles(request).await {
                    Err(s) if s.code() == tonic::Code::Unauthenticated => report.fail(
                        "gateway token",
                        format!("refused: {}", s.message()),
                        "the token is not in the gateway's auth.tokens / auth.tokens_file: use the strategy's token",
                    ),
                    Err(s) if s.code() == tonic::Code::ResourceExhausted => report.fail(
                        "gateway token",
                        format!("refused: {}", s.message()),
                        "too many failed attempts or calls: wait for the lockout or rate limit to pass",
                    ),
                    // The bogus interval is refused only after authentication.
                    Ok(_) | Err(_) => report.pass("gateway token", "accepted"),
                },
            }
        }
    }
}
