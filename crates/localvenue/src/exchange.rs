//! A local exchange that speaks Binance's spot protocol with a generated
//! session: random-walk prices, aggregate trades, a depth diff stream with
//! `U`/`u` update ids every 100 ms, book tickers, and REST depth snapshots
//! consistent with the stream. The collector connects to it with its real
//! Binance connector, so a stack without network access (`cargo xtask up`,
//! the end-to-end tests, the load bench) exercises the same path as live
//! traffic.
//!
//! Besides the venue's endpoints it serves `GET /moat/stats` (what it has
//! sent), `POST /moat/disconnect` (drops every connection, as a venue
//! outage would) and `POST /moat/rate?trades_per_second=N` (0 pauses the feed).
//! [`GeneratedExchange::rate_limit_depth`] makes it answer depth requests
//! as Binance does past its request weight (HTTP 429, `Retry-After`).

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures::SinkExt;
use moat_common_types::{Decimal, now_ms};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::net::TcpListener;
use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;

/// Levels kept on each side of the generated book.
const DEPTH: i64 = 50;
/// Depth diffs and book tickers are flushed this often, as `@depth@100ms`.
const FLUSH_EVERY: Duration = Duration::from_millis(100);
/// Frames a slow client may fall behind before it is disconnected, as a
/// venue drops consumers that do not keep up.
const CLIENT_BACKLOG: usize = 65_536;
/// Frames written to a client before its socket is flushed, at most.
const FRAMES_PER_FLUSH: usize = 256;
/// A quiet connection (a paused feed) still gets a ping this often, so a
/// client's stale-connection timer only fires when the link is dead.
const PING_EVERY: Duration = Duration::from_secs(1);

/// A generated symbol: its venue id and starting price (whose number of
/// decimals is the tick size).
#[derive(Debug, Clone)]
pub struct GeneratedSymbol {
    pub venue_symbol: String,
    pub price: Decimal,
}

impl GeneratedSymbol {
    /// Parses `BTCUSDT=60000.00`.
    pub fn parse(spec: &str) -> Result<GeneratedSymbol, String> {
        let (symbol, price) = spec
            .split_once('=')
            .ok_or_else(|| format!("{spec:?}: expected SYMBOL=PRICE, e.g. BTCUSDT=60000.00"))?;
        let price =
            moat_common_types::model::parse_price("price", price).map_err(|e| format!("{spec:?}: {}", e.message))?;
        if symbol.is_empty() || !symbol.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(format!("{spec:?}: the symbol must be letters and digits, e.g. BTCUSDT"));
        }
        Ok(GeneratedSymbol {
            venue_symbol: symbol.to_ascii_uppercase(),
            price,
        })
    }

    pub fn defaults() -> Vec<GeneratedSymbol> {
        ["BTCUSDT=60000.00", "ETHUSDT=3000.00", "SOLUSDT=150.000"]
            .iter()
            .map(|s| GeneratedSymbol::parse(s).expect("built-in symbols parse"))
            .collect()
    }
}

/// One symbol's generated market: prices in ticks, quantities in lots.
struct Market {
    symbol: String,
    /// Combined-stream names: `btcusdt@aggTrade`, `…@depth@100ms`, `…@bookTicker`.
    trade_stream: Arc<str>,
    depth_stream: Arc<str>,
    ticker_stream: Arc<str>,
    price_scale: u32,
    mid: i64,
    bids: BTreeMap<i64, i64>,
    asks: BTreeMap<i64, i64>,
    last_update_id: u64,
    /// Levels changed since the last flushed diff (`0` = removed).
    pending_bids: BTreeMap<i64, i64>,
    pending_asks: BTreeMap<i64, i64>,
    first_pending: Option<u64>,
    next_trade_id: u64,
}

const QTY_SCALE: u32 = 3;

impl Market {
    fn new(s: &GeneratedSymbol, first_id: u64) -> Market {
        let mut market = Market {
            symbol: s.venue_symbol.clone(),
            trade_stream: format!("{}@aggTrade", s.venue_symbol.to_ascii_lowercase()).into(),
            depth_stream: format!("{}@depth@100ms", s.venue_symbol.to_ascii_lowercase()).into(),
            ticker_stream: format!("{}@bookTicker", s.venue_symbol.to_ascii_lowercase()).into(),
            price_scale: s.price.scale(),
            mid: s.price.mantissa() as i64,
            bids: BTreeMap::new(),
            asks: BTreeMap::new(),
            last_update_id: first_id,
            pending_bids: BTreeMap::new(),
            pending_asks: BTreeMap::new(),
            first_pending: None,
            next_trade_id: first_id,
        };
        for i in 1..=DEPTH {
            market.bids.insert(market.mid - i, 1_000 + i * 37 % 900);
            market.asks.insert(market.mid + i, 1_000 + i * 53 % 900);
        }
        market
    }

    fn price(&self, ticks: i64) -> String {
        Decimal::new(ticks, self.price_scale).to_string()
    }

    fn qty(lots: i64) -> String {
        Decimal::new(lots, QTY_SCALE).to_string()
    }

    fn set(&mut self, bid: bool, price: i64, qty: i64) {
        let (side, pending) = if bid {
            (&mut self.bids, &mut self.pending_bids)
        } else {
            (&mut self.asks, &mut self.pending_asks)
        };
        if qty == 0 {
            if side.remove(&price).is_none() {
                return;
            }
        } else {
            side.insert(price, qty);
        }
        pending.insert(price, qty);
        self.last_update_id += 1;
        self.first_pending.get_or_insert(self.last_update_id);
    }

    /// Moves the price a tick at random, keeps the book uncrossed and
    /// `DEPTH` deep on each side, and trades at the touch. Returns the
    /// aggregate-trade frame.
    fn step(&mut self, rng: &mut StdRng, now: i64) -> String {
        self.mid += rng.random_range(-1..=1);
        let mid = self.mid;
        let crossed_bids: Vec<i64> = self.bids.range(mid..).map(|(p, _)| *p).collect();
        let crossed_asks: Vec<i64> = self.asks.range(..=mid).map(|(p, _)| *p).collect();
        for p in crossed_bids {
            self.set(true, p, 0);
        }
        for p in crossed_asks {
            self.set(false, p, 0);
        }
        let far_bids: Vec<i64> = self.bids.range(..mid - DEPTH).map(|(p, _)| *p).collect();
        let far_asks: Vec<i64> = self.asks.range(mid + DEPTH + 1..).map(|(p, _)| *p).collect();
        for p in far_bids {
            self.set(true, p, 0);
        }
        for p in far_asks {
            self.set(false, p, 0);
        }
        for i in 1..=DEPTH {
            if !self.bids.contains_key(&(mid - i)) {
                self.set(true, mid - i, rng.random_range(100..5_000));
            }
            if !self.asks.contains_key(&(mid + i)) {
                self.set(false, mid + i, rng.random_range(100..5_000));
            }
        }
        // Resting size changes somewhere in the book.
        let bid = rng.random_bool(0.5);
        self.set(
            bid,
            if bid {
                mid - rng.random_range(1..=DEPTH)
            } else {
                mid + rng.random_range(1..=DEPTH)
            },
            rng.random_range(100..5_000),
        );

        // A taker trade at the touch: a buy lifts the best ask, a sell hits
        // the best bid, and the level shrinks by what traded.
        let taker_buys = rng.random_bool(0.5);
        let (price, resting) = if taker_buys {
            self.asks
                .iter()
                .next()
                .map(|(p, q)| (*p, *q))
                .unwrap_or((mid + 1, 1_000))
        } else {
            self.bids
                .iter()
                .next_back()
                .map(|(p, q)| (*p, *q))
                .unwrap_or((mid - 1, 1_000))
        };
        let qty = rng.random_range(1..=resting.clamp(1, 2_000));
        self.set(!taker_buys, price, (resting - qty).max(0));
        let id = self.next_trade_id;
        self.next_trade_id += 1;
        format!(
            r#"{{"stream":"{s}","data":{{"e":"aggTrade","E":{now},"s":"{S}","a":{id},"p":"{p}","q":"{q}","f":{id},"l":{id},"T":{now},"m":{m},"M":true}}}}"#,
            s = self.trade_stream,
            S = self.symbol,
            p = self.price(price),
            q = Market::qty(qty),
            m = !taker_buys,
        )
    }

    fn levels(&self, side: &BTreeMap<i64, i64>) -> String {
        let parts: Vec<String> = side
            .iter()
            .map(|(p, q)| format!(r#"["{}","{}"]"#, self.price(*p), Market::qty(*q)))
            .collect();
        format!("[{}]", parts.join(","))
    }

    /// The depth diff since the last flush and the book ticker, if the
    /// book changed.
    fn flush(&mut self, now: i64) -> Option<(String, String)> {
        let first = self.first_pending.take()?;
        let bids = std::mem::take(&mut self.pending_bids);
        let asks = std::mem::take(&mut self.pending_asks);
        // Binance lists bids best first.
        let bid_levels: Vec<String> = bids
            .iter()
            .rev()
            .map(|(p, q)| format!(r#"["{}","{}"]"#, self.price(*p), Market::qty(*q)))
            .collect();
        let depth = format!(
            r#"{{"stream":"{s}","data":{{"e":"depthUpdate","E":{now},"s":"{S}","U":{first},"u":{last},"b":[{b}],"a":{a}}}}}"#,
            s = self.depth_stream,
            S = self.symbol,
            last = self.last_update_id,
            b = bid_levels.join(","),
            a = self.levels(&asks),
        );
        let (bid_p, bid_q) = self.bids.iter().next_back().map(|(p, q)| (*p, *q))?;
        let (ask_p, ask_q) = self.asks.iter().next().map(|(p, q)| (*p, *q))?;
        let ticker = format!(
            r#"{{"stream":"{s}","data":{{"u":{u},"s":"{S}","b":"{b}","B":"{bq}","a":"{a}","A":"{aq}"}}}}"#,
            s = self.ticker_stream,
            S = self.symbol,
            u = self.last_update_id,
            b = self.price(bid_p),
            bq = Market::qty(bid_q),
            a = self.price(ask_p),
            aq = Market::qty(ask_q),
        );
        Some((depth, ticker))
    }

    /// The REST answer of `/api/v3/depth`: the book as of `lastUpdateId`.
    fn snapshot(&self, limit: usize, now: i64) -> String {
        let bids: Vec<String> = self
            .bids
            .iter()
            .rev()
            .take(limit)
            .map(|(p, q)| format!(r#"["{}","{}"]"#, self.price(*p), Market::qty(*q)))
            .collect();
        let asks: Vec<String> = self
            .asks
            .iter()
            .take(limit)
            .map(|(p, q)| format!(r#"["{}","{}"]"#, self.price(*p), Market::qty(*q)))
            .collect();
        format!(
            r#"{{"lastUpdateId":{},"E":{now},"bids":[{}],"asks":[{}]}}"#,
            self.last_update_id,
            bids.join(","),
            asks.join(",")
        )
    }
}

/// One frame for the connections: its stream name and text (shared by
/// every client, cloned without copying).
#[derive(Debug)]
struct Frame {
    stream: Arc<str>,
    text: axum::extract::ws::Utf8Bytes,
}

impl Frame {
    fn is_trade(&self) -> bool {
        self.stream.ends_with("@aggTrade")
    }
}

#[derive(Default)]
struct Stats {
    trades_generated: AtomicU64,
    trades_sent: AtomicU64,
    frames_sent: AtomicU64,
    connections: AtomicU64,
    connections_total: AtomicU64,
    slow_clients_dropped: AtomicU64,
}

struct Shared {
    markets: Mutex<Vec<Market>>,
    frames: broadcast::Sender<Arc<Frame>>,
    stats: Stats,
    rate: watch::Sender<u32>,
    /// Replaced (cancelled) by `/moat/disconnect`.
    disconnect: Mutex<CancellationToken>,
    /// Depth requests still to refuse as rate-limited, and the
    /// `Retry-After` (seconds) they carry.
    depth_limited: Mutex<(u32, u64)>,
    stop: CancellationToken,
}

/// A running generated exchange.
pub struct GeneratedExchange {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
}

impl GeneratedExchange {
    /// Starts generating `trades_per_second` trades per symbol and serving
    /// them on `listener`.
    pub async fn start(
        listener: TcpListener,
        symbols: &[GeneratedSymbol],
        trades_per_second: u32,
    ) -> std::io::Result<GeneratedExchange> {
        let addr = listener.local_addr()?;
        // Ids start at the boot time in microseconds so a restarted
        // exchange never reuses a trade id stored before.
        let first_id = now_ms() as u64 * 1_000;
        let (frames, _) = broadcast::channel(CLIENT_BACKLOG);
        let shared = Arc::new(Shared {
            markets: Mutex::new(symbols.iter().map(|s| Market::new(s, first_id)).collect()),
            frames,
            stats: Stats::default(),
            rate: watch::Sender::new(trades_per_second),
            disconnect: Mutex::new(CancellationToken::new()),
            depth_limited: Mutex::new((0, 0)),
            stop: CancellationToken::new(),
        });
        let app = Router::new()
            .route("/stream", get(ws))
            .route("/ws", get(ws))
            .route("/api/v3/depth", get(depth))
            .route("/moat/stats", get(stats))
            .route("/moat/disconnect", post(disconnect))
            .route("/moat/rate", post(set_rate))
            .with_state(shared.clone());
        tokio::spawn(generate(shared.clone()));
        let stop = shared.stop.clone();
        tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, app)
                .with_graceful_shutdown(stop.cancelled_owned())
                .await
            {
                tracing::error!(%error, "local exchange stopped");
            }
        });
        Ok(GeneratedExchange { addr, shared })
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}", self.addr)
    }

    pub fn http_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Trade frames delivered to clients so far.
    pub fn trades_sent(&self) -> u64 {
        self.shared.stats.trades_sent.load(Ordering::Relaxed)
    }

    /// Drops every client connection, as a venue outage would.
    pub fn disconnect_all(&self) {
        std::mem::take(&mut *self.shared.disconnect.lock().expect("disconnect lock")).cancel();
    }

    /// Answers the next `requests` depth snapshots as Binance does past
    /// its request weight: HTTP 429 with `Retry-After: retry_after_s`.
    pub fn rate_limit_depth(&self, requests: u32, retry_after_s: u64) {
        *self.shared.depth_limited.lock().expect("limit lock") = (requests, retry_after_s);
    }
}

/// Dropping the exchange stops it and drops its connections.
impl Drop for GeneratedExchange {
    fn drop(&mut self) {
        self.shared.stop.cancel();
    }
}

/// Steps every market at the configured rate and flushes book diffs every
/// 100 ms, broadcasting the frames.
async fn generate(shared: Arc<Shared>) {
    let mut rng = StdRng::from_os_rng();
    let mut rate = shared.rate.subscribe();
    let mut flush = tokio::time::interval(FLUSH_EVERY);
    // Trades are produced in small bursts every millisecond tick so high
    // rates do not need a timer per trade.
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let started = tokio::time::Instant::now();
    let mut rate_since = (started, 0u64);
    loop {
        tokio::select! {
            () = shared.stop.cancelled() => return,
            _ = rate.changed() => rate_since = (tokio::time::Instant::now(), 0),
            _ = flush.tick() => {
                let now = now_ms();
                let mut markets = shared.markets.lock().expect("markets lock");
                for market in markets.iter_mut() {
                    if let Some((depth, ticker)) = market.flush(now) {
                        send(&shared, &market.depth_stream, depth);
                        send(&shared, &market.ticker_stream, ticker);
                    }
                }
            }
            _ = tick.tick() => {
                let per_second = u64::from(*rate.borrow());
                let due = (rate_since.0.elapsed().as_secs_f64() * per_second as f64) as u64;
                let steps = due.saturating_sub(rate_since.1);
                if steps == 0 {
                    continue;
                }
                rate_since.1 = due;
                let now = now_ms();
                let mut markets = shared.markets.lock().expect("markets lock");
                for _ in 0..steps {
                    for market in markets.iter_mut() {
                        let trade = market.step(&mut rng, now);
                        shared.stats.trades_generated.fetch_add(1, Ordering::Relaxed);
                        send(&shared, &market.trade_stream, trade);
                    }
                }
            }
        }
    }
}

fn send(shared: &Shared, stream: &Arc<str>, text: String) {
    // No receiver is not an error: frames nobody is subscribed to are lost
    // as on a venue.
    let _ = shared.frames.send(Arc::new(Frame {
        stream: stream.clone(),
        text: text.into(),
    }));
}

async fn ws(State(shared): State<Arc<Shared>>, RawQuery(query): RawQuery, upgrade: WebSocketUpgrade) -> Response {
    let streams: HashSet<String> = query
        .unwrap_or_default()
        .split('&')
        .filter_map(|kv| kv.strip_prefix("streams="))
        .flat_map(|s| s.split('/'))
        // Symbols are case-insensitive, stream types are not (`aggTrade`).
        .map(|stream| match stream.split_once('@') {
            Some((symbol, kind)) => format!("{}@{kind}", symbol.to_ascii_lowercase()),
            None => stream.to_owned(),
        })
        .collect();
    if streams.is_empty() {
        return (
            StatusCode::BAD_REQUEST,
            "subscribe with /stream?streams=btcusdt@aggTrade/…",
        )
            .into_response();
    }
    // Subscribe before the upgrade completes so no frame generated after
    // the client's request is missed.
    let frames = shared.frames.subscribe();
    upgrade.on_upgrade(move |socket| serve_client(shared, socket, streams, frames))
}

async fn serve_client(
    shared: Arc<Shared>,
    mut socket: WebSocket,
    streams: HashSet<String>,
    mut frames: broadcast::Receiver<Arc<Frame>>,
) {
    let stats = &shared.stats;
    stats.connections.fetch_add(1, Ordering::Relaxed);
    stats.connections_total.fetch_add(1, Ordering::Relaxed);
    let disconnect = shared.disconnect.lock().expect("disconnect lock").clone();
    let mut ping = tokio::time::interval(PING_EVERY);
    loop {
        tokio::select! {
            _ = ping.tick() => {
                if socket.send(Message::Ping(Default::default())).await.is_err() {
                    break;
                }
            }
            () = shared.stop.cancelled() => break,
            () = disconnect.cancelled() => break,
            frame = frames.recv() => match frame {
                Ok(frame) => {
                    // The frames already waiting go out in one flush, as a
                    // server writes what its socket takes: one write for
                    // many frames, not one each.
                    let mut next = Some(frame);
                    let mut taken = 0;
                    let mut lagged = None;
                    let mut gone = false;
                    while let Some(frame) = next.take() {
                        if streams.contains(&*frame.stream) {
                            if socket.feed(Message::Text(frame.text.clone())).await.is_err() {
                                gone = true;
                                break;
                            }
                            stats.frames_sent.fetch_add(1, Ordering::Relaxed);
                            if frame.is_trade() {
                                stats.trades_sent.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        taken += 1;
                        if taken == FRAMES_PER_FLUSH {
                            break;
                        }
                        match frames.try_recv() {
                            Ok(frame) => next = Some(frame),
                            Err(broadcast::error::TryRecvError::Empty) => {}
                            Err(broadcast::error::TryRecvError::Lagged(missed)) => lagged = Some(missed),
                            Err(broadcast::error::TryRecvError::Closed) => gone = true,
                        }
                    }
                    if gone || socket.flush().await.is_err() {
                        break;
                    }
                    if let Some(missed) = lagged {
                        tracing::warn!(missed, "client too slow, disconnecting it");
                        stats.slow_clients_dropped.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::warn!(missed, "client too slow, disconnecting it");
                    stats.slow_clients_dropped.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                Err(broadcast::error::RecvError::Closed) => break,
            },
            message = socket.recv() => match message {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            },
        }
    }
    stats.connections.fetch_sub(1, Ordering::Relaxed);
}

#[derive(serde::Deserialize)]
struct DepthQuery {
    symbol: String,
    limit: Option<usize>,
}

async fn depth(State(shared): State<Arc<Shared>>, Query(q): Query<DepthQuery>) -> Response {
    {
        let mut limited = shared.depth_limited.lock().expect("limit lock");
        if limited.0 > 0 {
            limited.0 -= 1;
            return (
                StatusCode::TOO_MANY_REQUESTS,
                [
                    (axum::http::header::CONTENT_TYPE, "application/json".to_owned()),
                    (axum::http::header::RETRY_AFTER, limited.1.to_string()),
                ],
                r#"{"code":-1003,"msg":"Too many requests; current limit is 6000 request weight per 1 MINUTE."}"#,
            )
                .into_response();
        }
    }
    let markets = shared.markets.lock().expect("markets lock");
    let symbol = q.symbol.to_ascii_uppercase();
    match markets.iter().find(|m| m.symbol == symbol) {
        Some(market) => (
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            market.snapshot(q.limit.unwrap_or(100).min(5_000), now_ms()),
        )
            .into_response(),
        None => (
            StatusCode::BAD_REQUEST,
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            r#"{"code":-1121,"msg":"Invalid symbol."}"#,
        )
            .into_response(),
    }
}

async fn stats(State(shared): State<Arc<Shared>>) -> Response {
    let s = &shared.stats;
    let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
    axum::Json(serde_json::json!({
        "trades_generated": load(&s.trades_generated),
        "trades_sent": load(&s.trades_sent),
        "frames_sent": load(&s.frames_sent),
        "connections": load(&s.connections),
        "connections_total": load(&s.connections_total),
        "slow_clients_dropped": load(&s.slow_clients_dropped),
        "trades_per_second": *shared.rate.borrow(),
    }))
    .into_response()
}

async fn disconnect(State(shared): State<Arc<Shared>>) -> Response {
    std::mem::take(&mut *shared.disconnect.lock().expect("disconnect lock")).cancel();
    StatusCode::NO_CONTENT.into_response()
}

#[derive(serde::Deserialize)]
struct RateQuery {
    trades_per_second: u32,
}

async fn set_rate(State(shared): State<Arc<Shared>>, Query(q): Query<RateQuery>) -> Response {
    if q.trades_per_second > 1_000_000 {
        return (
            StatusCode::BAD_REQUEST,
            "trades_per_second must be 0 (paused) to 1000000",
        )
            .into_response();
    }
    shared.rate.send_replace(q.trades_per_second);
    StatusCode::NO_CONTENT.into_response()
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use serde_json::Value;

    use super::*;

    fn decimal(v: &Value) -> Decimal {
        Decimal::from_str(v.as_str().expect("a decimal string")).expect("a decimal")
    }

    fn apply(side: &mut BTreeMap<Decimal, Decimal>, levels: &Value) {
        for level in levels.as_array().expect("levels") {
            let (price, qty) = (decimal(&level[0]), decimal(&level[1]));
            if qty.is_zero() {
                side.remove(&price);
            } else {
                side.insert(price, qty);
            }
        }
    }

    /// The generated stream obeys Binance's documented sync rules: after a
    /// snapshot taken mid-stream, the first diff applied spans
    /// `lastUpdateId + 1`, each next diff starts where the last ended, and
    /// applying them ends with exactly the generator's book, never crossed.
    /// (The collector's own Binance book is run against this exchange in
    /// the collector's tests.)
    #[test]
    fn generated_diffs_rebuild_the_generated_book() {
        let spec = GeneratedSymbol::parse("BTCUSDT=60000.00").unwrap();
        let mut market = Market::new(&spec, 1_000);
        let mut rng = StdRng::seed_from_u64(7);
        let (mut bids, mut asks) = (BTreeMap::new(), BTreeMap::new());
        let mut last: Option<u64> = None;
        let (mut trades, mut applied) = (0, 0);
        for round in 0..200 {
            for _ in 0..rng.random_range(0..20) {
                let frame: Value = serde_json::from_str(&market.step(&mut rng, 1)).unwrap();
                assert_eq!(frame["data"]["e"], "aggTrade", "{frame}");
                assert!(decimal(&frame["data"]["p"]) > Decimal::ZERO && decimal(&frame["data"]["q"]) > Decimal::ZERO);
                trades += 1;
            }
            if round == 50 {
                let snapshot: Value = serde_json::from_str(&market.snapshot(1_000, 1)).unwrap();
                apply(&mut bids, &snapshot["bids"]);
                apply(&mut asks, &snapshot["asks"]);
                last = snapshot["lastUpdateId"].as_u64();
            }
            let Some((depth, _ticker)) = market.flush(1) else {
                continue;
            };
            let depth: Value = serde_json::from_str(&depth).unwrap();
            let data = &depth["data"];
            let (first, end) = (data["U"].as_u64().unwrap(), data["u"].as_u64().unwrap());
            assert!(first <= end, "{depth}");
            let Some(previous) = last else { continue };
            if end <= previous {
                continue;
            }
            assert!(
                first <= previous + 1,
                "round {round}: diff {first}..{end} after {previous}"
            );
            if applied > 0 {
                assert_eq!(first, previous + 1, "round {round}: diffs must be consecutive");
            }
            apply(&mut bids, &data["b"]);
            apply(&mut asks, &data["a"]);
            last = Some(end);
            applied += 1;
        }
        assert!(
            trades > 500 && applied > 100,
            "{trades} trades, {applied} diffs applied"
        );
        assert_eq!(bids.len(), market.bids.len());
        assert_eq!(asks.len(), market.asks.len());
        let best_bid = market.price(*market.bids.keys().next_back().unwrap());
        let best_ask = market.price(*market.asks.keys().next().unwrap());
        assert_eq!(bids.keys().next_back().unwrap().to_string(), best_bid);
        assert_eq!(asks.keys().next().unwrap().to_string(), best_ask);
        assert!(bids.keys().next_back() < asks.keys().next());
    }

    #[test]
    fn symbol_specs_are_checked() {
        assert!(GeneratedSymbol::parse("BTCUSDT=60000.00").is_ok());
        for bad in ["BTCUSDT", "BTCUSDT=-1", "BTCUSDT=abc", "=1.0", "BTC/USDT=1.0"] {
            assert!(GeneratedSymbol::parse(bad).is_err(), "{bad}");
        }
    }
}
