"""Example sandboxed strategy for the compose stack (standard library only).

It runs on the `strategies` network, whose only other member is the gateway:
it checks that the backend (NATS, ClickHouse) is out of reach, then calls the
gateway's JSON-RPC proxy every few seconds with its bearer token.
"""

import json
import os
import socket
import time
import urllib.error
import urllib.request

GATEWAY = os.environ.get("GATEWAY_HTTP", "http://gateway:9090")
TOKEN_FILE = os.environ.get("STRATEGY_TOKEN_FILE", "/run/secrets/strategy_token")
CHAIN = os.environ.get("STRATEGY_CHAIN", "ethereum")
INTERVAL = float(os.environ.get("STRATEGY_INTERVAL_SECONDS", "10"))


def read_token(path):
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line and not line.startswith("#"):
                return line
    raise SystemExit(f"no token in {path}")


def sandbox_report():
    """The backend must not even resolve from here."""
    for host, port in (("nats", 4222), ("clickhouse", 8123), ("state", 50052)):
        try:
            socket.create_connection((host, port), timeout=2).close()
            print(f"SANDBOX BROKEN: reached {host}:{port}", flush=True)
        except OSError as error:
            print(f"sandbox ok: {host}:{port} unreachable ({error.__class__.__name__})", flush=True)


def get(path):
    with urllib.request.urlopen(GATEWAY + path, timeout=5) as response:
        return response.status, response.read().decode()


def rpc(token, method, params):
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).encode()
    request = urllib.request.Request(
        f"{GATEWAY}/rpc/{CHAIN}",
        data=body,
        method="POST",
        headers={"content-type": "application/json", "authorization": f"Bearer {token}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=15) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


def main():
    token = read_token(TOKEN_FILE)
    sandbox_report()
    while True:
        try:
            status, _ = get("/health")
            print(f"gateway /health: {status}", flush=True)
            status, answer = rpc(token, "eth_chainId", [])
            print(f"{CHAIN} eth_chainId: HTTP {status} {json.dumps(answer)}", flush=True)
        except (OSError, ValueError) as error:
            print(f"gateway not reachable yet: {error}", flush=True)
        time.sleep(INTERVAL)


if __name__ == "__main__":
    main()
