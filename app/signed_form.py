"""Read a text's identity from Twilio's signed form, refusing forms a signature cannot pin down.

Twilio signs the URL followed by every parameter's name and value, sorted by name,
with nothing in between. So the signature covers one string, not the fields: a
captured request can be re-cut into a different form with the same signature
(``MessageSid=M&NumMedia=0`` signs like ``MessageSid=MNumMedia0``; ``FromZip`` can
swallow everything up to ``MessageSid``). The checks here accept a form only when
no other way of cutting the same signed string into a form the bot would accept
names a different text or sender. The reasoning is in the README's security notes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

SID = re.compile(r"^(SM|MM)[0-9a-f]{32}$")
# Twilio's parameter names are CamelCase letters and digits.
NAME = re.compile(r"^[A-Z][A-Za-z0-9]*$")
SID_FIELDS = ("MessageSid", "SmsSid", "SmsMessageSid")
# Parameters Twilio documents for an inbound message.
TWILIO_PARAMETERS = frozenset({
    "AccountSid", "Address", "ApiVersion", "Body", "ButtonPayload", "ButtonText", "ButtonType",
    "ChannelMetadata", "Forwarded", "FrequentlyForwarded", "From", "FromCity", "FromCountry",
    "FromState", "FromZip", "Label", "Latitude", "Longitude", "MessageSid", "MessageType",
    "MessagingServiceSid", "NumMedia", "NumSegments", "OptOutType", "OriginalRepliedMessageSender",
    "OriginalRepliedMessageSid", "ProfileName", "ReferralBody", "ReferralCtwaClid", "ReferralHeadline",
    "ReferralMediaContentType", "ReferralMediaId", "ReferralMediaUrl", "ReferralNumMedia",
    "ReferralSourceId", "ReferralSourceType", "ReferralSourceUrl", "SmsMessageSid", "SmsSid",
    "SmsStatus", "To", "ToCity", "ToCountry", "ToState", "ToZip", "WaId",
})
FROM_EXTENSIONS = ("FromCity", "FromCountry", "FromState", "FromZip")
# Fields whose values people or businesses write: a text, a profile name, a button.
# (A place's Label is left out: it sorts between From and MessageSid, where a
# forged From could start.)
FREE_TEXT = frozenset({
    "Address", "Body", "ButtonPayload", "ButtonText", "ChannelMetadata", "ProfileName",
    "ReferralBody", "ReferralHeadline",
})
# No one writes a SID's parameter name in a text: free text holding one was cut
# out of a bigger string. Other values (a city, a status, a count) hold no
# parameter name at all.
FREE_TEXT_MARKERS = ("MessageSid", "SmsSid")
MARKERS = tuple(sorted(
    (name for name in TWILIO_PARAMETERS if len(name) >= 4), key=len, reverse=True
)) + ("MediaUrl", "MediaContentType")
MEDIA_NAME = re.compile(r"^Media(Url|ContentType)[0-9]{1,2}$")


class InvalidText(ValueError):
    """The form is not a usable Twilio text; the message says why (answered with 400)."""


def single_values(form: Mapping[str, str]) -> dict[str, str]:
    """Return the form as a plain dict; a name given twice is an InvalidText."""
    getlist = getattr(form, "getlist", None)
    values: dict[str, str] = {}
    for name in form:
        given = getlist(name) if getlist else [form[name]]
        if len(given) != 1:
            raise InvalidText(f"the form repeats {_show(name)}")
        values[name] = given[0]
    return values


def text_sid(form: Mapping[str, str]) -> str:
    """Return the text's MessageSid after checking the form cannot be re-cut into another text.

    :raises InvalidText: on a repeated or non-Twilio name, a missing, malformed or
        inconsistent SID, or a value that holds another parameter.
    """
    fields = single_values(form)
    for name in fields:
        if not NAME.match(name):
            raise InvalidText(f"{_show(name)} is not a Twilio parameter name")
        if name not in TWILIO_PARAMETERS and not MEDIA_NAME.match(name) and _extends_identity(name):
            raise InvalidText(f"{_show(name)} extends a parameter the bot reads")
    sids = {fields[name] for name in SID_FIELDS if name in fields}
    if not sids:
        raise InvalidText("the form has no MessageSid")
    for sid in sids:
        if not SID.match(sid):
            raise InvalidText("MessageSid is not a Twilio message SID (SM or MM and 32 hex digits)")
    if len(sids) > 1:
        raise InvalidText("MessageSid and SmsSid disagree")
    for name, value in fields.items():
        markers = FREE_TEXT_MARKERS if name in FREE_TEXT else MARKERS
        found = next((marker for marker in markers if marker in value), None)
        if found:
            raise InvalidText(f"{_show(name)} holds the parameter name {found}")
    sender = "From" + fields.get("From", "")
    if any(sender.startswith(name) for name in FROM_EXTENSIONS):
        raise InvalidText("From reads as the tail of another From parameter")
    following = _next_name(fields, "From")
    if following is not None and following not in TWILIO_PARAMETERS and not MEDIA_NAME.match(following):
        raise InvalidText(f"From is followed by {_show(following)}, which could end it early")
    return sids.pop()


def _extends_identity(name: str) -> bool:
    return any(name.startswith(base) and name != base for base in ("From", "Body", *SID_FIELDS))


def _next_name(fields: Mapping[str, str], name: str) -> str | None:
    if name not in fields:
        return None
    later = sorted(other for other in fields if other > name)
    return later[0] if later else None


def _show(name: str) -> str:
    return repr(name[:40])
