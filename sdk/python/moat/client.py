"""The synchronous client."""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from typing import Any, Callable, Iterable, Iterator, Sequence, TypeVar

import grpc

from . import _core, errors
from .gateway.v1 import gateway_pb2 as pb
from .gateway.v1 import gateway_pb2_grpc as pb_grpc
from .types import Candle, OrderBook, Price, Trade

__all__ = ["GatewayClient", "TradeStream"]

T = TypeVar("T")


class GatewayClient:
    """A connection to the moat gateway's gRPC port.

    ``host``, ``port`` and ``token`` default to ``GATEWAY_HOST`` (else
    ``localhost``), ``GATEWAY_PORT`` (else 50051) and ``MOAT_TOKEN`` (else the
    first non-comment line of the file ``MOAT_TOKEN_FILE`` names).
    TLS is on when ``tls`` is true or any ``tls_*`` argument, or
    ``MOAT_TLS_CA``, ``MOAT_TLS_CERT``, ``MOAT_TLS_KEY`` or
    ``MOAT_TLS_SERVER_NAME``, is set: ``tls_ca`` is the CA of the gateway's
    certificate (the system's roots without it), ``tls_cert`` and
    ``tls_key`` are the strategy's own for mutual TLS.
    ``timeout`` bounds each call in seconds. Reads that the gateway refuses
    with :class:`~moat.RateLimited` or :class:`~moat.Unavailable` are tried
    again after the advised delay while ``retry_budget`` seconds last; writes
    are never retried.

    Use it as a context manager, or call :meth:`close`.
    """

    def __init__(
        self,
        host: str | None = None,
        port: int | None = None,
        token: str | None = None,
        *,
        timeout: float = 10.0,
        retry_budget: float = 5.0,
        tls: bool | None = None,
        tls_ca: str | None = None,
        tls_cert: str | None = None,
        tls_key: str | None = None,
        tls_server_name: str | None = None,
    ) -> None:
        self.settings = _core.settings(
            host,
            port,
            token,
            timeout,
            retry_budget,
            _core.tls_settings(tls, tls_ca, tls_cert, tls_key, tls_server_name),
        )
        self._auth = _core.auth_metadata(self.settings.token)
        self._channel = _core.open_channel(grpc, self.settings)
        self._market = pb_grpc.MarketServiceStub(self._channel)
        self._rpc = pb_grpc.RpcServiceStub(self._channel)
        self._state = pb_grpc.StateServiceStub(self._channel)
        #: Calls tried again so far (reads refused with RateLimited or Unavailable).
        self.retries = 0

    def __enter__(self) -> GatewayClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._channel.close()

    def __repr__(self) -> str:
        return f"GatewayClient({self.settings.target!r})"

    # ---- plumbing ---------------------------------------------------------

    def _call(self, method: Callable[..., T], request: Any, *, read: bool, timeout: float | None = None) -> T:
        started = time.monotonic()
        attempt = 0
        while True:
            try:
                return method(
                    request,
                    timeout=timeout or self.settings.timeout,
                    metadata=_core.metadata(self._auth),
                )
            except grpc.RpcError as raw:
                error = errors.from_grpc(raw.code(), raw.details())
            left = self.settings.retry_budget - (time.monotonic() - started)
            delay = _core.retry_delay(error, read=read, attempt=attempt, left=left)
            if delay is None:
                raise error
            self.retries += 1
            time.sleep(delay)
            attempt += 1

    # ---- market data ------------------------------------------------------

    def get_price(self, token: str, quote: str = "USD", chain: str | None = None) -> Price:
        """The median price of ``token`` in ``quote`` over the venues that trade it."""
        answer = self._call(self._market.GetPrice, _core.price_request(token, quote, chain), read=True)
        return _core.price(answer)

    def get_prices(self, tokens: Iterable[str], quote: str = "USD", chain: str | None = None) -> dict[str, Price]:
        """Several prices in one call, by token as asked."""
        tokens = list(tokens)
        request = pb.GetPricesRequest(requests=[_core.price_request(t, quote, chain) for t in tokens])
        answer = self._call(self._market.GetPrices, request, read=True)
        return {token: _core.price(p) for token, p in zip(tokens, answer.prices)}

    def get_order_book(self, exchange: str, symbol: str, depth: int = 20) -> OrderBook:
        """The live book of ``symbol`` (normalized, e.g. ``BTC-USDT``) on ``exchange``."""
        request = pb.GetOrderBookRequest(exchange=exchange, symbol=symbol, depth=depth)
        return _core.order_book(self._call(self._market.GetOrderBook, request, read=True))

    def get_candles(
        self,
        exchange: str,
        symbol: str,
        interval: str = "1m",
        since: datetime | timedelta | None = None,
        until: datetime | timedelta | None = None,
    ) -> list[Candle]:
        """Candles from stored trades. ``since``/``until`` take datetimes, or
        timedeltas back from now (``timedelta(hours=1)`` is the last hour);
        by default the last 500 intervals up to now."""
        request = _core.candles_request(exchange, symbol, interval, since, until)
        answer = self._call(self._market.GetCandles, request, read=True)
        return [_core.candle(c) for c in answer.candles]

    def stream_trades(self, exchange: str = "", market: str = "", symbol: str = "") -> TradeStream:
        """Live trades as they arrive; empty filters match everything.
        Iterate it, and close it (or leave its ``with`` block) to end it."""
        request = pb.StreamTradesRequest(exchange=exchange, market=market, symbol=symbol)
        return TradeStream(self._market.StreamTrades(request, metadata=_core.metadata(self._auth)))

    # ---- JSON-RPC ---------------------------------------------------------

    def rpc(self, chain: str, method: str, params: Sequence[Any] | dict[str, Any] | None = None) -> Any:
        """Calls ``method`` on ``chain``'s node and returns its JSON ``result``;
        a node's error object is raised as :class:`~moat.JsonRpcError`."""
        request = _core.rpc_request(chain, method, params)
        return _core.rpc_result(self._call(self._rpc.Call, request, read=_core.rpc_is_read(method)))

    def rpc_batch(self, chain: str, calls: Iterable[Any]) -> list[Any]:
        """Several calls in one round trip: ``calls`` are ``(method, params)``
        pairs. Returns one entry per call, in order: its result, or a
        :class:`~moat.JsonRpcError` value for a call the node refused."""
        request, methods = _core.batch_requests(chain, calls)
        read = all(_core.rpc_is_read(m) for m in methods)
        answer = self._call(self._rpc.BatchCall, request, read=read)
        return [_core.rpc_outcome(r) for r in answer.responses]

    def rpc_raw(self, chain: str, method: str, params: Any, *, read: bool | None = None) -> pb.RpcResponse:
        """The gateway's answer as it came (for providers)."""
        if read is None:
            read = _core.rpc_is_read(method)
        return self._call(self._rpc.Call, _core.rpc_request(chain, method, params), read=read)

    def rpc_batch_raw(self, chain: str, calls: Iterable[Any]) -> list[pb.RpcResponse]:
        request, methods = _core.batch_requests(chain, calls)
        read = all(_core.rpc_is_read(m) for m in methods)
        return list(self._call(self._rpc.BatchCall, request, read=read).responses)

    def web3_provider(self, chain: str) -> Any:
        """A web3.py provider whose calls go through this client:
        ``Web3(client.web3_provider("ethereum")).eth.block_number``."""
        from ._web3 import MoatProvider

        return MoatProvider(self, chain)

    # ---- state ------------------------------------------------------------

    def _save_state(self, data: bytes, content_type: str, expected_version: int, strategy_id: str | None) -> int:
        request = pb.SaveStateRequest(data=data, expected_version=expected_version, content_type=content_type)
        if strategy_id is not None:
            request.strategy_id = strategy_id
        return self._call(self._state.SaveState, request, read=False).version

    def _load_state(self, strategy_id: str | None, version: int = 0) -> pb.LoadStateResponse | None:
        request = pb.LoadStateRequest(version=version)
        if strategy_id is not None:
            request.strategy_id = strategy_id
        try:
            return self._call(self._state.LoadState, request, read=True)
        except errors.NotFound:
            return None

    def _delete_state(self, strategy_id: str | None) -> int:
        request = pb.DeleteStateRequest()
        if strategy_id is not None:
            request.strategy_id = strategy_id
        return self._call(self._state.DeleteState, request, read=False).deleted_versions


class TradeStream:
    """Live trades from :meth:`GatewayClient.stream_trades`."""

    def __init__(self, call: Any) -> None:
        self._call = call
        self._closed = False

    def __iter__(self) -> Iterator[Trade]:
        return self

    def __next__(self) -> Trade:
        try:
            return _core.trade(next(self._call))
        except grpc.RpcError as raw:
            if self._closed and raw.code() == grpc.StatusCode.CANCELLED:
                raise StopIteration from None
            raise errors.from_grpc(raw.code(), raw.details()) from None

    def close(self) -> None:
        """Ends the stream; iteration then stops."""
        self._closed = True
        self._call.cancel()

    def __enter__(self) -> TradeStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
