//! The bounded queue between connectors and NATS, the live lane, and the
//! publisher that drains the queue into JetStream in rounds.
//!
//! Connectors never wait on NATS: [`EventQueue::push`] encodes the event
//! once, offers it to the live lane (`live.<subject>`, core NATS, one event
//! per message) and queues it, dropping the oldest event (and counting it)
//! when the queue is full. The publisher groups what is queued by subject
//! into messages of several events and sends each round as JetStream atomic
//! batches ([`run_publisher`]); a message whose publish or ack fails is
//! sent again as it was, with the same `Nats-Msg-Id`, so JetStream stores
//! it once. An event that can never be published (larger than the server's
//! max payload) is dropped and counted, never retried forever.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::HeaderMap;
use async_nats::jetstream;
use async_nats::jetstream::context::{PublishAckFuture, PublishError, PublishErrorKind};
use async_nats::jetstream::publish::PublishAck;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use moat_common_types::MarketEvent;
use moat_common_types::proto_conv::{BatchPayload, EVENTS_HEADER, batched_len, encode};
use moat_common_types::subject::{self, Subject, batch_msg_id, msg_id};
use tokio::sync::{Notify, mpsc};

use crate::config::PublisherConfig;
use crate::metrics::Metrics;

/// An event ready to publish, encoded once for both lanes.
pub struct Queued {
    subject: String,
    payload: Bytes,
    /// Its `Nats-Msg-Id` alone ([`msg_id`]).
    id: String,
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
                self.metrics
                    .rejects
                    .with_label_values(&[i.exchange.as_str(), "invalid_subject"])
                    .inc();
                tracing::error!(%error, kind, symbol = %i.symbol, "event has no valid subject, dropped");
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

/// Which messages carry a trace: a fraction `ratio` of them, chosen at random.
#[derive(Clone, Copy, Debug)]
struct EventSampler {
    ratio: f64,
}

impl EventSampler {
    fn new(ratio: f64) -> EventSampler {
        EventSampler {
            ratio: ratio.clamp(0.0, 1.0),
        }
    }

    fn sample(&self) -> bool {
        self.ratio >= 1.0 || (self.ratio > 0.0 && rand::random::<f64>() < self.ratio)
    }
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
    /// Sent on its own, never in an atomic batch (one was refused).
    alone: bool,
}

impl Outgoing {
    fn events(&self) -> usize {
        self.count.unwrap_or(1)
    }

    fn alone(self) -> Outgoing {
        Outgoing { alone: true, ..self }
    }
}

/// Events of one subject being gathered, with what their message needs.
struct Gathering {
    first: Queued,
    /// The id of the last event gathered after the first.
    last_id: Option<String>,
    payload: BatchPayload,
}

impl Gathering {
    fn new(first: Queued) -> Gathering {
        let mut payload = BatchPayload::default();
        payload.push(first.payload.clone());
        Gathering {
            first,
            last_id: None,
            payload,
        }
    }

    fn finish(self, round: u64, sampler: EventSampler) -> Outgoing {
        let first = self.first;
        let last_id = self.last_id.as_deref().unwrap_or(&first.id);
        let id = batch_msg_id(&first.id, last_id, self.payload.count());
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
            alone: false,
        }
    }
}

/// Groups a round of events into messages, one subject each, in the order
/// each subject first appears; events keep their order within a subject.
/// An event too large for any message is dropped and counted.
fn gather(
    events: Vec<Queued>,
    max_batch_events: usize,
    max_bytes: usize,
    round: u64,
    sampler: EventSampler,
    metrics: &Metrics,
) -> Vec<Outgoing> {
    // Each subject's gathering, in the order subjects first appear; a full
    // one goes out at once and a new one takes its place.
    let mut open: Vec<Gathering> = Vec::new();
    let mut at: HashMap<String, usize> = HashMap::new();
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
        match at.get(&event.subject) {
            None => {
                at.insert(event.subject.clone(), open.len());
                open.push(Gathering::new(event));
            }
            Some(&i) => {
                let g = &mut open[i];
                if g.payload.count() >= max_batch_events || g.payload.encoded_len() + len > max_bytes {
                    let full = std::mem::replace(g, Gathering::new(event));
                    out.push(full.finish(round, sampler));
                } else {
                    g.payload.push(event.payload);
                    g.last_id = Some(event.id);
                }
            }
        }
    }
    out.extend(open.into_iter().map(|g| g.finish(round, sampler)));
    out
}

/// Messages in one JetStream atomic batch at most (nats-server's limit).
const ATOMIC_MAX: usize = 1_000;

/// JetStream error codes of an atomic batch that was refused whole: publish
/// its messages one by one instead. `10201`: it holds a message id already
/// stored (a batch sent again after its ack was lost, which then stored
/// nothing twice); `10174`: the stream does not allow atomic batches;
/// `10199`: too many messages.
const ATOMIC_DUPLICATE: u64 = 10_201;
const ATOMIC_DISABLED: u64 = 10_174;
const ATOMIC_TOO_LARGE: u64 = 10_199;

/// Acks awaited: one per atomic batch, or per message sent alone.
type Inflight = FuturesUnordered<
    std::pin::Pin<Box<dyn std::future::Future<Output = (Result<PublishAck, PublishError>, Sent)> + Send>>,
>;

/// Messages whose fate one ack tells.
struct Sent {
    messages: Vec<Outgoing>,
    atomic: bool,
    started: Instant,
}

/// The publisher's state between rounds.
struct Publisher {
    js: jetstream::Context,
    metrics: Metrics,
    max_batch_events: usize,
    /// Rounds go as atomic batches until the stream refuses them (never
    /// with one event per message: replicas deduplicate event by event).
    atomic: bool,
    /// Unique per process: the prefix of this publisher's batch ids.
    session: String,
    batches: u64,
    /// Messages of each round still awaiting their ack.
    open_rounds: HashMap<u64, usize>,
    /// Messages to send again, before any new round.
    retry: VecDeque<Outgoing>,
}

impl Publisher {
    /// Sends `messages`: in atomic batches of up to [`ATOMIC_MAX`] when
    /// batching, one by one otherwise. What cannot be sent now goes to
    /// `retry`, in order; returns false when the connection failed.
    async fn dispatch(&mut self, messages: Vec<Outgoing>, inflight: &mut Inflight) -> bool {
        let mut groups: Vec<Vec<Outgoing>> = Vec::new();
        let (mut together, alone): (Vec<Outgoing>, Vec<Outgoing>) =
            messages.into_iter().partition(|m| self.atomic && !m.alone);
        while !together.is_empty() {
            let rest = together.split_off(together.len().min(ATOMIC_MAX));
            groups.push(std::mem::replace(&mut together, rest));
        }
        groups.extend(alone.into_iter().map(|m| vec![m]));
        let mut groups = groups.into_iter();
        while let Some(group) = groups.next() {
            let atomic = group.len() > 1;
            let sent = if atomic {
                self.batches += 1;
                let id = format!("{}-{}", self.session, self.batches);
                send_atomic(&self.js, &group, &id).await
            } else {
                send(&self.js, &group[0], None).await
            };
            match sent {
                Ok(ack) => {
                    let sent = Sent {
                        messages: group,
                        atomic,
                        started: Instant::now(),
                    };
                    inflight.push(Box::pin(async move { (ack.await, sent) }));
                }
                Err(Failed::Never(reason, error)) if !atomic => {
                    self.drop_message(&group[0], reason, &error);
                }
                Err(Failed::Never(_, error)) => {
                    tracing::warn!(%error, "an atomic batch could not be sent; its messages go one by one");
                    self.retry.extend(group.into_iter().map(Outgoing::alone));
                }
                Err(Failed::Retry(error)) => {
                    self.metrics.publish_errors.inc();
                    tracing::warn!(%error, "publish failed, will retry");
                    // The rest waits too, in order.
                    self.retry.extend(group);
                    self.retry.extend(groups.flatten());
                    return false;
                }
            }
        }
        true
    }

    fn acked(&mut self, result: Result<PublishAck, PublishError>, sent: Sent) {
        match result {
            Ok(_) => {
                self.metrics
                    .publish_latency
                    .observe(sent.started.elapsed().as_secs_f64());
                for message in &sent.messages {
                    self.metrics
                        .published
                        .with_label_values(&[message.exchange.as_str(), message.kind])
                        .inc_by(message.events() as u64);
                    self.metrics.messages_published.inc();
                    self.close_round(message.round);
                }
            }
            Err(error) => {
                let code = std::error::Error::source(&error)
                    .and_then(|s| s.downcast_ref::<async_nats::jetstream::Error>())
                    .map(|e| e.error_code().0);
                match code {
                    Some(ATOMIC_DISABLED) if sent.atomic => {
                        tracing::warn!(
                            "the stream does not allow atomic batches (allow_atomic): publishing message by message, \
                             one disk sync each"
                        );
                        self.atomic = false;
                        self.retry.extend(sent.messages);
                    }
                    Some(ATOMIC_DUPLICATE | ATOMIC_TOO_LARGE) if sent.atomic => {
                        tracing::info!(%error, messages = sent.messages.len(), "atomic batch refused; its messages go one by one");
                        self.retry.extend(sent.messages.into_iter().map(Outgoing::alone));
                    }
                    _ => {
                        self.metrics.publish_errors.inc();
                        tracing::warn!(%error, messages = sent.messages.len(), "publish ack failed, will retry");
                        self.retry.extend(sent.messages);
                    }
                }
            }
        }
    }

    fn close_round(&mut self, round: u64) {
        if let Some(left) = self.open_rounds.get_mut(&round) {
            *left -= 1;
            if *left == 0 {
                self.open_rounds.remove(&round);
            }
        }
    }

    fn drop_message(&mut self, message: &Outgoing, reason: &'static str, error: &str) {
        self.metrics
            .rejects
            .with_label_values(&[message.exchange.as_str(), reason])
            .inc_by(message.events() as u64);
        tracing::error!(%error, subject = %message.subject, events = message.events(), reason, "message cannot be published, dropped");
        self.close_round(message.round);
    }
}

/// Publishes queued events until `shutdown` fires, then drains what is left
/// for up to `grace`.
///
/// Publishing goes in rounds, like a database's group commit: a round takes
/// every queued event, groups them by subject into messages of up to
/// `max_batch_events`, and publishes them as one JetStream atomic batch
/// (1,000 messages each at most), which the server stores with one disk
/// sync; at most [`MAX_ROUNDS`] are in flight, and one starts at most every
/// `round_interval`. An event queued more than an interval after the last
/// round leaves at once; one queued sooner waits for the interval's end.
/// Under load the events that queue up while the server stores a round (or
/// the interval runs) make the next one's messages larger. With
/// `max_batch_events = 1` every event goes alone, unpaced, so
/// JetStream deduplicates each (collector replicas of one venue).
pub async fn run_publisher(
    js: jetstream::Context,
    queue: Arc<EventQueue>,
    config: PublisherConfig,
    metrics: Metrics,
    shutdown: impl std::future::Future<Output = ()>,
    grace: Duration,
) {
    let sampler = EventSampler::new(config.trace_ratio);
    let max_ack_inflight = config.max_ack_inflight.get();
    let max_batch_events = config.max_batch_events.max(1);
    let mut p = Publisher {
        js,
        metrics,
        max_batch_events,
        atomic: max_batch_events > 1,
        session: format!("{:016x}", rand::random::<u64>()),
        batches: 0,
        open_rounds: HashMap::new(),
        retry: VecDeque::new(),
    };
    let mut inflight: Inflight = FuturesUnordered::new();
    let mut next_round = 0u64;
    let mut shutdown = std::pin::pin!(shutdown);
    let mut draining_since: Option<Instant> = None;
    let mut next_round_at = tokio::time::Instant::now();
    loop {
        if let Some(since) = draining_since
            && ((queue.is_empty() && inflight.is_empty() && p.retry.is_empty()) || since.elapsed() > grace)
        {
            if !queue.is_empty() || !inflight.is_empty() || !p.retry.is_empty() {
                tracing::warn!(
                    queued = queue.len(),
                    inflight = inflight.len(),
                    retrying = p.retry.len(),
                    "publisher stopped before draining"
                );
            }
            return;
        }
        // Send what failed before; then, when a round slot is free, a new round.
        if !p.retry.is_empty() && inflight.len() < max_ack_inflight {
            let again: Vec<Outgoing> = p.retry.drain(..).collect();
            if !p.dispatch(again, &mut inflight).await {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        // Only atomic batches are paced: one event per message saves
        // nothing by waiting.
        let pacing = p.atomic && draining_since.is_none() && tokio::time::Instant::now() < next_round_at;
        let may_start_round =
            !pacing && p.retry.is_empty() && p.open_rounds.len() < MAX_ROUNDS && inflight.len() < max_ack_inflight;
        tokio::select! {
            () = &mut shutdown, if draining_since.is_none() => {
                tracing::info!(queued = queue.len(), "publisher draining");
                draining_since = Some(Instant::now());
            }
            events = queue.next_batch(MAX_ROUND_EVENTS), if may_start_round => {
                let round = next_round;
                next_round += 1;
                next_round_at = tokio::time::Instant::now() + config.round_interval;
                let messages = gather(events, p.max_batch_events, max_bytes(&p.js), round, sampler, &p.metrics);
                if !messages.is_empty() {
                    p.open_rounds.insert(round, messages.len());
                }
                p.metrics.round_messages.observe(messages.len() as f64);
                if !p.dispatch(messages, &mut inflight).await {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
            Some((result, sent)) = inflight.next(), if !inflight.is_empty() => p.acked(result, sent),
            () = tokio::time::sleep_until(next_round_at), if pacing => {}
            () = tokio::time::sleep(Duration::from_millis(100)), if draining_since.is_some() || !p.retry.is_empty() => {}
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

/// The headers of `message`: its id, its count when a batch, the trace
/// context of a sampled one, and its place in an atomic batch.
fn headers(message: &Outgoing, batch: Option<(&str, usize, bool)>) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert("Nats-Msg-Id", message.id.as_str());
    if let Some(count) = message.count {
        headers.insert(EVENTS_HEADER, count.to_string().as_str());
    }
    if let Some(span) = &message.span {
        let _entered = span.enter();
        moat_common_types::telemetry::nats::inject(&mut headers);
    }
    if let Some((id, sequence, commit)) = batch {
        headers.insert("Nats-Batch-Id", id);
        headers.insert("Nats-Batch-Sequence", sequence.to_string().as_str());
        if commit {
            headers.insert("Nats-Batch-Commit", "1");
        }
    }
    headers
}

/// Publishes one message and returns its ack to await.
async fn send(
    js: &jetstream::Context,
    message: &Outgoing,
    batch: Option<(&str, usize, bool)>,
) -> Result<PublishAckFuture, Failed> {
    js.publish_with_headers(
        message.subject.clone(),
        headers(message, batch),
        message.payload.clone(),
    )
    .await
    .map_err(|e| match e.kind() {
        PublishErrorKind::MaxPayloadExceeded => Failed::Never("too_large", e.to_string()),
        _ => Failed::Retry(e.to_string()),
    })
}

/// Publishes `group` as atomic batch `id`: every message but the last on
/// core NATS, the last with `Nats-Batch-Commit`, whose ack tells the fate
/// of all.
async fn send_atomic(js: &jetstream::Context, group: &[Outgoing], id: &str) -> Result<PublishAckFuture, Failed> {
    let client = js.client();
    let (last, rest) = group
        .split_last()
        .ok_or_else(|| Failed::Retry("an empty batch".into()))?;
    for (i, message) in rest.iter().enumerate() {
        client
            .publish_with_headers(
                message.subject.clone(),
                headers(message, Some((id, i + 1, false))),
                message.payload.clone(),
            )
            .await
            .map_err(|e| Failed::Retry(e.to_string()))?;
    }
    send(js, last, Some((id, group.len(), true))).await
}
