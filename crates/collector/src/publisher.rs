//! The bounded queue between connectors and NATS, and the publisher that
//! drains it into JetStream with pipelined acks.
//!
//! Connectors never wait on NATS: [`EventQueue::push`] drops the oldest
//! event (and counts it) when the queue is full. The publisher keeps up to
//! `max_ack_inflight` acks outstanding; an event whose publish or ack fails
//! goes back to the front of the queue (with the rest of its batch, in
//! order) and is sent again with the same `Nats-Msg-Id`, so JetStream
//! stores it once. An event that can never be published (larger than the
//! server's max payload) is dropped and counted, never retried forever.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::HeaderMap;
use async_nats::jetstream;
use async_nats::jetstream::context::{PublishAckFuture, PublishErrorKind};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use moat_common_types::MarketEvent;
use moat_common_types::proto_conv::encode;
use moat_common_types::subject::{Subject, msg_id};
use tokio::sync::Notify;

use crate::metrics::Metrics;

/// Bounded drop-oldest queue of events waiting to be published.
pub struct EventQueue {
    events: Mutex<VecDeque<MarketEvent>>,
    capacity: usize,
    notify: Notify,
    metrics: Metrics,
}

impl EventQueue {
    pub fn new(capacity: usize, metrics: Metrics) -> Arc<EventQueue> {
        Arc::new(EventQueue {
            events: Mutex::new(VecDeque::with_capacity(capacity.min(65_536))),
            capacity,
            notify: Notify::new(),
            metrics,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<MarketEvent>> {
        // A panic while holding the lock cannot leave the deque inconsistent.
        self.events.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Enqueues without ever blocking; returns false when an old event was dropped.
    pub fn push(&self, event: MarketEvent) -> bool {
        let i = event.instrument();
        self.metrics
            .events
            .with_label_values(&[i.exchange.as_str(), event.kind().as_str()])
            .inc();
        let mut q = self.lock();
        let mut kept_all = true;
        if q.len() >= self.capacity {
            q.pop_front();
            self.metrics.queue_dropped.inc();
            kept_all = false;
        }
        q.push_back(event);
        self.metrics.queue_depth.set(q.len() as i64);
        drop(q);
        self.notify.notify_one();
        kept_all
    }

    /// Puts events taken but not published back at the front, in their
    /// order, so they go out before anything queued since.
    fn requeue(&self, events: impl DoubleEndedIterator<Item = MarketEvent>) {
        let mut q = self.lock();
        for event in events.rev() {
            if q.len() >= self.capacity {
                // Drop-oldest: the events put back are older than any queued.
                self.metrics.queue_dropped.inc();
                continue;
            }
            q.push_front(event);
        }
        self.metrics.queue_depth.set(q.len() as i64);
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn take(&self, max: usize) -> Vec<MarketEvent> {
        let mut q = self.lock();
        let n = q.len().min(max);
        let batch: Vec<MarketEvent> = q.drain(..n).collect();
        self.metrics.queue_depth.set(q.len() as i64);
        batch
    }

    /// Waits for at least one event, then takes up to `max`.
    async fn next_batch(&self, max: usize) -> Vec<MarketEvent> {
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

struct Inflight {
    event: MarketEvent,
    started: Instant,
    /// The producer span of a sampled event, open until JetStream acked it.
    _span: Option<tracing::Span>,
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

/// Publishes queued events until `shutdown` fires, then drains what is left
/// for up to `grace`.
pub async fn run_publisher(
    js: jetstream::Context,
    queue: Arc<EventQueue>,
    max_inflight: usize,
    sampler: EventSampler,
    metrics: Metrics,
    shutdown: impl std::future::Future<Output = ()>,
    grace: Duration,
) {
    let mut inflight = FuturesUnordered::new();
    let mut shutdown = std::pin::pin!(shutdown);
    let mut draining_since: Option<Instant> = None;
    loop {
        if let Some(since) = draining_since
            && ((queue.is_empty() && inflight.is_empty()) || since.elapsed() > grace)
        {
            if !queue.is_empty() || !inflight.is_empty() {
                tracing::warn!(
                    queued = queue.len(),
                    inflight = inflight.len(),
                    "publisher stopped before draining"
                );
            }
            return;
        }
        tokio::select! {
            () = &mut shutdown, if draining_since.is_none() => {
                tracing::info!(queued = queue.len(), "publisher draining");
                draining_since = Some(Instant::now());
            }
            batch = queue.next_batch(256), if inflight.len() < max_inflight => {
                let mut batch = batch.into_iter();
                while let Some(event) = batch.next() {
                    let span = sampler.sample().then(|| publish_span(&event));
                    let published = match &span {
                        // Not imported: `MarketEvent::instrument` would clash with it.
                        Some(span) => tracing::Instrument::instrument(publish(&js, &event), span.clone()).await,
                        None => publish(&js, &event).await,
                    };
                    match published {
                        Ok(ack) => {
                            let started = Instant::now();
                            inflight.push(async move { (ack.await, Inflight { event, started, _span: span }) });
                        }
                        Err(Failed::Never(reason, error)) => {
                            let i = event.instrument();
                            metrics.rejects.with_label_values(&[i.exchange.as_str(), reason]).inc();
                            tracing::error!(%error, kind = event.kind().as_str(), symbol = %i.symbol, "event cannot be published, dropped");
                        }
                        Err(Failed::Retry(error)) => {
                            metrics.publish_errors.inc();
                            tracing::warn!(%error, "publish failed, will retry");
                            // The rest of the batch goes back too, in order.
                            queue.requeue(std::iter::once(event).chain(batch));
                            tokio::time::sleep(Duration::from_millis(200)).await;
                            break;
                        }
                    }
                }
            }
            Some((result, done)) = inflight.next(), if !inflight.is_empty() => {
                match result {
                    Ok(_) => {
                        let i = done.event.instrument();
                        metrics.published.with_label_values(&[i.exchange.as_str(), done.event.kind().as_str()]).inc();
                        metrics.publish_latency.observe(done.started.elapsed().as_secs_f64());
                    }
                    Err(error) => {
                        metrics.publish_errors.inc();
                        tracing::warn!(%error, "publish ack failed, will retry");
                        queue.requeue(std::iter::once(done.event));
                    }
                }
            }
            () = tokio::time::sleep(Duration::from_millis(100)), if draining_since.is_some() => {}
        }
    }
}

/// The producer span of one sampled event; its context travels in the
/// message's `traceparent` header to the storage-writer.
fn publish_span(event: &MarketEvent) -> tracing::Span {
    let i = event.instrument();
    tracing::info_span!(
        "md.publish",
        otel.name = format!("publish md.{}.{}", event.kind().as_str(), i.exchange),
        otel.kind = "producer",
        messaging.system = "nats",
        symbol = %i.symbol,
    )
}

/// Why a publish did not go out.
enum Failed {
    /// It never will (too large for the server, no valid subject): the
    /// event is dropped and counted under this reject reason.
    Never(&'static str, String),
    /// The connection or JetStream failed: publish again.
    Retry(String),
}

async fn publish(js: &jetstream::Context, event: &MarketEvent) -> Result<PublishAckFuture, Failed> {
    let subject = Subject::for_event(event)
        .map_err(|e| Failed::Never("invalid_subject", e.to_string()))?
        .to_string();
    let mut headers = HeaderMap::new();
    headers.insert("Nats-Msg-Id", msg_id(event).as_str());
    moat_common_types::telemetry::nats::inject(&mut headers);
    js.publish_with_headers(subject, headers, encode(event).into())
        .await
        .map_err(|e| match e.kind() {
            PublishErrorKind::MaxPayloadExceeded => Failed::Never("too_large", e.to_string()),
            _ => Failed::Retry(e.to_string()),
        })
}
