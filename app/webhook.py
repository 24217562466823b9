"""The SMS webhook's views: Twilio posts each text here and gets exactly one TwiML answer.

``inbound_sms`` checks the signature, parses the form (app/twilio_sms.py), hands the
text to the text handler (app/text_handler.py, plain Python), logs the turn in one
line and answers with TwiML. ``/sms/status`` records delivery; ``/health`` reports.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, Flask, Response, jsonify, request

from app.delivery_status import LATE, UNKNOWN, record_status, stored_text
from app.logutil import log_fields, mask_number
from app.metrics import observe_turn
from app.services import services
from app.signed_form import InvalidText

# Re-exported: tests and the dev phone read the cat's fixed lines from here.
from app.text_handler import BUSY_LINE, DAY_NOTICE, LAST_RESORT, MINUTE_NOTICE, RESET_CONFIRMATION
from app.turn import Turn, add_figures
from app.twilio_form import InboundText
from app.twilio_sms import plain, signature_ok, status_url, twiml, valid_number
from conversation import StorageError

__all__ = ["BUSY_LINE", "DAY_NOTICE", "LAST_RESORT", "MINUTE_NOTICE", "RESET_CONFIRMATION", "init_app"]

log = logging.getLogger(__name__)

bp = Blueprint("sms", __name__)
health_bp = Blueprint("health", __name__)


@bp.post("/sms")
def inbound_sms() -> Response:
    """Answer one text from Twilio: exactly one reply per genuine MessageSid.

    What the answer does not need (the lease, the budget, the day's figures, a reply
    that missed the deadline) is done after it, off the response path.
    """
    found = services()
    turn = Turn.begin(found.text_handler.settings.reply_deadline_seconds, found.clock)
    try:
        return answer_text(turn)
    finally:
        if turn.after or turn.last:
            found.bounded.later(f"sms sid={turn.sid}", turn.run_after)


def answer_text(turn: Turn) -> Response:
    """Validate and parse the post, let the handler answer the text, render the outcome."""
    if not signature_ok():
        return finish(turn, "forbidden", plain(403, "invalid or missing X-Twilio-Signature"))
    try:
        text = InboundText.from_request(request.form, dict(request.headers))
    except InvalidText as exc:
        log.warning("sms rejected as malformed: %s", exc)
        return finish(turn, "bad_request", plain(400, f"bad request: {exc}"))
    turn.sid, turn.number = text.sid, text.number
    handler = services().text_handler
    if handler.pipeline is not None:
        handler.pipeline.callbacks.learn(request.host_url.rstrip("/") + request.script_root)
    outcome = handler.handle(text, turn)
    action = status_url(text, outcome.reply_to_sid) if outcome.track_delivery else None
    return finish(turn, outcome.kind, twiml(outcome.answer, action))


def finish(turn: Turn, outcome: str, response: Response) -> Response:
    """Log the one INFO line for this request (never the body) and return the response."""
    if outcome not in ("store_failed", "error"):  # the store is in trouble: no extra write
        if turn.figures or turn.latency_ms is not None:
            stats, done = services().daily_stats, Turn(sid=turn.sid, figures=dict(turn.figures),
                                                    latency_ms=turn.latency_ms)
            turn.after.append(lambda: add_figures(stats, done))
    total_ms = (turn.clock.monotonic() - turn.started) * 1000
    parts = [f"{name}_ms={value:.0f}" for name, value in turn.marks.items()]
    parts += [f"{name}={value}" for name, value in turn.details.items()]
    # The same fields again as structured data, for LOG_FORMAT=json.
    fields = {"event": "sms", "from": mask_number(turn.number), "sid": turn.sid, "outcome": outcome,
              "status": response.status_code, "total_ms": round(total_ms),
              **{f"{name}_ms": round(value) for name, value in turn.marks.items()}, **turn.details}
    observe_turn(outcome, total_ms, turn.marks, turn.details, turn.figures)
    log.info(
        "sms from=%s sid=%s outcome=%s status=%s total_ms=%.0f %s",
        mask_number(turn.number), turn.sid, outcome, response.status_code,
        total_ms, " ".join(parts), extra=log_fields(fields),
    )
    return response


def save_figures(turn: Turn) -> None:
    """Add the turn's figures to today's aggregates in one write; a failure is only logged."""
    if not turn.figures and turn.latency_ms is None:
        return
    try:
        services().daily_stats.add(turn.figures, latency_ms=turn.latency_ms)
    except StorageError as exc:
        log.warning("sms sid=%s: could not add to the daily figures: %s", turn.sid, exc)
        turn.details["stats"] = "failed"


@bp.post("/sms/status")
def delivery_status() -> Response:
    """Record Twilio's delivery status of a reply on the stored reply (app/delivery_status.py)."""
    if not signature_ok():
        return plain(403, "invalid or missing X-Twilio-Signature")
    inbound_sid = request.args.get("sid", "")
    number = (request.form.get("To") or "").strip()
    status = (request.form.get("MessageStatus") or "").strip().lower()
    if not inbound_sid or not number or not status or not valid_number(number):
        return plain(400, "bad request: need ?sid=, To and MessageStatus")
    updates: dict[str, object] = {"outbound_sid": request.form.get("MessageSid")}
    if request.form.get("ErrorCode"):
        updates["delivery_error_code"] = request.form["ErrorCode"]
    found = services()
    text = stored_text(inbound_sid, request.args.get("c"), request.args.get("p"))
    try:
        recorded = record_status(found.storage, found.manager, number, inbound_sid, text, status, updates)
    except StorageError as exc:
        log.error("status sid=%s: store failed: %s", inbound_sid, exc)
        return plain(503, "store unavailable")
    if recorded.outcome == UNKNOWN:
        log.warning("status sid=%s: no stored reply for %s", inbound_sid, mask_number(number))
        return twiml()
    if recorded.failed_now:
        save_figures(Turn(sid=inbound_sid, figures={"delivery_failures": 1}))
    log.info("status sid=%s to=%s status=%s%s", inbound_sid, mask_number(number), status,
             " (late, kept the later one)" if recorded.outcome == LATE else "")
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


def init_app(app: Flask) -> None:
    """Register the webhook and health routes."""
    app.register_blueprint(bp)
    app.register_blueprint(health_bp)
