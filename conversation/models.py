"""Plain data models for conversations and messages; no storage details here."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

ROLES = ("user", "assistant", "system")
# A conversation's preview is the start of its last message.
PREVIEW_CHARS = 120
# A reply's delivery state: the metadata keys that record how far its sending got. A store
# keeps them apart from the rest of the metadata, so each step is one conditional write on
# them (``set_delivery``) that no other metadata update (a status callback) can disturb.
DELIVERY_FIELDS = (
    "delivery", "sending_owner", "sending_at", "outbound_sid", "recovered", "not_sent",
    "delivery_error_code", "delivery_status",
)
# The largest page a listing returns, whatever the caller asks for.
MAX_PAGE_SIZE = 1000


def utc_now() -> datetime:
    """Return the current time as an aware UTC datetime."""
    return datetime.now(UTC)


def isoformat(moment: datetime) -> str:
    """Format an aware datetime as ISO 8601 UTC with microseconds and a Z."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_iso(text: str) -> datetime:
    """Parse a timestamp written by :func:`isoformat` (or any ISO 8601 form)."""
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def preview_of(message: Message) -> str:
    """Return the preview a conversation shows when ``message`` is its last one."""
    return message.content[:PREVIEW_CHARS] or ("[media]" if message.media_urls else "")


def new_message_id() -> str:
    """Return a fresh random message id."""
    return "msg_" + secrets.token_hex(12)


@dataclass
class Message:
    """One message of a conversation.

    ``position`` and ``conversation_id`` are filled in by the store once the
    message is saved; ``position`` is opaque and orders messages within a
    conversation.
    """

    content: str
    role: str = "user"
    timestamp: str = field(default_factory=lambda: isoformat(utc_now()))
    message_id: str = field(default_factory=new_message_id)
    media_urls: list[str] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    reply_to: str | None = None
    conversation_id: str | None = None
    position: str | None = None

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}, not {self.role!r}")
        if not isinstance(self.content, str):
            raise TypeError("content must be a string")

    def precedes(self, other: Message) -> bool:
        """Return whether this message sits before ``other`` in the same conversation.

        Positions are opaque, but the store guarantees they order the messages
        of one conversation (a reply right after the text it answers).
        """
        return (
            self.conversation_id is not None
            and self.conversation_id == other.conversation_id
            and self.position is not None
            and other.position is not None
            and self.position < other.position
        )

    def to_chat(self) -> dict[str, str]:
        """Return the role/content pair a chat model expects."""
        return {"role": self.role, "content": self.content}

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict of every field."""
        return {
            "message_id": self.message_id,
            "role": self.role,
            "content": self.content,
            "timestamp": self.timestamp,
            "media_urls": list(self.media_urls),
            "metadata": dict(self.metadata),
            "reply_to": self.reply_to,
            "conversation_id": self.conversation_id,
        }


@dataclass
class Summary:
    """The running summary of a conversation's earlier messages.

    ``upto`` is the position of the newest message folded into it and ``count``
    how many messages it covers; ``text`` is None once an operator cleared it
    (the messages stay folded, so they are not summarised again).
    """

    text: str | None
    upto: str | None = None
    count: int = 0
    updated_at: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return {
            "summary": self.text,
            "covers_messages": self.count,
            "covers_up_to": self.upto,
            "updated_at": self.updated_at,
        }


@dataclass
class Conversation:
    """A conversation header plus, when loaded, a window of its newest messages."""

    user_id: str
    conversation_id: str
    created_at: str
    updated_at: str
    last_message_at: str | None = None
    is_active: bool = True
    title: str | None = None
    message_count: int = 0
    role_counts: dict[str, int] = field(default_factory=dict)
    counters: dict[str, int] = field(default_factory=dict)
    preview: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    deleted_at: str | None = None
    summary: Summary | None = None
    messages: list[Message] = field(default_factory=list)

    def get_formatted_history(self) -> list[dict[str, str]]:
        """Return the loaded messages as role/content dicts, oldest first."""
        return [message.to_chat() for message in self.messages]

    def to_dict(self, *, with_messages: bool = False) -> dict[str, Any]:
        """Return a JSON-ready dict of the header (and the loaded messages if asked)."""
        data: dict[str, Any] = {
            "user_id": self.user_id,
            "conversation_id": self.conversation_id,
            "title": self.title,
            "is_active": self.is_active,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "last_message_at": self.last_message_at,
            "message_count": self.message_count,
            "role_counts": dict(self.role_counts),
            "counters": dict(self.counters),
            "preview": self.preview,
            "metadata": dict(self.metadata),
            "deleted_at": self.deleted_at,
        }
        if with_messages:
            data["messages"] = [message.to_dict() for message in self.messages]
        return data


@dataclass
class User:
    """What the store keeps about a number: its active conversation and opt-out state."""

    user_id: str
    active_conversation_id: str | None = None
    opted_out: bool = False
    conversation_count: int = 0
    created_at: str | None = None
    updated_at: str | None = None
    opt_out_changed_at: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON-ready form used in exports."""
        return {
            "user_id": self.user_id,
            "created_at": self.created_at,
            "active_conversation_id": self.active_conversation_id,
            "opted_out": self.opted_out,
            "conversation_count": self.conversation_count,
        }


@dataclass
class Page:
    """One page of a listing; ``cursor`` is None on the last page."""

    items: list[Any]
    cursor: str | None = None


@dataclass
class Recorded:
    """The outcome of an idempotent append: the stored message and whether it is new.

    ``finished``: the append also ended the number's work (``ReplyGuard.finish_version``).
    """

    message: Message
    created: bool
    finished: bool = False
