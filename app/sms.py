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


# Look-alikes a model writes that cost a whole UCS-2 message, and the GSM-7
# characters that say the same (the kind of mapping Twilio's Smart Encoding does).
_GSM7_LOOKALIKES = {
    **dict.fromkeys("\u2018\u2019\u201a\u201b\u2032\u2035\u00b4\u02bc\u02b9\u2039\u203a", "'"),
    **dict.fromkeys("\u201c\u201d\u201e\u201f\u2033\u2036\u00ab\u00bb\u02ba", '"'),
    **dict.fromkeys("\u2010\u2011\u2012\u2013\u2014\u2015\u2212\u2043\ufe58\ufe63\uff0d", "-"),
    "\u2026": "...",
    "\u2022": "-",
    "\u02c6": "^",
    "\u02dc": "~",
    "\u2044": "/",
    "\u2215": "/",
    "\u00a0": " ", "\u1680": " ", "\u180e": " ", "\u202f": " ", "\u205f": " ", "\u3000": " ",
    **dict.fromkeys("\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a", " "),
    # Invisible: zero-width spaces and joiners, word joiner, soft hyphen, byte-order mark.
    **dict.fromkeys("\u200b\u200c\u200d\u2060\u00ad\ufeff", ""),
}
_LOOKALIKE_TABLE = str.maketrans(_GSM7_LOOKALIKES)


def to_gsm7(text: str) -> tuple[str, int]:
    """Replace typographic look-alikes with GSM-7 characters when that makes the text GSM-7.

    Curly quotes, dashes, the ellipsis character, odd spaces and invisible
    characters become their plain equivalents, so one of them no longer turns a
    two-segment reply into a five-segment one. A text that would stay UCS-2
    anyway (emoji, non-Latin scripts) is returned unchanged. Returns the text
    and how many characters were replaced.
    """
    if is_gsm7(text):
        return text, 0
    plain = text.translate(_LOOKALIKE_TABLE)
    if not is_gsm7(plain):
        return text, 0
    return plain, sum(1 for char in text if char in _GSM7_LOOKALIKES)


def truncate(text: str, max_chars: int) -> str:
    """Cut a text to at most ``max_chars`` characters, on a word boundary, marking the cut.

    Texts that fit are returned unchanged (apart from surrounding whitespace), so cutting
    twice cuts once. The one way a reply is fitted: the responders, the text handler and
    background turns all use it.
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


def fit_reply(reply: str, max_chars: int) -> tuple[str, dict[str, int]]:
    """Make a reply GSM-7 where look-alikes were all that kept it UCS-2, then cut it to size.

    Returns the text and, when characters were replaced, metadata saying how many
    and how many segments the reply would have taken without the replacement.
    """
    plain, replaced = to_gsm7(reply)
    answer = truncate(plain, max_chars)
    if not replaced:
        return answer, {}
    before = count_segments(truncate(reply, max_chars)).count
    return answer, {"gsm7_replaced": replaced, "segments_before_gsm7": before}


def parse_command(body: str | None) -> str | None:
    """Return "reset" when the whole text is a reset word, ignoring case, spaces and end punctuation."""
    if not body:
        return None
    word = body.strip().rstrip(_TRAILING + " \t\r\n").strip().casefold()
    return "reset" if word in RESET_WORDS else None
