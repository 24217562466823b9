"""The webhook's side of ``auto`` and ``async`` modes: hand a recorded text to a background turn.

The order loses nothing: the text is recorded (by the text handler), then counted on the
number's work item (:meth:`note_text`), then the work is claimed. A claim that fails means
a turn is running for the number; it will see the new version when it tries to finish and
answer this text in its next pass, so this webhook answers empty (``<Response/>``). A claim
that succeeds starts the turn in this process's pool; in ``async`` mode the webhook answers
empty at once, in ``auto`` it waits up to ``SYNC_REPLY_SECONDS`` for the reply (TwiML) and
otherwise answers empty while the turn sends the reply through the Messages API.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from app.config import Settings
from app.handoff import Handoff
from app.reply_pool import ReplyPool
from app.turn import Outcome, Turn
from app.twilio_form import InboundText
from conversation.models import Message
from conversation.store import WorkQueue

if TYPE_CHECKING:
    from app.callback_urls import CallbackUrls
    from app.outbound import ReplySender
    from app.text_handler import TextHandler


@dataclass(frozen=True)
class AsyncReplies:
    """Starts background turns from the webhook (``mode`` is auto or async)."""

    mode: str
    sync_reply_seconds: float
    storage: WorkQueue
    pool: ReplyPool
    callbacks: CallbackUrls  # status-callback URLs for replies sent later

    def take(self, text: InboundText, message: Message, turn: Turn) -> Outcome:
        """Count the recorded ``message`` on its number's work and answer it in the background."""
        number = text.number
        self.storage.note_text(number)
        owner = self.pool.new_owner()
        version = self.pool.claim(number, owner)
        if version is None:
            turn.details["turn"] = "running"  # the number's running turn answers this text too
            return Outcome("queued")
        handoff = Handoff(text.sid) if self.mode == "auto" else None
        if not self.pool.submit(number, owner, version, handoff):
            turn.details["turn"] = "deferred"
            return Outcome("queued")
        if handoff is None:
            return Outcome("accepted")
        started = time.monotonic()
        ready_by = min(turn.started + self.sync_reply_seconds, turn.deadline)
        handed = handoff.wait(ready_by, turn.deadline)
        turn.mark("wait", started)
        if handed is None:
            return Outcome("accepted")
        return Outcome("replied", handed.content, track_delivery=True, reply_to_sid=handed.reply_to_sid)


def build_async_replies(
    settings: Settings, handler: TextHandler, sender: ReplySender
) -> AsyncReplies:
    """Wire the background turns of an app in ``auto``/``async`` mode (threads start later)."""
    from app.background_turn import BackgroundTurn
    from app.callback_urls import CallbackUrls
    from app.delivery import Delivery

    recovery = settings.recovery_seconds
    callbacks = CallbackUrls(settings.public_base_url)
    delivery = Delivery(handler.storage, sender, callbacks, claim_seconds=recovery / 2)
    turns = BackgroundTurn(handler, delivery, model_timeout_seconds=settings.model_timeout_seconds,
                           claim_seconds=recovery / 2)
    pool = ReplyPool(handler.storage, turns.run, workers=settings.reply_workers,
                     recovery_seconds=recovery)
    return AsyncReplies(settings.reply_mode, settings.sync_reply_seconds, handler.storage, pool,
                        callbacks)
