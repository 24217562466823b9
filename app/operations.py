"""What an operator may do to stored conversations, shared by the API and the console.

Each function checks its inputs, refuses with an :class:`OperatorError` (a
stable code, a message and the offending field), calls the conversation
manager and writes one audit line with the number masked. The API answers an
OperatorError as JSON; the console shows its message.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from app.logutil import mask_number
from conversation import Conversation, ConversationManager, Message, Page, is_valid_user_id
from conversation.models import Summary

log = logging.getLogger(__name__)

NUMBER_RULE = (
    "number must be a sender id: an E.164 number like +15551234567, a channel sender like "
    "whatsapp:+15551234567, or an agent session id; 1-256 characters without whitespace "
    "or any of # / ? % \\"
)
# Opaque to the store's layout: any short id made of these characters is
# looked up, and an unknown one is a 404.
CONVERSATION_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
MAX_TITLE_CHARS = 200


class OperatorError(Exception):
    """An operator request refused, with an HTTP status, a stable code and the offending field."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field


def is_valid_number(number: str) -> bool:
    """Return whether ``number`` names a sender the store can hold (``conversation.ids``).

    That is every id the webhook accepts: an E.164 number, a channel-prefixed
    sender (``whatsapp:+15551234567``) or an agent session (``agent:<id>``).
    """
    return is_valid_user_id(number)


def check_number(number: str) -> str:
    """Return the number if it is a valid user id, else refuse."""
    if not is_valid_number(number):
        raise OperatorError(400, "invalid_number", NUMBER_RULE, "number")
    return number


def check_conversation_id(conversation_id: str) -> str:
    """Return the id if it has the shape of a conversation id, else refuse."""
    if not CONVERSATION_ID.match(conversation_id or ""):
        raise OperatorError(
            400, "invalid_conversation_id",
            "conversation_id must be 1-64 letters, digits, '.', '_' or '-'", "conversation_id",
        )
    return conversation_id


def check_title(title: Any) -> str:
    """Return the title stripped if it is a usable one, else refuse."""
    if not isinstance(title, str) or not title.strip() or len(title) > MAX_TITLE_CHARS:
        raise OperatorError(
            400, "invalid_title",
            f"title must be a non-blank string of at most {MAX_TITLE_CHARS} characters", "title",
        )
    try:
        title.encode("utf-8")
    except UnicodeEncodeError:
        raise OperatorError(400, "invalid_title", "title must be valid Unicode text", "title") from None
    return title.strip()


def audit(action: str, number: str | None = None, conversation_id: str | None = None, **extra: Any) -> None:
    """Log one INFO line for an operator action (number masked, no content)."""
    details = " ".join(f"{key}={value}" for key, value in extra.items())
    log.info(
        "operator %s number=%s conversation=%s %s",
        action, mask_number(number), conversation_id or "-", details,
    )


# ------------------------------------------------------------------- reads


def recent_conversations(manager: ConversationManager, *, limit: int, cursor: str | None, via: str) -> Page:
    """Return one page of conversations across all numbers, newest activity first."""
    page = manager.list_recent_conversations(limit=limit, cursor=cursor)
    audit("list_recent", count=len(page.items), via=via)
    return page


def number_conversations(
    manager: ConversationManager, number: str, *, limit: int, cursor: str | None, via: str
) -> Page:
    """Return one page of a number's conversations, newest first."""
    page = manager.list_conversations(check_number(number), limit=limit, cursor=cursor)
    audit("list_conversations", number, count=len(page.items), via=via)
    return page


def get_conversation(
    manager: ConversationManager, number: str, conversation_id: str, *, via: str
) -> Conversation:
    """Return one conversation's header (ConversationNotFound when unknown)."""
    conversation = manager.get_conversation(check_number(number), check_conversation_id(conversation_id))
    audit("get_conversation", number, conversation_id, via=via)
    return conversation


def conversation_messages(
    manager: ConversationManager,
    number: str,
    conversation_id: str,
    *,
    limit: int,
    cursor: str | None,
    newest_first: bool = False,
    via: str,
) -> Page:
    """Return one page of a conversation's messages."""
    page = manager.list_messages(
        check_number(number), check_conversation_id(conversation_id),
        limit=limit, cursor=cursor, newest_first=newest_first,
    )
    audit("list_messages", number, conversation_id, count=len(page.items), via=via)
    return page


def get_summary(
    manager: ConversationManager, number: str, conversation_id: str, *, via: str
) -> dict[str, Any]:
    """Return a conversation's running summary as a JSON-ready dict (summary null when none)."""
    number, conversation_id = check_number(number), check_conversation_id(conversation_id)
    summary = manager.get_summary(number, conversation_id)
    audit("get_summary", number, conversation_id, via=via)
    return summary_view(number, conversation_id, summary)


def summary_view(number: str, conversation_id: str, summary: Summary | None) -> dict[str, Any]:
    """Return the operator's view of a running summary."""
    data = (summary or Summary(text=None)).to_dict()
    return {"number": number, "conversation_id": conversation_id, **data}


# ------------------------------------------------------------------ writes


def clear_summary(manager: ConversationManager, number: str, conversation_id: str, *, via: str) -> bool:
    """Forget a conversation's running summary; False when it had none."""
    number, conversation_id = check_number(number), check_conversation_id(conversation_id)
    cleared = manager.clear_summary(number, conversation_id)
    audit("clear_summary", number, conversation_id, cleared=cleared, via=via)
    return cleared



def update_conversation(
    manager: ConversationManager,
    number: str,
    conversation_id: str,
    *,
    title: Any = None,
    archive: bool = False,
    via: str,
) -> Conversation:
    """Rename and/or archive a conversation (archive first: a conflict changes nothing)."""
    number, conversation_id = check_number(number), check_conversation_id(conversation_id)
    if title is not None:
        title = check_title(title)
    conversation = manager.get_conversation(number, conversation_id)
    if conversation.deleted_at:
        raise OperatorError(409, "conversation_deleted", "the conversation is deleted")
    if archive:
        if not manager.archive_conversation(number, conversation_id):
            raise OperatorError(409, "already_archived", "the conversation is already archived", "archived")
        audit("archive", number, conversation_id, via=via)
    if title is not None:
        manager.rename_conversation(number, conversation_id, title)
        audit("rename", number, conversation_id, via=via)
    return manager.get_conversation(number, conversation_id)


def delete_conversation(
    manager: ConversationManager, number: str, conversation_id: str, *, hard: bool, via: str
) -> int:
    """Soft-delete a conversation (hidden, kept) or hard-delete it; return items deleted."""
    number, conversation_id = check_number(number), check_conversation_id(conversation_id)
    conversation = manager.get_conversation(number, conversation_id)
    if not hard and conversation.deleted_at:
        raise OperatorError(409, "already_deleted", "the conversation is already deleted")
    deleted = manager.delete_conversation(number, conversation_id, hard=hard)
    audit("delete", number, conversation_id, hard=hard, items=deleted, via=via)
    return deleted


def reset_number(manager: ConversationManager, number: str, *, via: str) -> str | None:
    """Archive the number's active conversation, exactly like texting "reset"."""
    archived = manager.reset_conversation(check_number(number))
    audit("reset", number, archived, via=via)
    return archived


def export_number(manager: ConversationManager, number: str, *, via: str) -> dict[str, Any]:
    """Return everything stored for a number as one JSON-ready document."""
    document = manager.export_user(check_number(number))
    audit("export", number, conversations=len(document.get("conversations", [])), via=via)
    return document


def erase_number(manager: ConversationManager, number: str, *, via: str) -> int:
    """Delete everything stored for a number; safe to repeat. Return items deleted."""
    erased = manager.erase_user(check_number(number))
    audit("erase", number, items=erased, via=via)
    return erased


def message_view(message: Message) -> dict[str, Any]:
    """Return a message as operators see it (the API's JSON and the console's rows)."""
    return message.to_dict()
