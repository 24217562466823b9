"""Bursts: which texts one reply answers, in every reply mode.

The texts a turn answers together are the texts it read that no reply covers yet and that
are not deliberately unanswered (opted out, over the rate limit) nor commands; the model
sees them all, in order, and the reply is stored as the reply to the last of them, naming
them all in its metadata (``covers``). A text is *covered* by its own reply or by a reply
that names it; a text the turn could not see (its write landed after the turn's read) is
not covered, and is answered by a later turn.
"""

from __future__ import annotations

from app.delivery import TWIML
from app.limits import backoff_delays
from app.twilio_form import InboundText
from conversation import ConversationManager, StorageError
from conversation.clock import Clock
from conversation.models import Message, parse_iso
from conversation.store import Coordination

# Clocks of two workers may differ this much: a lease must be taken this much later than a
# text was stored to count as having read it.
CLOCK_SLACK_SECONDS = 1.0


def answered_ids(history: list[Message]) -> set[str]:
    """Return the ids of the texts the replies in ``history`` answer (their own and those they cover)."""
    found: set[str] = set()
    for item in history:
        if item.role == "assistant":
            found.update(str(sid) for sid in item.metadata.get("covers") or ())
            if item.reply_to:
                found.add(item.reply_to)
    return found


def unanswered_texts(history: list[Message]) -> list[Message]:
    """Return the texts no reply covers yet, oldest first."""
    answered = answered_ids(history)
    return [item for item in history
            if item.role == "user" and item.message_id not in answered
            and not item.metadata.get("unanswered") and not item.metadata.get("command")]


def covered(history: list[Message], message: Message) -> bool:
    """Return whether a reply in ``history`` answers ``message`` (its own reply, or one covering it)."""
    return message.message_id in answered_ids(history)


def as_inbound(number: str, text: Message) -> InboundText:
    """A stored text as the turn's helpers take it (its body, media and the number it came to)."""
    kinds = list(text.metadata.get("media_content_types") or [])
    media = [(url, kinds[index] if index < len(kinds) else "") for index, url in enumerate(text.media_urls)]
    return InboundText(number=number, sid=text.message_id or "-", body=text.content,
                       to=str(text.metadata.get("to") or ""), media=media)


def repeat_answer(reply: Message, sid: str) -> str | None:
    """What a retried webhook of text ``sid`` answers when the text's reply is stored: the reply
    again only when it went in the answer to this very text, never one sent another way."""
    if reply.metadata.get("delivery") not in (None, TWIML):
        return None
    if reply.metadata.get("answered_in") not in (None, sid):
        return None
    return reply.content


def holder_read(storage: Coordination, number: str, message: Message) -> bool:
    """Return whether the turn holding the number's lease (sync mode) read ``message``: it took
    the lease after the text was stored, so its reply answers this text too."""
    try:
        taken = storage.lease_taken_at(number)
    except StorageError:
        return False
    return taken is not None and taken > parse_iso(message.timestamp).timestamp() + CLOCK_SLACK_SECONDS


def await_reply(manager: ConversationManager, number: str, message: Message, until: float,
                clock: Clock) -> Message | None:
    """Wait (``clock.monotonic()`` up to ``until``) for the reply to ``message`` that another
    attempt at the same text is producing: a retried webhook answers with it, not empty."""
    for delay in backoff_delays(first=0.05):
        try:
            reply = manager.get_reply(number, message)
        except StorageError:
            reply = None
        if reply is not None or clock.monotonic() + delay > until:
            return reply
        clock.sleep(delay)
    return None
