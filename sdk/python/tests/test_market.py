"""Market data through the synchronous client against the real gateway."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import moat


def test_get_price_is_a_fresh_decimal_median(client: moat.GatewayClient, live) -> None:
    price = client.get_price(live.asset)
    assert isinstance(price, moat.Price)
    assert (price.token, price.quote) == (live.asset, "USD")
    assert isinstance(price.price, Decimal) and price.price > 0
    assert price.timestamp.tzinfo is not None
    assert datetime.now(timezone.utc) - price.timestamp < timedelta(seconds=30)
    assert not price.stale
    assert 0.0 < price.confidence <= 1.0
    assert any(s.exchange == live.exchange for s in price.sources), price.sources
    assert all(isinstance(s.price, Decimal) for s in price.sources)


def test_get_prices_answers_by_token(client: moat.GatewayClient, live) -> None:
    prices = client.get_prices([live.asset, "ETH"])
    assert list(prices) == [live.asset, "ETH"]
    assert prices["ETH"].token == "ETH" and prices["ETH"].price > 0
    assert prices[live.asset].price > prices["ETH"].price  # BTC above ETH on the local exchange


def test_get_order_book_is_sorted_and_uncrossed(client: moat.GatewayClient, live) -> None:
    book = client.get_order_book(live.exchange, live.symbol, depth=5)
    assert (book.exchange, book.symbol) == (live.exchange, live.symbol)
    assert book.valid
    assert 0 < len(book.bids) <= 5 and 0 < len(book.asks) <= 5
    for price, quantity in book.bids + book.asks:
        assert isinstance(price, Decimal) and isinstance(quantity, Decimal) and quantity > 0
    bid_prices = [p for p, _ in book.bids]
    ask_prices = [p for p, _ in book.asks]
    assert bid_prices == sorted(bid_prices, reverse=True)
    assert ask_prices == sorted(ask_prices)
    assert bid_prices[0] < ask_prices[0]
    assert book.sequence > 0


def _candles_appear(client: moat.GatewayClient, live, **kwargs) -> list[moat.Candle]:
    deadline = time.monotonic() + 30
    while True:
        candles = client.get_candles(live.exchange, live.symbol, **kwargs)
        if candles or time.monotonic() > deadline:
            return candles
        time.sleep(0.5)


def test_get_candles_takes_a_timedelta_or_datetimes(client: moat.GatewayClient, live) -> None:
    candles = _candles_appear(client, live, since=timedelta(hours=1))
    assert candles, "no candles within 30 s of trades flowing"
    last = candles[-1]
    assert (last.exchange, last.symbol, last.interval) == (live.exchange, live.symbol, timedelta(minutes=1))
    assert last.low <= last.open <= last.high and last.low <= last.close <= last.high
    assert last.trades > 0 and last.volume > 0
    assert last.open_time.tzinfo is not None and last.open_time.second == 0
    now = datetime.now(timezone.utc)
    assert now - timedelta(hours=1) - timedelta(minutes=1) <= candles[0].open_time <= now

    # The same span as datetimes; and a window that ended before any trade is empty.
    same = client.get_candles(live.exchange, live.symbol, "1m", since=now - timedelta(hours=1), until=now)
    assert [c.open_time for c in same][: len(candles) - 1] == [c.open_time for c in candles][: len(candles) - 1]
    assert client.get_candles(live.exchange, live.symbol, since=timedelta(days=2), until=timedelta(days=1)) == []
    # Default: the last 500 intervals.
    assert client.get_candles(live.exchange, live.symbol, "5m")[-1].interval == timedelta(minutes=5)


def test_stream_trades_yields_live_trades_and_closes(client: moat.GatewayClient, live) -> None:
    started = datetime.now(timezone.utc)
    with client.stream_trades(exchange=live.exchange, symbol=live.symbol) as trades:
        seen = []
        for trade in trades:
            seen.append(trade)
            if len(seen) == 3:
                break
    assert all(isinstance(t, moat.Trade) for t in seen)
    for t in seen:
        assert (t.exchange, t.symbol, t.market) == (live.exchange, live.symbol, "spot")
        assert t.side in ("buy", "sell")
        assert t.price > 0 and t.quantity > 0
        assert t.timestamp >= started - timedelta(seconds=5)
    # Closed: iterating again ends at once instead of waiting for trades.
    assert list(trades) == []
