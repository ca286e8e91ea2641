"""web3.py providers that send JSON-RPC through the gateway's gRPC
``RpcService`` with the client's token (needs ``moat-sdk[web3]``)."""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING, Any

from web3.providers.async_base import AsyncJSONBaseProvider
from web3.providers.base import JSONBaseProvider

from . import _core, errors

if TYPE_CHECKING:
    from .aio import GatewayClient as AsyncGatewayClient
    from .client import GatewayClient

__all__ = ["MoatProvider", "AsyncMoatProvider"]


class MoatProvider(JSONBaseProvider):
    """``Web3(MoatProvider(client, "ethereum"))``."""

    def __init__(self, client: GatewayClient, chain: str) -> None:
        super().__init__()
        self.client = client
        self.chain = chain
        self._ids = itertools.count(1)

    def __repr__(self) -> str:
        return f"<MoatProvider {self.chain} via {self.client.settings.target}>"

    def make_request(self, method: Any, params: Any) -> Any:
        response = self.client.rpc_raw(self.chain, str(method), list(params or []))
        return _core.rpc_envelope(response, next(self._ids))

    def make_batch_request(self, requests: Any) -> Any:
        calls = [(str(method), list(params or [])) for method, params in requests]
        return [_core.rpc_envelope(r, next(self._ids)) for r in self.client.rpc_batch_raw(self.chain, calls)]

    def is_connected(self, show_traceback: bool = False) -> bool:
        try:
            self.client.rpc(self.chain, "eth_chainId")
            return True
        except errors.MoatError:
            if show_traceback:
                raise
            return False


class AsyncMoatProvider(AsyncJSONBaseProvider):
    """``AsyncWeb3(AsyncMoatProvider(client, "ethereum"))``."""

    def __init__(self, client: AsyncGatewayClient, chain: str) -> None:
        super().__init__()
        self.client = client
        self.chain = chain
        self._ids = itertools.count(1)

    def __repr__(self) -> str:
        return f"<AsyncMoatProvider {self.chain} via {self.client.settings.target}>"

    async def make_request(self, method: Any, params: Any) -> Any:
        response = await self.client.rpc_raw(self.chain, str(method), list(params or []))
        return _core.rpc_envelope(response, next(self._ids))

    async def make_batch_request(self, requests: Any) -> Any:
        calls = [(str(method), list(params or [])) for method, params in requests]
        responses = await self.client.rpc_batch_raw(self.chain, calls)
        return [_core.rpc_envelope(r, next(self._ids)) for r in responses]

    async def is_connected(self, show_traceback: bool = False) -> bool:
        try:
            await self.client.rpc(self.chain, "eth_chainId")
            return True
        except errors.MoatError:
            if show_traceback:
                raise
            return False
