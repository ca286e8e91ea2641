"""The SDK's own cost: moat.GatewayClient.get_price beside the raw grpcio
stub call it makes, against the same gateway, one call at a time.

    python overhead.py HOST:PORT TOKEN [CALLS]

Prints one JSON object: calls/s and p50/p99 in microseconds for each.
`cargo xtask bench` (its gateway section) runs it.
"""

import json
import sys
import time

import grpc

import moat
from moat.gateway.v1 import gateway_pb2 as pb
from moat.gateway.v1 import gateway_pb2_grpc as pb_grpc


def measure(call, n):
    for _ in range(min(n, 500)):
        call()
    lat = []
    started = time.perf_counter()
    for _ in range(n):
        t = time.perf_counter()
        call()
        lat.append(time.perf_counter() - t)
    elapsed = time.perf_counter() - started
    lat.sort()
    return {
        "per_second": n / elapsed,
        "p50_us": lat[len(lat) // 2] * 1e6,
        "p99_us": lat[int(len(lat) * 0.99)] * 1e6,
    }


def main():
    target, token = sys.argv[1], sys.argv[2]
    n = int(sys.argv[3]) if len(sys.argv) > 3 else 5000
    host, port = target.rsplit(":", 1)
    channel = grpc.insecure_channel(target)
    stub = pb_grpc.MarketServiceStub(channel)
    metadata = [("authorization", f"Bearer {token}")]
    request = pb.GetPriceRequest(token="BTC", quote="USD")

    def raw():
        stub.GetPrice(request, timeout=10.0, metadata=metadata)

    client = moat.GatewayClient(host, int(port), token)

    def sdk():
        client.get_price("BTC")

    # Alternate halves, so a machine that changes speed moves both alike.
    rounds = [("raw", raw), ("sdk", sdk)] * 2
    results = {"raw": [], "sdk": []}
    for name, call in rounds:
        results[name].append(measure(call, n // 2))
    out = {}
    for name, runs in results.items():
        out[name] = {
            "per_second": sum(r["per_second"] for r in runs) / len(runs),
            "p50_us": sum(r["p50_us"] for r in runs) / len(runs),
            "p99_us": max(r["p99_us"] for r in runs),
        }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
