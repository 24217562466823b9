"""High-level conversation operations on top of a store."""

from __future__ import annotations

from typing import Any

from conversation import defaults
from conversation.active_ids import ActiveIds
from conversation.errors import ConversationNotFound, MessageTooLarge
from conversation.guards import ReplyGuard, TextGuard
from conversation.ids import check_user_id
from conversation.models import Conversation, Message, Page, Recorded, Summary, parse_iso
from conversation.storage import DynamoDBStorage
from conversation.store import ConversationStore

# An SMS body is at most 1,600 characters; replies are held to the same cap.
DEFAULT_MAX_CONTENT_CHARS = 1600
DEFAULT_HISTORY_LIMIT = defaults.HISTORY_MAX_MESSAGES


class ConversationManager:
    """Add messages, load history windows and reset conversations for a user.

    :param storage: any :class:`ConversationStore`; a :class:`DynamoDBStorage` on the
        default table when omitted.
    :param history_limit: how many of the newest messages a loaded conversation carries.
    :param max_content_chars: longest message content accepted, in characters.

    The manager remembers the active conversation id it last read or wrote for each
    number (:class:`conversation.active_ids.ActiveIds`), so a turn does not look it up
    again for every call; writes with a remembered id are conditioned on the
    conversation still being active, reads check its header.
    """

    def __init__(
        self,
        storage: ConversationStore | None = None,
        *,
        history_limit: int = DEFAULT_HISTORY_LIMIT,
        max_content_chars: int = DEFAULT_MAX_CONTENT_CHARS,
    ) -> None:
        self.storage: ConversationStore = storage if storage is not None else DynamoDBStorage()
        self.history_limit = history_limit
        self.max_content_chars = max_content_chars
        self.active_ids = ActiveIds()

    # ---------------------------------------------------------------- writes

    def _check(self, content: str) -> None:
        if not isinstance(content, str):
            raise TypeError("content must be a string")
        if len(content) > self.max_content_chars:
            raise MessageTooLarge(
                f"message has {len(content)} characters; the limit is {self.max_content_chars}"
            )

    def record_user_message(
        self,
        user_id: str,
        content: str,
        *,
        message_id: str | None = None,
        media_urls: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        conversation_hint: str | None = None,
        guard: TextGuard | None = None,
    ) -> Recorded:
        """Store a user's message once; a repeated ``message_id`` returns the first copy.

        ``conversation_hint`` is the active conversation id from :meth:`get_user_state`,
        if the caller has it; otherwise the one this manager last saw for the number
        is tried (either saves a read; a stale one only costs a retry).
        With ``guard`` the text is stored only if the guard holds, in the same write
        (see :mod:`conversation.guards`); otherwise GuardFailed and nothing is stored.
        """
        self._check(content)
        message = Message(
            content=content,
            role="user",
            media_urls=list(media_urls or []),
            metadata=dict(metadata or {}),
        )
        if message_id:
            message.message_id = message_id
        return self._append_to_active(
            _uid(user_id), message, idempotent=bool(message_id), hint=conversation_hint, guard=guard
        )

    def _append_to_active(
        self,
        user_id: str,
        message: Message,
        *,
        idempotent: bool = False,
        hint: str | None = None,
        counters: dict[str, int] | None = None,
        guard: TextGuard | None = None,
    ) -> Recorded:
        """Append to the active conversation, trying the remembered id first; remember the one used."""
        recorded = self.storage.append(
            user_id,
            message,
            idempotent=idempotent,
            counters=counters,
            active_hint=hint or self.active_ids.get(user_id),
            guard=guard,
        )
        if recorded.created:
            # The append's condition just saw this conversation active. (A repeated id returns
            # the first copy, whose conversation may have been archived since: not remembered.)
            self.active_ids.remember(user_id, recorded.message.conversation_id)
        return recorded

    def add_user_message(
        self,
        user_id: str,
        content: str,
        message_id: str | None = None,
        media_urls: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> Message:
        """Store a user's message and return it (the stored copy if ``message_id`` repeats)."""
        return self.record_user_message(
            user_id, content, message_id=message_id, media_urls=media_urls, metadata=metadata
        ).message

    def record_assistant_message(
        self,
        user_id: str,
        content: str,
        *,
        reply_to: Message | str | None = None,
        metadata: dict[str, Any] | None = None,
        counters: dict[str, int] | None = None,
        release_lease: str | None = None,
        reply_guard: ReplyGuard | None = None,
    ) -> Recorded:
        """Store DadaCat's message; with ``reply_to`` it is the one reply to that message.

        With ``release_lease`` a new reply also gives that owner's turn lease back, in the
        same write (a reply that was already stored leaves the lease alone). With
        ``reply_guard`` it is stored only under the number's work claim, which the same
        write renews or ends (see :class:`conversation.guards.ReplyGuard`).
        """
        self._check(content)
        parent = self._resolve(user_id, reply_to)
        message = Message(content=content, role="assistant", metadata=dict(metadata or {}))
        if parent is None and release_lease is None and reply_guard is None:
            return self._append_to_active(_uid(user_id), message, counters=counters)
        return self.storage.append(
            _uid(user_id), message, reply_to=parent, counters=counters, release_lease=release_lease,
            reply_guard=reply_guard,
        )

    def add_assistant_message(
        self,
        user_id: str,
        content: str,
        reply_to: Message | str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> Message:
        """Store DadaCat's message and return it."""
        return self.record_assistant_message(
            user_id, content, reply_to=reply_to, metadata=metadata
        ).message

    def add_system_message(self, user_id: str, content: str) -> Message:
        """Store a system note in the active conversation and return it."""
        self._check(content)
        return self._append_to_active(_uid(user_id), Message(content=content, role="system")).message

    def _resolve(self, user_id: str, reply_to: Message | str | None) -> Message | None:
        if reply_to is None or isinstance(reply_to, Message):
            return reply_to
        parent = self.storage.get_message(_uid(user_id), reply_to)
        if parent is None:
            raise ConversationNotFound(f"no message with id {reply_to!r}")
        return parent

    # ----------------------------------------------------------------- reads

    def get_or_create_conversation(
        self, user_id: str, *, history_limit: int | None = None
    ) -> Conversation:
        """Return the active conversation with its newest messages, starting one if needed."""
        user_id = _uid(user_id)
        conversation = self._active_conversation(user_id)
        if conversation is None:
            conversation_id = self.storage.start_conversation(user_id)
            conversation = self.storage.get_conversation(user_id, conversation_id)
            if conversation is None:
                raise ConversationNotFound(conversation_id)
            self.active_ids.remember(user_id, conversation_id)
        limit = self.history_limit if history_limit is None else history_limit
        conversation.messages = self.storage.recent_messages(
            user_id, conversation.conversation_id, limit
        )
        return conversation

    def _active_conversation(self, user_id: str) -> Conversation | None:
        """Return the active conversation's header: one read when its id is remembered.

        The remembered id is checked against the header it reads (still active, not
        deleted); a stale one falls back to the user record.
        """
        remembered = self.active_ids.get(user_id)
        if remembered is not None:
            header = self.storage.get_conversation(user_id, remembered)
            if header is not None and header.is_active and header.deleted_at is None:
                return header
            self.active_ids.forget(user_id, remembered)
        conversation = self.storage.get_active_conversation(user_id)
        if conversation is not None:
            self.active_ids.remember(user_id, conversation.conversation_id)
        return conversation

    def get_history(
        self, user_id: str, limit: int | None = None, *, conversation_id: str | None = None
    ) -> list[Message]:
        """Return the newest messages of a conversation (the active one by default), oldest first.

        Costs one Query, plus one GetItem (the active conversation pointer)
        when no ``conversation_id`` is given.
        """
        limit = self.history_limit if limit is None else limit
        if conversation_id is None:
            user = self.storage.get_user(_uid(user_id))
            if user is None or not user.active_conversation_id:
                return []
            conversation_id = user.active_conversation_id
        return self.storage.recent_messages(_uid(user_id), conversation_id, limit)

    def get_user_state(self, user_id: str) -> dict[str, Any]:
        """Return the number's opt-out state and active conversation id, in one read."""
        user = self.storage.get_user(_uid(user_id))
        return {
            "opted_out": user is not None and user.opted_out,
            "active_conversation_id": user.active_conversation_id if user is not None else None,
        }

    def get_message(self, user_id: str, message_id: str) -> Message | None:
        """Return a message stored under a caller-given id, or None."""
        return self.storage.get_message(_uid(user_id), message_id)

    def get_reply(self, user_id: str, message: Message) -> Message | None:
        """Return the reply already stored for a message, or None."""
        return self.storage.get_reply(_uid(user_id), message)

    def get_message_count(self, user_id: str) -> int:
        """Return how many messages the active conversation holds."""
        conversation = self._active_conversation(_uid(user_id))
        return conversation.message_count if conversation else 0

    def get_conversation(self, user_id: str, conversation_id: str) -> Conversation:
        """Return a conversation header; raise ConversationNotFound if unknown."""
        conversation = self.storage.get_conversation(_uid(user_id), conversation_id)
        if conversation is None:
            raise ConversationNotFound(conversation_id)
        return conversation

    def list_conversations(self, user_id: str, *, limit: int = 20, cursor: str | None = None) -> Page:
        """Return one page of a user's conversations, newest first."""
        return self.storage.list_conversations(_uid(user_id), limit=limit, cursor=cursor)

    def list_messages(
        self,
        user_id: str,
        conversation_id: str,
        *,
        limit: int = 50,
        cursor: str | None = None,
        newest_first: bool = False,
    ) -> Page:
        """Return one page of a conversation's messages."""
        self.get_conversation(user_id, conversation_id)
        return self.storage.list_messages(
            _uid(user_id), conversation_id, limit=limit, cursor=cursor, newest_first=newest_first
        )

    def list_recent_conversations(self, *, limit: int = 20, cursor: str | None = None) -> Page:
        """Return conversations across all users, newest activity first."""
        return self.storage.list_recent_conversations(limit=limit, cursor=cursor)

    def conversation_stats(self, user_id: str, conversation_id: str) -> dict[str, Any]:
        """Return counts, first/last message times, duration and usage counters."""
        conversation = self.get_conversation(user_id, conversation_id)
        first, last = self.storage.first_and_last(_uid(user_id), conversation_id)
        duration = None
        if first and last:
            duration = (parse_iso(last.timestamp) - parse_iso(first.timestamp)).total_seconds()
        return {
            "conversation_id": conversation_id,
            "message_count": conversation.message_count,
            "by_role": dict(conversation.role_counts),
            "first_message_at": first.timestamp if first else None,
            "last_message_at": last.timestamp if last else None,
            "duration_seconds": duration,
            "counters": dict(conversation.counters),
        }

    # -------------------------------------------------------------- summary

    def get_summary(self, user_id: str, conversation_id: str) -> Summary | None:
        """Return a conversation's running summary (None before the first one)."""
        return self.get_conversation(user_id, conversation_id).summary

    def clear_summary(self, user_id: str, conversation_id: str) -> bool:
        """Forget a conversation's summary; False when it had none."""
        self.get_conversation(user_id, conversation_id)
        return self.storage.clear_summary(_uid(user_id), conversation_id)

    # ---------------------------------------------------------- life cycle

    def reset_conversation(self, user_id: str) -> str | None:
        """Archive the active conversation (O(1)); the next message starts a new one.

        Returns the archived conversation's id, or None when there was none.
        """
        user_id = _uid(user_id)
        try:
            return self.storage.reset(user_id)
        finally:
            self.active_ids.forget(user_id)

    def archive_conversation(self, user_id: str, conversation_id: str) -> bool:
        """Archive one conversation; False when it already was."""
        user_id = _uid(user_id)
        try:
            return self.storage.archive_conversation(user_id, conversation_id)
        finally:
            self.active_ids.forget(user_id, conversation_id)

    def rename_conversation(self, user_id: str, conversation_id: str, title: str) -> Conversation:
        """Set a conversation's title."""
        return self.storage.update_conversation(_uid(user_id), conversation_id, title=title)

    def delete_conversation(self, user_id: str, conversation_id: str, *, hard: bool = False) -> int:
        """Soft-delete a conversation (hidden, kept) or hard-delete it; return items deleted."""
        self.active_ids.forget(_uid(user_id), conversation_id)
        if hard:
            return self.storage.hard_delete_conversation(_uid(user_id), conversation_id)
        self.storage.soft_delete_conversation(_uid(user_id), conversation_id)
        return 0

    def export_user(self, user_id: str) -> dict[str, Any]:
        """Return everything stored for a user as one JSON-ready document."""
        user: dict[str, Any] | None = None
        conversations: dict[str, dict[str, Any]] = {}
        messages: list[dict[str, Any]] = []
        for record in self.storage.iter_user_items(_uid(user_id)):
            kind = record.pop("type")
            if kind == "user":
                user = record
            elif kind == "conversation":
                conversations[record["conversation_id"]] = {**record, "messages": []}
            else:
                messages.append(record)
        for message in messages:
            holder = conversations.get(message["conversation_id"])
            if holder is not None:
                holder["messages"].append(message)
        return {
            "user_id": _uid(user_id),
            "user": user,
            "conversations": sorted(
                conversations.values(), key=lambda c: c["conversation_id"], reverse=True
            ),
        }

    def erase_user(self, user_id: str) -> int:
        """Delete everything stored for a user; safe to repeat. Return items deleted."""
        user_id = _uid(user_id)
        try:
            return self.storage.erase_user(user_id)
        finally:
            self.active_ids.forget(user_id)

    def set_opt_out(self, user_id: str, opted_out: bool) -> None:
        """Record the number's opt-out state (STOP / START)."""
        self.storage.set_opt_out(_uid(user_id), opted_out)

    def is_opted_out(self, user_id: str) -> bool:
        """Return whether the number has opted out."""
        return self.get_user_state(user_id)["opted_out"]


def _uid(user_id: str) -> str:
    """Return the user id without surrounding whitespace, or raise InvalidUserId."""
    return check_user_id(user_id.strip() if isinstance(user_id, str) else user_id)
