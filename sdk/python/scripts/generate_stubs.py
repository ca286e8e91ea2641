"""Regenerates the gRPC stubs under moat/ from the repository's proto/.

    python sdk/python/scripts/generate_stubs.py [--out DIR]

Needs grpcio-tools at the version pyproject.toml names (the `test` extra).
Without --out it rewrites the checked-in stubs; tests/test_stubs.py
generates into a temporary folder and compares.
"""

from __future__ import annotations

import argparse
import pathlib
import sys

SDK = pathlib.Path(__file__).resolve().parent.parent
PROTO = SDK.parent.parent / "proto"
# The strategy-facing protos; moat/state/v1 is the gateway's own backend.
PROTOS = ["moat/marketdata/v1/marketdata.proto", "moat/gateway/v1/gateway.proto"]


def generate(out: pathlib.Path) -> list[pathlib.Path]:
    """Writes the stubs under `out` and returns the files written."""
    from grpc_tools import protoc

    out.mkdir(parents=True, exist_ok=True)
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO}",
        f"--python_out={out}",
        f"--pyi_out={out}",
        f"--grpc_python_out={out}",
        *PROTOS,
    ]
    if protoc.main(args) != 0:
        raise SystemExit(f"protoc failed on {PROTOS}")
    written = []
    for proto in PROTOS:
        package = out / pathlib.Path(proto).parent
        stem = pathlib.Path(proto).stem
        for suffix in ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py"):
            written.append(package / f"{stem}{suffix}")
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=pathlib.Path, default=SDK)
    args = parser.parse_args()
    for path in generate(args.out):
        print(path.relative_to(args.out), file=sys.stderr)


if __name__ == "__main__":
    main()
