//! The one session loop every venue runs. A venue says what to open,
//! what to subscribe and what a frame means ([`Venue`]); the loop owns the
//! socket, the timers, REST requests and reconnects, so a venue folder holds
//! only its protocol.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use moat_common_types::{Instrument, MarketEvent, now_us};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::book::L2Book;
use crate::metrics::Metrics;
use crate::recording::Recorder;
use crate::sink::Sink;
use crate::status::StreamStatus;
use crate::venues::{
    BookChange, BookOutcome, Connection, Incoming, Instruments, Reject, SessionError, TradeIds, get_parsed, open,
    publish_book, reconnect_loop, rejected, republish_book,
};

/// A venue protocol: what one connection opens and subscribes, and what
/// each frame means. `State` lives as long as one connection (its books,
/// the latest mark prices); the venue itself outlives reconnects.
pub trait Venue: Send + Sync + 'static {
    type State: Default + Send;

    fn instruments(&self) -> &Instruments;
    fn connection(&self) -> &Connection;
    fn connection_mut(&mut self) -> &mut Connection;

    /// The WebSocket URL of one connection.
    fn url(&self) -> String;

    /// The frames sent once the connection is open (subscriptions).
    fn subscriptions(&self) -> Vec<String>;

    /// A text heartbeat the venue wants, and how often.
    fn ping(&self) -> Option<(Duration, &'static str)> {
        None
    }

    /// How often [`Venue::on_poll`] runs (REST polls), if ever.
    fn poll_every(&self) -> Option<Duration> {
        None
    }

    /// The newest trade id per symbol, for venues whose trade ids are
    /// consecutive: seeded from the stream at start, so trades missed while
    /// the collector was down are announced as a gap.
    fn trade_ids(&self) -> Option<&TradeIds> {
        None
    }

    /// Runs once the connection is open and subscribed (REST snapshots).
    fn on_open(&self, _state: &mut Self::State, _cx: &mut Context<'_>) {}

    /// Handles one text frame; a refusal is counted by reason.
    fn on_frame(&self, state: &mut Self::State, text: &str, now: i64, cx: &mut Context<'_>) -> Result<(), Reject>;

    /// A REST answer asked for with [`Context::get`].
    fn on_answer(&self, _state: &mut Self::State, _answer: Answer, _cx: &mut Context<'_>) {}

    /// Runs every [`Venue::poll_every`].
    fn on_poll(&self, _state: &mut Self::State, _cx: &mut Context<'_>) {}

    /// The valid books of the connection, for the periodic whole-book
    /// snapshots ([`Connection::snapshot_every`]).
    fn books<'a>(&self, state: &'a Self::State) -> Vec<(&'a str, &'a L2Book, u64)>;
}

/// A REST request a venue asked for, by what it is for and which symbol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub what: &'static str,
    pub symbol: String,
    pub url: String,
}

/// The answer to a [`Request`]: its body, or why there is none.
#[derive(Debug)]
pub struct Answer {
    pub request: Request,
    pub body: Result<String, SessionError>,
}

enum Action {
    Send(String),
    Get(Request, Duration),
    /// End the session cleanly; the reconnect loop opens a new one.
    Reconnect,
}

/// What a venue's handlers publish through and ask of the session.
pub struct Context<'a> {
    pub sink: &'a dyn Sink,
    pub status: &'a StreamStatus,
    pub metrics: &'a Metrics,
    pub exchange: &'a str,
    actions: Vec<Action>,
}

impl Context<'_> {
    /// Publishes an event.
    pub fn emit(&self, event: MarketEvent) {
        self.sink.emit(event);
    }

    /// Publishes a trade or BBO and marks its symbol as fresh.
    pub fn emit_live(&self, event: MarketEvent, now: i64) {
        self.status.touch(&event.instrument().symbol, now);
        self.sink.emit(event);
    }

    /// Marks a symbol as fresh (a book update, a heartbeat).
    pub fn touch(&self, instrument: &Instrument, now: i64) {
        self.status.touch(&instrument.symbol, now);
    }

    /// Sends a frame on the connection after the handler returns.
    pub fn send(&mut self, text: String) {
        self.actions.push(Action::Send(text));
    }

    /// Ends the connection cleanly after the handler returns, for a venue
    /// that asks its clients to reconnect (maintenance); a new one opens.
    pub fn reconnect(&mut self) {
        self.actions.push(Action::Reconnect);
    }

    /// GETs a URL after `after`; the body comes back to [`Venue::on_answer`].
    pub fn get(&mut self, request: Request, after: Duration) {
        self.actions.push(Action::Get(request, after));
    }

    /// Reports a book's new top (`replay --book-top`) where no delta is
    /// published for it (a snapshot from REST).
    pub fn book_top(&self, instrument: &Instrument, sequence: u64, book: &L2Book) {
        self.sink
            .book_top(&instrument.exchange, &instrument.symbol, sequence, book);
    }

    /// Publishes what a book update did (see [`publish_book`]); true when
    /// the book went invalid and must be fetched again.
    pub(crate) fn book(&self, book: &L2Book, change: &BookChange<'_>, outcome: BookOutcome) -> bool {
        publish_book(self.sink, self.metrics, book, change, outcome)
    }
}

/// A configured venue connection, whatever its protocol.
pub trait Connector: Send + Sync + std::fmt::Debug {
    fn instruments(&self) -> &Instruments;
    fn trade_ids(&self) -> Option<&TradeIds>;
    fn set_recorder(&mut self, recorder: Recorder);
    /// Runs connections until `shutdown`, reconnecting and resubscribing.
    fn run(
        self: Box<Self>,
        sink: Arc<dyn Sink>,
        status: StreamStatus,
        metrics: Metrics,
        shutdown: CancellationToken,
    ) -> Pin<Box<dyn Future<Output = ()> + Send>>;
}

impl<V: Venue + std::fmt::Debug> Connector for V {
    fn instruments(&self) -> &Instruments {
        Venue::instruments(self)
    }

    fn trade_ids(&self) -> Option<&TradeIds> {
        Venue::trade_ids(self)
    }

    fn set_recorder(&mut self, recorder: Recorder) {
        self.connection_mut().recorder = Some(recorder);
    }

    fn run(
        self: Box<Self>,
        sink: Arc<dyn Sink>,
        status: StreamStatus,
        metrics: Metrics,
        shutdown: CancellationToken,
    ) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        Box::pin(run(*self, sink, status, metrics, shutdown))
    }
}

/// Runs a venue's connections until `shutdown`. Instruments that could not
/// be normalized are announced once here: counted as
/// `unknown_instrument` rejects and logged, while the rest are collected.
pub async fn run<V: Venue>(
    venue: V,
    sink: Arc<dyn Sink>,
    status: StreamStatus,
    metrics: Metrics,
    shutdown: CancellationToken,
) {
    let exchange = venue.instruments().exchange.clone();
    for (id, reason) in venue.instruments().skipped() {
        metrics
            .rejects
            .with_label_values(&[exchange.as_str(), "unknown_instrument"])
            .inc();
        tracing::warn!(%exchange, instrument = %id, %reason, "instrument not collected: moat cannot normalize it");
    }
    if venue.instruments().is_empty() {
        tracing::error!(%exchange, "no instrument of this venue can be collected; the venue stays idle");
        shutdown.cancelled().await;
        return;
    }
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("a default HTTP client builds");
    reconnect_loop(&exchange, venue.connection(), &metrics, &shutdown, || {
        session(&venue, &http, sink.as_ref(), &status, &metrics, &shutdown)
    })
    .await;
}

async fn session<V: Venue>(
    venue: &V,
    http: &reqwest::Client,
    sink: &dyn Sink,
    status: &StreamStatus,
    metrics: &Metrics,
    shutdown: &CancellationToken,
) -> Result<(), SessionError> {
    let url = venue.url();
    let connection = venue.connection();
    let recorder = connection.recorder.as_ref();
    let instruments = venue.instruments();
    let exchange = instruments.exchange.as_str();
    let mut ws = open(&url, None, recorder).await?;
    for subscription in venue.subscriptions() {
        ws.send_text(subscription).await?;
    }
    tracing::info!(%exchange, instruments = instruments.len(), "connected and subscribed");
    status.set_connected(true);

    let mut cx = Context {
        sink,
        status,
        metrics,
        exchange,
        actions: Vec::new(),
    };
    let mut state = V::State::default();
    let (answers_tx, mut answers) = mpsc::channel::<Answer>(64);
    let deadline = tokio::time::Instant::now() + connection.max_connection_age;
    let never = Duration::from_secs(86_400 * 365);
    let (ping_every, ping_text) = venue.ping().unwrap_or((never, ""));
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + ping_every, ping_every);
    let poll_every = venue.poll_every();
    let mut poll = tokio::time::interval(poll_every.unwrap_or(never));
    let mut snapshots = connection.snapshot_timer();
    venue.on_open(&mut state, &mut cx);
    let result = loop {
        let mut reconnect = false;
        for action in cx.actions.drain(..) {
            match action {
                Action::Reconnect => reconnect = true,
                Action::Send(text) => {
                    if let Err(error) = ws.send_text(text).await {
                        tracing::warn!(%exchange, %error, "sending to the venue failed");
                    }
                }
                Action::Get(request, after) => {
                    let (http, tx, recorder) = (http.clone(), answers_tx.clone(), recorder.cloned());
                    tokio::spawn(async move {
                        tokio::time::sleep(after).await;
                        let body = get_parsed(&http, &request.url, recorder.as_ref(), |body| {
                            Ok::<_, std::convert::Infallible>(body.to_owned())
                        })
                        .await;
                        let _ = tx.send(Answer { request, body }).await;
                    });
                }
            }
        }
        if reconnect {
            tracing::info!(%exchange, "the venue asked for a new connection");
            ws.close().await;
            break Ok(());
        }
        tokio::select! {
            _ = snapshots.tick() => {
                for (id, book, sequence) in venue.books(&state) {
                    if let Some(instrument) = instruments.get(id) {
                        republish_book(sink, instrument, book, sequence);
                    }
                }
            }
            () = shutdown.cancelled() => {
                ws.close().await;
                break Ok(());
            }
            () = tokio::time::sleep_until(deadline) => break Ok(()),
            _ = ping.tick(), if !ping_text.is_empty() => {
                if let Err(e) = ws.send_text(ping_text.to_owned()).await {
                    break Err(e);
                }
            }
            _ = poll.tick(), if poll_every.is_some() => venue.on_poll(&mut state, &mut cx),
            Some(answer) = answers.recv() => venue.on_answer(&mut state, answer, &mut cx),
            incoming = ws.next_text(connection.stale_after) => {
                let text = match incoming {
                    Ok(Incoming::Text(text)) => text,
                    Ok(Incoming::Closed) => break Ok(()),
                    Err(error) => break Err(error),
                };
                if let Err(reject) = venue.on_frame(&mut state, &text, now_us(), &mut cx) {
                    rejected(metrics, exchange, &reject, &text);
                }
            }
        }
    };
    status.set_connected(false);
    result
}
