"""The day's figures and console sessions in memory (one process only): part of MemoryStore."""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence


class MemoryAggregates:
    """Figure shards and sessions kept in dictionaries under a lock."""

    def __init__(self) -> None:
        super().__init__()
        self._aggregates_lock = threading.Lock()
        self._figures: dict[tuple[str, int], dict[str, int]] = {}
        self._sessions: dict[str, int] = {}

    def add_figures(self, day: str, shard: int, amounts: Mapping[str, int], *, expires_at: int) -> None:
        """Add ``amounts`` to one shard of ``day``."""
        del expires_at  # nothing in memory outlives the process
        if not amounts:
            return
        with self._aggregates_lock:
            figures = self._figures.setdefault((day, shard), {})
            for name, value in amounts.items():
                figures[name] = figures.get(name, 0) + int(value)

    def read_figures(self, shards: Sequence[tuple[str, int]]) -> dict[tuple[str, int], dict[str, int]]:
        """Return the figures of each (day, shard) that has any."""
        with self._aggregates_lock:
            return {key: dict(self._figures[key]) for key in shards if key in self._figures}

    def put_session(self, digest: str, *, created_at: int, expires_at: int) -> None:
        """Store a console session by the digest of its id."""
        del created_at
        with self._aggregates_lock:
            self._sessions[digest] = int(expires_at)

    def session_expires_at(self, digest: str) -> int | None:
        """Return when the session ends (epoch seconds), or None when there is none."""
        with self._aggregates_lock:
            return self._sessions.get(digest)

    def delete_session(self, digest: str) -> None:
        """Forget the session (none is fine)."""
        with self._aggregates_lock:
            self._sessions.pop(digest, None)
