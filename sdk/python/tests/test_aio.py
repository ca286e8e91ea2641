"""The asyncio client against the real gateway."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from decimal import Decimal

import pytest

import moat


def test_async_market_data(live) -> None:
    async def run() -> None:
        async with moat.aio.GatewayClient() as client:
            price = await client.get_price(live.asset)
            assert isinstance(price.price, Decimal) and price.price > 0
            prices = await client.get_prices([live.asset, "ETH"])
            assert set(prices) == {live.asset, "ETH"}
            book = await client.get_order_book(live.exchange, live.symbol, depth=3)
            assert book.valid and book.bids[0][0] < book.asks[0][0]
            for _ in range(60):
                candles = await client.get_candles(live.exchange, live.symbol, since=timedelta(hours=1))
                if candles:
                    break
                await asyncio.sleep(0.5)
            assert candles and candles[-1].trades > 0
            assert int(await client.rpc(live.chain, "eth_chainId"), 16) == live.chain_id
            answers = await client.rpc_batch(live.chain, [("eth_chainId", []), ("eth_blockNumber", [])])
            assert len(answers) == 2 and int(answers[0], 16) == live.chain_id

    asyncio.run(run())


def test_async_stream_trades_ends_when_closed(live) -> None:
    async def run() -> list[moat.Trade]:
        async with moat.aio.GatewayClient() as client:
            seen = []
            async with client.stream_trades(exchange=live.exchange, symbol=live.symbol) as trades:
                async for trade in trades:
                    seen.append(trade)
                    if len(seen) == 3:
                        break
            assert [t async for t in trades] == []
            return seen

    seen = asyncio.run(asyncio.wait_for(run(), 30))
    assert [t.symbol for t in seen] == [live.symbol] * 3


def test_async_errors_are_the_same_classes(live) -> None:
    async def run() -> None:
        async with moat.aio.GatewayClient(retry_budget=0) as client:
            with pytest.raises(moat.NotFound):
                await client.get_order_book(live.exchange, "NOPE-USDT")
            with pytest.raises(moat.PermissionDenied):
                await client.rpc(live.chain, "debug_traceTransaction", ["0x" + "00" * 32])
            with pytest.raises(moat.FailedPrecondition):
                await client.rpc("atlantis", "eth_chainId")
            with pytest.raises(moat.Unavailable):
                await client.rpc(live.dead_chain, "eth_blockNumber")
        async with moat.aio.GatewayClient(token="wrong-token-0123456789", retry_budget=0) as client:
            with pytest.raises(moat.Unauthenticated):
                await client.get_price(live.asset)

    asyncio.run(run())
