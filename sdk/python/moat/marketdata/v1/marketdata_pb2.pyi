from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Market(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MARKET_UNSPECIFIED: _ClassVar[Market]
    MARKET_SPOT: _ClassVar[Market]
    MARKET_PERP: _ClassVar[Market]
    MARKET_FUTURE: _ClassVar[Market]
    MARKET_OPTION: _ClassVar[Market]

class OptionRight(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    OPTION_RIGHT_UNSPECIFIED: _ClassVar[OptionRight]
    OPTION_RIGHT_CALL: _ClassVar[OptionRight]
    OPTION_RIGHT_PUT: _ClassVar[OptionRight]

class Side(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SIDE_UNSPECIFIED: _ClassVar[Side]
    SIDE_BUY: _ClassVar[Side]
    SIDE_SELL: _ClassVar[Side]
MARKET_UNSPECIFIED: Market
MARKET_SPOT: Market
MARKET_PERP: Market
MARKET_FUTURE: Market
MARKET_OPTION: Market
OPTION_RIGHT_UNSPECIFIED: OptionRight
OPTION_RIGHT_CALL: OptionRight
OPTION_RIGHT_PUT: OptionRight
SIDE_UNSPECIFIED: Side
SIDE_BUY: Side
SIDE_SELL: Side

class OptionContract(_message.Message):
    __slots__ = ("expiry", "strike", "right", "settlement_currency")
    EXPIRY_FIELD_NUMBER: _ClassVar[int]
    STRIKE_FIELD_NUMBER: _ClassVar[int]
    RIGHT_FIELD_NUMBER: _ClassVar[int]
    SETTLEMENT_CURRENCY_FIELD_NUMBER: _ClassVar[int]
    expiry: str
    strike: str
    right: OptionRight
    settlement_currency: str
    def __init__(self, expiry: _Optional[str] = ..., strike: _Optional[str] = ..., right: _Optional[_Union[OptionRight, str]] = ..., settlement_currency: _Optional[str] = ...) -> None: ...

class Instrument(_message.Message):
    __slots__ = ("exchange", "market", "symbol", "venue_symbol", "option")
    EXCHANGE_FIELD_NUMBER: _ClassVar[int]
    MARKET_FIELD_NUMBER: _ClassVar[int]
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    VENUE_SYMBOL_FIELD_NUMBER: _ClassVar[int]
    OPTION_FIELD_NUMBER: _ClassVar[int]
    exchange: str
    market: Market
    symbol: str
    venue_symbol: str
    option: OptionContract
    def __init__(self, exchange: _Optional[str] = ..., market: _Optional[_Union[Market, str]] = ..., symbol: _Optional[str] = ..., venue_symbol: _Optional[str] = ..., option: _Optional[_Union[OptionContract, _Mapping]] = ...) -> None: ...

class Trade(_message.Message):
    __slots__ = ("instrument", "trade_id", "price", "qty", "side", "ts_exchange_ms", "ts_recv_ms", "ts_exchange_us", "ts_recv_us")
    INSTRUMENT_FIELD_NUMBER: _ClassVar[int]
    TRADE_ID_FIELD_NUMBER: _ClassVar[int]
    PRICE_FIELD_NUMBER: _ClassVar[int]
    QTY_FIELD_NUMBER: _ClassVar[int]
    SIDE_FIELD_NUMBER: _ClassVar[int]
    TS_EXCHANGE_MS_FIELD_NUMBER: _ClassVar[int]
    TS_RECV_MS_FIELD_NUMBER: _ClassVar[int]
    TS_EXCHANGE_US_FIELD_NUMBER: _ClassVar[int]
    TS_RECV_US_FIELD_NUMBER: _ClassVar[int]
    instrument: Instrument
    trade_id: str
    price: str
    qty: str
    side: Side
    ts_exchange_ms: int
    ts_recv_ms: int
    ts_exchange_us: int
    ts_recv_us: int
    def __init__(self, instrument: _Optional[_Union[Instrument, _Mapping]] = ..., trade_id: _Optional[str] = ..., price: _Optional[str] = ..., qty: _Optional[str] = ..., side: _Optional[_Union[Side, str]] = ..., ts_exchange_ms: _Optional[int] = ..., ts_recv_ms: _Optional[int] = ..., ts_exchange_us: _Optional[int] = ..., ts_recv_us: _Optional[int] = ...) -> None: ...

class Level(_message.Message):
    __slots__ = ("price", "qty")
    PRICE_FIELD_NUMBER: _ClassVar[int]
    QTY_FIELD_NUMBER: _ClassVar[int]
    price: str
    qty: str
    def __init__(self, price: _Optional[str] = ..., qty: _Optional[str] = ...) -> None: ...

class BookSnapshot(_message.Message):
    __slots__ = ("instrument", "sequence", "bids", "asks", "ts_exchange_ms", "ts_recv_ms", "ts_exchange_us", "ts_recv_us")
    INSTRUMENT_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    BIDS_FIELD_NUMBER: _ClassVar[int]
    ASKS_FIELD_NUMBER: _ClassVar[int]
    TS_EXCHANGE_MS_FIELD_NUMBER: _ClassVar[int]
    TS_RECV_MS_FIELD_NUMBER: _ClassVar[int]
    TS_EXCHANGE_US_FIELD_NUMBER: _ClassVar[int]
    TS_RECV_US_FIELD_NUMBER: _ClassVar[int]
    instrument: Instrument
    sequence: int
    bids: _containers.RepeatedCompositeFieldContainer[Level]
    asks: _containers.RepeatedCompositeFieldContainer[Level]
    ts_exchange_ms: int
    ts_recv_ms: int
    ts_exchange_us: int
    ts_recv_us: int
    def __init__(self, instrument: _Optional[_Union[Instrument, _Mapping]] = ..., sequence: _Optional[int] = ..., bids: _Optional[_Iterable[_Union[Level, _Mapping]]] = ..., asks: _Optional[_Iterable[_Union[Level, _Mapping]]] = ..., ts_exchange_ms: _Optional[int] = ..., ts_recv_ms: _Optional[int] = ..., ts_exchange_us: _Optional[int] = ..., ts_recv_us: _Optional[int] = ...) -> None: ...

class BookDelta(_message.Message):
    __slots__ = ("instrument", "first_sequence", "sequence", "prev_sequence", "bids", "asks", "ts_exchange_ms", "ts_recv_ms", "ts_exchange_us", "ts_recv_us")
    INSTRUMENT_FIELD_NUMBER: _ClassVar[int]
    FIRST_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    PREV_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    BIDS_FIELD_NUMBER: _ClassVar[int]
    ASKS_FIELD_NUMBER: _ClassVar[int]
    TS_EXCHANGE_MS_FIELD_NUMBER: _ClassVar[int]
    TS_RECV_MS_FIELD_NUMBER: _ClassVar[int]
    TS_EXCHANGE_US_FIELD_NUMBER: _ClassVar[int]
    TS_RECV_US_FIELD_NUMBER: _ClassVar[int]
    instrument: Instrument
    first_sequence: int
    sequence: int
    prev_sequence: int
    bids: _containers.RepeatedCompositeFieldContainer[Level]
    asks: _containers.RepeatedCompositeFieldContainer[Level]
    ts_exchange_ms: int
    ts_recv_ms: int
    ts_exchange_us: int
    ts_recv_us: int
    def __init__(self, instrument: _Optional[_Union[Instrument, _Mapping]] = ..., first_sequence: _Optional[int] = ..., sequence: _Optional[int] = ..., prev_sequence: _Optional[int] = ..., bids: _Optional[_Iterable[_Union[Level, _Mapping]]] = ..., asks: _Optional[_Iterable[_Union[Level, _Mapping]]] = ..., ts_exchange_ms: _Optional[int] = ..., ts_recv_ms: _Optional[int] = ..., ts_exchange_us: _Optional[int] = ..., ts_recv_us: _Optional[int] = ...) -> None: ...

class Bbo(_message.Message):
    __slots__ = ("instrument", "sequence", "bid_price", "bid_qty", "ask_price", "ask_qty", "ts_exchange_ms", "ts_recv_ms", "ts_exchange_us", "ts_recv_us")
    INSTRUMENT_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    BID_PRICE_FIELD_NUMBER: _ClassVar[int]
    BID_QTY_FIELD_NUMBER: _ClassVar[int]
    ASK_PRICE_FIELD_NUMBER: _ClassVar[int]
    ASK_QTY_FIELD_NUMBER: _ClassVar[int]
    TS_EXCHANGE_MS_FIELD_NUMBER: _ClassVar[int]
    TS_RECV_MS_FIELD_NUMBER: _ClassVar[int]
    TS_EXCHANGE_US_FIELD_NUMBER: _ClassVar[int]
    TS_RECV_US_FIELD_NUMBER: _ClassVar[int]
    instrument: Instrument
    sequence: int
    bid_price: str
    bid_qty: str
    ask_price: str
    ask_qty: str
    ts_exchange_ms: int
    ts_recv_ms: int
    ts_exchange_us: int
    ts_recv_us: int
    def __init__(self, instrument: _Optional[_Union[Instrument, _Mapping]] = ..., sequence: _Optional[int] = ..., bid_price: _Optional[str] = ..., bid_qty: _Optional[str] = ..., ask_price: _Optional[str] = ..., ask_qty: _Optional[str] = ..., ts_exchange_ms: _Optional[int] = ..., ts_recv_ms: _Optional[int] = ..., ts_exchange_us: _Optional[int] = ..., ts_recv_us: _Optional[int] = ...) -> None: ...

class Funding(_message.Message):
    __slots__ = ("instrument", "funding_rate", "mark_price", "index_price", "next_funding_ms", "ts_exchange_ms", "ts_recv_ms", "ts_exchange_us", "ts_recv_us")
    INSTRUMENT_FIELD_NUMBER: _ClassVar[int]
    FUNDING_RATE_FIELD_NUMBER: _ClassVar[int]
    MARK_PRICE_FIELD_NUMBER: _ClassVar[int]
    INDEX_PRICE_FIELD_NUMBER: _ClassVar[int]
    NEXT_FUNDING_MS_FIELD_NUMBER: _ClassVar[int]
    TS_EXCHANGE_MS_FIELD_NUMBER: _ClassVar[int]
    TS_RECV_MS_FIELD_NUMBER: _ClassVar[int]
    TS_EXCHANGE_US_FIELD_NUMBER: _ClassVar[int]
    TS_RECV_US_FIELD_NUMBER: _ClassVar[int]
    instrument: Instrument
    funding_rate: str
    mark_price: str
    index_price: str
    next_funding_ms: int
    ts_exchange_ms: int
    ts_recv_ms: int
    ts_exchange_us: int
    ts_recv_us: int
    def __init__(self, instrument: _Optional[_Union[Instrument, _Mapping]] = ..., funding_rate: _Optional[str] = ..., mark_price: _Optional[str] = ..., index_price: _Optional[str] = ..., next_funding_ms: _Optional[int] = ..., ts_exchange_ms: _Optional[int] = ..., ts_recv_ms: _Optional[int] = ..., ts_exchange_us: _Optional[int] = ..., ts_recv_us: _Optional[int] = ...) -> None: ...

class Liquidation(_message.Message):
    __slots__ = ("instrument", "side", "price", "qty", "order_id", "ts_exchange_ms", "ts_recv_ms", "ts_exchange_us", "ts_recv_us")
    INSTRUMENT_FIELD_NUMBER: _ClassVar[int]
    SIDE_FIELD_NUMBER: _ClassVar[int]
    PRICE_FIELD_NUMBER: _ClassVar[int]
    QTY_FIELD_NUMBER: _ClassVar[int]
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    TS_EXCHANGE_MS_FIELD_NUMBER: _ClassVar[int]
    TS_RECV_MS_FIELD_NUMBER: _ClassVar[int]
    TS_EXCHANGE_US_FIELD_NUMBER: _ClassVar[int]
    TS_RECV_US_FIELD_NUMBER: _ClassVar[int]
    instrument: Instrument
    side: Side
    price: str
    qty: str
    order_id: str
    ts_exchange_ms: int
    ts_recv_ms: int
    ts_exchange_us: int
    ts_recv_us: int
    def __init__(self, instrument: _Optional[_Union[Instrument, _Mapping]] = ..., side: _Optional[_Union[Side, str]] = ..., price: _Optional[str] = ..., qty: _Optional[str] = ..., order_id: _Optional[str] = ..., ts_exchange_ms: _Optional[int] = ..., ts_recv_ms: _Optional[int] = ..., ts_exchange_us: _Optional[int] = ..., ts_recv_us: _Optional[int] = ...) -> None: ...

class OpenInterest(_message.Message):
    __slots__ = ("instrument", "open_interest", "ts_exchange_ms", "ts_recv_ms", "ts_exchange_us", "ts_recv_us")
    INSTRUMENT_FIELD_NUMBER: _ClassVar[int]
    OPEN_INTEREST_FIELD_NUMBER: _ClassVar[int]
    TS_EXCHANGE_MS_FIELD_NUMBER: _ClassVar[int]
    TS_RECV_MS_FIELD_NUMBER: _ClassVar[int]
    TS_EXCHANGE_US_FIELD_NUMBER: _ClassVar[int]
    TS_RECV_US_FIELD_NUMBER: _ClassVar[int]
    instrument: Instrument
    open_interest: str
    ts_exchange_ms: int
    ts_recv_ms: int
    ts_exchange_us: int
    ts_recv_us: int
    def __init__(self, instrument: _Optional[_Union[Instrument, _Mapping]] = ..., open_interest: _Optional[str] = ..., ts_exchange_ms: _Optional[int] = ..., ts_recv_ms: _Optional[int] = ..., ts_exchange_us: _Optional[int] = ..., ts_recv_us: _Optional[int] = ...) -> None: ...

class OptionTicker(_message.Message):
    __slots__ = ("instrument", "mark_price", "mark_iv", "bid_iv", "ask_iv", "underlying_price", "delta", "gamma", "vega", "theta", "rho", "ts_exchange_us", "ts_recv_us")
    INSTRUMENT_FIELD_NUMBER: _ClassVar[int]
    MARK_PRICE_FIELD_NUMBER: _ClassVar[int]
    MARK_IV_FIELD_NUMBER: _ClassVar[int]
    BID_IV_FIELD_NUMBER: _ClassVar[int]
    ASK_IV_FIELD_NUMBER: _ClassVar[int]
    UNDERLYING_PRICE_FIELD_NUMBER: _ClassVar[int]
    DELTA_FIELD_NUMBER: _ClassVar[int]
    GAMMA_FIELD_NUMBER: _ClassVar[int]
    VEGA_FIELD_NUMBER: _ClassVar[int]
    THETA_FIELD_NUMBER: _ClassVar[int]
    RHO_FIELD_NUMBER: _ClassVar[int]
    TS_EXCHANGE_US_FIELD_NUMBER: _ClassVar[int]
    TS_RECV_US_FIELD_NUMBER: _ClassVar[int]
    instrument: Instrument
    mark_price: str
    mark_iv: str
    bid_iv: str
    ask_iv: str
    underlying_price: str
    delta: str
    gamma: str
    vega: str
    theta: str
    rho: str
    ts_exchange_us: int
    ts_recv_us: int
    def __init__(self, instrument: _Optional[_Union[Instrument, _Mapping]] = ..., mark_price: _Optional[str] = ..., mark_iv: _Optional[str] = ..., bid_iv: _Optional[str] = ..., ask_iv: _Optional[str] = ..., underlying_price: _Optional[str] = ..., delta: _Optional[str] = ..., gamma: _Optional[str] = ..., vega: _Optional[str] = ..., theta: _Optional[str] = ..., rho: _Optional[str] = ..., ts_exchange_us: _Optional[int] = ..., ts_recv_us: _Optional[int] = ...) -> None: ...

class Candle(_message.Message):
    __slots__ = ("instrument", "interval_s", "open_time_ms", "open", "high", "low", "close", "volume", "trades", "closed", "ts_recv_ms", "ts_recv_us")
    INSTRUMENT_FIELD_NUMBER: _ClassVar[int]
    INTERVAL_S_FIELD_NUMBER: _ClassVar[int]
    OPEN_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    OPEN_FIELD_NUMBER: _ClassVar[int]
    HIGH_FIELD_NUMBER: _ClassVar[int]
    LOW_FIELD_NUMBER: _ClassVar[int]
    CLOSE_FIELD_NUMBER: _ClassVar[int]
    VOLUME_FIELD_NUMBER: _ClassVar[int]
    TRADES_FIELD_NUMBER: _ClassVar[int]
    CLOSED_FIELD_NUMBER: _ClassVar[int]
    TS_RECV_MS_FIELD_NUMBER: _ClassVar[int]
    TS_RECV_US_FIELD_NUMBER: _ClassVar[int]
    instrument: Instrument
    interval_s: int
    open_time_ms: int
    open: str
    high: str
    low: str
    close: str
    volume: str
    trades: int
    closed: bool
    ts_recv_ms: int
    ts_recv_us: int
    def __init__(self, instrument: _Optional[_Union[Instrument, _Mapping]] = ..., interval_s: _Optional[int] = ..., open_time_ms: _Optional[int] = ..., open: _Optional[str] = ..., high: _Optional[str] = ..., low: _Optional[str] = ..., close: _Optional[str] = ..., volume: _Optional[str] = ..., trades: _Optional[int] = ..., closed: _Optional[bool] = ..., ts_recv_ms: _Optional[int] = ..., ts_recv_us: _Optional[int] = ...) -> None: ...

class Gap(_message.Message):
    __slots__ = ("instrument", "reason", "last_sequence", "ts_recv_ms", "ts_recv_us")
    INSTRUMENT_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    LAST_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    TS_RECV_MS_FIELD_NUMBER: _ClassVar[int]
    TS_RECV_US_FIELD_NUMBER: _ClassVar[int]
    instrument: Instrument
    reason: str
    last_sequence: int
    ts_recv_ms: int
    ts_recv_us: int
    def __init__(self, instrument: _Optional[_Union[Instrument, _Mapping]] = ..., reason: _Optional[str] = ..., last_sequence: _Optional[int] = ..., ts_recv_ms: _Optional[int] = ..., ts_recv_us: _Optional[int] = ...) -> None: ...

class MarketEvent(_message.Message):
    __slots__ = ("trade", "book_snapshot", "book_delta", "bbo", "funding", "liquidation", "open_interest", "candle", "gap", "option_ticker")
    TRADE_FIELD_NUMBER: _ClassVar[int]
    BOOK_SNAPSHOT_FIELD_NUMBER: _ClassVar[int]
    BOOK_DELTA_FIELD_NUMBER: _ClassVar[int]
    BBO_FIELD_NUMBER: _ClassVar[int]
    FUNDING_FIELD_NUMBER: _ClassVar[int]
    LIQUIDATION_FIELD_NUMBER: _ClassVar[int]
    OPEN_INTEREST_FIELD_NUMBER: _ClassVar[int]
    CANDLE_FIELD_NUMBER: _ClassVar[int]
    GAP_FIELD_NUMBER: _ClassVar[int]
    OPTION_TICKER_FIELD_NUMBER: _ClassVar[int]
    trade: Trade
    book_snapshot: BookSnapshot
    book_delta: BookDelta
    bbo: Bbo
    funding: Funding
    liquidation: Liquidation
    open_interest: OpenInterest
    candle: Candle
    gap: Gap
    option_ticker: OptionTicker
    def __init__(self, trade: _Optional[_Union[Trade, _Mapping]] = ..., book_snapshot: _Optional[_Union[BookSnapshot, _Mapping]] = ..., book_delta: _Optional[_Union[BookDelta, _Mapping]] = ..., bbo: _Optional[_Union[Bbo, _Mapping]] = ..., funding: _Optional[_Union[Funding, _Mapping]] = ..., liquidation: _Optional[_Union[Liquidation, _Mapping]] = ..., open_interest: _Optional[_Union[OpenInterest, _Mapping]] = ..., candle: _Optional[_Union[Candle, _Mapping]] = ..., gap: _Optional[_Union[Gap, _Mapping]] = ..., option_ticker: _Optional[_Union[OptionTicker, _Mapping]] = ...) -> None: ...

class EventBatch(_message.Message):
    __slots__ = ("events",)
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[MarketEvent]
    def __init__(self, events: _Optional[_Iterable[_Union[MarketEvent, _Mapping]]] = ...) -> None: ...
