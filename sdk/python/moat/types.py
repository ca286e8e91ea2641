"""What the gateway answers, as plain dataclasses.

Prices and quantities are :class:`decimal.Decimal` (the gateway sends exact
decimal strings), timestamps are timezone-aware UTC :class:`datetime`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal

__all__ = ["Price", "PriceSource", "FailedSource", "OrderBook", "Candle", "Trade"]

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def from_micros(us: int) -> datetime:
    """Unix microseconds as an aware UTC datetime, exactly."""
    return _EPOCH + timedelta(microseconds=us)


def from_millis(ms: int) -> datetime:
    return _EPOCH + timedelta(milliseconds=ms)


def stamp(us: int, ms: int) -> datetime:
    """A microsecond field, or its millisecond predecessor when it is 0."""
    return from_micros(us) if us else from_millis(ms)


def to_millis(when: datetime) -> int:
    """An aware datetime (naive ones are taken as UTC) in unix milliseconds."""
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return (when - _EPOCH) // timedelta(milliseconds=1)


@dataclass(frozen=True, slots=True)
class PriceSource:
    """One venue's last trade price that went into (or was left out of) a median."""

    exchange: str
    symbol: str
    price: Decimal
    timestamp: datetime


@dataclass(frozen=True, slots=True)
class FailedSource:
    """A venue that could not give a price, and why."""

    exchange: str
    symbol: str
    reason: str


@dataclass(frozen=True, slots=True)
class Price:
    """The median over fresh sources of ``token`` in ``quote``."""

    token: str
    quote: str
    price: Decimal
    timestamp: datetime
    sources: list[PriceSource] = field(default_factory=list)
    outliers: list[PriceSource] = field(default_factory=list)
    failed: list[FailedSource] = field(default_factory=list)
    #: Share of sources agreeing with the median, 0..1.
    confidence: float = 0.0
    #: No source was fresh: ``price`` is the last known one.
    stale: bool = False


@dataclass(frozen=True, slots=True)
class OrderBook:
    """A venue's book, best level first on each side."""

    exchange: str
    symbol: str
    bids: list[tuple[Decimal, Decimal]]
    asks: list[tuple[Decimal, Decimal]]
    sequence: int
    timestamp: datetime
    #: False while the book is being rebuilt after a gap: do not trade on it.
    valid: bool


@dataclass(frozen=True, slots=True)
class Candle:
    """OHLCV of one interval, from stored trades."""

    exchange: str
    symbol: str
    interval: timedelta
    open_time: datetime
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal
    trades: int
    #: The interval has ended; an open candle can still change.
    closed: bool


@dataclass(frozen=True, slots=True)
class Trade:
    """One trade as the venue reported it; ``side`` is the taker's."""

    exchange: str
    market: str
    symbol: str
    trade_id: str
    price: Decimal
    quantity: Decimal
    #: ``"buy"``, ``"sell"``, or ``None`` when the venue does not say.
    side: str | None
    timestamp: datetime
    received: datetime
