"""The dev phone: a phone-sized page for texting the bot from a browser as any number.

Served under ``/dev-phone/`` only when ``DEV_PHONE_ENABLED`` is on (``make run`` turns it
on). The page never talks to ``/sms`` itself: it posts the number and the text here as
JSON, and :func:`send` builds the form Twilio would post, signs it with Twilio's own
``RequestValidator`` and the bot's auth token, and dispatches it through the app's WSGI
stack to the real webhook, exactly as a text from Twilio would arrive. Replies shown on
the page are what the webhook answered, what the conversation store holds and, for a reply
sent later (``REPLY_MODE`` auto or async), what the Messages API lists for the number
(app/devphone/thread.py); the page polls :func:`inbox` for them, and shows "typing" while
:func:`inbox` says a reply is on its way.

Numbers and bodies travel only in POST bodies, never in URLs, and are not logged.
"""

from __future__ import annotations

import logging
import re
import uuid
import xml.etree.ElementTree as ET
from typing import Any
from urllib.parse import urlsplit

from flask import Blueprint, Flask, Response, current_app, jsonify, render_template, request, url_for
from twilio.request_validator import RequestValidator

from app.devphone.thread import Thread, bubble, oldest, reply_bubbles, thread, unstored_bubble
from app.logutil import mask_number
from app.outbound import SendFailed
from app.services import services
from app.sms import MAX_BODY_CHARS, count_segments
from conversation import StorageError, check_user_id
from conversation.models import Message

log = logging.getLogger(__name__)

bp = Blueprint(
    "devphone", __name__, url_prefix="/dev-phone",
    template_folder="templates", static_folder="static", static_url_path="/static",
)

# The number the dev phone texts (Twilio's test "valid number") and the account it
# pretends to belong to; the webhook does not check either.
BOT_NUMBER = "+15005550006"
ACCOUNT_SID = "AC" + "d" * 32
# Twilio's default opt-out keywords: Twilio recognises these itself and adds OptOutType.
OPT_OUT_KEYWORDS = {
    **dict.fromkeys(("STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT"), "STOP"),
    **dict.fromkeys(("START", "YES", "UNSTOP"), "START"),
    **dict.fromkeys(("HELP", "INFO"), "HELP"),
}
PICTURE_TYPES = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png",
                 ".gif": "image/gif", ".webp": "image/webp"}
MAX_MEDIA_URL = 1000
E164 = re.compile(r"\+[1-9][0-9]{6,14}")
INBOX_MESSAGES = 50
# Sample numbers offered on the page (555-01xx numbers are reserved for fiction).
SAMPLE_NUMBERS = ("+15555550100", "+15555550101", "+15555550102", "+447700900123")

CONTENT_SECURITY_POLICY = "; ".join((
    "default-src 'none'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self'",
    "connect-src 'self'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
))


class BadRequest(ValueError):
    """The page sent something unusable; the message says what (answered with 400)."""


# ------------------------------------------------------------------ views


@bp.get("/")
def page() -> str:
    """Serve the phone page (texter data arrives later as JSON, never in the HTML)."""
    return render_template("devphone/phone.html", numbers=SAMPLE_NUMBERS, max_chars=MAX_BODY_CHARS)


@bp.post("/api/send")
def send() -> tuple[Response, int]:
    """Sign one text as Twilio would, post it through the real webhook, return what happened."""
    try:
        data = _json()
        number = _number(data)
        body = data.get("body")
        if not isinstance(body, str) or len(body) > MAX_BODY_CHARS:
            raise BadRequest(f"body must be text of at most {MAX_BODY_CHARS} characters")
        media = _media(data.get("media_url"))
    except BadRequest as exc:
        return jsonify(error=str(exc)), 400
    if not body.strip() and not media:
        return jsonify(error="write a text or attach a picture"), 400

    params = twilio_form(number, body, media)
    response = post_to_webhook(params)
    log.info("dev phone: text from %s through the webhook: HTTP %s",
             mask_number(number), response.status_code)
    result: dict[str, Any] = {"webhook_status": response.status_code}
    if response.status_code != 200:
        result["error"] = f"the webhook answered HTTP {response.status_code}"
        return jsonify(result), 200

    replies = twiml_bodies(response.get_data())
    manager = services().manager
    try:
        sent = manager.get_message(number, params["MessageSid"])
        stored_reply = manager.get_reply(number, sent) if sent else None
        opted_out = manager.get_user_state(number)["opted_out"]
    except StorageError as exc:
        log.error("dev phone: store unavailable after a text: %s", exc)
        sent, stored_reply, opted_out = None, None, None
    sent_bubble = bubble(sent) if sent else unstored_bubble(params["MessageSid"], body, media)
    result["messages"] = [sent_bubble, *reply_bubbles(params["MessageSid"], replies, stored_reply)]
    result["opted_out"] = opted_out
    # A text the bot took without answering it in the webhook gets its reply later.
    waiting = (not replies and sends_later() and sent is not None
               and not sent.metadata.get("unanswered") and not sent.metadata.get("command"))
    result["waiting"] = waiting
    result["wait_seconds"] = services().settings.model_timeout_seconds
    if params.get("OptOutType"):
        result["note"] = OPT_OUT_NOTES[params["OptOutType"]]
    elif waiting:
        result["note"] = "The bot is writing its reply; it comes later, through the Messages API."
    elif not replies:
        result["note"] = "The bot sent no reply to this text."
    return jsonify(result), 200


@bp.post("/api/inbox")
def inbox() -> tuple[Response, int]:
    """Return the number's active conversation and whether a reply is on its way (the page polls this)."""
    try:
        number = _number(_json())
    except BadRequest as exc:
        return jsonify(error=str(exc)), 400
    manager = services().manager
    try:
        state = manager.get_user_state(number)
        history = manager.get_history(number, INBOX_MESSAGES) if state["active_conversation_id"] else []
    except StorageError as exc:
        log.error("dev phone: store unavailable: %s", exc)
        return jsonify(error="the conversation store is unavailable"), 503
    try:
        shown = phone_thread(number, history)
    except SendFailed as exc:
        log.warning("dev phone: the Messages API could not be read: %s", exc)
        return jsonify(error="the Messages API could not be read for replies sent later"), 503
    return jsonify(messages=shown.messages, opted_out=state["opted_out"], waiting=shown.waiting,
                   wait_seconds=services().settings.model_timeout_seconds), 200


OPT_OUT_NOTES = {
    "STOP": "Twilio handles STOP: this number is opted out and the bot stays silent until START.",
    "START": "Twilio handles START: this number is opted in again.",
    "HELP": "Twilio answers HELP itself with your service's help text; the bot stays silent.",
}


# ------------------------------------------------------------------ the text Twilio would post


def twilio_form(number: str, body: str, media: tuple[str, str] | None) -> dict[str, str]:
    """Return the form Twilio posts to the webhook for one inbound text."""
    params = {
        "MessageSid": ("MM" if media else "SM") + uuid.uuid4().hex,
        "AccountSid": ACCOUNT_SID,
        "MessagingServiceSid": "",
        "From": number,
        "To": BOT_NUMBER,
        "Body": body,
        "NumMedia": "1" if media else "0",
        "NumSegments": str(max(1, count_segments(body).count)),
        "SmsStatus": "received",
        "ApiVersion": "2010-04-01",
    }
    if media:
        params["MediaUrl0"], params["MediaContentType0"] = media
    keyword = OPT_OUT_KEYWORDS.get(body.strip().upper())
    if keyword:
        params["OptOutType"] = keyword
    return params


def sends_later() -> bool:
    """Return whether the bot sends replies through the Messages API after the webhook answered."""
    found = services()
    return found.sender is not None and found.settings.reply_mode != "sync"


def phone_thread(number: str, history: list[Message]) -> Thread:
    """Return the thread the phone shows: the store's, with the replies sent later as listed.

    :raises SendFailed: the Messages API could not be read.
    """
    found = services()
    since = oldest(history)
    on_phone: list[tuple[str, str]] = []
    if since is not None and found.sender is not None and sends_later():
        on_phone = found.sender.recent_to(number, since)
    return thread(history, on_phone, now=found.clock.time(),
                  wait_seconds=found.settings.model_timeout_seconds if sends_later() else 0.0)


def webhook_url() -> str:
    """Return the URL Twilio would call, as the webhook will check it (PUBLIC_BASE_URL wins)."""
    path = url_for("sms.inbound_sms")
    base = services().settings.public_base_url
    return (base.rstrip("/") if base else request.host_url.rstrip("/")) + path


def post_to_webhook(params: dict[str, str]) -> Any:
    """Post the signed form through the app's whole WSGI stack to ``/sms``; return the response."""
    headers = {"I-Twilio-Idempotency-Token": uuid.uuid4().hex}
    token = services().settings.twilio_auth_token
    if token:
        headers["X-Twilio-Signature"] = RequestValidator(token).compute_signature(webhook_url(), params)
    client = current_app.test_client()
    return client.post(url_for("sms.inbound_sms"), data=params, headers=headers,
                       base_url=request.host_url)


def twiml_bodies(document: bytes) -> list[str]:
    """Return the text of each <Message> in the webhook's TwiML answer."""
    try:
        root = ET.fromstring(document)
    except ET.ParseError:
        return []
    return [element.text or "" for element in root.iter("Message") if element.text]


# ------------------------------------------------------------------ input


def _json() -> dict[str, Any]:
    # Only this page may send: JSON bodies (a cross-site form cannot send one without a
    # CORS preflight, which is never granted) from this origin when the browser says.
    origin = request.headers.get("Origin")
    if origin and origin.rstrip("/") != request.host_url.rstrip("/"):
        raise BadRequest("cross-origin requests are refused")
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        raise BadRequest("send a JSON object")
    return data


def _number(data: dict[str, Any]) -> str:
    number = data.get("number")
    if not isinstance(number, str):
        raise BadRequest("number is required")
    number = number.strip()
    if not E164.fullmatch(number):
        raise BadRequest("number must be in E.164 form, like +15555550100")
    return check_user_id(number)


def _media(raw: Any) -> tuple[str, str] | None:
    """Return (url, content type) for an attached picture URL, or None."""
    if raw in (None, ""):
        return None
    if not isinstance(raw, str) or len(raw) > MAX_MEDIA_URL:
        raise BadRequest(f"media_url must be a URL of at most {MAX_MEDIA_URL} characters")
    parts = urlsplit(raw.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise BadRequest("media_url must be an http or https URL")
    suffix = "." + parts.path.rsplit(".", 1)[-1].lower() if "." in parts.path else ""
    return raw.strip(), PICTURE_TYPES.get(suffix, "image/jpeg")


# ------------------------------------------------------------------ wiring


@bp.after_request
def security_headers(response: Response) -> Response:
    """Lock the dev phone's pages and answers down: strict CSP, no sniffing, no caching, no referrer."""
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["X-Frame-Options"] = "DENY"
    if request.endpoint != "devphone.static":
        response.headers["Cache-Control"] = "no-store"
    return response


def init_app(app: Flask) -> None:
    """Register the dev phone when DEV_PHONE_ENABLED is on (it does not exist otherwise)."""
    if not services(app).settings.dev_phone_enabled:
        return
    app.register_blueprint(bp)
    log.warning(
        "DEV_PHONE_ENABLED is on: /dev-phone/ lets anyone who can reach the bot text it as any "
        "number. Keep it off in production."
    )
