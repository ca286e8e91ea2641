//! The consume → insert → ack loop.
//!
//! **Invariant:** a message is acked only after ClickHouse confirmed the
//! insert of its row, or after it was published to `md.dlq.<reason>` and
//! JetStream confirmed that. Everything else stays unacked and is
//! redelivered; `ReplacingMergeTree` collapses the repeats.

use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

use async_nats::HeaderMap;
use async_nats::jetstream::{self, AckKind, Message};
use clickhouse::{Client, Row, RowWrite};
use moat_common_types::MarketEvent;
use moat_common_types::backoff::Backoff;
use moat_common_types::proto_conv::{EVENTS_HEADER, encode_raw, message_events};
use moat_common_types::subject::DLQ_PREFIX;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::config::BatchConfig;
use crate::metrics::Metrics;
use crate::pull::Puller;
use crate::rows::TableRow;

/// Where a row comes from: its message's index in the batch, and the
/// event's index in that message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Origin {
    message: usize,
    event: usize,
}

/// Rows of one table, each tagged with where it comes from.
struct Buffer<R> {
    table: &'static str,
    rows: Vec<R>,
    origin: Vec<Origin>,
}

impl<R> Buffer<R> {
    fn new(table: &'static str) -> Self {
        Buffer {
            table,
            rows: Vec::new(),
            origin: Vec::new(),
        }
    }

    fn push(&mut self, origin: Origin, row: R) {
        self.rows.push(row);
        self.origin.push(origin);
    }

    /// Keeps the rows whose position `keep` accepts.
    fn retain(&mut self, keep: impl Fn(usize) -> bool) {
        let rows = std::mem::take(&mut self.rows);
        let origin = std::mem::take(&mut self.origin);
        (self.rows, self.origin) = rows
            .into_iter()
            .zip(origin)
            .enumerate()
            .filter_map(|(i, kept)| keep(i).then_some(kept))
            .unzip();
    }
}

/// A batch in hand: the messages and their rows, by table.
struct Batch {
    messages: Vec<Message>,
    /// Events the messages carry (a message carries one or more).
    events: usize,
    /// The exchange time (Unix µs) of each event, for the ingest lag once
    /// the batch is stored (a candle counts from its receipt: its own time
    /// is when the minute opened).
    event_times_us: Vec<i64>,
    /// Messages not to be acked after the insert: one of their events could
    /// not be dead-lettered, so the whole message must come again.
    held: HashSet<usize>,
    /// Stream sequences of `messages`: a message redelivered while its
    /// first delivery is still in the batch is left out.
    sequences: HashSet<u64>,
    /// Indexes of the messages delivered more than once (usually none).
    redelivered: Vec<usize>,
    /// Spans of the sampled events (those that arrived with trace context),
    /// open from fetch until the batch is stored and acked.
    spans: Vec<tracing::Span>,
    trades: Buffer<crate::rows::TradeRow>,
    bbo: Buffer<crate::rows::BboRow>,
    book_snapshots: Buffer<crate::rows::BookSnapshotRow>,
    book_deltas: Buffer<crate::rows::BookDeltaRow>,
    funding: Buffer<crate::rows::FundingRow>,
    liquidations: Buffer<crate::rows::LiquidationRow>,
    open_interest: Buffer<crate::rows::OpenInterestRow>,
    option_tickers: Buffer<crate::rows::OptionTickerRow>,
    venue_candles: Buffer<crate::rows::VenueCandleRow>,
    gaps: Buffer<crate::rows::GapRow>,
}

impl Batch {
    fn new() -> Batch {
        Batch {
            messages: Vec::new(),
            events: 0,
            event_times_us: Vec::new(),
            held: HashSet::new(),
            sequences: HashSet::new(),
            redelivered: Vec::new(),
            spans: Vec::new(),
            trades: Buffer::new("trades"),
            bbo: Buffer::new("bbo"),
            book_snapshots: Buffer::new("book_snapshots"),
            book_deltas: Buffer::new("book_deltas"),
            funding: Buffer::new("funding"),
            liquidations: Buffer::new("liquidations"),
            open_interest: Buffer::new("open_interest"),
            option_tickers: Buffer::new("option_tickers"),
            venue_candles: Buffer::new("venue_candles"),
            gaps: Buffer::new("gaps"),
        }
    }

    fn push_row(&mut self, origin: Origin, row: TableRow) {
        match row {
            TableRow::Trade(r) => self.trades.push(origin, r),
            TableRow::Bbo(r) => self.bbo.push(origin, r),
            TableRow::BookSnapshot(r) => self.book_snapshots.push(origin, r),
            TableRow::BookDelta(r) => self.book_deltas.push(origin, r),
            TableRow::Funding(r) => self.funding.push(origin, r),
            TableRow::Liquidation(r) => self.liquidations.push(origin, r),
            TableRow::OpenInterest(r) => self.open_interest.push(origin, r),
            TableRow::OptionTicker(r) => self.option_tickers.push(origin, r),
            TableRow::VenueCandle(r) => self.venue_candles.push(origin, r),
            TableRow::Gap(r) => self.gaps.push(origin, r),
        }
    }
}

/// An event that cannot be stored, with the reason for `md.dlq.<reason>`.
struct Poison {
    /// The event; `event: None` for a message that cannot be read at all.
    message: usize,
    event: Option<usize>,
    reason: &'static str,
    error: String,
}

/// Everything the loop needs.
pub struct Writer {
    pub js: jetstream::Context,
    pub nats: async_nats::Client,
    pub clickhouse: Client,
    pub batch: BatchConfig,
    pub metrics: Metrics,
}

/// ClickHouse error codes that mean "this data is bad", as opposed to "the
/// server is unwell": only these make the writer isolate and dead-letter rows.
const DATA_ERROR_CODES: &[u32] = &[6, 27, 32, 33, 38, 41, 53, 69, 70, 72, 117, 190];

fn is_data_error(error: &clickhouse::error::Error) -> bool {
    let text = error.to_string();
    let code = text
        .split("Code: ")
        .nth(1)
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse::<u32>().ok());
    matches!(error, clickhouse::error::Error::BadResponse(_)) && code.is_some_and(|c| DATA_ERROR_CODES.contains(&c))
}

async fn insert_rows<R>(client: &Client, table: &str, rows: &[R]) -> Result<(), clickhouse::error::Error>
where
    R: Row + RowWrite + Serialize,
    for<'a> R: Row<Value<'a> = R>,
{
    let mut insert = client.insert::<R>(table).await?;
    for row in rows {
        insert.write(row).await?;
    }
    insert.end().await
}

/// Inserts `rows`; on a data error, bisects to find the rows ClickHouse
/// refuses and reports them as poison instead of failing the batch.
async fn insert_isolating<R>(
    client: &Client,
    table: &'static str,
    rows: &[R],
    origin: &[Origin],
    poison: &mut Vec<Poison>,
) -> Result<(), clickhouse::error::Error>
where
    R: Row + RowWrite + Serialize,
    for<'a> R: Row<Value<'a> = R>,
{
    if rows.is_empty() {
        return Ok(());
    }
    match insert_rows(client, table, rows).await {
        Ok(()) => Ok(()),
        Err(error) if is_data_error(&error) => {
            if rows.len() == 1 {
                poison.push(Poison {
                    message: origin[0].message,
                    event: Some(origin[0].event),
                    reason: "rejected",
                    error: format!("ClickHouse refused the row for {table}: {error}"),
                });
                return Ok(());
            }
            let mid = rows.len() / 2;
            Box::pin(insert_isolating(client, table, &rows[..mid], &origin[..mid], poison)).await?;
            Box::pin(insert_isolating(client, table, &rows[mid..], &origin[mid..], poison)).await
        }
        Err(error) => Err(error),
    }
}

impl Writer {
    /// Runs until `shutdown`; the batch in hand is flushed and acked first.
    ///
    /// Fetching and storing overlap: the next batch is collected while the
    /// previous one is inserted and acked, so at most two batches are in
    /// hand. While ClickHouse is away the collected batch waits for the one
    /// being retried, and fetching stops.
    pub async fn run(self, mut puller: Puller, shutdown: CancellationToken) {
        let this = &self;
        let mut backoff = Duration::from_millis(100);
        let mut in_hand: Option<Batch> = None;
        while !shutdown.is_cancelled() {
            let storing = {
                let batch = in_hand.take();
                let shutdown = &shutdown;
                async move {
                    if let Some(batch) = batch {
                        this.flush(batch, shutdown).await;
                    }
                }
            };
            let ((), (batch, failed)) = tokio::join!(storing, this.collect(&mut puller, &shutdown));
            if !batch.messages.is_empty() {
                in_hand = Some(batch);
            }
            match failed {
                None => backoff = Duration::from_millis(100),
                Some(error) => {
                    tracing::warn!(%error, "fetching from JetStream failed");
                    tokio::select! {
                        () = tokio::time::sleep(backoff) => {}
                        () = shutdown.cancelled() => {}
                    }
                    backoff = (backoff * 2).min(self.batch.max_backoff);
                }
            }
        }
        if let Some(batch) = in_hand {
            self.flush(batch, &shutdown).await;
        }
        tracing::info!("writer stopped");
    }

    /// Pulls until `batch_size` messages or `flush_interval` passed. A
    /// failed pull ends the batch early and is returned beside it: what was
    /// already pulled is stored, not left to wait for redelivery.
    async fn collect(&self, puller: &mut Puller, shutdown: &CancellationToken) -> (Batch, Option<async_nats::Error>) {
        let mut batch = Batch::new();
        let mut poison = Vec::new();
        let mut failed = None;
        let deadline = tokio::time::Instant::now() + self.batch.flush_interval;
        while batch.events < self.batch.batch_size && !shutdown.is_cancelled() {
            let want = (self.batch.batch_size - batch.events).min(10_000);
            let pulled = tokio::select! {
                pulled = puller.next(want, deadline) => pulled,
                () = shutdown.cancelled() => break,
            };
            match pulled {
                Ok(Some(message)) => self.add(&mut batch, &mut poison, message).await,
                Ok(None) => break,
                Err(error) => {
                    failed = Some(error);
                    break;
                }
            }
        }
        self.dead_letter(&mut batch, poison).await;
        (batch, failed)
    }

    async fn add(&self, batch: &mut Batch, poison: &mut Vec<Poison>, message: Message) {
        if message.subject.starts_with(DLQ_PREFIX) {
            // Dead letters live in the same stream; they are not ours to store.
            if let Err(error) = message.ack().await {
                tracing::warn!(%error, "acking a dead letter failed");
            }
            return;
        }
        let origin = batch.messages.len();
        if let Ok(info) = message.info() {
            if !batch.sequences.insert(info.stream_sequence) {
                // Its first delivery is in this batch; acking that one acks it.
                return;
            }
            if info.delivered > 1 {
                self.metrics.redeliveries.inc();
                batch.redelivered.push(origin);
            }
        }
        if let Some(headers) = message.headers.as_ref()
            && headers.get("traceparent").is_some()
        {
            let span = tracing::info_span!(
                "md.store",
                otel.name = format!("store {}", message.subject),
                otel.kind = "consumer",
                messaging.system = "nats",
            );
            moat_common_types::telemetry::nats::extract(&span, Some(headers));
            batch.spans.push(span);
        }
        match message_events(message.headers.as_ref(), &message.payload) {
            Ok(events) => {
                batch.events += events.len();
                for (event, raw) in events.iter().enumerate() {
                    let at = Origin { message: origin, event };
                    let (reason, error) = match MarketEvent::try_from(raw) {
                        Ok(decoded) => match TableRow::from_event(&decoded) {
                            Ok(row) => {
                                batch.event_times_us.push(match &decoded {
                                    MarketEvent::Candle(_) => decoded.ts_recv_us(),
                                    _ => decoded.ts_exchange_us(),
                                });
                                batch.push_row(at, row);
                                continue;
                            }
                            Err(error) => ("invalid_row", error.to_string()),
                        },
                        Err(error) => ("undecodable", error.message),
                    };
                    poison.push(Poison {
                        message: origin,
                        event: Some(event),
                        reason,
                        error,
                    });
                }
            }
            Err(error) => poison.push(Poison {
                message: origin,
                event: None,
                reason: "undecodable",
                error: error.message,
            }),
        }
        batch.messages.push(message);
    }

    /// Publishes poison events to `md.dlq.<reason>`: the message as it
    /// came when it holds one event or cannot be read, the event alone when
    /// it came in a batch. A message is acked with the rest of its batch
    /// once JetStream stored its dead letters; one whose dead letter cannot
    /// be published is held back, to be redelivered and tried again.
    async fn dead_letter(&self, batch: &mut Batch, poison: Vec<Poison>) {
        for p in poison {
            let message = &batch.messages[p.message];
            let mut headers = message.headers.clone().unwrap_or_default();
            let original_id = headers
                .get("Nats-Msg-Id")
                .map(|v| v.as_str().to_owned())
                .unwrap_or_else(|| {
                    message
                        .info()
                        .map(|i| i.stream_sequence.to_string())
                        .unwrap_or_default()
                });
            let batched = headers.get(EVENTS_HEADER).is_some();
            // A fresh id: the original's would be dropped as a duplicate.
            let (id, payload) = match p.event {
                Some(index) if batched => {
                    let event = message_events(message.headers.as_ref(), &message.payload)
                        .ok()
                        .and_then(|mut events| (index < events.len()).then(|| events.swap_remove(index)));
                    let Some(event) = event else {
                        batch.held.insert(p.message);
                        continue;
                    };
                    // The event goes alone: it is no batch.
                    let mut single = HeaderMap::new();
                    for (name, values) in headers
                        .iter()
                        .filter(|(name, _)| AsRef::<str>::as_ref(*name) != EVENTS_HEADER)
                    {
                        for value in values {
                            single.append(name.clone(), value.clone());
                        }
                    }
                    headers = single;
                    headers.insert("Moat-Dlq-Event-Index", index.to_string().as_str());
                    (format!("dlq:{original_id}#{index}"), encode_raw(&event).into())
                }
                _ => (format!("dlq:{original_id}"), message.payload.clone()),
            };
            headers.insert("Nats-Msg-Id", id.as_str());
            headers.insert("Moat-Dlq-Reason", p.reason);
            headers.insert("Moat-Dlq-Error", p.error.replace(['\r', '\n'], " ").as_str());
            headers.insert("Moat-Original-Subject", message.subject.as_str());
            let subject = format!("{DLQ_PREFIX}.{}", p.reason);
            let published = match self.js.publish_with_headers(subject.clone(), headers, payload).await {
                Ok(ack) => ack.await.map(|_| ()).map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            match published {
                Ok(()) => {
                    tracing::warn!(reason = p.reason, error = %p.error, original = %message.subject, "dead-lettered");
                    self.metrics.dead_lettered.with_label_values(&[p.reason]).inc();
                }
                Err(error) => {
                    tracing::error!(%error, %subject, "cannot publish dead letter; message left for redelivery");
                    batch.held.insert(p.message);
                }
            }
        }
    }

    /// Inserts every table, retrying with capped backoff and full jitter
    /// while ClickHouse is unavailable, then acks. On shutdown during
    /// retries the batch is abandoned unacked: JetStream redelivers it.
    async fn flush(&self, mut batch: Batch, shutdown: &CancellationToken) {
        let mut attempt = 0u32;
        let mut last_progress = Instant::now();
        let mut poison = Vec::new();
        loop {
            let started = Instant::now();
            let stored = match self.skip_stored_trades(&mut batch).await {
                Ok(()) => self.insert_all(&mut batch, &mut poison).await,
                Err(error) => Err(error),
            };
            match stored {
                Ok(()) => {
                    self.metrics.insert_latency.observe(started.elapsed().as_secs_f64());
                    let now_us = moat_common_types::now_us();
                    for at in batch.event_times_us.drain(..) {
                        self.metrics.ingest_lag.observe((now_us - at).max(0) as f64 / 1e6);
                    }
                    let poison = std::mem::take(&mut poison);
                    self.dead_letter(&mut batch, poison).await;
                    let mut acked = 0;
                    for (i, message) in batch.messages.iter().enumerate() {
                        if batch.held.contains(&i) {
                            continue;
                        }
                        match message.ack().await {
                            Ok(()) => acked += 1,
                            Err(error) => tracing::warn!(%error, "ack failed; message will be redelivered"),
                        }
                    }
                    if let Err(error) = self.nats.flush().await {
                        tracing::warn!(%error, "flushing acks failed");
                    }
                    self.metrics.batch_rows.observe(batch.events as f64);
                    tracing::debug!(
                        acked,
                        events = batch.events,
                        elapsed_ms = started.elapsed().as_millis() as u64,
                        "batch stored"
                    );
                    return;
                }
                Err(error) => {
                    attempt += 1;
                    self.metrics.insert_errors.inc();
                    let pause = Backoff::new(Duration::from_millis(100), self.batch.max_backoff).pause(attempt);
                    tracing::warn!(%error, attempt, pause_ms = pause.as_millis() as u64, rows = batch.messages.len(), "insert failed, retrying");
                    // Keep the messages ours while ClickHouse is away, so they
                    // are not redelivered to another replica meanwhile.
                    if last_progress.elapsed() > self.batch.ack_wait / 3 {
                        for message in &batch.messages {
                            let _ = message.ack_with(AckKind::Progress).await;
                        }
                        last_progress = Instant::now();
                    }
                    tokio::select! {
                        () = tokio::time::sleep(pause) => {}
                        () = shutdown.cancelled() => {
                            tracing::warn!(rows = batch.messages.len(), "shutting down with an unstored batch; JetStream will redeliver it");
                            return;
                        }
                    }
                }
            }
        }
    }

    /// Inserts the tables of a batch concurrently (each insert is a part of
    /// its own table, so the batch waits for the slowest, not the sum). A
    /// table ClickHouse confirmed is emptied, with the rows it refused added
    /// to `poison`: a retry after another table failed inserts only what is
    /// not stored yet, so `candles_1m` never sees a row twice.
    async fn insert_all(&self, batch: &mut Batch, poison: &mut Vec<Poison>) -> Result<(), clickhouse::error::Error> {
        type Insert<'a> = Pin<Box<dyn Future<Output = Result<Vec<Poison>, clickhouse::error::Error>> + Send + 'a>>;
        let mut inserts: Vec<Insert<'_>> = Vec::new();
        macro_rules! table {
            ($buffer:expr) => {{
                let b = &mut $buffer;
                if !b.rows.is_empty() {
                    inserts.push(Box::pin(async move {
                        let mut poison = Vec::new();
                        insert_isolating(&self.clickhouse, b.table, &b.rows, &b.origin, &mut poison).await?;
                        self.metrics
                            .rows
                            .with_label_values(&[b.table])
                            .inc_by(b.rows.len() as u64);
                        b.rows.clear();
                        b.origin.clear();
                        Ok(poison)
                    }));
                }
            }};
        }
        table!(batch.trades);
        table!(batch.bbo);
        table!(batch.book_snapshots);
        table!(batch.book_deltas);
        table!(batch.funding);
        table!(batch.liquidations);
        table!(batch.open_interest);
        table!(batch.option_tickers);
        table!(batch.venue_candles);
        table!(batch.gaps);
        let mut failed = None;
        for result in futures::future::join_all(inserts).await {
            match result {
                Ok(refused) => poison.extend(refused),
                Err(error) => failed = failed.or(Some(error)),
            }
        }
        failed.map_or(Ok(()), Err)
    }

    /// Leaves out the trades of redelivered messages that ClickHouse already
    /// has (a writer stopped between insert and ack, or an ack lost), so
    /// `candles_1m`, which aggregates at insert, counts each trade once.
    /// The other tables collapse repeats by key and have no view over them.
    /// Costs a query only for batches holding redeliveries.
    async fn skip_stored_trades(&self, batch: &mut Batch) -> Result<(), clickhouse::error::Error> {
        if batch.redelivered.is_empty() {
            return Ok(());
        }
        let redelivered: HashSet<usize> = batch.redelivered.iter().copied().collect();
        let rows = &batch.trades.rows;
        // Positions of the redelivered trades, by instrument.
        let mut asked: BTreeMap<(&str, &str, &str), Vec<usize>> = BTreeMap::new();
        for (i, (row, origin)) in rows.iter().zip(&batch.trades.origin).enumerate() {
            if redelivered.contains(&origin.message) {
                asked
                    .entry((&row.exchange, &row.market, &row.symbol))
                    .or_default()
                    .push(i);
            }
        }
        let mut stored = HashSet::new();
        for ((exchange, market, symbol), positions) in asked {
            let ids: Vec<&str> = positions.iter().map(|&i| rows[i].trade_id.as_str()).collect();
            let found: HashSet<String> = self
                .clickhouse
                .query(
                    "SELECT trade_id FROM trades WHERE exchange = ? AND market = ? AND symbol = ? AND has(?, trade_id)",
                )
                .bind(exchange)
                .bind(market)
                .bind(symbol)
                .bind(ids)
                .fetch_all::<String>()
                .await?
                .into_iter()
                .collect();
            stored.extend(positions.into_iter().filter(|&i| found.contains(&rows[i].trade_id)));
        }
        let before = batch.trades.rows.len();
        batch.trades.retain(|i| !stored.contains(&i));
        let skipped = before - batch.trades.rows.len();
        if skipped > 0 {
            self.metrics.redelivered_stored.inc_by(skipped as u64);
            tracing::info!(skipped, "redelivered trades already stored were left out");
        }
        // Asked once per batch, not again on each retry.
        batch.redelivered.clear();
        Ok(())
    }
}

/// Attaches the NATS headers of a dead letter for tests and tools.
pub fn dlq_reason(headers: Option<&HeaderMap>) -> Option<String> {
    headers
        .and_then(|h| h.get("Moat-Dlq-Reason"))
        .map(|v| v.as_str().to_owned())
}
