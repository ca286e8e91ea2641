//! The JetStream stream every market event goes through.

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

/// Connects to NATS with a client name, retrying in the background when the
/// server is not up yet (the services start in any order). `url` may list
/// several servers of a cluster separated by commas; the client also learns
/// the others from the one it reaches and fails over among them.
pub async fn connect(url: &str, name: &str) -> Result<async_nats::Client, async_nats::ConnectError> {
    let servers = server_addrs(url)
        .map_err(|e| async_nats::ConnectError::with_source(async_nats::ConnectErrorKind::ServerParse, e))?;
    async_nats::ConnectOptions::new()
        .name(name)
        .retry_on_initial_connect()
        .connection_timeout(Duration::from_secs(5))
        .connect(servers)
        .await
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
    fn a_url_list_names_every_server() {
        let servers = server_addrs("nats://127.0.0.1:4222, nats://127.0.0.1:4223").unwrap();
        let ports: Vec<u16> = servers.iter().map(|s| s.port()).collect();
        assert_eq!(ports, [4222, 4223]);
        assert!(server_addrs("nats://127.0.0.1:4222,").is_err());
    }
}
