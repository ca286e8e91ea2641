//! Each configured address accepts a TCP connection.

use std::time::Duration;

use super::Report;
use crate::Global;
use crate::ops::Endpoints;

/// `host:port` of a URL, for the resolve-and-connect check.
pub(super) fn host_port(url: &str, default_port: u16) -> Option<String> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split('/').next()?;
    let authority = authority.rsplit('@').next()?;
    if authority.is_empty() {
        return None;
    }
    Some(
        if authority
            .rsplit_once(':')
            .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
        {
            authority.to_owned()
        } else {
            format!("{authority}:{default_port}")
        },
    )
}

pub(super) async fn addresses(report: &mut Report, global: &Global, e: &Endpoints) {
    let mut targets = vec![("gateway gRPC", global.gateway.as_str(), 50051)];
    for (service, base) in e.services() {
        targets.push((service, base, 80));
    }
    targets.push(("nats", e.nats.as_str(), 4222));
    targets.push(("clickhouse", e.clickhouse.as_str(), 8123));
    for (what, url, default_port) in targets {
        let name = format!("address of {what}");
        let Some(addr) = host_port(url, default_port) else {
            report.fail(
                name,
                format!("{url:?} has no host"),
                "give a URL such as http://host:port",
            );
            continue;
        };
        let resolved = match tokio::net::lookup_host(addr.as_str()).await {
            Ok(addrs) => addrs.collect::<Vec<_>>(),
            Err(error) => {
                report.fail(
                    name,
                    format!("{addr} does not resolve: {error}"),
                    "check the host name and DNS",
                );
                continue;
            }
        };
        let Some(first) = resolved.first().copied() else {
            report.fail(
                name,
                format!("{addr} resolves to nothing"),
                "check the host name and DNS",
            );
            continue;
        };
        match tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(first)).await {
            Ok(Ok(_)) => report.pass(name, format!("{addr} ({first}) accepts connections")),
            Ok(Err(error)) => report.fail(
                name,
                format!("{addr} ({first}) refuses connections: {error}"),
                format!("start {what} or correct its address"),
            ),
            Err(_) => report.fail(
                name,
                format!("{addr} ({first}) does not answer within 2 s"),
                "a firewall or a hung process: check the host and port",
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_come_from_urls() {
        assert_eq!(
            host_port("http://127.0.0.1:9090", 80).as_deref(),
            Some("127.0.0.1:9090")
        );
        assert_eq!(
            host_port("nats://user:pw@nats.svc:4222", 4222).as_deref(),
            Some("nats.svc:4222")
        );
        assert_eq!(host_port("http://gateway/path", 80).as_deref(), Some("gateway:80"));
        assert_eq!(host_port("http://", 80), None);
    }
}
