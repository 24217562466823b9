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
from typing import Any

from conversation.dynamodb import keys


class OperatorSessions:
    """Start, check and end console sessions in the conversation table.

    :param storage: the DynamoDB store whose table (and client) holds the sessions.
    :param clock: seconds since the epoch; tests move it to expire sessions.
    """

    def __init__(self, storage: Any, *, clock: Callable[[], float] = time.time) -> None:
        self.storage = storage
        self.clock = clock

    @staticmethod
    def _key(session_id: str) -> dict[str, dict[str, str]]:
        digest = hashlib.sha256(session_id.encode("utf-8", "surrogatepass")).hexdigest()
        return keys.console_session_key(digest)

    def start(self, seconds: float) -> str:
        """Store a new session lasting ``seconds`` and return its id (one PutItem)."""
        session_id = secrets.token_urlsafe(32)
        now = self.clock()
        self.storage.table.call(
            "put_item",
            TableName=self.storage.table_name,
            Item={
                **self._key(session_id),
                "created_at": {"N": str(int(now))},
                "expires_at": {"N": str(int(now + seconds))},
            },
        )
        return session_id

    def is_live(self, session_id: str) -> bool:
        """Return whether the session exists and has not expired (one consistent GetItem)."""
        if not session_id or len(session_id) > 100:
            return False
        response = self.storage.table.call(
            "get_item", TableName=self.storage.table_name, Key=self._key(session_id), ConsistentRead=True
        )
        item = response.get("Item")
        return item is not None and int(item["expires_at"]["N"]) > self.clock()

    def end(self, session_id: str) -> None:
        """Delete the session; later requests carrying its id are signed out (one DeleteItem)."""
        if session_id and len(session_id) <= 100:
            table = self.storage.table
            table.call("delete_item", TableName=table.name, Key=self._key(session_id))
