"""Twilio's side of the webhook that needs the request: the signature check, TwiML answers
and the delivery-status callback URL. Form parsing is in app/twilio_form.py.
"""

from __future__ import annotations

from flask import Response, request, url_for
from twilio.twiml.messaging_response import MessagingResponse

from app.services import services
from app.twilio_form import InboundText
from app.xmltext import xml_safe
from conversation import check_user_id


def signature_ok() -> bool:
    """Check X-Twilio-Signature against the public URL Twilio called."""
    validator = services().validator
    if validator is None:  # validation turned off explicitly; warned about at start-up
        return True
    signature = request.headers.get("X-Twilio-Signature")
    if not signature:
        return False
    return validator.validate(public_url(), request.form, signature)


def public_url() -> str:
    """Return the URL as Twilio sees it: PUBLIC_BASE_URL if set, else the (proxy-fixed) request URL."""
    base = services().settings.public_base_url
    if not base:
        return request.url
    query = request.query_string.decode("latin-1")
    return base.rstrip("/") + request.script_root + request.path + (f"?{query}" if query else "")


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


def status_url(text: InboundText, sid: str | None = None) -> str:
    """Return the absolute URL Twilio should post the reply's delivery status to
    (the reply to ``text``, or to the text ``sid`` when it answers a later one)."""
    path = url_for("sms.delivery_status", sid=sid or text.sid)
    base = services().settings.public_base_url
    if base:
        return base.rstrip("/") + path
    return request.host_url.rstrip("/") + path


def valid_number(number: str) -> bool:
    try:
        check_user_id(number)
    except ValueError:
        return False
    return True

