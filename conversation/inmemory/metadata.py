"""Message metadata and a reply's delivery state in memory: the metadata part of MemoryStore."""

from __future__ import annotations

import copy
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from conversation.errors import ConversationNotFound, StaleMetadata
from conversation.guards import ReplyGuard
from conversation.models import DELIVERY_FIELDS, Message

if TYPE_CHECKING:
    from conversation.inmemory.store import _Thread


class MemoryMetadata:
    """Merge metadata into stored messages and record delivery steps, under the store's lock."""

    _lock: threading.RLock
    _work_lock: threading.RLock
    _threads: dict[tuple[str, str], _Thread]

    def work_failures(self, user_id: str, note: Any, reply: ReplyGuard | None) -> list[str]:
        raise NotImplementedError  # MemoryWork's

    def work_apply(self, user_id: str, note: Any, reply: ReplyGuard | None) -> bool:
        raise NotImplementedError  # MemoryWork's

    def _stored(self, user_id: str, message: Message) -> tuple[_Thread, Message]:
        if not message.position or not message.conversation_id:
            raise ValueError("message must be a stored message")
        thread = self._threads.get((user_id, message.conversation_id))
        stored = thread.messages.get(message.position) if thread else None
        if thread is None or stored is None:
            raise ConversationNotFound(f"message {message.message_id} not found")
        return thread, stored

    def update_message_metadata(
        self, user_id: str, message: Message, updates: dict[str, Any], *,
        counters: dict[str, int] | None = None, expect: dict[str, Any] | None = None,
    ) -> Message:
        with self._lock:
            thread, stored = self._stored(user_id, message)
            if expect and any(stored.metadata.get(name) != value for name, value in expect.items()):
                raise StaleMetadata(f"message {message.message_id} metadata is not as expected")
            stored.metadata = {**stored.metadata, **copy.deepcopy(updates)}
            for name, amount in (counters or {}).items():
                thread.header.counters[name] = thread.header.counters.get(name, 0) + int(amount)
            return copy.deepcopy(stored)

    def reply_ref(self, text: Message) -> Message:
        if not text.position or not text.conversation_id:
            raise ValueError("text must be a stored message")
        return Message(content="", role="assistant", message_id=f"reply-to-{text.message_id}",
                       reply_to=text.message_id, conversation_id=text.conversation_id,
                       position=text.position + "#R")

    def set_delivery(
        self, user_id: str, message: Message, updates: dict[str, Any], *,
        expect: dict[str, Any] | None = None, unless: dict[str, Sequence[Any]] | None = None,
        counters: dict[str, int] | None = None, finish: tuple[str, int] | None = None,
    ) -> bool:
        named = set(updates) | set(expect or {}) | set(unless or {})
        if not named <= set(DELIVERY_FIELDS):
            raise ValueError(f"not delivery fields: {sorted(named - set(DELIVERY_FIELDS))}")
        with self._lock, self._work_lock:
            thread, stored = self._stored(user_id, message)
            if expect and any(stored.metadata.get(name) != value for name, value in expect.items()):
                raise StaleMetadata(f"message {message.message_id} delivery is not as expected")
            if unless and any(name in stored.metadata and stored.metadata[name] in values
                              for name, values in unless.items()):
                raise StaleMetadata(f"message {message.message_id} delivery is past this step")
            stored.metadata = {**stored.metadata, **copy.deepcopy(updates)}
            for name, amount in (counters or {}).items():
                thread.header.counters[name] = thread.header.counters.get(name, 0) + int(amount)
            if finish is None:
                return False
            owner, version = finish
            guard = ReplyGuard(owner, finish_version=version, not_opted_out=False)
            if self.work_failures(user_id, None, guard):
                return False
            return self.work_apply(user_id, None, guard)
