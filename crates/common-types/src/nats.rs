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
/// stream is used as it is, so operators may tune it in place.
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
        ..Default::default()
    };
    Ok(js.get_or_create_stream(config).await?)
}

/// Connects to NATS with a client name, retrying in the background when the
/// server is not up yet (the services start in any order).
pub async fn connect(url: &str, name: &str) -> Result<async_nats::Client, async_nats::ConnectError> {
    async_nats::ConnectOptions::new()
        .name(name)
        .retry_on_initial_connect()
        .connection_timeout(Duration::from_secs(5))
        .connect(url)
        .await
}
