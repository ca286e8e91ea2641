"""The suite runs against a real moat stack: `cargo xtask test` starts one
and sets the environment below (tests/tests/python_sdk.rs). Run alone, only
the tests that need no stack run."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import pytest

import moat


@dataclass(frozen=True)
class Live:
    host: str
    port: int
    token: str
    strategy: str
    other_token: str
    limited_token: str
    exchange: str
    symbol: str
    asset: str
    chain: str
    chain_id: int
    dead_chain: str
    audit_log: str


def _live() -> Live | None:
    env = os.environ
    if "MOAT_SDK_TEST_STRATEGY" not in env:
        return None
    return Live(
        host=env["GATEWAY_HOST"],
        port=int(env["GATEWAY_PORT"]),
        token=env["MOAT_TOKEN"],
        strategy=env["MOAT_SDK_TEST_STRATEGY"],
        other_token=env["MOAT_SDK_TEST_OTHER_TOKEN"],
        limited_token=env["MOAT_SDK_TEST_LIMITED_TOKEN"],
        exchange=env["MOAT_SDK_TEST_EXCHANGE"],
        symbol=env["MOAT_SDK_TEST_SYMBOL"],
        asset=env["MOAT_SDK_TEST_ASSET"],
        chain=env["MOAT_SDK_TEST_CHAIN"],
        chain_id=int(env["MOAT_SDK_TEST_CHAIN_ID"]),
        dead_chain=env["MOAT_SDK_TEST_DEAD_CHAIN"],
        audit_log=env["MOAT_SDK_TEST_AUDIT_LOG"],
    )


@pytest.fixture(scope="session")
def live() -> Live:
    found = _live()
    if found is None:
        pytest.skip("needs a running stack: run through `cargo xtask test`")
    _wait_for_market_data(found)
    return found


def _wait_for_market_data(live: Live, within: float = 60.0) -> None:
    """Until the gateway has a price and a book from the local exchange."""
    deadline = time.monotonic() + within
    with moat.GatewayClient(live.host, live.port, live.token) as client:
        while True:
            try:
                client.get_price(live.asset)
                client.get_order_book(live.exchange, live.symbol)
                return
            except (moat.NotFound, moat.Unavailable) as error:
                if time.monotonic() > deadline:
                    raise AssertionError(f"no market data from the stack within {within} s: {error}") from error
                time.sleep(0.25)


@pytest.fixture
def client(live: Live):
    with moat.GatewayClient() as c:
        yield c


@pytest.fixture
def other(live: Live):
    """A client of another strategy."""
    with moat.GatewayClient(token=live.other_token) as c:
        yield c
