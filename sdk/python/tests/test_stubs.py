"""The checked-in stubs are what proto/ generates today."""

from __future__ import annotations

import importlib.util
import pathlib
import sys

import pytest

SDK = pathlib.Path(__file__).resolve().parent.parent


def test_checked_in_stubs_match_the_protos(tmp_path) -> None:
    if importlib.util.find_spec("grpc_tools") is None:
        pytest.fail("grpcio-tools is missing: pip install './sdk/python[test]'")
    sys.path.insert(0, str(SDK / "scripts"))
    try:
        import generate_stubs
    finally:
        sys.path.pop(0)
    stale = []
    for generated in generate_stubs.generate(tmp_path):
        relative = generated.relative_to(tmp_path)
        checked_in = SDK / relative
        if not checked_in.exists() or checked_in.read_bytes() != generated.read_bytes():
            stale.append(str(relative))
    assert not stale, f"stale stubs {stale}: run python sdk/python/scripts/generate_stubs.py"
