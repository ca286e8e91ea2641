//! Pull requests on one inbox for the writer's whole life.
//!
//! `Consumer::fetch` opens a fresh inbox per request and drops it when the
//! request is over. NATS 2.9 sometimes never ends an expired request, so the
//! writer has to give up on it; a message the server delivers to it after
//! that lands in a dropped inbox and waits `ack_wait` (a minute) for its
//! redelivery. Here every request replies to the same subscription: a
//! request given up on is simply followed by the next, and whatever it still
//! delivers arrives with the next batch.

use std::time::Duration;

use async_nats::jetstream;
use async_nats::{StatusCode, Subscriber};
use futures::StreamExt;
use prometheus::IntCounter;
use tokio::time::Instant;

/// How long past its expiry a request is waited for before the next one is
/// sent (the request's trip, and a server that ends it late).
pub const GRACE: Duration = Duration::from_millis(250);

/// Where pull requests for the durable `consumer` of `stream` go.
pub fn next_subject(stream: &str, consumer: &str) -> String {
    format!("$JS.API.CONSUMER.MSG.NEXT.{stream}.{consumer}")
}

pub struct Puller {
    nats: async_nats::Client,
    context: jetstream::Context,
    /// `$JS.API.CONSUMER.MSG.NEXT.<stream>.<consumer>`.
    next_subject: String,
    inbox: String,
    subscription: Subscriber,
    /// While a request is open: when it expires, plus [`GRACE`].
    open_until: Option<Instant>,
    /// Messages the open request may still deliver: the server ends a
    /// request that got its whole batch without a status message.
    remaining: usize,
    /// Requests given up on because the server had not ended them
    /// (`moat_storage_writer_fetches_overdue_total`).
    overdue: IntCounter,
}

impl Puller {
    /// Pulls by sending requests to `next_subject` ([`next_subject`]).
    pub async fn new(
        nats: async_nats::Client,
        context: jetstream::Context,
        next_subject: String,
        overdue: IntCounter,
    ) -> Result<Puller, async_nats::Error> {
        let inbox = nats.new_inbox();
        let subscription = nats.subscribe(inbox.clone()).await?;
        Ok(Puller {
            next_subject,
            nats,
            context,
            inbox,
            subscription,
            open_until: None,
            remaining: 0,
            overdue,
        })
    }

    /// The next message, asking the server for up to `want` more (waiting at
    /// most until `deadline` for them) when no request is open; `None` once
    /// `deadline` passes.
    pub async fn next(
        &mut self,
        want: usize,
        deadline: Instant,
    ) -> Result<Option<jetstream::Message>, async_nats::Error> {
        loop {
            let now = Instant::now();
            if self.open_until.is_some_and(|until| until <= now) {
                self.overdue.inc();
                self.open_until = None;
            }
            if self.open_until.is_none() {
                if deadline <= now {
                    return Ok(None);
                }
                let expires = deadline.saturating_duration_since(now).max(Duration::from_millis(50));
                let want = want.max(1);
                let request = serde_json::json!({
                    "batch": want,
                    "expires": u64::try_from(expires.as_nanos()).unwrap_or(u64::MAX),
                });
                self.nats
                    .publish_with_reply(
                        self.next_subject.clone(),
                        self.inbox.clone(),
                        serde_json::to_vec(&request)?.into(),
                    )
                    .await?;
                self.open_until = Some(now + expires + GRACE);
                self.remaining = want;
            }
            let wake = self.open_until.map_or(deadline, |until| until.min(deadline));
            let message = match tokio::time::timeout_at(wake, self.subscription.next()).await {
                Err(_) if deadline <= Instant::now() => return Ok(None),
                Err(_) => continue,
                Ok(None) => return Err("the pull inbox subscription closed".into()),
                Ok(Some(message)) => message,
            };

            match message.status {
                None | Some(StatusCode::OK) => {
                    // A late delivery of a request given up on counts
                    // against the open one: at worst one request too many.
                    self.remaining = self.remaining.saturating_sub(1);
                    if self.remaining == 0 {
                        self.open_until = None;
                    }
                    return Ok(Some(jetstream::Message {
                        message,
                        context: self.context.clone(),
                    }));
                }
                Some(StatusCode::IDLE_HEARTBEAT) => {}
                // The request expired, or had nothing to deliver.
                Some(StatusCode::TIMEOUT | StatusCode::NOT_FOUND) => self.open_until = None,
                Some(StatusCode::REQUEST_TERMINATED) => {
                    self.open_until = None;
                    let description = message.description.unwrap_or_default();
                    if description.contains("Deleted") {
                        return Err(format!("the pull request ended: {description}").into());
                    }
                    // A limit such as max ack pending: let acks come in
                    // before asking again rather than spin.
                    tokio::time::sleep_until((Instant::now() + Duration::from_millis(20)).min(deadline)).await;
                }
                Some(status) => {
                    self.open_until = None;
                    let description = message.description.unwrap_or_default();
                    return Err(format!("JetStream answered the pull request with {status} {description}").into());
                }
            }
        }
    }
}
