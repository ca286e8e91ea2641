"""Strategy state through GatewayStateManager, sync and async."""

from __future__ import annotations

import asyncio

import pytest

import moat


@pytest.fixture
def state(client: moat.GatewayClient):
    manager = moat.GatewayStateManager(client)
    manager.delete()
    yield manager
    manager.delete()


def test_json_values_and_bytes_come_back_as_saved(state: moat.GatewayStateManager) -> None:
    assert state.load() is None
    assert state.load_versioned() == (None, 0)
    value = {"position": "0.5", "orders": [1, 2, 3], "nested": {"ok": True, "none": None}}
    v1 = state.save(value)
    assert state.load() == value
    # Bytes that happen to be JSON stay bytes.
    v2 = state.save(b'{"a": 1}')
    assert v2 == v1 + 1
    assert state.load_versioned() == (b'{"a": 1}', v2)
    v3 = state.save("just a string")
    assert state.load_versioned() == ("just a string", v3)
    assert state.delete() >= 1
    assert state.load() is None


def test_save_without_expected_version_goes_over_another_writer(client, live) -> None:
    first = moat.GatewayStateManager(client)
    second = moat.GatewayStateManager(client)
    first.delete()
    v1 = first.save({"by": "first"})
    v2 = second.save({"by": "second"})  # knows nothing of v1
    assert v2 == v1 + 1
    v3 = first.save({"by": "first again"})  # its guess is stale now
    assert v3 == v2 + 1
    assert first.load() == {"by": "first again"}
    first.delete()


def test_expected_version_conflict_names_the_current_version(state: moat.GatewayStateManager) -> None:
    v1 = state.save([1], expected_version=0)
    assert v1 == 1
    with pytest.raises(moat.VersionConflict) as caught:
        state.save([2], expected_version=0)
    assert caught.value.current_version == v1
    assert caught.value.code == "ABORTED"
    assert "current version is 1" in str(caught.value)
    assert state.save([2], expected_version=v1) == v1 + 1


def test_strategy_id_must_be_the_tokens(state: moat.GatewayStateManager, live) -> None:
    version = state.save({"mine": True}, strategy_id=live.strategy)
    assert state.load(strategy_id=live.strategy) == {"mine": True}
    for call in (
        lambda: state.save({"theirs": True}, strategy_id="someone-else"),
        lambda: state.load(strategy_id="someone-else"),
        lambda: state.delete(strategy_id="someone-else"),
    ):
        with pytest.raises(moat.PermissionDenied) as caught:
            call()
        assert "someone-else" in str(caught.value) and live.strategy in str(caught.value)
    assert state.load_versioned() == ({"mine": True}, version)


def test_each_token_sees_its_own_state(state: moat.GatewayStateManager, other: moat.GatewayClient) -> None:
    state.save({"owner": "sdk"})
    theirs = moat.GatewayStateManager(other)
    theirs.delete()
    assert theirs.load() is None
    theirs.save({"owner": "other"})
    assert state.load() == {"owner": "sdk"}
    theirs.delete()


def test_values_that_are_not_json_are_refused_before_sending(state: moat.GatewayStateManager) -> None:
    with pytest.raises(TypeError, match="JSON-serializable"):
        state.save({"when": object()})
    with pytest.raises(TypeError, match="JSON-serializable"):
        state.save(float("nan"))
    assert state.load() is None


def test_async_state_manager(live) -> None:
    async def run() -> None:
        async with moat.aio.GatewayClient() as client:
            state = moat.aio.GatewayStateManager(client)
            await state.delete()
            assert await state.load() is None
            v1 = await state.save({"async": 1})
            assert await state.load_versioned() == ({"async": 1}, v1)
            with pytest.raises(moat.VersionConflict) as caught:
                await state.save({"async": 2}, expected_version=v1 + 5)
            assert caught.value.current_version == v1
            assert await state.save(b"\x00\x01", strategy_id=live.strategy) == v1 + 1
            assert await state.load() == b"\x00\x01"
            with pytest.raises(moat.PermissionDenied):
                await state.load(strategy_id="someone-else")
            assert await state.delete() == 2
            assert await state.load() is None

    asyncio.run(run())
