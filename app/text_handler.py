"""The turn of one text, as plain Python: from a parsed text to the line the cat sends back.

``TextHandler`` is built once by ``create_app`` from its collaborators (manager, store,
limits, responders, memory keeper, daily figures, the bounded runner) and the few
settings a turn reads. It imports no Flask and knows nothing of Twilio's form or TwiML:
the view parses the request (app/twilio_sms.py), calls ``handle`` and renders the outcome.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

from app.bounded import Bounded, OutOfTime
from app.coalesce import as_inbound, await_reply, covered, holder_read, repeat_answer, unanswered_texts
from app.config import Settings
from app.limits import Limits, RateVerdict, Reservation, TurnLease, backoff_delays
from app.logutil import mask_number
from app.memory import MemoryKeeper
from app.replies import LAST_RESORT, Reply, Responder
from app.sms import count_segments, fit_reply, parse_command, truncate
from app.text_record import record_text
from app.turn import Outcome, Turn, tokens_of
from app.twilio_form import InboundText
from app.xmltext import xml_safe
from conversation import ConversationError, ConversationManager, StorageError, StorageUnavailable, window
from conversation.clock import Clock, SystemClock
from conversation.daily_stats import DailyStats
from conversation.models import Conversation, Message
from conversation.store import ConversationStore

if TYPE_CHECKING:
    from app.async_replies import AsyncReplies

# The webhook's logger: operators filter the turn's lines by this one name.
log = logging.getLogger("app.webhook")

# Texts that arrive after this one but before it is answered; fetched on top of
# the context window so they cannot push earlier history out of it.
LATE_ARRIVALS = 10
# Share of the deadline a text may spend waiting for its number's turn; the
# rest is left for the model.
TURN_WAIT_SHARE = 0.5
# A retried text whose turn another attempt holds waits for that attempt's reply until this
# long before the deadline (then the busy line, which is that reply if it came meanwhile).
RETRY_MARGIN = 0.5
# Pauses between attempts to store a reply that missed the deadline (after the answer).
LATE_STORE_PAUSES = (0.0, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0)

# Short in-persona lines for the moments the model is not asked.
RESET_CONFIRMATION = "*stretches* Poof. The yarn is rewound and I remember nothing. Who are you, stranger?"
MINUTE_NOTICE = "Mrrp. Too many words, too fast. My whiskers need a minute of silence."
DAY_NOTICE = "The cat has chewed enough words for today. Come back tomorrow, I will be a different cat."
BUSY_LINE = "Purr... one thought at a time, human. Tell me again in a moment?"


@dataclass(frozen=True)
class TextHandler:
    """Answers texts with the collaborators it was built with."""

    settings: Settings
    manager: ConversationManager
    storage: ConversationStore
    limits: Limits
    responder: Responder
    offline_responder: Responder
    memory: MemoryKeeper | None
    daily_stats: DailyStats
    bounded: Bounded
    # auto/async modes: the texts are answered by background turns (None: sync mode).
    pipeline: AsyncReplies | None = None
    # Reads the time and waits for the number's turn (tests pass one that waits without sleeping).
    clock: Clock = field(default_factory=SystemClock)

    def handle(self, text: InboundText, turn: Turn) -> Outcome:
        """Record and answer one parsed text by ``turn.deadline``: the story of a text.

        Screen the number, record the text once, count it against the number's limits
        (one check covers whatever this text gets sent), handle commands, take the
        number's turn, ask the persona, record the reply. Work the answer does not need
        is queued on ``turn.after``.
        """
        manager, limits = self.manager, self.limits

        if not limits.admits(text.number):
            return Outcome("blocked")
        if text.opt_out:
            self.record_opt_out(manager, text, turn)
            return Outcome("opt_out")

        lease = TurnLease(self.storage, text.number, self.settings.turn_lease_seconds)
        message: Message | None = None
        answer: str | None = None
        try:
            command = parse_command(text.body)
            # sync mode takes the number's lease with the text; in auto/async the text is noted on
            # the number's work and its claim taken for a background turn (not for a command)
            work = self.pipeline.work_note() if self.pipeline is not None and command is None else None
            recorded = record_text(
                manager, limits, text, command, lease if self.pipeline is None else None, turn, work
            )
            message, created, counted = recorded.message, recorded.created, recorded.verdict
            turn.count(texts=int(created))
            verdict = None
            if created and not message.metadata.get("unanswered"):
                # Counted once per new text, before anything is sent: whatever this text
                # gets (reply, reset confirmation, busy line) is covered by this one check
                # (made in the text's own write on the quick path).
                verdict = counted or limits.check_rate(text.number)
                if not verdict.allowed:
                    if command == "reset":  # honoured, but not confirmed past the limit
                        manager.reset_conversation(text.number)
                    answer = self.refuse(manager, text, message, verdict.notice, turn)
                    turn.details["limit"] = verdict.notice or "silent"
                    return Outcome("rate_limited", answer, track_delivery=True)
            reply = None if created else manager.get_reply(text.number, message)
            if reply is None and command == "reset":
                if message.metadata.get("unanswered"):  # opted out: reset, but send nothing
                    manager.reset_conversation(text.number)
                    return Outcome("reset")
                reply = self.answer_reset(manager, text, message, turn)
                return Outcome("reset", reply.content, track_delivery=True)
            if reply is not None:
                again = repeat_answer(reply, text.sid)
                return Outcome("duplicate", again, track_delivery=again is not None)
            if message.metadata.get("unanswered"):
                return Outcome("unanswered")
            if self.pipeline is not None:  # the background turn counts the day's active numbers
                return self.pipeline.take(text, message, turn, recorded, work)

            held, history = self.take_turn(manager, text, message, turn, lease)
            if held is None and not created:  # a retry: the attempt holding the turn answers this text
                reply = await_reply(manager, text.number, message, turn.deadline - RETRY_MARGIN, self.clock)
                if reply is not None:
                    again = repeat_answer(reply, text.sid)
                    return Outcome("duplicate", again, track_delivery=again is not None)
            if held is None and holder_read(self.storage, text.number, message):
                return Outcome("covered")  # the turn running now read this text and answers it
            if held is None:
                answer = self.record_reply(
                    manager, text, message, BUSY_LINE, {"fallback": "turn_timeout"}, turn=turn
                ).content
                return Outcome("busy", answer, track_delivery=True)
            # Another attempt at this text (a retry, or the first attempt when this is the
            # retry) may have answered or silenced it while we waited for the turn.
            message, reply = self.current_state(manager, text, message, history)
            if reply is not None:
                again = repeat_answer(reply, text.sid)
                return Outcome("duplicate", again, track_delivery=again is not None)
            if message.metadata.get("unanswered"):
                return Outcome("unanswered")
            if covered(history, message):
                return Outcome("covered")  # a reply to a later text answered it too

            if verdict is not None:  # a retry was counted by the attempt that stored the text
                first = self.first_text_today(limits, verdict, text.number, history, message)
                turn.count(active_numbers=int(first))
            # Texts that came after this one are answered with it, by one reply to the last.
            asked, pending = text.sid, unanswered_texts(history) or [message]
            if message.precedes(pending[-1]):
                text, message = as_inbound(text.number, pending[-1]), pending[-1]

            context = self.context_window(history, message)
            header = self.memory_header(manager, text, message, history)
            summary = header.summary.text if header is not None and header.summary else None
            responder, fallback, reservation = self.choose_responder(
                limits, context, text, message, turn, summary
            )
            started = self.clock.monotonic()
            reply_obj = self.ask(responder, context, text, message, turn, summary)
            turn.mark("model", started)
            # From here on only the time left before the deadline is spent before answering.
            if reservation is not None:
                turn.after.append(partial(self.settle, limits, reservation, tokens_of(reply_obj), text))
            if getattr(reply_obj, "error", None):
                turn.details["model_error"] = reply_obj.error
            # Stored as sent: what XML cannot carry never reaches the texter, so it is not kept either.
            answer, encoding = fit_reply(xml_safe(reply_obj.text), self.settings.reply_max_chars)
            segments = count_segments(answer)
            stored = self.store_reply_in_time(
                manager, text, message, answer,
                {**reply_obj.metadata(), **segments.metadata(), **encoding,
                 **({"fallback": fallback} if fallback else {}),
                 **({"answered_in": asked} if asked != text.sid else {}),
                 "covers": sorted({m.message_id for m in pending} | {message.message_id})},
                {
                    "tokens": tokens_of(reply_obj),
                    "segments": segments.count,
                    "model_calls": int(getattr(reply_obj, "attempts", 1)),
                },
                turn,
                lease,
            )
            turn.latency_ms = float(getattr(reply_obj, "latency_ms", 0.0))
            self.keep_memory(header, text, turn)
            answer = stored.content if stored is not None else answer
            turn.details.update(segments=segments.count, history=len(context))
            if fallback or reply_obj.fallback:
                turn.details["fallback"] = fallback or reply_obj.fallback
            return Outcome("replied", answer, track_delivery=True,
                           reply_to_sid=text.sid if asked != text.sid else None)
        except ConversationError as exc:
            # Never silent: the texter hears from the cat even when the store is down.
            log.error("sms sid=%s from=%s: store failed: %s", text.sid, mask_number(text.number), exc)
            record = message is not None and not isinstance(exc, StorageUnavailable)
            answer = answer or self.rescue_reply(manager, text, message if record else None, turn)
            return Outcome("store_failed", answer, track_delivery=message is not None)
        except Exception:
            # A bug must not leave the texter in silence either; the traceback goes to the log.
            log.exception("sms sid=%s from=%s: unexpected failure", text.sid, mask_number(text.number))
            return Outcome("error", answer or self.rescue_reply(manager, text, None, turn))
        finally:
            if lease.held:  # not given back with the reply (or never reached it)
                turn.last.append(partial(self.release, lease, text))

    def record_opt_out(self, manager: ConversationManager, text: InboundText, turn: Turn) -> None:
        """Record a STOP/START/HELP text and the number's opt-out state; never reach the model."""
        try:
            recorded = manager.record_user_message(
                text.number, text.body, message_id=text.sid, media_urls=text.media_urls,
                metadata={**text.metadata(), "unanswered": "opt_out"},
            )
            turn.count(texts=int(recorded.created))
            if text.opt_out in ("STOP", "START"):
                manager.set_opt_out(text.number, text.opt_out == "STOP")
        except StorageError as exc:
            # Twilio answers these keywords itself; the texter is not left in silence.
            log.error("sms sid=%s: could not record %s: %s", text.sid, text.opt_out, exc)
            turn.details["store"] = "failed"

    def answer_reset(
        self, manager: ConversationManager, text: InboundText, message: Message, turn: Turn
    ) -> Message:
        """Archive the conversation and record the confirmation as the reply to the reset text."""
        manager.reset_conversation(text.number)
        return self.record_reply(manager, text, message, RESET_CONFIRMATION, {"command": "reset"}, turn=turn)

    def take_turn(
        self, manager: ConversationManager, text: InboundText, message: Message, turn: Turn,
        lease: TurnLease,
    ) -> tuple[TurnLease | None, list[Message]]:
        """Wait for this number's turn: hold its lease (texts before and after this one that no
        reply covers are answered with it, see app/coalesce.py).

        Returns the lease and the history read under it, or (None, []) when the
        turn did not come in time. A lease taken with the text is used at once.
        """
        started = self.clock.monotonic()
        until = started + TURN_WAIT_SHARE * (turn.deadline - started)
        limit = self.settings.history_max_messages + LATE_ARRIVALS
        waits = 0
        for delay in backoff_delays():
            if lease.held or lease.try_acquire():
                try:
                    # The text's own conversation: one Query, no pointer read.
                    history = manager.get_history(
                        text.number, limit, conversation_id=message.conversation_id
                    )
                except BaseException:
                    self.release(lease, text)  # the view never saw this lease, so it cannot release it
                    raise
                turn.mark("turn", started)
                turn.details["waits"] = waits
                return lease, history
            if self.clock.monotonic() + delay > until:
                turn.mark("turn", started)
                log.warning("sms sid=%s: turn not free after %d waits", text.sid, waits)
                return None, []
            waits += 1
            self.clock.sleep(delay)
        raise AssertionError("unreachable")  # backoff_delays never ends

    def current_state(
        self, manager: ConversationManager, text: InboundText, message: Message, history: list[Message]
    ) -> tuple[Message, Message | None]:
        """Return the text as stored now and its reply, if any, from the history read under the lease.

        A reply sorts right after its text, so both are in the window unless many
        texts arrived since; then they are read directly.
        """
        for index, item in enumerate(history):
            if item.message_id == message.message_id and item.role == "user":
                following = history[index + 1] if index + 1 < len(history) else None
                if following is not None and following.reply_to == item.message_id:
                    return item, following
                return item, None
        stored = manager.get_message(text.number, message.message_id) or message
        return stored, manager.get_reply(text.number, stored)

    def release(self, lease: TurnLease, text: InboundText) -> None:
        """Release the lease; a failure only delays the next text until the lease expires."""
        try:
            lease.release()
        except StorageError as exc:
            log.warning("sms sid=%s: could not release the turn lease: %s", text.sid, exc)

    def refuse(
        self, manager: ConversationManager, text: InboundText, message: Message, notice: str | None,
        turn: Turn,
    ) -> str | None:
        """Keep an over-limit text unanswered: one notice per window, then silence."""
        if notice:
            line = DAY_NOTICE if notice == "day" else MINUTE_NOTICE
            notice_meta = {"notice": f"rate_{notice}"}
            return self.record_reply(manager, text, message, line, notice_meta, turn=turn).content
        self.storage.update_message_metadata(text.number, message, {"unanswered": "rate_limited"})
        return None

    def choose_responder(
        self, limits: Limits, context: list[Message], text: InboundText, message: Message, turn: Turn,
        summary: str | None = None,
    ) -> tuple[Any, str | None, Reservation | None]:
        """Return the model responder and its budget reservation, or the offline persona once
        today's budget is spent (or reserved by calls in flight)."""
        responder = self.responder
        estimate = getattr(responder, "token_estimate", None)
        extra = {"summary": summary} if summary else {}  # the running summary is sent too
        tokens = (
            estimate(context, text.body, media_urls=text.media_urls, message_id=message.message_id, **extra)
            if estimate is not None else self.settings.openai_max_tokens
        )
        reservation = limits.reserve_model_call(tokens)
        if reservation is not None:
            return responder, None, reservation
        log.warning("sms sid=%s: daily model budget spent; the offline persona answers", turn.sid)
        return self.offline_responder, "budget", None

    def settle(self, limits: Limits, reservation: Reservation, used: int, text: InboundText) -> None:
        """Count what the call used instead of what was reserved; a failure only skews today's total."""
        try:
            limits.settle(reservation, used)
        except StorageError as exc:
            log.warning("sms sid=%s: could not settle the model budget: %s", text.sid, exc)

    def context_window(self, history: list[Message], message: Message) -> list[Message]:
        """Keep what came before this text (not the text itself), within the configured size."""
        return window.context_window(
            history,
            text=message,
            max_messages=self.settings.history_max_messages,
            max_chars=self.settings.history_max_chars,
        )

    def memory_header(
        self, manager: ConversationManager, text: InboundText, message: Message, history: list[Message]
    ) -> Conversation | None:
        """Return the conversation header with its running summary, when one may exist.

        A conversation shorter than the window has no summary, so the header is read
        (one GetItem) only once the window is full. A failed read means no memory this time.
        """
        keeper = self.memory
        if keeper is None or len(history) < keeper.policy.window_messages or message.conversation_id is None:
            return None
        try:
            return manager.get_conversation(text.number, message.conversation_id)
        except ConversationError as exc:
            log.warning("sms sid=%s: no summary this turn: %s", text.sid, exc)
            return None

    def keep_memory(self, header: Conversation | None, text: InboundText, turn: Turn) -> None:
        """Queue a summary update after the reply when one is due (never waits for it)."""
        keeper = self.memory
        # The header was read before the reply was stored: one message more since.
        if keeper is not None and header is not None and keeper.policy.due(header, added=1):
            queued = keeper.schedule(text.number, header.conversation_id)
            turn.details["memory"] = "queued" if queued else "pending"

    def ask(self, responder: Responder, context: list[Message], text: InboundText, message: Message,
            turn: Turn,
            summary: str | None = None) -> Reply:
        """Get the persona's reply; a responder that breaks its never-raise promise gets the offline one."""
        kwargs: dict[str, Any] = {"deadline": turn.model_deadline, "media_urls": text.media_urls,
                                  "message_id": message.message_id}
        if summary:  # only then, so responders written before summaries keep working
            kwargs["summary"] = summary
        try:
            return responder.reply(context, text.body, **kwargs)
        except Exception:  # the interface promises no exceptions; log loudly and answer anyway
            log.exception("sms sid=%s: responder raised; the offline persona answers", text.sid)
            return self.offline_responder.reply(context, text.body, **kwargs)

    def record_reply(
        self, manager: ConversationManager,
        text: InboundText,
        message: Message,
        content: str,
        metadata: dict[str, Any],
        counters: dict[str, int] | None = None,
        *,
        turn: Turn | None = None,
    ) -> Message:
        """Store the one reply to the text; if another attempt stored one first, return that.

        A new reply is counted on ``turn`` for the day's aggregates.
        """
        if counters is None:
            segments = count_segments(content)
            metadata = {**metadata, **segments.metadata()}
            counters = {"segments": segments.count}
        recorded = manager.record_assistant_message(
            text.number, content, reply_to=message, metadata=metadata, counters=counters
        )
        if turn is not None and recorded.created:
            turn.add_reply(recorded.message, counters)
        return recorded.message

    def rescue_reply(
        self, manager: ConversationManager, text: InboundText, message: Message | None, turn: Turn
    ) -> str:
        """Produce an offline reply after a failure; record it as the reply to ``message`` if given
        and there is time left before the deadline."""
        try:
            reply = self.offline_responder.reply([], text.body, media_urls=text.media_urls)
            content = truncate(reply.text, self.settings.reply_max_chars) or LAST_RESORT
        except Exception:  # last line of defence: the texter must hear something
            log.exception("sms sid=%s: offline persona failed too", text.sid)
            content = LAST_RESORT
        if message is not None:
            try:
                content = self.bounded.run(
                    turn.deadline, self.record_reply, manager, text, message, content,
                    {"fallback": "store_failed"},
                ).content
            except (ConversationError, OutOfTime) as again:
                log.error("sms sid=%s: could not record the rescue reply: %s", text.sid, again)
        return content

    def first_text_today(
        self, limits: Limits, verdict: RateVerdict, number: str, history: list[Message], message: Message
    ) -> bool:
        """Return whether this is the number's first text today that reached the limits.

        The per-day rate counter already knows; without one, an earlier answerable
        text of today in the window says no, and only then is a per-day counter asked.
        """
        if limits.per_day and verdict.day_count:  # counted by check_rate, not in the text's write
            return verdict.day_count == 1
        today = time.strftime("%Y-%m-%d", time.gmtime(self.clock.time()))
        for item in history:
            if (
                item.role == "user" and item.message_id != message.message_id
                and item.timestamp.startswith(today)
                and not item.metadata.get("unanswered") and not item.metadata.get("command")
            ):
                return False
        return self.daily_stats.first_text_today(number)

    def store_reply_in_time(
        self, manager: ConversationManager, text: InboundText, message: Message, content: str,
        metadata: dict[str, Any], counters: dict[str, int], turn: Turn, lease: TurnLease,
    ) -> Message | None:
        """Store the model's reply within the time left, giving the turn lease back in the
        same write; None when it could not be stored in time.

        A reply that misses the deadline is still sent, and stored after the answer
        (the lease is then given back after that).
        """
        try:
            recorded = self.bounded.run(
                turn.deadline, manager.record_assistant_message,
                text.number, content, reply_to=message, metadata=metadata, counters=counters,
                release_lease=lease.owner,
            )
        except (OutOfTime, StorageError) as exc:
            log.error("sms sid=%s: the reply was not stored before the deadline (%s); it is sent now "
                      "and stored after the answer", text.sid, exc)
            turn.details["store"] = "late"
            turn.after.insert(0, partial(self.store_late, self.bounded, manager, text, message, content,
                                         metadata, counters))
            return None
        if recorded.created:
            lease.given_back()
            turn.add_reply(recorded.message, counters)
        return recorded.message

    def store_late(
        self, bounded: Bounded, manager: ConversationManager, text: InboundText, message: Message,
        content: str, metadata: dict[str, Any], counters: dict[str, int],
    ) -> None:
        """Store a reply the texter already has, retrying for about a minute (idempotent)."""
        for pause in LATE_STORE_PAUSES:
            if not bounded.pause(pause):
                break
            try:
                manager.record_assistant_message(
                    text.number, content, reply_to=message, metadata=metadata, counters=counters
                )
            except StorageError as exc:
                log.warning("sms sid=%s: storing the reply after the answer failed: %s", text.sid, exc)
                continue
            log.info("sms sid=%s: reply stored after the answer", text.sid)
            return
        log.error("sms sid=%s: gave up storing the reply; the texter has it, the history does not", text.sid)
