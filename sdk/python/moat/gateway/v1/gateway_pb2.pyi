from moat.marketdata.v1 import marketdata_pb2 as _marketdata_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class GetPriceRequest(_message.Message):
    __slots__ = ("token", "quote", "chain")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    QUOTE_FIELD_NUMBER: _ClassVar[int]
    CHAIN_FIELD_NUMBER: _ClassVar[int]
    token: str
    quote: str
    chain: str
    def __init__(self, token: _Optional[str] = ..., quote: _Optional[str] = ..., chain: _Optional[str] = ...) -> None: ...

class PriceSource(_message.Message):
    __slots__ = ("exchange", "symbol", "price", "ts_ms")
    EXCHANGE_FIELD_NUMBER: _ClassVar[int]
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    PRICE_FIELD_NUMBER: _ClassVar[int]
    TS_MS_FIELD_NUMBER: _ClassVar[int]
    exchange: str
    symbol: str
    price: str
    ts_ms: int
    def __init__(self, exchange: _Optional[str] = ..., symbol: _Optional[str] = ..., price: _Optional[str] = ..., ts_ms: _Optional[int] = ...) -> None: ...

class FailedSource(_message.Message):
    __slots__ = ("exchange", "symbol", "reason")
    EXCHANGE_FIELD_NUMBER: _ClassVar[int]
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    exchange: str
    symbol: str
    reason: str
    def __init__(self, exchange: _Optional[str] = ..., symbol: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class Price(_message.Message):
    __slots__ = ("token", "quote", "price", "ts_ms", "sources", "failed", "outliers", "confidence", "stale")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    QUOTE_FIELD_NUMBER: _ClassVar[int]
    PRICE_FIELD_NUMBER: _ClassVar[int]
    TS_MS_FIELD_NUMBER: _ClassVar[int]
    SOURCES_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    OUTLIERS_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    STALE_FIELD_NUMBER: _ClassVar[int]
    token: str
    quote: str
    price: str
    ts_ms: int
    sources: _containers.RepeatedCompositeFieldContainer[PriceSource]
    failed: _containers.RepeatedCompositeFieldContainer[FailedSource]
    outliers: _containers.RepeatedCompositeFieldContainer[PriceSource]
    confidence: float
    stale: bool
    def __init__(self, token: _Optional[str] = ..., quote: _Optional[str] = ..., price: _Optional[str] = ..., ts_ms: _Optional[int] = ..., sources: _Optional[_Iterable[_Union[PriceSource, _Mapping]]] = ..., failed: _Optional[_Iterable[_Union[FailedSource, _Mapping]]] = ..., outliers: _Optional[_Iterable[_Union[PriceSource, _Mapping]]] = ..., confidence: _Optional[float] = ..., stale: _Optional[bool] = ...) -> None: ...

class GetPricesRequest(_message.Message):
    __slots__ = ("requests",)
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    requests: _containers.RepeatedCompositeFieldContainer[GetPriceRequest]
    def __init__(self, requests: _Optional[_Iterable[_Union[GetPriceRequest, _Mapping]]] = ...) -> None: ...

class GetPricesResponse(_message.Message):
    __slots__ = ("prices",)
    PRICES_FIELD_NUMBER: _ClassVar[int]
    prices: _containers.RepeatedCompositeFieldContainer[Price]
    def __init__(self, prices: _Optional[_Iterable[_Union[Price, _Mapping]]] = ...) -> None: ...

class GetOrderBookRequest(_message.Message):
    __slots__ = ("exchange", "symbol", "depth")
    EXCHANGE_FIELD_NUMBER: _ClassVar[int]
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    DEPTH_FIELD_NUMBER: _ClassVar[int]
    exchange: str
    symbol: str
    depth: int
    def __init__(self, exchange: _Optional[str] = ..., symbol: _Optional[str] = ..., depth: _Optional[int] = ...) -> None: ...

class OrderBook(_message.Message):
    __slots__ = ("exchange", "symbol", "sequence", "bids", "asks", "ts_ms", "valid")
    EXCHANGE_FIELD_NUMBER: _ClassVar[int]
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    BIDS_FIELD_NUMBER: _ClassVar[int]
    ASKS_FIELD_NUMBER: _ClassVar[int]
    TS_MS_FIELD_NUMBER: _ClassVar[int]
    VALID_FIELD_NUMBER: _ClassVar[int]
    exchange: str
    symbol: str
    sequence: int
    bids: _containers.RepeatedCompositeFieldContainer[_marketdata_pb2.Level]
    asks: _containers.RepeatedCompositeFieldContainer[_marketdata_pb2.Level]
    ts_ms: int
    valid: bool
    def __init__(self, exchange: _Optional[str] = ..., symbol: _Optional[str] = ..., sequence: _Optional[int] = ..., bids: _Optional[_Iterable[_Union[_marketdata_pb2.Level, _Mapping]]] = ..., asks: _Optional[_Iterable[_Union[_marketdata_pb2.Level, _Mapping]]] = ..., ts_ms: _Optional[int] = ..., valid: _Optional[bool] = ...) -> None: ...

class GetCandlesRequest(_message.Message):
    __slots__ = ("exchange", "symbol", "interval", "from_ms", "to_ms")
    EXCHANGE_FIELD_NUMBER: _ClassVar[int]
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    INTERVAL_FIELD_NUMBER: _ClassVar[int]
    FROM_MS_FIELD_NUMBER: _ClassVar[int]
    TO_MS_FIELD_NUMBER: _ClassVar[int]
    exchange: str
    symbol: str
    interval: str
    from_ms: int
    to_ms: int
    def __init__(self, exchange: _Optional[str] = ..., symbol: _Optional[str] = ..., interval: _Optional[str] = ..., from_ms: _Optional[int] = ..., to_ms: _Optional[int] = ...) -> None: ...

class GetCandlesResponse(_message.Message):
    __slots__ = ("candles",)
    CANDLES_FIELD_NUMBER: _ClassVar[int]
    candles: _containers.RepeatedCompositeFieldContainer[_marketdata_pb2.Candle]
    def __init__(self, candles: _Optional[_Iterable[_Union[_marketdata_pb2.Candle, _Mapping]]] = ...) -> None: ...

class StreamTradesRequest(_message.Message):
    __slots__ = ("exchange", "market", "symbol")
    EXCHANGE_FIELD_NUMBER: _ClassVar[int]
    MARKET_FIELD_NUMBER: _ClassVar[int]
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    exchange: str
    market: str
    symbol: str
    def __init__(self, exchange: _Optional[str] = ..., market: _Optional[str] = ..., symbol: _Optional[str] = ...) -> None: ...

class RpcRequest(_message.Message):
    __slots__ = ("chain", "method", "params_json")
    CHAIN_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    PARAMS_JSON_FIELD_NUMBER: _ClassVar[int]
    chain: str
    method: str
    params_json: str
    def __init__(self, chain: _Optional[str] = ..., method: _Optional[str] = ..., params_json: _Optional[str] = ...) -> None: ...

class RpcError(_message.Message):
    __slots__ = ("code", "message", "data_json")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    DATA_JSON_FIELD_NUMBER: _ClassVar[int]
    code: int
    message: str
    data_json: str
    def __init__(self, code: _Optional[int] = ..., message: _Optional[str] = ..., data_json: _Optional[str] = ...) -> None: ...

class RpcResponse(_message.Message):
    __slots__ = ("result_json", "error")
    RESULT_JSON_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    result_json: str
    error: RpcError
    def __init__(self, result_json: _Optional[str] = ..., error: _Optional[_Union[RpcError, _Mapping]] = ...) -> None: ...

class BatchRpcRequest(_message.Message):
    __slots__ = ("requests",)
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    requests: _containers.RepeatedCompositeFieldContainer[RpcRequest]
    def __init__(self, requests: _Optional[_Iterable[_Union[RpcRequest, _Mapping]]] = ...) -> None: ...

class BatchRpcResponse(_message.Message):
    __slots__ = ("responses",)
    RESPONSES_FIELD_NUMBER: _ClassVar[int]
    responses: _containers.RepeatedCompositeFieldContainer[RpcResponse]
    def __init__(self, responses: _Optional[_Iterable[_Union[RpcResponse, _Mapping]]] = ...) -> None: ...

class SaveStateRequest(_message.Message):
    __slots__ = ("data", "expected_version", "strategy_id", "content_type")
    DATA_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_VERSION_FIELD_NUMBER: _ClassVar[int]
    STRATEGY_ID_FIELD_NUMBER: _ClassVar[int]
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    expected_version: int
    strategy_id: str
    content_type: str
    def __init__(self, data: _Optional[bytes] = ..., expected_version: _Optional[int] = ..., strategy_id: _Optional[str] = ..., content_type: _Optional[str] = ...) -> None: ...

class SaveStateResponse(_message.Message):
    __slots__ = ("version", "sha256")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    version: int
    sha256: str
    def __init__(self, version: _Optional[int] = ..., sha256: _Optional[str] = ...) -> None: ...

class LoadStateRequest(_message.Message):
    __slots__ = ("version", "strategy_id")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    STRATEGY_ID_FIELD_NUMBER: _ClassVar[int]
    version: int
    strategy_id: str
    def __init__(self, version: _Optional[int] = ..., strategy_id: _Optional[str] = ...) -> None: ...

class LoadStateResponse(_message.Message):
    __slots__ = ("version", "data", "sha256", "saved_at_ms", "content_type")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    SAVED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    version: int
    data: bytes
    sha256: str
    saved_at_ms: int
    content_type: str
    def __init__(self, version: _Optional[int] = ..., data: _Optional[bytes] = ..., sha256: _Optional[str] = ..., saved_at_ms: _Optional[int] = ..., content_type: _Optional[str] = ...) -> None: ...

class DeleteStateRequest(_message.Message):
    __slots__ = ("strategy_id",)
    STRATEGY_ID_FIELD_NUMBER: _ClassVar[int]
    strategy_id: str
    def __init__(self, strategy_id: _Optional[str] = ...) -> None: ...

class DeleteStateResponse(_message.Message):
    __slots__ = ("deleted_versions",)
    DELETED_VERSIONS_FIELD_NUMBER: _ClassVar[int]
    deleted_versions: int
    def __init__(self, deleted_versions: _Optional[int] = ...) -> None: ...
