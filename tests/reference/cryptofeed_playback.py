"""Plays a recorded venue session back through cryptofeed's own
normalization and prints what it made, one JSON object per line, in moat's
symbols: every trade, and the top of the book after every book update.

    python cryptofeed_playback.py FEED FILE...

FEED is cryptofeed's name for the venue (BINANCE, OKX, COINBASE, ...). The
moat tests compare these lines with `moat-collector replay --emit jsonl
--book-top` over the same files.
"""

import json
import os
import re
import shutil
import sys
import tempfile

MONTHS = "FGHJKMNQUVXZ"


def moat_symbol(symbol: str) -> str:
    """cryptofeed's `BTC-USD-22K27` is moat's `BTC-USD-220527`, and its
    `ETH-USD-20000-22M24-call` is `ETH-USD-220624-20000-C`."""

    def date(code: str) -> str:
        return f"{code[:2]}{MONTHS.index(code[2]) + 1:02d}{code[3:]}"

    parts = symbol.split("-")
    if parts[-1] in ("call", "put"):
        strike, expiry = parts[-3], parts[-2]
        pair = parts[:-3] if len(parts) == 5 else [parts[0], parts[0]]
        return "-".join(pair + [date(expiry), strike, parts[-1][0].upper()])
    if len(parts) == 3 and re.fullmatch(r"\d\d[FGHJKMNQUVXZ]\d\d", parts[2]):
        return "-".join(parts[:2] + [date(parts[2])])
    return symbol


def scratch_dir() -> str:
    """A folder whose path says neither `ws` nor `http`: cryptofeed's
    playback sorts files by those words in their whole path."""
    while True:
        path = tempfile.mkdtemp(prefix="moat-reference-")
        if "ws" not in path and "http" not in path:
            return path
        os.rmdir(path)


def trades_and_books_only(files: list, folder: str) -> list:
    """The session's files, its instruments file copied into `folder` with
    the `configuration:` line cut to trades and books: the channels compared
    here, and all that cryptofeed plays back of some sessions (Bybit's spot
    tickers stop it)."""
    out = []
    for path in files:
        name = os.path.basename(path)
        if ".ws." in name or ".http." in name:
            out.append(path)
            continue
        copy = os.path.join(folder, name)
        with open(path, encoding="utf-8") as src, open(copy, "w", encoding="utf-8") as dst:
            for line in src:
                if line.startswith("configuration: "):
                    wanted = json.loads(line.split(": ", 1)[1])
                    wanted = {k: v for k, v in wanted.items() if k in ("trades", "l2_book")}
                    line = "configuration: " + json.dumps(wanted) + "\n"
                dst.write(line)
        out.append(copy)
    return out


def main() -> int:
    feed = sys.argv[1]
    folder = scratch_dir()
    files = trades_and_books_only(sys.argv[2:], folder)
    # cryptofeed reads its config from a file; some feeds (Deribit) want
    # keys even for public channels, so dummy ones are given.
    config = os.path.join(folder, "config.yaml")
    with open(config, "w", encoding="utf-8") as f:
        f.write("deribit:\n  key_id: public\n  key_secret: public\n")

    from cryptofeed.defines import L2_BOOK, TRADES
    from cryptofeed.raw_data_collection import playback

    def out(value: dict) -> None:
        sys.stdout.write(json.dumps(value) + "\n")

    async def trade(t, receipt_timestamp):
        out({
            "kind": "trade",
            "symbol": moat_symbol(t.symbol),
            # Some feeds have no trade id (Kraken v1): null, not compared.
            "trade_id": None if t.id is None else str(t.id),
            "price": str(t.price),
            "qty": str(t.amount),
            "side": t.side,
        })

    async def book(b, receipt_timestamp):
        def top(side):
            if not len(side):
                return None
            price, qty = side.index(0)
            return [str(price), str(qty)]

        out({
            "kind": "book_top",
            "symbol": moat_symbol(b.symbol),
            "best_bid": top(b.book.bids),
            "best_ask": top(b.book.asks),
        })

    # One playback per recorded connection, as the venue served them: some
    # feeds read the market from the connection's address (Bybit's spot
    # and linear share symbol names), which playback does not set.
    from cryptofeed.exchanges import EXCHANGE_MAP

    feed_class = EXCHANGE_MAP[feed]
    original = feed_class.message_handler
    address = {"url": ""}

    async def with_address(self, msg, conn, timestamp):
        if not hasattr(conn, "address"):
            conn.address = address["url"]
        return await original(self, msg, conn, timestamp)

    feed_class.message_handler = with_address
    rest = [f for f in files if ".ws." not in os.path.basename(f)]
    connections = [f for f in files if ".ws." in os.path.basename(f)]
    try:
        for connection in connections:
            with open(connection, encoding="utf-8") as f:
                address["url"] = f.readline().split(" <-> ")[0]
            playback(feed, rest + [connection], callbacks={TRADES: trade, L2_BOOK: book}, config=config)
    finally:
        feed_class.message_handler = original
        shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
