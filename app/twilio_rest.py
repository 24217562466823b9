"""Sending replies through Twilio's Messages API with the official ``twilio`` client.

``TwilioRestSender`` implements ``app.outbound.ReplySender``. It is built once by
``create_app`` (``build_sender``) from the settings alone: the account SID with the auth
token or an API key pair, the messaging service, and ``TWILIO_API_BASE_URL``, which sends
the client's requests to another server (the local stand-in of ``make run`` and the tests)
without changing what is sent.

Twilio's answers become the two failures of the seam:

- ``SendRefused(code)``: a 4xx that names the message as the problem (21610: the texter sent
  STOP; 21211 / 21614: not a valid or mobile number; 21617: body too long ...). Sending the
  same message again would be refused again.
- ``SendFailed``: anything that may pass later: 429 / 20429 (too many requests), 5xx, 401 /
  403 (credentials an operator can fix), a timeout or a broken connection. After a timeout
  the message may have been sent anyway; ``recent_to`` lets recovery find out.

Logs name the number masked and never the body.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from twilio.base.exceptions import TwilioException, TwilioRestException, TwilioServiceException
from twilio.http.http_client import TwilioHttpClient
from twilio.http.response import Response
from twilio.rest import Client

from app.config import Settings, rest_configured
from app.logutil import mask_number
from app.outbound import SendFailed, SendRefused, Sent

log = logging.getLogger(__name__)

TWILIO_API = "https://api.twilio.com"
# Seconds to connect and to wait for each answer: the API answers a create in well under a
# second; a send stuck longer is better failed (and recovered) than holding a worker.
TIMEOUT_SECONDS = 5.0
# HTTP statuses that mean "try again later" rather than "this message is refused".
TRANSIENT_STATUSES = frozenset({401, 403, 408, 409, 429})
# Connections kept to the Messages API per process: as many as background turns may send at once.
POOL_SIZE = 32
# Most messages read back by recent_to (newest first): recovery looks at seconds of history.
RECENT_LIMIT = 50
# What the client raises: Twilio's errors, the network's, and an answer that is not JSON.
CLIENT_ERRORS = (TwilioException, requests.RequestException, json.JSONDecodeError)


class BaseUrlHttpClient(TwilioHttpClient):
    """The client's own HTTP client, sending requests meant for api.twilio.com to ``base_url``."""

    def __init__(self, base_url: str | None, timeout: float) -> None:
        # The library's logger writes every request line (with query numbers) at INFO;
        # configure_logging keeps "twilio" at WARNING.
        super().__init__(timeout=timeout)
        self.base_url = base_url.rstrip("/") if base_url else None
        # One connection per concurrent send: the library's pool (a few connections, https
        # only) would open and drop a connection for every send beyond it, with a warning each.
        assert self.session is not None
        for scheme in ("https://", "http://"):
            self.session.mount(scheme, HTTPAdapter(pool_maxsize=POOL_SIZE))

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Response:
        if self.base_url and url.startswith(TWILIO_API):
            url = self.base_url + url[len(TWILIO_API):]
        return super().request(method, url, *args, **kwargs)


class TwilioRestSender:
    """Sends replies as new messages through the Messages API (see the module docstring)."""

    def __init__(
        self,
        *,
        account_sid: str,
        username: str,
        password: str,
        messaging_service_sid: str | None = None,
        base_url: str | None = None,
        timeout: float = TIMEOUT_SECONDS,
    ) -> None:
        self.messaging_service_sid = messaging_service_sid
        self.client = Client(
            username, password, account_sid=account_sid,
            http_client=BaseUrlHttpClient(base_url, timeout),
        )
        # The client also reads TWILIO_EDGE / TWILIO_REGION from the environment and would
        # rewrite host names; settings come from app/config alone.
        self.client.edge = None
        self.client.region = None

    def send(self, *, to: str, from_: str | None, body: str, status_callback: str | None) -> Sent:
        """Create one message to ``to``: from the messaging service when one is configured
        (its sender pool picks the number), else from ``from_``.
        """
        params: dict[str, Any] = {"to": to, "body": body}
        if self.messaging_service_sid:
            params["messaging_service_sid"] = self.messaging_service_sid
        elif from_:
            params["from_"] = from_
        else:
            raise SendRefused("no sender: neither a from number nor TWILIO_MESSAGING_SERVICE_SID")
        if status_callback:
            params["status_callback"] = status_callback
        try:
            message = self.client.messages.create(**params)
        except CLIENT_ERRORS as error:
            raise _mapped(error, "send", to) from error
        log.info("reply sent through the Messages API to %s: %s (%s)",
                 mask_number(to), message.sid, message.status)
        return Sent(sid=str(message.sid), status=str(message.status))

    def recent_to(self, to: str, since_epoch: float) -> list[tuple[str, str]]:
        """(sid, body) of the messages created for ``to`` since ``since_epoch``, oldest first."""
        since = datetime.fromtimestamp(since_epoch, UTC)
        # No DateSent filter: a message still queued has no date_sent yet and would be missed.
        try:
            messages = self.client.messages.list(to=to, limit=RECENT_LIMIT, page_size=RECENT_LIMIT)
        except CLIENT_ERRORS as error:
            raise _mapped(error, "list", to) from error
        found = [(str(m.sid), str(m.body or "")) for m in messages
                 if m.date_created is None or m.date_created >= since.replace(microsecond=0)]
        found.reverse()
        return found


def _mapped(error: Exception, what: str, to: str) -> SendRefused | SendFailed:
    """Turn a client failure into SendRefused or SendFailed (and log it without the body)."""
    if isinstance(error, TwilioRestException | TwilioServiceException):
        status, code = int(error.status), error.code
        log.warning("Messages API %s to %s: HTTP %s, Twilio error %s", what, mask_number(to), status, code)
        if 400 <= status < 500 and status not in TRANSIENT_STATUSES and code != 20429:
            return SendRefused(f"Twilio refused the message (HTTP {status}, error {code})", code)
        return SendFailed(f"Twilio answered HTTP {status} (error {code})")
    log.warning("Messages API %s to %s failed: %s", what, mask_number(to), type(error).__name__)
    return SendFailed(f"Messages API unreachable or unreadable: {type(error).__name__}")


def build_sender(settings: Settings) -> TwilioRestSender | None:
    """The sender the settings describe, or None when they give no REST credentials."""
    if not rest_configured(settings):
        return None
    account_sid = settings.twilio_account_sid or ""
    if settings.twilio_api_key_sid and settings.twilio_api_key_secret:
        username, password = settings.twilio_api_key_sid, settings.twilio_api_key_secret
    else:
        username, password = account_sid, settings.twilio_auth_token or ""
    return TwilioRestSender(
        account_sid=account_sid, username=username, password=password,
        messaging_service_sid=settings.twilio_messaging_service_sid,
        base_url=settings.twilio_api_base_url,
    )
