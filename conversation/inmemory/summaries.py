"""The running summary of a conversation in memory: the summary part of MemoryStore."""

from __future__ import annotations

import copy
import threading
import time
from typing import TYPE_CHECKING

from conversation.models import Message, Summary, isoformat, utc_now

if TYPE_CHECKING:
    from conversation.inmemory.store import _Thread


class MemorySummaries:
    """Claim, save, release and clear a summary kept on the in-memory conversation."""

    _lock: threading.RLock
    _threads: dict[tuple[str, str], _Thread]

    def messages_after(
        self, user_id: str, conversation_id: str, position: str | None, limit: int
    ) -> list[Message]:
        """Return up to ``limit`` messages after ``position`` (from the start when None), oldest first."""
        if limit <= 0:
            return []
        with self._lock:
            thread = self._threads.get((user_id, conversation_id))
            if thread is None:
                return []
            later = sorted(p for p in thread.messages if position is None or p > position)
            return [copy.deepcopy(thread.messages[p]) for p in later[:limit]]

    def claim_summary(
        self, user_id: str, conversation_id: str, owner: str, seconds: float, *, upto: str | None
    ) -> bool:
        """Take the right to update a summary that still covers up to ``upto``; False if taken."""
        now = time.time()
        with self._lock:
            thread = self._threads.get((user_id, conversation_id))
            if thread is None or thread.header.deleted_at:
                return False
            if thread.claim is not None and thread.claim[1] >= now:
                return False
            covered = thread.header.summary.upto if thread.header.summary else None
            if covered != upto:
                return False
            thread.claim = (owner, now + seconds)
            return True

    def save_summary(
        self, user_id: str, conversation_id: str, owner: str, text: str, *, upto: str, count: int,
        tokens: int = 0,
    ) -> bool:
        """Store a new summary under ``owner``'s claim and release it; False if the claim was lost."""
        with self._lock:
            thread = self._threads.get((user_id, conversation_id))
            if thread is None or thread.header.deleted_at or not thread.claimed_by(owner):
                return False
            header = thread.header
            header.summary = Summary(text=text, upto=upto, count=count, updated_at=isoformat(utc_now()))
            header.counters["summary_tokens"] = header.counters.get("summary_tokens", 0) + int(tokens)
            thread.claim = None
            return True

    def release_summary_claim(self, user_id: str, conversation_id: str, owner: str) -> None:
        """Give up ``owner``'s claim without changing the summary."""
        with self._lock:
            thread = self._threads.get((user_id, conversation_id))
            if thread is not None and thread.claimed_by(owner):
                thread.claim = None

    def clear_summary(self, user_id: str, conversation_id: str) -> bool:
        """Forget the summary text (and any claim); False when there was neither."""
        with self._lock:
            thread = self._threads.get((user_id, conversation_id))
            summary = thread.header.summary if thread else None
            if thread is None or ((summary is None or summary.text is None) and thread.claim is None):
                return False
            if summary is not None:
                summary.text, summary.updated_at = None, isoformat(utc_now())
            thread.claim = None
            return True
