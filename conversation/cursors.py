"""Opaque, URL-safe pagination cursors (shared by every store)."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from conversation.errors import InvalidCursor


def encode_cursor(payload: dict[str, Any]) -> str:
    """Return an opaque cursor carrying ``payload``."""
    raw = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> dict[str, Any]:
    """Return a cursor's payload; raise InvalidCursor when it is not one this service issued."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        payload = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise InvalidCursor("cursor is not one this service issued") from exc
    if not isinstance(payload, dict):
        raise InvalidCursor("cursor is not one this service issued")
    return payload
