//! The gRPC services of `moat.gateway.v1`.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};
use moat_common_types::grpc::{from_status, inject_trace, to_status};
use moat_common_types::proto_conv::decode_message;
use moat_common_types::{Decimal, Error, ErrorCode, MarketEvent, now_ms};
use moat_proto::gateway::v1 as pb;
use moat_proto::gateway::v1::market_service_server::MarketService;
use moat_proto::gateway::v1::rpc_service_server::RpcService;
use moat_proto::gateway::v1::state_service_server::StateService;
use moat_proto::marketdata::v1 as md;
use moat_proto::state::v1 as st;
use moat_proto::state::v1::state_store_client::StateStoreClient;
use serde_json::Value;
use serde_json::value::RawValue;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

use moat_common_types::subject::check_token;

use crate::auth::{Auth, Strategy, token_from};
use crate::cache::Cache;
use crate::call::{Call, Metrics, grpc_deadline};
use crate::config::GatewayConfig;
use crate::ratelimit::{RateLimiter, limited};
use crate::rpc::RpcProxy;

/// Everything the services share.
pub struct Gateway {
    pub config: GatewayConfig,
    pub auth: Auth,
    pub limiter: RateLimiter,
    pub rpc_limiter: RateLimiter,
    pub cache: Cache,
    pub rpc: RpcProxy,
    pub state: StateStoreClient<Channel>,
    pub clickhouse: clickhouse::Client,
    pub nats: async_nats::Client,
    pub metrics: Arc<Metrics>,
}

impl Gateway {
    pub fn request_cap(&self) -> Duration {
        self.config.server.request_timeout
    }

    /// Starts a gRPC call: deadline, authentication and the strategy's rate limit.
    fn begin<T>(
        &self,
        request: &Request<T>,
        service: &'static str,
        method: &'static str,
    ) -> (Call, Result<Strategy, Error>) {
        let metadata = request.metadata();
        let peer = request.remote_addr().map(|a| a.ip());
        let mut call = Call::start(
            &self.metrics,
            service,
            method,
            grpc_deadline(metadata, self.request_cap()),
            peer,
            metadata.get("traceparent").and_then(|v| v.to_str().ok()),
        );
        let token = token_from(|k| metadata.get(k).and_then(|v| v.to_str().ok()));
        let certs = request.peer_certs();
        let result =
            moat_common_types::tls::check_client(&self.config.tls, certs.as_deref().map(Vec::as_slice), "moat-gateway")
                .and_then(|()| self.admit(token, peer));
        if let Ok(strategy) = &result {
            call.authenticated(strategy);
        }
        (call, result)
    }

    /// Authentication then the per-strategy bucket; shared with HTTP.
    pub fn admit(&self, token: Option<&str>, peer: Option<std::net::IpAddr>) -> Result<Strategy, Error> {
        let strategy = self.auth.authenticate(token, peer)?;
        self.limiter
            .check_with(&strategy.id, strategy.policy.limit)
            .map_err(limited)?;
        Ok(strategy)
    }
}

fn respond<T>(call: Call, result: Result<T, Error>) -> Result<Response<T>, Status> {
    call.finish(&result);
    result.map(Response::new).map_err(|e| to_status(&e))
}

#[derive(Clone)]
pub struct Market(pub Arc<Gateway>);

/// Interval names of `GetCandles` and their length in seconds.
pub fn interval_seconds(interval: &str) -> Result<u32, Error> {
    match interval {
        "1m" => Ok(60),
        "5m" => Ok(300),
        "15m" => Ok(900),
        "1h" => Ok(3600),
        "4h" => Ok(14_400),
        "1d" => Ok(86_400),
        other => Err(Error::invalid_argument(format!(
            "interval '{}' is not supported: use 1m, 5m, 15m, 1h, 4h or 1d",
            other.chars().take(16).collect::<String>()
        ))),
    }
}

type TradeStream = Pin<Box<dyn Stream<Item = Result<md::Trade, Status>> + Send>>;

#[tonic::async_trait]
impl MarketService for Market {
    async fn get_price(&self, request: Request<pb::GetPriceRequest>) -> Result<Response<pb::Price>, Status> {
        let g = &self.0;
        let (call, admitted) = g.begin(&request, "MarketService", "GetPrice");
        let result =
            admitted.and_then(|_| crate::price::price(&g.cache, &g.config.prices, request.get_ref(), now_ms()));
        respond(call, result)
    }

    async fn get_prices(
        &self,
        request: Request<pb::GetPricesRequest>,
    ) -> Result<Response<pb::GetPricesResponse>, Status> {
        let g = &self.0;
        let (call, admitted) = g.begin(&request, "MarketService", "GetPrices");
        let result = admitted.and_then(|_| {
            let requests = &request.get_ref().requests;
            if requests.len() > 100 {
                return Err(Error::invalid_argument(format!(
                    "GetPrices takes at most 100 requests, got {}",
                    requests.len()
                )));
            }
            let now = now_ms();
            let prices = requests
                .iter()
                .map(|r| crate::price::price(&g.cache, &g.config.prices, r, now))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(pb::GetPricesResponse { prices })
        });
        respond(call, result)
    }

    async fn get_order_book(
        &self,
        request: Request<pb::GetOrderBookRequest>,
    ) -> Result<Response<pb::OrderBook>, Status> {
        let g = &self.0;
        let (call, admitted) = g.begin(&request, "MarketService", "GetOrderBook");
        let r = request.get_ref();
        let result = admitted.and_then(|_| {
            check_token("exchange", &r.exchange)?;
            check_token("symbol", &r.symbol)?;
            let depth = if r.depth == 0 { 20 } else { r.depth.min(1000) } as usize;
            let level = |(p, q): (&Decimal, &Decimal)| md::Level {
                price: p.to_string(),
                qty: q.to_string(),
            };
            g.cache
                .with_book(&r.exchange, &r.symbol, |book| pb::OrderBook {
                    exchange: r.exchange.clone(),
                    symbol: r.symbol.clone(),
                    sequence: book.sequence,
                    bids: book.bids.iter().rev().take(depth).map(level).collect(),
                    asks: book.asks.iter().take(depth).map(level).collect(),
                    ts_ms: book.ts_us / 1_000,
                    valid: book.valid,
                })
                .ok_or_else(|| {
                    Error::new(
                        ErrorCode::NotFound,
                        format!("no order book for {} on {}", r.symbol, r.exchange),
                    )
                })
        });
        respond(call, result)
    }

    async fn get_candles(
        &self,
        request: Request<pb::GetCandlesRequest>,
    ) -> Result<Response<pb::GetCandlesResponse>, Status> {
        let g = &self.0;
        let (call, admitted) = g.begin(&request, "MarketService", "GetCandles");
        let r = request.into_inner();
        let result = match admitted {
            Ok(_) => call.within(candles(g, &r)).await,
            Err(e) => Err(e),
        };
        respond(call, result)
    }

    type StreamTradesStream = TradeStream;

    async fn stream_trades(&self, request: Request<pb::StreamTradesRequest>) -> Result<Response<TradeStream>, Status> {
        let g = self.0.clone();
        let (call, admitted) = g.begin(&request, "MarketService", "StreamTrades");
        let r = request.into_inner();
        let subject = admitted.and_then(|_| {
            let part = |what: &str, v: &str| -> Result<String, Error> {
                if v.is_empty() {
                    Ok("*".to_owned())
                } else {
                    check_token(what, v).map(|()| v.to_owned())
                }
            };
            // The live lane: each trade the moment the collector has it.
            Ok(moat_common_types::subject::live(&format!(
                "md.trade.{}.{}.{}",
                part("exchange", &r.exchange)?,
                part("market", &r.market)?,
                part("symbol", &r.symbol)?
            )))
        });
        let subject = match subject {
            Ok(s) => s,
            Err(e) => return respond(call, Err(e)),
        };
        let mut subscription = match g.nats.subscribe(subject).await {
            Ok(s) => s,
            Err(e) => return respond(call, Err(Error::unavailable(format!("subscribing to NATS: {e}")))),
        };
        let capacity = g.config.limits.stream_buffer.get();
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<md::Trade, Status>>(capacity);
        tokio::spawn(async move {
            while let Some(message) = subscription.next().await {
                let Ok(events) = decode_message(message.headers.as_ref(), &message.payload) else {
                    continue;
                };
                for event in events.iter().filter(|e| matches!(e, MarketEvent::Trade(_))) {
                    let Some(md::market_event::Event::Trade(mut proto)) = md::MarketEvent::from(event).event else {
                        continue;
                    };
                    // Strategies built against the millisecond fields keep
                    // reading them.
                    proto.ts_exchange_ms = proto.ts_exchange_us / 1_000;
                    proto.ts_recv_ms = proto.ts_recv_us / 1_000;
                    match tx.try_send(Ok(proto)) {
                        Ok(()) => {}
                        Err(tokio::sync::mpsc::error::TrySendError::Full(_)) => {
                            // Never buffer without bound: a client that cannot keep
                            // up is told so and cut off.
                            let error = Error::new(
                                ErrorCode::ResourceExhausted,
                                format!("client too slow: more than {capacity} trades waiting, stream closed"),
                            );
                            let _ = tx.send(Err(to_status(&error))).await;
                            call.finish::<()>(&Err(error));
                            return;
                        }
                        Err(tokio::sync::mpsc::error::TrySendError::Closed(_)) => {
                            call.finish::<()>(&Err(Error::new(ErrorCode::Cancelled, "client closed the stream")));
                            return;
                        }
                    }
                }
            }
            call.finish::<()>(&Ok(()));
        });
        Ok(Response::new(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))))
    }
}

async fn candles(g: &Gateway, r: &pb::GetCandlesRequest) -> Result<pb::GetCandlesResponse, Error> {
    check_token("exchange", &r.exchange)?;
    check_token("symbol", &r.symbol)?;
    let seconds = interval_seconds(&r.interval)?;
    let to_ms = if r.to_ms == 0 { now_ms() } else { r.to_ms };
    if r.from_ms > to_ms {
        return Err(Error::invalid_argument(format!(
            "from_ms {} is after to_ms {to_ms}",
            r.from_ms
        )));
    }
    if (to_ms - r.from_ms) / 1000 / i64::from(seconds) > 10_000 {
        return Err(Error::invalid_argument(
            "more than 10000 candles requested: narrow from_ms..to_ms",
        ));
    }
    // Minutes are whole seconds and the bounds milliseconds: a minute is
    // in when its start (in ms) is at or after `from_ms` and before `to_ms`,
    // which in seconds is the bounds rounded up. Rounded down, a candle
    // whose minute began earlier in the current second was left out.
    let sql = format!(
        "SELECT toInt64(intDiv(toUInt32(minute), {seconds}) * {seconds}) * 1000 AS open_ms, any(market),
                toString(argMinMerge(open)), toString(maxMerge(high)), toString(minMerge(low)),
                toString(argMaxMerge(close)), toString(sumMerge(volume)), countMerge(trades)
         FROM candles_1m
         WHERE exchange = ? AND symbol = ? AND minute >= toDateTime(intDiv(? + 999, 1000)) AND minute < toDateTime(intDiv(? + 999, 1000))
         GROUP BY open_ms ORDER BY open_ms"
    );
    type Row = (i64, String, String, String, String, String, String, u64);
    let rows: Vec<Row> = g
        .clickhouse
        .query(&sql)
        .bind(&r.exchange)
        .bind(&r.symbol)
        .bind(r.from_ms)
        .bind(to_ms)
        .fetch_all()
        .await
        .map_err(|e| Error::unavailable(format!("querying ClickHouse: {e}")))?;
    let now = now_ms();
    let candles = rows
        .into_iter()
        .map(|(open_ms, market, open, high, low, close, volume, trades)| {
            let trim = |s: String| s.parse::<Decimal>().map(|d| d.normalize().to_string()).unwrap_or(s);
            md::Candle {
                instrument: Some(md::Instrument {
                    exchange: r.exchange.clone(),
                    market: match market.as_str() {
                        "perp" => md::Market::Perp,
                        "future" => md::Market::Future,
                        "option" => md::Market::Option,
                        _ => md::Market::Spot,
                    } as i32,
                    symbol: r.symbol.clone(),
                    venue_symbol: String::new(),
                    option: None,
                }),
                interval_s: seconds,
                open_time_ms: open_ms,
                open: trim(open),
                high: trim(high),
                low: trim(low),
                close: trim(close),
                volume: trim(volume),
                trades,
                closed: open_ms + i64::from(seconds) * 1000 <= now,
                ts_recv_ms: now,
                ts_recv_us: now.saturating_mul(1_000),
            }
        })
        .collect();
    Ok(pb::GetCandlesResponse { candles })
}

#[derive(Clone)]
pub struct Rpc(pub Arc<Gateway>);

impl Rpc {
    /// One proxied call with the per-chain rate limit.
    pub async fn proxy(
        g: &Gateway,
        call: &mut Call,
        strategy: &Strategy,
        chain: &str,
        method: &str,
        params: Option<&RawValue>,
        id: &RawValue,
    ) -> Result<crate::rpc::Answer, Error> {
        call.attempted(chain, Some(method));
        g.rpc.chain(chain)?;
        g.rpc.check_method(method)?;
        call.rpc_method_allowed = true;
        strategy.policy.permits(&strategy.id, chain, method)?;
        g.rpc_limiter
            .check_with(&format!("{}|{chain}", strategy.id), strategy.policy.rpc_limit)
            .map_err(limited)?;
        call.within(g.rpc.call(chain, method, params, id)).await
    }
}

/// A gRPC call's params as JSON text; `None` when empty.
fn parse_params(json: &str) -> Result<Option<Box<RawValue>>, Error> {
    if json.trim().is_empty() {
        return Ok(None);
    }
    if crate::rpc::too_deep(json) {
        return Err(Error::invalid_argument(
            "params_json is not JSON: recursion limit exceeded",
        ));
    }
    serde_json::from_str(json)
        .map(Some)
        .map_err(|e| Error::invalid_argument(format!("params_json is not JSON: {e}")))
}

/// The id a gRPC call is proxied with: its place in the batch.
fn call_id(index: usize) -> Box<RawValue> {
    serde_json::value::to_raw_value(&index).expect("a number is JSON")
}

/// The gRPC answer: the result's JSON text as the node sent it, and the
/// error's parts (its text as the message when a tree parser refuses it).
fn to_rpc_response(answer: crate::rpc::Answer) -> pb::RpcResponse {
    let (result, error) = answer.members();
    let error = error.map(|e| match serde_json::from_str::<Value>(e) {
        Ok(e) => pb::RpcError {
            code: e.get("code").and_then(Value::as_i64).unwrap_or_default(),
            message: e.get("message").and_then(Value::as_str).unwrap_or_default().to_owned(),
            data_json: e.get("data").map(|d| d.to_string()).unwrap_or_default(),
        },
        Err(_) => pb::RpcError {
            code: 0,
            message: e.to_owned(),
            data_json: String::new(),
        },
    });
    pb::RpcResponse {
        result_json: result.map(str::to_owned).unwrap_or_default(),
        error,
    }
}

#[tonic::async_trait]
impl RpcService for Rpc {
    async fn call(&self, request: Request<pb::RpcRequest>) -> Result<Response<pb::RpcResponse>, Status> {
        let g = &self.0;
        let (mut call, admitted) = g.begin(&request, "RpcService", "Call");
        let r = request.into_inner();
        // A refused call is audited with what it tried.
        call.attempted(&r.chain, Some(&r.method));
        let result = match admitted {
            Ok(strategy) => match parse_params(&r.params_json) {
                Ok(params) => Rpc::proxy(
                    g,
                    &mut call,
                    &strategy,
                    &r.chain,
                    &r.method,
                    params.as_deref(),
                    &call_id(1),
                )
                .await
                .map(to_rpc_response),
                Err(e) => Err(e),
            },
            Err(e) => Err(e),
        };
        respond(call, result)
    }

    async fn batch_call(
        &self,
        request: Request<pb::BatchRpcRequest>,
    ) -> Result<Response<pb::BatchRpcResponse>, Status> {
        let g = &self.0;
        let (mut call, admitted) = g.begin(&request, "RpcService", "BatchCall");
        let r = request.into_inner();
        let result = async {
            let strategy = admitted?;
            if r.requests.len() > g.rpc.max_batch() {
                return Err(Error::invalid_argument(format!(
                    "batch of {} calls exceeds the limit of {}",
                    r.requests.len(),
                    g.rpc.max_batch()
                )));
            }
            let mut responses = Vec::with_capacity(r.requests.len());
            for (i, item) in r.requests.iter().enumerate() {
                let params = parse_params(&item.params_json)?;
                let answer = Rpc::proxy(
                    g,
                    &mut call,
                    &strategy,
                    &item.chain,
                    &item.method,
                    params.as_deref(),
                    &call_id(i),
                )
                .await;
                responses.push(match answer {
                    Ok(v) => to_rpc_response(v),
                    Err(e) => pb::RpcResponse {
                        result_json: String::new(),
                        error: Some(pb::RpcError {
                            code: crate::rpc::json_rpc_code(&e),
                            message: e.message,
                            data_json: String::new(),
                        }),
                    },
                });
            }
            Ok(pb::BatchRpcResponse { responses })
        }
        .await;
        respond(call, result)
    }
}

#[derive(Clone)]
pub struct State(pub Arc<Gateway>);

impl State {
    /// A request to moat-state carrying the caller's trace context and deadline.
    fn forward<T>(call: &Call, message: T) -> Request<T> {
        let mut request = Request::new(message);
        inject_trace(request.metadata_mut());
        request.set_timeout(call.remaining());
        request
    }
}

fn state_error(status: Status) -> Error {
    let mut error = from_status(&status);
    if error.code == ErrorCode::Unavailable {
        error.message = format!("state service unavailable: {}", status.message());
    }
    error
}

/// The strategy whose state a call touches: the token's. A `strategy_id`
/// in the request is only a check, and one naming another strategy is
/// refused.
fn state_owner(admitted: Result<Strategy, Error>, claimed: Option<&str>) -> Result<String, Error> {
    let strategy = admitted?;
    match claimed {
        Some(claimed) if claimed != strategy.id => Err(Error::new(
            ErrorCode::PermissionDenied,
            format!(
                "strategy_id '{}' is not this token's strategy '{}': a token reads and writes only its own state",
                claimed.chars().take(128).collect::<String>(),
                strategy.id
            ),
        )),
        _ => Ok(strategy.id),
    }
}

#[tonic::async_trait]
impl StateService for State {
    async fn save_state(
        &self,
        request: Request<pb::SaveStateRequest>,
    ) -> Result<Response<pb::SaveStateResponse>, Status> {
        let g = &self.0;
        let (call, admitted) = g.begin(&request, "StateService", "SaveState");
        let r = request.into_inner();
        let result = match state_owner(admitted, r.strategy_id.as_deref()) {
            Ok(strategy_id) => {
                let forward = State::forward(
                    &call,
                    st::SaveRequest {
                        strategy_id,
                        data: r.data,
                        expected_version: r.expected_version,
                        content_type: r.content_type,
                    },
                );
                let mut client = g.state.clone();
                call.within(async move { client.save(forward).await.map_err(state_error) })
                    .await
                    .map(|resp| {
                        let s = resp.into_inner();
                        pb::SaveStateResponse {
                            version: s.version,
                            sha256: s.sha256,
                        }
                    })
            }
            Err(e) => Err(e),
        };
        respond(call, result)
    }

    async fn load_state(
        &self,
        request: Request<pb::LoadStateRequest>,
    ) -> Result<Response<pb::LoadStateResponse>, Status> {
        let g = &self.0;
        let (call, admitted) = g.begin(&request, "StateService", "LoadState");
        let r = request.into_inner();
        let result = match state_owner(admitted, r.strategy_id.as_deref()) {
            Ok(strategy_id) => {
                let forward = State::forward(
                    &call,
                    st::LoadRequest {
                        strategy_id,
                        version: r.version,
                    },
                );
                let mut client = g.state.clone();
                call.within(async move { client.load(forward).await.map_err(state_error) })
                    .await
                    .map(|resp| {
                        let s = resp.into_inner();
                        pb::LoadStateResponse {
                            version: s.version,
                            data: s.data,
                            sha256: s.sha256,
                            saved_at_ms: s.saved_at_ms,
                            content_type: s.content_type,
                        }
                    })
            }
            Err(e) => Err(e),
        };
        respond(call, result)
    }

    async fn delete_state(
        &self,
        request: Request<pb::DeleteStateRequest>,
    ) -> Result<Response<pb::DeleteStateResponse>, Status> {
        let g = &self.0;
        let (call, admitted) = g.begin(&request, "StateService", "DeleteState");
        let r = request.into_inner();
        let result = match state_owner(admitted, r.strategy_id.as_deref()) {
            Ok(strategy_id) => {
                let forward = State::forward(&call, st::DeleteRequest { strategy_id });
                let mut client = g.state.clone();
                call.within(async move { client.delete(forward).await.map_err(state_error) })
                    .await
                    .map(|resp| pb::DeleteStateResponse {
                        deleted_versions: resp.into_inner().deleted_versions,
                    })
            }
            Err(e) => Err(e),
        };
        respond(call, result)
    }
}
