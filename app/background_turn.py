"""A number's turn in ``auto``/``async`` mode, run in the background under its work claim.

One pass (:meth:`BackgroundTurn.answer_once`) reads the number's conversation (strongly
consistent), finishes any reply left ``queued`` or ``sending`` by an earlier pass, then
answers every unanswered text at once: the user texts after the last reply that are not
deliberately unanswered (opted out, over the rate limit, commands). The model sees them
all, in order (the earlier ones in its window, the last as the new text); one reply, stored
as the reply to the last, answers them. The reply goes back through the webhook still
waiting for it (``auto``, :mod:`app.handoff`) or through the Messages API
(:mod:`app.delivery`).

:meth:`BackgroundTurn.run` repeats passes until :meth:`finish_work` succeeds: a text that
arrived during a pass raised the work's version, so the next pass answers it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from app.coalesce import as_inbound, unanswered_texts
from app.delivery import PENDING, QUEUED, TWIML, Delivery
from app.handoff import Handoff
from app.logutil import mask_number
from app.sms import count_segments, fit_reply
from app.text_handler import LATE_ARRIVALS, TextHandler
from app.turn import Turn, add_figures, tokens_of
from app.xmltext import xml_safe
from conversation import StorageError
from conversation.models import Message

log = logging.getLogger("app.webhook")

# Work that keeps failing (a sweep retries it every RECOVERY_SECONDS / 4) is dropped once its
# first unanswered text is this old, so a broken turn cannot call the model forever.
GIVE_UP_SECONDS = 1800.0
# Pauses between attempts to store a reply the webhook already answers with.
HANDED_STORE_PAUSES = (0.0, 0.5, 1.0, 2.0, 4.0, 8.0)


@dataclass(frozen=True)
class BackgroundTurn:
    """Answers a number's unanswered texts under its claim (built once per app)."""

    handler: TextHandler
    delivery: Delivery
    model_timeout_seconds: float
    claim_seconds: float

    def run(self, number: str, owner: str, version: int, handoff: Handoff | None = None) -> bool:
        """Answer passes until the work is finished; True when it is, False when it was left
        (released for a later pass: a delivery it could not settle, or a failure)."""
        storage = self.handler.storage
        current: int | None = version
        while current is not None:
            try:
                settled = self.answer_once(number, owner, handoff)
            except Exception:
                log.exception("reply turn for %s failed; the work is left for recovery", mask_number(number))
                settled = False
            finally:
                if handoff is not None:
                    handoff.nothing()  # whatever happened, the webhook stops waiting for this pass
            handoff = None  # later passes send through the Messages API
            if not settled:
                self.leave(number, owner, current)
                return False
            if storage.finish_work(number, owner, current):
                return True
            current = storage.claim_work(number, owner, self.claim_seconds)  # newer texts: again
        return False

    def leave(self, number: str, owner: str, version: int) -> None:
        """Release unfinished work for a later pass, or drop it once it has failed for too long."""
        storage = self.handler.storage
        item = storage.get_work(number)
        if item is not None and time.time() - item.since > GIVE_UP_SECONDS:
            log.error("gave up on the texts of %s: unanswered for %.0f s", mask_number(number),
                      time.time() - item.since)
            if storage.finish_work(number, owner, item.version):
                return
        storage.release_work(number, owner)

    def answer_once(self, number: str, owner: str, handoff: Handoff | None) -> bool:
        """Settle earlier replies and answer the unanswered texts; False when a delivery is unsettled."""
        handler = self.handler
        settings = handler.settings
        history = handler.manager.get_history(number, settings.history_max_messages + LATE_ARRIVALS)
        replied_to = {item.message_id: item for item in history if item.role == "user"}
        for item in history:
            if item.role == "assistant" and item.metadata.get("delivery") in PENDING:
                parent = replied_to.get(item.reply_to or "")
                state = self.delivery.deliver(number, item, parent or item, owner)
                if state in ("unsure", "taken", "lost"):
                    return state != "unsure"
        texts = unanswered_texts(history)
        if not texts:
            return True
        last = texts[-1]
        reply, turn = self.ask(number, history, last)
        reply[1]["covers"] = [text.message_id for text in texts]
        settled = True
        if handoff is not None and handoff.offer(reply[0], last.message_id):
            answered_in = {"answered_in": handoff.sid} if handoff.sid != last.message_id else {}
            reply = (reply[0], {**reply[1], **answered_in}, reply[2])
            stored = self.store(number, last, reply, TWIML, turn)
            handoff.stored(stored.content if stored is not None else reply[0])
        else:
            if not handler.storage.renew_work(number, owner, self.claim_seconds):
                log.warning("reply for %s dropped: the work is gone (erased) or taken over",
                            mask_number(number))
                return True
            stored = self.store(number, last, reply, QUEUED, turn)
            if stored is not None and stored.metadata.get("delivery") in PENDING:
                settled = self.delivery.deliver(number, stored, last, owner, renewed=True) != "unsure"
            elif stored is None:
                settled = False
        turn.details["texts"] = len(texts)
        turn.run_after()
        add_figures(handler.daily_stats, turn)
        return settled

    def ask(self, number: str, history: list[Message], last: Message) -> tuple[tuple[str, dict, dict], Turn]:
        """Ask the persona for one reply to ``last`` (and the texts before it, in its window)."""
        handler = self.handler
        text = as_inbound(number, last)
        turn = Turn.begin(self.model_timeout_seconds, handler.clock)
        turn.sid, turn.number = text.sid, number
        context = handler.context_window(history, last)
        header = handler.memory_header(handler.manager, text, last, history)
        summary = header.summary.text if header is not None and header.summary else None
        responder, fallback, reservation = handler.choose_responder(
            handler.limits, context, text, last, turn, summary)
        started = handler.clock.monotonic()
        reply_obj = handler.ask(responder, context, text, last, turn, summary)
        turn.mark("model", started)
        if reservation is not None:
            handler.settle(handler.limits, reservation, tokens_of(reply_obj), text)
        answer, encoding = fit_reply(xml_safe(reply_obj.text), handler.settings.reply_max_chars)
        segments = count_segments(answer)
        metadata = {**reply_obj.metadata(), **segments.metadata(), **encoding,
                    **({"fallback": fallback} if fallback else {})}
        counters = {"tokens": tokens_of(reply_obj), "segments": segments.count,
                    "model_calls": int(getattr(reply_obj, "attempts", 1))}
        turn.latency_ms = float(getattr(reply_obj, "latency_ms", 0.0))
        handler.keep_memory(header, text, turn)
        return (answer, metadata, counters), turn

    def store(self, number: str, last: Message, reply: tuple[str, dict, dict], delivery: str,
              turn: Turn) -> Message | None:
        """Record the reply to ``last`` with its delivery state; None if it could not be stored."""
        content, metadata, counters = reply
        pauses = HANDED_STORE_PAUSES if delivery == TWIML else (0.0,)
        for pause in pauses:
            time.sleep(pause)
            try:
                recorded = self.handler.manager.record_assistant_message(
                    number, content, reply_to=last, metadata={**metadata, "delivery": delivery},
                    counters=counters,
                )
            except StorageError as exc:
                log.warning("reply for %s not stored: %s", mask_number(number), exc)
                continue
            if recorded.created:
                turn.add_reply(recorded.message, counters)
            return recorded.message
        return None
