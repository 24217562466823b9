"""Sign and send texts the way Twilio does, and read the TwiML that comes back.

Signatures come from Twilio's own ``RequestValidator.compute_signature``; the
helpers work with Flask's test client (:class:`Texter`) or build raw form posts
for a real HTTP server (:meth:`Texter.signed_post`).
"""

from __future__ import annotations

import hashlib
import uuid
import xml.etree.ElementTree as ET
from typing import Any
from urllib.parse import urlencode, urlsplit

from twilio.request_validator import RequestValidator

AUTH_TOKEN = "test-auth-token-0123456789abcdef"
ACCOUNT_SID = "AC" + "0" * 32
BOT_NUMBER = "+15550001111"


def new_sid(prefix: str = "SM") -> str:
    """Return a fresh Twilio-looking SID."""
    return prefix + uuid.uuid4().hex


def sid_for(label: str, prefix: str = "SM") -> str:
    """Return a valid SID that is always the same for ``label`` (readable tests, real format)."""
    return prefix + hashlib.md5(label.encode(), usedforsecurity=False).hexdigest()


def parse_twiml(text: str | bytes) -> list[ET.Element]:
    """Parse a TwiML document and return its <Message> elements (asserting the root)."""
    root = ET.fromstring(text)
    assert root.tag == "Response", f"TwiML root is {root.tag!r}"
    return list(root.iter("Message"))


def twiml_bodies(text: str | bytes) -> list[str]:
    """Return the text of every <Message> in a TwiML document."""
    return [element.text or "" for element in parse_twiml(text)]


class Texter:
    """Send signed Twilio webhook posts from one phone number.

    :param client: a Flask test client (or None when only building raw posts).
    :param base_url: the public URL Twilio would call, without a trailing slash.
    """

    def __init__(
        self,
        client: Any = None,
        *,
        number: str = "+15551234567",
        token: str = AUTH_TOKEN,
        base_url: str = "http://localhost",
    ) -> None:
        self.client = client
        self.number = number
        self.validator = RequestValidator(token)
        self.base_url = base_url.rstrip("/")

    def params(
        self,
        body: str = "",
        *,
        sid: str | None = None,
        number: str | None = None,
        media: list[tuple[str, str]] | None = None,
        **extra: str,
    ) -> dict[str, str]:
        """Return the form Twilio posts for one inbound text."""
        media = media or []
        params = {
            "MessageSid": sid or new_sid(),
            "AccountSid": ACCOUNT_SID,
            "From": number or self.number,
            "To": BOT_NUMBER,
            "Body": body,
            "NumMedia": str(len(media)),
            "NumSegments": "1",
            "FromCountry": "US",
        }
        for index, (url, kind) in enumerate(media):
            params[f"MediaUrl{index}"] = url
            params[f"MediaContentType{index}"] = kind
        params.update(extra)
        return params

    def sign(self, url: str, params: dict[str, str]) -> str:
        """Return the X-Twilio-Signature Twilio would send for this URL and form."""
        return self.validator.compute_signature(url, params)

    def post(
        self,
        params: dict[str, str],
        *,
        path: str = "/sms",
        sign_url: str | None = None,
        signature: str | None = None,
        headers: dict[str, str] | None = None,
        signed: bool = True,
        **kwargs: Any,
    ) -> Any:
        """Post a form through the test client, signed for ``sign_url`` (the public URL by default)."""
        all_headers = {"I-Twilio-Idempotency-Token": uuid.uuid4().hex, **(headers or {})}
        if signed:
            url = sign_url or self.base_url + path
            all_headers["X-Twilio-Signature"] = signature or self.sign(url, params)
        return self.client.post(path, data=params, headers=all_headers, **kwargs)

    def text(self, body: str = "", **kwargs: Any) -> Any:
        """Send one signed text and return the response."""
        post_keys = ("path", "sign_url", "signature", "headers", "signed")
        post_args = {key: kwargs.pop(key) for key in post_keys if key in kwargs}
        return self.post(self.params(body, **kwargs), **post_args)

    def status(self, inbound_sid: str, status: str, *, url: str | None = None,
               callback_url: str | None = None, **extra: str) -> Any:
        """Post a signed delivery-status callback for the reply to ``inbound_sid`` (to the
        ``callback_url`` the bot gave Twilio, when given)."""
        path = f"/sms/status?sid={inbound_sid}"
        if callback_url is not None:
            parts = urlsplit(callback_url)
            path, url = f"{parts.path}?{parts.query}", callback_url
        params = {
            "MessageSid": new_sid(),
            "AccountSid": ACCOUNT_SID,
            "From": BOT_NUMBER,
            "To": self.number,
            "MessageStatus": status,
            **extra,
        }
        return self.post(params, path=path, sign_url=url or self.base_url + path)

    def signed_post(self, url: str, params: dict[str, str]) -> tuple[bytes, dict[str, str]]:
        """Return the body and headers of a raw HTTP form post to ``url``, signed."""
        data = urlencode(params).encode()
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Twilio-Signature": self.sign(url, params),
            "I-Twilio-Idempotency-Token": uuid.uuid4().hex,
        }
        return data, headers
