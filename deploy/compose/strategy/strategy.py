"""The compose stack's sandboxed strategy, on moat-sdk.

It runs on the `strategies` network, whose only other member is the gateway:
it checks that the backend (NATS, ClickHouse, the state service) is out of
reach, then every few seconds asks the gateway for a price, the chain's
block number and its own saved state, through the SDK with its token
(GATEWAY_HOST, GATEWAY_PORT and MOAT_TOKEN_FILE are set by compose).
"""

import os
import socket
import time

import moat

CHAIN = os.environ.get("STRATEGY_CHAIN", "ethereum")
ASSET = os.environ.get("STRATEGY_ASSET", "BTC")
INTERVAL = float(os.environ.get("STRATEGY_INTERVAL_SECONDS", "10"))


def sandbox_report() -> None:
    """The backend must not even resolve from here."""
    for host, port in (("nats", 4222), ("clickhouse", 8123), ("state", 50052)):
        try:
            socket.create_connection((host, port), timeout=2).close()
            print(f"SANDBOX BROKEN: reached {host}:{port}", flush=True)
        except OSError as error:
            print(f"sandbox ok: {host}:{port} unreachable ({error.__class__.__name__})", flush=True)


def step(gateway: moat.GatewayClient, state: moat.GatewayStateManager) -> None:
    try:
        price = gateway.get_price(ASSET)
        print(f"{ASSET}: {price.price} {price.quote} (stale: {price.stale})", flush=True)
    except moat.NotFound as error:
        print(f"no price yet: {error}", flush=True)
    try:
        print(f"{CHAIN} block {int(gateway.rpc(CHAIN, 'eth_blockNumber'), 16)}", flush=True)
    except (moat.FailedPrecondition, moat.Unavailable) as error:
        print(f"{CHAIN}: {error}", flush=True)
    runs = (state.load() or {}).get("runs", 0) + 1
    version = state.save({"runs": runs})
    print(f"state saved: run {runs}, version {version}", flush=True)


def main() -> None:
    sandbox_report()
    with moat.GatewayClient() as gateway:
        state = moat.GatewayStateManager(gateway)
        while True:
            try:
                step(gateway, state)
            except moat.MoatError as error:
                print(f"gateway: {error.code}: {error}", flush=True)
            time.sleep(INTERVAL)


if __name__ == "__main__":
    main()
