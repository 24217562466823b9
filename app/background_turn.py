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
from app.delivery import NOT_SENT, PENDING, SENDING, TWIML, Delivery
from app.handoff import Handoff
from app.limits import RateVerdict
from app.logutil import mask_number
from app.sms import count_segments, fit_reply
from app.text_handler import LATE_ARRIVALS, TextHandler
from app.turn import Turn, add_figures, tokens_of
from app.xmltext import xml_safe
from conversation import StorageError
from conversation.guards import OPTED_OUT, WORK, GuardFailed, ReplyGuard
from conversation.models import Message, Recorded

log = logging.getLogger("app.webhook")

# Work that keeps failing (a sweep retries it every RECOVERY_SECONDS / 4) is dropped once its
# first unanswered text is this old, so a broken turn cannot call the model forever.
GIVE_UP_SECONDS = 1800.0
# Pauses between attempts to store a reply the webhook already answers with.
HANDED_STORE_PAUSES = (0.0, 0.5, 1.0, 2.0, 4.0, 8.0)
# What a pass comes to: the reply's writes ended the work; the work is still to be finished
# (nothing left to send); a delivery is neither done nor known undone (left for a later pass).
FINISHED, SETTLED, UNSETTLED = "finished", "settled", "unsettled"
# The reply is not to be sent from here (opted out meanwhile, or the work is no longer ours).
NOT_SENT_HERE = "not_sent_here"


@dataclass(frozen=True)
class BackgroundTurn:
    """Answers a number's unanswered texts under its claim (built once per app)."""

    handler: TextHandler
    delivery: Delivery
    model_timeout_seconds: float
    claim_seconds: float

    def run(self, number: str, owner: str, version: int, handoff: Handoff | None = None,
            conversation_id: str | None = None) -> bool:
        """Answer passes until the work is finished; True when it is, False when it was left
        (released for a later pass: a delivery it could not settle, or a failure).

        ``conversation_id``: the conversation of the text that started the turn; the first
        pass reads it directly (later passes, and turns a sweep started, read the active one).
        """
        storage = self.handler.storage
        current: int | None = version
        while current is not None:
            try:
                result = self.answer_once(number, owner, current, handoff, conversation_id)
            except Exception:
                log.exception("reply turn for %s failed; the work is left for recovery", mask_number(number))
                result = UNSETTLED
            finally:
                if handoff is not None:
                    handoff.nothing()  # whatever happened, the webhook stops waiting for this pass
            handoff, conversation_id = None, None  # later passes send through the Messages API
            if result == FINISHED:
                return True  # the reply's own write ended the work
            if result == UNSETTLED:
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

    def answer_once(self, number: str, owner: str, version: int, handoff: Handoff | None,
                    conversation_id: str | None = None) -> str:
        """Settle earlier replies and answer the unanswered texts.

        Returns FINISHED when the reply's writes also ended the work (no text came since
        ``version``), SETTLED when the work is still to be finished, UNSETTLED when a delivery
        is neither done nor known to be undone (left for a later pass).
        """
        handler = self.handler
        settings = handler.settings
        history = handler.manager.get_history(number, settings.history_max_messages + LATE_ARRIVALS,
                                              conversation_id=conversation_id)
        replied_to = {item.message_id: item for item in history if item.role == "user"}
        for item in history:
            if item.role == "assistant" and item.metadata.get("delivery") in PENDING:
                parent = replied_to.get(item.reply_to or "")
                state = self.delivery.deliver(number, item, parent or item, owner)
                if state in ("unsure", "taken", "lost"):
                    return UNSETTLED if state == "unsure" else SETTLED
        texts = unanswered_texts(history)
        if not texts:
            return SETTLED
        last = texts[-1]
        reply, turn = self.ask(number, history, last)
        answering = {text.message_id for text in texts}
        before = [item for item in history if item.message_id not in answering]
        turn.count(active_numbers=int(handler.first_text_today(
            handler.limits, RateVerdict(True), number, before, texts[0])))
        reply[1]["covers"] = [text.message_id for text in texts]
        if handoff is not None and handoff.offer(reply[0], last.message_id):
            answered_in = {"answered_in": handoff.sid} if handoff.sid != last.message_id else {}
            reply = (reply[0], {**reply[1], **answered_in}, reply[2])
            guard = ReplyGuard(owner, self.claim_seconds, finish_version=version)
            stored = self.store(number, last, reply, {"delivery": TWIML}, turn, guard)
            if isinstance(stored, Recorded):
                handoff.stored(stored.message.content)
            elif stored is None:
                handoff.stored(reply[0])  # answered anyway; storing it failed (logged)
            else:
                handoff.withdraw()  # opted out or erased meanwhile: the webhook answers empty
            result = FINISHED if isinstance(stored, Recorded) and stored.finished else SETTLED
        else:
            sending = {"delivery": SENDING, "sending_owner": owner, "sending_at": time.time()}
            stored = self.store(number, last, reply, sending, turn, ReplyGuard(owner, self.claim_seconds))
            result = SETTLED if stored is not None else UNSETTLED
            if isinstance(stored, Recorded):
                message = stored.message
                fresh = message.metadata.get("sending_owner") == owner
                if message.metadata.get("delivery") == SENDING and fresh:
                    state, finished = self.delivery.send_fresh(number, message, last, owner, version)
                    result = UNSETTLED if state == "unsure" else FINISHED if finished else SETTLED
                elif message.metadata.get("delivery") in PENDING:  # stored by another pass: settle it
                    state = self.delivery.deliver(number, message, last, owner)
                    result = UNSETTLED if state == "unsure" else SETTLED
        turn.details["texts"] = len(texts)
        turn.run_after()
        add_figures(handler.daily_stats, turn)
        return result

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

    def store(self, number: str, last: Message, reply: tuple[str, dict, dict], delivery: dict[str, object],
              turn: Turn, guard: ReplyGuard) -> Recorded | str | None:
        """Record the reply to ``last`` with its delivery state, under the work claim (``guard``).

        Returns what was stored; NOT_SENT_HERE when nothing is to be sent from here (the number
        opted out: the reply is kept ``not_sent``; or the claim is gone: erased or taken over);
        None when it could not be stored.
        """
        content, metadata, counters = reply
        manager = self.handler.manager
        pauses = HANDED_STORE_PAUSES if delivery.get("delivery") == TWIML else (0.0,)
        for pause in pauses:
            time.sleep(pause)
            try:
                recorded = manager.record_assistant_message(
                    number, content, reply_to=last, metadata={**metadata, **delivery},
                    counters=counters, reply_guard=guard,
                )
            except GuardFailed as failed:
                if OPTED_OUT in failed.failed and WORK not in failed.failed:
                    log.info("reply to %s not sent: opted out since the text", mask_number(number))
                    self.keep_unsent(number, last, reply, turn)
                else:
                    log.warning("reply for %s dropped: the work is gone (erased) or taken over",
                                mask_number(number))
                return NOT_SENT_HERE
            except StorageError as exc:
                log.warning("reply for %s not stored: %s", mask_number(number), exc)
                continue
            if recorded.created:
                turn.add_reply(recorded.message, counters)
            return recorded
        return None

    def keep_unsent(self, number: str, last: Message, reply: tuple[str, dict, dict], turn: Turn) -> None:
        """Keep a reply the number opted out of before it went, marked ``not_sent`` (never sent)."""
        content, metadata, counters = reply
        try:
            recorded = self.handler.manager.record_assistant_message(
                number, content, reply_to=last, counters=counters,
                metadata={**metadata, "delivery": NOT_SENT, "not_sent": "opted_out"},
            )
        except StorageError as exc:
            log.warning("unsent reply for %s not kept: %s", mask_number(number), exc)
            return
        if recorded.created:
            turn.add_reply(recorded.message, counters)
