//! The JetStream stream every market event goes through, the connection
//! every service makes, and the NATS user of each service with the subjects
//! it may use.

use std::time::Duration;

use async_nats::jetstream::{self, stream};

use crate::subject::{STREAM, STREAM_SUBJECTS};

/// How long JetStream remembers a `Nats-Msg-Id` to drop republished events.
pub const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);

/// Settings of the `MARKET_DATA` stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamSettings {
    pub name: String,
    pub replicas: usize,
    pub max_age: Duration,
    pub max_bytes: i64,
}

impl Default for StreamSettings {
    fn default() -> Self {
        StreamSettings {
            name: STREAM.to_owned(),
            replicas: 1,
            max_age: Duration::from_secs(24 * 3600),
            max_bytes: -1,
        }
    }
}

/// Creates the stream if it does not exist yet and returns it. An existing
/// stream is used as it is, so operators may tune it in place, with one
/// exception: atomic batches are turned on when they are off
/// (`allow_atomic`, nats-server 2.12 and later), since the collector
/// publishes each round as one. A server that refuses the update leaves
/// the collector publishing message by message.
pub async fn ensure_stream(
    js: &jetstream::Context,
    settings: &StreamSettings,
) -> Result<stream::Stream, async_nats::Error> {
    let config = stream::Config {
        name: settings.name.clone(),
        subjects: vec![STREAM_SUBJECTS.to_owned()],
        storage: stream::StorageType::File,
        retention: stream::RetentionPolicy::Limits,
        num_replicas: settings.replicas,
        max_age: settings.max_age,
        max_bytes: settings.max_bytes,
        duplicate_window: DUPLICATE_WINDOW,
        discard: stream::DiscardPolicy::Old,
        allow_atomic_publish: true,
        ..Default::default()
    };
    let mut stream = js.get_or_create_stream(config).await?;
    let current = stream.info().await?.config.clone();
    if !current.allow_atomic_publish {
        let name = current.name.clone();
        match js
            .update_stream(stream::Config {
                allow_atomic_publish: true,
                ..current
            })
            .await
        {
            Ok(_) => tracing::info!(stream = %name, "atomic batches turned on (allow_atomic)"),
            Err(error) => {
                tracing::warn!(stream = %name, %error, "cannot turn on atomic batches; publishing message by message")
            }
        }
        stream = js.get_stream(&name).await?;
    }
    Ok(stream)
}

/// Connects to NATS as service `identity` (`moat-collector`, …) with
/// connection name `name`, retrying in the background when the server is
/// not up yet (the services start in any order). `config.url` may list
/// several servers of a cluster separated by commas; the client also learns
/// the others from the one it reaches and fails over among them. With
/// `config.tls`, the connection is TLS and the client certificate names the
/// NATS user ([`USERS`]). Replies come to `_INBOX.<identity>.…`, the only
/// inboxes the service's user may subscribe to.
pub async fn connect(
    config: &crate::infra::NatsConfig,
    identity: &str,
    name: &str,
) -> Result<async_nats::Client, async_nats::ConnectError> {
    let servers = server_addrs(&config.url)
        .map_err(|e| async_nats::ConnectError::with_source(async_nats::ConnectErrorKind::ServerParse, e))?;
    let mut options = async_nats::ConnectOptions::new()
        .name(name)
        .custom_inbox_prefix(format!("_INBOX.{identity}"))
        .retry_on_initial_connect()
        .connection_timeout(Duration::from_secs(5));
    let tls = &config.tls;
    if tls.enabled() {
        options = options.require_tls(true).add_root_certificates(tls.ca.clone().into());
        if !tls.cert.is_empty() {
            options = options.add_client_certificate(tls.cert.clone().into(), tls.key.clone().into());
        }
    }
    options.connect(servers).await
}

/// The NATS user of one service and what it may do. A user's name is the
/// name its client certificate holds: nats-server's `verify_and_map` logs
/// a certificate in as the user it names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NatsUser {
    pub name: &'static str,
    pub publish: &'static [&'static str],
    pub subscribe: &'static [&'static str],
}

/// The stream's JetStream API subjects a service that creates or checks it
/// needs (the collector and the storage-writer both make sure it exists).
const STREAM_API: [&str; 4] = [
    "$JS.API.INFO",
    "$JS.API.STREAM.CREATE.MARKET_DATA",
    "$JS.API.STREAM.UPDATE.MARKET_DATA",
    "$JS.API.STREAM.INFO.MARKET_DATA",
];

/// Each service's NATS user, least privilege: the collector only publishes
/// market data (stream and live lane), the storage-writer only consumes
/// `MARKET_DATA` and publishes dead letters, the gateway only subscribes
/// to the live lane its cache needs and shares limits with its replicas.
/// Every user may subscribe only to its own reply inboxes. Operators (the
/// `moat` command line) read everything.
pub const USERS: [NatsUser; 4] = [
    NatsUser {
        name: "moat-collector",
        publish: &[
            "md.>",
            "live.md.>",
            STREAM_API[0],
            STREAM_API[1],
            STREAM_API[2],
            STREAM_API[3],
            "$JS.API.STREAM.MSG.GET.MARKET_DATA",
            "$JS.API.DIRECT.GET.MARKET_DATA.>",
        ],
        subscribe: &["_INBOX.moat-collector.>"],
    },
    NatsUser {
        name: "moat-storage-writer",
        publish: &[
            "md.dlq.>",
            STREAM_API[0],
            STREAM_API[1],
            STREAM_API[2],
            STREAM_API[3],
            "$JS.API.CONSUMER.CREATE.MARKET_DATA.>",
            "$JS.API.CONSUMER.DURABLE.CREATE.MARKET_DATA.>",
            "$JS.API.CONSUMER.INFO.MARKET_DATA.>",
            "$JS.API.CONSUMER.MSG.NEXT.MARKET_DATA.>",
            "$JS.ACK.MARKET_DATA.>",
        ],
        subscribe: &["_INBOX.moat-storage-writer.>"],
    },
    NatsUser {
        name: "moat-gateway",
        publish: &["moat.gateway.limits"],
        subscribe: &[
            "live.md.bbo.>",
            "live.md.trade.>",
            "live.md.book.>",
            "live.md.gap.>",
            "moat.gateway.limits",
            "_INBOX.moat-gateway.>",
        ],
    },
    NatsUser {
        name: "moat-operator",
        publish: &[">"],
        subscribe: &[">"],
    },
];

/// The comment at the top of `deploy/nats/users.conf`.
pub const USERS_FILE_HEADER: &str = "# NATS users of moat's services (moat_common_types::nats::USERS; a test\n\
# checks this file against it). Include it in nats-server's configuration\n\
# beside a `tls` block with `verify_and_map: true`: a client certificate\n\
# naming one of these users (DNS name) logs in as it, with its permissions.\n";

/// nats-server's `authorization` block for [`USERS`], to put in a server
/// configuration whose `tls` block has `verify_and_map: true`.
pub fn authorization() -> String {
    let list = |subjects: &[&str]| subjects.iter().map(|s| format!("{s:?}")).collect::<Vec<_>>().join(", ");
    let mut out = String::from("authorization {\n  users = [\n");
    for user in USERS {
        out.push_str(&format!(
            "    {{ user: {:?}, permissions: {{ publish: {{ allow: [{}] }}, subscribe: {{ allow: [{}] }} }} }}\n",
            user.name,
            list(user.publish),
            list(user.subscribe)
        ));
    }
    out.push_str("  ]\n}\n");
    out
}

/// The servers of a comma-separated NATS URL list.
pub fn server_addrs(url: &str) -> Result<Vec<async_nats::ServerAddr>, async_nats::Error> {
    url.split(',')
        .map(|u| match u.trim() {
            "" => Err(format!("{url:?}: an empty entry in the server list").into()),
            u => u.parse::<async_nats::ServerAddr>().map_err(Into::into),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_nats_users_are_the_ones_the_services_expect() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/nats/users.conf");
        let shipped = std::fs::read_to_string(&path).unwrap_or_default();
        let expected = format!("{}{}", USERS_FILE_HEADER, authorization());
        assert!(
            shipped == expected,
            "{} is not what moat_common_types::nats::authorization() renders; write it anew with\n{expected}",
            path.display()
        );
    }

    #[test]
    fn a_url_list_names_every_server() {
        let servers = server_addrs("nats://127.0.0.1:4222, nats://127.0.0.1:4223").unwrap();
        let ports: Vec<u16> = servers.iter().map(|s| s.port()).collect();
        assert_eq!(ports, [4222, 4223]);
        assert!(server_addrs("nats://127.0.0.1:4222,").is_err());
    }
}
