"""The webhook's side of ``auto`` and ``async`` modes: hand a recorded text to a background turn.

The order loses nothing: the text is recorded, counted on the number's work item and the
work claimed, all in the text's own write (:class:`conversation.guards.WorkNote`; a text on
the slow path, or a retried one, is noted and the work claimed in requests of their own,
in that order). A claim that fails means a turn is running for the number; it will see
the new version when it tries to finish and answer this text in its next pass, so this
webhook answers empty (``<Response/>``). A claim that succeeds starts the turn in this
process's pool; in ``async`` mode the webhook answers empty at once, in ``auto`` it waits
up to ``SYNC_REPLY_SECONDS`` for the reply (TwiML) and otherwise answers empty while the
turn sends the reply through the Messages API.

In ``auto`` at most half of a worker's threads (``GUNICORN_THREADS``) wait for a reply at
once; a text that finds them all waiting is answered empty at once and its reply sent
through the Messages API, so a worker under load always has threads for new webhooks
(whose time in the accept queue Twilio counts against its 15 s, the bot cannot see it).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from app.config import Settings
from app.handoff import Handoff
from app.reply_pool import ReplyPool, claim_seconds
from app.turn import Outcome, Turn
from app.twilio_form import InboundText
from conversation.guards import WorkNote
from conversation.models import Message
from conversation.store import WorkQueue

if TYPE_CHECKING:
    from app.callback_urls import CallbackUrls
    from app.outbound import ReplySender
    from app.text_handler import TextHandler
    from app.text_record import TextRecorded


@dataclass(frozen=True)
class AsyncReplies:
    """Starts background turns from the webhook (``mode`` is auto or async)."""

    mode: str
    sync_reply_seconds: float
    storage: WorkQueue
    pool: ReplyPool
    callbacks: CallbackUrls  # status-callback URLs for replies sent later
    waiters: int = 16  # webhooks of this process that may wait for their reply at once (auto)
    _waiting: threading.BoundedSemaphore = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_waiting", threading.BoundedSemaphore(max(1, self.waiters)))

    def work_note(self) -> WorkNote:
        """What a new text's write does to its number's work: note it, and claim it for a new turn."""
        return WorkNote(self.pool.new_owner(), self.pool.claim_seconds)

    def take(self, text: InboundText, message: Message, turn: Turn, recorded: TextRecorded,
             work: WorkNote | None) -> Outcome:
        """Answer the recorded ``message`` in the background, under its number's work claim
        (taken by the text's write, or now)."""
        number = text.number
        owner = work.owner if work is not None and work.owner else self.pool.new_owner()
        version: int | None = 0 if recorded.claimed else None
        if not recorded.noted:  # the slow path, or a retry: note it now, then claim
            self.storage.note_text(number)
            version = self.pool.claim(number, owner)
        # Noted but not claimed: a turn held the claim when the text's write raised the
        # version, so that turn cannot finish without answering this text too.
        if version is None:
            turn.details["turn"] = "running"  # the number's running turn answers this text too
            return Outcome("queued")
        waits = self.mode == "auto" and self._waiting.acquire(blocking=False)
        if self.mode == "auto" and not waits:
            turn.details["wait"] = "full"  # every waiting thread is taken: the reply goes by REST
        handoff = Handoff(text.sid) if waits else None
        try:
            if not self.pool.submit(number, owner, version, handoff, message.conversation_id):
                turn.details["turn"] = "deferred"
                return Outcome("queued")
            if handoff is None:
                return Outcome("accepted")
            started = time.monotonic()
            ready_by = min(turn.started + self.sync_reply_seconds, turn.deadline)
            handed = handoff.wait(ready_by, turn.deadline)
            turn.mark("wait", started)
        finally:
            if waits:
                self._waiting.release()
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
    claim = claim_seconds(recovery)
    callbacks = CallbackUrls(settings.public_base_url)
    delivery = Delivery(handler.storage, sender, callbacks, claim_seconds=claim)
    turns = BackgroundTurn(handler, delivery, model_timeout_seconds=settings.model_timeout_seconds,
                           claim_seconds=claim)
    pool = ReplyPool(handler.storage, turns.run, workers=settings.reply_workers,
                     recovery_seconds=recovery)
    return AsyncReplies(settings.reply_mode, settings.sync_reply_seconds, handler.storage, pool,
                        callbacks, waiters=max(1, settings.gunicorn_threads // 2))
