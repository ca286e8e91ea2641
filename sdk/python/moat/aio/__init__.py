"""The asyncio client: the same methods as :class:`moat.GatewayClient`, as coroutines.

    async with moat.aio.GatewayClient() as client:
        price = await client.get_price("ETH")
        async with client.stream_trades(exchange="binance") as trades:
            async for trade in trades:
                ...
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timedelta
from typing import Any, AsyncIterator, Awaitable, Callable, Iterable, Sequence, TypeVar

import grpc
import grpc.aio

from .. import _core, errors
from ..errors import VersionConflict
from ..gateway.v1 import gateway_pb2 as pb
from ..gateway.v1 import gateway_pb2_grpc as pb_grpc
from ..state import UNCONDITIONAL_ATTEMPTS, decode, encode
from ..types import Candle, OrderBook, Price, Trade

__all__ = ["GatewayClient", "GatewayStateManager", "TradeStream"]

T = TypeVar("T")


class GatewayClient:
    """An asyncio connection to the gateway; see :class:`moat.GatewayClient`
    for the arguments and the retry policy."""

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
        self._channel = _core.open_channel(grpc.aio, self.settings)
        self._market = pb_grpc.MarketServiceStub(self._channel)
        self._rpc = pb_grpc.RpcServiceStub(self._channel)
        self._state = pb_grpc.StateServiceStub(self._channel)
        #: Calls tried again so far (reads refused with RateLimited or Unavailable).
        self.retries = 0

    async def __aenter__(self) -> GatewayClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._channel.close()

    def __repr__(self) -> str:
        return f"aio.GatewayClient({self.settings.target!r})"

    async def _call(
        self, method: Callable[..., Awaitable[T]], request: Any, *, read: bool, timeout: float | None = None
    ) -> T:
        started = time.monotonic()
        attempt = 0
        while True:
            try:
                return await method(
                    request,
                    timeout=timeout or self.settings.timeout,
                    metadata=_core.metadata(self._auth),
                )
            except grpc.aio.AioRpcError as raw:
                error = errors.from_grpc(raw.code(), raw.details())
            left = self.settings.retry_budget - (time.monotonic() - started)
            delay = _core.retry_delay(error, read=read, attempt=attempt, left=left)
            if delay is None:
                raise error
            self.retries += 1
            await asyncio.sleep(delay)
            attempt += 1

    async def get_price(self, token: str, quote: str = "USD", chain: str | None = None) -> Price:
        answer = await self._call(self._market.GetPrice, _core.price_request(token, quote, chain), read=True)
        return _core.price(answer)

    async def get_prices(
        self, tokens: Iterable[str], quote: str = "USD", chain: str | None = None
    ) -> dict[str, Price]:
        tokens = list(tokens)
        request = pb.GetPricesRequest(requests=[_core.price_request(t, quote, chain) for t in tokens])
        answer = await self._call(self._market.GetPrices, request, read=True)
        return {token: _core.price(p) for token, p in zip(tokens, answer.prices)}

    async def get_order_book(self, exchange: str, symbol: str, depth: int = 20) -> OrderBook:
        request = pb.GetOrderBookRequest(exchange=exchange, symbol=symbol, depth=depth)
        return _core.order_book(await self._call(self._market.GetOrderBook, request, read=True))

    async def get_candles(
        self,
        exchange: str,
        symbol: str,
        interval: str = "1m",
        since: datetime | timedelta | None = None,
        until: datetime | timedelta | None = None,
    ) -> list[Candle]:
        request = _core.candles_request(exchange, symbol, interval, since, until)
        answer = await self._call(self._market.GetCandles, request, read=True)
        return [_core.candle(c) for c in answer.candles]

    def stream_trades(self, exchange: str = "", market: str = "", symbol: str = "") -> TradeStream:
        request = pb.StreamTradesRequest(exchange=exchange, market=market, symbol=symbol)
        return TradeStream(self._market.StreamTrades(request, metadata=_core.metadata(self._auth)))

    async def rpc(self, chain: str, method: str, params: Sequence[Any] | dict[str, Any] | None = None) -> Any:
        request = _core.rpc_request(chain, method, params)
        return _core.rpc_result(await self._call(self._rpc.Call, request, read=_core.rpc_is_read(method)))

    async def rpc_batch(self, chain: str, calls: Iterable[Any]) -> list[Any]:
        request, methods = _core.batch_requests(chain, calls)
        read = all(_core.rpc_is_read(m) for m in methods)
        answer = await self._call(self._rpc.BatchCall, request, read=read)
        return [_core.rpc_outcome(r) for r in answer.responses]

    async def rpc_raw(self, chain: str, method: str, params: Any, *, read: bool | None = None) -> pb.RpcResponse:
        if read is None:
            read = _core.rpc_is_read(method)
        return await self._call(self._rpc.Call, _core.rpc_request(chain, method, params), read=read)

    async def rpc_batch_raw(self, chain: str, calls: Iterable[Any]) -> list[pb.RpcResponse]:
        request, methods = _core.batch_requests(chain, calls)
        read = all(_core.rpc_is_read(m) for m in methods)
        return list((await self._call(self._rpc.BatchCall, request, read=read)).responses)

    def web3_provider(self, chain: str) -> Any:
        """An async web3.py provider: ``await AsyncWeb3(client.web3_provider("ethereum")).eth.block_number``."""
        from .._web3 import AsyncMoatProvider

        return AsyncMoatProvider(self, chain)

    async def _save_state(self, data: bytes, content_type: str, expected_version: int, strategy_id: str | None) -> int:
        request = pb.SaveStateRequest(data=data, expected_version=expected_version, content_type=content_type)
        if strategy_id is not None:
            request.strategy_id = strategy_id
        return (await self._call(self._state.SaveState, request, read=False)).version

    async def _load_state(self, strategy_id: str | None, version: int = 0) -> pb.LoadStateResponse | None:
        request = pb.LoadStateRequest(version=version)
        if strategy_id is not None:
            request.strategy_id = strategy_id
        try:
            return await self._call(self._state.LoadState, request, read=True)
        except errors.NotFound:
            return None

    async def _delete_state(self, strategy_id: str | None) -> int:
        request = pb.DeleteStateRequest()
        if strategy_id is not None:
            request.strategy_id = strategy_id
        return (await self._call(self._state.DeleteState, request, read=False)).deleted_versions


class TradeStream:
    """Live trades from :meth:`GatewayClient.stream_trades`, as an async iterator."""

    def __init__(self, call: Any) -> None:
        self._call = call
        self._closed = False

    def __aiter__(self) -> AsyncIterator[Trade]:
        return self

    async def __anext__(self) -> Trade:
        try:
            message = await self._call.read()
        except asyncio.CancelledError:
            if self._closed:
                raise StopAsyncIteration from None
            raise
        except grpc.aio.AioRpcError as raw:
            if self._closed and raw.code() == grpc.StatusCode.CANCELLED:
                raise StopAsyncIteration from None
            raise errors.from_grpc(raw.code(), raw.details()) from None
        if message is grpc.aio.EOF:
            raise StopAsyncIteration
        return _core.trade(message)

    def close(self) -> None:
        """Ends the stream; iteration then stops."""
        self._closed = True
        self._call.cancel()

    async def __aenter__(self) -> TradeStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()


class GatewayStateManager:
    """The async :class:`moat.GatewayStateManager`."""

    def __init__(self, client: GatewayClient) -> None:
        self.client = client
        self._seen = 0

    async def save(self, data: Any, *, strategy_id: str | None = None, expected_version: int | None = None) -> int:
        raw, content_type = encode(data)
        if expected_version is not None:
            self._seen = await self.client._save_state(raw, content_type, expected_version, strategy_id)
            return self._seen
        guess = self._seen
        for _ in range(UNCONDITIONAL_ATTEMPTS):
            try:
                self._seen = await self.client._save_state(raw, content_type, guess, strategy_id)
                return self._seen
            except VersionConflict as conflict:
                if conflict.current_version is None:
                    raise
                guess = conflict.current_version
        raise VersionConflict(
            f"{UNCONDITIONAL_ATTEMPTS} saves in a row lost the race to other writers of this state; last seen version {guess}"
        )

    async def load(self, *, strategy_id: str | None = None) -> Any:
        return (await self.load_versioned(strategy_id=strategy_id))[0]

    async def load_versioned(self, *, strategy_id: str | None = None) -> tuple[Any, int]:
        loaded = await self.client._load_state(strategy_id)
        if loaded is None:
            return None, 0
        self._seen = loaded.version
        return decode(loaded.data, loaded.content_type), loaded.version

    async def delete(self, *, strategy_id: str | None = None) -> int:
        deleted = await self.client._delete_state(strategy_id)
        self._seen = 0
        return deleted
