//! The gateway connection: address, token, deadline, and errors that say
//! what to do about them.

use std::time::Duration;

use anyhow::{Context, anyhow};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use crate::Global;

/// Connects to the gateway, or explains why it cannot.
pub async fn connect(global: &Global) -> anyhow::Result<Channel> {
    // `--ca` with an http:// address means TLS to that host and port.
    let address = match global.gateway.strip_prefix("http://") {
        Some(rest) if global.tls() => format!("https://{rest}"),
        _ => global.gateway.clone(),
    };
    let mut endpoint = Endpoint::from_shared(address)
        .with_context(|| {
            format!(
                "--gateway {:?} is not a URL such as http://127.0.0.1:50051",
                global.gateway
            )
        })?
        .connect_timeout(Duration::from_secs_f64(global.timeout.min(5.0)))
        .timeout(Duration::from_secs_f64(global.timeout));
    if global.tls() {
        let mut tls = ClientTlsConfig::new().with_enabled_roots();
        if let Some(ca) = &global.ca {
            tls = tls.ca_certificate(Certificate::from_pem(crate::read(ca)?));
        }
        if let Some((cert, key)) = global.identity()? {
            tls = tls.identity(Identity::from_pem(cert, key));
        }
        endpoint = endpoint
            .tls_config(tls)
            .context("the TLS settings (--ca, --cert, --key)")?;
    }
    endpoint.connect().await.map_err(|e| {
        anyhow!(
            "cannot reach the gateway at {}: {} (is it running? set --gateway or MOAT_GATEWAY)",
            global.gateway,
            error_chain(&e)
        )
    })
}

/// A request carrying the token, or an error when there is none.
pub fn authed<T>(global: &Global, message: T) -> anyhow::Result<tonic::Request<T>> {
    let token = global
        .token
        .as_deref()
        .filter(|t| !t.is_empty())
        .ok_or_else(|| anyhow!("no token: pass --token or set MOAT_TOKEN to the strategy's token"))?;
    let mut request = tonic::Request::new(message);
    let value = format!("Bearer {token}")
        .parse()
        .map_err(|_| anyhow!("the token contains characters a header cannot carry"))?;
    request.metadata_mut().insert("authorization", value);
    Ok(request)
}

/// A gateway refusal in words: which code, what it said, what to check.
pub fn explain(status: tonic::Status) -> anyhow::Error {
    let hint = match status.code() {
        tonic::Code::Unauthenticated => " (the gateway refused the token: check --token / MOAT_TOKEN)",
        tonic::Code::ResourceExhausted => " (rate limited or locked out after failed tokens: wait and retry)",
        tonic::Code::Unavailable => " (the gateway or a service behind it is unavailable)",
        tonic::Code::DeadlineExceeded => " (no answer in time: raise --timeout)",
        _ => "",
    };
    anyhow!("{:?}: {}{hint}", status.code(), status.message())
}

/// `error: cause: cause`.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}
