"""The SMS webhook: Twilio posts each text here and gets exactly one TwiML answer.

The view ``inbound_sms`` reads as the story of one text: validate the signature,
parse the form, screen the number, record the text once, count it against the
number's limits (one check covers whatever this text gets sent), handle commands,
take the number's turn, ask the persona, record the reply, answer.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from flask import Blueprint, Flask, Response, current_app, jsonify, request, url_for
from twilio.request_validator import RequestValidator
from twilio.twiml.messaging_response import MessagingResponse

from app.bounded import Bounded, OutOfTime
from app.limits import Limits, Reservation, TurnLease, backoff_delays, waits_on_earlier
from app.logutil import log_fields, mask_number
from app.metrics import observe_turn
from app.replies import Responder
from app.services import services
from app.signed_form import InvalidText, text_sid
from app.sms import MAX_BODY_CHARS, count_segments, fit_reply, parse_command, truncate
from app.xmltext import xml_safe
from conversation import (
    ConversationError,
    ConversationManager,
    StorageError,
    StorageUnavailable,
    check_user_id,
    window,
)
from conversation.daily_stats import DailyStats
from conversation.models import Conversation, Message

log = logging.getLogger(__name__)

bp = Blueprint("sms", __name__)
health_bp = Blueprint("health", __name__)

OPT_OUT_TYPES = ("STOP", "START", "HELP")
FAILED_STATUSES = ("failed", "undelivered")
# Later statuses never go back to earlier ones when callbacks arrive out of order.
STATUS_RANK = {"accepted": 0, "scheduled": 0, "queued": 1, "sending": 2, "sent": 3,
               "delivered": 4, "undelivered": 4, "failed": 4, "read": 5}
MAX_MEDIA = 10
# Texts that arrive after this one but before it is answered; fetched on top of
# the context window so they cannot push earlier history out of it.
LATE_ARRIVALS = 10
# Share of the deadline a text may spend waiting for its number's turn; the
# rest is left for the model.
TURN_WAIT_SHARE = 0.5
# Time kept back from the model for storing its reply before the deadline: this many
# seconds, or this share of the deadline when that is less.
REPLY_STORE_SECONDS = 1.5
REPLY_STORE_SHARE = 0.15
# Pauses between attempts to store a reply that missed the deadline (after the answer).
LATE_STORE_PAUSES = (0.0, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0)

# Short in-persona lines for the moments the model is not asked.
RESET_CONFIRMATION = "*stretches* Poof. The yarn is rewound and I remember nothing. Who are you, stranger?"
MINUTE_NOTICE = "Mrrp. Too many words, too fast. My whiskers need a minute of silence."
DAY_NOTICE = "The cat has chewed enough words for today. Come back tomorrow, I will be a different cat."
BUSY_LINE = "Purr... one thought at a time, human. Tell me again in a moment?"
LAST_RESORT = "Meow. My whiskers are tangled right now; text me again in a minute."


@dataclass
class InboundText:
    """The parts of Twilio's form the bot uses."""

    number: str
    sid: str
    body: str
    to: str = ""
    token: str | None = None
    media: list[tuple[str, str]] = field(default_factory=list)
    num_segments: int | None = None
    opt_out: str | None = None

    @classmethod
    def from_request(cls, form: Mapping[str, str], headers: Mapping[str, str]) -> InboundText:
        """Parse a Twilio form post; raise InvalidText on anything unusable."""
        # Only the signed SID names a text; the unsigned idempotency token is kept
        # as metadata and never makes a request a new text.
        sid = text_sid(form)
        number = (form.get("From") or "").strip()
        if not number:
            raise InvalidText("the form has no From number")
        try:
            check_user_id(number)
        except ValueError:
            raise InvalidText("From is not a phone number") from None
        token = headers.get("I-Twilio-Idempotency-Token") or None
        body = form.get("Body") or ""
        if len(body) > MAX_BODY_CHARS:
            raise InvalidText(f"Body has {len(body)} characters; Twilio sends at most {MAX_BODY_CHARS}")
        num_media = _small_int(form, "NumMedia", 0) or 0
        if num_media > MAX_MEDIA:
            raise InvalidText(f"NumMedia is {num_media}; a text carries at most {MAX_MEDIA}")
        media = [
            (form[f"MediaUrl{index}"], form.get(f"MediaContentType{index}") or "")
            for index in range(num_media)
            if form.get(f"MediaUrl{index}")
        ]
        opt_out = (form.get("OptOutType") or "").strip().upper() or None
        if opt_out not in (None, *OPT_OUT_TYPES):
            raise InvalidText(f"unknown OptOutType {opt_out!r}")
        return cls(
            number=number,
            sid=sid,
            body=body,
            to=form.get("To") or "",
            token=token,
            media=media,
            num_segments=_small_int(form, "NumSegments", None),
            opt_out=opt_out,
        )

    @property
    def media_urls(self) -> list[str]:
        """Return the attachment URLs, in Twilio's order."""
        return [url for url, _ in self.media]

    def metadata(self) -> dict[str, Any]:
        """Return what is stored with the text besides its body and media URLs."""
        data: dict[str, Any] = {"channel": "sms"}
        if self.media:
            data["media_content_types"] = [kind for _, kind in self.media]
        if self.num_segments is not None:
            data["num_segments"] = self.num_segments
        if self.token:
            data["idempotency_token"] = self.token
        if self.opt_out:
            data["opt_out"] = self.opt_out
        return data


def _small_int(form: Mapping[str, str], name: str, default: int | None) -> int | None:
    raw = form.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise InvalidText(f"{name} must be a whole number, not {raw[:20]!r}") from None
    if not 0 <= value <= 10_000:
        raise InvalidText(f"{name} is out of range")
    return value


@dataclass
class Turn:
    """Timings and outcome of one request, logged as one line at the end."""

    started: float = field(default_factory=time.monotonic)
    deadline: float = 0.0
    sid: str = "-"
    number: str | None = None
    marks: dict[str, float] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    # Figures for the day's aggregates (conversation.daily_stats), written once at the end.
    figures: dict[str, int] = field(default_factory=dict)
    latency_ms: float | None = None
    # Work the answer does not need, run in order after it (see app/bounded.py).
    after: list[Callable[[], Any]] = field(default_factory=list)

    @classmethod
    def begin(cls) -> Turn:
        """Start timing a request against the configured reply deadline."""
        turn = cls()
        turn.deadline = turn.started + current_app.config["REPLY_DEADLINE_SECONDS"]
        return turn

    @property
    def model_deadline(self) -> float:
        """Return the instant the model must answer by, leaving time to store its reply."""
        total = self.deadline - self.started
        return self.deadline - min(REPLY_STORE_SECONDS, REPLY_STORE_SHARE * total)

    def run_after(self) -> None:
        """Run the work queued for after the answer, in order; one failure does not stop the rest."""
        for work in self.after:
            try:
                work()
            except Exception:
                log.exception("sms sid=%s: work after the answer failed", self.sid)

    def mark(self, name: str, since: float) -> None:
        """Record how long a step took, in milliseconds."""
        self.marks[name] = (time.monotonic() - since) * 1000

    def count(self, **figures: int) -> None:
        """Add figures to this turn's contribution to today's aggregates."""
        for name, value in figures.items():
            self.figures[name] = self.figures.get(name, 0) + int(value)

    def add_reply(self, reply: Message, counters: dict[str, int]) -> None:
        """Count a newly stored reply and what it used."""
        self.count(replies=1, fallbacks=int(bool(reply.metadata.get("fallback"))), **counters)

    def finish(self, outcome: str, response: Response) -> Response:
        """Log the one INFO line for this request (never the body) and return the response."""
        if outcome not in ("store_failed", "error"):  # the store is in trouble: no extra write
            if self.figures or self.latency_ms is not None:
                stats, turn = services().daily_stats, Turn(sid=self.sid, figures=dict(self.figures),
                                                        latency_ms=self.latency_ms)
                self.after.append(lambda: add_figures(stats, turn))
        total_ms = (time.monotonic() - self.started) * 1000
        parts = [f"{name}_ms={value:.0f}" for name, value in self.marks.items()]
        parts += [f"{name}={value}" for name, value in self.details.items()]
        # The same fields again as structured data, for LOG_FORMAT=json.
        fields = {"event": "sms", "from": mask_number(self.number), "sid": self.sid, "outcome": outcome,
                  "status": response.status_code, "total_ms": round(total_ms),
                  **{f"{name}_ms": round(value) for name, value in self.marks.items()}, **self.details}
        observe_turn(outcome, total_ms, self.marks, self.details, self.figures)
        log.info(
            "sms from=%s sid=%s outcome=%s status=%s total_ms=%.0f %s",
            mask_number(self.number), self.sid, outcome, response.status_code,
            total_ms, " ".join(parts), extra=log_fields(fields),
        )
        return response


# ------------------------------------------------------------------ the view


@bp.post("/sms")
def inbound_sms() -> Response:
    """Answer one text from Twilio: exactly one reply per genuine MessageSid.

    What the answer does not need (the lease, the budget, the day's figures, a reply
    that missed the deadline) is done after it, off the response path.
    """
    turn = Turn.begin()
    try:
        return answer_text(turn)
    finally:
        if turn.after:
            services().bounded.later(f"sms sid={turn.sid}", turn.run_after)


def answer_text(turn: Turn) -> Response:
    """Validate, record and answer one text; the story of ``inbound_sms``."""
    if not signature_ok():
        return turn.finish("forbidden", plain(403, "invalid or missing X-Twilio-Signature"))
    try:
        text = InboundText.from_request(request.form, dict(request.headers))
    except InvalidText as exc:
        log.warning("sms rejected as malformed: %s", exc)
        return turn.finish("bad_request", plain(400, f"bad request: {exc}"))
    turn.sid, turn.number = text.sid, text.number
    manager, limits = services().manager, services().limits

    if not limits.admits(text.number):
        return turn.finish("blocked", twiml())
    if text.opt_out:
        record_opt_out(manager, text, turn)
        return turn.finish("opt_out", twiml())

    lease: TurnLease | None = None
    message: Message | None = None
    answer: str | None = None
    try:
        command = parse_command(text.body)
        message, created = record_text(manager, text, command)
        turn.count(texts=int(created))
        verdict = None
        if created and not message.metadata.get("unanswered"):
            # Counted once per new text, before anything is sent: whatever this text
            # gets (reply, reset confirmation, busy line) is covered by this one check.
            verdict = limits.check_rate(text.number)
            if not verdict.allowed:
                if command == "reset":  # honoured, but not confirmed past the limit
                    manager.reset_conversation(text.number)
                answer = refuse(manager, text, message, verdict.notice, turn)
                turn.details["limit"] = verdict.notice or "silent"
                return turn.finish("rate_limited", twiml(answer, status_url(text)))
        reply = None if created else manager.get_reply(text.number, message)
        if reply is None and command == "reset":
            if message.metadata.get("unanswered"):  # opted out: reset, but send nothing
                manager.reset_conversation(text.number)
                return turn.finish("reset", twiml())
            reply = answer_reset(manager, text, message, turn)
            return turn.finish("reset", twiml(reply.content, status_url(text)))
        if reply is not None:
            return turn.finish("duplicate", twiml(reply.content, status_url(text)))
        if message.metadata.get("unanswered"):
            return turn.finish("unanswered", twiml())

        lease, history = take_turn(manager, text, message, turn)
        if lease is None:
            answer = record_reply(
                manager, text, message, BUSY_LINE, {"fallback": "turn_timeout"}, turn=turn
            ).content
            return turn.finish("busy", twiml(answer, status_url(text)))
        # Another attempt at this text (a retry, or the first attempt when this is the
        # retry) may have answered or silenced it while we waited for the turn.
        message, reply = current_state(manager, text, message, history)
        if reply is not None:
            return turn.finish("duplicate", twiml(reply.content, status_url(text)))
        if message.metadata.get("unanswered"):
            return turn.finish("unanswered", twiml())

        if verdict is not None:  # a retry was counted by the attempt that stored the text
            turn.count(active_numbers=int(first_text_today(limits, verdict, text.number, history, message)))

        context = context_window(history, message)
        header = memory_header(manager, text, message, history)
        summary = header.summary.text if header is not None and header.summary else None
        responder, fallback, reservation = choose_responder(limits, context, text, message, turn, summary)
        started = time.monotonic()
        reply_obj = ask(responder, context, text, message, turn, summary)
        turn.mark("model", started)
        # From here on only the time left before the deadline is spent before answering.
        if reservation is not None:
            turn.after.append(partial(settle, limits, reservation, _tokens(reply_obj), text))
        if getattr(reply_obj, "error", None):
            turn.details["model_error"] = reply_obj.error
        # Stored as sent: what XML cannot carry never reaches the texter, so it is not kept either.
        answer, encoding = fit_reply(xml_safe(reply_obj.text), current_app.config["REPLY_MAX_CHARS"])
        segments = count_segments(answer)
        stored = store_reply_in_time(
            manager, text, message, answer,
            {**reply_obj.metadata(), **segments.metadata(), **encoding,
             **({"fallback": fallback} if fallback else {})},
            {
                "tokens": _tokens(reply_obj),
                "segments": segments.count,
                "model_calls": int(getattr(reply_obj, "attempts", 1)),
            },
            turn,
        )
        turn.latency_ms = float(getattr(reply_obj, "latency_ms", 0.0))
        keep_memory(header, text, turn)
        answer = stored.content if stored is not None else answer
        turn.details.update(segments=segments.count, history=len(context))
        if fallback or reply_obj.fallback:
            turn.details["fallback"] = fallback or reply_obj.fallback
        return turn.finish("replied", twiml(answer, status_url(text)))
    except ConversationError as exc:
        # Never silent: the texter hears from the cat even when the store is down.
        log.error("sms sid=%s from=%s: store failed: %s", text.sid, mask_number(text.number), exc)
        record = message is not None and not isinstance(exc, StorageUnavailable)
        answer = answer or rescue_reply(manager, text, message if record else None, turn)
        return turn.finish("store_failed", twiml(answer, status_url(text) if message else None))
    except Exception:
        # A bug must not leave the texter in silence either; the traceback goes to the log.
        log.exception("sms sid=%s from=%s: unexpected failure", text.sid, mask_number(text.number))
        return turn.finish("error", twiml(answer or rescue_reply(manager, text, None, turn)))
    finally:
        if lease is not None:
            turn.after.append(partial(release, lease, text))


# ------------------------------------------------------------- the steps


def signature_ok() -> bool:
    """Check X-Twilio-Signature against the public URL Twilio called."""
    validator: RequestValidator | None = services().validator
    if validator is None:  # validation turned off explicitly; warned about at start-up
        return True
    signature = request.headers.get("X-Twilio-Signature")
    if not signature:
        return False
    return validator.validate(public_url(), request.form, signature)


def public_url() -> str:
    """Return the URL as Twilio sees it: PUBLIC_BASE_URL if set, else the (proxy-fixed) request URL."""
    base = current_app.config.get("PUBLIC_BASE_URL")
    if not base:
        return request.url
    query = request.query_string.decode("latin-1")
    return base.rstrip("/") + request.script_root + request.path + (f"?{query}" if query else "")


def record_opt_out(manager: ConversationManager, text: InboundText, turn: Turn) -> None:
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


def record_text(manager: ConversationManager, text: InboundText, command: str | None) -> tuple[Message, bool]:
    """Store the text once (idempotent on MessageSid); return it and whether it is new."""
    metadata = text.metadata()
    if command:
        metadata["command"] = command
    # One read gives both the opt-out state and the conversation to append to.
    state = manager.get_user_state(text.number)
    if state["opted_out"]:
        # Twilio would refuse to deliver a reply (error 21610): keep the text, skip the model.
        metadata["unanswered"] = "opted_out"
    recorded = manager.record_user_message(
        text.number, text.body, message_id=text.sid,
        media_urls=text.media_urls, metadata=metadata,
        conversation_hint=state["active_conversation_id"],
    )
    return recorded.message, recorded.created


def answer_reset(manager: ConversationManager, text: InboundText, message: Message, turn: Turn) -> Message:
    """Archive the conversation and record the confirmation as the reply to the reset text."""
    manager.reset_conversation(text.number)
    return record_reply(manager, text, message, RESET_CONFIRMATION, {"command": "reset"}, turn=turn)


def take_turn(
    manager: ConversationManager, text: InboundText, message: Message, turn: Turn
) -> tuple[TurnLease | None, list[Message]]:
    """Wait for this number's turn: hold its lease, with every earlier text answered.

    Returns the lease and the history read under it, or (None, []) when the
    turn did not come in time.
    """
    config = current_app.config
    started = time.monotonic()
    until = started + TURN_WAIT_SHARE * (turn.deadline - started)
    lease = TurnLease(services().storage, text.number, config["TURN_LEASE_SECONDS"])
    limit = config["HISTORY_MAX_MESSAGES"] + LATE_ARRIVALS
    waits = 0
    for delay in backoff_delays():
        if lease.try_acquire():
            try:
                # The text's own conversation: one Query, no pointer read.
                history = manager.get_history(
                    text.number, limit, conversation_id=message.conversation_id
                )
            except BaseException:
                release(lease, text)  # the view never saw this lease, so it cannot release it
                raise
            # Texts older than the deadline whose reply never came were abandoned.
            max_age = config["REPLY_DEADLINE_SECONDS"] + 5
            if not waits_on_earlier(history, message, now=time.time(), max_age=max_age):
                turn.mark("turn", started)
                turn.details["waits"] = waits
                return lease, history
            release(lease, text)
        if time.monotonic() + delay > until:
            turn.mark("turn", started)
            log.warning("sms sid=%s: turn not free after %d waits", text.sid, waits)
            return None, []
        waits += 1
        time.sleep(delay)
    raise AssertionError("unreachable")  # backoff_delays never ends


def current_state(
    manager: ConversationManager, text: InboundText, message: Message, history: list[Message]
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


def release(lease: TurnLease, text: InboundText) -> None:
    """Release the lease; a failure only delays the next text until the lease expires."""
    try:
        lease.release()
    except StorageError as exc:
        log.warning("sms sid=%s: could not release the turn lease: %s", text.sid, exc)


def refuse(
    manager: ConversationManager, text: InboundText, message: Message, notice: str | None, turn: Turn
) -> str | None:
    """Keep an over-limit text unanswered: one notice per window, then silence."""
    if notice:
        line = DAY_NOTICE if notice == "day" else MINUTE_NOTICE
        return record_reply(manager, text, message, line, {"notice": f"rate_{notice}"}, turn=turn).content
    services().storage.update_message_metadata(text.number, message, {"unanswered": "rate_limited"})
    return None


def choose_responder(
    limits: Limits, context: list[Message], text: InboundText, message: Message, turn: Turn,
    summary: str | None = None,
) -> tuple[Any, str | None, Reservation | None]:
    """Return the model responder and its budget reservation, or the offline persona once
    today's budget is spent (or reserved by calls in flight)."""
    responder = services().responder
    estimate = getattr(responder, "token_estimate", None)
    extra = {"summary": summary} if summary else {}  # the running summary is sent too
    tokens = (
        estimate(context, text.body, media_urls=text.media_urls, message_id=message.message_id, **extra)
        if estimate is not None else current_app.config["OPENAI_MAX_TOKENS"]
    )
    reservation = limits.reserve_model_call(tokens)
    if reservation is not None:
        return responder, None, reservation
    log.warning("sms sid=%s: daily model budget spent; the offline persona answers", turn.sid)
    return services().offline_responder, "budget", None


def settle(limits: Limits, reservation: Reservation, used: int, text: InboundText) -> None:
    """Count what the call used instead of what was reserved; a failure only skews today's total."""
    try:
        limits.settle(reservation, used)
    except StorageError as exc:
        log.warning("sms sid=%s: could not settle the model budget: %s", text.sid, exc)


def context_window(history: list[Message], message: Message) -> list[Message]:
    """Keep what came before this text (not the text itself), within the configured size."""
    config = current_app.config
    return window.context_window(
        history,
        text=message,
        max_messages=config["HISTORY_MAX_MESSAGES"],
        max_chars=config["HISTORY_MAX_CHARS"],
    )


def memory_header(
    manager: ConversationManager, text: InboundText, message: Message, history: list[Message]
) -> Conversation | None:
    """Return the conversation header with its running summary, when one may exist.

    A conversation shorter than the window has no summary, so the header is read
    (one GetItem) only once the window is full. A failed read means no memory this time.
    """
    keeper = services().memory
    if keeper is None or len(history) < keeper.policy.window_messages or message.conversation_id is None:
        return None
    try:
        return manager.get_conversation(text.number, message.conversation_id)
    except ConversationError as exc:
        log.warning("sms sid=%s: no summary this turn: %s", text.sid, exc)
        return None


def keep_memory(header: Conversation | None, text: InboundText, turn: Turn) -> None:
    """Queue a summary update after the reply when one is due (never waits for it)."""
    keeper = services().memory
    # The header was read before the reply was stored: one message more since.
    if keeper is not None and header is not None and keeper.policy.due(header, added=1):
        queued = keeper.schedule(text.number, header.conversation_id)
        turn.details["memory"] = "queued" if queued else "pending"


def ask(responder: Responder, context: list[Message], text: InboundText, message: Message, turn: Turn,
        summary: str | None = None) -> Any:
    """Get the persona's reply; a responder that breaks its never-raise promise gets the offline one."""
    kwargs: dict[str, Any] = {"deadline": turn.model_deadline, "media_urls": text.media_urls,
                              "message_id": message.message_id}
    if summary:  # only then, so responders written before summaries keep working
        kwargs["summary"] = summary
    try:
        return responder.reply(context, text.body, **kwargs)
    except Exception:  # the interface promises no exceptions; log loudly and answer anyway
        log.exception("sms sid=%s: responder raised; the offline persona answers", text.sid)
        return services().offline_responder.reply(context, text.body, **kwargs)


def record_reply(
    manager: ConversationManager,
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


def rescue_reply(manager: ConversationManager, text: InboundText, message: Message | None, turn: Turn) -> str:
    """Produce an offline reply after a failure; record it as the reply to ``message`` if given
    and there is time left before the deadline."""
    try:
        reply = services().offline_responder.reply([], text.body, media_urls=text.media_urls)
        content = truncate(reply.text, current_app.config["REPLY_MAX_CHARS"]) or LAST_RESORT
    except Exception:  # last line of defence: the texter must hear something
        log.exception("sms sid=%s: offline persona failed too", text.sid)
        content = LAST_RESORT
    if message is not None:
        try:
            content = services().bounded.run(
                turn.deadline, record_reply, manager, text, message, content, {"fallback": "store_failed"}
            ).content
        except (ConversationError, OutOfTime) as again:
            log.error("sms sid=%s: could not record the rescue reply: %s", text.sid, again)
    return content


def first_text_today(
    limits: Limits, verdict: Any, number: str, history: list[Message], message: Message
) -> bool:
    """Return whether this is the number's first text today that reached the limits.

    The per-day rate counter already knows; without one, an earlier answerable
    text of today in the window says no, and only then is a per-day counter asked.
    """
    if limits.per_day:
        return verdict.day_count == 1
    today = time.strftime("%Y-%m-%d", time.gmtime())
    for item in history:
        if (
            item.role == "user" and item.message_id != message.message_id
            and item.timestamp.startswith(today)
            and not item.metadata.get("unanswered") and not item.metadata.get("command")
        ):
            return False
    return services().daily_stats.first_text_today(number)


def store_reply_in_time(
    manager: ConversationManager, text: InboundText, message: Message, content: str,
    metadata: dict[str, Any], counters: dict[str, int], turn: Turn,
) -> Message | None:
    """Store the model's reply within the time left; None when it could not be.

    A reply that misses the deadline is still sent, and stored after the answer.
    """
    try:
        recorded = services().bounded.run(
            turn.deadline, manager.record_assistant_message,
            text.number, content, reply_to=message, metadata=metadata, counters=counters,
        )
    except (OutOfTime, StorageError) as exc:
        log.error("sms sid=%s: the reply was not stored before the deadline (%s); it is sent now "
                  "and stored after the answer", text.sid, exc)
        turn.details["store"] = "late"
        turn.after.insert(0, partial(store_late, services().bounded, manager, text, message, content,
                                     metadata, counters))
        return None
    if recorded.created:
        turn.add_reply(recorded.message, counters)
    return recorded.message


def store_late(
    bounded: Bounded, manager: ConversationManager, text: InboundText, message: Message, content: str,
    metadata: dict[str, Any], counters: dict[str, int],
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


def add_figures(stats: DailyStats, turn: Turn) -> None:
    """Add a finished turn's figures to today's aggregates (after the answer); a failure is logged."""
    try:
        stats.add(turn.figures, latency_ms=turn.latency_ms)
    except StorageError as exc:
        log.warning("sms sid=%s: could not add to the daily figures: %s", turn.sid, exc)


def save_figures(turn: Turn) -> None:
    """Add the turn's figures to today's aggregates in one write; a failure is only logged."""
    if not turn.figures and turn.latency_ms is None:
        return
    try:
        services().daily_stats.add(turn.figures, latency_ms=turn.latency_ms)
    except StorageError as exc:
        log.warning("sms sid=%s: could not add to the daily figures: %s", turn.sid, exc)
        turn.details["stats"] = "failed"


def _tokens(reply: Any) -> int:
    usage = getattr(reply, "usage", None) or {}
    return int(usage.get("total_tokens") or 0)


# ------------------------------------------------------------ status and health


@bp.post("/sms/status")
def delivery_status() -> Response:
    """Record Twilio's delivery status of a reply on the stored reply."""
    if not signature_ok():
        return plain(403, "invalid or missing X-Twilio-Signature")
    inbound_sid = request.args.get("sid", "")
    number = (request.form.get("To") or "").strip()
    status = (request.form.get("MessageStatus") or "").strip().lower()
    if not inbound_sid or not number or not status or not _valid_number(number):
        return plain(400, "bad request: need ?sid=, To and MessageStatus")
    manager = services().manager
    try:
        message = manager.get_message(number, inbound_sid)
        reply = manager.get_reply(number, message) if message else None
        if reply is None:
            log.warning("status sid=%s: no stored reply for %s", inbound_sid, mask_number(number))
            return twiml()
        previous = reply.metadata.get("delivery_status")
        if STATUS_RANK.get(status, 0) < STATUS_RANK.get(previous or "", -1):
            return twiml()  # a late callback for an earlier step
        updates = {"delivery_status": status, "outbound_sid": request.form.get("MessageSid")}
        if request.form.get("ErrorCode"):
            updates["delivery_error_code"] = request.form["ErrorCode"]
        failed_now = status in FAILED_STATUSES and previous not in FAILED_STATUSES
        services().storage.update_message_metadata(
            number, reply, updates, counters={"delivery_failures": 1} if failed_now else None
        )
        if failed_now:
            failure = Turn(sid=inbound_sid, figures={"delivery_failures": 1})
            save_figures(failure)
    except StorageError as exc:
        log.error("status sid=%s: store failed: %s", inbound_sid, exc)
        return plain(503, "store unavailable")
    log.info("status sid=%s to=%s status=%s", inbound_sid, mask_number(number), status)
    return twiml()


@health_bp.get("/health")
def health() -> tuple[Response, int]:
    """Report whether the table is reachable, whether the model takes our requests and
    whether today's model budget is spent.

    A model that refuses requests makes the status "degraded" (still 200: texts are
    answered, by the offline persona); an unreachable table makes it 503.
    """
    body: dict[str, Any] = {"status": "ok"}
    problems = getattr(services().responder, "compat", None)
    refused = problems.problems() if problems is not None else {}
    if refused:
        body["status"] = "degraded"
        body["model_errors"] = [{"model": model, "error": reason} for model, reason in refused.items()]
    try:
        services().storage.ping()
        body["storage"] = "ok"
        budget = services().limits.budget_status()
        # Public endpoint: say whether the budget is spent, not how it is used.
        body["model_budget_spent"] = budget["spent"]
    except StorageError as exc:
        log.error("health: store unavailable: %s", exc)
        body.update(status="unavailable", storage="unreachable")
    return jsonify(body), 503 if body["status"] == "unavailable" else 200


# ------------------------------------------------------------------ helpers


def twiml(body: str | None = None, action: str | None = None) -> Response:
    """Return TwiML with one message (or none) as application/xml; XML-forbidden characters are dropped."""
    response = MessagingResponse()
    body = xml_safe(body) if body else body
    if body:
        if action:
            response.message(body, action=action, method="POST")
        else:
            response.message(body)
    return Response(str(response), status=200, mimetype="application/xml")


def plain(status: int, text: str) -> Response:
    """Return a short plain-text error."""
    return Response(text + "\n", status=status, mimetype="text/plain")


def status_url(text: InboundText) -> str:
    """Return the absolute URL Twilio should post the reply's delivery status to."""
    path = url_for("sms.delivery_status", sid=text.sid)
    base = current_app.config.get("PUBLIC_BASE_URL")
    if base:
        return base.rstrip("/") + path
    return request.host_url.rstrip("/") + path


def _valid_number(number: str) -> bool:
    try:
        check_user_id(number)
    except ValueError:
        return False
    return True


def init_app(app: Flask) -> None:
    """Register the webhook and health routes."""
    app.register_blueprint(bp)
    app.register_blueprint(health_bp)
