"""Every error class, produced by the real gateway, and the retry policy."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest

import moat


def test_unauthenticated(live) -> None:
    with moat.GatewayClient(token="not-a-token-of-this-gateway", retry_budget=0) as client:
        with pytest.raises(moat.Unauthenticated, match="invalid token") as caught:
            client.get_price(live.asset)
    assert caught.value.code == "UNAUTHENTICATED"
    assert isinstance(caught.value, moat.MoatError)


def test_permission_denied_for_a_method_off_the_allowlist(client, live) -> None:
    with pytest.raises(moat.PermissionDenied, match="method 'debug_traceTransaction' is not allowed"):
        client.rpc(live.chain, "debug_traceTransaction", ["0x" + "00" * 32])


def test_not_found(client, live) -> None:
    with pytest.raises(moat.NotFound, match=f"no order book for NOPE-USDT on {live.exchange}"):
        client.get_order_book(live.exchange, "NOPE-USDT")
    with pytest.raises(moat.NotFound, match="no price source for NOPE/USD"):
        client.get_price("NOPE")


def test_invalid_argument(client, live) -> None:
    with pytest.raises(moat.InvalidArgument, match="interval '7m' is not supported"):
        client.get_candles(live.exchange, live.symbol, "7m")
    with pytest.raises(moat.InvalidArgument, match="more than 10000 candles"):
        client.get_candles(live.exchange, live.symbol, "1m", since=timedelta(days=30))


def test_failed_precondition_for_a_chain_the_gateway_does_not_serve(client) -> None:
    with pytest.raises(moat.FailedPrecondition, match="Chain 'atlantis' is not configured"):
        client.rpc("atlantis", "eth_chainId")


def test_unavailable_reads_are_retried_within_the_budget(live) -> None:
    with moat.GatewayClient(retry_budget=0) as client:
        started = time.monotonic()
        with pytest.raises(moat.Unavailable):
            client.rpc(live.dead_chain, "eth_blockNumber")
        once = time.monotonic() - started
    with moat.GatewayClient(retry_budget=1.5) as client:
        started = time.monotonic()
        with pytest.raises(moat.Unavailable):
            client.rpc(live.dead_chain, "eth_blockNumber")
        retried = time.monotonic() - started
    # Retried until the budget is spent, and not much past it (the last
    # call's own time aside).
    assert retried >= 1.5, (once, retried)
    assert retried < 1.5 + 2 * once + 1.0, (once, retried)


class Burner:
    """Spends a strategy's rate limit from a background thread while it runs."""

    def __init__(self, token: str, call) -> None:
        self.client = moat.GatewayClient(token=token, retry_budget=0)
        self.call = call
        self.limited: moat.RateLimited | None = None
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                self.call(self.client)
            except moat.RateLimited as limited:
                self.limited = limited

    def __enter__(self) -> Burner:
        self.thread.start()
        deadline = time.monotonic() + 30
        while self.limited is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert self.limited is not None, "30 s of calls were never rate limited"
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()
        self.client.close()


def test_rate_limited_carries_retry_after_and_reads_wait_for_it(live) -> None:
    def rpc(c: moat.GatewayClient) -> None:
        c.rpc(live.chain, "eth_chainId")

    with Burner(live.limited_token, rpc) as burner, moat.GatewayClient(
        token=live.limited_token, retry_budget=10
    ) as patient:
        limited = burner.limited
        assert limited is not None and limited.code == "RESOURCE_EXHAUSTED"
        assert "Rate limited, retry after" in str(limited)
        assert limited.retry_after is not None and 0 < limited.retry_after < 5
        # Reads wait the advised delay and go on until a token is free.
        for _ in range(2):
            assert int(patient.rpc(live.chain, "eth_chainId"), 16) == live.chain_id
        assert patient.retries > 0


def test_writes_are_never_retried(live) -> None:
    def read(c: moat.GatewayClient) -> None:
        c.get_price(live.asset)

    with Burner(live.limited_token, read), moat.GatewayClient(token=live.limited_token, retry_budget=30) as client:
        state = moat.GatewayStateManager(client)
        refused = None
        for _ in range(200):
            started = time.monotonic()
            try:
                state.save({"n": 1}, expected_version=10**9)
            except moat.VersionConflict:
                continue  # admitted: the bucket had a token this time
            except moat.RateLimited as limited:
                refused, took = limited, time.monotonic() - started
                break
        assert refused is not None, "200 saves against a spent limit were all admitted"
        assert client.retries == 0
        assert took < 1.0


def test_deadline_exceeded(client, live) -> None:
    # 1 ms: long enough for grpcio to send the call (a deadline that passes
    # before it is sent can come back CANCELLED), shorter than the query.
    with moat.GatewayClient(timeout=0.001, retry_budget=0) as hasty:
        with pytest.raises(moat.DeadlineExceeded):
            hasty.get_candles(live.exchange, live.symbol, since=timedelta(hours=2))
