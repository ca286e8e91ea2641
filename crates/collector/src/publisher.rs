//! The bounded queue between connectors and NATS, and the publisher that
//! drains it into JetStream in rounds of batched messages.
//!
//! Connectors never wait on NATS: [`EventQueue::push`] drops the oldest
//! event (and counts it) when the queue is full. The publisher groups what
//! is queued by subject into messages of several events ([`run_publisher`]);
//! a message whose publish or ack fails is sent again as it was, with the
//! same `Nats-Msg-Id`, so JetStream stores it once. An event that can never
//! be published (larger than the server's max payload) is dropped and
//! counted, never retried forever.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::HeaderMap;
use async_nats::jetstream;
use async_nats::jetstream::context::{PublishAckFuture, PublishError, PublishErrorKind};
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use moat_common_types::MarketEvent;
use moat_common_types::proto_conv::{BatchPayload, EVENTS_HEADER, batched_len, encode};
use moat_common_types::subject::{self, Subject, batch_msg_id, msg_id};
use tokio::sync::{Notify, mpsc};

use crate::metrics::Metrics;

/// An event ready to publish, encoded once for both lanes.
pub struct Queued {
    subject: String,
    payload: Bytes,
    /// Its `Nats-Msg-Id` alone, and its key (the end of a batch's id).
    id: String,
    key: String,
    exchange: String,
    kind: &'static str,
}

/// Bounded drop-oldest queue of events waiting to be published, and the
/// live lane each event is offered to as it is queued.
pub struct EventQueue {
    events: Mutex<VecDeque<Queued>>,
    capacity: usize,
    notify: Notify,
    metrics: Metrics,
    live: Option<mpsc::Sender<(String, Bytes)>>,
}

/// Events waiting for the live lane's task; beyond it they are dropped
/// from the live lane only (and counted), never from the stream.
const LIVE_BUFFER: usize = 65_536;

impl EventQueue {
    /// A queue whose events go to JetStream only (tests, benchmarks).
    pub fn new(capacity: usize, metrics: Metrics) -> Arc<EventQueue> {
        Arc::new(EventQueue::build(capacity, metrics, None))
    }

    /// A queue that also publishes every event, the moment it is pushed,
    /// on the live lane (`live.<subject>`, core NATS, unacknowledged)
    /// through `client`. The returned task does the publishing: spawn it;
    /// it ends when the queue is dropped.
    pub fn with_live(
        capacity: usize,
        metrics: Metrics,
        client: async_nats::Client,
    ) -> (Arc<EventQueue>, impl std::future::Future<Output = ()> + Send + 'static) {
        let (tx, mut rx) = mpsc::channel::<(String, Bytes)>(LIVE_BUFFER);
        let queue = Arc::new(EventQueue::build(capacity, metrics.clone(), Some(tx)));
        let task = async move {
            let mut batch = Vec::with_capacity(1_024);
            while rx.recv_many(&mut batch, 1_024).await > 0 {
                for (subject, payload) in batch.drain(..) {
                    if client.publish(subject, payload).await.is_err() {
                        metrics.live_dropped.inc();
                    }
                }
            }
        };
        (queue, task)
    }

    fn build(capacity: usize, metrics: Metrics, live: Option<mpsc::Sender<(String, Bytes)>>) -> EventQueue {
        EventQueue {
            events: Mutex::new(VecDeque::with_capacity(capacity.min(65_536))),
            capacity,
            notify: Notify::new(),
            metrics,
            live,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Queued>> {
        // A panic while holding the lock cannot leave the deque inconsistent.
        self.events.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Enqueues without ever blocking; returns false when an old event was
    /// dropped (or this one, when it can have no subject).
    pub fn push(&self, event: MarketEvent) -> bool {
        let i = event.instrument();
        let kind = event.kind().as_str();
        self.metrics
            .events
            .with_label_values(&[i.exchange.as_str(), kind])
            .inc();
        let subject = match Subject::for_event(&event) {
            Ok(subject) => subject.to_string(),
            Err(error) => {
                reject(&self.metrics, &event, "invalid_subject", &error.to_string());
                return false;
            }
        };
        let payload = Bytes::from(encode(&event));
        if let Some(live) = &self.live
            && live.try_send((subject::live(&subject), payload.clone())).is_err()
        {
            self.metrics.live_dropped.inc();
        }
        let queued = Queued {
            subject,
            payload,
            id: msg_id(&event),
            key: event.event_key(),
            exchange: i.exchange.clone(),
            kind,
        };
        let mut q = self.lock();
        let mut kept_all = true;
        if q.len() >= self.capacity {
            q.pop_front();
            self.metrics.queue_dropped.inc();
            kept_all = false;
        }
        q.push_back(queued);
        self.metrics.queue_depth.set(q.len() as i64);
        drop(q);
        self.notify.notify_one();
        kept_all
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn take(&self, max: usize) -> Vec<Queued> {
        let mut q = self.lock();
        let n = q.len().min(max);
        let batch: Vec<Queued> = q.drain(..n).collect();
        self.metrics.queue_depth.set(q.len() as i64);
        batch
    }

    /// Waits for at least one event, then takes up to `max`.
    async fn next_batch(&self, max: usize) -> Vec<Queued> {
        loop {
            let notified = self.notify.notified();
            let batch = self.take(max);
            if !batch.is_empty() {
                return batch;
            }
            notified.await;
        }
    }
}

/// Which events carry a trace: a fraction `ratio` of them, chosen at random.
#[derive(Clone, Copy, Debug)]
pub struct EventSampler {
    ratio: f64,
}

impl EventSampler {
    pub fn new(ratio: f64) -> EventSampler {
        EventSampler {
            ratio: ratio.clamp(0.0, 1.0),
        }
    }

    fn sample(&self) -> bool {
        self.ratio >= 1.0 || (self.ratio > 0.0 && rand::random::<f64>() < self.ratio)
    }
}

/// How the publisher forms and paces messages.
#[derive(Debug, Clone, Copy)]
pub struct PublishLimits {
    /// Messages whose ack is awaited at once.
    pub max_ack_inflight: usize,
    /// Events of one subject carried by one message at most.
    pub max_batch_events: usize,
}

/// Rounds in flight at once: while the server stores one, the next is on
/// its way, and what queues up meanwhile forms the round after.
const MAX_ROUNDS: usize = 2;

/// Events taken from the queue for one round at most.
const MAX_ROUND_EVENTS: usize = 65_536;

/// Room left in a message for its headers below the server's max payload.
const HEADER_ROOM: usize = 4_096;

/// One message: events of one subject, sent again as it is until acked.
struct Outgoing {
    subject: String,
    id: String,
    payload: Bytes,
    /// `Moat-Events` for a batch; `None` for a plain single event.
    count: Option<usize>,
    exchange: String,
    kind: &'static str,
    round: u64,
    /// The producer span of a sampled message, open until JetStream acked it.
    span: Option<tracing::Span>,
}

impl Outgoing {
    fn events(&self) -> usize {
        self.count.unwrap_or(1)
    }
}

/// Events of one subject being gathered, with what their message needs.
struct Gathering {
    first: Queued,
    last_key: Option<String>,
    payload: BatchPayload,
}

impl Gathering {
    fn finish(self, round: u64, sampler: EventSampler) -> Outgoing {
        let first = self.first;
        let last_key = self.last_key.as_deref().unwrap_or(&first.key);
        let id = batch_msg_id(&first.id, last_key, self.payload.count());
        let (payload, count) = self.payload.finish();
        let span = sampler
            .sample()
            .then(|| publish_span(&first.subject, count.unwrap_or(1)));
        Outgoing {
            subject: first.subject,
            id,
            payload,
            count,
            exchange: first.exchange,
            kind: first.kind,
            round,
            span,
        }
    }
}

/// Groups a round of events into messages, one subject each, in the order
/// each subject first appears; events keep their order within a subject.
/// An event too large for any message is dropped and counted.
fn gather(
    events: Vec<Queued>,
    limits: PublishLimits,
    max_bytes: usize,
    round: u64,
    sampler: EventSampler,
    metrics: &Metrics,
) -> Vec<Outgoing> {
    let mut open: HashMap<String, Gathering> = HashMap::new();
    let mut order: Vec<String> = Vec::new();
    let mut out = Vec::new();
    for event in events {
        let len = batched_len(event.payload.len());
        if len > max_bytes {
            metrics
                .rejects
                .with_label_values(&[event.exchange.as_str(), "too_large"])
                .inc();
            tracing::error!(
                subject = %event.subject,
                bytes = event.payload.len(),
                max_bytes,
                "event larger than the server's max payload, dropped"
            );
            continue;
        }
        if let Some(g) = open.get(&event.subject)
            && (g.payload.count() >= limits.max_batch_events || g.payload.encoded_len() + len > max_bytes)
            && let Some(full) = open.remove(&event.subject)
        {
            out.push(full.finish(round, sampler));
        }
        match open.get_mut(&event.subject) {
            Some(g) => {
                g.payload.push(event.payload);
                g.last_key = Some(event.key);
            }
            None => {
                let mut payload = BatchPayload::default();
                payload.push(event.payload.clone());
                order.push(event.subject.clone());
                open.insert(
                    event.subject.clone(),
                    Gathering {
                        first: event,
                        last_key: None,
                        payload,
                    },
                );
            }
        }
    }
    for subject in order {
        if let Some(g) = open.remove(&subject) {
            out.push(g.finish(round, sampler));
        }
    }
    out
}

fn reject(metrics: &Metrics, event: &MarketEvent, reason: &'static str, error: &str) {
    let i = event.instrument();
    metrics.rejects.with_label_values(&[i.exchange.as_str(), reason]).inc();
    tracing::error!(%error, kind = event.kind().as_str(), symbol = %i.symbol, reason, "event cannot be published, dropped");
}

/// Publishes queued events until `shutdown` fires, then drains what is left
/// for up to `grace`.
///
/// Publishing goes in rounds, like a database's group commit: a round takes
/// every queued event, groups them by subject into messages of up to
/// `max_batch_events`, and publishes them all; at most [`MAX_ROUNDS`] are in
/// flight. At a low rate a round is a few single-event messages and leaves
/// as soon as they arrive; under load the events that queue up while the
/// server stores a round make the next one's messages larger, so the number
/// of messages (and of the server's disk syncs) grows far slower than the
/// number of events.
pub async fn run_publisher(
    js: jetstream::Context,
    queue: Arc<EventQueue>,
    limits: PublishLimits,
    sampler: EventSampler,
    metrics: Metrics,
    shutdown: impl std::future::Future<Output = ()>,
    grace: Duration,
) {
    let limits = PublishLimits {
        max_ack_inflight: limits.max_ack_inflight.max(1),
        max_batch_events: limits.max_batch_events.max(1),
    };
    let mut inflight = FuturesUnordered::new();
    // Messages to send again (their ack failed), before any new round.
    let mut retry: VecDeque<Outgoing> = VecDeque::new();
    // Messages of each round still awaiting their ack.
    let mut open_rounds: HashMap<u64, usize> = HashMap::new();
    let mut next_round = 0u64;
    let mut shutdown = std::pin::pin!(shutdown);
    let mut draining_since: Option<Instant> = None;
    loop {
        if let Some(since) = draining_since
            && ((queue.is_empty() && inflight.is_empty() && retry.is_empty()) || since.elapsed() > grace)
        {
            if !queue.is_empty() || !inflight.is_empty() || !retry.is_empty() {
                tracing::warn!(
                    queued = queue.len(),
                    inflight = inflight.len(),
                    retrying = retry.len(),
                    "publisher stopped before draining"
                );
            }
            return;
        }
        // Send what failed before; then, when a round slot is free, a new round.
        while inflight.len() < limits.max_ack_inflight
            && let Some(message) = retry.pop_front()
        {
            match send(&js, &message).await {
                Ok(ack) => inflight.push(acked(ack, message, Instant::now())),
                Err(Failed::Never(reason, error)) => {
                    drop_message(&metrics, &mut open_rounds, &message, reason, &error);
                }
                Err(Failed::Retry(error)) => {
                    metrics.publish_errors.inc();
                    tracing::warn!(%error, "publish failed, will retry");
                    retry.push_front(message);
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    break;
                }
            }
        }
        let may_start_round =
            retry.is_empty() && open_rounds.len() < MAX_ROUNDS && inflight.len() < limits.max_ack_inflight;
        tokio::select! {
            () = &mut shutdown, if draining_since.is_none() => {
                tracing::info!(queued = queue.len(), "publisher draining");
                draining_since = Some(Instant::now());
            }
            events = queue.next_batch(MAX_ROUND_EVENTS), if may_start_round => {
                let round = next_round;
                next_round += 1;
                let messages = gather(events, limits, max_bytes(&js), round, sampler, &metrics);
                if !messages.is_empty() {
                    open_rounds.insert(round, messages.len());
                }
                metrics.round_messages.observe(messages.len() as f64);
                let mut messages = messages.into_iter();
                while let Some(message) = messages.next() {
                    match send(&js, &message).await {
                        Ok(ack) => inflight.push(acked(ack, message, Instant::now())),
                        Err(Failed::Never(reason, error)) => {
                            drop_message(&metrics, &mut open_rounds, &message, reason, &error);
                        }
                        Err(Failed::Retry(error)) => {
                            metrics.publish_errors.inc();
                            tracing::warn!(%error, "publish failed, will retry");
                            // The rest of the round waits too, in order.
                            retry.push_back(message);
                            retry.extend(messages);
                            tokio::time::sleep(Duration::from_millis(200)).await;
                            break;
                        }
                    }
                }
            }
            Some((result, message, started)) = inflight.next(), if !inflight.is_empty() => {
                match result {
                    Ok(_) => {
                        metrics.published.with_label_values(&[message.exchange.as_str(), message.kind]).inc_by(message.events() as u64);
                        metrics.messages_published.inc();
                        metrics.publish_latency.observe(started.elapsed().as_secs_f64());
                        close_round(&mut open_rounds, message.round);
                    }
                    Err(error) => {
                        metrics.publish_errors.inc();
                        tracing::warn!(%error, events = message.events(), "publish ack failed, will retry");
                        retry.push_back(message);
                    }
                }
            }
            () = tokio::time::sleep(Duration::from_millis(100)), if draining_since.is_some() || !retry.is_empty() => {}
        }
    }
}

/// The largest payload a message may carry: the server's max payload (as
/// of the last connection; 1 MiB, NATS's default, before the first) less
/// room for headers.
fn max_bytes(js: &jetstream::Context) -> usize {
    let server = match js.client().server_info().max_payload {
        0 => 1024 * 1024,
        n => n,
    };
    server.saturating_sub(HEADER_ROOM).max(HEADER_ROOM)
}

/// The ack of a message sent at `started`, with the message.
async fn acked(
    ack: PublishAckFuture,
    message: Outgoing,
    started: Instant,
) -> (Result<jetstream::publish::PublishAck, PublishError>, Outgoing, Instant) {
    (ack.await, message, started)
}

fn close_round(open_rounds: &mut HashMap<u64, usize>, round: u64) {
    if let Some(left) = open_rounds.get_mut(&round) {
        *left -= 1;
        if *left == 0 {
            open_rounds.remove(&round);
        }
    }
}

fn drop_message(
    metrics: &Metrics,
    open_rounds: &mut HashMap<u64, usize>,
    message: &Outgoing,
    reason: &'static str,
    error: &str,
) {
    metrics
        .rejects
        .with_label_values(&[message.exchange.as_str(), reason])
        .inc_by(message.events() as u64);
    tracing::error!(%error, subject = %message.subject, events = message.events(), reason, "message cannot be published, dropped");
    close_round(open_rounds, message.round);
}

/// The producer span of one sampled message; its context travels in the
/// message's `traceparent` header to the storage-writer.
fn publish_span(subject: &str, events: usize) -> tracing::Span {
    tracing::info_span!(
        "md.publish",
        otel.name = format!("publish {subject}"),
        otel.kind = "producer",
        messaging.system = "nats",
        messaging.destination.name = subject,
        messaging.batch.message_count = events,
    )
}

/// Why a publish did not go out.
enum Failed {
    /// It never will (too large for the server): the message is dropped
    /// and its events counted under this reject reason.
    Never(&'static str, String),
    /// The connection or JetStream failed: publish again.
    Retry(String),
}

async fn send(js: &jetstream::Context, message: &Outgoing) -> Result<PublishAckFuture, Failed> {
    let mut headers = HeaderMap::new();
    headers.insert("Nats-Msg-Id", message.id.as_str());
    if let Some(count) = message.count {
        headers.insert(EVENTS_HEADER, count.to_string().as_str());
    }
    let publish = async {
        moat_common_types::telemetry::nats::inject(&mut headers);
        js.publish_with_headers(message.subject.clone(), headers, message.payload.clone())
            .await
    };
    let published = match &message.span {
        // Not imported: `MarketEvent::instrument` would clash with it.
        Some(span) => tracing::Instrument::instrument(publish, span.clone()).await,
        None => publish.await,
    };
    published.map_err(|e| match e.kind() {
        PublishErrorKind::MaxPayloadExceeded => Failed::Never("too_large", e.to_string()),
        _ => Failed::Retry(e.to_string()),
    })
}
