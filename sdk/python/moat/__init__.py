"""moat-sdk: the Python client of the moat gateway.

    import moat

    with moat.GatewayClient() as gateway:          # GATEWAY_HOST, GATEWAY_PORT, MOAT_TOKEN
        eth = gateway.get_price("ETH")
        state = moat.GatewayStateManager(gateway)
        state.save({"position": str(eth.price)})

:mod:`moat.aio` has the same API for asyncio.
"""

from . import aio, errors
from .client import GatewayClient, TradeStream
from .errors import (
    Cancelled,
    DeadlineExceeded,
    FailedPrecondition,
    Internal,
    InvalidArgument,
    JsonRpcError,
    MoatError,
    NotFound,
    PermissionDenied,
    RateLimited,
    Unauthenticated,
    Unavailable,
    VersionConflict,
)
from .state import GatewayStateManager
from .types import Candle, FailedSource, OrderBook, Price, PriceSource, Trade

__version__ = "0.1.0"

__all__ = [
    "GatewayClient",
    "GatewayStateManager",
    "TradeStream",
    "Price",
    "PriceSource",
    "FailedSource",
    "OrderBook",
    "Candle",
    "Trade",
    "MoatError",
    "Unauthenticated",
    "PermissionDenied",
    "NotFound",
    "InvalidArgument",
    "FailedPrecondition",
    "VersionConflict",
    "RateLimited",
    "Unavailable",
    "DeadlineExceeded",
    "Cancelled",
    "Internal",
    "JsonRpcError",
    "aio",
    "errors",
]
