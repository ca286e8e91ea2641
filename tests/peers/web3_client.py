"""A real web3.py client against the gateway's JSON-RPC endpoint.

Usage: python3 web3_client.py URL TOKEN
Prints one JSON object with what it read and the mined transaction.
Uses ganache's first deterministic account (`--wallet.deterministic`).
"""
import json
import sys

from web3 import Web3

# ganache --wallet.deterministic: account 0 and its well-known key.
SENDER = "0x90F8bf6A479f320ead074411a4B0e7944Ea8c9C1"
KEY = "0x4f3edf983ac636a65a842ce7c78d9aa706d3b113bce9c46f30d7d21715b23b1d"
RECEIVER = "0xFFcf8FDEE72ac11b5c542428B35EEF5769C409f0"


def main():
    url, token = sys.argv[1], sys.argv[2]
    w3 = Web3(Web3.HTTPProvider(url, request_kwargs={"headers": {"Authorization": f"Bearer {token}"}, "timeout": 20}))
    chain_id = w3.eth.chain_id
    block = w3.eth.block_number
    balance_before = w3.eth.get_balance(RECEIVER)
    tx = {
        "to": RECEIVER,
        "value": 12345,
        "gas": 21000,
        "gasPrice": w3.eth.gas_price,
        "nonce": w3.eth.get_transaction_count(SENDER),
        "chainId": chain_id,
    }
    signed = w3.eth.account.sign_transaction(tx, KEY)
    raw = getattr(signed, "raw_transaction", None) or signed.rawTransaction
    tx_hash = w3.eth.send_raw_transaction(raw)
    receipt = w3.eth.wait_for_transaction_receipt(tx_hash, timeout=30)
    balance_after = w3.eth.get_balance(RECEIVER)
    print(json.dumps({
        "chain_id": chain_id,
        "block_number": block,
        "balance_delta": balance_after - balance_before,
        "tx_status": receipt["status"],
        "tx_block": receipt["blockNumber"],
    }))


if __name__ == "__main__":
    main()
