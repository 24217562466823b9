"""MemoryStore: the ConversationStore contract kept in dictionaries under one lock.

Every operation holds the lock, so each is atomic the way a DynamoDB
transaction is. Nothing is persisted and nothing is shared between processes:
fit for tests, tools and a single-process demo, not for gunicorn workers.
Positions are ``<UTC time, microseconds>#<random hex>`` like the DynamoDB
store's, so messages sort the same way.
"""

from __future__ import annotations

import copy
import json
import secrets
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from conversation.cursors import decode_cursor, encode_cursor
from conversation.errors import ConversationNotFound, InvalidCursor, MessageTooLarge
from conversation.guards import OPTED_OUT, ReplyGuard, TextGuard
from conversation.inmemory.aggregates import MemoryAggregates
from conversation.inmemory.coordination import MemoryCoordination
from conversation.inmemory.metadata import MemoryMetadata
from conversation.inmemory.summaries import MemorySummaries
from conversation.inmemory.work import MemoryWork
from conversation.models import (
    MAX_PAGE_SIZE,
    ROLES,
    Conversation,
    Message,
    Page,
    Recorded,
    User,
    isoformat,
    parse_iso,
    preview_of,
    utc_now,
)

DEFAULT_MAX_MESSAGE_BYTES = 350_000


@dataclass
class _Thread:
    """One conversation: its header and its messages by position."""

    header: Conversation
    messages: dict[str, Message] = field(default_factory=dict)
    activity: str | None = None  # "<minute>#<user>#<conversation>", None once soft-deleted
    seq: int = 0  # last sequence number handed out (sequenced appends)
    claim: tuple[str, float] | None = None  # who may update the summary, and until when

    def claimed_by(self, owner: str) -> bool:
        """Return whether ``owner`` holds the summary claim (lapsed or not)."""
        return self.claim is not None and self.claim[0] == owner


def _time_key(timestamp: str) -> str:
    return parse_iso(timestamp).strftime("%Y%m%dT%H%M%S.%f")


class MemoryStore(MemoryWork, MemoryMetadata, MemoryAggregates, MemoryCoordination, MemorySummaries):
    """Conversations, messages, leases and counters in memory (see :mod:`conversation.store`)."""

    def __init__(self, *, max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> None:
        super().__init__()
        self.max_message_bytes = max_message_bytes
        self._lock = threading.RLock()
        self._users: dict[str, User] = {}
        self._threads: dict[tuple[str, str], _Thread] = {}
        self._markers: dict[tuple[str, str], tuple[str, str]] = {}

    def __repr__(self) -> str:
        return f"MemoryStore({len(self._threads)} conversations)"

    def ping(self) -> None:
        """Always reachable."""

    def close(self) -> None:
        """Nothing to close."""

    # ------------------------------------------------------------------ users

    def get_user(self, user_id: str) -> User | None:
        with self._lock:
            user = self._users.get(user_id)
            return copy.copy(user) if user else None

    def _user(self, user_id: str, now: str) -> User:
        user = self._users.get(user_id)
        if user is None:
            user = self._users[user_id] = User(user_id=user_id, created_at=now)
        user.updated_at = now
        return user

    def set_opt_out(self, user_id: str, opted_out: bool) -> None:
        now = isoformat(utc_now())
        with self._lock:
            user = self._user(user_id, now)
            user.opted_out = opted_out
            user.opt_out_changed_at = now

    # ------------------------------------------------------------------ conversations

    def get_conversation(self, user_id: str, conversation_id: str) -> Conversation | None:
        with self._lock:
            thread = self._threads.get((user_id, conversation_id))
            return copy.deepcopy(thread.header) if thread else None

    def get_active_conversation(self, user_id: str) -> Conversation | None:
        with self._lock:
            user = self._users.get(user_id)
            if user is None or not user.active_conversation_id:
                return None
            conversation = self.get_conversation(user_id, user.active_conversation_id)
            return conversation if conversation is not None and conversation.is_active else None

    def _new_thread(self, user_id: str, conversation_id: str, created_at: str, active: bool) -> _Thread:
        header = Conversation(
            user_id=user_id,
            conversation_id=conversation_id,
            created_at=created_at,
            updated_at=created_at,
            is_active=active,
            role_counts=dict.fromkeys(ROLES, 0),
        )
        thread = _Thread(header, activity=f"{created_at[:16]}#{user_id}#{conversation_id}")
        self._threads[(user_id, conversation_id)] = thread
        return thread

    def start_conversation(self, user_id: str) -> str:
        now = isoformat(utc_now())
        with self._lock:
            user = self._users.get(user_id)
            if user is not None and user.active_conversation_id:
                if (user_id, user.active_conversation_id) in self._threads:
                    return user.active_conversation_id
            conversation_id = f"{utc_now().strftime('%Y%m%dT%H%M%S.%f')}-{secrets.token_hex(4)}"
            self._new_thread(user_id, conversation_id, now, active=True)
            user = self._user(user_id, now)
            user.active_conversation_id = conversation_id
            user.conversation_count += 1
            return conversation_id

    def create_conversation(
        self, user_id: str, conversation_id: str, *, created_at: str, metadata: dict[str, Any] | None = None
    ) -> bool:
        with self._lock:
            if (user_id, conversation_id) in self._threads:
                return False
            thread = self._new_thread(user_id, conversation_id, created_at, active=False)
            thread.header.metadata = copy.deepcopy(metadata or {})
            return True

    def activate_conversation(self, user_id: str, conversation_id: str) -> bool:
        now = isoformat(utc_now())
        with self._lock:
            thread = self._threads.get((user_id, conversation_id))
            user = self._users.get(user_id)
            if thread is None or thread.header.deleted_at or (user and user.active_conversation_id):
                return False
            thread.header.is_active = True
            user = self._user(user_id, now)
            user.active_conversation_id = conversation_id
            user.conversation_count += 1
            return True

    def archive_conversation(self, user_id: str, conversation_id: str) -> bool:
        now = isoformat(utc_now())
        with self._lock:
            thread = self._threads.get((user_id, conversation_id))
            if thread is None:
                raise ConversationNotFound(conversation_id)
            if not thread.header.is_active:
                return False
            thread.header.is_active = False
            thread.header.updated_at = now
            user = self._users.get(user_id)
            if user is not None and user.active_conversation_id in (None, conversation_id):
                user.active_conversation_id = None
                user.updated_at = now
            return True

    def reset(self, user_id: str) -> str | None:
        with self._lock:
            user = self._users.get(user_id)
            conversation_id = user.active_conversation_id if user else None
            if not conversation_id:
                return None
            try:
                self.archive_conversation(user_id, conversation_id)
            except ConversationNotFound:
                if user is not None:
                    user.active_conversation_id = None  # a dangling pointer
            return conversation_id

    def update_conversation(
        self, user_id: str, conversation_id: str, *, title: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> Conversation:
        with self._lock:
            header = self._header(user_id, conversation_id)
            header.updated_at = isoformat(utc_now())
            if title is not None:
                header.title = title
            if metadata is not None:
                header.metadata = copy.deepcopy(metadata)
            return copy.deepcopy(header)

    def _header(self, user_id: str, conversation_id: str) -> Conversation:
        thread = self._threads.get((user_id, conversation_id))
        if thread is None:
            raise ConversationNotFound(conversation_id)
        return thread.header

    # ------------------------------------------------------------------ messages

    def _check_size(self, message: Message) -> None:
        size = (
            len(message.content.encode())
            + len(json.dumps(message.metadata, ensure_ascii=False).encode())
            + sum(len(url.encode()) for url in message.media_urls)
            + 200  # ids, timestamp, role and position
        )
        if size > self.max_message_bytes:
            raise MessageTooLarge(f"message would take {size} bytes; the limit is {self.max_message_bytes}")

    def _writable(self, user_id: str, conversation_id: str | None, *, create: bool = False) -> _Thread:
        """Return the thread an append goes to: the pinned one (checked) or the active one."""
        if conversation_id is None:
            active = self.start_conversation(user_id)
            return self._threads[(user_id, active)]
        thread = self._threads.get((user_id, conversation_id))
        if thread is None and create:
            thread = self._new_thread(user_id, conversation_id, isoformat(utc_now()), active=True)
        if thread is None:
            raise ConversationNotFound(conversation_id)
        if thread.header.deleted_at:
            raise ConversationNotFound(f"{conversation_id} is deleted")
        return thread

    def _store(self, user_id: str, thread: _Thread, batch: list[tuple[str, Message]],
               counters: dict[str, int] | None) -> None:
        header = thread.header
        now = isoformat(utc_now())
        for position, message in batch:
            message.conversation_id = header.conversation_id
            message.position = position
            thread.messages[position] = copy.deepcopy(message)
            header.role_counts[message.role] = header.role_counts.get(message.role, 0) + 1
        header.message_count += len(batch)
        for name, amount in (counters or {}).items():
            if not name.isidentifier():
                raise ValueError(f"counter name {name!r} is not an identifier")
            header.counters[name] = header.counters.get(name, 0) + int(amount)
        last = batch[-1][1]
        header.updated_at = now
        header.last_message_at = last.timestamp
        header.preview = preview_of(last)
        thread.activity = f"{now[:16]}#{user_id}#{header.conversation_id}"

    def append(
        self,
        user_id: str,
        message: Message,
        *,
        conversation_id: str | None = None,
        idempotent: bool = False,
        reply_to: Message | None = None,
        counters: dict[str, int] | None = None,
        active_hint: str | None = None,
        guard: TextGuard | None = None, release_lease: str | None = None,
        reply_guard: ReplyGuard | None = None,
    ) -> Recorded:
        del active_hint  # nothing to save: the active conversation is known
        if reply_to is not None:
            if not reply_to.position or not reply_to.conversation_id:
                raise ValueError("reply_to must be a stored message")
            conversation_id = reply_to.conversation_id
            message.reply_to = reply_to.message_id
        self._check_size(message)
        with self._lock, self._work_lock:
            if idempotent:
                existing = self.get_message(user_id, message.message_id)
                if existing is not None:
                    return Recorded(existing, created=False)
            thread = self._writable(user_id, conversation_id)
            if reply_to is not None and reply_to.position is not None:
                position = reply_to.position + "#R"
                if position in thread.messages:
                    return Recorded(copy.deepcopy(thread.messages[position]), created=False)
            else:
                position = f"{_time_key(message.timestamp)}#{secrets.token_hex(4)}"
            finished = False
            if guard is not None or release_lease or reply_guard is not None:  # all or nothing (GuardFailed)
                note, user = (guard.work if guard is not None else None), self._users.get(user_id)
                failed = self.work_failures(user_id, note, reply_guard)
                opted_out = user is not None and user.opted_out
                if reply_guard is not None and reply_guard.not_opted_out and opted_out:
                    failed.append(OPTED_OUT)
                self.guarded(user_id, guard, release_lease, user, failed)
                finished = self.work_apply(user_id, note, reply_guard)
            self._store(user_id, thread, [(position, message)], counters)
            if idempotent:
                self._markers[(user_id, message.message_id)] = (thread.header.conversation_id, position)
            return Recorded(message, created=True, finished=finished)

    def get_message(self, user_id: str, message_id: str) -> Message | None:
        with self._lock:
            where = self._markers.get((user_id, message_id))
            if where is None:
                return None
            return self._at(user_id, *where)

    def _at(self, user_id: str, conversation_id: str, position: str) -> Message | None:
        thread = self._threads.get((user_id, conversation_id))
        message = thread.messages.get(position) if thread else None
        return copy.deepcopy(message) if message else None

    def get_reply(self, user_id: str, message: Message) -> Message | None:
        if not message.position or not message.conversation_id:
            return None
        with self._lock:
            return self._at(user_id, message.conversation_id, message.position + "#R")

    def _ordered(self, user_id: str, conversation_id: str) -> list[Message]:
        thread = self._threads.get((user_id, conversation_id))
        if thread is None:
            return []
        return [thread.messages[position] for position in sorted(thread.messages)]

    def recent_messages(self, user_id: str, conversation_id: str, limit: int) -> list[Message]:
        if limit <= 0:
            return []
        with self._lock:
            return copy.deepcopy(self._ordered(user_id, conversation_id)[-limit:])

    def append_many(
        self,
        user_id: str,
        messages: list[Message],
        *,
        conversation_id: str | None = None,
        create: bool = False,
        counters: dict[str, int] | None = None,
        sequenced: bool = False,
    ) -> list[Message]:
        if not messages:
            return []
        if (create or sequenced) and conversation_id is None:
            raise ValueError("create and sequenced need a conversation_id")
        for message in messages:
            self._check_size(message)
        base = f"{_time_key(messages[0].timestamp)}#{secrets.token_hex(4)}"
        width = max(4, len(str(len(messages) - 1)))
        with self._lock:
            thread = self._writable(user_id, conversation_id, create=create)
            if sequenced:
                # The same positions as the DynamoDB store: call order, never the clock.
                first, thread.seq = thread.seq + 1, thread.seq + len(messages)
                batch = [(f"S{first + index:020d}", m) for index, m in enumerate(messages)]
            else:
                batch = [(f"{base}.{index:0{width}d}", m) for index, m in enumerate(messages)]
            self._store(user_id, thread, batch, counters)
        return messages

    def pop_newest(self, user_id: str, conversation_id: str) -> Message | None:
        with self._lock:
            thread = self._threads.get((user_id, conversation_id))
            if thread is None or not thread.messages:
                return None
            message = thread.messages.pop(max(thread.messages))
            thread.header.message_count -= 1
            thread.header.role_counts[message.role] -= 1
            return message

    def clear_conversation(self, user_id: str, conversation_id: str) -> int:
        with self._lock:
            thread = self._threads.pop((user_id, conversation_id), None)
            return 0 if thread is None else len(thread.messages) + 1

    # ------------------------------------------------------------------ listings

    def _page(self, rows: list[tuple[str, Any]], *, limit: int, cursor: str | None,
              scope: dict[str, Any]) -> Page:
        """Page through ``rows`` (sorted by key, in listing order) after the cursor's key."""
        limit = max(1, min(int(limit), MAX_PAGE_SIZE))
        if cursor:
            payload = decode_cursor(cursor)
            after = payload.pop("after", None)
            if payload != scope or not isinstance(after, str):
                raise InvalidCursor("cursor belongs to another listing")
            descending = scope.get("d") == "desc"
            rows = [row for row in rows if (row[0] < after if descending else row[0] > after)]
        page = rows[:limit]
        next_cursor = None
        if len(rows) > limit:
            next_cursor = encode_cursor({**scope, "after": page[-1][0]})
        return Page(items=[copy.deepcopy(item) for _, item in page], cursor=next_cursor)

    def list_messages(
        self, user_id: str, conversation_id: str, *, limit: int = 50, cursor: str | None = None,
        newest_first: bool = False,
    ) -> Page:
        with self._lock:
            rows = [(m.position or "", m) for m in self._ordered(user_id, conversation_id)]
        direction = "desc" if newest_first else "asc"
        if newest_first:
            rows.reverse()
        scope = {"k": "m", "u": user_id, "c": conversation_id, "d": direction}
        return self._page(rows, limit=limit, cursor=cursor, scope=scope)

    def list_conversations(
        self, user_id: str, *, limit: int = 20, cursor: str | None = None, include_deleted: bool = False
    ) -> Page:
        with self._lock:
            rows = [
                (cid, thread.header)
                for (uid, cid), thread in self._threads.items()
                if uid == user_id and (include_deleted or not thread.header.deleted_at)
            ]
        rows.sort(key=lambda row: row[0], reverse=True)
        return self._page(rows, limit=limit, cursor=cursor, scope={"k": "c", "u": user_id, "d": "desc"})

    def list_recent_conversations(self, *, limit: int = 20, cursor: str | None = None) -> Page:
        with self._lock:
            rows = [
                (thread.activity, thread.header)
                for thread in self._threads.values()
                if thread.activity is not None and not thread.header.deleted_at
            ]
        rows.sort(key=lambda row: row[0], reverse=True)
        return self._page(rows, limit=min(int(limit), 100), cursor=cursor, scope={"k": "r", "d": "desc"})

    def first_and_last(self, user_id: str, conversation_id: str) -> tuple[Message | None, Message | None]:
        with self._lock:
            ordered = self._ordered(user_id, conversation_id)
            if not ordered:
                return None, None
            return copy.deepcopy(ordered[0]), copy.deepcopy(ordered[-1])

    # ------------------------------------------------------------------ deletion and export

    def soft_delete_conversation(self, user_id: str, conversation_id: str) -> Conversation:
        now = isoformat(utc_now())
        with self._lock:
            header = self._header(user_id, conversation_id)
            self.archive_conversation(user_id, conversation_id)
            header.deleted_at = header.deleted_at or now
            header.is_active = False
            header.updated_at = now
            self._threads[(user_id, conversation_id)].activity = None
            return copy.deepcopy(header)

    def hard_delete_conversation(self, user_id: str, conversation_id: str) -> int:
        with self._lock:
            if (user_id, conversation_id) not in self._threads:
                raise ConversationNotFound(conversation_id)
            self.archive_conversation(user_id, conversation_id)
            markers = [
                key for key, (cid, _) in self._markers.items() if key[0] == user_id and cid == conversation_id
            ]
            for marker in markers:
                del self._markers[marker]
            return len(markers) + self.clear_conversation(user_id, conversation_id)

    def erase_user(self, user_id: str) -> int:
        with self._lock:
            erased = self.forget(user_id) + self.forget_work(user_id)  # lease, counters, work
            for key in [key for key in self._threads if key[0] == user_id]:
                erased += self.clear_conversation(*key)
            for key in [key for key in self._markers if key[0] == user_id]:
                del self._markers[key]
                erased += 1
            return erased + (self._users.pop(user_id, None) is not None)

    def iter_user_items(self, user_id: str) -> Iterator[dict[str, Any]]:
        with self._lock:
            records: list[dict[str, Any]] = []
            for (uid, _), thread in sorted(self._threads.items()):
                if uid != user_id:
                    continue
                records.append({"type": "conversation", **thread.header.to_dict()})
                messages = self._ordered(uid, thread.header.conversation_id)
                records += [{"type": "message", **message.to_dict()} for message in messages]
            user = self._users.get(user_id)
            if user is not None:
                records.append({"type": "user", **user.to_dict()})
        return iter(records)
