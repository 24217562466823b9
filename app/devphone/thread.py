"""What the dev phone shows: bubbles for stored texts and replies, and the replies sent later.

A reply the webhook did not carry (``REPLY_MODE`` auto or async) is stored first and sent
through the Messages API afterwards, or never (STOP in between). A phone sees it only once
it is sent, so the page takes such a reply from where the bot sent it: the Messages API its
own sender talks to (in ``make run`` the local stand-in, localpeers/fake_twilio.py), read for
the phone's number as ``scripts/sms.py`` reads it. In :func:`thread`, a stored reply sent that
way is shown once the Messages API lists it or the store records it sent with its SID (that
record outlives a restarted stand-in); one still queued or sending shows as "typing", and one
that was never sent is not shown. Every reply sent later is keyed by its message SID, so the
page shows it once whichever source saw it first.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from app.coalesce import unanswered_texts
from app.delivery import PENDING, TWIML
from app.sms import count_segments
from conversation.models import Message, parse_iso

# Shown in a reply's details on the page.
VIA_MESSAGES_API = "sent later through the Messages API"


@dataclass(frozen=True)
class Thread:
    """The bubbles to show, oldest first, and whether a reply is still on its way."""

    messages: list[dict[str, Any]]
    waiting: bool


def bubble(message: Message) -> dict[str, Any]:
    """Return what the page shows for one stored message."""
    meta = message.metadata or {}
    return _bubble(
        message.message_id, message.role, message.content, time=message.timestamp,
        media=list(message.media_urls), status=meta.get("delivery_status"),
        fallback=meta.get("fallback"), unanswered=meta.get("unanswered"), command=meta.get("command"),
    )


def reply_bubbles(sid: str, replies: list[str], stored: Message | None) -> list[dict[str, Any]]:
    """Return bubbles for the TwiML replies, taking id and details from the stored reply."""
    bubbles = []
    for index, text in enumerate(replies):
        if stored is not None and index == 0 and stored.content == text:
            bubbles.append(bubble(stored))
        else:
            bubbles.append(_bubble(f"{sid}-reply-{index}", "assistant", text))
    return bubbles


def unstored_bubble(sid: str, body: str, media: tuple[str, str] | None) -> dict[str, Any]:
    """Return the bubble of a text the webhook took but the store cannot show."""
    return _bubble(sid, "user", body, media=[media[0]] if media else [], unanswered="not stored")


def sent_later(message: Message) -> bool:
    """Return whether a stored reply goes out through the Messages API, not in the webhook's answer."""
    return message.role == "assistant" and (message.metadata or {}).get("delivery") not in (None, TWIML)


def thread(
    history: Sequence[Message], on_phone: Sequence[tuple[str, str]], *, now: float, wait_seconds: float
) -> Thread:
    """Merge the stored conversation with the messages the Messages API lists for the number.

    ``on_phone`` is (SID, body) of the messages sent to the number, oldest first. Only the
    bot's own replies are shown: a listed message appears as the stored reply it is (by the
    SID recorded on it, or, while the reply is still recorded as sending, by its body), so
    nothing else the account sent is shown. A reply is on its way while a text no reply
    covers, or a reply queued or sending and not listed yet, is younger than ``wait_seconds``
    at ``now`` (epoch seconds).
    """
    listed = dict(on_phone)
    recorded = {m.metadata.get("outbound_sid") for m in history if m.metadata}
    # Sent moments ago, its SID not recorded yet: the reply still sending with this body.
    unrecorded = [(sid, body) for sid, body in on_phone if sid not in recorded]
    bubbles: list[dict[str, Any]] = []
    outstanding = unanswered_texts(list(history))
    for message in history:
        if not sent_later(message):
            bubbles.append(bubble(message))
            continue
        meta = message.metadata or {}
        sid = meta.get("outbound_sid")
        pending = meta.get("delivery") in PENDING
        if not sid and pending:
            sid = next((found for found, body in unrecorded if body == message.content), None)
            unrecorded = [(found, body) for found, body in unrecorded if found != sid]
        if sid and (sid in listed or not pending):
            bubbles.append({**bubble(message), "id": sid, "text": listed.get(sid, message.content),
                            "via": VIA_MESSAGES_API})
        elif pending:
            outstanding.append(message)
    waiting = any(now - parse_iso(item.timestamp).timestamp() < wait_seconds for item in outstanding)
    return Thread(bubbles, waiting)


def oldest(history: Sequence[Message]) -> float | None:
    """Return when the oldest message of ``history`` was stored (epoch seconds), or None."""
    return min((parse_iso(item.timestamp).timestamp() for item in history), default=None)


def _bubble(
    id_: str, role: str, text: str, *, time: str | None = None, media: list[str] | None = None,
    status: str | None = None, fallback: Any = None, unanswered: Any = None, command: Any = None,
    via: str | None = None,
) -> dict[str, Any]:
    segments = count_segments(text)
    return {"id": id_, "role": role, "text": text, "time": time, "encoding": segments.encoding,
            "segments": segments.count, "media": media or [], "status": status,
            "fallback": fallback, "unanswered": unanswered, "command": command, "via": via}
