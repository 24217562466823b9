"""Operator console sessions: one small item per signed-in browser, ended on sign-out.

The browser holds a random session id; the table holds only its SHA-256, so
someone who can read the table cannot sign in with what they read. Items carry
a TTL and are refused once past it, whether or not TTL has removed them yet.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Callable

from conversation.store import ConsoleSessions


class OperatorSessions:
    """Start, check and end console sessions in the store.

    :param storage: the store that keeps the sessions (DynamoDB, or in memory).
    :param clock: seconds since the epoch; tests move it to expire sessions.
    """

    def __init__(self, storage: ConsoleSessions, *, clock: Callable[[], float] = time.time) -> None:
        self.storage = storage
        self.clock = clock

    @staticmethod
    def _digest(session_id: str) -> str:
        return hashlib.sha256(session_id.encode("utf-8", "surrogatepass")).hexdigest()

    def start(self, seconds: float) -> str:
        """Store a new session lasting ``seconds`` and return its id (one write)."""
        session_id = secrets.token_urlsafe(32)
        now = self.clock()
        self.storage.put_session(self._digest(session_id), created_at=int(now), expires_at=int(now + seconds))
        return session_id

    def is_live(self, session_id: str) -> bool:
        """Return whether the session exists and has not expired (one consistent read)."""
        if not session_id or len(session_id) > 100:
            return False
        expires_at = self.storage.session_expires_at(self._digest(session_id))
        return expires_at is not None and expires_at > self.clock()

    def end(self, session_id: str) -> None:
        """Delete the session; later requests carrying its id are signed out (one delete)."""
        if session_id and len(session_id) <= 100:
            self.storage.delete_session(self._digest(session_id))
