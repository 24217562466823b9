"""Recording Twilio's delivery status callbacks on the stored reply, in one write when it can.

A callback names the text the reply answers (``sid``) and, for replies sent through the
Messages API, where that text is stored (``c`` and ``p``, see :mod:`app.callback_urls`):
then the status is one conditional write on the reply, with no read. Otherwise the text is
looked up by its SID first (one read of its id marker and one of the text).

Callbacks can arrive out of order; a status never replaces a later one (``STATUS_RANK``),
and the conversation counts a failed delivery once, in the same write as the status.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from conversation.errors import ConversationNotFound, StaleMetadata
from conversation.manager import ConversationManager
from conversation.models import Message
from conversation.store import ConversationStore

FAILED_STATUSES = ("failed", "undelivered")
# Later statuses never go back to earlier ones when callbacks arrive out of order.
STATUS_RANK = {"accepted": 0, "scheduled": 0, "queued": 1, "sending": 2, "sent": 3,
               "delivered": 4, "undelivered": 4, "failed": 4, "read": 5}
# What a conversation id or a position in a callback URL may look like (we wrote them).
_STORED_PLACE = re.compile(r"[A-Za-z0-9#._:-]{1,100}")

RECORDED, LATE, UNKNOWN = "recorded", "late", "unknown"


@dataclass(frozen=True)
class StatusRecorded:
    """What became of one callback: recorded, late (a later status is kept) or unknown (no reply),
    and whether this status is the reply's first failure."""

    outcome: str
    failed_now: bool = False


def stored_text(sid: str, conversation_id: str | None, position: str | None) -> Message | None:
    """The text a callback URL names by where it is stored, or None when the URL does not."""
    if not conversation_id or not position:
        return None
    if not (_STORED_PLACE.fullmatch(conversation_id) and _STORED_PLACE.fullmatch(position)):
        return None
    return Message(content="", role="user", message_id=sid, conversation_id=conversation_id,
                   position=position)


def record_status(
    store: ConversationStore, manager: ConversationManager, number: str, sid: str,
    text: Message | None, status: str, updates: dict[str, object],
) -> StatusRecorded:
    """Record ``status`` (and ``updates``: the outbound SID, an error code) on the reply to the
    text ``sid`` (found through ``text`` when given, else looked up)."""
    if text is None:
        text = manager.get_message(number, sid)
        if text is None:
            return StatusRecorded(UNKNOWN)
    reply = store.reply_ref(text)
    later = [name for name, rank in STATUS_RANK.items() if rank > STATUS_RANK.get(status, 0)]
    values = {"delivery_status": status, **updates}
    try:
        if status in FAILED_STATUSES:
            try:  # the first failure is counted on the conversation in the same write
                store.set_delivery(number, reply, values, counters={"delivery_failures": 1},
                                   unless={"delivery_status": [*later, *FAILED_STATUSES]})
                return StatusRecorded(RECORDED, failed_now=True)
            except StaleMetadata:
                pass  # it failed before (or a later status came first)
        store.set_delivery(number, reply, values, unless={"delivery_status": later})
    except StaleMetadata:
        return StatusRecorded(LATE)
    except ConversationNotFound:
        return StatusRecorded(UNKNOWN)
    return StatusRecorded(RECORDED)
