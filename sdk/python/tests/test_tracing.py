"""With OpenTelemetry installed and a span active, calls carry traceparent,
and the gateway's audit line names the caller's trace."""

from __future__ import annotations

import json
import time

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

import moat

trace.set_tracer_provider(TracerProvider())


def _audit_lines(path: str) -> list[dict]:
    lines = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line.startswith("{") and '"gateway_request"' in line:
                lines.append(json.loads(line))
    return lines


def test_calls_carry_the_active_trace(client: moat.GatewayClient, live) -> None:
    tracer = trace.get_tracer("moat-sdk-test")
    with tracer.start_as_current_span("strategy-step") as span:
        client.get_price(live.asset)
        trace_id = format(span.get_span_context().trace_id, "032x")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if any(line.get("trace_id") == trace_id for line in _audit_lines(live.audit_log)):
            break
        time.sleep(0.2)
    else:
        raise AssertionError(f"no audit line of trace {trace_id} in {live.audit_log}")


def test_without_a_span_no_trace_context_is_sent(client: moat.GatewayClient, live) -> None:
    before = {line.get("trace_id") for line in _audit_lines(live.audit_log)}
    client.get_price(live.asset)
    time.sleep(0.5)
    after = [line for line in _audit_lines(live.audit_log) if line.get("trace_id") not in before]
    # The gateway still gives the call an id of its own, so logs can be joined.
    assert after and all(len(line["trace_id"]) == 32 for line in after)
