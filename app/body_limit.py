"""Refuse hostile request bodies: over MAX_REQUEST_BYTES, or JSON nested too deep to parse.

Twilio's posts are a few kilobytes. A body declared bigger is answered 413 from
its Content-Length alone, unread, so a forged 100 MB post costs neither memory
nor a parse. A chunked body (no Content-Length) is read at most one byte past
the cap, then refused the same way. JSON nested deeper than Python's parser can
follow (``[[[[…`` 100,000 levels) is malformed JSON, a 400, not a RecursionError.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, request
from flask.json.provider import DefaultJSONProvider
from werkzeug.exceptions import RequestEntityTooLarge

from app.services import services


def refuse_large_bodies() -> None:
    """Answer 413 when the body is over the cap; a declared length is never read."""
    cap = services().settings.max_request_bytes
    declared = request.content_length
    if declared is not None:
        if declared > cap:
            raise RequestEntityTooLarge(f"the body is over {cap} bytes")
        return
    if request.environ.get("wsgi.input_terminated"):
        # Streamed: werkzeug stops reading at MAX_CONTENT_LENGTH (cap + 1), and the
        # bytes read are kept for the form parser.
        if len(request.get_data(cache=True)) > cap:
            raise RequestEntityTooLarge(f"the body is over {cap} bytes")


class JSONProvider(DefaultJSONProvider):
    """Flask's JSON, with too-deep nesting reported as malformed JSON (so ``get_json`` gives 400)."""

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        """Parse JSON; raise ValueError, never RecursionError, on any input."""
        try:
            return super().loads(s, **kwargs)
        except RecursionError:
            raise ValueError("JSON is nested too deeply") from None


def init_app(app: Flask) -> None:
    """Cap every request body by size (declared, or while streamed) and JSON bodies by depth."""
    app.config["MAX_CONTENT_LENGTH"] = services(app).settings.max_request_bytes + 1
    app.before_request(refuse_large_bodies)
    app.json = JSONProvider(app)
