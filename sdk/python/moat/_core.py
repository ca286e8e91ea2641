"""What the sync and async clients share: settings, call metadata, the
mapping from protobuf messages to :mod:`moat.types`, and the retry policy."""

from __future__ import annotations

import json
import os
import random
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, Iterable, Sequence

from . import errors
from .gateway.v1 import gateway_pb2 as pb
from .marketdata.v1 import marketdata_pb2 as md
from .types import (
    Candle,
    FailedSource,
    OrderBook,
    Price,
    PriceSource,
    Trade,
    from_millis,
    stamp,
    to_millis,
)

DEFAULT_HOST = "localhost"
DEFAULT_PORT = 50051
#: Largest message either side sends (the gateway's own default is 1 MiB in, more out).
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
#: Candles asked for when ``since`` is not given: this many intervals back.
DEFAULT_CANDLES = 500

_INTERVALS = {"1m": 60, "5m": 300, "15m": 900, "1h": 3600, "4h": 14_400, "1d": 86_400}

#: JSON-RPC methods that only read, so a refused or unavailable call may be retried.
_READ_RPC_PREFIXES = ("eth_get", "net_", "web3_")
_READ_RPC_METHODS = frozenset(
    {
        "eth_blockNumber",
        "eth_call",
        "eth_chainId",
        "eth_estimateGas",
        "eth_feeHistory",
        "eth_gasPrice",
        "eth_maxPriorityFeePerGas",
        "eth_blobBaseFee",
        "eth_syncing",
    }
)


@dataclass(frozen=True)
class Tls:
    """TLS to the gateway: the CA its certificate chains to (the system's
    roots when ``None``) and, for mutual TLS, this strategy's certificate."""

    ca: str | None
    cert: str | None
    key: str | None
    server_name: str | None


@dataclass(frozen=True)
class Settings:
    """Where the gateway is, who is calling, and how patient to be."""

    host: str
    port: int
    token: str | None
    timeout: float
    retry_budget: float
    tls: Tls | None = None

    @property
    def target(self) -> str:
        host = self.host
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        return f"{host}:{self.port}"


def read_token_file(path: str) -> str:
    """The first line of ``path`` that is neither empty nor a ``#`` comment."""
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                line = line.strip()
                if line and not line.startswith("#"):
                    return line
    except OSError as error:
        raise errors.MoatError(f"MOAT_TOKEN_FILE {path}: {error.strerror}", code="CONFIG") from error
    raise errors.MoatError(f"MOAT_TOKEN_FILE {path} holds no token (only blank or # lines)", code="CONFIG")


def tls_settings(
    tls: bool | None,
    ca: str | None,
    cert: str | None,
    key: str | None,
    server_name: str | None,
) -> Tls | None:
    """Arguments first, then ``MOAT_TLS_CA``, ``MOAT_TLS_CERT``,
    ``MOAT_TLS_KEY`` and ``MOAT_TLS_SERVER_NAME``. TLS is on when ``tls`` is
    true, or when it is ``None`` and any of them is set."""
    ca = ca or os.environ.get("MOAT_TLS_CA") or None
    cert = cert or os.environ.get("MOAT_TLS_CERT") or None
    key = key or os.environ.get("MOAT_TLS_KEY") or None
    server_name = server_name or os.environ.get("MOAT_TLS_SERVER_NAME") or None
    if tls is None:
        tls = any((ca, cert, key, server_name))
    if not tls:
        return None
    if (cert is None) != (key is None):
        raise errors.MoatError("a client certificate needs both cert and key (MOAT_TLS_CERT, MOAT_TLS_KEY)", code="CONFIG")
    for what, path in (("CA", ca), ("certificate", cert), ("key", key)):
        if path is not None and not os.path.isfile(path):
            raise errors.MoatError(f"TLS {what} file {path} does not exist", code="CONFIG")
    return Tls(ca, cert, key, server_name)


def channel_credentials(tls: Tls) -> Any:
    """gRPC channel credentials for ``tls``."""
    import grpc

    def read(path: str | None) -> bytes | None:
        if path is None:
            return None
        with open(path, "rb") as f:
            return f.read()

    return grpc.ssl_channel_credentials(
        root_certificates=read(tls.ca),
        private_key=read(tls.key),
        certificate_chain=read(tls.cert),
    )


def open_channel(module: Any, s: Settings) -> Any:
    """A channel of ``module`` (``grpc`` or ``grpc.aio``) to the gateway:
    TLS when ``s.tls`` says so, plaintext otherwise."""
    options = channel_options(s)
    if s.tls is None:
        return module.insecure_channel(s.target, options=options)
    return module.secure_channel(s.target, channel_credentials(s.tls), options=options)


def settings(
    host: str | None,
    port: int | str | None,
    token: str | None,
    timeout: float,
    retry_budget: float,
    tls: Tls | None = None,
) -> Settings:
    """Arguments first, then ``GATEWAY_HOST``, ``GATEWAY_PORT``, ``MOAT_TOKEN``
    and ``MOAT_TOKEN_FILE``, then the defaults."""
    host = host or os.environ.get("GATEWAY_HOST") or DEFAULT_HOST
    raw_port = port if port is not None else os.environ.get("GATEWAY_PORT") or DEFAULT_PORT
    try:
        port_number = int(raw_port)
    except ValueError:
        raise errors.MoatError(f"GATEWAY_PORT {raw_port!r} is not a port number", code="CONFIG") from None
    if not 0 < port_number < 65536:
        raise errors.MoatError(f"port {port_number} is out of range 1-65535", code="CONFIG")
    if token is None:
        token = os.environ.get("MOAT_TOKEN") or None
    if token is None and os.environ.get("MOAT_TOKEN_FILE"):
        token = read_token_file(os.environ["MOAT_TOKEN_FILE"])
    if timeout <= 0:
        raise errors.MoatError(f"timeout must be above 0 seconds, not {timeout}", code="CONFIG")
    if retry_budget < 0:
        raise errors.MoatError(f"retry_budget must be 0 or more seconds, not {retry_budget}", code="CONFIG")
    return Settings(host, port_number, token, float(timeout), float(retry_budget), tls)


def channel_options(s: Settings) -> list[tuple[str, Any]]:
    options: list[tuple[str, Any]] = [
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ("grpc.primary_user_agent", "moat-sdk-python"),
    ]
    if s.tls is not None and s.tls.server_name:
        options.append(("grpc.ssl_target_name_override", s.tls.server_name))
    return options


try:  # OpenTelemetry is optional; looked up once, not on every call.
    from opentelemetry import propagate as _otel_propagate
    from opentelemetry import trace as _otel_trace
except ImportError:  # pragma: no cover - depends on the environment
    _otel_propagate = None
    _otel_trace = None


def auth_metadata(token: str | None) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),) if token else ()


def metadata(auth: tuple[tuple[str, str], ...]) -> tuple[tuple[str, str], ...]:
    """The token's header, and W3C trace context when OpenTelemetry has an active span."""
    if _otel_trace is None or not _otel_trace.get_current_span().get_span_context().is_valid:
        return auth
    carrier: dict[str, str] = {}
    _otel_propagate.inject(carrier)
    trace = tuple((k.lower(), v) for k, v in carrier.items() if k.lower() in ("traceparent", "tracestate"))
    return auth + trace


# ---- retries ---------------------------------------------------------------


def retry_delay(error: errors.MoatError, *, read: bool, attempt: int, left: float) -> float | None:
    """How long to wait before trying a call again after ``error`` with
    ``left`` seconds of the retry budget, or ``None`` to raise it now.

    Only reads are retried, and only after ``RateLimited`` (the gateway's
    ``retry after`` delay, unless it is longer than the budget left) or
    ``Unavailable`` (a jittered backoff, cut to the budget left)."""
    if not read or left <= 0:
        return None
    if isinstance(error, errors.RateLimited):
        delay = error.retry_after if error.retry_after is not None else _backoff(attempt)
        return delay if delay <= left else None
    if isinstance(error, errors.Unavailable):
        return min(_backoff(attempt), left)
    return None


def _backoff(attempt: int) -> float:
    """Full jitter over 50 ms doubling per attempt, at most 2 s."""
    return random.uniform(0, min(2.0, 0.05 * (2**attempt)))


def rpc_is_read(method: str) -> bool:
    return method in _READ_RPC_METHODS or method.startswith(_READ_RPC_PREFIXES)


# ---- requests --------------------------------------------------------------


def price_request(token: str, quote: str, chain: str | None) -> pb.GetPriceRequest:
    request = pb.GetPriceRequest(token=token, quote=quote)
    if chain is not None:
        request.chain = chain
    return request


def interval_seconds(interval: str) -> int:
    try:
        return _INTERVALS[interval]
    except KeyError:
        raise errors.InvalidArgument(
            f"interval '{interval}' is not supported: use {', '.join(_INTERVALS)}", code="INVALID_ARGUMENT"
        ) from None


def _when(value: datetime | timedelta | None, now: datetime, default: datetime) -> int:
    if value is None:
        return to_millis(default)
    if isinstance(value, timedelta):
        return to_millis(now - value)
    if isinstance(value, datetime):
        return to_millis(value)
    raise TypeError(f"expected a datetime, a timedelta or None, not {type(value).__name__}")


def candles_request(
    exchange: str,
    symbol: str,
    interval: str,
    since: datetime | timedelta | None,
    until: datetime | timedelta | None,
) -> pb.GetCandlesRequest:
    """``since``/``until`` as datetimes, or timedeltas back from now;
    ``since=None`` is :data:`DEFAULT_CANDLES` intervals back, ``until=None`` now."""
    seconds = interval_seconds(interval)
    now = datetime.now(timezone.utc)
    to_ms = _when(until, now, now)
    from_ms = _when(since, now, from_millis(to_ms) - timedelta(seconds=seconds * DEFAULT_CANDLES))
    return pb.GetCandlesRequest(exchange=exchange, symbol=symbol, interval=interval, from_ms=from_ms, to_ms=to_ms)


def rpc_request(chain: str, method: str, params: Sequence[Any] | dict[str, Any] | None) -> pb.RpcRequest:
    params_json = "" if params is None else json.dumps(params, separators=(",", ":"))
    return pb.RpcRequest(chain=chain, method=method, params_json=params_json)


def batch_requests(chain: str, calls: Iterable[Any]) -> tuple[pb.BatchRpcRequest, list[str]]:
    """``calls`` as ``(method, params)`` pairs, ``{"method", "params"}`` dicts, or bare method names."""
    requests = []
    methods = []
    for call in calls:
        if isinstance(call, str):
            method, params = call, None
        elif isinstance(call, dict):
            method, params = call["method"], call.get("params")
        else:
            method, params = call
        requests.append(rpc_request(chain, method, params))
        methods.append(method)
    return pb.BatchRpcRequest(requests=requests), methods


# ---- answers ---------------------------------------------------------------


def _source(s: pb.PriceSource) -> PriceSource:
    return PriceSource(s.exchange, s.symbol, Decimal(s.price), from_millis(s.ts_ms))


def price(p: pb.Price) -> Price:
    return Price(
        token=p.token,
        quote=p.quote,
        price=Decimal(p.price),
        timestamp=from_millis(p.ts_ms),
        sources=[_source(s) for s in p.sources],
        outliers=[_source(s) for s in p.outliers],
        failed=[FailedSource(f.exchange, f.symbol, f.reason) for f in p.failed],
        confidence=p.confidence,
        stale=p.stale,
    )


def order_book(b: pb.OrderBook) -> OrderBook:
    return OrderBook(
        exchange=b.exchange,
        symbol=b.symbol,
        bids=[(Decimal(level.price), Decimal(level.qty)) for level in b.bids],
        asks=[(Decimal(level.price), Decimal(level.qty)) for level in b.asks],
        sequence=b.sequence,
        timestamp=from_millis(b.ts_ms),
        valid=b.valid,
    )


def candle(c: md.Candle) -> Candle:
    return Candle(
        exchange=c.instrument.exchange,
        symbol=c.instrument.symbol,
        interval=timedelta(seconds=c.interval_s),
        open_time=from_millis(c.open_time_ms),
        open=Decimal(c.open),
        high=Decimal(c.high),
        low=Decimal(c.low),
        close=Decimal(c.close),
        volume=Decimal(c.volume),
        trades=c.trades,
        closed=c.closed,
    )


_MARKETS = {md.MARKET_SPOT: "spot", md.MARKET_PERP: "perp", md.MARKET_FUTURE: "future", md.MARKET_OPTION: "option"}
_SIDES = {md.SIDE_BUY: "buy", md.SIDE_SELL: "sell"}


def trade(t: md.Trade) -> Trade:
    return Trade(
        exchange=t.instrument.exchange,
        market=_MARKETS.get(t.instrument.market, "unspecified"),
        symbol=t.instrument.symbol,
        trade_id=t.trade_id,
        price=Decimal(t.price),
        quantity=Decimal(t.qty),
        side=_SIDES.get(t.side),
        timestamp=stamp(t.ts_exchange_us, t.ts_exchange_ms),
        received=stamp(t.ts_recv_us, t.ts_recv_ms),
    )


def rpc_result(response: pb.RpcResponse) -> Any:
    """The JSON ``result``, or the node's error raised as :class:`JsonRpcError`."""
    outcome = rpc_outcome(response)
    if isinstance(outcome, errors.JsonRpcError):
        raise outcome
    return outcome


def rpc_outcome(response: pb.RpcResponse) -> Any:
    """The JSON ``result``, or the node's error as a :class:`JsonRpcError` value."""
    if response.HasField("error"):
        e = response.error
        data = json.loads(e.data_json) if e.data_json else None
        return errors.JsonRpcError(e.code, e.message, data)
    return json.loads(response.result_json) if response.result_json else None


def rpc_envelope(response: pb.RpcResponse, request_id: Any) -> dict[str, Any]:
    """A JSON-RPC 2.0 response object, for web3 providers."""
    out: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id}
    if response.HasField("error"):
        e = response.error
        error: dict[str, Any] = {"code": e.code, "message": e.message}
        if e.data_json:
            error["data"] = json.loads(e.data_json)
        out["error"] = error
    else:
        out["result"] = json.loads(response.result_json) if response.result_json else None
    return out


# ---- state ----------------------------------------------------------------


def encode_state(data: Any, json_type: str, bytes_type: str) -> tuple[bytes, str]:
    """Bytes as they are, anything else as JSON, each with its media type."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data), bytes_type
    try:
        return json.dumps(data, separators=(",", ":"), allow_nan=False).encode(), json_type
    except (TypeError, ValueError) as error:
        raise TypeError(f"state must be bytes or JSON-serializable: {error}") from error


def decode_state(data: bytes, content_type: str, json_type: str) -> Any:
    if content_type == json_type:
        return json.loads(data)
    return data
