"""Keep text XML 1.0 can carry: TwiML with a NUL, ESC, BEL or U+FFFE in it is not XML.

Twilio answers a document that does not parse with error 12100 and the texter
gets nothing, so every string that goes into TwiML passes through here.
"""

from __future__ import annotations

import re

# XML 1.0 Char: #x9 | #xA | #xD | [#x20-#xD7FF] | [#xE000-#xFFFD] | [#x10000-#x10FFFF].
# Everything else (C0 controls, lone surrogates, U+FFFE and U+FFFF) is refused.
_NOT_XML = re.compile("[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def xml_safe(text: str) -> str:
    """Return ``text`` without the characters XML 1.0 does not allow."""
    return _NOT_XML.sub("", text)
