"""An example moat strategy: it watches one market, keeps a running VWAP
that survives restarts in its saved state, and reads the chain it would
settle on. moat is its only door, so everything goes through the gateway.

    pip install './sdk/python[web3]'
    export MOAT_TOKEN_FILE=target/moat-dev/dev.token   # written by `cargo xtask up`
    python sdk/python/examples/strategy.py
"""

import os
from datetime import timedelta
from decimal import Decimal

from web3 import Web3

import moat

EXCHANGE = os.environ.get("STRATEGY_EXCHANGE", "local")
SYMBOL = os.environ.get("STRATEGY_SYMBOL", "BTC-USDT")
ASSETS = ["BTC", "ETH"]
CHAIN = os.environ.get("STRATEGY_CHAIN", "ethereum")
TRADES = int(os.environ.get("STRATEGY_TRADES", "20"))


def main() -> None:
    # GATEWAY_HOST, GATEWAY_PORT and MOAT_TOKEN / MOAT_TOKEN_FILE say where and who.
    with moat.GatewayClient() as gateway:
        state = moat.GatewayStateManager(gateway)
        saved, version = state.load_versioned()
        memory = saved or {"volume": "0", "notional": "0", "runs": 0}
        print(f"restored state version {version}: {memory}")

        for token, price in gateway.get_prices(ASSETS).items():
            print(f"{token}: {price.price} {price.quote} from {len(price.sources)} source(s), confidence {price.confidence:.2f}")

        book = gateway.get_order_book(EXCHANGE, SYMBOL, depth=5)
        (bid, _), (ask, _) = book.bids[0], book.asks[0]
        print(f"{SYMBOL} on {EXCHANGE}: bid {bid} ask {ask} spread {ask - bid} (valid: {book.valid})")

        candles = gateway.get_candles(EXCHANGE, SYMBOL, "1m", since=timedelta(hours=1))
        if candles:
            last = candles[-1]
            print(f"last hour: {len(candles)} candle(s), last close {last.close}, {last.trades} trade(s)")

        w3 = Web3(gateway.web3_provider(CHAIN))
        print(f"{CHAIN}: chain id {w3.eth.chain_id}, block {w3.eth.block_number}")

        volume, notional = Decimal(memory["volume"]), Decimal(memory["notional"])
        with gateway.stream_trades(exchange=EXCHANGE, symbol=SYMBOL) as trades:
            for seen, trade in enumerate(trades, start=1):
                volume += trade.quantity
                notional += trade.price * trade.quantity
                if seen == TRADES:
                    break
        vwap = notional / volume
        print(f"VWAP over {volume} {SYMBOL.split('-')[0]}: {vwap:.2f}")

        memory = {"volume": str(volume), "notional": str(notional), "runs": memory["runs"] + 1}
        try:
            version = state.save(memory, expected_version=version)
        except moat.VersionConflict as conflict:
            # Another instance saved meanwhile: a real strategy would merge; this one reports.
            print(f"not saved: {conflict} (stored version is {conflict.current_version})")
        else:
            print(f"saved state version {version} (run {memory['runs']})")


if __name__ == "__main__":
    main()
