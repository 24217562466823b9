"""SMS text rules: segment counting, cutting replies to fit, and command recognition.

Nothing here touches Flask, Twilio's client or storage, so it is easy to test on its own.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

# The GSM 03.38 default alphabet (one septet each) and its extension table
# (an escape plus the character: two septets each).
GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENSION = frozenset("^{}\\[~]|€\f")

GSM7 = "GSM-7"
UCS2 = "UCS-2"

# An outbound body over 1,600 characters is refused by Twilio (error 21617).
MAX_BODY_CHARS = 1600

RESET_WORDS = frozenset({"reset", "restart", "clear"})
# Trailing characters ignored when recognising a command ("Reset!", "clear.").
_TRAILING = ".,!?;:…‽¡¿-~*\"'"
ELLIPSIS = "..."


@dataclass(frozen=True)
class Segments:
    """How a text travels as SMS: its encoding, length in code units, and segment count."""

    encoding: str
    units: int
    count: int

    def metadata(self) -> dict[str, object]:
        """Return the fields recorded in a reply's metadata."""
        return {"segments": self.count, "encoding": self.encoding, "sms_units": self.units}


def is_gsm7(text: str) -> bool:
    """Return True when every character fits the GSM-7 alphabet (basic or extension)."""
    return all(char in GSM7_BASIC or char in GSM7_EXTENSION for char in text)


def count_segments(text: str) -> Segments:
    """Count the SMS segments a text takes (160/153 GSM-7 septets, 70/67 UCS-2 units).

    In a multi-part text a character is never split between two segments: a GSM-7
    extension character (an escape and the character, two septets) or an emoji (a
    UTF-16 surrogate pair) that does not fit in what is left of a segment starts the
    next one.
    """
    if not text:
        return Segments(GSM7, 0, 0)
    if is_gsm7(text):
        sizes = [2 if char in GSM7_EXTENSION else 1 for char in text]
        single, multi, encoding = 160, 153, GSM7
    else:
        # UCS-2 on the wire is really UTF-16: characters outside the BMP (most
        # emoji) take two code units.
        sizes = [2 if ord(char) > 0xFFFF else 1 for char in text]
        single, multi, encoding = 70, 67, UCS2
    units = sum(sizes)
    if units <= single:
        return Segments(encoding, units, 1)
    count, room = 1, multi
    for size in sizes:
        if size > room:
            count, room = count + 1, multi
        room -= size
    return Segments(encoding, units, count)


def truncate(text: str, max_chars: int) -> str:
    """Cut a text to at most ``max_chars`` characters, on a word boundary, marking the cut.

    Texts that fit are returned unchanged (apart from surrounding whitespace).
    """
    if max_chars < 1:
        raise ValueError("max_chars must be at least 1")
    max_chars = min(max_chars, MAX_BODY_CHARS)
    text = text.strip()
    if len(text) <= max_chars:
        return text
    marker = ELLIPSIS if max_chars > len(ELLIPSIS) * 4 else ""
    room = max_chars - len(marker)
    head = text[: room + 1]
    # Prefer the last whitespace inside the room; fall back to a hard cut when
    # the only "word" is longer than half the room (a URL, a wall of emoji).
    cut = max((head.rfind(space) for space in (" ", "\n", "\t")), default=-1)
    if cut < room // 2:
        cut = room
        # Do not leave a combining mark or variation selector dangling alone.
        while cut > 0 and (unicodedata.combining(text[cut]) or text[cut] in ("\ufe0f", "\u200d")):
            cut -= 1
    result = text[:cut].rstrip(" \n\t,;:-")
    return (result + marker) if result else text[:room] + marker


def parse_command(body: str | None) -> str | None:
    """Return "reset" when the whole text is a reset word, ignoring case, spaces and end punctuation."""
    if not body:
        return None
    word = body.strip().rstrip(_TRAILING + " \t\r\n").strip().casefold()
    return "reset" if word in RESET_WORDS else None
