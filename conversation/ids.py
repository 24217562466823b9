"""What a user id is: the one definition the webhook, store, API and CLI share.

A user id names everything stored for one sender: an E.164 number
(``+15551234567``), a channel-prefixed sender Twilio posts
(``whatsapp:+15551234567``, ``messenger:1234``) or an agent session
(``agent:<session id>``). Any id accepted here can be stored, read, exported
and erased, through every surface.

Refused: empty or over 256 characters; whitespace and control characters
(they cannot be typed on a command line or logged safely); a lone surrogate
(half of a UTF-16 pair: DynamoDB stores UTF-8 and cannot hold it); and
``# / ? % \\`` (``#`` separates the parts of the store's keys; the others would
change meaning inside an operator API path).
"""

from __future__ import annotations

import re

from conversation.errors import InvalidUserId

MAX_USER_ID_CHARS = 256
# The same expression serves Python here and the OpenAPI document (ECMA-262):
# both read ``\s`` as Unicode whitespace.
USER_ID_PATTERN = r"^[^\s#/?%\\\u0000-\u001f\u007f-\u009f]{1,256}$"
_USER_ID = re.compile(USER_ID_PATTERN)
_SURROGATE = re.compile("[\ud800-\udfff]")


def is_valid_user_id(user_id: object) -> bool:
    """Return whether ``user_id`` is an id the store can key and every surface can name."""
    return (
        isinstance(user_id, str)
        and _USER_ID.fullmatch(user_id) is not None
        and _SURROGATE.search(user_id) is None
    )


def check_user_id(user_id: object) -> str:
    """Return ``user_id`` unchanged, or raise InvalidUserId saying what is wrong with it."""
    if is_valid_user_id(user_id):
        return user_id  # type: ignore[return-value]
    raise InvalidUserId(
        f"a user id is 1-{MAX_USER_ID_CHARS} characters with no whitespace, control "
        "characters, lone surrogates or any of # / ? % \\"
    )


def channel_and_address(user_id: str) -> tuple[str, str]:
    """Split ``whatsapp:+15551234567`` into ``("whatsapp:", "+15551234567")``.

    An id without a channel prefix gives ``("", user_id)``.
    """
    channel, colon, address = user_id.partition(":")
    if colon and channel and channel.isascii() and channel.isalpha():
        return channel + ":", address
    return "", user_id
