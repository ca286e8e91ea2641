"""One exception class per gRPC status the gateway answers with.

Every error keeps the gateway's exact message (``str(error)`` and
``error.message``) and its status name (``error.code``, e.g.
``"PERMISSION_DENIED"``).
"""

from __future__ import annotations

import re
from typing import Any

import grpc

__all__ = [
    "MoatError",
    "Unauthenticated",
    "PermissionDenied",
    "NotFound",
    "InvalidArgument",
    "FailedPrecondition",
    "VersionConflict",
    "RateLimited",
    "Unavailable",
    "DeadlineExceeded",
    "Cancelled",
    "Internal",
    "JsonRpcError",
]


class MoatError(Exception):
    """Base of every error the SDK raises."""

    code: str = "UNKNOWN"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class Unauthenticated(MoatError):
    """No token, or one the gateway does not know (UNAUTHENTICATED)."""

    code = "UNAUTHENTICATED"


class PermissionDenied(MoatError):
    """The strategy may not do this: a method or chain outside its allowlist,
    or a ``strategy_id`` that is not the token's (PERMISSION_DENIED)."""

    code = "PERMISSION_DENIED"


class NotFound(MoatError):
    """No such book, price source or state (NOT_FOUND)."""

    code = "NOT_FOUND"


class InvalidArgument(MoatError):
    """The request itself is wrong: a bad symbol, interval or range (INVALID_ARGUMENT)."""

    code = "INVALID_ARGUMENT"


class FailedPrecondition(MoatError):
    """The gateway is not set up for this, e.g. a chain it does not serve (FAILED_PRECONDITION)."""

    code = "FAILED_PRECONDITION"


class VersionConflict(MoatError):
    """A save's ``expected_version`` is not the stored one (ABORTED).

    ``current_version`` is the version stored now, or ``None`` when the
    gateway's message did not say.
    """

    code = "ABORTED"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message, code=code)
        found = re.search(r"current version is (\d+)", message)
        self.current_version: int | None = int(found.group(1)) if found else None


class RateLimited(MoatError):
    """Refused by a rate limit or an authentication lockout (RESOURCE_EXHAUSTED).

    ``retry_after`` is the wait in seconds the gateway advised, or ``None``.
    """

    code = "RESOURCE_EXHAUSTED"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message, code=code)
        found = re.search(r"retry after ([0-9]+(?:\.[0-9]+)?)\s*s", message)
        self.retry_after: float | None = float(found.group(1)) if found else None


class Unavailable(MoatError):
    """The gateway, or what it needs for this call, cannot be reached now (UNAVAILABLE)."""

    code = "UNAVAILABLE"


class DeadlineExceeded(MoatError):
    """The call ran out of time (DEADLINE_EXCEEDED)."""

    code = "DEADLINE_EXCEEDED"


class Cancelled(MoatError):
    """The call was cancelled (CANCELLED)."""

    code = "CANCELLED"


class Internal(MoatError):
    """A fault inside the gateway (INTERNAL); its logs say more."""

    code = "INTERNAL"


class JsonRpcError(MoatError):
    """The chain's node answered a JSON-RPC call with an error object."""

    code = "JSON_RPC_ERROR"

    def __init__(self, rpc_code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.rpc_code = rpc_code
        self.data = data

    def __repr__(self) -> str:
        return f"JsonRpcError({self.rpc_code}, {self.message!r})"


_BY_STATUS: dict[grpc.StatusCode, type[MoatError]] = {
    grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.OUT_OF_RANGE: InvalidArgument,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPrecondition,
    grpc.StatusCode.ABORTED: VersionConflict,
    grpc.StatusCode.RESOURCE_EXHAUSTED: RateLimited,
    grpc.StatusCode.UNAVAILABLE: Unavailable,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceeded,
    grpc.StatusCode.CANCELLED: Cancelled,
    grpc.StatusCode.INTERNAL: Internal,
}


def from_grpc(code: grpc.StatusCode | None, details: str | None) -> MoatError:
    """The SDK error for a gRPC status and its message."""
    message = details or ""
    if code == grpc.StatusCode.CANCELLED and message == "Timeout expired":
        # tonic (the gateway's gRPC server) answers a call whose grpc-timeout
        # ran out with CANCELLED "Timeout expired"; it is the deadline.
        code = grpc.StatusCode.DEADLINE_EXCEEDED
    name = code.name if code is not None else "UNKNOWN"
    cls = _BY_STATUS.get(code) if code is not None else None
    if cls is None:
        return MoatError(message or name, code=name)
    return cls(message or name, code=name)
