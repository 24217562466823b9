"""Twilio's form for an inbound text, parsed into an ``InboundText`` (no Flask here).

The text handler (app/text_handler.py) takes the parsed text; the view passes the
request's form and headers in as plain mappings.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from app.signed_form import InvalidText, text_sid
from app.sms import MAX_BODY_CHARS
from conversation import check_user_id

OPT_OUT_TYPES = ("STOP", "START", "HELP")
MAX_MEDIA = 10


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
        if self.to:  # the bot's number it came to: the sender of a reply sent later
            data["to"] = self.to
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
