"""A strategy's saved state, versioned by the gateway's state service."""

from __future__ import annotations

from typing import Any

from . import _core
from .client import GatewayClient
from .errors import VersionConflict

__all__ = ["GatewayStateManager", "JSON", "BYTES"]

#: The media types the SDK saves with: JSON values, and bytes as given.
JSON = "application/json"
BYTES = "application/octet-stream"
#: Tries of a save without ``expected_version`` against concurrent writers.
UNCONDITIONAL_ATTEMPTS = 5


def encode(data: Any) -> tuple[bytes, str]:
    """Bytes as they are; any other value as JSON."""
    return _core.encode_state(data, JSON, BYTES)


def decode(data: bytes, content_type: str) -> Any:
    """JSON saved as JSON comes back decoded; everything else as bytes."""
    return _core.decode_state(data, content_type, JSON)


class GatewayStateManager:
    """Saves and loads the state of the strategy the client's token names.

    Every save is a new version; ``expected_version`` makes a save
    conditional on the version stored now (:class:`~moat.VersionConflict`
    otherwise). ``strategy_id`` may be passed for habit's sake: it must be
    the token's strategy, or :class:`~moat.PermissionDenied` is raised.
    """

    def __init__(self, client: GatewayClient) -> None:
        self.client = client
        #: The version this manager last saw: the first guess of an unconditional save.
        self._seen = 0

    def save(self, data: Any, *, strategy_id: str | None = None, expected_version: int | None = None) -> int:
        """Saves ``data`` (bytes, or any JSON-serializable value) and returns
        its new version. Without ``expected_version`` it saves over whatever
        version is current."""
        raw, content_type = encode(data)
        if expected_version is not None:
            self._seen = self.client._save_state(raw, content_type, expected_version, strategy_id)
            return self._seen
        guess = self._seen
        for _ in range(UNCONDITIONAL_ATTEMPTS):
            try:
                self._seen = self.client._save_state(raw, content_type, guess, strategy_id)
                return self._seen
            except VersionConflict as conflict:
                if conflict.current_version is None:
                    raise
                guess = conflict.current_version
        raise VersionConflict(
            f"{UNCONDITIONAL_ATTEMPTS} saves in a row lost the race to other writers of this state; last seen version {guess}"
        )

    def load(self, *, strategy_id: str | None = None) -> Any:
        """The latest saved value, or ``None`` when nothing is saved."""
        return self.load_versioned(strategy_id=strategy_id)[0]

    def load_versioned(self, *, strategy_id: str | None = None) -> tuple[Any, int]:
        """``(value, version)`` of the latest save, ``(None, 0)`` when nothing is saved."""
        loaded = self.client._load_state(strategy_id)
        if loaded is None:
            return None, 0
        self._seen = loaded.version
        return decode(loaded.data, loaded.content_type), loaded.version

    def delete(self, *, strategy_id: str | None = None) -> int:
        """Deletes every saved version; returns how many there were."""
        deleted = self.client._delete_state(strategy_id)
        self._seen = 0
        return deleted
