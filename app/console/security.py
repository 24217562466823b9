"""Console secrets derived from the operator token: sealed references, CSRF tokens, page headers.

Every key comes from ADMIN_API_TOKEN with its own label, so every instance
agrees without another setting, and rotating the token signs everyone out and
voids every link.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from flask import Response

from app.services import services

CONTENT_SECURITY_POLICY = "; ".join((
    "default-src 'self'",
    "script-src 'none'",
    "style-src 'self'",
    "img-src 'self'",
    "connect-src 'none'",
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
))
_NONCE_BYTES = 12


class BadReference(ValueError):
    """A sealed reference was altered, made for another purpose or under another token."""


def _operator_token() -> str:
    token = services().settings.admin_api_token
    if not token:  # the console exists only with a token; never sign with or accept an empty one
        raise RuntimeError("the console needs ADMIN_API_TOKEN")
    return token


def _key(label: str) -> bytes:
    token = _operator_token()
    return hashlib.sha256(b"dadacat-console\x00" + label.encode() + b"\x00" + token.encode()).digest()


def seal(purpose: str, text: str) -> str:
    """Return an opaque, URL-safe token carrying ``text`` (encrypted and authenticated)."""
    nonce = os.urandom(_NONCE_BYTES)
    sealed = AESGCM(_key("seal")).encrypt(nonce, text.encode("utf-8"), purpose.encode())
    return base64.urlsafe_b64encode(nonce + sealed).decode().rstrip("=")


def unseal(purpose: str, token: str) -> str:
    """Return the text sealed in ``token`` for ``purpose``.

    :raises BadReference: for any token this console did not seal for that purpose.
    """
    if not token or len(token) > 2000:
        raise BadReference("missing or oversized reference")
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        plain = AESGCM(_key("seal")).decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], purpose.encode())
        return plain.decode("utf-8")
    except (binascii.Error, ValueError, InvalidTag, UnicodeDecodeError):
        raise BadReference("not a reference this console issued") from None


def session_cookie(session_id: str) -> str:
    """Return the cookie value for a session: its id and a MAC under the current token."""
    mac = hmac.new(_key("session"), session_id.encode(), hashlib.sha256).hexdigest()[:32]
    return f"{session_id}.{mac}"


def session_from_cookie(value: str | None) -> str | None:
    """Return the session id of a cookie minted under the current token, else None."""
    session_id, _, mac = (value or "").rpartition(".")
    if not session_id or len(value or "") > 200:
        return None
    return session_id if hmac.compare_digest(session_cookie(session_id), value or "") else None


def csrf_token(session_id: str) -> str:
    """Return the CSRF token of a session (an HMAC of its id)."""
    return hmac.new(_key("csrf"), session_id.encode(), hashlib.sha256).hexdigest()


def csrf_ok(session_id: str, given: str | None) -> bool:
    """Return whether ``given`` is the session's CSRF token (constant-time)."""
    if not given:
        return False
    return hmac.compare_digest(csrf_token(session_id).encode(), given.encode("utf-8", "replace"))


def token_ok(given: str | None) -> bool:
    """Return whether ``given`` is the operator token (constant-time, any input)."""
    token = _operator_token()
    return hmac.compare_digest(
        (given or "").strip().encode("utf-8", "surrogatepass"), token.encode("utf-8", "surrogatepass")
    )


def harden(response: Response) -> Response:
    """Add the console's headers: strict CSP, no caching, no framing, no referrer, no sniffing."""
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response
