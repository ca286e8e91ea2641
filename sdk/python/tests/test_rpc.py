"""JSON-RPC through the gateway: plain calls, batches, web3.py providers."""

from __future__ import annotations

import asyncio

import pytest
from web3 import AsyncWeb3, Web3

import moat


def test_rpc_returns_the_result(client: moat.GatewayClient, live) -> None:
    assert int(client.rpc(live.chain, "eth_chainId"), 16) == live.chain_id
    block = client.rpc(live.chain, "eth_getBlockByNumber", ["latest", False])
    assert block["number"].startswith("0x")


def test_rpc_batch_answers_in_order_with_node_errors_as_values(client: moat.GatewayClient, live) -> None:
    answers = client.rpc_batch(
        live.chain,
        [("eth_chainId", []), ("eth_blockNumber", []), ("eth_getBalance", ["not-an-address", "latest"])],
    )
    assert int(answers[0], 16) == live.chain_id
    assert answers[1].startswith("0x")
    assert isinstance(answers[2], moat.JsonRpcError)


def test_a_node_error_is_raised_with_its_code(client: moat.GatewayClient, live) -> None:
    with pytest.raises(moat.JsonRpcError) as caught:
        client.rpc(live.chain, "eth_getBalance", ["not-an-address", "latest"])
    assert caught.value.rpc_code != 0 and caught.value.message


def test_web3_provider(client: moat.GatewayClient, live) -> None:
    w3 = Web3(client.web3_provider(live.chain))
    assert w3.is_connected()
    assert w3.eth.chain_id == live.chain_id
    assert w3.eth.block_number >= 0
    assert w3.eth.get_balance("0x0000000000000000000000000000000000000000") >= 0
    assert w3.eth.get_block("latest")["number"] >= 0


def test_async_web3_provider(live) -> None:
    async def run() -> tuple[int, int]:
        async with moat.aio.GatewayClient() as client:
            w3 = AsyncWeb3(client.web3_provider(live.chain))
            assert await w3.is_connected()
            return await w3.eth.chain_id, await w3.eth.block_number

    chain_id, block = asyncio.run(run())
    assert chain_id == live.chain_id and block >= 0
