"""Real Python clients against a gateway running mutual TLS: a bare grpcio
channel with the development CA and the strategy's certificate, web3.py
over https://.../rpc/ethereum, and the moat SDK configured by environment.

Usage: tls_clients.py CA CERT KEY TOKEN GRPC_PORT HTTP_PORT
Prints one JSON object with what each client read.
"""

import json
import os
import sys

import grpc
from web3 import Web3

import moat
from moat.gateway.v1 import gateway_pb2 as pb
from moat.gateway.v1 import gateway_pb2_grpc as pb_grpc

ca, cert, key, token, grpc_port, http_port = sys.argv[1:]


def read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


credentials = grpc.ssl_channel_credentials(read(ca), read(key), read(cert))
with grpc.secure_channel(f"localhost:{grpc_port}", credentials) as channel:
    price = pb_grpc.MarketServiceStub(channel).GetPrice(
        pb.GetPriceRequest(token="BTC", quote="USD"),
        metadata=[("authorization", f"Bearer {token}")],
        timeout=10,
    )

w3 = Web3(
    Web3.HTTPProvider(
        f"https://localhost:{http_port}/rpc/ethereum",
        request_kwargs={
            "verify": ca,
            "cert": (cert, key),
            "headers": {"authorization": f"Bearer {token}"},
            "timeout": 10,
        },
    )
)
block = w3.eth.block_number

os.environ.update(
    GATEWAY_HOST="localhost",
    GATEWAY_PORT=grpc_port,
    MOAT_TOKEN=token,
    MOAT_TLS_CA=ca,
    MOAT_TLS_CERT=cert,
    MOAT_TLS_KEY=key,
)
with moat.GatewayClient() as client:
    sdk_price = client.get_price("BTC")
    version = moat.GatewayStateManager(client).save({"through": "mutual TLS"})

print(
    json.dumps(
        {
            "grpcio_price": price.price,
            "web3_block": block,
            "sdk_price": str(sdk_price.price),
            "state_version": version,
        }
    )
)
